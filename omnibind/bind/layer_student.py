"""Layer students: the anchor's first k transformer layers plus a small adapter, distilled to the anchor.

Cheaper text by design, the way 2D Matryoshka (Li et al. 2024, "2D Matryoshka Sentence
Embeddings"; sentence-transformers' `Matryoshka2dLoss` / `AdaptiveLayerLoss`) does it: run only
the first k of the anchor's layers, mean-pool them, and map the pooled vector with a small trained
adapter onto the anchor's own vector. The adapter is trained by distillation (DSE: the student
reproduces the teacher's vectors on unlabelled text), with Matryoshka nesting over dimensions in
the space's coordinates, so a student's vector stays in the SAME space as the anchor: the image
and audio towers bound to the anchor keep working, and prefixes of the vector stay usable.

A layer student is a distilled student initialised from the anchor's layers: one family covers
both the "layer truncation" and "distilled student" ideas (docs/text-students.md).

One forward pass with all hidden states gives every k's features at once (`pooled_layers`): the
truncated model's output IS the mean-pooled hidden state after layer k.

Distilled students (`finetune_layers`): the same loss, but the kept k transformer layers are
trained too (the word embeddings stay frozen: they ship with the model package), so context the
later layers would add can move into the early ones. Their layers ship with the adapter in one
float16 file (`save_distilled` / `load_distilled`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from omnibind.bind.text_student import one_cycle_fit
from omnibind.errors import BackboneError

DIMS = (32, 64, 128, 256, 384)  # Matryoshka prefixes the loss is taken on (as Matryoshka2dLoss)
Progress = Callable[[int], None]


class LayerAdapter(nn.Module):
    """Pooled layer-k vector -> anchor-like unit vector.

    `linear`: W x + b, W initialised to the identity. `residual`: x + W2 GELU(W1 LayerNorm(x)),
    W2 initialised to zero. Both start as the identity map, so an untrained adapter is plain
    layer truncation."""

    kinds = ("linear", "residual")

    def __init__(self, dim: int, kind: str = "linear", hidden: int = 512) -> None:
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"adapter kind must be one of {self.kinds}, got {kind!r}")
        self.dim, self.kind, self.hidden = int(dim), kind, int(hidden)
        if kind == "linear":
            self.proj = nn.Linear(dim, dim)
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(dim))
                self.proj.bias.zero_()
        else:
            self.norm, self.up, self.down = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim)
            with torch.no_grad():
                self.down.weight.zero_()
                self.down.bias.zero_()

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "kind": self.kind, **({"hidden": self.hidden} if self.kind == "residual" else {})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.kind == "linear":
            y = self.proj(x)
        else:
            y = x + self.down(nn.functional.gelu(self.up(self.norm(x))))
        return nn.functional.normalize(y, dim=-1)


# -- features -----------------------------------------------------------------------------------


@torch.inference_mode()
def pooled_layers(model: Any, texts: Sequence[str], layers: Sequence[int], batch_size: int = 64,
                  progress: Progress | None = None) -> dict[int, np.ndarray]:
    """Unit mean-pooled hidden states after each of `layers` (0 = embeddings) for `texts`, from
    one forward pass per batch of a sentence-transformers model: {k: float32 [n, d]}. The value
    for the model's last layer is its own (mean-pooled, normalised) sentence vector."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    width = model[0].auto_model.config.hidden_size
    out = {k: np.zeros((len(texts), width), np.float32) for k in layers}
    auto = model[0].auto_model
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        enc = tokenize([texts[i] for i in rows])
        hidden = auto(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                      token_type_ids=enc.get("token_type_ids"), output_hidden_states=True).hidden_states
        mask = enc["attention_mask"].unsqueeze(-1).float()
        for k in layers:
            pooled = (hidden[k] * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[k][rows] = nn.functional.normalize(pooled, dim=-1).numpy()
        if progress:
            progress(len(rows))
    return out


# -- training -----------------------------------------------------------------------------------


def nested_distill_loss(pred: torch.Tensor, target: torch.Tensor, dims: Sequence[int] = DIMS,
                        rotation: torch.Tensor | None = None, temperature: float | None = None) -> torch.Tensor:
    """Mean over `dims` of (1 − cos) between the first d coordinates of student and teacher,
    taken in the space's coordinates (`rotation` [D, D]: the anchor tower's linear head, x -> R x),
    plus, with `temperature`, in-batch InfoNCE of the student against the teacher's vectors."""
    if rotation is not None:
        pred, target = pred @ rotation.T, target @ rotation.T
    total = pred.new_zeros(())
    for d in dims:
        p = nn.functional.normalize(pred[:, :d], dim=-1)
        t = nn.functional.normalize(target[:, :d], dim=-1)
        term = (1 - (p * t).sum(-1)).mean()
        if temperature:
            term = term + nn.functional.cross_entropy(p @ t.T / temperature, torch.arange(len(p)))
        total = total + term / len(dims)
    return total


def train_adapter(x: np.ndarray, y: np.ndarray, kind: str = "linear", dims: Sequence[int] = DIMS,
                  rotation: np.ndarray | None = None, epochs: int = 20, lr: float = 2e-3, batch_size: int = 256,
                  temperature: float | None = None, hidden: int = 512, seed: int = 0,
                  progress: Progress | None = None) -> LayerAdapter:
    """An adapter mapping pooled layer vectors `x` [n, d] onto teacher vectors `y` [n, d]
    (AdamW, one-cycle schedule, seeded; loss `nested_distill_loss`)."""
    if len(x) != len(y) or len(x) < batch_size:
        raise ValueError(f"need as many targets as inputs and at least {batch_size} rows, got {len(x)}, {len(y)}")
    torch.manual_seed(seed)
    adapter = LayerAdapter(x.shape[1], kind, hidden)
    xt, yt = torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(y, np.float32))
    rot = None if rotation is None else torch.as_tensor(np.asarray(rotation, np.float32))
    one_cycle_fit(adapter, len(xt), lambda rows: nested_distill_loss(adapter(xt[rows]), yt[rows], dims, rot, temperature),
                  epochs, lr, batch_size, seed, progress)
    return adapter.eval()


@torch.no_grad()
def apply_adapter(adapter: LayerAdapter, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The adapter's unit vectors for pooled layer vectors `x` (numpy in, numpy out)."""
    parts = [adapter(torch.as_tensor(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, adapter.dim), np.float32)


# -- files --------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_adapter(adapter: LayerAdapter, path: str | Path, metadata: dict[str, Any] | None = None,
                 dtype: torch.dtype = torch.float16) -> str:
    """Write the adapter as safetensors (config in the header; float16 by default: half the bytes,
    and the vectors move by ~1e-3 in cosine at most); its sha256. Loaded back as float32."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(dtype).contiguous() for k, v in adapter.state_dict().items()}
    meta = {"config": json.dumps(adapter.config(), sort_keys=True),
            **{k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}}
    save_file(tensors, str(path), metadata=meta)
    return file_sha256(path)


def load_adapter(path: str | Path, sha256: str | None = None, dim: int | None = None) -> LayerAdapter:
    """Read an adapter written by `save_adapter`, checking its sha256 and width; BackboneError if
    the file is missing, altered or of the wrong shape."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"text-student adapter not found: {path}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise BackboneError(f"text-student adapter {path.name}: sha256 mismatch (file altered or wrong version)")
    try:
        with safe_open(str(path), "pt") as fh:
            config = json.loads(fh.metadata()["config"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        adapter = LayerAdapter(config["dim"], config["kind"], config.get("hidden", 512))
        if dim is not None and adapter.dim != dim:
            raise BackboneError(f"text-student adapter {path.name} is {adapter.dim}-d, the backbone gives {dim}-d")
        adapter.load_state_dict(tensors, strict=True)
    except BackboneError:
        raise
    except Exception as exc:  # bad header, wrong tensor shapes or names
        raise BackboneError(f"text-student adapter {path.name}: cannot load: {exc}") from exc
    return adapter.eval()


# -- distilled students: the kept layers fine-tuned ---------------------------------------------

LAYER_PREFIX, ADAPTER_PREFIX = "encoder.layer.", "adapter."


def encoder_stack(model: Any) -> nn.ModuleList:
    """The transformer layers of a (possibly truncated) BERT-like sentence-transformers model."""
    stack = getattr(getattr(getattr(model[0], "auto_model", None), "encoder", None), "layer", None)
    if stack is None:
        raise BackboneError("a distilled student needs a BERT-like encoder (model[0].auto_model.encoder.layer)")
    return stack


def token_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row batches of similar token length (little padding), in a seeded random order: rows are
    sorted by length plus a jitter of up to 3 tokens, cut into batches, and the batches shuffled."""
    keys = np.asarray(lengths, np.float64) + rng.uniform(0, 3, len(lengths))
    order = np.argsort(keys, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def student_vectors(model: Any, adapter: LayerAdapter, ids: Sequence[Sequence[int]], pad_id: int = 0) -> torch.Tensor:
    """The student's unit vectors for token id lists: the model's (truncated) encoder, mean pooling,
    normalisation, then the adapter (with gradients, where enabled)."""
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)], mask[i, :len(row)] = torch.as_tensor(row), 1
    hidden = model[0].auto_model(input_ids=input_ids, attention_mask=mask,
                                 token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
    m = mask.unsqueeze(-1).float()
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return adapter(nn.functional.normalize(pooled, dim=-1))


def encode_student(model: Any, adapter: LayerAdapter, ids: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
    """`student_vectors` for many rows, no gradients, longest first (numpy, input order)."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = np.zeros((len(ids), adapter.dim), np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = student_vectors(model, adapter, [ids[i] for i in rows]).numpy()
    return out


def trainable_student(model: Any, adapter: LayerAdapter) -> list[dict[str, Any]]:
    """Freeze everything of `model` but its encoder layers (embeddings and pooler stay as shipped;
    dropout off: eval mode with gradients); the optimiser's two parameter groups."""
    model.eval()
    adapter.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = [p for p in encoder_stack(model).parameters()]
    for p in layers:
        p.requires_grad_(True)
    return [{"params": layers, "name": "layers"}, {"params": list(adapter.parameters()), "name": "adapter"}]


def finetune_layers(model: Any, adapter: LayerAdapter, ids: Sequence[Sequence[int]], targets: np.ndarray,
                    rotation: np.ndarray | None = None, dims: Sequence[int] = DIMS, epochs: int = 3,
                    lr: float = 5e-5, adapter_lr: float = 5e-4, batch_size: int = 64,
                    temperature: float | None = 0.05, warmup: float = 0.05, seed: int = 0,
                    on_epoch: Callable[[int], None] | None = None, progress: Progress | None = None) -> None:
    """Train `model`'s kept encoder layers and `adapter` in place so that `student_vectors` of the
    token ids reproduce the teacher's unit `targets` [n, d] (`nested_distill_loss`; AdamW, linear
    warm-up then linear decay, gradients clipped at 1, length-bucketed seeded batches). Calls
    `on_epoch(epoch)` after each epoch (to score and keep checkpoints)."""
    if len(ids) != len(targets) or len(ids) < batch_size:
        raise ValueError(f"need one target per text and at least {batch_size} texts, got {len(ids)}, {len(targets)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    groups = trainable_student(model, adapter)
    groups[0]["lr"], groups[1]["lr"] = lr, adapter_lr
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    lengths = [len(row) for row in ids]
    total = epochs * (len(ids) // batch_size)
    ramp = max(1, int(warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min((step + 1) / ramp, max(0.0, (total - step) / max(1, total - ramp))))
    yt = torch.as_tensor(np.asarray(targets, np.float32))
    rot = None if rotation is None else torch.as_tensor(np.asarray(rotation, np.float32))
    params = [p for g in groups for p in g["params"]]
    for epoch in range(epochs):
        for rows in token_batches(lengths, batch_size, rng):
            pred = student_vectors(model, adapter, [ids[i] for i in rows])
            loss = nested_distill_loss(pred, yt[torch.as_tensor(rows)], dims, rot, temperature)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            schedule.step()
            if progress:
                progress(len(rows))
        if on_epoch:
            on_epoch(epoch)
    for p in model.parameters():
        p.requires_grad_(False)


def student_state(model: Any, adapter: LayerAdapter) -> dict[str, torch.Tensor]:
    """The trained tensors of a distilled student: its encoder layers and its adapter (copies)."""
    state = {f"{LAYER_PREFIX}{k}": v.detach().clone() for k, v in encoder_stack(model).state_dict().items()}
    state.update({f"{ADAPTER_PREFIX}{k}": v.detach().clone() for k, v in adapter.state_dict().items()})
    return state


def save_distilled(state: dict[str, torch.Tensor], adapter_config: dict[str, Any], layers: int, path: str | Path,
                   metadata: dict[str, Any] | None = None, dtype: torch.dtype = torch.float16) -> str:
    """Write a distilled student (`student_state`: encoder layers + adapter) as float16 safetensors,
    the adapter's config and the layer count in the header; its sha256."""
    from safetensors.torch import save_file

    tensors = {k: v.to(dtype).contiguous() for k, v in state.items()}
    meta = {"config": json.dumps(adapter_config, sort_keys=True), "layers": str(int(layers)),
            **{k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}}
    save_file(tensors, str(path), metadata=meta)
    return file_sha256(path)


def load_distilled(model: Any, path: str | Path, sha256: str | None = None) -> LayerAdapter:
    """Load a `save_distilled` file into `model` (already cut to the file's layer count) and return
    its adapter; BackboneError if the file is missing, altered, or does not fit the model."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"distilled text student not found: {path}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise BackboneError(f"distilled text student {path.name}: sha256 mismatch (file altered or wrong version)")
    stack = encoder_stack(model)
    try:
        with safe_open(str(path), "pt") as fh:
            meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
        if int(meta["layers"]) != len(stack):
            raise BackboneError(f"distilled text student {path.name} has {meta['layers']} layers, "
                                f"the model is cut to {len(stack)}")
        config = json.loads(meta["config"])
        adapter = LayerAdapter(config["dim"], config["kind"], config.get("hidden", 512))
        pick = lambda prefix: {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        adapter.load_state_dict(pick(ADAPTER_PREFIX), strict=True)
        dtype = next(stack.parameters()).dtype
        stack.load_state_dict({k: v.to(dtype) for k, v in pick(LAYER_PREFIX).items()}, strict=True)
    except BackboneError:
        raise
    except Exception as exc:  # bad header, wrong tensor names or shapes
        raise BackboneError(f"distilled text student {path.name}: cannot load: {exc}") from exc
    return adapter.eval()

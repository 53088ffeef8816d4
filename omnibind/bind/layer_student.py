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
    steps = len(xt) // batch_size
    opt = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps)
    order = torch.Generator().manual_seed(seed)
    adapter.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=order)
        for i in range(steps):
            rows = perm[i * batch_size:(i + 1) * batch_size]
            loss = nested_distill_loss(adapter(xt[rows]), yt[rows], dims, rot, temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        if progress:
            progress(1)
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

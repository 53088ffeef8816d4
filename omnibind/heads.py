"""Heads: small maps from a backbone's features into the shared space.

- `identity`: the backbone already speaks the space (the text anchor, a CLIP half).
- `linear`, `mlp`: trainable projections (trained by omnibind.bind).
- `conse`: the training-free bridge of ConSE (Norouzi et al., 2014). A classifier's class
  probabilities, kept to the top k, weight the anchor's embeddings of the class names. With
  `prototypes` it works on backbones without a classifier: cosine similarity to captioned
  exemplar features stands in for the logits, and the exemplars' captions are the classes.

Every head declares which backbone feature it reads (`input_key`) and its config, so a space
can be rebuilt from `space.json` + `heads.safetensors`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from omnibind.errors import SpaceError

Features = dict[str, torch.Tensor]


class Head(nn.Module):
    kind: str = ""

    def __init__(self, input_key: str, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_key, self.in_dim, self.out_dim = input_key, in_dim, out_dim

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "input_key": self.input_key, "in_dim": self.in_dim, "out_dim": self.out_dim}

    def forward(self, features: Features) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class IdentityHead(Head):
    kind = "identity"

    def __init__(self, input_key: str = "embedding", in_dim: int = 384, out_dim: int | None = None) -> None:
        if out_dim not in (None, in_dim):
            raise SpaceError(f"identity head cannot map {in_dim} to {out_dim} dimensions")
        super().__init__(input_key, in_dim, in_dim)

    def forward(self, features: Features) -> torch.Tensor:
        return features[self.input_key]


class LinearHead(Head):
    """`W x + b`; with `layer_norm`, `W · LayerNorm(x) + b` (no affine LayerNorm parameters): the
    scale-free affine map that composition learns from text (omnibind/bind/connect.py)."""

    kind = "linear"

    def __init__(self, input_key: str, in_dim: int, out_dim: int, layer_norm: bool = False) -> None:
        super().__init__(input_key, in_dim, out_dim)
        self.layer_norm = bool(layer_norm)
        self.proj = nn.Linear(in_dim, out_dim)

    def config(self) -> dict[str, Any]:  # the key only when set: older spaces keep their fingerprint
        return {**super().config(), "layer_norm": True} if self.layer_norm else super().config()

    def forward(self, features: Features) -> torch.Tensor:
        x = features[self.input_key]
        if self.layer_norm:
            x = nn.functional.layer_norm(x.float(), (self.in_dim,))
        return self.proj(x)


class MLPHead(Head):
    kind = "mlp"

    def __init__(self, input_key: str, in_dim: int, out_dim: int, hidden: int = 1024, dropout: float = 0.1) -> None:
        super().__init__(input_key, in_dim, out_dim)
        self.hidden, self.dropout = hidden, dropout
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": self.hidden, "dropout": self.dropout}

    def forward(self, features: Features) -> torch.Tensor:
        return self.net(features[self.input_key])


class ConSEHead(Head):
    """Convex combination of class-name embeddings, weighted by the top-k class probabilities."""

    kind = "conse"

    def __init__(
        self,
        input_key: str,
        in_dim: int,
        out_dim: int,
        num_classes: int,
        top_k: int = 10,
        temperature: float = 1.0,
        exemplars: bool = False,
    ) -> None:
        super().__init__(input_key, in_dim, out_dim)
        self.num_classes, self.top_k, self.temperature, self.exemplars = num_classes, top_k, temperature, exemplars
        self.register_buffer("class_embeddings", torch.zeros(num_classes, out_dim))
        if exemplars:
            self.register_buffer("prototypes", torch.zeros(num_classes, in_dim))

    @classmethod
    def from_classes(
        cls, input_key: str, class_embeddings: torch.Tensor, top_k: int = 10, temperature: float = 1.0,
        prototypes: torch.Tensor | None = None,
    ) -> "ConSEHead":
        n, d = class_embeddings.shape
        in_dim = prototypes.shape[1] if prototypes is not None else n
        head = cls(input_key, in_dim, d, n, top_k, temperature, exemplars=prototypes is not None)
        head.class_embeddings.copy_(nn.functional.normalize(class_embeddings.float(), dim=-1))
        if prototypes is not None:
            head.prototypes.copy_(nn.functional.normalize(prototypes.float(), dim=-1))
        return head

    def config(self) -> dict[str, Any]:
        return {**super().config(), "num_classes": self.num_classes, "top_k": self.top_k,
                "temperature": self.temperature, "exemplars": self.exemplars}

    def class_probabilities(self, features: Features) -> torch.Tensor:
        """Softmax over classes (logits, or exemplar cosines), zero outside the top k, renormalised."""
        x = features[self.input_key].float()
        scores = nn.functional.normalize(x, dim=-1) @ self.prototypes.T if self.exemplars else x
        probs = torch.softmax(scores / self.temperature, dim=-1)
        k = min(self.top_k, probs.shape[-1])
        top = torch.topk(probs, k, dim=-1)
        kept = torch.zeros_like(probs).scatter_(-1, top.indices, top.values)
        return kept / kept.sum(dim=-1, keepdim=True)

    def forward(self, features: Features) -> torch.Tensor:
        return self.class_probabilities(features) @ self.class_embeddings


class ResidualHead(Head):
    """A frozen bridge plus a trainable correction that starts at exactly zero.

    output = bridge(features) + scale · correction(features[input_key]). With the correction's
    last layer zero-initialised, training starts from the bridge and only learns what improves on
    it: on Tux Paint this beat plain linear/MLP heads, which fell below the bridge.

    `scale` is WiSE-FT for this head: interpolating the correction's last layer between zero (the
    bridge, scale 0) and its trained weights (scale 1) is exactly this multiplier. A scale below 1
    keeps more of the training-free bridge where the trained correction does not generalise.
    """

    kind = "residual"

    def __init__(self, input_key: str, in_dim: int, out_dim: int, bridge: dict[str, Any],
                 correction: str = "mlp", hidden: int = 512, scale: float = 1.0) -> None:
        super().__init__(input_key, in_dim, out_dim)
        if not 0.0 <= scale <= 1.0:
            raise SpaceError(f"residual scale must be in [0, 1], got {scale}")
        self.bridge_config, self.correction_kind, self.hidden, self.scale = bridge, correction, hidden, float(scale)
        self.bridge = build_head(bridge)
        self.bridge.requires_grad_(False)
        if correction == "linear":
            self.correction = nn.Linear(in_dim, out_dim)
            last = self.correction
        elif correction == "mlp":
            self.correction = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
            last = self.correction[-1]
        else:
            raise SpaceError(f"residual correction must be 'linear' or 'mlp', got {correction!r}")
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    @classmethod
    def around(cls, bridge: Head, input_key: str, in_dim: int, correction: str = "mlp", hidden: int = 512) -> "ResidualHead":
        head = cls(input_key, in_dim, bridge.out_dim, bridge.config(), correction, hidden)
        head.bridge.load_state_dict(bridge.state_dict())
        return head

    def config(self) -> dict[str, Any]:
        return {**super().config(), "bridge": self.bridge_config, "correction": self.correction_kind, "hidden": self.hidden,
                "scale": self.scale}

    def forward(self, features: Features) -> torch.Tensor:
        with torch.no_grad():
            base = self.bridge(features)
        base = nn.functional.normalize(base.float(), dim=-1)  # corrections live on the bridge's unit scale
        correction = self.correction(features[self.input_key].float())
        return base + correction if self.scale == 1.0 else base + self.scale * correction


class GatedMapHead(Head):
    """The anchor's own vector and a second encoder's, mapped into the anchor, mixed by agreement.

    For a text the anchor reads (English for MiniLM) the mapped vector agrees with the direct one
    and the direct vector is kept alone: the space's English behaviour does not move. For a text
    it cannot read (French, Chinese...) the two disagree and the mapped vector carries the meaning,
    with the direct one added where they still half agree (names, cognates). With c the cosine of
    the two unit vectors d (direct) and m (mapped):
        keep = sigmoid(sharpness · (c − keep_threshold)),  add = sigmoid(sharpness · (c − threshold))
        output = keep · d + (1 − keep) · (m + add · d + translation_weight · use · t)
    `t` is the best of the text's machine translations (`translation_keys`: features of the
    `apertium:` backbone, read by the anchor and put through `direct`), the one that agrees most
    with `m`; `use` = sigmoid(sharpness · (that agreement − translation_threshold)), so a wrong-
    language "translation" (German through a Spanish pair) or a missing one (zero row) is left out.
    """

    kind = "gated"

    def __init__(self, input_key: str, in_dim: int, out_dim: int, direct: dict[str, Any], map: dict[str, Any],
                 threshold: float = 0.3, keep_threshold: float = 0.5, sharpness: float = 20.0,
                 translation_keys: list[str] | tuple[str, ...] = (), translation_weight: float = 1.0,
                 translation_threshold: float = 0.3) -> None:
        super().__init__(input_key, in_dim, out_dim)
        self.translation_keys = list(translation_keys)
        self.translation_weight, self.translation_threshold = float(translation_weight), float(translation_threshold)
        self.direct_config, self.map_config = dict(direct), dict(map)
        self.threshold, self.keep_threshold, self.sharpness = float(threshold), float(keep_threshold), float(sharpness)
        self.direct = build_head(self.direct_config)  # the anchor's own head, reading its backbone's feature
        self.map = build_head(self.map_config)
        if (self.map.input_key, self.map.in_dim, self.map.out_dim) != (input_key, in_dim, out_dim):
            raise SpaceError(f"gated head: its map reads {self.map.input_key} {self.map.in_dim}->{self.map.out_dim}, "
                             f"expected {input_key} {in_dim}->{out_dim}")
        if self.direct.out_dim != out_dim:
            raise SpaceError(f"gated head: its direct head gives {self.direct.out_dim} dimensions, expected {out_dim}")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "direct": self.direct_config, "map": self.map_config,
                "threshold": self.threshold, "keep_threshold": self.keep_threshold, "sharpness": self.sharpness,
                **({"translation_keys": self.translation_keys, "translation_weight": self.translation_weight,
                    "translation_threshold": self.translation_threshold} if self.translation_keys else {})}

    def agreement(self, features: Features) -> torch.Tensor:
        """Per-row cosine of the direct and the mapped vector (high for a text the anchor reads)."""
        direct, mapped = self._parts(features)
        return (direct * mapped).sum(-1)

    def mapped(self, features: Features) -> torch.Tensor:
        """The encoder's vector carried into the anchor space (unit rows)."""
        return nn.functional.normalize(self.map(features).float(), dim=-1)

    def _parts(self, features: Features) -> tuple[torch.Tensor, torch.Tensor]:
        return nn.functional.normalize(self.direct(features).float(), dim=-1), self.mapped(features)

    def forward(self, features: Features) -> torch.Tensor:
        direct, mapped = self._parts(features)
        c = (direct * mapped).sum(-1, keepdim=True)
        keep = torch.sigmoid(self.sharpness * (c - self.keep_threshold))
        add = torch.sigmoid(self.sharpness * (c - self.threshold))
        out = mapped + add * direct
        if self.translation_keys:
            out = out + self.translation_weight * self._translation(features, mapped)
        return keep * direct + (1 - keep) * out

    def _translation(self, features: Features, mapped: torch.Tensor) -> torch.Tensor:
        """use · t: the machine translation that agrees best with the mapped vector (zero rows,
        i.e. no translation, never win)."""
        key = self.direct.input_key
        raw = torch.stack([features[k].float() for k in self.translation_keys], 1)  # [n, k, f]
        cands = nn.functional.normalize(self.direct({key: raw}).float(), dim=-1)
        agree = (cands * mapped[:, None, :]).sum(-1).masked_fill(raw.abs().sum(-1) == 0, -1.0)
        best, which = agree.max(1)
        use = torch.sigmoid(self.sharpness * (best - self.translation_threshold))
        return use[:, None] * cands[torch.arange(len(which)), which]


HEADS: dict[str, type[Head]] = {h.kind: h for h in (IdentityHead, LinearHead, MLPHead, ConSEHead, ResidualHead,
                                                    GatedMapHead)}


def build_head(config: dict[str, Any]) -> Head:
    """Rebuild an (untrained) head from its `config()`; load its state dict afterwards."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in HEADS:
        raise SpaceError(f"unknown head kind {kind!r}; known: {', '.join(HEADS)}")
    try:
        return HEADS[kind](**config)
    except TypeError as exc:
        raise SpaceError(f"bad config for {kind} head: {exc}") from exc

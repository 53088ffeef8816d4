"""`stack:<ref>,<ref>...`: several backbones read the same input side by side.

A tower has one backbone; a head that combines two encoders (the anchor's own text vector and a
multilingual encoder mapped into the anchor, `GatedMapHead`) needs both features of each segment.
The stack cuts an input with each member, pairs their segments one to one, and returns every
member's features under `<ref>` (single-output members) or `<ref>.<name>`. Members must cut an
input into the same number of segments (text encoders: one per text).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import load_backbone, register
from omnibind.errors import BackboneError, InputError
from omnibind.inputs import Input


def feature_key(ref: str, name: str, outputs: dict[str, int]) -> str:
    """Where a member's feature `name` appears in the stack's features."""
    return ref if len(outputs) == 1 else f"{ref}.{name}"


class StackBackbone(Backbone):
    def __init__(self, refs: list[str], modality: str) -> None:
        if len(refs) < 2 or len(set(refs)) != len(refs):
            raise BackboneError(f"stack: needs two or more different backbones, got {refs}")
        self.members = [load_backbone(r, modality) for r in refs]
        self.ref, self.modality = "stack:" + ",".join(refs), modality
        self.outputs = {feature_key(m.ref, k, m.outputs): w for m in self.members for k, w in m.outputs.items()}
        self.flush_batches = max(m.flush_batches for m in self.members)
        self.min_batch = max(m.min_batch for m in self.members)

    def segments(self, item: Input) -> Iterator[Any]:
        cuts = [list(m.segments(item)) for m in self.members]
        if len({len(c) for c in cuts}) != 1:
            raise InputError(item.source, f"the backbones of {self.ref} cut it into {[len(c) for c in cuts]} segments")
        yield from zip(*cuts)

    def sort_key(self, segment: Any) -> int | None:
        return self.members[0].sort_key(segment[0])

    def collate(self, segments: list[Any]) -> list[Any]:
        return [m.collate([s[i] for s in segments]) for i, m in enumerate(self.members)]

    def features(self, batch: list[Any]) -> Features:
        out: Features = {}
        for member, part in zip(self.members, batch):
            for name, value in member.features(part).items():
                out[feature_key(member.ref, name, member.outputs)] = value
        return out

    def preprocess_config(self) -> dict[str, Any]:
        return {m.ref: m.preprocess_config() for m in self.members}

    def describe(self) -> dict[str, Any]:
        weights = "; ".join(str(m.describe().get("weights", m.ref)) for m in self.members)
        return {**super().describe(), "weights": weights, "members": [m.describe() for m in self.members]}


@register("stack:")
def _stack(arg: str, modality: str) -> Backbone:
    return StackBackbone([r.strip() for r in arg.split(",") if r.strip()], modality)

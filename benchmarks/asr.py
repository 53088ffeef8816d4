"""Speech view (faster-whisper tiny.en): accuracy, speed, non-speech false transcripts, retrieval.

Why: the speech view is only worth its CPU time if its words find recordings better than the
audio tower alone, do not invent words for non-speech sounds, and stay fast and bounded on long
files. Measured here, on real data (Debian asterisk-core-sounds-en(-wav), tuxpaint-stamps-default,
sound-theme-freedesktop):

* WER on the Asterisk prompts (>= 3 words, unique: the suite's `asterisk-speech` selection), under
  three segment rules (none; Whisper's no-speech rule; + compression ratio), and the speed;
* how many non-speech sounds (Tux Paint effects, freedesktop theme sounds) get any transcript;
* transcript <-> speech retrieval with the ASR text as the item vector, the audio tower alone, and
  the fused item vector normalize(audio + w * mean(segment text vectors)): w chosen on one half
  of the prompts (fixed split by sha256 of the key), reported on the other half;
* the same fusion on Tux Paint test sounds (caption -> sound R@10 must not fall);
* a ~60 s and a ~10 min file made of held-out prompts: audio seconds per second, peak Python
  memory, and segment search (does the top segment cover the queried prompt?) for merge windows
  of 0 / 15 / 30 s.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/asr.py [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from omnibind.evaluate import datasets as ds
from omnibind.evaluate import metrics as M
from omnibind.views.speech import Heard, SpeechRule, SpeechView, merge

WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)
OFF = float("inf")
NO_TUNED = {"tuned_no_speech_prob": OFF}
RULES = {
    "none": SpeechRule(no_speech_prob=OFF, compression_ratio=OFF, **NO_TUNED),
    "whisper": SpeechRule(compression_ratio=OFF, **NO_TUNED),  # no_speech > 0.6 and logprob < -1
    "whisper+compression2.4": SpeechRule(compression_ratio=2.4, **NO_TUNED),  # ... or compression > 2.4
    "view-default": SpeechRule(),  # whisper + the tuned pair (tune_rule) + compression > 3
}
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
# Tux Paint "sound effects" that are spoken words (the dreidel letters, Apollo 11's first words):
# speech, so never counted as false transcripts.
SPOKEN_STAMPS = ("seasonal/hanukkah/dreydl-", "space/apollo_lander")


def half(key: str) -> str:
    """'tune' or 'held' for a prompt key: a fixed 50/50 split."""
    return "tune" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "held"


def normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (%): word edits / reference words."""
    edits = words = 0
    for ref, hyp in zip(refs, hyps):
        r, h = normalise(ref), normalise(hyp)
        row = list(range(len(h) + 1))
        for i, rw in enumerate(r, 1):
            prev, row[0] = row[0], i
            for j, hw in enumerate(h, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
        edits += row[-1]
        words += len(r)
    return 100.0 * edits / max(words, 1)


def hear_files(view: SpeechView, paths: list[Path]) -> tuple[list[list[Heard]], float, float]:
    """Unfiltered Whisper segments per file, audio seconds, CPU seconds of this process (decode
    included; on one thread the CPU time is the wall time of an idle machine, and is not
    inflated when other processes share the cores)."""
    from omnibind.inputs import load_file

    out, seconds, cpu = [], 0.0, 0.0
    for p in paths:
        t = time.process_time()
        clip = load_file(p).payload
        out.append(view.hear(clip))
        cpu += time.process_time() - t
        seconds += clip.duration
    return out, seconds, cpu


def kept(heard: list[Heard], rule: SpeechRule) -> list[Heard]:
    return [h for h in heard if rule.keeps(h)]


def text_vectors(space, heard: list[list[Heard]], rule: SpeechRule, window: float) -> np.ndarray:
    """Per item: the unit mean of its speech segments' text vectors (zeros when it has none)."""
    segs = [merge(kept(h, rule), window) for h in heard]
    texts = [s.text for ss in segs for s in ss]
    vecs = space.embed(texts) if texts else np.zeros((0, space.dim), np.float32)
    out, at = np.zeros((len(heard), space.dim), np.float32), 0
    for i, ss in enumerate(segs):
        if ss:
            out[i] = vecs[at:at + len(ss)].mean(0)
            at += len(ss)
    return out


def fuse(audio: np.ndarray, text: np.ndarray, w: float) -> np.ndarray:
    """normalize(audio + w * text): an item without speech keeps its audio vector."""
    v = audio + w * text
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-12), 0.0)


def both(queries: np.ndarray, items: np.ndarray) -> dict:
    r = M.retrieval_both_directions(queries, items, None, "transcript", "speech")
    return {d: {k: round(m[k], 4 if k == "MRR" else 2) for k in ("R@1", "R@5", "R@10", "MRR")} for d, m in r.items()}


def mean_r1(r: dict) -> float:
    return (r["transcript->speech"]["R@1"] + r["speech->transcript"]["R@1"]) / 2


def mean_mrr(r: dict) -> float:
    return (r["transcript->speech"]["MRR"] + r["speech->transcript"]["MRR"]) / 2


def asterisk(space, view: SpeechView, prompts: list, heard: list[list[Heard]], seconds: float, cpu: float) -> dict:
    """WER per rule, speed, and retrieval on the prompts."""
    refs = [p.transcript for p in prompts]
    report: dict = {"prompts": len(prompts), "audio_seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
                    "audio_seconds_per_cpu_second": round(seconds / cpu, 2), "rules": {}}
    for name, rule in RULES.items():
        hyps = [" ".join(h.text for h in kept(hs, rule)) for hs in heard]
        report["rules"][name] = {"WER": round(wer(refs, hyps), 2),
                                 "prompts_without_text": sum(not h.strip() for h in hyps)}
    report["without_text"] = [p.key for p, hs in zip(prompts, heard) if not kept(hs, view.rule)]
    report["examples"] = [{"ref": r, "asr": " ".join(h.text for h in kept(hs, view.rule))}
                          for r, hs in list(zip(refs, heard))[:5]]
    truth = space.embed(refs)
    asr = unit(text_vectors(space, heard, view.rule, view.window_seconds))
    audio = space.embed([p.wav for p in prompts])
    report["retrieval_all"] = {"asr_text": both(truth, asr), "audio_tower": both(truth, audio)}
    report["fusion"] = fusion(truth, audio, asr, [half(p.key) for p in prompts])
    w = report["fusion"]["chosen_w"]
    report["retrieval_all"][f"fused_w{w:g}"] = both(truth, fuse(audio, asr, w))  # the suite's task, views on
    return report


def tune_rule(speech: list[list[Heard]], noise: list[list[Heard]]) -> dict:
    """The second (no-speech, log-probability) pair, from tuning data only: speech = Asterisk tune
    half (single prompts and a 10-min file of them) and spoken Tux Paint train stamps; noise = the
    other Tux Paint train sounds. On a grid, the pairs with the fewest errors (noise clips left
    with text + speech segments dropped); among them the one in the middle (median threshold, then
    the median log-probability at it): the widest margin on both sides."""
    base = RULES["whisper"]
    segs = [h for hs in speech for h in kept(hs, base)]
    scored = {}
    for t, lp in [(t / 100, lp / 10) for t in range(30, 95, 5) for lp in range(-10, -1)]:
        rule = SpeechRule(compression_ratio=OFF, tuned_no_speech_prob=t, tuned_avg_logprob=lp)
        false = sum(bool(kept(hs, rule)) for hs in noise)
        scored[(t, lp)] = (false + sum(not rule.keeps(h) for h in segs), false)
    least = min(e for e, _ in scored.values())
    best = sorted(k for k, (e, _) in scored.items() if e == least)
    ts = sorted({t for t, _ in best})
    t = ts[(len(ts) - 1) // 2]
    lps = sorted(lp for tt, lp in best if tt == t)
    lp = lps[(len(lps) - 1) // 2]
    return {"speech_segments": len(segs), "noise_clips": len(noise), "tuned_no_speech_prob": t,
            "tuned_avg_logprob": lp, "errors": least, "tuning_false_clips": scored[(t, lp)][1],
            "tied_thresholds": [ts[0], ts[-1]], "tied_logprobs_at_threshold": [lps[0], lps[-1]],
            "view_default": [SpeechRule().tuned_no_speech_prob, SpeechRule().tuned_avg_logprob],
            "max_compression_ratio_of_tuning_speech": round(max(h.compression_ratio for h in segs), 2)}


def fusion(truth: np.ndarray, audio: np.ndarray, asr: np.ndarray, halves: list[str]) -> dict:
    """Choose w on the tune half (mean R@1 of both directions, then mean MRR, then the smaller w),
    report every w on the held half."""
    sides = {h: np.asarray([x == h for x in halves]) for h in ("tune", "held")}
    out: dict = {"n": {h: int(m.sum()) for h, m in sides.items()}, "tune": {}, "held": {}}
    for h, m in sides.items():
        out[h]["audio_tower"] = both(truth[m], audio[m])
        out[h]["asr_text"] = both(truth[m], asr[m])
        for w in WEIGHTS:
            out[h][f"fused_w{w:g}"] = both(truth[m], fuse(audio[m], asr[m], w))
    best = max(WEIGHTS, key=lambda w: (mean_r1(out["tune"][f"fused_w{w:g}"]), mean_mrr(out["tune"][f"fused_w{w:g}"]), -w))
    out["chosen_w"] = best
    out["held_at_chosen_w"] = out["held"][f"fused_w{best:g}"]
    return out


def non_speech(stamps: list, heard: list[list[Heard]], view: SpeechView) -> dict:
    """Non-speech sounds with any transcript, per rule and split (spoken stamps and freedesktop's
    spoken channel names counted apart)."""
    sets: dict = {}
    for split in ("train", "test"):
        sets[f"tuxpaint-{split}"] = [(s.key, hs) for s, hs in zip(stamps, heard)
                                     if s.split == split and not s.key.startswith(SPOKEN_STAMPS)]
    sets["tuxpaint-spoken"] = [(s.key, hs) for s, hs in zip(stamps, heard) if s.key.startswith(SPOKEN_STAMPS)]
    if FREEDESKTOP.is_dir():
        paths = sorted(FREEDESKTOP.glob("*.oga"))
        fd, _, _ = hear_files(view, paths)
        sets["freedesktop"] = [(p.name, hs) for p, hs in zip(paths, fd) if not p.name.startswith("audio-channel")]
        sets["freedesktop-spoken"] = [(p.name, hs) for p, hs in zip(paths, fd) if p.name.startswith("audio-channel")]
    out = {}
    for name, rows in sets.items():
        out[name] = {"clips": len(rows)}
        for rname, rule in RULES.items():
            hits = [(key, " ".join(h.text for h in kept(hs, rule))) for key, hs in rows if kept(hs, rule)]
            out[name][rname] = {"with_text": len(hits), "examples": hits[:10]}
    return out


def tuxpaint_fusion(space, view: SpeechView, stamps: list, heard: list[list[Heard]], w: float) -> dict:
    """Caption -> sound R@10 on Tux Paint test sounds, audio vectors vs fused with the chosen w."""
    test = [i for i, s in enumerate(stamps) if s.split == "test"]
    stamps, heard = [stamps[i] for i in test], [heard[i] for i in test]
    caps, audio = space.embed([s.caption for s in stamps]), space.embed([s.sound for s in stamps])
    asr = unit(text_vectors(space, heard, view.rule, view.window_seconds))
    before = M.retrieval_metrics(caps @ audio.T)
    after = M.retrieval_metrics(caps @ fuse(audio, asr, w).T)
    return {"n": len(stamps), "w": w, "sounds_with_speech": int((np.abs(asr).sum(1) > 0).sum()),
            "caption->sound R@10 audio": round(before["R@10"], 2), "caption->sound R@10 fused": round(after["R@10"], 2),
            "caption->sound R@1 audio": round(before["R@1"], 2), "caption->sound R@1 fused": round(after["R@1"], 2)}


def long_file(prompts: list, seconds: float, folder: Path) -> tuple[Path, list[tuple[str, float, float]]]:
    """Prompts (8 kHz) joined with 0.5 s of silence, cycled until `seconds`: (wav, [(text, start, end)])."""
    import soundfile as sf

    parts, spans, at, gap = [], [], 0.0, np.zeros(4000, np.float32)
    while at < seconds:
        for p in prompts:
            audio, rate = sf.read(str(p.wav), dtype="float32")
            spans.append((p.transcript, at, at + len(audio) / rate))
            parts += [audio, gap]
            at += (len(audio) + len(gap)) / rate
            if at >= seconds:
                break
    path = folder / f"long-{int(seconds)}s.wav"
    sf.write(str(path), np.concatenate(parts), 8000)
    return path, spans


def segment_search(space, heard: list[Heard], spans: list, rule: SpeechRule) -> dict:
    """Per merge window: is a segment covering the queried prompt ranked first / in the top 5?"""
    texts = sorted({t for t, _, _ in spans})
    queries = space.embed(texts)
    out = {}
    for window in (0.0, 15.0, 30.0):
        segs = merge(kept(heard, rule), window)
        vecs = space.embed([s.text for s in segs])
        order = np.argsort(-(queries @ vecs.T), axis=1)
        hit1 = hit5 = 0
        for q, text in enumerate(texts):
            mine = [(a, b) for t, a, b in spans if t == text]
            covers = [any(s.start < b and s.end > a for a, b in mine) for s in (segs[i] for i in order[q, :5])]
            hit1 += covers[0]
            hit5 += any(covers)
        out[f"window_{window:g}s"] = {"segments": len(segs), "mean_seconds": round(float(np.mean([s.end - s.start for s in segs])), 1),
                                     "hit@1": round(100 * hit1 / len(texts), 1), "hit@5": round(100 * hit5 / len(texts), 1)}
    return out


def hear_long(view: SpeechView, prompts: list, seconds: float, folder: Path) -> dict:
    """Transcribe a long file of `prompts`: heard segments, spans, speed and peak Python memory."""
    from omnibind.inputs import load_file

    path, spans = long_file(prompts, seconds, folder)
    tracemalloc.start()
    t, w = time.process_time(), time.perf_counter()
    clip = load_file(path).payload
    heard = view.hear(clip)
    cpu, wall = time.process_time() - t, time.perf_counter() - w
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hyp = " ".join(h.text for h in kept(heard, view.rule))
    return {"heard": heard, "spans": spans, "audio_seconds": round(clip.duration, 1), "cpu_seconds": round(cpu, 1),
            "wall_seconds": round(wall, 1), "audio_seconds_per_cpu_second": round(clip.duration / cpu, 2),
            "peak_python_MB": round(peak / 2**20, 1), "prompts": len(spans),
            "WER": {name: round(wer([" ".join(t for t, _, _ in spans)], [" ".join(h.text for h in kept(heard, r))]), 2)
                    for name, r in RULES.items()}, "hyp_words": len(hyp.split())}


def long_files(space, view: SpeechView, lengths: tuple[float, ...], limit: int | None, tune: dict) -> dict:
    """Speed, peak Python memory, WER and segment search on files of held-out prompts; the merge
    window is chosen on the tune file (best hit@1, then the shorter window)."""
    held = [p for p in ds.asterisk_prompts()[:limit] if half(p.key) == "held"]
    tuned = segment_search(space, tune["heard"], tune["spans"], view.rule)
    best = max(tuned, key=lambda k: (tuned[k]["hit@1"], -float(k[7:-1])))
    out: dict = {"tune_file": {"search": tuned, "chosen_window": best}}
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in lengths:
            row = hear_long(view, held, seconds, Path(tmp))
            row["search"] = segment_search(space, row.pop("heard"), row.pop("spans"), view.rule)
            out[f"{seconds:g}s"] = row
    return out


def table(report: dict) -> str:
    a, f = report["asterisk"], report["asterisk"]["fusion"]
    rows = [f"Asterisk: {a['prompts']} prompts, {a['audio_seconds']} s of speech, "
            f"{a['audio_seconds_per_cpu_second']} audio s per CPU s on {report['threads']} thread(s)"]
    rows += [f"  rule {k:<22} WER {v['WER']:6.2f}%  prompts without text {v['prompts_without_text']}"
             for k, v in a["rules"].items()]
    for name, r in a["retrieval_all"].items():
        rows.append(f"  all prompts, {name:<12} " + "  ".join(
            f"{d} R@1/5/10 {m['R@1']:.1f}/{m['R@5']:.1f}/{m['R@10']:.1f}" for d, m in r.items()))
    for side in ("tune", "held"):
        for name, r in f[side].items():
            rows.append(f"  {side} ({f['n'][side]}) {name:<12} mean R@1 {mean_r1(r):6.2f}  " + "  ".join(
                f"{d} R@10 {m['R@10']:.1f}" for d, m in r.items()))
    rows.append(f"  chosen w (tune half): {f['chosen_w']:g}")
    rows.append(f"Rule tuning: {json.dumps(report['rule_tuning'])}")
    for name, row in report["non_speech"].items():
        rows.append(f"Non-speech {name}: {row['clips']} clips; with text: " + ", ".join(
            f"{k} {row[k]['with_text']}" for k in RULES))
    rows.append(f"Tux Paint test fusion: {json.dumps(report['tuxpaint_fusion'])}")
    for name, row in report["long"].items():
        if name == "tune_file":
            rows.append(f"Long tune file: chosen window {row['chosen_window']}, search {json.dumps(row['search'])}")
            continue
        rows.append(f"Long {name} (held): {row['audio_seconds_per_cpu_second']} audio s per CPU s, peak Python "
                    f"{row['peak_python_MB']} MB, WER {json.dumps(row['WER'])}, search {json.dumps(row['search'])}")
    return "\n".join(rows)


def run(space, view: SpeechView, limit: int | None, lengths: tuple[float, ...]) -> dict:
    prompts = ds.asterisk_prompts()[:limit]
    heard, seconds, cpu = hear_files(view, [p.wav for p in prompts])
    stamps = ds.tuxpaint_sounds()
    sounds, _, _ = hear_files(view, [s.sound for s in stamps])
    spoken = [s.key.startswith(SPOKEN_STAMPS) for s in stamps]
    with tempfile.TemporaryDirectory() as tmp:
        tune_file = hear_long(view, [p for p in prompts if half(p.key) == "tune"], max(lengths), Path(tmp))
    speech = [hs for p, hs in zip(prompts, heard) if half(p.key) == "tune"] + [tune_file["heard"]]
    speech += [hs for s, hs, sp in zip(stamps, sounds, spoken) if sp and s.split == "train"]
    noise = [hs for s, hs, sp in zip(stamps, sounds, spoken) if not sp and s.split == "train"]
    report: dict = {"rule_tuning": tune_rule(speech, noise)}
    report["asterisk"] = asterisk(space, view, prompts, heard, seconds, cpu)
    report["non_speech"] = non_speech(stamps, sounds, view)
    report["tuxpaint_fusion"] = tuxpaint_fusion(space, view, stamps, sounds, report["asterisk"]["fusion"]["chosen_w"])
    report["long"] = long_files(space, view, lengths, limit, tune_file)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N Asterisk prompts only")
    ap.add_argument("--threads", type=int, default=1, help="CTranslate2 / torch threads")
    ap.add_argument("--long", type=float, nargs="*", default=[60.0, 600.0], help="long-file lengths in seconds")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    import torch

    import omnibind

    torch.set_num_threads(args.threads)
    space, view = omnibind.load_space("default"), SpeechView(cpu_threads=args.threads)
    t = time.perf_counter()
    report = {"threads": args.threads, **run(space, view, args.limit, tuple(args.long))}
    report["total_seconds"] = round(time.perf_counter() - t, 1)
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

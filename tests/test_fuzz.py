"""Issue 13's fuzz, short mode: ~1,000 hostile files (empty, random bytes, cut at many points,
misnamed, bit-flipped, huge declared sizes and durations, 0/1 Hz, NaN/inf WAVs, UTF-16/32, binary,
huge lines, special files) through `space.embed(on_error="skip")`, `ingest` (mixed with good files)
and `POST /v1/embed`. Each must be a typed InputError or a success with a finite vector, none over
10 s, the process never over 1 GB above its warmed-up size, and every good file stored.

It runs `benchmarks/fuzz.py` in a fresh process: peak RSS is measured there, and a decoder that
crashes the interpreter fails this test instead of ending the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)
def test_fuzz_short_mode(tmp_path):
    out = tmp_path / "fuzz.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMNIBIND_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--json", str(out),
                          "--keep", str(tmp_path / "files")], env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["problems"] == [], result["problems"][:20]
    assert run.returncode == 0
    embed = result["embed"]
    assert embed["files"] >= 1000
    assert embed["crashes"] == [] and embed["too_slow"] == [] and embed["good_refused"] == []
    assert embed["max_seconds"] < 60 and result["max_rss_growth_mb"] < 1024  # a 1 MB text: 1,000 chunks (fuzz.py)
    assert set(embed["categories"]) >= {"empty", "1-3 random bytes", "truncated", "wrong extension", "bit-flipped",
                                        "huge declared size", "huge declared duration", "sample rates",
                                        "NaN/inf audio", "UTF-16/32 text", "binary/NUL", "huge lines"}
    assert embed["categories"]["NaN/inf audio"].get("ok", 0) == 0
    # the only cut accepted: a GIF missing just its trailer byte (nothing lost; old encoders omit it)
    assert all(name.startswith("cut-gif-1-of-") for name in embed["truncated_accepted"])
    ingest = result["ingest"]
    assert ingest["crash"] is None and ingest["good_missing"] == [] and ingest["good"] > 0
    assert set(ingest["specials_reported"]) >= {"fifo.wav", "socket.mp3", "dangling.png"}
    assert result["server"]["bad"] == [] and set(result["server"]["statuses"]) <= {"200", "413", "422"}

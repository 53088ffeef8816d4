"""Crash safety: `omnibind ingest` killed with SIGKILL at random points, then resumed, holds every
file exactly once with the vectors a clean ingest makes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import draw_image, write_wav
from omnibind.collection import META_FILE, Collection
from omnibind.ingest import ingest

KILLS = 4


def make_files(root: Path) -> Path:
    root.mkdir()
    for i in range(40):
        (root / f"note-{i:02d}.txt").write_text(f"Note number {i}: " + " ".join(["words"] * (i % 7 + 1)))
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "pink"]
    for i in range(16):
        draw_image("circle" if i % 2 else "square", 64 + i, colours[i % 8]).save(root / f"img-{i:02d}.png")
    for i in range(4):
        write_wav(root / f"tone-{i}.wav", 1.0, 220 * (i + 1))
    return root


def rows(path: Path) -> dict[str, np.ndarray]:
    coll = Collection.open(path, create=False)
    t = coll.column("id", "vector")
    ids = t.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "an item is stored twice"
    return dict(zip(ids, np.array(t.column("vector").to_pylist(), dtype=np.float32)))


def _commits(target: Path) -> int:
    """Versions of the items table (1 = created empty): a cheap look at the ingest's progress."""
    versions = target / "db" / "items.lance" / "_versions"
    return len(list(versions.glob("*.manifest"))) if versions.is_dir() else 0


def test_sigkill_mid_ingest_then_resume(space, tmp_path: Path):
    folder = make_files(tmp_path / "files")
    clean = Collection.open(tmp_path / "clean", space=space)
    assert ingest(clean, folder, batch_size=3).failed == []
    expected = rows(tmp_path / "clean")
    assert len(expected) == 60

    target = tmp_path / "crashed"
    cmd = [sys.executable, "-m", "omnibind", "ingest", str(folder), "--collection", str(target), "--batch-size", "3"]
    env = {**os.environ, "OMNIBIND_HOME": str(tmp_path / "home")}
    rng = random.Random(7)
    partial_counts = []
    for _ in range(KILLS):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _commits(target) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until the first batch is committed, then kill at a random moment
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (target / META_FILE).exists():
            got = rows(target)
            partial_counts.append(len(got))
            for key, vector in got.items():  # every committed row is whole and right
                np.testing.assert_allclose(vector, expected[key], atol=1e-5, err_msg=key)
    print(f"rows after each kill: {partial_counts} of 60")
    assert any(0 < n < 60 for n in partial_counts), f"no kill landed mid-ingest: {partial_counts}"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = rows(target)
    assert sorted(final) == sorted(expected)
    for key, vector in final.items():
        np.testing.assert_allclose(vector, expected[key], atol=1e-5, err_msg=key)

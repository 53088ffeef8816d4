"""Long audio: ten minutes of sound embed in bounded memory, deterministically.

The file is written in chunks, so the test itself never holds it decoded. Decoded at 44.1 kHz
as float32 it would be ~111 MB; the audio tower streams fixed windows, so embedding it must
raise the process's peak memory by far less than that, and no more than a short clip does.
"""

from __future__ import annotations

import gc
import resource
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import write_wav

RATE = 44100
SECONDS = 10 * 60 + 30  # a bit over ten minutes
DECODED_BYTES = SECONDS * RATE * 4  # float32 mono: ~111 MB
MAX_GROWTH = 60 * 1024**2


def write_long_tone(path: Path, seconds: int = SECONDS, rate: int = RATE) -> Path:
    """A tone whose pitch changes every second, written one second at a time."""
    t = np.arange(rate) / rate
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as fh:
        for s in range(seconds):
            freq = 220.0 * 2 ** ((s % 24) / 12)
            fh.write((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    return path


def _peak_rss_bytes() -> int:
    """Peak resident set size since the last reset (VmHWM), or since the process started."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its own peak RSS (clear_refs 5); say whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_ten_minutes_of_audio_embed_in_bounded_memory_and_deterministically(space, tmp_path):
    path = write_long_tone(tmp_path / "long.wav")
    info = sf.info(path)
    assert info.frames == SECONDS * RATE and info.duration >= 600

    # Every batch of 2.3 s windows has a working set of its own (torch activations: a few
    # hundred MB at batch_size=32, tens at 8) that the allocator hands back between batches,
    # and the peak wobbles by some MB from batch to batch. So: a small batch, a warm-up, and a
    # reference peak from 80 s of sound (more than one full batch); ten minutes must need
    # little more than that. Holding the decoded file would add 111 MB.
    # The audio tower alone (views=()): the speech view streams the same file in 60 s pieces and has
    # its own bounds (tests/test_view_speech.py); its VAD buffers would blur this measurement.
    batch = 8
    short = write_wav(tmp_path / "short.wav", seconds=80, rate=RATE)
    space.embed([short], batch_size=batch, views=())  # models loaded, batch shapes seen once
    short_growth, _ = _peak_growth(lambda: space.embed([short], batch_size=batch, views=()))

    tracemalloc.start()
    try:
        long_growth, first = _peak_growth(lambda: space.embed([path], batch_size=batch, views=()))
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert first.shape == (1, space.dim)
    assert np.isfinite(first).all()
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    # Python/NumPy allocations: decoded, resampled and windowed audio all live in NumPy arrays
    assert traced_peak < MAX_GROWTH, f"NumPy/Python peak of {traced_peak / 2**20:.0f} MB while embedding"
    # the whole process, torch included
    assert long_growth - short_growth < MAX_GROWTH, (
        f"peak RSS rose {long_growth / 2**20:.0f} MB embedding {DECODED_BYTES / 2**20:.0f} MB of decoded "
        f"audio, against {short_growth / 2**20:.0f} MB for 80 s"
    )

    second = space.embed([path], batch_size=batch, views=())
    assert np.array_equal(first, second)


def _peak_growth(call):
    """(how far the process's peak RSS rose above its current RSS during `call`, its result)."""
    gc.collect()
    if not _reset_peak_rss():
        pytest.skip("cannot reset the peak RSS of this process (needs Linux /proc/self/clear_refs)")
    before = _peak_rss_bytes()
    result = call()
    return _peak_rss_bytes() - before, result

"""The out-of-domain sound set: its committed captions, its loader and its two evaluation tasks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from omnibind.evaluate import ood_sounds as ood
from omnibind.evaluate.datasets import DataMissingError


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _load() -> list[ood.OodSound]:
    try:
        return ood.load()
    except DataMissingError as exc:
        pytest.skip(str(exc))


def test_table_is_well_formed():
    rows = ood.rows()
    assert [r.source for r in rows].count("gm") == 128
    assert sorted(int(r.key) for r in rows if r.source == "gm") == list(range(128))
    drums = [int(r.key) for r in rows if r.source == "gm-drum"]
    assert all(35 <= k <= 81 for k in drums) and len(set(drums)) == len(drums)
    assert {r.source for r in rows} == set(ood.PACKAGES)
    captions = [r.caption for r in rows]
    assert all(c and c == c.strip() and len(c.split()) >= 2 for c in captions)
    assert len(set(map(_words, captions))) == len(captions), "one caption per sound: retrieval needs them distinct"
    labels = [r.label for r in rows if r.source == "gm"]
    assert all(labels) and len(set(labels)) == 128
    assert not any(r.label for r in rows if r.source != "gm")


def test_captions_are_written_not_copied_from_names():
    for r in ood.rows():
        words = _words(r.caption)
        assert words not in {_words(r.name), _words(r.key), _words(r.label)}, r
        assert words != _words(f"a {r.name}") and words != _words(f"the {r.name}"), r


def test_spoken_and_abstract_theme_sounds_are_left_out():
    keys = {r.key for r in ood.rows() if r.source == "freedesktop"}
    assert not any(k.startswith("audio-channel") for k in keys)  # speech
    assert not keys & {"dialog-information", "dialog-warning", "complete", "message", "service-login"}


def test_midi_varlen_encoding():
    assert ood._varlen(0) == b"\x00" and ood._varlen(127) == b"\x7f"
    assert ood._varlen(128) == b"\x81\x00" and ood._varlen(960) == b"\x87\x40"


def test_load_on_this_machine():
    sounds = _load()
    assert len(sounds) == len(ood.rows())
    assert all(Path(s.path).is_file() and s.package in ood.LICENCES for s in sounds)
    assert not any("tuxpaint" in str(s.path) for s in sounds)
    import soundfile as sf

    gm = [s for s in sounds if s.source != "freedesktop"]
    for s in gm[:: len(gm) // 6]:
        audio, rate = sf.read(str(s.path))
        assert rate == ood.RATE and 0.5 <= len(audio) / rate <= 3.0 and 0.4 < np.abs(audio).max() <= 0.51


def test_rendering_is_deterministic_and_cached(tmp_path, monkeypatch):
    _load()
    items = [r for r in ood.rows() if r.source != "freedesktop"][:3]
    monkeypatch.setenv("OMNIBIND_CACHE", str(tmp_path / "a"))
    first = ood.render_gm(items)
    monkeypatch.setenv("OMNIBIND_CACHE", str(tmp_path / "b"))
    second = ood.render_gm(items)
    assert [p.read_bytes() for p in first.values()] == [p.read_bytes() for p in second.values()]
    monkeypatch.setattr(ood, "render_midi", lambda *a: pytest.fail("cached items are rendered again"))
    assert ood.render_gm(items) == second


def test_missing_soundfont_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(ood, "SOUNDFONT", tmp_path / "none.sf2")
    with pytest.raises(DataMissingError, match="timgm6mb-soundfont"):
        ood.load()


@pytest.mark.parametrize("task", [ood.retrieval_task, ood.instrument_task])
def test_tasks_run_on_five_items(space, task):
    from omnibind.evaluate.suite import CachedEmbedder

    _load()
    result = task(CachedEmbedder(space), 5)
    assert result.dataset["n"] == 5 and result.dataset["source"].startswith("debian:")
    if result.kind == "retrieval":
        assert result.task == "ood-sounds"
        assert set(result.metrics) == {"caption->sound", "sound->caption"}
        assert all(0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100 for m in result.metrics.values())
    else:
        assert result.task == "ood-instruments" and 0 <= result.metrics["accuracy"] <= 1

"""The sound bank: caption rules, manifest integrity (no evaluation data), loader errors, rcc reading."""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import pytest

from omnibind.bind import sound_bank as sb
from omnibind.evaluate.datasets import DataMissingError, stamp_split

ROOT = Path(__file__).resolve().parents[1]


def _script():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("make_sound_bank", ROOT / "scripts" / "make_sound_bank.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_base_stem_strips_numbering_and_take_suffixes():
    msb = _script()
    assert msb.base_stem("dog_bark_02.ogg") == "dog_bark"
    assert msb.base_stem("/x/horse-hit-1.ogg") == "horse_hit"
    assert msb.base_stem("bird1_00.ogg") == "bird"
    assert msb.base_stem("a.rcc#res/LRBark_3_LA_cut.ogg") == "bark"
    assert msb.base_stem("LRFrogsInPondDuringStormLACut.ogg") == "frogs_in_pond_during_storm"


def test_caption_rule_map_first_then_noun_verb_else_drop():
    msb = _script()
    assert msb.caption_for("dog_bark", {}) == "a dog barking"
    assert msb.caption_for("owl_hoot", {}) is None  # 'hoot' is no known verb: dropped, not invented
    assert msb.caption_for("click", {}) is None
    assert msb.caption_for("dog_bark", {"dog_bark": None}) is None  # the map can drop on purpose
    assert msb.caption_for("bow", {"bow": "an arrow shot from a bow"}) == "an arrow shot from a bow"
    assert msb.caption_for("elephant_roar", {}) == "an elephant roaring"


def test_manifest_integrity():
    bank = sb.rows()
    assert len(bank) >= 1000
    packages = {s.package for s in bank}
    assert not packages & sb.EXCLUDED_PACKAGES
    assert not any("/tuxpaint/stamps/" in s.path or "freedesktop" in s.path or "TimGM6mb" in s.path for s in bank)
    assert len({s.path for s in bank}) == len(bank)
    groups: dict[str, set[str]] = {}
    for s in bank:
        assert s.group.startswith(f"{s.package}:") and s.licence and s.caption[0].islower()
        groups.setdefault(s.group, set()).add(s.package)
    assert len(groups) < len(bank)  # near-duplicates share a group
    assert len(packages) >= 5


def test_manifest_has_no_tux_test_key():
    for s in sb.rows():
        if "tuxpaint/stamps" in s.path:
            key = s.path.split("/stamps/", 1)[1].rsplit(".", 1)[0]
            assert stamp_split(key) != "test"


def test_rows_reject_bad_header_and_empty_cells():
    with pytest.raises(DataMissingError):
        sb.rows("a\tb\n")
    with pytest.raises(DataMissingError):
        sb.rows("\t".join(sb.HEADER) + "\nx\t\tc\tg\tl\n")


def test_missing_package_error_names_the_apt_package(tmp_path):
    row = sb.BankSound("widelands-data", str(tmp_path / "nope.ogg"), "a wolf howling", "widelands-data:wolf", "GPL-2+")
    with pytest.raises(DataMissingError, match="apt-get install --no-install-recommends widelands-data"):
        sb.load([row])
    gm = sb.BankSound("fluid-soundfont-gm", f"{tmp_path}/none.sf2#gm:040:60", "a violin", "g:1", "MIT")
    with pytest.raises(DataMissingError, match="fluid-soundfont-gm"):
        sb.load([gm])


def test_load_refuses_evaluation_packages(tmp_path):
    row = sb.BankSound("sound-theme-freedesktop", str(tmp_path / "bell.oga"), "a bell", "x:bell", "CC")
    with pytest.raises(DataMissingError, match="evaluation data"):
        sb.load([row])


def _rcc(files: dict[str, bytes]) -> bytes:
    """A version-2 Qt resource archive of one directory holding `files` (first compressed)."""
    names, data, nodes = b"", b"", []
    entries = list(files.items())

    def name(n: str) -> int:
        nonlocal names
        off = len(names)
        names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")
        return off

    nodes.append(struct.pack(">IHII", 0, 2, 1, 1) + bytes(8))  # root: 1 child at node 1
    nodes.append(struct.pack(">IHII", name("res"), 2, len(entries), 2) + bytes(8))
    for i, (n, blob) in enumerate(entries):
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if i == 0 else blob
        nodes.append(struct.pack(">IHHHI", name(n), 1 if i == 0 else 0, 0, 0, len(data)) + bytes(8))
        data += struct.pack(">I", len(stored)) + stored
    tree = b"".join(nodes)
    head = 24
    return b"qres" + struct.pack(">IIIII", 2, head, head + len(tree), head + len(tree) + len(data), 0) + tree + data + names


def test_rcc_members_and_read(tmp_path):
    path = tmp_path / "a.rcc"
    path.write_bytes(_rcc({"cow.ogg": b"moo" * 50, "dog.wav": b"woof"}))
    assert sb.rcc_members(path) == ["res/cow.ogg", "res/dog.wav"]
    assert sb.rcc_read(path, "res/cow.ogg") == b"moo" * 50
    assert sb.rcc_read(path, "res/dog.wav") == b"woof"
    with pytest.raises(DataMissingError):
        sb.rcc_read(path, "res/cat.ogg")


def test_midi_track_slots_and_drum_channel():
    track, slots = sb._midi_track([(40, 60), (-1, 36)])
    assert slots == [(0.0, sb.NOTE_SLOT), (sb.NOTE_SLOT, sb.DRUM_SLOT)]
    assert bytes([0xC0, 40]) in track and bytes([0x99, 36, 100]) in track and track.endswith(b"\xff\x2f\x00")
    assert sb._gm_spec("/f.sf2#gm:040:60") == ("/f.sf2", 40, 60)
    assert sb._gm_spec("/f.sf2#drum:036") == ("/f.sf2", -1, 36)


def test_write_clips_skips_silence(tmp_path):
    import numpy as np

    audio = np.zeros(sb.RATE * 4, np.float32)
    audio[100:200] = 0.3
    silent = sb._write_clips(audio, [(0.0, 2.0), (2.0, 2.0)], [tmp_path / "a.wav", tmp_path / "b.wav"], tmp_path)
    assert silent == ["b.wav"] and (tmp_path / "a.wav").is_file() and not (tmp_path / "b.wav").exists()

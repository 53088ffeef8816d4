"""Out-of-domain image sets: the committed captions table is well formed, captions were written
by looking (no file-name words), the photos load and verify on a machine with the packages, and
the task runs through the suite's retrieval scoring."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from PIL import Image

from omnibind.errors import OmnibindError
from omnibind.evaluate import ood_images as ood

# Words too common to say a caption was copied from a file name.
STOP = {"the", "and", "for", "with", "from", "image", "photo", "original", "input", "result", "sample", "tutorial", "data"}


def _name_words(path: Path) -> set[str]:
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", path.stem)  # camelCase -> words
    return {w for w in re.split(r"[^a-z]+", stem.lower()) if len(w) >= 3 and w not in STOP}


def _copied(caption: str, names: set[str]) -> set[str]:
    """Caption words that are a file-name word, or share a 4+ letter stem with one (seed/seeding)."""
    words = {w for w in re.split(r"[^a-z]+", caption.lower()) if len(w) >= 3}
    return {w for w in words for n in names
            if w == n or (min(len(w), len(n)) >= 4 and (w.startswith(n) or n.startswith(w)))}


def test_table_is_well_formed():
    rows = ood.rows()
    assert len(rows) >= 100
    assert len({r.path for r in rows}) == len(rows), "a photo is listed twice"
    assert len({r.sha256 for r in rows}) == len(rows), "the same bytes under two paths"
    assert len({r.caption for r in rows}) == len(rows), "two photos share a caption"
    for r in rows:
        assert r.set in ood.SETS and r.package and r.license, r
        assert r.path.is_absolute(), r.path
        assert re.fullmatch(r"[0-9a-f]{64}", r.sha256), r.path
        assert len(r.caption.split()) >= 4 and r.caption == r.caption.strip() and "\t" not in r.caption, r.path
    assert {r.set for r in rows} == set(ood.SETS)
    assert min(sum(r.set == s for r in rows) for s in ood.SETS) >= 15


def test_captions_do_not_copy_file_name_words():
    copied = {str(r.path): _copied(r.caption, _name_words(r.path)) for r in ood.rows()}
    assert not {p: w for p, w in copied.items() if w}


def test_the_name_check_can_fail():
    assert _copied("fluffy white seed heads", _name_words(Path("/x/seeding_by_Clements_Engelhardt.jpg"))) == {"seed"}
    assert _copied("a red city bus", _name_words(Path("/x/bus_det.jpg"))) == {"bus"}
    assert _copied("a red car", _name_words(Path("/x/licensePlate.jpg"))) == set()


def _table(tmp_path: Path, rows: list[tuple[str, ...]]) -> Path:
    tsv = tmp_path / "t.tsv"
    tsv.write_text("\t".join(ood.COLUMNS) + "\n" + "".join("\t".join(r) + "\n" for r in rows), "utf-8")
    return tsv


def test_load_verifies_checksums_and_names_missing_packages(tmp_path: Path):
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (8, 8), "red").save(good)
    Image.new("RGB", (8, 8), "blue").save(bad)
    sha = hashlib.sha256(good.read_bytes()).hexdigest()
    tsv = _table(tmp_path, [("wallpapers", "pkg-a", str(good), sha, "a red square", "CC0"),
                            ("wallpapers", "pkg-b", str(bad), sha, "a blue square", "CC0")])
    with pytest.warns(ood.OodChecksumWarning, match="b.png"):
        items = ood.load("wallpapers", tsv)
    assert [(i.path, i.caption, i.package) for i in items] == [(good, "a red square", "pkg-a")]
    assert ood.load("opencv-photos", tsv) == []
    gone = _table(tmp_path, [("wallpapers", "pkg-gone", str(tmp_path / "none.jpg"), sha, "nothing here", "CC0")])
    with pytest.raises(ood.OodDataMissingError, match="pkg-gone"):
        ood.load(None, gone)
    with pytest.raises(OmnibindError, match="unknown"):
        ood.load("tux", tsv)


def _installed() -> list[ood.OodImage]:
    try:
        return ood.load()
    except ood.OodDataMissingError as e:
        pytest.skip(str(e))


def test_every_listed_photo_loads_here():
    items = _installed()
    assert len(items) >= 100 and len(items) == len(ood.rows())
    with Image.open(items[0].path) as im:
        assert min(im.size) >= 64


def test_task_scores_five_photos_with_the_default_space(space, tmp_path: Path):
    _installed()
    from omnibind.evaluate.suite import CachedEmbedder

    result = ood.tasks()["ood-wallpapers"](CachedEmbedder(space, tmp_path / "features"), 5)
    assert result.task == "ood-wallpapers" and result.kind == "retrieval" and result.dataset["n"] == 5
    assert "debian:lomiri-wallpapers-16.04" in result.dataset["source"]
    for direction in ("caption->image", "image->caption"):
        m = result.metrics[direction]
        assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100 and m["R@5"] == 100  # 5 candidates

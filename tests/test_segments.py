"""Segments in the collection: written with their item in one commit, replaced and deleted with
it, searched with the item ranked by its best row, re-made when the collection's views change,
and a format-1 collection migrated in place. A toy view (a text's lines) keeps this fast; the
real views have their own tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnibind import views
from omnibind.collection import META_FILE, Collection
from omnibind.ingest import ingest
from omnibind.scale.ray_ingest import _complete_items
from omnibind.search import search
from conftest import LinesView
from omnibind.views import Segment


NOTE = "The kettle whistles on the stove.\nA red fox runs across the snowy field.\nTaxes are due in April."


def _notes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "long.txt").write_text(NOTE, encoding="utf-8")
    (folder / "other.txt").write_text("a recipe for lemon cake with butter and sugar", encoding="utf-8")
    (folder / "third.txt").write_text("the history of the roman empire", encoding="utf-8")
    return folder


def test_segments_are_stored_searched_and_located(space, tmp_path: Path, lines_view):
    c = Collection.open(tmp_path / "c", space)
    report = ingest(c, _notes(tmp_path / "notes"), views="lines")
    assert (report.added, report.segments) == (3, 3) and len(c) == 3
    long_id = str((tmp_path / "notes" / "long.txt").resolve())
    segs = c.segments(long_id)
    assert [s["text"] for s in segs] == NOTE.split("\n")
    assert [(s["char_start"], s["char_end"]) for s in segs] == [(0, 33), (34, 72), (73, 96)]
    hits = search(c, "a fox running through snow", k=3)
    assert len({h.id for h in hits}) == len(hits) == 3  # items, not rows
    assert hits[0].id == long_id and hits[0].segment["text"] == "A red fox runs across the snowy field."
    assert hits[0].segment["location"] == "characters 34–72" and hits[0].fields["text"] == NOTE
    assert json.loads(json.dumps(hits[0].to_dict()))["segment"]["chars"] == [34, 72]


def test_the_item_vector_is_the_mean_of_its_chunks(space, tmp_path: Path, lines_view):
    (got,) = space.segments([NOTE], views=["lines"])
    lines = space.embed(NOTE.split("\n"), views=())
    mean = lines.mean(axis=0)
    assert np.allclose(got.vector, mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(space.embed([NOTE], views=["lines"])[0], got.vector, atol=1e-6)
    assert not np.allclose(space.embed([NOTE], views=())[0], got.vector, atol=1e-3)


def test_a_changed_item_replaces_its_segments_and_delete_takes_them(space, tmp_path: Path, lines_view):
    folder = _notes(tmp_path / "notes")
    c = Collection.open(tmp_path / "c", space)
    ingest(c, folder, views="lines")
    rows = c.table.count_rows()
    (folder / "long.txt").write_text("only one line now\nand a second", encoding="utf-8")
    ingest(c, folder)
    long_id = str((folder / "long.txt").resolve())
    assert [s["text"] for s in c.segments(long_id)] == ["only one line now", "and a second"]
    assert c.table.count_rows() == rows - 1
    assert c.delete([long_id]) == 1 and c.segments(long_id) == [] and c.table.count_rows() == 2


def test_changing_the_views_re_runs_unchanged_files(space, tmp_path: Path, lines_view):
    folder = _notes(tmp_path / "notes")
    c = Collection.open(tmp_path / "c", space)
    ingest(c, folder, views="none")
    assert c.table.count_rows() == 3 and c.views == ()
    LinesView.calls = 0
    report = ingest(c, folder, views="lines")
    assert report.updated == 3 and report.segments == 3 and LinesView.calls == 3
    assert json.loads((c.path / META_FILE).read_text())["views"] == ["lines"]
    again = ingest(c, folder)
    assert again.unchanged == 3 and again.embedded == 0


def test_a_format_1_collection_is_migrated_in_place(space, tmp_path: Path):
    c = Collection.open(tmp_path / "c", space)
    c.add(["a cat on a mat", "a dog in the fog"])
    cols = ["item", "kind", "start", "end", "page", "char_start", "char_end", "views"]
    c.table.drop_columns(cols)  # what version 1 wrote
    meta = json.loads((c.path / META_FILE).read_text())
    meta["format_version"] = 1
    meta.pop("views")
    (c.path / META_FILE).write_text(json.dumps(meta))
    old = Collection.open(tmp_path / "c", space)
    assert len(old) == 2 and old.views == () and set(cols) <= set(old.table.schema.names)
    assert search(old, "a kitten", k=1)[0].fields["text"] == "a cat on a mat"


def test_ray_batches_commit_only_whole_items():
    rows = [{"id": "a", "item": "a"}, {"id": "a#chunk/0", "item": "a"}, {"id": "b", "item": "b"}]
    parts = {"a": 3, "b": 1}
    done, waiting = _complete_items(rows, parts)
    assert [r["id"] for r in done] == ["b"] and len(waiting) == 2
    done, waiting = _complete_items(waiting + [{"id": "a#chunk/1", "item": "a"}], parts)
    assert len(done) == 3 and waiting == []


def test_cli_and_http_show_where_the_match_is(space, tmp_path: Path, lines_view):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from omnibind.cli import app
    from omnibind.server import ServerSettings, create_app

    folder = _notes(tmp_path / "notes")
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", str(folder), "-c", str(tmp_path / "c"), "--views", "lines"],
                         env={"COLUMNS": "200"})
    assert done.exit_code == 0 and "3 segments" in done.output, done.output
    found = runner.invoke(app, ["search", "a fox running through snow", "-c", str(tmp_path / "c"), "-k", "1"],
                          env={"COLUMNS": "200"})
    assert "long.txt characters 34–72: 'A red fox runs across the snowy field.'" in found.output, found.output
    c = Collection.open(tmp_path / "c", space)
    settings = ServerSettings(collection=str(tmp_path / "c"), roots=[folder], home=tmp_path / "home")
    with TestClient(create_app(settings, "t0ken", c), base_url="http://localhost") as client:
        body = client.post("/v1/search", json={"text": "a fox running through snow", "k": 1}).json()
    assert body["results"][0]["segment"]["text"] == "A red fox runs across the snowy field."
    assert body["results"][0]["segment"]["chars"] == [34, 72]


def test_k_items_come_back_even_when_one_item_owns_the_nearest_rows(space, tmp_path: Path, lines_view):
    folder = _notes(tmp_path / "notes")
    (folder / "foxes.txt").write_text("\n".join(f"fox sighting number {n} in the snow" for n in range(40)))
    c = Collection.open(tmp_path / "c", space)
    ingest(c, folder, views="lines")
    for exact in (None, True):  # in memory, and through LanceDB
        hits = search(c, "a fox in the snow", k=4, exact=exact, where="size > 0" if exact else None)
        assert len(hits) == 4 and len({h.id for h in hits}) == 4
        assert hits[0].id.endswith("foxes.txt") and hits[0].segment["kind"] == "chunk"
    whole = search(c, "taxes due in april", k=1)[0]
    assert whole.segment is not None and whole.segment["text"] == "Taxes are due in April."


class SignView:
    """Words 'STOP HERE' on the one red image: a lone text-like segment among many images."""

    name = "signs"
    modalities = ("image",)
    shapes_vector = False

    def segments(self, item, space):
        red = item.payload.convert("RGB").getpixel((48, 48)) == (255, 0, 0)
        return [Segment("ocr", text="STOP HERE")] if red else []


def test_a_few_words_among_many_images_do_not_switch_search_to_raw_cosine(space, tmp_path: Path):
    from conftest import draw_image

    views.register("signs", SignView)
    try:
        folder = tmp_path / "images"
        folder.mkdir()
        colours = ["red"] + [f"#{(37 * n) % 200:02x}{(91 * n) % 200:02x}{(53 * n) % 200 + 40:02x}" for n in range(1, 25)]
        for n, colour in enumerate(colours):
            draw_image("circle" if n % 2 else "square", 96, colour).save(folder / f"{n:02d}.png")
        c = Collection.open(tmp_path / "c", space)
        ingest(c, folder, views="signs")
        assert c.group_counts() == {"image": 25, "text": 1}
        hits = search(c, "stop here", k=3)
        assert hits[0].kind == "strength"  # the lone text group is calibrated through the space's prior
        assert hits[0].id.endswith("00.png") and hits[0].segment["text"] == "STOP HERE"
        assert not list(c.path.glob("reference-text-*.npy"))
        full = c.space.calibration
        c.space.calibration = {k: v[:2] for k, v in full.items()}  # fits made before priors existed
        try:
            again = search(c, "stop here", k=3)
        finally:
            c.space.calibration = full
        assert again[0].kind == "strength" and again[0].id.endswith("00.png")
        assert list(c.path.glob("reference-text-*.npy"))  # without a prior it borrows a reference sample
    finally:
        views.unregister("signs")

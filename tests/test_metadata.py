"""Typed metadata (omnibind/facts.py) and the filters on it (omnibind/filters.py): dates from EXIF
and containers, sidecars, `ingest --tag`, tags set later, and every filter through the library,
the CLI and HTTP — all as SQL on columns, never text matching inside the JSON metadata."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import draw_image, write_video
from omnibind.cli import app
from omnibind.collection import META_FILE, Collection
from omnibind.facts import exif_seconds, iso_seconds, normalise_tags, parse_sidecar
from omnibind.errors import InputError
from omnibind.filters import FilterError, Filters, glob_regex
from omnibind.ingest import ingest
from omnibind.search import search
from omnibind.server import ServerSettings, create_app

runner = CliRunner()
TOKEN = "meta-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Y2019 = dt.datetime(2019, 6, 1, 12, tzinfo=dt.timezone.utc).timestamp()


def seconds(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture(scope="module")
def library(tmp_path_factory, space):
    """A folder: a photo with an EXIF date (2021), a 2020 video, a note with a sidecar, a big
    drawing; ingested with --tag trip."""
    root = tmp_path_factory.mktemp("meta")
    src = root / "media"
    (src / "2021").mkdir(parents=True)
    exif = Image.Exif()
    exif[306] = "2021:07:14 18:03:59"
    draw_image("circle", 96, "red").save(src / "2021" / "red_circle.jpg", exif=exif)
    draw_image("square", 200, "blue").save(src / "blueSquare.png")
    write_video(src / "clip.mp4", 1.0)
    (src / "beach.txt").write_text("waves rolling onto a sandy shore")
    (src / "beach.txt.json").write_text(json.dumps({"tags": ["Holiday", "sea"], "note": "summer", "by": "ana"}))
    os.utime(src / "blueSquare.png", (Y2019, Y2019))
    coll = Collection.open("meta", space=space, home=root / "home")
    report = ingest(coll, src, tags=["Trip"])
    assert not report.failed and report.added == 4
    return coll, src, root


def item(coll: Collection, name: str) -> dict:
    rows = [r for r in coll.column("id", "tags", "note", "created", "width", "height", "metadata", "words",
                                   where="kind = 'item'").to_pylist() if r["id"].endswith(name)]
    assert rows, name
    return rows[0]


def test_facts_are_typed_columns(library):
    coll, src, _ = library
    photo, drawing, clip, note = (item(coll, n) for n in ("red_circle.jpg", "blueSquare.png", "clip.mp4", "beach.txt"))
    assert photo["created"] == seconds("2021-07-14T18:03:59") and (photo["width"], photo["height"]) == (96, 96)
    assert drawing["created"] == pytest.approx(Y2019) and drawing["width"] == 200  # no EXIF: the file's mtime
    assert (clip["width"], clip["height"]) == (64, 64)
    assert note["tags"] == ["holiday", "sea", "trip"] and note["note"] == "summer"
    assert json.loads(note["metadata"]) == {"by": "ana"}  # the sidecar's other keys
    assert drawing["words"].startswith("blue Square") and "summer" in note["words"]
    assert not any(r["id"].endswith(".json") for r in coll.column("id").to_pylist())  # a sidecar is no item


def test_exif_and_container_dates_parse_or_give_none():
    assert exif_seconds("2021:07:14 18:03:59", "+02:00") == seconds("2021-07-14T16:03:59")
    assert exif_seconds("0000:00:00 00:00:00") is None and exif_seconds("garbage") is None
    assert exif_seconds("2021:13:01 00:00:00") is None
    assert iso_seconds("2019-03-01T10:00:00.000000Z") == seconds("2019-03-01T10:00:00")
    assert iso_seconds("yesterday") is None


def test_bad_sidecars_are_refused_with_the_reason(tmp_path: Path, space):
    for text, words in [("{", "not valid UTF-8 JSON"), ("[1]", "JSON object"), ('{"tags": [1]}', "list of strings"),
                        ('{"note": 5}', "'note' must be a string")]:
        with pytest.raises(InputError, match=words):
            parse_sidecar(text.encode(), "x.json")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_text("a red apple")
    (folder / "a.txt.json").write_text("{broken")
    coll = Collection.open(tmp_path / "c", space=space)
    report = ingest(coll, folder)
    assert report.added == 1 and any("sidecar ignored" in n for _, n in report.notes)


def test_a_changed_sidecar_reingests_and_tags_survive_a_content_change(tmp_path: Path, space):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_text("a red apple")
    (folder / "b.txt").write_text("a green pear")
    (folder / "a.txt.json").write_text('{"tags": ["fruit"]}')
    coll = Collection.open(tmp_path / "c", space=space)
    ingest(coll, folder)
    coll.tag([str(folder / "b.txt")], add=["kept"])
    (folder / "a.txt.json").write_text('{"tags": ["food"]}')
    (folder / "b.txt").write_text("a ripe green pear")
    report = ingest(coll, folder, tags=["again"])
    assert report.updated == 2
    assert item(coll, "a.txt")["tags"] == ["food", "again"]  # the sidecar decides
    assert item(coll, "b.txt")["tags"] == ["kept", "again"]  # no sidecar: what it had, plus this run's


def test_ingest_tag_reaches_unchanged_items(library):
    coll, src, _ = library
    report = ingest(coll, src, tags=["archive"])
    assert report.unchanged == 4 and report.embedded == 0
    assert all("archive" in item(coll, n)["tags"] for n in ("red_circle.jpg", "clip.mp4", "beach.txt"))
    coll.tag([r["id"] for r in coll.column("id", where="kind = 'item'").to_pylist()], remove=["archive"])
    assert "archive" not in item(coll, "beach.txt")["tags"] and "archive" not in item(coll, "beach.txt")["words"]


def test_tag_replaces_adds_and_refuses_unknown_items(library):
    coll, src, _ = library
    one = str(src / "blueSquare.png")
    assert coll.tag([one], replace=["Blue", "blue", " art "]) == {one: ["blue", "art"]}
    assert coll.tag([one], add=["trip"], remove=["art"]) == {one: ["blue", "trip"]}
    with pytest.raises(Exception, match="no item"):
        coll.tag(["/nowhere.png"], add=["x"])
    with pytest.raises(ValueError):
        normalise_tags(["x" * 200])


@pytest.mark.parametrize("glob,path,hit", [
    ("*.jpg", "/a/b/c.jpg", True), ("*.jpg", "/a/b/c.jpeg", False), ("/a/*/c.jpg", "/a/b/c.jpg", True),
    ("/a/*.jpg", "/a/b/c.jpg", False), ("/a/**", "/a/b/c.jpg", True), ("**/b/*", "/a/b/c.jpg", True),
    ("c.jp?", "/x/c.jpg", True), ("[ab].txt", "/x/a.txt", True), ("[!ab].txt", "/x/a.txt", False),
    ("a+b (1).txt", "/x/a+b (1).txt", True), ("a+b (1).txt", "/x/aab (1).txt", False),
])
def test_globs_become_anchored_regexes(glob: str, path: str, hit: bool):
    import re

    assert bool(re.search(glob_regex(glob), path)) is hit


def test_dates_and_ages_parse_and_errors_name_the_option():
    assert Filters.parse(after="2024").after == seconds("2024-01-01T00:00:00")
    assert Filters.parse(before="2024-05").before == seconds("2024-05-01T00:00:00")
    assert Filters.parse(after="2024-05-01T10:30+02:00").after == seconds("2024-05-01T08:30:00")
    assert abs(Filters.parse(after="30d").after - (dt.datetime.now().timestamp() - 30 * 86400)) < 5
    with pytest.raises(FilterError, match="--before 'last tuesday'"):
        Filters.parse(before="last tuesday")
    assert Filters.parse().sql() is None
    sql = Filters.parse(where="size > 1", tags=["A", "b"], path_glob="*.jpg").sql()
    assert "array_has_all(tags, ['a', 'b'])" in sql and "LIKE" not in sql and "metadata" not in sql


def ids(hits) -> set[str]:
    return {Path(h.id).name for h in hits}


def test_every_filter_narrows_a_search(library):
    coll, src, _ = library
    q = "a picture"
    assert ids(search(coll, q, k=10, where=Filters.parse(tags=["sea"]).sql())) == {"beach.txt"}
    assert ids(search(coll, q, k=10, where=Filters.parse(after="2021-01-01", before="2022").sql())) == {"red_circle.jpg"}
    assert "blueSquare.png" not in ids(search(coll, q, k=10, where=Filters.parse(after="2020").sql()))
    assert ids(search(coll, q, k=10, where=Filters.parse(path_glob="*.jpg").sql())) == {"red_circle.jpg"}
    assert ids(search(coll, q, k=10, where=Filters.parse(path_glob=f"{src}/2021/**").sql())) == {"red_circle.jpg"}
    assert ids(search(coll, q, k=10, where=Filters.parse(where="width >= 150").sql())) == {"blueSquare.png"}
    assert ids(search(coll, q, k=10, where=Filters.parse(tags=["trip", "sea"], path_glob="*.txt").sql())) == {"beach.txt"}


def test_cli_filters_and_ingest_tag(library, tmp_path: Path):
    coll, src, root = library
    home = str(root / "home")
    base = ["--home", home, "search", "-c", "meta", "a picture", "--json", "--local"]
    cases = [(["--tag", "holiday"], {"beach.txt"}), (["--after", "2021", "--before", "2022-01-01"], {"red_circle.jpg"}),
             (["--path-glob", "*.mp4"], {"clip.mp4"}), (["--where", "height >= 150"], {"blueSquare.png"})]
    for extra, want in cases:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 0, result.output
        assert {Path(h["id"]).name for h in json.loads(result.stdout)} == want, extra
        assert all("tags" in h and "created" in h for h in json.loads(result.stdout))
    bad = runner.invoke(app, base + ["--after", "someday"])
    assert bad.exit_code == 1 and "--after 'someday'" in bad.output
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "n.txt").write_text("a note about bicycles")
    result = runner.invoke(app, ["--home", home, "ingest", str(folder), "-c", "tagged", "--tag", "Bikes"])
    assert result.exit_code == 0, result.output
    found = runner.invoke(app, ["--home", home, "search", "-c", "tagged", "a note", "--tag", "bikes", "--json", "--local"])
    assert [Path(h["id"]).name for h in json.loads(found.stdout)] == ["n.txt"]


@pytest.fixture
def http(library):
    coll, src, root = library
    settings = ServerSettings(collection="meta", roots=[src], home=root / "home")
    with TestClient(create_app(settings, TOKEN, coll), raise_server_exceptions=False, base_url="http://localhost") as client:
        yield client, coll, src


def test_http_filters(http):
    client, coll, src = http
    cases = [({"tags": ["sea"]}, {"beach.txt"}), ({"tags": "holiday"}, {"beach.txt"}),
             ({"after": "2021-01-01", "before": "2022"}, {"red_circle.jpg"}), ({"path_glob": "*.png"}, {"blueSquare.png"}),
             ({"where": "width >= 150"}, {"blueSquare.png"})]
    for extra, want in cases:
        r = client.post("/v1/search", json={"text": "a picture", "k": 10, **extra})
        assert r.status_code == 200, r.text
        assert {Path(h["id"]).name for h in r.json()["results"]} == want, extra
    r = client.post("/v1/search", json={"text": "a picture", "after": "someday"})
    assert r.status_code == 422 and "--after 'someday'" in r.json()["error"]


def test_http_patch_tags(http):
    client, coll, src = http
    one = str(src / "clip.mp4")
    assert client.patch(f"/v1/items/{one}", json={"add": ["Film"]}).status_code == 401  # token needed
    r = client.patch(f"/v1/items/{one}", json={"add": ["Film"], "remove": ["trip"]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["tags"] == ["film"], r.text
    found = client.post("/v1/search", json={"text": "a picture", "tags": ["film"]}).json()["results"]
    assert [Path(h["id"]).name for h in found] == ["clip.mp4"]
    assert client.patch(f"/v1/items/{one}", json={"tags": ["trip"]}, headers=AUTH).json()["tags"] == ["trip"]
    assert client.patch("/v1/items/nowhere", json={"add": ["x"]}, headers=AUTH).status_code == 404
    assert client.patch(f"/v1/items/{one}", json={}, headers=AUTH).status_code == 422


def test_a_format_2_collection_gains_the_columns_and_reads_facts_without_reembedding(space, tmp_path: Path):
    folder = tmp_path / "f"
    folder.mkdir()
    exif = Image.Exif()
    exif[306] = "2020:02:02 10:00:00"
    draw_image("circle", 80, "red").save(folder / "red.jpg", exif=exif)
    (folder / "cat.txt").write_text("a cat on a mat")
    c = Collection.open(tmp_path / "c", space)
    ingest(c, folder)
    c.table.drop_columns(["tags", "note", "created", "width", "height", "words", "sidecar"])  # what version 2 wrote
    meta = json.loads((c.path / META_FILE).read_text())
    meta["format_version"] = 2
    (c.path / META_FILE).write_text(json.dumps(meta))
    old = Collection.open(tmp_path / "c", space)
    assert old.meta["format_version"] == 3 and {"tags", "created", "words"} <= set(old.table.schema.names)
    assert len(old.unread_facts()) == 2
    version = old.table.version
    report = ingest(old, folder, tags=["moved"])
    assert report.unchanged == 2 and report.embedded == 0 and not old.unread_facts()
    assert item(old, "red.jpg")["created"] == seconds("2020-02-02T10:00:00") and item(old, "red.jpg")["width"] == 80
    assert item(old, "cat.txt")["tags"] == ["moved"] and old.table.version > version
    hits = search(old, "a kitten", k=1, where=Filters.parse(tags=["moved"], path_glob="*.txt").sql())
    assert hits[0].fields["text"] == "a cat on a mat"

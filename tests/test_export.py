"""`omnibind export`: Parquet and NumPy round trips of a small mixed collection (ids, vectors equal
to the collection's, thumbnails left out, segment rows on request, modality filter), streamed in
small batches, written atomically; and the CLI command on a Typer app of its own."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from conftest import draw_image, write_wav
from omnibind.cli_export import export_command
from omnibind.collection import Collection
from omnibind.export import ExportError, export

LONG = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 25)
IDS = ["cat", "stocks", "long", "img", "wav"]


@pytest.fixture(scope="module")
def coll(tmp_path_factory, space) -> Collection:
    root = tmp_path_factory.mktemp("export")
    img = root / "red.png"
    draw_image("circle", 96, "red").save(img)
    wav = write_wav(root / "tone.wav", 8.0, 440)
    c = Collection.open("ex", space=space, home=root / "home")
    c.add(["a cat sleeps on the sofa", "stock markets fell sharply", LONG, img, wav], ids=IDS)
    return c


def truth(coll: Collection, where: str | None = None) -> dict[str, np.ndarray]:
    t = coll.column("id", "vector", where=where)
    return dict(zip(t.column("id").to_pylist(), np.array(t.column("vector").to_pylist(), np.float32)))


def test_parquet_round_trip_items(coll, tmp_path: Path):
    seen: list[tuple[int, int]] = []
    report = export(coll, tmp_path / "out" / "items.parquet", "parquet", batch_size=2,
                    progress=lambda d, t: seen.append((d, t)))
    t = pq.read_table(report.path)
    assert sorted(t.column("id").to_pylist()) == sorted(IDS) and report.rows == 5 and report.dim == coll.space.dim
    assert "thumbnail" not in t.column_names and "vector_short" not in t.column_names
    assert {"modality", "source", "sha256", "metadata", "text", "kind", "space"} <= set(t.column_names)
    vtype = t.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vtype) and vtype.list_size == coll.space.dim and vtype.value_type == pa.float32()
    want = truth(coll, "kind = 'item'")
    for i, v in zip(t.column("id").to_pylist(), t.column("vector").to_pylist()):
        np.testing.assert_array_equal(np.array(v, np.float32), want[i])
    assert set(t.column("kind").to_pylist()) == {"item"}
    assert seen[0] == (0, 5) and seen[-1] == (5, 5) and len(seen) == 4  # streamed: batches of 2
    meta = json.loads(t.schema.metadata[b"omnibind"])
    assert meta["collection"] == "ex" and meta["rows"] == 5 and meta["space"]["dim"] == coll.space.dim
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["items.parquet"]  # no temp file left


def test_parquet_segments_thumbnails_and_modality(coll, tmp_path: Path):
    t = pq.read_table(export(coll, tmp_path / "all.parquet", segments=True, include_thumbnails=True).path)
    assert t.num_rows == coll.table.count_rows() > 5
    kinds = t.column("kind").to_pylist()
    assert {"item", "chunk", "window"} <= set(kinds)
    items = dict(zip(t.column("id").to_pylist(), t.column("item").to_pylist()))
    assert all(items[i] == i.split("#")[0] for i in items)
    assert {i for i, k in zip(t.column("id").to_pylist(), kinds) if k == "window"} and "thumbnail" in t.column_names
    thumbs = dict(zip(t.column("id").to_pylist(), t.column("thumbnail").to_pylist()))
    assert thumbs["img"][:2] == b"\xff\xd8"  # a JPEG
    only = pq.read_table(export(coll, tmp_path / "img.parquet", modality="image,audio").path)
    assert sorted(only.column("id").to_pylist()) == ["img", "wav"]


def test_npy_layout(coll, tmp_path: Path):
    report = export(coll, tmp_path / "npy", "npy", segments=True, batch_size=3)
    folder = tmp_path / "npy"
    assert sorted(p.name for p in folder.iterdir()) == ["ids.txt", "manifest.json", "meta.parquet", "vectors.npy"]
    vectors = np.load(folder / "vectors.npy")
    meta = pq.read_table(folder / "meta.parquet")
    ids = (folder / "ids.txt").read_text("utf-8").splitlines()
    assert vectors.dtype == np.float32 and vectors.shape == (coll.table.count_rows(), coll.space.dim)
    assert meta.column_names == ["id", "item", "kind", "source", "modality"] and meta.column("id").to_pylist() == ids
    want = truth(coll)
    for row, i in enumerate(ids):
        np.testing.assert_array_equal(vectors[row], want[i])
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    assert manifest["rows"] == report.rows == len(ids) and manifest["dim"] == coll.space.dim


def test_refusals(coll, tmp_path: Path):
    with pytest.raises(ExportError, match="unknown export format"):
        export(coll, tmp_path / "x.csv", "csv")  # type: ignore[arg-type]
    empty = export(coll, tmp_path / "none.parquet", modality="video")
    assert empty.rows == 0 and pq.read_table(empty.path).num_rows == 0
    assert "vector" in pq.read_table(empty.path).column_names


def test_cli(coll, tmp_path: Path):
    app = typer.Typer()
    app.command("export")(export_command)
    app.command("noop")(lambda: None)  # two commands: typer keeps "export" as a subcommand name
    home = str(coll.path.parent.parent)
    runner = CliRunner()
    out = tmp_path / "c.parquet"
    done = runner.invoke(app, ["export", str(out), "-c", "ex", "--home", home, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["rows"] == 5 and pq.read_table(out).num_rows == 5
    done = runner.invoke(app, ["export", str(tmp_path / "n"), "-c", "ex", "--home", home, "--format", "npy",
                               "--segments", "-m", "audio"])
    assert done.exit_code == 0 and "wrote 3 rows" in done.output, done.output
    bad = runner.invoke(app, ["export", str(out), "-c", "nope", "--home", home])
    assert bad.exit_code == 1 and "no collection 'nope'" in bad.output


def test_the_real_cli_takes_the_global_home(coll, tmp_path: Path):
    from omnibind.cli import app

    out = tmp_path / "g.parquet"
    done = CliRunner().invoke(app, ["--home", str(coll.path.parent.parent), "export", str(out), "-c", "ex"])
    assert done.exit_code == 0 and pq.read_table(out).num_rows == 5, done.output


def test_npy_without_ids_txt_when_an_id_has_a_line_break(space, tmp_path: Path):
    odd = Collection.open("odd", space=space, home=tmp_path / "home")
    odd.add(["one note", "another note"], ids=["plain", "two\nlines"])
    folder = tmp_path / "npy"
    (folder).mkdir()
    (folder / "ids.txt").write_text("stale\n")
    report = export(odd, folder, "npy")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "meta.parquet", "vectors.npy"]
    assert sorted(pq.read_table(folder / "meta.parquet").column("id").to_pylist()) == ["plain", "two\nlines"]
    assert json.loads((folder / "manifest.json").read_text())["files"] == ["vectors.npy", "meta.parquet",
                                                                          "manifest.json"] and report.rows == 2

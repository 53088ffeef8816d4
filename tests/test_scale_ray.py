"""Ingest on a local Ray cluster equals the local engine, and survives a worker killed mid-run."""

from pathlib import Path

import numpy as np
import pytest

from omnibind.collection import Collection
from omnibind.ingest import ingest
from test_collection import make_folder

ray = pytest.importorskip("ray")

COLUMNS = ["id", "vector", "modality", "source", "sha256", "size", "text", "duration", "thumbnail"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 1024**2)
    yield
    ray.shutdown()


def _rows(coll: Collection) -> dict[str, dict]:
    return {r["id"]: r for r in coll.column(*COLUMNS).to_pylist()}


def _assert_same(a: Collection, b: Collection) -> None:
    ra, rb = _rows(a), _rows(b)
    assert set(ra) == set(rb) and len(ra) == len(a) == len(b)
    for key, row in ra.items():
        other = rb[key]
        for col in ("modality", "source", "sha256", "size", "text"):
            assert row[col] == other[col], (key, col)
        assert (row["thumbnail"] is None) == (other["thumbnail"] is None)
        np.testing.assert_allclose(row["vector"], other["vector"], atol=2e-5, err_msg=key)


def test_ray_ingest_equals_local_and_is_incremental(cluster, space, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OMNIBIND_HOME", str(tmp_path / "home"))
    folder = make_folder(tmp_path / "media")
    (folder / "empty.png").write_bytes(b"")
    local = Collection.open("local", space=space)
    expected = ingest(local, folder)
    distributed = Collection.open("ray", space=space)
    report = ingest(distributed, folder, engine="ray", actors=2, batch_size=4, num_cpus_per_actor=0.5)
    assert (report.added, report.unchanged, sorted(report.failed)) == (expected.added, 0, sorted(expected.failed))
    assert report.added == 11 and dict(report.failed)[str(folder / "empty.png")].startswith("empty file")
    _assert_same(local, distributed)
    (folder / "notes" / "rain.txt").write_text("Thunder and lightning over the hills.")
    (folder / "sounds" / "high.wav").unlink()
    again = ingest(distributed, folder, engine="ray", actors=2, batch_size=4, num_cpus_per_actor=0.5, prune=True)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 1, 9, 1)
    ingest(local, folder, prune=True)
    _assert_same(local, distributed)


def test_ray_ingest_survives_a_killed_worker(cluster, space, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OMNIBIND_HOME", str(tmp_path / "home"))
    folder = make_folder(tmp_path / "media")
    marker = tmp_path / "crashed-once"
    coll = Collection.open("killed", space=space)
    report = ingest(coll, folder, engine="ray", actors=2, batch_size=3, num_cpus_per_actor=0.5, crash_marker=str(marker))
    assert marker.exists()  # a worker really died (SIGKILL) mid-run
    assert report.added == 11 and not report.failed and len(coll) == 11
    local = Collection.open("reference", space=space)
    ingest(local, folder)
    _assert_same(local, coll)  # nothing lost, nothing duplicated


def test_list_sources(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from omnibind.pipeline import list_sources

    for name in ("a.png", "b.wav", "sub/c.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    skipped: list = []
    assert list_sources(tmp_path, lambda p, r: skipped.append(p)) == [str(tmp_path / n) for n in ("a.png", "b.wav", "sub/c.txt")]
    assert list_sources(str(tmp_path / "**" / "*.txt"), print) == [str(tmp_path / "sub" / "c.txt")]
    pq.write_table(pa.table({"uri": ["s3://bucket/x.png", str(tmp_path / "a.png")]}), tmp_path / "m.parquet")
    assert list_sources(tmp_path / "m.parquet", print) == ["s3://bucket/x.png", str(tmp_path / "a.png")]
    (tmp_path / "m.uris").write_text("# media\n/data/1.png\n\ns3://b/2.wav\n")
    assert list_sources(tmp_path / "m.uris", print) == ["/data/1.png", "s3://b/2.wav"]
    assert list_sources(tmp_path / "sub" / "c.txt", print) == [str(tmp_path / "sub" / "c.txt")]  # a note, not a list


def test_cli_ingest_engine_ray(cluster, tmp_path: Path):
    from typer.testing import CliRunner

    from omnibind.cli import app

    folder = make_folder(tmp_path / "media")
    args = ["ingest", str(folder), "-c", "cli", "--engine", "ray", "--actors", "1", "--home", str(tmp_path / "home")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "11 added, 0 updated, 0 unchanged, 0 removed, 0 failed of 11 files" in result.output.replace("\n", " ")
    bad = CliRunner().invoke(app, args[:-2] + ["--engine", "spark", "--home", str(tmp_path / "home")])
    assert bad.exit_code == 1 and "unknown engine 'spark'" in bad.output

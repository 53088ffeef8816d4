"""Issue 13, the store's side: one writer per collection, confinement that holds through symbolic
links, no bad file that can stop an ingest, readers that see writers, calibration that follows the
table. Each test failed on the code before the fix (noted where it reproduces a reported defect)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import draw_image, write_wav
from omnibind.collection import Collection, path_id, source_path
from omnibind.ingest import ingest
from omnibind.search import search

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _notes(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note{i:03d}.txt").write_text(f"note number {i}: {'rain sun wind snow'.split()[i % 4]} today", "utf-8")
    return folder


def test_two_concurrent_ingests_store_each_file_once(space, tmp_path: Path):
    """Defect 1: `omnibind ingest F -c c & omnibind ingest F -c c` stored every row twice."""
    folder = _notes(tmp_path / "notes", 60)
    target = tmp_path / "coll"
    Collection.open(target, space="default").add(["seed"], ids=["seed"])  # the collection exists first
    cmd = [sys.executable, "-m", "omnibind", "ingest", str(folder), "-c", str(target), "--batch-size", "7"]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ids = Collection.open(target, create=False).column("id").column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 61
    summaries = sorted(out for out, _ in outputs)
    assert "60 added" in summaries[0] + summaries[1] and "60 unchanged" in summaries[0] + summaries[1]


def test_repair_keeps_one_row_per_id(space, tmp_path: Path):
    coll = Collection.open(tmp_path / "c", space=space)
    coll.add(["a note", "another note"], ids=["a", "b"])
    rows = coll.table.to_arrow()
    coll.table.add(rows)  # what concurrent writers of older versions left: every row twice
    assert len(coll) == 4
    assert coll.repair() == 2
    assert sorted(coll.column("id").column("id").to_pylist()) == ["a", "b"]
    assert coll.repair() == 0 and not (coll.path / "repair-pending.parquet").exists()


def test_a_reader_sees_another_writers_rows_after_refresh(space, tmp_path: Path):
    """Defect 7: a long-lived reader (serve) never saw another process's writes."""
    reader = Collection.open(tmp_path / "c", space=space)
    reader.add(["first"], ids=["1"])
    writer = Collection.open(tmp_path / "c", create=False)
    writer.add(["second", "third"], ids=["2", "3"])
    assert len(reader.refresh()) == 3


def test_links_out_of_the_root_are_never_read(space, tmp_path: Path):
    """Defect 2: a symlink inside an ingested folder pointing outside it was followed and stored."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the launch codes", "utf-8")
    folder = _notes(tmp_path / "inbox", 2)
    (folder / "leak.txt").symlink_to(secret)
    (folder / "inside.txt").symlink_to(folder / "note000.txt")  # a link within the folder is fine
    coll = Collection.open(tmp_path / "c", space=space)
    report = ingest(coll, folder)
    ids = coll.column("id").column("id").to_pylist()
    assert str(folder / "leak.txt") not in ids and str(folder / "inside.txt") in ids
    assert "outside" in dict(report.failed)[str(folder / "leak.txt")]
    assert not any("launch codes" in (t or "") for t in coll.column("text").column("text").to_pylist())


def test_a_link_swapped_in_after_the_walk_is_refused(space, tmp_path: Path, monkeypatch):
    import omnibind.pipeline as pipeline

    secret = tmp_path / "outside.txt"
    secret.write_text("private diary", "utf-8")
    folder = _notes(tmp_path / "inbox", 3)
    real_list = pipeline.list_sources

    def list_then_swap(*args, **kwargs):
        found = real_list(*args, **kwargs)
        (folder / "note001.txt").unlink()
        (folder / "note001.txt").symlink_to(secret)  # swapped between the walk and the read
        return found

    monkeypatch.setattr("omnibind.ingest.list_sources", list_then_swap)
    coll = Collection.open(tmp_path / "c", space=space)
    report = ingest(coll, folder)
    assert "outside" in dict(report.failed)[str(folder / "note001.txt")]
    assert report.added == 2 and "private diary" not in coll.column("text").column("text").to_pylist()


def test_prune_of_a_folder_spares_its_sibling(space, tmp_path: Path):
    media, media2 = _notes(tmp_path / "media", 2), _notes(tmp_path / "media2", 2)
    coll = Collection.open(tmp_path / "c", space=space)
    ingest(coll, media)
    ingest(coll, media2)
    (media / "note000.txt").unlink()
    assert ingest(coll, media, prune=True).removed == 1
    assert len(coll) == 3 and len(coll.get([str(media2 / "note000.txt")])) == 1


def test_bad_names_deep_folders_nan_audio_and_decoder_bugs_fail_alone(space, tmp_path: Path, monkeypatch):
    """Defect 5: one bad file aborted a whole ingest (a non-UTF-8 name, a NaN WAV, ~1,000 nested
    folders, an unexpected exception in a decoder)."""
    folder = _notes(tmp_path / "inbox", 2)
    odd = os.fsencode(folder) + b"/caf\xe9-latin1.txt"  # not valid UTF-8
    with open(odd, "w", encoding="utf-8") as fh:
        fh.write("a note with an old name")
    sf.write(folder / "nan.wav", np.full(22050, np.nan, np.float32), 22050, subtype="FLOAT")
    deep = folder
    for _ in range(1000):  # os.makedirs itself recurses that deep
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.txt").write_text("found at the bottom", "utf-8")
    try:
        _check_bad_files_fail_alone(space, tmp_path, folder, odd, monkeypatch)
    finally:  # shutil.rmtree (pytest's clean-up) recurses per level: remove the chain bottom-up
        (deep / "bottom.txt").unlink()
        while deep != folder:
            deep.rmdir()
            deep = deep.parent


def _check_bad_files_fail_alone(space, tmp_path: Path, folder: Path, odd: bytes, monkeypatch) -> None:
    draw_image("circle", 64, "red").save(folder / "boom.png")
    import dataclasses

    import omnibind.modalities as modalities

    image = modalities.get("image")
    monkeypatch.setitem(modalities._ROWS, "image", dataclasses.replace(image, decode=_exploding(image.decode)))
    coll = Collection.open(tmp_path / "c", space=space)
    report = ingest(coll, folder)
    failed = dict(report.failed)
    assert report.added == 4, report.failed  # two notes, the old name, the bottom note
    assert "NaN" in failed[str(folder / "nan.wav")] or "finite" in failed[str(folder / "nan.wav")]
    assert "RuntimeError" in failed[str(folder / "boom.png")]
    odd_id = path_id(os.fsdecode(odd))
    assert odd_id.startswith("fsbytes:") and os.fsencode(source_path(odd_id)) == odd
    assert coll.get([odd_id], ["id", "text"])[0]["text"] == "a note with an old name"
    os.remove(odd)
    assert ingest(coll, folder, prune=True).removed == 1  # the odd name is pruned like any other


def _exploding(decode):
    def wrapped(data, source, limits):
        if source.endswith("boom.png"):
            raise RuntimeError("a decoder bug")
        return decode(data, source, limits)

    return wrapped


KILL_IN_FINISH = textwrap.dedent("""
    import os, signal, sys
    import omnibind.ingest as ingest_mod
    from omnibind.collection import Collection

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    ingest_mod.finish = die  # killed after the last commit, before the calibration is redrawn
    ingest_mod.ingest(Collection.open(sys.argv[1]), sys.argv[2])
""")


def test_sigkill_in_finish_leaves_no_stale_calibration(space, tmp_path: Path):
    """Defect 9: searches stayed on raw cosine after an ingest died before its calibration."""
    target = tmp_path / "c"
    coll = Collection.open(target, space="default")
    ingest(coll, _notes(tmp_path / "few", 5))  # a 5-note calibration sample
    folder = _notes(tmp_path / "many", 40)
    proc = subprocess.run([sys.executable, "-c", KILL_IN_FINISH, str(target), str(folder)], env=ENV, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    again = Collection.open(target, create=False)
    assert len(again) == 45
    hits = search(again, "rain today", k=3)
    assert hits[0].kind != "cosine"  # 45 notes: calibrated, from a sample drawn again
    assert len(again.calibration.samples()["text"]) == 45


def test_a_writer_waits_for_the_other_and_is_told_who(space, tmp_path: Path):
    first = Collection.open(tmp_path / "c", space=space)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(first.path / 'write.lock')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"%d 0\\n" % os.getpid())
        print("locked", flush=True)
        time.sleep(1.5)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    told: list[str] = []
    first.writer.on_wait = told.append
    first.add(["written after the other writer"], ids=["x"])
    holder.wait(timeout=30)
    assert told == [f"pid {holder.pid}"] and len(first) == 1

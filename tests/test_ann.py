"""The in-memory ANN index of large collections (omnibind/ann.py), at small sizes: the exact-search
limit is lowered so a few thousand rows take the ANN path. Results must match exact search, follow
every write (add, update, delete, compaction), survive a restart, recover from a stale or corrupt
saved index, and honour `where` filters and modality."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("faiss")

from omnibind import ann  # noqa: E402
from omnibind import collection as collection_mod  # noqa: E402
from omnibind.collection import Collection  # noqa: E402
from omnibind import search as search_mod  # noqa: E402
from omnibind.search import search  # noqa: E402

LIMIT = 400


def clustered(n: int, dim: int, seed: int, centres: int = 40) -> np.ndarray:
    """benchmarks/search.py's `clustered` generator: random centres + noise, unit vectors."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim), dtype=np.float32)
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def put(coll: Collection, vectors: np.ndarray, start: int = 0, modality: str = "image", prefix: str = "v") -> None:
    """Rows written straight to the table (one commit), ids prefix+number, source 'a/' or 'b/'."""
    n = len(vectors)
    cols = {f.name: pa.nulls(n, f.type) for f in coll.table.schema}
    ids = [f"{prefix}{i}" for i in range(start, start + n)]
    cols.update(id=pa.array(ids), item=pa.array(ids), kind=pa.array(["item"] * n), modality=pa.array([modality] * n),
                source=pa.array([("a/" if i % 2 else "b/") + x for i, x in enumerate(ids, start)]),
                vector=pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
                space=pa.array([coll.meta["space"]["fingerprint"]] * n))
    coll.table.add(pa.table(cols, schema=coll.table.schema))


@pytest.fixture
def big(tmp_path: Path, space, monkeypatch) -> tuple[Collection, np.ndarray]:
    monkeypatch.setattr(collection_mod, "SNAPSHOT_MAX_ROWS", LIMIT)
    coll = Collection.open(tmp_path / "big", space=space)
    data = clustered(1500, space.dim, 0)
    put(coll, data)
    return coll, data


def ids_of(hits) -> list[int]:
    return [int(h.id[1:]) for h in hits]


def test_ann_matches_exact_search(big):
    coll, data = big
    queries = clustered(30, data.shape[1], 1)
    found = 0
    for q in queries:
        hits = search(coll, q, k=10, calibrated=False)
        truth = np.argsort(-(data @ q))[:10]
        found += len(set(ids_of(hits)) & set(truth.tolist()))
        np.testing.assert_allclose([h.cosine for h in hits], data[ids_of(hits)] @ q, atol=1e-5)  # exact cosines
        assert hits[0].fields["source"].endswith(hits[0].id)  # result fields from memory
    assert coll.ann() is not None and found / 300 >= 0.95, found
    assert [h.id for h in search(coll, queries[0], k=10, exact=True, calibrated=False)] == \
        [f"v{i}" for i in np.argsort(-(data @ queries[0]))[:10]]  # exact=True stays exact


def test_under_the_limit_search_stays_exact(tmp_path: Path, space):
    coll = Collection.open(tmp_path / "small", space=space)
    data = clustered(300, space.dim, 2)
    put(coll, data)
    q = clustered(1, space.dim, 3)[0]
    assert coll.ann() is None
    assert ids_of(search(coll, q, k=10, calibrated=False)) == np.argsort(-(data @ q))[:10].tolist()


def test_writes_keep_the_index_in_step(big):
    coll, data = big
    graph_nodes = lambda: coll.ann().graphs["image"].index.ntotal  # noqa: E731
    assert graph_nodes() == len(data)
    extra = clustered(50, data.shape[1], 4)
    put(coll, extra, start=len(data))
    assert search(coll, extra[7], k=1, calibrated=False)[0].id == f"v{len(data) + 7}"
    assert graph_nodes() == len(data) + 50  # added, not rebuilt
    coll.delete(["v3", "v5"])
    for i in (3, 5):
        assert f"v{i}" not in [h.id for h in search(coll, data[i], k=10, calibrated=False)]
    moved = -data[11]
    coll.upsert([{"id": "v11", "vector": moved, "modality": "image", "source": "b/v11"}])
    assert search(coll, moved, k=1, calibrated=False)[0].id == "v11"
    assert "v11" not in [h.id for h in search(coll, data[11], k=10, calibrated=False)]
    put(coll, clustered(5, data.shape[1], 7), start=5000)
    before, addresses = graph_nodes(), rowids(coll)
    coll.table.optimize()  # compaction: small fragments' rows get new addresses, no vector changes
    assert len(set(addresses.values()) - set(rowids(coll).values())) >= 50
    added: list[int] = []
    coll.ann(progress=added.append)
    assert sum(added) == 0 and graph_nodes() == before  # re-pointed, not re-added
    assert search(coll, extra[7], k=1, calibrated=False)[0].id == f"v{len(data) + 7}"


def rowids(coll: Collection) -> dict[str, int]:
    t = coll.table.search().with_row_id(True).select(["id"]).limit(None).to_arrow()
    return dict(zip(t.column("id").to_pylist(), t.column("_rowid").to_pylist()))


def test_tombstones_past_the_share_rebuild_the_graph(big):
    coll, data = big
    coll.ann()
    coll.delete([f"v{i}" for i in range(600)])
    index = coll.ann()
    assert index.graphs["image"].index.ntotal == len(data) - 600 and index.graphs["image"].dead == 0
    assert search(coll, data[900], k=1, calibrated=False)[0].id == "v900"


def test_saved_index_is_loaded_and_caught_up(big, space):
    coll, data = big
    assert coll.ensure_index() == ann.KIND and (coll.path / "ann" / ann.STATE).exists()
    put(coll, clustered(30, data.shape[1], 5), start=len(data))  # written after the save
    added: list[int] = []
    again = Collection.open(coll.path, space=space)
    index = again.ann(progress=added.append)
    assert sum(added) == 30 and index.graphs["image"].index.ntotal == len(data) + 30  # loaded, then caught up
    assert search(again, data[42], k=1, calibrated=False)[0].id == "v42"


@pytest.mark.parametrize("damage", ["garbage graph", "missing graph", "bad state", "other vectors"])
def test_a_damaged_saved_index_is_rebuilt(big, space, damage):
    coll, data = big
    coll.ensure_index()
    folder = coll.path / "ann"
    graph = next(folder.glob("*.faiss"))
    if damage == "garbage graph":
        graph.write_bytes(b"not a faiss index")
    elif damage == "missing graph":
        graph.unlink()
    elif damage == "bad state":
        (folder / ann.STATE).write_text("{")
    else:  # same folder, same row addresses, other vectors: a table recreated under the collection
        db = collection_mod._connect(coll.path)
        db.drop_table(collection_mod.TABLE)
        coll.table = db.create_table(collection_mod.TABLE, schema=coll.table.schema)
        data = clustered(len(data), data.shape[1], 9)
        put(coll, data)
    again = Collection.open(coll.path, space=space)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = again.ann()
    assert any("rebuilding" in str(w.message) for w in caught) or damage == "other vectors"
    assert index.graphs["image"].index.ntotal == len(data)
    assert search(again, data[42], k=1, calibrated=False)[0].id == "v42"


def test_filters_and_modality_apply(big, monkeypatch):
    coll, data = big
    notes = clustered(500, data.shape[1], 6)
    put(coll, notes, modality="text", prefix="t")
    q = data[100]
    hits = search(coll, q, k=10, calibrated=False, where="source LIKE 'a/%'")
    assert len(hits) == 10 and all(h.fields["source"].startswith("a/") for h in hits)
    truth = [i for i in np.argsort(-(data @ q)) if i % 2][:10]
    assert len(set(ids_of(hits)) & set(truth)) >= 9
    monkeypatch.setattr(search_mod, "MAX_FILTER_FETCH", 64)
    one = search(coll, q, k=3, calibrated=False, where="id = 'v1234'")  # too selective: LanceDB's filtered scan
    assert [h.id for h in one] == ["v1234"]
    texts = search(coll, notes[7], k=5, modality="text", calibrated=False)
    assert texts[0].id == "t7" and {h.modality for h in texts} == {"text"}
    assert set(coll.ann().graphs) == {"image", "text"}


def test_without_faiss_lancedb_answers(big, monkeypatch):
    coll, data = big
    monkeypatch.setattr(ann, "available", lambda: False)
    assert coll.ann() is None
    assert search(coll, data[8], k=1, calibrated=False)[0].id == "v8"
    with pytest.raises(ann.AnnUnavailable):
        monkeypatch.setitem(__import__("sys").modules, "faiss", None)
        ann.new_graph(8)


def test_the_version_is_asked_again_after_every_commit(big, monkeypatch):
    """Collection.version() answers from a stat of the table's _versions folder; a commit made
    straight through LanceDB right after a search (same clock tick) is still seen."""
    coll, data = big
    search(coll, data[0], k=3)
    asked = []
    real = type(coll.table).version
    monkeypatch.setattr(type(coll.table), "version", property(lambda t: asked.append(1) or real.fget(t)))
    before = coll.version()  # may ask: the folder's stamp is within the slack of the last answer
    coll._seen = (coll._seen[0], coll._seen[0] + collection_mod.STAMP_SLACK_NS + 1, coll._seen[2])  # an old stamp
    asked.clear()
    for _ in range(3):  # an unchanged folder with an old stamp: no LanceDB call
        assert coll.version() == before
    assert not asked
    put(coll, clustered(1, coll.space.dim, 9), start=5000)  # a commit behind the collection's back
    assert coll.version() == before + 1 and asked
    hits = search(coll, clustered(1, coll.space.dim, 9)[0], k=1)
    assert hits[0].id == "v5000"

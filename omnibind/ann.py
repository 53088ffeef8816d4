"""The in-memory ANN index of a large collection: FAISS HNSW graphs kept in step with the table.

Above the exact-search limit (omnibind/collection.py SNAPSHOT_MAX_ROWS) a LanceDB vector query
costs 3-8 ms whatever its index (benchmarks/search.py), 60-150x FAISS HNSW in memory. So LanceDB
stays the store of record and this module keeps, per item modality (search asks per-modality
candidates), a FAISS `IndexHNSWFlat` over that modality's rows (inner product of unit vectors =
cosine, exact: the graph stores the full vectors) plus the result fields of every row as one
in-memory Arrow table, so a query never touches LanceDB.

Kept in step by row address: LanceDB rows are immutable, an update writes a new row with a new
address (`_rowid`), and addresses are never reused. `AnnIndex.sync(table)` scans the addresses and
fields of the table version (no vectors), tombstones graph nodes whose row is gone (an
`IDSelectorBitmap` hides them; the graph is rebuilt from its own vectors when they pass
MAX_DEAD_SHARE) and adds rows it has not seen. A compaction moves rows to new addresses: a new row
whose id and vector equal a vanished node's is re-pointed, not re-added.

Persisted beside the table (`<collection>/ann/`): graph and label files under fresh names, then
`state.json` naming them, replaced atomically; a crash leaves the old state (or none), and any
unreadable or inconsistent state is dropped and rebuilt. What was added after the last save is
caught up from the table on the next sync: results are never those of another table version.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from omnibind.errors import OmnibindError

FOLDER = "ann"
STATE = "state.json"
FORMAT = 1
KIND = "FAISS_HNSW (in memory)"
M = 32  # graph degree; benchmarks/search.py measured 16 too low for recall 0.95 on clustered 384-d data
EF_CONSTRUCTION = 80
EF_SEARCH = 128  # candidates walked per query (at least the rows asked for): recall@10 0.968 on 1M clustered (64: 0.938)
MAX_DEAD_SHARE = 0.25  # tombstoned nodes of a graph before it is rebuilt from its live vectors
TAKE_LIMIT = 20_000  # new rows read by address up to this many; one scan of the vectors above
ADD_CHUNK = 50_000  # rows added to a graph between progress reports
SAVE_SHARE = 0.1  # a sync that added this share of the nodes saves even unasked (a build is minutes)
CHECK_ROWS = 64  # rows of a loaded index whose vectors are compared with the table's

Progress = Callable[[int], None]


class AnnUnavailable(OmnibindError):
    """FAISS is not installed: large collections are searched through LanceDB's own index."""


def available() -> bool:
    """Whether FAISS can be imported (the `ann` extra)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise AnnUnavailable("the in-memory ANN index needs FAISS: pip install 'omnibind[ann]' (faiss-cpu)") from exc
    return faiss


@dataclass
class Graph:
    """One modality's HNSW graph and what each of its nodes (labels) holds."""

    index: Any  # faiss.IndexHNSWFlat
    rowids: np.ndarray  # uint64: the LanceDB row address each node was built from
    ids: np.ndarray  # object: the row id of each node (matches a compacted row to its node)
    alive: np.ndarray  # bool: the node's row is in the table version
    field: np.ndarray  # int64: the node's row in AnnIndex.fields (-1: dead)
    selector: Any = None  # IDSelectorBitmap over live nodes (None when all live)
    bitmap: np.ndarray | None = None  # the selector's memory (kept referenced)

    @property
    def dead(self) -> int:
        return int(len(self.alive) - self.alive.sum())

    def vectors(self) -> np.ndarray:
        """The graph's stored vectors, [nodes, dim] (a view, not a copy)."""
        faiss = _faiss()
        flat = faiss.downcast_index(self.index.storage)
        n, d = self.index.ntotal, self.index.d
        return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d) if n else np.zeros((0, d), np.float32)

    def refresh_selector(self) -> None:
        faiss = _faiss()
        if not self.dead:
            self.selector = self.bitmap = None
            return
        self.bitmap = np.packbits(self.alive, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(self.alive), faiss.swig_ptr(self.bitmap))


def new_graph(dim: int) -> Graph:
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    return Graph(index, np.zeros(0, np.uint64), np.zeros(0, object), np.zeros(0, bool), np.zeros(0, np.int64))


def add_nodes(graph: Graph, vectors: np.ndarray, rowids: np.ndarray, ids: np.ndarray, field: np.ndarray,
              progress: Progress | None = None) -> None:
    """Append rows to a graph (in chunks, reporting each)."""
    for start in range(0, len(vectors), ADD_CHUNK):
        part = np.ascontiguousarray(vectors[start : start + ADD_CHUNK], dtype=np.float32)
        graph.index.add(part)
        if progress:
            progress(len(part))
    graph.rowids = np.concatenate([graph.rowids, rowids.astype(np.uint64)])
    graph.ids = np.concatenate([graph.ids, ids.astype(object)])
    graph.alive = np.concatenate([graph.alive, np.ones(len(vectors), bool)])
    graph.field = np.concatenate([graph.field, field.astype(np.int64)])


def rebuilt(graph: Graph, progress: Progress | None = None) -> Graph:
    """The graph of its live nodes only (tombstones dropped)."""
    keep = np.flatnonzero(graph.alive)
    fresh = new_graph(graph.index.d)
    add_nodes(fresh, graph.vectors()[keep], graph.rowids[keep], graph.ids[keep], graph.field[keep], progress)
    return fresh


class AnnIndex:
    """The ANN graphs and result fields of one collection at one table version (module docstring)."""

    def __init__(self, folder: Path, dim: int, columns: Sequence[str]) -> None:
        self.folder, self.dim, self.columns = Path(folder), dim, list(columns)
        self.version: int | None = None
        self.graphs: dict[str, Graph] = {}
        self.fields: pa.Table | None = None  # `columns` of every row of the table version
        self.ef_search = EF_SEARCH
        self.loaded = False
        self._lock = threading.RLock()
        self._params: dict[tuple[str, int], Any] = {}
        self.unsaved = 0  # nodes added or re-pointed since the last save or load
        self._files: set[str] = set()  # the graph files the state this process last read or wrote names

    # -- searching ----------------------------------------------------------------------------------

    def search(self, q: np.ndarray, modality: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows in `fields`, cosines) of the `n` rows of a modality nearest to q, best first."""
        with self._lock:
            graph = self.graphs.get(modality)
            if graph is None or not graph.index.ntotal:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            ef = max(self.ef_search, n)
            params = self._params.get((modality, ef))
            if params is None:
                params = _faiss().SearchParametersHNSW()
                params.efSearch = ef
                if graph.selector is not None:
                    params.sel = graph.selector
                self._params[(modality, ef)] = params
            scores, labels = graph.index.search(np.asarray(q, np.float32).reshape(1, -1), n, params=params)
            keep = labels[0] >= 0
            return graph.field[labels[0][keep]], scores[0][keep]

    def rows(self, positions: np.ndarray) -> list[dict[str, Any]]:
        """The result fields of rows (positions from `search`)."""
        if self.fields is None or not len(positions):
            return []
        return self.fields.take(np.asarray(positions, np.int64)).to_pylist()

    # -- keeping in step -------------------------------------------------------------------------------

    def sync(self, table: Any, progress: Progress | None = None, persist: bool = False, version: int | None = None) -> bool:
        """Bring the index to the table's version (`version`: already asked; loading the saved
        index first); returns whether anything changed. `persist` saves the result (atomically)
        when it changed."""
        with self._lock:
            if not self.loaded:
                self.loaded = True
                self._load(table)
            version = int(table.version) if version is None else version
            if version == self.version:
                return False
            changed = self._catch_up(table, version, progress)
            nodes = sum(len(g.alive) for g in self.graphs.values())
            if changed and (persist or self.unsaved > SAVE_SHARE * nodes):
                self.save()
            return changed

    def _catch_up(self, table: Any, version: int, progress: Progress | None) -> bool:
        """Tombstone nodes whose row is gone, re-point moved rows, add new ones."""
        fields = _scan(table, self.columns + ["_rowid"])
        rowids = fields.column("_rowid").to_numpy().astype(np.uint64)
        order = np.argsort(rowids, kind="stable")
        held = np.zeros(len(rowids), bool)
        changed, vanished = False, {}
        for m, graph in self.graphs.items():
            found = _locate(graph, rowids, order)
            gone = graph.alive & ~found
            if gone.any():
                vanished[m] = np.flatnonzero(gone)
                graph.alive[gone] = False
                changed = True
            held[graph.field[found]] = True
        fresh = np.flatnonzero(~held)
        self.unsaved += len(fresh)
        if len(fresh):
            changed = True
            self._add_rows(table, fields, fresh, vanished, progress)
        self._finish(fields.drop_columns(["_rowid"]).combine_chunks(), version)
        return changed

    def _add_rows(self, table: Any, fields: pa.Table, fresh: np.ndarray, vanished: dict[str, np.ndarray],
                  progress: Progress | None) -> None:
        """Add rows not in any graph, re-pointing those a compaction only moved."""
        rowids = fields.column("_rowid").to_numpy().astype(np.uint64)
        vectors = _vectors(table, rowids, fresh, self.dim)
        modality = np.array(fields.column("modality").take(pa.array(fresh)).to_pylist(), dtype=object)
        ids = np.array(fields.column("id").take(pa.array(fresh)).to_pylist(), dtype=object)
        for m in sorted(set(modality.tolist()), key=str):
            mine = np.flatnonzero(modality == m)
            graph = self.graphs.setdefault(m, new_graph(self.dim))
            moved = _moved(graph, vanished.get(m, np.zeros(0, np.int64)), ids[mine], vectors[mine])
            for j, label in moved.items():
                graph.alive[label], graph.field[label] = True, fresh[mine[j]]
                graph.rowids[label] = rowids[fresh[mine[j]]]
            rest = np.array([j for j in range(len(mine)) if j not in moved], dtype=np.int64)
            if len(rest):
                add_nodes(graph, vectors[mine[rest]], rowids[fresh[mine[rest]]], ids[mine[rest]], fresh[mine[rest]], progress)

    def _finish(self, fields: pa.Table, version: int) -> None:
        """Drop empty graphs, rebuild those mostly tombstones, refresh selectors."""
        for m in list(self.graphs):
            graph = self.graphs[m]
            if not graph.alive.any():
                del self.graphs[m]
            elif graph.dead > MAX_DEAD_SHARE * len(graph.alive):
                self.graphs[m] = rebuilt(graph)
            self.graphs.get(m, graph).refresh_selector()
        self.fields, self.version, self._params = fields, version, {}

    # -- persisting ----------------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write the graphs and their labels under fresh names, then point `state.json` at them
        (atomic replace); returns the state file, or None if the folder is not writable."""
        faiss = _faiss()
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                tag = f"{self.version}-{uuid.uuid4().hex[:8]}"
                parts = {}
                for n, (m, graph) in enumerate(sorted(self.graphs.items())):
                    stem = self.folder / f"{tag}-{n}"
                    faiss.write_index(graph.index, str(stem.with_suffix(".faiss")))
                    _write_labels(stem.with_suffix(".arrow"), graph)
                    parts[m] = {"index": stem.name + ".faiss", "labels": stem.name + ".arrow", "nodes": len(graph.alive)}
                state = {"format": FORMAT, "version": self.version, "dim": self.dim, "m": M, "graphs": parts}
                _write_atomic(self.folder / STATE, json.dumps(state, indent=1).encode())
                files = {p for g in parts.values() for p in (g["index"], g["labels"])}
                _clean(self.folder, files, self._files - files)
                self._files, self.unsaved = files, 0
                return self.folder / STATE
            except OSError as exc:
                warnings.warn(f"could not save the ANN index in {self.folder}: {exc}", stacklevel=2)
                return None

    def _load(self, table: Any) -> None:
        """Read the saved graphs (any fault: start empty, rebuilt by the catch-up)."""
        if not (self.folder / STATE).exists():
            return
        try:
            self.graphs, self._files = _read_state(self.folder, self.dim)
            _check_vectors(table, self.graphs)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, pa.ArrowException) as exc:
            warnings.warn(f"ANN index in {self.folder} unusable, rebuilding it: {exc}", stacklevel=3)
            self.graphs = {}


# -- helpers ----------------------------------------------------------------------------------------


def _scan(table: Any, columns: list[str]) -> pa.Table:
    """Columns of every row of the table version (`_rowid` is LanceDB's row address)."""
    names = [c for c in columns if c != "_rowid"]
    return table.search().with_row_id(True).select(names).limit(None).to_arrow()


def _locate(graph: Graph, rowids: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Point each live node at its row in this version (`field`); returns which were found."""
    if not len(order):
        graph.field = np.full(len(graph.alive), -1, np.int64)
        return np.zeros(len(graph.alive), bool)
    ranked = rowids[order]
    at = np.minimum(np.searchsorted(ranked, graph.rowids), len(order) - 1)
    found = graph.alive & (ranked[at] == graph.rowids)
    graph.field = np.where(found, order[at], -1).astype(np.int64)
    return found


def _vectors(table: Any, rowids: np.ndarray, fresh: np.ndarray, dim: int) -> np.ndarray:
    """The vectors of rows `fresh` (positions in `rowids`), in that order: read by address when
    few, else by one scan matched on address."""
    want = rowids[fresh]
    if len(fresh) <= TAKE_LIMIT:
        t = table.take_row_ids([int(r) for r in want]).select(["vector"]).with_row_id().to_arrow()
    else:
        t = table.search().with_row_id(True).select(["vector"]).limit(None).to_arrow()
    got = t.column("_rowid").to_numpy().astype(np.uint64)
    matrix = t.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim) if t.num_rows else np.zeros((0, dim), np.float32)
    order = np.argsort(got, kind="stable")
    at = np.searchsorted(got[order], want)
    if len(want) and (at.max() >= len(got) or not np.array_equal(got[order][at], want)):
        raise RuntimeError("rows changed while the ANN index read them")  # a table version is immutable
    return matrix[order[at]]


def _moved(graph: Graph, vanished: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> dict[int, int]:
    """{row j among the new rows: node} for new rows that are a vanished node's row moved by a
    compaction: same id, bit-equal vector."""
    if not len(vanished):
        return {}
    node_of = {graph.ids[label]: label for label in vanished}
    stored = graph.vectors()
    return {j: node_of[i] for j, i in enumerate(ids)
            if i in node_of and np.array_equal(stored[node_of[i]], vectors[j])}


def _write_labels(path: Path, graph: Graph) -> None:
    t = pa.table({"rowid": pa.array(graph.rowids, pa.uint64()), "id": pa.array(graph.ids.tolist(), pa.string()),
                  "alive": pa.array(graph.alive)})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, t.schema) as writer:
        writer.write_table(t)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _read_state(folder: Path, dim: int) -> tuple[dict[str, Graph], set[str]]:
    faiss = _faiss()
    state = json.loads((folder / STATE).read_text("utf-8"))
    if state.get("format") != FORMAT or state.get("dim") != dim:
        raise ValueError(f"format {state.get('format')} dim {state.get('dim')}, want {FORMAT} / {dim}")
    graphs = {}
    for m, part in state["graphs"].items():
        index = faiss.read_index(str(folder / part["index"]))
        with pa.memory_map(str(folder / part["labels"])) as source:
            labels = pa.ipc.open_file(source).read_all()
        if index.d != dim or index.ntotal != labels.num_rows or labels.num_rows != part["nodes"]:
            raise ValueError(f"graph {m!r}: {index.ntotal} nodes of {index.d} dims, {labels.num_rows} labels")
        index.hnsw.efConstruction = EF_CONSTRUCTION
        graphs[m] = Graph(index, labels.column("rowid").to_numpy().astype(np.uint64),
                          np.array(labels.column("id").to_pylist(), dtype=object),
                          labels.column("alive").to_numpy(zero_copy_only=False).astype(bool).copy(),
                          np.full(labels.num_rows, -1, np.int64))
    return graphs, {p for g in state["graphs"].values() for p in (g["index"], g["labels"])}


def _check_vectors(table: Any, graphs: dict[str, Graph]) -> None:
    """A few live nodes of a loaded index must hold their row's vector (a table recreated under the
    same folder reuses row addresses)."""
    rng = np.random.default_rng(0)
    for graph in graphs.values():
        live = np.flatnonzero(graph.alive)
        pick = rng.choice(live, min(CHECK_ROWS, len(live)), replace=False) if len(live) else live
        if not len(pick):
            continue
        t = table.take_row_ids([int(r) for r in graph.rowids[pick]]).select(["id", "vector"]).with_row_id().to_arrow()
        found = {int(r): (i, np.asarray(v, np.float32)) for r, i, v in zip(
            t.column("_rowid").to_pylist(), t.column("id").to_pylist(), t.column("vector").to_pylist())}
        stored = graph.vectors()
        for label in pick:
            row = found.get(int(graph.rowids[label]))
            if row is not None and (row[0] != graph.ids[label] or not np.array_equal(row[1], stored[label])):
                raise ValueError(f"node {label} no longer holds row {graph.ids[label]!r}")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _clean(folder: Path, keep: set[str], replaced: set[str], grace_s: float = 600.0) -> None:
    """Remove graph files no state names any more: at once those the replaced state named, others
    when older than `grace_s` (another process may be about to name its own)."""
    now = time.time()
    for path in folder.iterdir():
        if path.suffix in (".faiss", ".arrow") and path.name not in keep:
            try:
                if path.name in replaced or now - path.stat().st_mtime > grace_s:
                    path.unlink()
            except OSError:
                pass

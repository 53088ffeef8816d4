"""Collections: a persistent set of embedded items in an embedded LanceDB table.

A collection is a folder: `collection.json` (which space made the vectors, the index settings)
and `db/`, a LanceDB database holding one table, `items`. Named collections live under
`$OMNIBIND_HOME/collections/` (default: the user's data dir); any folder path works too.

Every write is one LanceDB commit (a new table version), so a crash leaves the table at the
last commit: never half a batch. Items are keyed by `id` (a file's absolute path, or a
caller-chosen id) and written with merge-insert, so writing the same item twice replaces it.
Each row records the fingerprint of the space that embedded it; a collection never mixes
vectors of two spaces in a search (re-embedding is resumable, row by row).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from omnibind import modalities
from omnibind import views as view_names
from omnibind.calibration import Calibration
from omnibind.errors import OmnibindError
from omnibind.facts import normalise_tags, words_of
from omnibind.inputs import Input, load_file, to_input
from omnibind.paths import (HOME_ENV, META_FILE, CollectionError, collection_path, existing_collection,  # noqa: F401
                            omnibind_home)  # (re-exported)
from omnibind.space import Space, load_space
from omnibind.sql import sql_list, sql_string  # noqa: F401 - (re-exported)
from omnibind.views.embed import TEXT_KINDS, calibration_group
from omnibind.writer import LOCK_FILE, WriterLock

TABLE = "items"
STAMP_SLACK_NS = 50_000_000  # file clocks tick every few ms: a folder stamp this close to a reading may hide a commit
FORMAT_VERSION = 3  # 2: segment rows beside item rows (`item`, `kind`, location); 3: typed metadata columns
INDEX_THRESHOLD = 100_000  # below this many rows search is exact, in memory (3.8-5.2 ms at 100k: benchmarks/search.py)
THUMBNAIL_PX = 160
REPAIR_FILE = "repair-pending.parquet"


def schema(dim: int, index_dim: int | None = None) -> pa.Schema:
    """The items table: what search needs (vectors, filters) and what a result page shows."""
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("modality", pa.string()),
        pa.field("source", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime", pa.float64()),
        pa.field("metadata", pa.string()),  # JSON object
        pa.field("text", pa.string()),  # the text of a text item (for display and re-embedding)
        pa.field("thumbnail", pa.binary()),  # small JPEG of an image or a video's middle frame
        pa.field("duration", pa.float64()),  # seconds, audio and video
        pa.field("space", pa.string()),  # fingerprint of the space that made `vector`
        *SEGMENT_FIELDS,
        *FACT_FIELDS,
    ]
    if index_dim:
        fields.insert(2, pa.field("vector_short", pa.list_(pa.float32(), index_dim)))
    return pa.schema(fields)


# An item is one row of kind "item" plus a row per segment (omnibind/views): a segment row has its
# own id ("<item id>#<kind>/<n>"), its item's id in `item`, its kind and location, and in `text` the
# words it came from. Item and segments are written in one commit (`Collection.upsert`).
ITEM = "item"
SEGMENT_FIELDS = (
    pa.field("item", pa.string()),  # the item a row belongs to (its own id for an item row)
    pa.field("kind", pa.string()),  # "item", or the segment kind (omnibind/views KINDS)
    pa.field("start", pa.float64()),  # seconds
    pa.field("end", pa.float64()),
    pa.field("page", pa.int32()),
    pa.field("char_start", pa.int64()),
    pa.field("char_end", pa.int64()),
    pa.field("views", pa.string()),  # item rows: the views that made its segments ("speech,ocr")
)
# What filters read (omnibind/facts.py, omnibind/filters.py): typed columns on every row of an item
# (segment rows copy them, so a filter passes or drops an item's segments with it), never JSON.
FACT_FIELDS = (
    pa.field("tags", pa.list_(pa.string())),  # lower-cased: `ingest --tag`, a sidecar, PATCH /v1/items
    pa.field("note", pa.string()),  # a sidecar's note
    pa.field("created", pa.float64()),  # Unix seconds: EXIF / container creation time, else mtime
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("words", pa.string()),  # what full-text search reads: file name words, tags, note, text
    pa.field("sidecar", pa.string()),  # digest of the sidecar the row was made with (a change re-ingests)
)
FACT_COLUMNS = ("tags", "note", "created", "width", "height", "sidecar")
# What a v2 table gains when opened by this version: `created` stays NULL until the next ingest
# reads each file's date and size again (`Collection.unread_facts`, without embedding it again)
MIGRATE_V2 = {"note": "CAST(NULL AS STRING)", "created": "CAST(NULL AS DOUBLE)", "width": "CAST(NULL AS INT)",
              "height": "CAST(NULL AS INT)", "words": "COALESCE(text, source)", "sidecar": "CAST(NULL AS STRING)"}
# What a v1 table gains when opened by this version: every row is an item of its own
MIGRATE_V1 = {"item": "id", "kind": "'item'", "start": "CAST(NULL AS DOUBLE)", "end": "CAST(NULL AS DOUBLE)",
              "page": "CAST(NULL AS INT)", "char_start": "CAST(NULL AS BIGINT)", "char_end": "CAST(NULL AS BIGINT)",
              "views": "CAST(NULL AS STRING)"}

FSBYTES = "fsbytes:"  # ids of paths that are not valid UTF-8: the raw bytes, escaped


def path_id(path: str | Path) -> str:
    """A file's id (and `source`): its path, or — for a name that is not valid UTF-8 — the raw
    bytes escaped losslessly ('\\' for a backslash, '\\xNN' for an undecodable byte) after
    'fsbytes:', so LanceDB (UTF-8 strings) can store every file and `source_path` gets it back."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = os.fsencode(text)
        return FSBYTES + raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def source_path(item_id: str) -> str:
    """The filesystem path of an id made by `path_id` (surrogate-escaped where it was bytes)."""
    if not item_id.startswith(FSBYTES):
        return item_id
    escaped = item_id[len(FSBYTES):].encode("utf-8")
    raw = re.sub(rb"\\\\|\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else b"\\", escaped)
    return os.fsdecode(raw)


def make_rows(item: Input, embedded: Any, item_id: str, *, sha256: str | None = None, size: int | None = None,
              mtime: float | None = None, metadata: dict[str, Any] | None = None,
              views: Sequence[str] = (), facts: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The one definition of an item's rows (every entry point — local, Ray, HTTP ingest and
    `Collection.add` — builds rows here): the item row, then one row per segment of `embedded`
    (an `ItemEmbedding`, or a bare vector for an item without segments). `facts` fills the typed
    columns (FACT_COLUMNS: omnibind/facts.py); "tags" and "note" in `metadata` go to theirs too.
    `Collection.upsert` adds what the table derives."""
    if sha256 is None and item.modality == "text":
        sha256 = hashlib.sha256(item.payload.encode("utf-8")).hexdigest()
    duration = getattr(item.payload, "duration", None)
    vector = getattr(embedded, "vector", embedded)
    extra = dict(metadata or {})
    typed = {**{k: extra.pop(k) for k in ("tags", "note") if k in extra}, **(facts or {})}
    tags = normalise_tags(typed.get("tags") or [])
    text = item.payload if item.modality == "text" else None
    row = {
        "id": item_id, "vector": vector, "modality": item.modality, "source": item.source,
        "sha256": sha256, "size": size, "mtime": mtime, "metadata": json.dumps(extra),
        "text": text, "thumbnail": thumbnail_jpeg(item),
        "duration": float(duration) if isinstance(duration, (int, float)) else None,
        "item": item_id, "kind": ITEM, "views": ",".join(views),
        "start": None, "end": None, "page": None, "char_start": None, "char_end": None,
        **{k: typed.get(k) for k in FACT_COLUMNS}, "tags": tags,
    }
    row["words"] = item_words(row)
    segments = getattr(embedded, "segments", None) or []
    vectors = getattr(embedded, "segment_vectors", None)
    return [row] + [_segment_row(row, n, seg, vectors[n]) for n, seg in enumerate(segments)]


def item_words(row: dict[str, Any]) -> str:
    """An item row's full-text words from its path, text, tags and note (rebuilt when they change)."""
    return words_of(row["source"], row.get("text"), row.get("tags") or [], row.get("note"))


def _segment_row(item: dict[str, Any], n: int, segment: Any, vector: np.ndarray) -> dict[str, Any]:
    chars = segment.chars or (None, None)
    return {**item, "id": f"{item['id']}#{segment.kind}/{n}", "vector": vector, "thumbnail": None, "views": None,
            "kind": segment.kind, "text": segment.text, "start": segment.start, "end": segment.end,
            "page": segment.page, "char_start": chars[0], "char_end": chars[1], "words": words_of(None, segment.text)}


def thumbnail_jpeg(item: Input) -> bytes | None:
    """A small JPEG for a result page, from the modality table's thumbnail maker (or None)."""
    try:
        image = modalities.thumbnail(item.modality, item.payload)
        if image is None:
            return None
        small = image.copy() if image.mode == "RGB" else image.convert("RGB")
        small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=80)
        return out.getvalue()
    except OmnibindError:
        return None


@dataclass
class Snapshot:
    """A small collection's vectors and result fields in memory, for one table version: exact
    search by one matrix product instead of a LanceDB scan per modality (20-40x faster at 100k)."""

    version: int
    vectors: dict[str, np.ndarray]  # modality -> [n, dim] float32
    rows: dict[str, list[dict[str, Any]]]  # modality -> result fields, aligned with vectors
    items: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> item number of each row
    classes: dict[str, np.ndarray] = field(default_factory=dict)  # 0 item row, 1 words, 2 piece of media


SNAPSHOT_MAX_ROWS = 100_000  # ~150 MB of float32 384-d vectors at most
RESULT_COLUMNS = ["id", "source", "modality", "metadata", "text", "duration", "size",
                  "item", "kind", "start", "end", "page", "char_start", "char_end",
                  "tags", "note", "created", "width", "height"]
ITEMS_ONLY = "kind = 'item'"


@dataclass
class SpaceRecord:
    """Which space made a collection's vectors: enough to reload it and to check it."""

    ref: str  # a named space or a folder path
    name: str
    fingerprint: str
    dim: int

    @classmethod
    def of(cls, space: Space, ref: str | None) -> "SpaceRecord":
        return cls(ref or space.name, space.name, space.fingerprint(), space.dim)


class Collection:
    """A named, persistent set of embedded items; see the module docstring."""

    RESULT_COLUMNS = RESULT_COLUMNS  # what a hit shows (full-text search selects them by the collection)

    def __init__(self, path: Path, space: Space, meta: dict[str, Any], table: Any) -> None:
        self.path, self.space, self.meta, self.table = path, space, meta, table
        self.writer = WriterLock(path / LOCK_FILE, on_acquire=self.refresh)
        self.calibration = Calibration(path, self._modality_vectors)
        self._index: tuple[int, str | None] | None = None  # (table version, index type)
        self._snapshot: tuple[int, Snapshot | None] | None = None  # (table version, snapshot or too large)
        self._counts: tuple[int, tuple[dict[str, int], dict[str, int]]] | None = None  # (version, (items, groups))
        self._meta_stamp: int | None = None  # mtime of collection.json when last read by refresh()
        self._ann: Any = None  # omnibind.ann.AnnIndex, made at the first search over SNAPSHOT_MAX_ROWS
        self._pin = threading.local()  # .version: the table version a search in this thread reads at
        self._seen: tuple[int, int, int] | None = None  # (_versions stamp, when read, version) of the last ask
        self._versions_dir = str(path / "db" / f"{TABLE}.lance" / "_versions")  # stat on every search: built once

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, name_or_path: str | Path, space: Space | str | None = None, *, create: bool = True,
             reembed: bool = False, index_dim: int | None = None, home: Path | None = None) -> "Collection":
        """Open (or create) a collection.

        `space` may be a Space, a space name/folder, or None: the space recorded in the collection
        (or the default space for a new one). A different space than the recorded one is an
        error unless `reembed=True`; then call `reembed()` to rewrite the vectors.
        """
        path = collection_path(name_or_path, home)
        meta_file = path / META_FILE
        if meta_file.exists():
            meta = _migrate(path, _read_meta(meta_file))
            recorded = SpaceRecord(**meta["space"])
            sp = _resolve_space(space if space is not None else recorded.ref)
            if sp.fingerprint() != recorded.fingerprint:
                if not reembed:
                    raise CollectionError(
                        f"collection {path} was embedded with space {recorded.name!r} ({recorded.fingerprint[:12]}); "
                        f"space {sp.name!r} ({sp.fingerprint()[:12]}) makes different vectors. Re-embed with "
                        "`omnibind ingest --reembed` / Collection.open(..., reembed=True).reembed(), or use the recorded space"
                    )
                if sp.dim != recorded.dim:
                    raise CollectionError(f"cannot re-embed {path}: space dim {sp.dim} != collection dim {recorded.dim}")
                meta["pending_space"] = asdict_record(SpaceRecord.of(sp, space if isinstance(space, str) else None))
                _write_meta(meta_file, meta)
            db = _connect(path)
            return cls(path, sp, meta, db.open_table(TABLE))
        if not create:
            existing_collection(name_or_path, home)  # raises, naming the collections that do exist
        sp = _resolve_space(space if space is not None else "default")
        if index_dim is not None and not 1 <= index_dim < sp.dim:
            raise CollectionError(f"index_dim must be between 1 and {sp.dim - 1}, got {index_dim}")
        path.mkdir(parents=True, exist_ok=True)
        db = _connect(path)
        table = db.create_table(TABLE, schema=schema(sp.dim, index_dim), exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "name": path.name,
                "space": asdict_record(SpaceRecord.of(sp, space if isinstance(space, str) else None)),
                "index_dim": index_dim, "index_threshold": INDEX_THRESHOLD, "views": list(view_names.DEFAULT)}
        _write_meta(meta_file, meta)  # written last: a folder without it is not a collection yet
        return cls(path, sp, meta, table)

    @staticmethod
    def list(home: Path | None = None) -> list[dict[str, Any]]:
        """Every named collection under <home>/collections with its row count and space."""
        root = (home or omnibind_home()) / "collections"
        out = []
        for folder in sorted(root.glob("*/")) if root.is_dir() else []:
            if (folder / META_FILE).exists():
                try:  # stats need no space: do not load backbones to list collections
                    meta = _read_meta(folder / META_FILE)
                    out.append(Collection(folder, None, meta, _connect(folder).open_table(TABLE)).stats())  # type: ignore[arg-type]
                except (OmnibindError, OSError, ValueError) as exc:
                    out.append({"name": folder.name, "path": str(folder), "error": str(exc)})
        return out

    @staticmethod
    def drop(name_or_path: str | Path, home: Path | None = None) -> Path:
        """Delete a collection folder (only folders that hold a collection)."""
        path = collection_path(name_or_path, home)
        existing_collection(name_or_path, home)
        shutil.rmtree(path)
        return path

    # -- reading --------------------------------------------------------------------------------

    def refresh(self) -> "Collection":
        """See other processes' writes: check out the latest table version and re-read the
        collection record (cheap when nothing changed). Writers do this when they take the lock;
        a long-lived reader (the server) before each request."""
        self.table.checkout_latest()
        self._seen = None
        try:
            stamp = (self.path / META_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            return self
        if stamp != self._meta_stamp:  # re-read the record only when another process rewrote it
            self.meta, self._meta_stamp = _read_meta(self.path / META_FILE), stamp
        return self

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def index_dim(self) -> int | None:
        return self.meta.get("index_dim")

    @property
    def views(self) -> tuple[str, ...]:
        """The views this collection runs on every item it stores (collection.json)."""
        return tuple(self.meta.get("views", view_names.DEFAULT))

    def set_views(self, names: Sequence[str]) -> bool:
        """Record a new view list (the next ingest re-runs items made with other views); returns
        whether it changed."""
        names = list(view_names.parse(list(names)))
        if names == list(self.views):
            return False
        self.meta["views"] = names
        _write_meta(self.path / META_FILE, self.meta)
        return True

    def __len__(self) -> int:
        """Items (not their segment rows)."""
        return self.table.count_rows(ITEMS_ONLY)

    def count(self, where: str | None = None) -> int:
        """Items matching a filter."""
        return self.table.count_rows(f"{ITEMS_ONLY} AND ({where})" if where else ITEMS_ONLY)

    def column(self, *names: str, where: str | None = None) -> pa.Table:
        """Selected columns of every row, segments included (optionally filtered), as Arrow."""
        query = self.table.search().select(list(names)).limit(None)
        return (query.where(where) if where else query).to_arrow()

    def manifest(self) -> dict[str, tuple[str, int, float]]:
        """id -> (state, size, mtime) of every item: what an incremental ingest compares against.
        The state is the sha256, joined to its sidecar's digest when it has one (`file_state`)."""
        names = ("id", "sha256", "size", "mtime", "sidecar")
        t = self.column(*names, where=ITEMS_ONLY)
        return {i: (file_state(h, c), s, m) for i, h, s, m, c in zip(*(t.column(n).to_pylist() for n in names))}

    def unread_facts(self) -> set[str]:
        """Ids of stored files whose typed columns were never read (made before format 3): the
        next ingest reads their dates, sizes and sidecars without embedding them again."""
        t = self.column("id", where=f"{ITEMS_ONLY} AND created IS NULL AND size IS NOT NULL")
        return set(t.column("id").to_pylist())

    def stale_views(self) -> set[str]:
        """Ids of items whose segments were made with other views than the collection's now."""
        want = ",".join(self.views)
        t = self.column("id", "views", where=ITEMS_ONLY)
        return {i for i, v in zip(t.column("id").to_pylist(), t.column("views").to_pylist()) if (v or "") != want}

    def segments(self, item_id: str) -> list[dict[str, Any]]:
        """An item's segment rows (kind, location, text), in the order its views made them."""
        t = self.column("id", "kind", "start", "end", "page", "char_start", "char_end", "text",
                        where=f"item = {sql_string(item_id)} AND NOT {ITEMS_ONLY}")
        return sorted(t.to_pylist(), key=lambda r: (r["kind"], int(r["id"].rsplit("/", 1)[1])))

    def get(self, ids: Sequence[str], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Item rows by id, in the order given (missing ids are left out)."""
        if not ids:
            return []
        t = self.column(*(columns or [f.name for f in self.table.schema]), where=f"id IN ({sql_list(ids)}) AND {ITEMS_ONLY}")
        rows = {r["id"]: r for r in t.to_pylist()} if "id" in t.column_names else {}
        return [rows[i] for i in ids if i in rows]

    def stats(self) -> dict[str, Any]:
        t = self.column("modality", "size", where=ITEMS_ONLY)
        modalities: dict[str, int] = {}
        for m in t.column("modality").to_pylist():
            modalities[m] = modalities.get(m, 0) + 1
        sizes = [s or 0 for s in t.column("size").to_pylist()]
        return {"name": self.name, "path": str(self.path), "items": t.num_rows, "modalities": modalities,
                "bytes": int(sum(sizes)), "space": self.meta["space"]["name"],
                "space_fingerprint": self.meta["space"]["fingerprint"][:12],
                "index": self.index_type(), "pending_reembed": "pending_space" in self.meta,
                "segments": self.table.count_rows() - t.num_rows, "views": list(self.views)}

    def index_type(self) -> str | None:
        """The vector index's type, or None (cached per (table version): listing indices costs a
        round trip on every search otherwise)."""
        version = self.version()
        if self._index is not None and self._index[0] == version:
            return self._index[1]
        kind = next((str(i.index_type) for i in self.table.list_indices()
                     if i.columns and i.columns[0] in ("vector", "vector_short")), None)
        self._index = (version, kind)
        return kind

    def version(self) -> int:
        """The table version: pinned for the length of a search (`pinned`), else `_table_version`
        (LanceDB takes ~0.1-0.7 ms a call, ten calls a search: more than a graph walk of 1M rows)."""
        pinned = getattr(self._pin, "version", None)
        return self._table_version() if pinned is None else pinned

    def _table_version(self) -> int:
        """LanceDB's checked-out version, asked again only when the table's `_versions` folder
        changed since the last answer: a stat (microseconds) instead of a hop to LanceDB's event
        loop (0.1-0.7 ms). The checked-out version moves only by a commit, which writes a manifest
        there, or by `refresh`, which forgets the answer. As git does with racy index stamps, a
        folder stamp within STAMP_SLACK_NS of the reading is not trusted (coarse file clocks)."""
        try:
            stamp = os.stat(self._versions_dir).st_mtime_ns
        except OSError:
            return int(self.table.version)
        seen = self._seen
        if seen is not None and seen[0] == stamp and seen[1] - stamp > STAMP_SLACK_NS:
            return seen[2]
        now = time.time_ns()
        version = int(self.table.version)
        self._seen = (stamp, now, version)
        return version

    @contextmanager
    def pinned(self) -> Iterator["Collection"]:
        """Ask LanceDB for the table version once for a block of reads in this thread."""
        outer = getattr(self._pin, "version", None)
        self._pin.version = self._table_version() if outer is None else outer
        try:
            yield self
        finally:
            self._pin.version = outer

    def snapshot(self) -> Snapshot | None:
        """This table version in memory, or None when the table is over SNAPSHOT_MAX_ROWS (both
        remembered per version: the row count is not asked again on every search)."""
        version = self.version()
        if self._snapshot is not None and self._snapshot[0] == version:
            return self._snapshot[1]
        snap = None if self.table.count_rows() > SNAPSHOT_MAX_ROWS else self._read_snapshot(version)
        self._snapshot = (version, snap)
        return snap

    def _read_snapshot(self, version: int) -> Snapshot:
        t = self.column(*RESULT_COLUMNS, "vector")
        vectors = _vector_matrix(t, self.space.dim if self.space else 0)
        fields = t.drop(["vector"]).to_pylist()
        modality = np.array([r["modality"] for r in fields], dtype=object)
        snap = Snapshot(version, {}, {})
        _, codes = np.unique(np.array([r["item"] or r["id"] for r in fields], dtype=object), return_inverse=True)
        classes = np.array([0 if r["kind"] in (None, ITEM) else 1 if r["kind"] in TEXT_KINDS else 2 for r in fields])
        for m in set(modality.tolist()):
            idx = np.flatnonzero(modality == m)
            snap.vectors[m] = np.ascontiguousarray(vectors[idx], dtype=np.float32)
            snap.rows[m] = [fields[i] for i in idx]
            snap.items[m], snap.classes[m] = codes[idx].astype(np.int64), classes[idx].astype(np.int64)
        return snap

    def modality_counts(self) -> dict[str, int]:
        """Items per modality at this table version."""
        return self._row_counts()[0]

    def group_counts(self) -> dict[str, int]:
        """Rows per calibration group (omnibind/views/embed.py `calibration_group`): what the
        calibration sample is drawn from, so what says whether it is stale."""
        return self._row_counts()[1]

    def has_segments(self) -> bool:
        """Whether any item has segment rows (from the per-version counts: no table scan)."""
        return sum(self.group_counts().values()) > sum(self.modality_counts().values())

    def _row_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        version = self.version()
        if self._counts is not None and self._counts[0] == version:
            return self._counts[1]
        t = self.column("modality", "kind")
        items: dict[str, int] = {}
        groups: dict[str, int] = {}
        for m, kind in zip(t.column("modality").to_pylist(), t.column("kind").to_pylist()):
            if kind == ITEM:
                items[m] = items.get(m, 0) + 1
            g = calibration_group(m, kind)
            groups[g] = groups.get(g, 0) + 1
        self._counts = (version, (items, groups))
        return items, groups

    def _modality_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, calibration group, vectors) of every row: what the calibration sample is drawn from."""
        t = self.column("id", "modality", "kind", "vector")
        ids = np.array(t.column("id").to_pylist(), dtype=object)
        groups = np.array([calibration_group(m, k) for m, k in zip(t.column("modality").to_pylist(),
                                                                   t.column("kind").to_pylist())], dtype=object)
        return ids, groups, _vector_matrix(t, self.space.dim)

    # -- writing --------------------------------------------------------------------------------

    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace items — each an item row and its segment rows (`make_rows`) — in one
        commit (all or nothing). An item's old segments that the new rows lack go in the same
        commit: a crash leaves either the old item with its old segments or the new with the new."""
        if not rows:
            return
        latest = {r["id"]: r for r in rows}  # one row per id: LanceDB rejects ambiguous merges
        data = pa.Table.from_pylist([self._complete(r) for r in latest.values()], schema=self.table.schema)
        items = sorted({r.get("item") or r["id"] for r in latest.values()})
        with self.writer:
            (self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
             .when_not_matched_by_source_delete(f"item IN ({sql_list(items)})").execute(data))

    def add(self, items: Sequence[Any], ids: Sequence[str] | None = None,
            metadata: Sequence[dict[str, Any]] | None = None, batch_size: int = 32) -> list[str]:
        """Embed and store items (texts, files, images...): returns their ids. Raises on a bad item
        before anything is written; use `omnibind.ingest` for folders with per-file reporting."""
        decoded = [to_input(x, self.space.limits) for x in items]
        ids = list(ids) if ids is not None else [_default_id(x, item) for x, item in zip(items, decoded)]
        if len(ids) != len(items) or len(set(ids)) != len(ids):
            raise CollectionError("ids must be unique, one per item")
        embedded, errors = self.space.embed_items(decoded, self.views, batch_size)
        if errors:
            raise errors[min(errors)]
        extra = list(metadata) if metadata is not None else [{}] * len(items)
        self.upsert([row for x, item, e, i, m in zip(items, decoded, embedded, ids, extra)
                     for row in make_rows(item, e, i, metadata=m, views=self.views, facts=_facts(x, item))])
        from omnibind.fulltext import ensure_fts

        ensure_fts(self)  # the words index, made or caught up here: a search never has to write it
        return ids

    def tag(self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = (),
            replace: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Change items' tags (`replace` them all, else `add` then `remove`) in one commit, with
        their segment rows and full-text words; returns id -> its tags now. Missing ids raise."""
        add, remove = normalise_tags(list(add)), normalise_tags(list(remove))
        new = normalise_tags(list(replace)) if replace is not None else None

        def change(item: dict[str, Any]) -> dict[str, Any]:
            tags = new if new is not None else [t for t in [*(item["tags"] or []), *add] if t not in remove]
            return {"tags": list(dict.fromkeys(tags))}

        return {i: list(r["tags"] or []) for i, r in self._update_items(ids, change).items()}

    def set_facts(self, facts: dict[str, dict[str, Any]]) -> int:
        """Write items' typed columns (FACT_COLUMNS, omnibind/facts.py) read again from their
        files, without embedding them again (tags are added to theirs); returns how many items were
        given. Missing ids raise."""
        def change(item: dict[str, Any]) -> dict[str, Any]:
            new = {k: v for k, v in facts[item["id"]].items() if k in FACT_COLUMNS}
            new["tags"] = list(dict.fromkeys([*(item["tags"] or []), *normalise_tags(new.get("tags") or [])]))
            return new

        return len(self._update_items(list(facts), change))

    def _update_items(self, ids: Sequence[str], change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Apply `change(item row) -> new column values` to every row of each item (segments carry
        their item's typed columns) and rebuild its full-text words, in one commit; returns id ->
        the item row after. Missing ids raise CollectionError."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        with self.writer:
            rows = self.column(*[f.name for f in self.table.schema], where=f"item IN ({sql_list(ids)})").to_pylist()
            items = {r["id"]: r for r in rows if r["kind"] == ITEM}
            missing = [i for i in ids if i not in items]
            if missing:
                raise CollectionError(f"no item {missing[0]!r} in collection {self.name}")
            values = {i: change(r) for i, r in items.items()}
            changed = [r for r in rows if any(r.get(k) != v for k, v in values[r["item"]].items())]
            for r in changed:
                r.update(values[r["item"]])
                if r["kind"] == ITEM:
                    r["words"] = item_words(r)
            if changed:
                self._rewrite(changed)
            return items

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace whole rows as read (their ids exist) in one commit; the writer lock is held."""
        data = pa.Table.from_pylist([self._complete(r) for r in rows], schema=self.table.schema)
        self.table.merge_insert("id").when_matched_update_all().execute(data)

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items (with their segments) by id in one commit; returns how many items went."""
        ids = list(ids)
        if not ids:
            return 0
        with self.writer:
            before = len(self)
            self.table.delete(f"item IN ({sql_list(ids)})")
            return before - len(self)

    def _complete(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {f.name: row.get(f.name) for f in self.table.schema}
        vector = np.asarray(row["vector"], dtype=np.float32)
        out["vector"] = vector
        if "vector_short" in out:
            short = vector[: self.index_dim]
            out["vector_short"] = short / max(float(np.linalg.norm(short)), 1e-12)
        out["metadata"] = row.get("metadata") if isinstance(row.get("metadata"), str) else json.dumps(row.get("metadata") or {})
        out["space"] = self.meta["space"]["fingerprint"] if row.get("space") is None else row["space"]
        out["item"] = row.get("item") or row["id"]
        out["kind"] = row.get("kind") or ITEM
        out["tags"] = list(row.get("tags") or [])
        return out

    # -- index ------------------------------------------------------------------------------------

    def ensure_index(self, force: bool = False, progress: Callable[[int], None] | None = None) -> str | None:
        """Keep search fast past SNAPSHOT_MAX_ROWS. With FAISS: build or catch up the in-memory
        ANN index (omnibind/ann.py) and save it, reporting rows added through `progress`. Without
        it (or `force`): build LanceDB's ANN index once the table passes the threshold, then keep it
        fresh: `optimize()` folds newly added rows into it. Returns the index type."""
        from omnibind import ann

        n = self.table.count_rows()  # segment rows are searched too
        current = self.index_type()
        if n > SNAPSHOT_MAX_ROWS and ann.available() and not force:
            if current is not None:
                self.table.optimize()
            self.ann(progress, persist=True)
            return ann.KIND
        column = "vector_short" if self.index_dim else "vector"
        if current is None and (force or n >= int(self.meta.get("index_threshold", INDEX_THRESHOLD))) and n >= 256:
            from lancedb.index import HnswSq

            config = HnswSq(distance_type="cosine", num_partitions=max(1, int(np.sqrt(n) / 4)))
            self.table.create_index(column, config=config, replace=True)  # new API: first argument is the column
            return self.index_type()
        if current is not None:
            self.table.optimize()
        return current

    def ann(self, progress: Callable[[int], None] | None = None, persist: bool = False) -> Any:
        """The in-memory ANN index (omnibind.ann.AnnIndex) at this table version, for a collection
        over SNAPSHOT_MAX_ROWS; None under it (exact search) or without FAISS. Loaded from
        `ann/` beside the table and caught up from it (`persist`: saved again after)."""
        from omnibind import ann

        if self.snapshot() is not None or not ann.available():
            return None
        if self._ann is None:
            self._ann = ann.AnnIndex(self.path / ann.FOLDER, self.space.dim, RESULT_COLUMNS)
        self._ann.sync(self.table, progress, persist, self.version())
        return self._ann

    # -- re-embedding -------------------------------------------------------------------------------

    def reembed(self, batch_size: int = 32, progress: Callable[[int], None] | None = None,
                on_error: Callable[[str, str], None] | None = None) -> int:
        """Rewrite every vector with this collection's (new) space. Resumable: rows already
        carrying the new fingerprint are skipped, so a crash loses at most one batch of work.
        Rows whose source can no longer be read are reported through `on_error` and dropped."""
        pending = self.meta.get("pending_space")
        if not pending:
            return 0
        target = pending["fingerprint"]
        t = self.column("id", "modality", "source", "text", "space", where=ITEMS_ONLY)
        todo = [r for r in t.to_pylist() if r["space"] != target]
        done = 0
        for start in range(0, len(todo), batch_size):
            part = todo[start : start + batch_size]
            items, keep, gone = [], [], []
            for r in part:
                try:
                    items.append(r["text"] if r["modality"] == "text" and r["text"] is not None
                                 else load_file(source_path(r["source"]), self.space.limits))
                    keep.append(r)
                except OmnibindError as exc:
                    gone.append(r["id"])
                    if on_error:
                        on_error(r["source"] or r["id"], str(exc))
            gone += self._reembed_rows(items, keep, target, batch_size, on_error)
            self.delete(gone)
            done += len(part)
            if progress:
                progress(len(part))
        self.meta["space"] = pending
        del self.meta["pending_space"]
        _write_meta(self.path / META_FILE, self.meta)
        return done

    def _reembed_rows(self, items: list[Any], keep: list[dict[str, Any]], target: str, batch_size: int,
                      on_error: Callable[[str, str], None] | None) -> list[str]:
        """Re-embed loaded items (views re-run) keeping what their rows recorded; returns the
        ids that failed."""
        decoded = [to_input(x, self.space.limits) for x in items]
        embedded, errors = self.space.embed_items(decoded, self.views, batch_size)
        full = {r["id"]: r for r in self.get([r["id"] for r in keep])}
        rows = []
        for item, e, r in zip(decoded, embedded, keep):
            old = full[r["id"]]
            if e is None:
                continue
            rows += [{**row, "space": target} for row in make_rows(
                item, e, r["id"], sha256=old["sha256"], size=old["size"], mtime=old["mtime"],
                metadata=json.loads(old["metadata"] or "{}"), views=self.views)]
        self.upsert(rows)
        for j, exc in errors.items():
            if on_error:
                on_error(keep[j]["source"] or keep[j]["id"], exc.reason)
        return [keep[j]["id"] for j in errors]

    def repair(self) -> int:
        """Keep one row per id in a table damaged by concurrent writers of older omnibind versions
        (every row stored twice); returns how many rows were removed. Crash-safe: the kept rows are
        saved beside the table first and restored by the next `repair` if it dies half-way."""
        pending = self.path / REPAIR_FILE
        with self.writer:
            if pending.exists():
                self._restore(pending)
            t = self.table.to_arrow()
            ids = t.column("id").to_pylist()
            dup = sorted(i for i, n in Counter(ids).items() if n > 1)
            if not dup:
                return 0
            first = {i: n for n, i in reversed(list(enumerate(ids)))}
            keep = t.take([first[i] for i in dup])
            import pyarrow.parquet as pq

            pq.write_table(keep, pending.with_suffix(".tmp"))
            os.replace(pending.with_suffix(".tmp"), pending)
            self.table.delete(f"id IN ({sql_list(dup)})")
            self._restore(pending)
            return len(ids) - len(set(ids))

    def _restore(self, pending: Path) -> None:
        import pyarrow.parquet as pq

        rows = pq.read_table(pending)
        self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        pending.unlink()

    def check_consistent(self) -> None:
        """Refuse to search a collection that still mixes vectors of two spaces."""
        if "pending_space" in self.meta:
            raise CollectionError(f"collection {self.path} is being re-embedded: run reembed() (`omnibind ingest --reembed`) to finish")


# -- helpers ----------------------------------------------------------------------------------------


def _resolve_space(space: Any) -> Space:
    return space if isinstance(space, Space) else load_space(space)


def asdict_record(r: SpaceRecord) -> dict[str, Any]:
    return {"ref": r.ref, "name": r.name, "fingerprint": r.fingerprint, "dim": r.dim}


def _connect(path: Path) -> Any:
    os.environ.setdefault("LANCE_LOG", "error")  # lance's Rust logger warns on routine events (table creation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import lancedb

    return lancedb.connect(str(path / "db"))


def _migrate(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Bring an older collection to this format in place: format 1 (one row per item) gains the
    segment columns (every old row is an item of its own), format 2 the typed metadata columns
    (`created` from mtime, `words` from the text or the path: re-ingest to split file names);
    then the record says FORMAT_VERSION. Adding a column is one commit: a crash re-runs it."""
    version = meta.get("format_version")
    if version == FORMAT_VERSION:
        return meta
    table = _connect(path).open_table(TABLE)
    for wanted in (MIGRATE_V1, MIGRATE_V2):
        missing = {k: v for k, v in wanted.items() if k not in table.schema.names}
        if missing:
            table.add_columns(missing)
    if "tags" not in table.schema.names:
        table.add_columns(pa.field("tags", pa.list_(pa.string())))
    meta = {**meta, "format_version": FORMAT_VERSION}
    if version == 1:
        meta["views"] = []  # made without views: none re-run unasked
    _write_meta(path / META_FILE, meta)
    return meta


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CollectionError(f"{path}: unreadable collection record: {exc}") from exc
    if meta.get("format_version") not in (1, 2, FORMAT_VERSION):
        raise CollectionError(f"{path}: collection format {meta.get('format_version')!r}, this omnibind reads {FORMAT_VERSION}")
    return meta


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Atomic: write a temp file, fsync, rename over the old one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(meta, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _vector_matrix(t: pa.Table, dim: int) -> np.ndarray:
    """The `vector` column of an Arrow table as one [rows, dim] float32 array."""
    if not t.num_rows:
        return np.zeros((0, dim), np.float32)
    return t.column("vector").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)


def file_state(sha256: str | None, sidecar: str | None) -> str | None:
    """What says a file is unchanged: its content hash, with its sidecar's digest when it has one."""
    return f"{sha256}+{sidecar}" if sidecar and sha256 else sha256


def _facts(obj: Any, item: Input) -> dict[str, Any]:
    """Typed columns of an item handed to `Collection.add`: a file's dates and size (as ingest
    reads them), an in-memory image's size."""
    from omnibind.facts import facts_of

    if isinstance(obj, Path):
        try:
            return facts_of(obj.read_bytes(), item, obj.stat().st_mtime)
        except OSError:
            return {}
    return facts_of(b"", item, None) if item.modality == "image" else {}


def _default_id(obj: Any, item: Any) -> str:
    if isinstance(obj, Path):
        return str(obj.resolve())
    if item.modality == "text":
        return "text:" + hashlib.sha256(item.payload.encode("utf-8")).hexdigest()[:32]
    raise CollectionError("in-memory media need ids: pass ids=[...] (files and texts get one automatically)")

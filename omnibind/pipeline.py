"""The item pipeline: the one road every file travels into a collection.

    source -> read once (bytes or memory map) -> sha256 -> unchanged? -> decode (modality table)
           -> views -> segments -> Space.embed_items (batched) -> collection.make_rows (item + segments)
           -> BatchResult -> one commit (ingest.py)

`embed_batch` is the per-batch step of every engine: the local engine calls it in-process, the Ray
engine calls it inside its actors (omnibind/scale/ray_ingest.py) and ships the result back as Arrow.
Engines differ only in where batches run; the rows, the failures and their reasons are the same.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from omnibind.collection import FACT_COLUMNS, ITEM, file_state, make_rows, path_id, schema, source_path
from omnibind.errors import InputError, OmnibindError
from omnibind.facts import Sidecar, facts_of, is_sidecar, read_sidecar
from omnibind.inputs import FileData, beneath, decode, read_file
from omnibind.space import Space

URI_COLUMNS = ("uri", "path", "source")
OnSkip = Callable[[str, str], None]


@dataclass
class BatchResult:
    """What one batch came to: rows to store, and every file that was not stored, with why."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # item rows, each followed by its segment rows
    failed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # stored ids whose file turned unreadable
    notes: list[tuple[str, str]] = field(default_factory=list)  # (id, what a view could not do)
    parts: dict[str, int] = field(default_factory=dict)  # item -> its row count (from Arrow: see to_arrow)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # unchanged items' typed columns, read again

    @property
    def items(self) -> int:
        return sum(1 for r in self.rows if r.get("kind", ITEM) == ITEM)

    def to_arrow(self, dim: int) -> pa.Table:
        """One Arrow table (the collection's row schema + status, reason, and `parts`: how many rows
        the item has, so a receiver that gets an item split over two tables can wait for the rest)."""
        out = schema(dim).append(pa.field("status", pa.string())).append(pa.field("reason", pa.string()))
        out = out.append(pa.field("parts", pa.int32()))
        parts: dict[str, int] = {}
        for r in self.rows:
            parts[r.get("item") or r["id"]] = parts.get(r.get("item") or r["id"], 0) + 1
        rows = [{**r, "status": "embedded", "parts": parts[r.get("item") or r["id"]]} for r in self.rows]
        rows += [{"id": i, "item": i, "status": "note", "reason": why} for i, why in self.notes]
        rows += [{"id": i, "status": "failed", "reason": why} for i, why in self.failed]
        rows += [{"id": i, "status": "unchanged"} for i in self.unchanged]
        rows += [{"id": i, "status": "facts", **f} for i, f in self.facts.items()]
        columns = {f.name: [r.get(f.name) for r in rows] for f in out if f.name != "vector"}
        vectors = np.zeros((len(rows), dim), np.float32)
        vectors[: len(self.rows)] = [r["vector"] for r in self.rows] if self.rows else vectors[:0]
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
        return pa.table({f.name: pa.array(columns[f.name], f.type) if f.name != "vector" else columns["vector"]
                         for f in out}, schema=out)

    @classmethod
    def from_arrow(cls, table: pa.Table, known: dict[str, Any]) -> "BatchResult":
        status = table.column("status").to_pylist()
        vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
        fields = table.drop(["vector", "status"]).to_pylist()
        result = cls()
        for n, (state, row) in enumerate(zip(status, fields)):
            if state == "embedded":
                result.parts[row["item"]] = row["parts"]
                result.rows.append({**{k: v for k, v in row.items() if k not in ("reason", "space", "parts")}, "vector": vectors[n]})
            elif state == "note":
                result.notes.append((row["id"], row["reason"]))
            elif state == "unchanged":
                result.unchanged.append(row["id"])
            elif state == "facts":
                result.facts[row["id"]] = {k: row[k] for k in FACT_COLUMNS}
            else:
                result.failed.append((row["id"], row["reason"]))
                if row["id"] in known:
                    result.stale.append(row["id"])
        return result


def embed_batch(space: Space, sources: Sequence[str], known: dict[str, str], root: str | None = None,
                views: Sequence[str] = (), tags: Sequence[str] = (), refresh: frozenset[str] = frozenset()) -> BatchResult:
    """Read, hash, skip-if-unchanged, decode, run the `views`, embed and turn into rows (an item
    row and its segment rows) a batch of sources (local paths or URIs). `known` maps stored ids to
    their state (`collection.file_state`: sha256, + the sidecar's digest). With `root`, a local file
    whose opened path is not beneath it (a link swapped in after the walk) is refused. `tags` go on
    every item embedded, beside its sidecar's (omnibind/facts.py); unchanged files in `refresh` get
    their typed columns read again (`BatchResult.facts`), not their vectors. A bad file fails alone,
    whatever goes wrong with it; an unusable sidecar is a note, and the item is stored without it."""
    result = BatchResult()
    todo: list[tuple[FileData, str, Any, Sidecar | None]] = []
    for source in sources:
        try:
            read = read_source(source, space.limits, root)
            digest = hashlib.sha256(read.data).hexdigest()
            side = _sidecar(source, space.limits, root, result)
            if known.get(source) == file_state(digest, side.digest if side else None):
                result.unchanged.append(source)
                if source in refresh:
                    _refresh_facts(result, read, source, space.limits, side, tags)
                continue
            todo.append((read, digest, decode(read.data, source, space.limits, name=read.path), side))
        except InputError as exc:
            _fail(result, source, exc.reason, known)
        except Exception as exc:  # a decoder bug must cost one file, never the batch
            _fail(result, source, f"unexpected {type(exc).__name__}: {exc}", known)
    for j, embedded, error in _embed_isolated(space, [t[2] for t in todo], views):
        read, digest, item, side = todo[j]
        if error is not None:  # non-finite vectors are refused by the tower (tower.refuse_non_finite)
            _fail(result, item.source, error, known)
            continue
        result.rows += make_rows(item, embedded, item.source, sha256=digest, size=read.size, mtime=read.mtime,
                                 views=views, facts=_facts(read, item, side, tags), metadata=side.extra if side else None)
        result.notes += [(item.source, note) for note in embedded.notes]
    return result


def _facts(read: FileData, item: Any, side: Sidecar | None, tags: Sequence[str]) -> dict[str, Any]:
    """An item's typed columns (omnibind/facts.py): what its file says, its sidecar's tags and
    note, and the run's tags."""
    return {**facts_of(read.data, item, read.mtime), "tags": [*(side.tags if side else []), *tags],
            "note": side.note if side else None, "sidecar": side.digest if side else None}


def _refresh_facts(result: BatchResult, read: FileData, source: str, limits: Any, side: Sidecar | None,
                   tags: Sequence[str]) -> None:
    """Read an unchanged stored file's typed columns again; if it no longer decodes, keep what is
    stored (its vector is still the one of these bytes) and say so in a note."""
    try:
        result.facts[source] = _facts(read, decode(read.data, source, limits), side, tags)
    except InputError as exc:
        result.notes.append((source, f"dates and size not read: {exc.reason}"))


def _sidecar(source: str, limits: Any, root: str | None, result: BatchResult) -> Sidecar | None:
    """A local file's sidecar (omnibind/facts.py), or None; an unusable one becomes a note."""
    local = local_path(source)
    if local is None:
        return None
    try:
        return read_sidecar(local, limits, root)
    except InputError as exc:
        result.notes.append((source, f"sidecar ignored: {exc.reason}"))
        return None


def _embed_isolated(space: Space, items: list[Any], views: Sequence[str]) -> Iterator[tuple[int, Any, str | None]]:
    """(index, ItemEmbedding, None) or (index, None, reason) for each item: one batch call; if the
    batch raises something other than a per-input error, each item alone, so only the culprit fails."""
    if not items:
        return
    try:
        embedded, errors = space.embed_items(items, views)
    except Exception:  # noqa: BLE001 - isolate below
        for j, item in enumerate(items):
            try:
                one, bad = space.embed_items([item], views)
                yield (j, one[0], None) if not bad else (j, None, bad[0].reason)
            except Exception as exc:  # noqa: BLE001
                yield j, None, f"unexpected {type(exc).__name__} while embedding: {exc}"
        return
    for j, e in sorted(errors.items()):
        yield j, None, e.reason
    for j, got in enumerate(embedded):
        if got is not None:
            yield j, got, None


def _fail(result: BatchResult, source: str, reason: str, known: dict[str, str]) -> None:
    result.failed.append((source, reason))
    if source in known:
        result.stale.append(source)  # its content changed into something unreadable: the old vector is wrong


def local_path(source: str) -> str | None:
    """The filesystem path of a local source (a path or a file:// URI), None for other URIs."""
    if "://" not in source or source.startswith("file://"):
        return source_path(source.removeprefix("file://"))
    return None


def read_source(source: str, limits: Any, root: str | None = None) -> FileData:
    """A local path (or file:// URI) read once with `read_file` — beneath `root` when given — or
    any URI a pyarrow filesystem understands (s3://, gs://, hdfs://...) read whole."""
    local = local_path(source)
    if local is not None:
        return read_file(local, limits, within=root)
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(source)
        info = fs.get_file_info(path)
        if info.size is not None and info.size > limits.max_file_bytes:
            raise InputError(source, f"file is {info.size} bytes, over the limit of {limits.max_file_bytes}")
        with fs.open_input_file(path) as fh:
            data = fh.read()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(source, f"cannot read file: {exc}") from None
    if not data:
        raise InputError(source, "empty file (0 bytes)")
    return FileData(Path(path), data, len(data), info.mtime.timestamp() if info.mtime else 0.0)


# -- listing -------------------------------------------------------------------------------------


def excluded(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a path (relative to the walk's root, '/'-separated) matches a glob pattern, by its
    whole relative path ("drafts/*.txt") or by its name ("*.tsv", "Thumbs.db")."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch(relative, p) or fnmatch(name, p) for p in patterns)


LINKS = ("inside", "all", "none")


def walk(root: Path, on_skip: OnSkip, exclude: Sequence[str] = (), links: str = "inside") -> Iterator[Path]:
    """Every regular file under `root` (sorted, following directory links once), skipping hidden
    names and `exclude` globs. Symbolic links are followed when they resolve inside `root`
    (`links="inside"`, the default: a link out of the folder is reported, never read), always
    ("all") or never ("none"). Symlink loops, broken links and unreadable directories go to
    `on_skip(path, reason)`."""
    if links not in LINKS:
        raise ValueError(f"links must be one of {', '.join(LINKS)}, got {links!r}")
    root = Path(os.path.abspath(root))
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise OmnibindError(f"{root}: no such folder")
    seen_dirs: set[tuple[int, int]] = set()
    rules = (os.path.realpath(root), links)
    stack = [iter(_entries(root, seen_dirs, on_skip, rules))]
    while stack:  # depth-first in name order, without recursion (folders may nest deeply)
        for path, kind in stack[-1]:
            if exclude and excluded(path.relative_to(root).as_posix(), exclude):
                continue
            if kind == "dir":
                stack.append(iter(_entries(path, seen_dirs, on_skip, rules)))
                break
            yield path
        else:
            stack.pop()


def _entries(folder: Path, seen_dirs: set[tuple[int, int]], on_skip: OnSkip,
             rules: tuple[str, str]) -> list[tuple[Path, str]]:
    """(path, "dir" | "file") of a folder's visible entries in name order; problems go to on_skip."""
    try:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen_dirs:
            on_skip(path_id(folder), f"symlink loop: {os.path.realpath(folder)} was already walked")
            return []
        seen_dirs.add((st.st_dev, st.st_ino))
        entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        on_skip(path_id(folder), f"cannot read folder: {exc.strerror or exc}")
        return []
    return [found for entry in entries if not entry.name.startswith(".")
            and (found := _entry(entry, on_skip, rules)) is not None]


def _entry(entry: os.DirEntry, on_skip: OnSkip, rules: tuple[str, str]) -> tuple[Path, str] | None:
    path = Path(entry.path)
    real_root, links = rules
    if entry.is_symlink() and links != "all":
        target = os.path.realpath(path)
        if links == "none" or not beneath(target, real_root):
            why = "symbolic link (links are not followed)" if links == "none" else \
                f"symbolic link to {target}, outside {real_root}: not followed"
            on_skip(path_id(path), why)
            return None
    try:
        mode = entry.stat(follow_symlinks=True).st_mode
    except FileNotFoundError:
        on_skip(path_id(path), "broken symlink" if entry.is_symlink() else "vanished while walking")
        return None
    except OSError as exc:  # ELOOP for a link to itself
        on_skip(path_id(path), f"cannot stat: {exc.strerror or exc}")
        return None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return path, "dir" if stat.S_ISDIR(mode) else "file"
    on_skip(path_id(path), "not a regular file (device, pipe or socket)")
    return None


def list_sources(source: str | Path, on_skip: OnSkip, exclude: Sequence[str] = (), links: str = "inside") -> list[str]:
    """Sources to ingest: a folder (walked), a glob, a Parquet file with a uri/path column, a
    `.uris` / `.lst` manifest (one URI per line), or a single file or URI."""
    text = str(source)
    if "://" not in text and Path(text).is_dir():
        return _without_sidecars([path_id(p) for p in walk(Path(text), on_skip, exclude, links)])
    if any(c in text for c in "*?[") and "://" not in text:
        paths = globlib.glob(os.path.expanduser(text), recursive=True)
        return _without_sidecars(sorted(os.path.abspath(p) for p in paths if os.path.isfile(p) and not excluded(p, exclude)))
    if text.endswith(".parquet"):
        return _parquet_uris(text)
    if text.endswith((".lst", ".uris")) and Path(text).is_file():
        lines = Path(text).read_text("utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if "://" in text or Path(text).is_file():
        return [text if "://" in text else os.path.abspath(text)]
    raise OmnibindError(f"{text}: no such folder, file, glob match or manifest")


def _without_sidecars(sources: list[str]) -> list[str]:
    """A listing without the sidecars of files it holds (`x.jpg.json` beside `x.jpg`): they are
    read with their file (omnibind/facts.py), not stored as items of their own."""
    present = set(sources)
    return [s for s in sources if not is_sidecar(s, present)]


def _parquet_uris(path: str) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    column = next((c for c in URI_COLUMNS if c in table.column_names), None)
    if column is None:
        raise OmnibindError(f"{path}: no {'/'.join(URI_COLUMNS)} column (columns: {', '.join(table.column_names)})")
    return [u for u in table.column(column).to_pylist() if u]

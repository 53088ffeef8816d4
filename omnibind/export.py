"""Export a collection's rows to files other tools read without LanceDB (issue 19,
interoperability): one Parquet file, or NumPy vectors beside a Parquet table of ids.

Rows are streamed from LanceDB in batches (`to_batches`), so a collection of any size is
exported in bounded memory, and every file is written to a temporary name and renamed into
place: a crash or an error never leaves a half-written file under the final name.

* **parquet** (`out` is a file): every column of the items table — `id`, `vector` (fixed-size
  list of float32, the space's dimension), `modality`, `source`, `sha256`, `size`, `mtime`,
  `metadata` (a JSON object as text), `text`, `duration`, `space` (the fingerprint of the space
  that made the vector), and the segment columns `item`, `kind`, `start`, `end`, `page`,
  `char_start`, `char_end`, `views`. Left out: `thumbnail` (JPEG bytes; `include_thumbnails=True`
  keeps them) and `vector_short` (a prefix of `vector` kept for the ANN index). The file's
  schema metadata `omnibind` holds the collection's name, space record and row count.
* **npy** (`out` is a folder, created if missing): `vectors.npy` (float32, shape [rows, dim]),
  `meta.parquet` (`id`, `item`, `kind`, `source`, `modality`: row i describes vector i),
  `ids.txt` (the ids, one a line, row i on line i+1; left out if an id holds a line break — then
  read `meta.parquet`), and `manifest.json` (written last: its presence says the export is whole).

`segments=False` (default) exports item rows only (one per file or text); `segments=True` adds
the segment rows (OCR text, speech, audio windows, pages ...: `kind` says which, `item` names
their item). `modality` keeps the rows of some modalities ("image" or "image,audio").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from omnibind.collection import ITEMS_ONLY, sql_list
from omnibind.errors import OmnibindError
from omnibind.version import __version__

FORMATS = ("parquet", "npy")
BATCH_ROWS = 4096
SKIPPED = ("thumbnail", "vector_short")
NPY_META = ("id", "item", "kind", "source", "modality")
Progress = Callable[[int, int], None]  # (rows done, rows in all)


class ExportError(OmnibindError):
    """An export that cannot be made (unknown format, a collection changed while being read)."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path  # the Parquet file, or the npy folder
    format: str
    rows: int
    dim: int
    columns: tuple[str, ...]
    files: tuple[Path, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "rows": self.rows, "dim": self.dim,
                "columns": list(self.columns), "files": [str(f) for f in self.files]}


def export(collection: Any, out: Path, format: Literal["parquet", "npy"] = "parquet", *,  # noqa: A002
           segments: bool = False, modality: str | Sequence[str] | None = None, include_thumbnails: bool = False,
           batch_size: int = BATCH_ROWS, progress: Progress | None = None) -> ExportReport:
    """Write `collection`'s rows to `out` as Parquet or NumPy (see the module docstring)."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: use {' or '.join(FORMATS)}")
    table = collection.table
    where = _filter(segments, modality)
    total = table.count_rows(where) if where else table.count_rows()
    dim = table.schema.field("vector").type.list_size
    skipped = [c for c in SKIPPED if not (include_thumbnails and c == "thumbnail")]
    columns = [f.name for f in table.schema if f.name not in skipped]
    provenance = {"collection": getattr(collection, "name", None), "space": collection.meta.get("space"),
                  "rows": total, "dim": dim, "segments": segments, "omnibind": __version__}
    batches = _batches(table, columns, where, batch_size, total, progress)
    out = Path(out).expanduser()
    if format == "parquet":
        schema = pa.schema([table.schema.field(c) for c in columns])
        files = (_write_parquet(batches, schema, out, provenance),)
    else:
        files = _write_npy(batches, out, total, dim, {**provenance, "columns": list(NPY_META)})
    return ExportReport(out, format, total, dim, tuple(columns) if format == "parquet" else NPY_META, files)


def _filter(segments: bool, modality: str | Sequence[str] | None) -> str | None:
    parts = [] if segments else [ITEMS_ONLY]
    if modality:
        names = [m.strip() for m in (modality.split(",") if isinstance(modality, str) else modality) if m.strip()]
        parts.append(f"modality IN ({sql_list(names)})")
    return " AND ".join(f"({p})" for p in parts) or None


def _batches(table: Any, columns: list[str], where: str | None, batch_size: int, total: int,
             progress: Progress | None) -> Iterator[pa.RecordBatch]:
    """The selected rows in batches of at most `batch_size`, counted against `total`."""
    query = table.search().select(columns).limit(None)
    reader = (query.where(where) if where else query).to_batches(batch_size)
    done = 0
    if progress:
        progress(0, total)
    for batch in reader:
        batch = batch.select(columns)  # drops anything the reader adds (row ids)
        done += batch.num_rows
        if done > total:
            raise ExportError("the collection changed while it was being exported: export again")
        yield batch
        if progress:
            progress(done, total)
    if done != total:
        raise ExportError("the collection changed while it was being exported: export again")


def _write_parquet(batches: Iterator[pa.RecordBatch], schema: pa.Schema, out: Path,
                   provenance: dict[str, Any]) -> Path:
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(out)
    schema = schema.with_metadata({"omnibind": json.dumps(provenance)})
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch.cast(schema))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write_npy(batches: Iterator[pa.RecordBatch], out: Path, total: int, dim: int,
               manifest: dict[str, Any]) -> tuple[Path, ...]:
    """vectors.npy appended batch by batch after its header, meta.parquet beside it, then ids.txt and
    manifest.json; each written to a temporary name and renamed into place."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    names = {n: out / n for n in ("vectors.npy", "meta.parquet", "ids.txt", "manifest.json")}
    temps = {n: _temp(p) for n, p in names.items()}
    try:
        meta_schema = pa.schema([pa.field(n, pa.string()) for n in NPY_META])
        rows, plain = 0, True  # plain: no id holds a line break (else ids.txt is left out)
        with open(temps["vectors.npy"], "wb") as fh, open(temps["ids.txt"], "w", encoding="utf-8") as id_lines, \
                pq.ParquetWriter(temps["meta.parquet"], meta_schema) as meta:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (total, dim)})
            for batch in batches:  # _batches checks that exactly `total` rows come
                flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
                fh.write(np.ascontiguousarray(flat, dtype="<f4").tobytes())
                meta.write_batch(pa.record_batch([batch.column(c).cast(pa.string()) for c in NPY_META],
                                                 schema=meta_schema))
                ids = batch.column("id").to_pylist()
                plain = plain and not any("\n" in i or "\r" in i for i in ids)
                id_lines.write("".join(i + "\n" for i in ids))
                rows += len(ids)
        return _finish_npy(names, temps, plain, {**manifest, "rows": rows})
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def _finish_npy(names: dict[str, Path], temps: dict[str, Path], plain: bool,
                manifest: dict[str, Any]) -> tuple[Path, ...]:
    written = ["vectors.npy", "meta.parquet"]
    if plain:
        written.append("ids.txt")
    else:
        names["ids.txt"].unlink(missing_ok=True)  # a stale one from an earlier export would mislead
    manifest = {**manifest, "files": written + ["manifest.json"], "layout": "row i of vectors.npy is row i "
                "of meta.parquet (and line i+1 of ids.txt)"}
    temps["manifest.json"].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    names["manifest.json"].unlink(missing_ok=True)  # absent while the files change: an incomplete export
    for name in [*written, "manifest.json"]:
        os.replace(temps[name], names[name])
    return tuple(names[n] for n in [*written, "manifest.json"])


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")

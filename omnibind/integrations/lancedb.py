"""An omnibind space as a LanceDB embedding function, registered as "omnibind": a LanceDB table
declared with its `SourceField()` / `VectorField()` embeds rows as they are added and queries
as they are searched, with no omnibind code in between.

    import omnibind.integrations.lancedb  # registers "omnibind"
    from lancedb.embeddings import get_registry
    fn = get_registry().get("omnibind").create(space="default")             # texts
    images = get_registry().get("omnibind").create(source="file")           # image/audio/video paths

`source="text"` (default): the source column holds texts. `source="file"`: it holds file paths
(or `file://` URIs) or file bytes, of any modality the space embeds. A query is embedded as it
is: a string is text (so a text query finds images in a `source="file"` table), bytes, a
`pathlib.Path` or a PIL image are media. A null source gives a null vector. `dim` keeps a
Matryoshka prefix. Reopening a table that uses the function needs this module imported first
(LanceDB finds functions by name in its registry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
from lancedb.embeddings import EmbeddingFunction, register
from pydantic import PrivateAttr

from omnibind.integrations import resolve_space

NAME = "omnibind"


@register(NAME)
class OmnibindEmbeddings(EmbeddingFunction):
    """LanceDB embedding function over an omnibind space (see the module docstring)."""

    space: str = "default"  # a space name or folder (a string, so LanceDB can store it in the table)
    source: Literal["text", "file"] = "text"
    dim: int | None = None
    batch_size: int = 32
    max_retries: int = 0  # local model: a failure will not go away by retrying
    _space: Any = PrivateAttr(default=None)

    def loaded_space(self) -> Any:
        """The loaded `Space` (loaded at the first use)."""
        if self._space is None:
            self._space = resolve_space(self.space)
        return self._space

    def ndims(self) -> int:
        return int(self.dim or self.loaded_space().dim)

    def compute_query_embeddings(self, query: Any, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return [self.loaded_space().encode_query(query, batch_size=self.batch_size, truncate_dim=self.dim)]

    def compute_source_embeddings(self, inputs: Any, *args: Any, **kwargs: Any) -> list[np.ndarray | None]:
        items = _as_list(inputs)
        present = [i for i, x in enumerate(items) if x is not None]
        out: list[np.ndarray | None] = [None] * len(items)
        if present:
            objs = [self._input(items[i]) for i in present]
            vectors = self.loaded_space().encode_document(objs, batch_size=self.batch_size, truncate_dim=self.dim)
            for i, v in zip(present, vectors):
                out[i] = v
        return out

    def _input(self, value: Any) -> Any:
        if self.source == "file" and isinstance(value, str):
            parsed = urlparse(value)
            return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(value)
        return value


def _as_list(inputs: Any) -> list[Any]:
    """A source column (a value, list, NumPy or Arrow array) as a Python list."""
    if isinstance(inputs, (str, bytes, Path)):
        return [inputs]
    if isinstance(inputs, pa.ChunkedArray):
        return inputs.combine_chunks().to_pylist()
    if isinstance(inputs, pa.Array):
        return inputs.to_pylist()
    return list(inputs)

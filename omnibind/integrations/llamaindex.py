"""An omnibind space as a LlamaIndex embedding model: `VectorStoreIndex.from_documents(docs,
embed_model=OmnibindEmbedding())` indexes and retrieves through it, offline.

It is a `MultiModalEmbedding`: texts go through `Space.encode_document`, queries through
`Space.encode_query`, and image paths (or file-like objects of an image, sound or video) through
the image/audio/video towers, so a `MultiModalVectorStoreIndex` can put media and texts in one
space. Batches are LlamaIndex's (`embed_batch_size`, default 32); the async methods run the sync
ones in a worker thread. Needs the `llamaindex` extra (`llama-index-core`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from omnibind.extras import require
from omnibind.integrations import resolve_space

_embeddings = require("llama_index.core.embeddings", "llamaindex")
_bridge = require("llama_index.core.bridge.pydantic", "llamaindex")


class OmnibindEmbedding(_embeddings.MultiModalEmbedding):  # type: ignore[misc, name-defined]
    """LlamaIndex embeddings over an omnibind space (a `Space`, a name or a folder; None: default)."""

    dim: int | None = _bridge.Field(default=None, description="Matryoshka truncation (renormalised).")
    _space: Any = _bridge.PrivateAttr(default=None)

    def __init__(self, space: Any = None, *, dim: int | None = None, **kwargs: Any) -> None:
        loaded = resolve_space(space)
        kwargs.setdefault("model_name", f"omnibind:{loaded.name}")
        super().__init__(dim=dim, **kwargs)
        self._space = loaded

    @classmethod
    def class_name(cls) -> str:
        return "OmnibindEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._space.encode_query(query, truncate_dim=self.dim).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._space.encode_document(text, truncate_dim=self.dim).tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._space.encode_document(list(texts), batch_size=self.embed_batch_size,
                                           truncate_dim=self.dim).tolist()

    def _get_image_embedding(self, img_file_path: Any) -> list[float]:
        return self._space.encode_document(_media(img_file_path), truncate_dim=self.dim).tolist()

    def _get_image_embeddings(self, img_file_paths: list[Any]) -> list[list[float]]:
        if not img_file_paths:
            return []
        return self._space.encode_document([_media(p) for p in img_file_paths], batch_size=self.embed_batch_size,
                                           truncate_dim=self.dim).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    async def _aget_image_embedding(self, img_file_path: Any) -> list[float]:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)


def _media(value: Any) -> Any:
    """LlamaIndex's ImageType (a path string or a file-like object) as an omnibind input."""
    if isinstance(value, str):
        return Path(value)
    read = getattr(value, "getvalue", None) or getattr(value, "read", None)
    return read() if read is not None else value

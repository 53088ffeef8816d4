"""An omnibind space as LangChain `Embeddings`: any LangChain vector store or retriever embeds
through it (`InMemoryVectorStore(embedding=OmnibindEmbeddings())`, FAISS, Chroma ...).

Documents go through `Space.encode_document`, queries through `Space.encode_query`; vectors are
the space's (L2-normalised, float lists). `embed_image(uris)` embeds image (or audio, video)
files, the method LangChain's multimodal stores (e.g. Chroma's `add_images`) call, so a text
query finds media. The async methods are LangChain's defaults (the sync ones in an executor).
Needs the `langchain` extra (`langchain-core`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnibind.extras import require
from omnibind.integrations import resolve_space

Embeddings = require("langchain_core.embeddings", "langchain").Embeddings


class OmnibindEmbeddings(Embeddings):  # type: ignore[misc, valid-type]
    """LangChain embeddings over an omnibind space (a `Space`, a name or a folder; None: default)."""

    def __init__(self, space: Any = None, *, dim: int | None = None, batch_size: int = 32) -> None:
        self.space = resolve_space(space)
        self.dim, self.batch_size = dim, batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.space.encode_document(list(texts), batch_size=self.batch_size, truncate_dim=self.dim)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.space.encode_query(text, batch_size=self.batch_size, truncate_dim=self.dim).tolist()

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Vectors of media files (paths), in the same space as the texts."""
        if not uris:
            return []
        files = [Path(u) for u in uris]
        return self.space.encode_document(files, batch_size=self.batch_size, truncate_dim=self.dim).tolist()

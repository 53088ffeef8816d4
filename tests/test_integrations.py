"""LanceDB's embedding-function registry, LangChain and LlamaIndex each embed and search through
an omnibind space (the default one), offline; vectors equal the space's own. A library that is
not installed skips its tests (CI installs them all)."""

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest

from conftest import draw_image

DOCS = ["A recipe for chocolate cake with butter and sugar.",
        "The football match ended in a draw after extra time.",
        "Volcanoes erupt when magma rises through the crust.",
        "How to change a flat tyre on a bicycle."]
QUERIES = {"baking a dessert": 0, "a soccer game result": 1, "lava and eruptions": 2, "fixing a bike wheel": 3}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("img")
    out = []
    for kind, colour in [("circle", "red"), ("square", "blue"), ("circle", "green")]:
        draw_image(kind, 96, colour).save(root / f"{colour}-{kind}.png")
        out.append(root / f"{colour}-{kind}.png")
    return out


def test_lancedb_registry_text_table(space, tmp_path: Path):
    lancedb = pytest.importorskip("lancedb")
    import omnibind.integrations.lancedb  # noqa: F401 - registers "omnibind"
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector

    fn = get_registry().get("omnibind").create(space="default")
    assert fn.ndims() == space.dim

    class Doc(LanceModel):
        text: str = fn.SourceField()
        vector: Vector(fn.ndims()) = fn.VectorField()  # type: ignore[valid-type]

    table = lancedb.connect(tmp_path / "db").create_table("docs", schema=Doc)
    table.add([{"text": t} for t in DOCS])
    for query, want in QUERIES.items():
        assert table.search(query).limit(1).to_pydantic(Doc)[0].text == DOCS[want], query
    stored = table.search().limit(None).to_arrow()
    got = dict(zip(stored.column("text").to_pylist(), stored.column("vector").to_pylist()))
    np.testing.assert_allclose(got[DOCS[0]], space.encode_document(DOCS[0]), atol=1e-5)
    reopened = lancedb.connect(tmp_path / "db").open_table("docs")  # the function is found again by name
    assert reopened.search("lava and eruptions").limit(1).to_list()[0]["text"] == DOCS[2]


def test_lancedb_registry_image_files(space, images, tmp_path: Path):
    lancedb = pytest.importorskip("lancedb")
    import omnibind.integrations.lancedb  # noqa: F401
    from lancedb.embeddings import get_registry
    from lancedb.pydantic import LanceModel, Vector

    fn = get_registry().get("omnibind").create(source="file", dim=128)

    class Picture(LanceModel):
        uri: str = fn.SourceField()
        vector: Vector(fn.ndims()) = fn.VectorField()  # type: ignore[valid-type]

    table = lancedb.connect(tmp_path / "db").create_table("pics", schema=Picture)
    table.add([{"uri": str(images[0])}, {"uri": images[1].as_uri()}, {"uri": str(images[2])}])
    assert fn.ndims() == 128 and len(table) == 3
    query = draw_image("square", 96, "blue")  # an image query: the blue square's own picture
    assert table.search(query).limit(1).to_list()[0]["uri"] == images[1].as_uri()
    hits = table.search("a picture").limit(3).to_list()  # a text query reaches the images
    files = {str(images[0]): images[0], images[1].as_uri(): images[1], str(images[2]): images[2]}
    assert {h["uri"] for h in hits} == set(files)
    for h in hits:
        np.testing.assert_allclose(h["vector"], space.embed([files[h["uri"]]], dim=128)[0], atol=1e-5)


def test_langchain_in_memory_store(space, images):
    pytest.importorskip("langchain_core", reason="the 'langchain' extra (langchain-core) is not installed")
    from langchain_core.vectorstores import InMemoryVectorStore

    from omnibind.integrations.langchain import OmnibindEmbeddings

    emb = OmnibindEmbeddings(space)
    store = InMemoryVectorStore(embedding=emb)
    store.add_texts(DOCS, metadatas=[{"n": i} for i in range(len(DOCS))])
    for query, want in QUERIES.items():
        assert store.similarity_search(query, k=1)[0].metadata["n"] == want, query
    np.testing.assert_allclose(emb.embed_query("lava"), space.encode_query("lava"), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aembed_documents(DOCS[:2])), space.encode_document(DOCS[:2]), atol=1e-6)
    assert emb.embed_documents([]) == []
    pictures = emb.embed_image([str(p) for p in images])
    np.testing.assert_allclose(pictures, space.embed(images), atol=1e-5)
    assert len(OmnibindEmbeddings(space, dim=32).embed_query("x")) == 32


def test_llamaindex_vector_index_offline(space, images, monkeypatch):
    pytest.importorskip("llama_index.core", reason="the 'llamaindex' extra (llama-index-core) is not installed")
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    from llama_index.core import Document, VectorStoreIndex

    from omnibind.integrations.llamaindex import OmnibindEmbedding

    emb = OmnibindEmbedding(space)
    index = VectorStoreIndex.from_documents([Document(text=t, metadata={"n": i}) for i, t in enumerate(DOCS)],
                                            embed_model=emb)
    retriever = index.as_retriever(similarity_top_k=1)
    for query, want in QUERIES.items():
        assert retriever.retrieve(query)[0].node.metadata["n"] == want, query
    np.testing.assert_allclose(emb.get_query_embedding("lava"), space.encode_query("lava"), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aget_text_embedding(DOCS[0])), space.encode_document(DOCS[0]), atol=1e-6)
    np.testing.assert_allclose(emb.get_image_embedding(str(images[0])), space.embed([images[0]])[0], atol=1e-5)
    buffer = io.BytesIO(images[1].read_bytes())
    np.testing.assert_allclose(emb.get_image_embedding(buffer), space.embed([images[1]])[0], atol=1e-5)
    assert emb.model_name == f"omnibind:{space.name}" and OmnibindEmbedding(space, dim=16).get_text_embedding("x").__len__() == 16


def test_missing_extra_is_named(monkeypatch):
    import sys

    from omnibind.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "langchain_core.embeddings", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "omnibind.integrations.langchain", raising=False)
    with pytest.raises(MissingExtraError, match=r"omnibind\[langchain\]"):
        import omnibind.integrations.langchain  # noqa: F401
    monkeypatch.delitem(sys.modules, "omnibind.integrations.langchain", raising=False)

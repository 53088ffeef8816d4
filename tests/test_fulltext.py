"""Full-text and hybrid search (omnibind/fulltext.py): words in file names, notes and segments
are found, filters apply, hybrid without a keyword match is exactly vector search, words the
vector embedded do not reorder a confident vector list (file names always can), the index
follows writes, and modes are checked. Generated texts and images; the offline default space."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnibind import fulltext
from omnibind.collection import Collection, make_rows
from omnibind.inputs import to_input
from omnibind.search import hybrid_search, search

NOTES = ["a recipe for lemon cake with butter and sugar", "the history of the roman empire",
         "my cat sleeps on the sofa all afternoon", "how to change a flat bicycle tyre",
         "notes from the quarterly budget meeting"]
TUESDAY = "on tuesday the bicycle shop fixed my tyre, and I had lemon cake, but no recipe"
LONG = "The kettle whistles on the stove.\nA letter from Ravenscroft arrived today.\nTaxes are due in April."


@pytest.fixture
def collection(space, tmp_path: Path) -> Collection:
    c = Collection.open(tmp_path / "c", space)
    c.add(NOTES, ids=[f"n{i}" for i in range(len(NOTES))], metadata=[{"note": "for grandma Ottoline"}, {}, {}, {}, {}])
    rng = np.random.default_rng(0)
    rows = []
    for n, name in enumerate(["zebrafish_tank.png", "IMG_0001.png", "IMG_0002.png"]):
        image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        item = dataclasses.replace(to_input(image), source=f"/photos/{name}")
        rows += make_rows(item, space.embed([item])[0], f"p{n}", metadata={"tags": ["holiday"] if n == 2 else []})
    c.upsert(rows)
    fulltext.ensure_fts(c)
    return c


def test_words_of_splits_file_names_and_adds_tags_and_notes():
    assert fulltext.name_words("/a/b/RedApple_2024-v2.final.png") == "Red Apple 2024 v 2 final"
    assert fulltext.name_words("<text>") == "" and fulltext.name_words(None) == ""
    assert fulltext.words_of("/x/red_apple.png", "hello", ["fruit"], "from the market").split("\n") == [
        "red apple", "fruit", "from the market", "hello"]


def test_a_word_only_in_a_file_name_is_found_by_text_and_hybrid(collection):
    text = search(collection, "zebrafish", k=3, mode="text")
    assert [h.id for h in text] == ["p0"] and text[0].kind == "bm25"
    assert search(collection, "zebrafish", k=3, mode="hybrid")[0].id == "p0"
    hit = search(collection, "zebrafish", k=3, mode="hybrid")[0].to_dict()
    assert json.loads(json.dumps(hit))["keyword_score"] > 0
    assert [h.id for h in search(collection, "holiday", k=3, mode="text")] == ["p2"]  # a tag
    assert [h.id for h in search(collection, "Ottoline", k=3, mode="text")] == ["n0"]  # a note


def test_a_word_in_a_segment_names_the_segment(space, tmp_path: Path, lines_view):
    c = Collection.open(tmp_path / "seg", space)
    c.set_views(["lines"])
    c.add([LONG] + NOTES, ids=["long"] + [f"n{i}" for i in range(len(NOTES))])
    for mode in ("text", "hybrid"):
        hit = search(c, "Ravenscroft", k=3, mode=mode)[0]
        assert hit.id == "long" and hit.segment["text"] == "A letter from Ravenscroft arrived today."
        assert hit.segment["location"] == "characters 34–74" and hit.fields["text"] == LONG


def test_filters_and_modalities_apply_in_every_mode(collection):
    for mode in ("text", "hybrid"):
        assert "p0" not in [h.id for h in search(collection, "zebrafish", k=8, mode=mode, where="id != 'p0'")]
        assert all(h.modality == "text" for h in search(collection, "zebrafish", k=8, mode=mode, modality="text"))
        assert all(h.modality == "image" for h in search(collection, "Ottoline", k=8, mode=mode, modality="image"))


def test_hybrid_without_a_keyword_match_is_the_vector_ranking(collection):
    for query in ("a dessert to bake", "something about ancient Rome and Caesar"):
        vector = search(collection, query, k=8, mode="vector")
        hybrid = search(collection, query, k=8, mode="hybrid")
        assert [(h.id, h.score) for h in hybrid] == [(h.id, h.score) for h in vector]
        assert hybrid.note == vector.note


def test_the_index_follows_upserts_and_deletes(collection, space):
    collection.add(["a zebrafish swims in the reef"], ids=["n9"])
    assert {h.id for h in search(collection, "zebrafish", k=5, mode="text")} == {"p0", "n9"}
    collection.add(["a goldfish swims in the reef"], ids=["n9"])  # replaced: the old words go
    assert [h.id for h in search(collection, "zebrafish", k=5, mode="text")] == ["p0"]
    collection.delete(["p0"])
    assert search(collection, "zebrafish", k=5, mode="text") == []
    assert fulltext.ensure_fts(collection) and search(collection, "goldfish", k=5, mode="text")[0].id == "n9"


def test_modes_are_checked(collection):
    with pytest.raises(ValueError, match="unknown search mode 'fuzzy'.*vector, text, hybrid"):
        search(collection, "cake", mode="fuzzy")
    with pytest.raises(fulltext.ModeError, match="text query"):
        search(collection, np.ones(collection.space.dim, np.float32), mode="text")
    assert search(collection, "cake", k=2, mode=" Hybrid ")  # case and spaces forgiven


def test_fusion_is_weighted_reciprocal_rank():
    assert fulltext.rrf([["a", "b", "c"], ["c"]], [1.0, 1.0]) == ["c", "a", "b"]
    assert fulltext.rrf([["a", "b"], ["b"]], [1.0, 0.0]) == ["a", "b"]
    assert fulltext.rrf([["a", "b"], []], [1.0, 2.0]) == ["a", "b"]


def test_words_the_vector_embedded_weigh_less_and_not_against_a_confident_top():
    image = {"kind": "item", "modality": "image", "source": "/p/lemon_cake.png"}
    text = {"kind": "item", "modality": "text", "source": "<text>", "tags": [], "note": None}
    noted = {**text, "source": "/notes/x.txt", "note": "Lemon cakes for grandma"}  # the note holds the words
    tagged = {**text, "tags": ["lemon"]}  # only one of them: the text holds the other
    segments = [{"kind": "chunk", "modality": "text"}, {"kind": "speech", "modality": "audio"},
                {"kind": "ocr", "modality": "image"}]
    rows = [image, text, noted, tagged, *segments]
    assert fulltext.text_weights(rows, "the lemon cake", 0.5) == [2.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    assert fulltext.text_weights(rows, "the lemon cake", None) == [2.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    assert fulltext.text_weights(rows, "the lemon cake", fulltext.CONFIDENT) == [2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    assert fulltext.CONFIDENT == 0.75 and fulltext.SEEN_WEIGHT == 1.0 and fulltext.TEXT_WEIGHT == 2.0


def test_a_confident_vector_list_is_not_reordered_by_words_it_embedded(space, tmp_path: Path):
    c = Collection.open(tmp_path / "gate", space)
    c.add(NOTES + [TUESDAY], ids=[f"n{i}" for i in range(len(NOTES))] + ["d0"])
    fulltext.ensure_fts(c)
    query = "lemon cake recipe tuesday"  # n0 means it; only d0 holds every word
    vector = search(c, query, k=6, mode="vector")
    top = vector[0].score
    assert [h.id for h in vector][:2] == ["n0", "d0"] and vector[0].kind == "strength" and top < fulltext.CONFIDENT
    assert [h.id for h in search(c, query, k=6, mode="hybrid")][:2] == ["d0", "n0"]  # unsure top: words vote
    assert [h.id for h in hybrid_search(c, query, 6, confident=top + 1e-3)][:2] == ["d0", "n0"]
    sure = hybrid_search(c, query, 6, confident=top)  # a top this strong is confident
    assert [(h.id, h.score) for h in sure] == [(h.id, h.score) for h in vector] and sure.note == vector.note
    assert all("keyword_score" not in h.fields for h in sure)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    item = dataclasses.replace(to_input(image), source="/photos/lemon_cake_recipe_tuesday.png")
    c.upsert(make_rows(item, space.embed([item])[0], "p0"))
    fulltext.ensure_fts(c)
    assert hybrid_search(c, query, 7, confident=top)[0].id == "p0"  # words never embedded vote anyway


def test_fusion_weights_per_entry_and_zero_weight_entries_do_not_enter():
    assert fulltext.rrf([["a", "b"], ["c", "b"]], [1.0, [0.0, 3.0]]) == ["b", "a"]
    assert fulltext.rrf([["a", "b"], ["c", "b"]], [1.0, [3.0, 0.0]]) == ["c", "a", "b"]

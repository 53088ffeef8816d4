"""ImageNet class texts from WordNet (issue 15): the committed table, the data.noun parser that
made it, and the styles and averaging that turn a class into its bridge embedding."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from omnibind.backbones.efficientnet import imagenet_class_names
from omnibind.class_texts import STYLES, ClassText, class_embeddings, class_prompts, imagenet_class_texts
from omnibind.errors import OmnibindError

ROOT = Path(__file__).resolve().parents[1]


def _maker():
    spec = importlib.util.spec_from_file_location("make_texts", ROOT / "scripts" / "make_imagenet_class_texts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_matches_the_class_list_in_model_order():
    texts = imagenet_class_texts()
    assert [list(t.synonyms) for t in texts] == imagenet_class_names()
    tench = texts[0]
    assert tench.wnid == "n01440764" and tench.hypernyms == ("cyprinid",)
    assert tench.gloss.startswith("freshwater dace-like game fish")
    assert all(t.gloss and t.hypernyms for t in texts)


def test_data_noun_parser_on_a_generated_file(tmp_path):
    lines = ["  1 licence line", "  2 WordNet 3.0 Copyright 2006 by Princeton University."]
    header = "".join(f"{line}\n" for line in lines)
    parent = "{off:08d} 05 n 02 fish 0 Pisces 0 000 | a cold-blooded animal  \n"
    child = ('{off:08d} 05 n 02 goldfish 0 Carassius_auratus 0 002 @ {p:08d} n 0000 #m 00000001 n 0000 '
             '| small golden fish; "she kept goldfish"  \n')
    p_off = len(header)
    p_line = parent.format(off=p_off)
    c_off = p_off + len(p_line)
    (tmp_path / "data.noun").write_text(header + p_line + child.format(off=c_off, p=p_off), "latin-1")
    maker = _maker()
    rows = maker.class_rows([f"n{c_off:08d}"], tmp_path / "data.noun")
    assert rows == [(f"n{c_off:08d}", "goldfish, Carassius auratus", "small golden fish", "fish, Pisces")]
    assert maker.licence(tmp_path / "data.noun") == ["licence line", "WordNet 3.0 Copyright 2006 by Princeton University."]
    with pytest.raises(ValueError, match="no noun synset"):
        maker.class_rows([f"n{c_off + 1:08d}"], tmp_path / "data.noun")


def test_styles_and_class_embeddings_average_prompts():
    c = ClassText("n1", ("tabby", "tabby cat"), "a cat with a striped coat", ("domestic cat",))
    assert class_prompts(c, "photo") == ["a photo of a tabby.", "a photo of a tabby cat."]
    assert class_prompts(c, "kind-gloss")[1] == "tabby cat, a kind of domestic cat: a cat with a striped coat"
    assert all(class_prompts(c, s) for s in STYLES)
    with pytest.raises(OmnibindError, match="unknown class-text style"):
        class_prompts(c, "nope")
    axes = {"a photo of a tabby.": [1.0, 0.0], "a photo of a tabby cat.": [0.0, 2.0], "a photo of a x.": [0.0, 1.0]}
    encode = lambda texts: torch.tensor([axes[t] for t in texts])  # noqa: E731
    other = ClassText("n2", ("x",), "", ())
    emb = class_embeddings([c, other], "photo", encode)
    s = 2 ** -0.5
    assert torch.allclose(emb, torch.tensor([[s, s], [0.0, 1.0]]), atol=1e-6)  # unit prompts averaged, renormalised

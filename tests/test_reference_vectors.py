"""The shipped spaces (`default`, `bridge`) still make the vectors they made when they shipped.

tests/data/reference_vectors.npz holds, per space, `space.embed` of 16 fixed inputs (texts, Tux
Paint test-split stamps and sounds, OpenCV sample photos and video, and NumPy-generated image,
sounds and lossless video; listed with their sha256 in tests/data/reference_vectors.json and
defined in tests/reference_inputs.py). Every vector must match to atol 1e-4 (cross-machine
float noise is ~1e-6; ONNX Runtime vs eager PyTorch ~1e-5). Any change in preprocessing, a
backbone, a head, the fusion of frames and soundtrack, or the shipped weights moves them.

Regenerate ONLY after a deliberate change of a shipped space or of what it computes, and say so
in the commit:

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/make_reference_vectors.py --check   # see what moved
    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/make_reference_vectors.py           # rewrite both files

An input whose content differs from the recorded sha256 (a Debian package update) is skipped with
that reason: it says nothing about the space.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reference_inputs import SPACES, reference_inputs

DATA = Path(__file__).parent / "data"
STORED = np.load(DATA / "reference_vectors.npz")
META = json.loads((DATA / "reference_vectors.json").read_text("utf-8"))
RECORDED = {e["name"]: (k, e) for k, e in enumerate(META["inputs"])}
INPUTS = {i.name: i for i in reference_inputs()}
ATOL = 1e-4


def test_every_reference_input_is_recorded_and_the_files_are_small():
    assert list(RECORDED) == list(INPUTS), "tests/reference_inputs.py and the stored vectors list different inputs"
    for space in SPACES:
        assert STORED[space].shape == (len(INPUTS), 384) and STORED[space].dtype == np.float32
        assert np.allclose(np.linalg.norm(STORED[space], axis=1), 1.0, atol=1e-5)
    assert (DATA / "reference_vectors.npz").stat().st_size < 100_000
    assert {i.modality for i in INPUTS.values()} == {"text", "image", "audio", "video"}


@pytest.fixture(scope="module")
def embedded() -> dict[str, dict[str, np.ndarray]]:
    """{space: {input name: vector}} for every input present on this machine, one call per space."""
    import omnibind

    present = [i for i in INPUTS.values() if i.available]
    out = {}
    for name in SPACES:
        space = omnibind.load_space(name)
        out[name] = dict(zip([i.name for i in present], space.embed([i.make() for i in present])))
    return out


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", list(INPUTS))
def test_space_embed_matches_the_reference_vector(embedded, space, name):
    ref = INPUTS[name]
    if not ref.available:
        pytest.skip(f"{ref.source} is missing: install the Debian package (docs/testing.md)")
    k, recorded = RECORDED[name]
    if ref.digest() != recorded["sha256"]:
        pytest.skip(f"{name}: the input itself changed since the vectors were made ({ref.source}); regenerate")
    got, want = embedded[space][name], STORED[space][k]
    diff = float(np.abs(got - want).max())
    assert diff <= ATOL, (
        f"{space} space, {name} ({ref.description}): max |diff| {diff:.2e} > {ATOL:.0e}, cosine to the "
        f"reference {float(got @ want):.5f}. A regression, unless the space was changed on purpose "
        "(then regenerate: see this file's docstring)."
    )


def test_reference_vectors_are_not_degenerate():
    """The stored vectors say something: not all alike, and matched pairs sit closer than others."""
    names = list(RECORDED)
    for space in SPACES:
        v = STORED[space]
        sims = v @ v.T
        off = sims[~np.eye(len(v), dtype=bool)]
        assert off.max() < 0.999, f"{space}: two different inputs have the same vector"
        dog_text, dog_sound = names.index("text:dog"), names.index("audio:tux-dog")
        markets = names.index("text:markets")
        assert sims[dog_text, dog_sound] > sims[markets, dog_sound], space

"""Variant spaces (omnibind.space.VARIANTS): a shipped space read by other backbones, same heads."""

from __future__ import annotations

import pytest

from omnibind.space import VARIANTS, heads_sha256, load_space


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_variant_is_its_base_under_other_backbones(name: str) -> None:
    base_name, backbones = VARIANTS[name]
    space, base = load_space(name), load_space(base_name)
    assert space.name == name and space.provenance["variant_of"] == base_name
    for modality, tower in space.towers.items():
        assert tower.backbone_ref == backbones.get(modality, base.towers[modality].backbone_ref)
    assert heads_sha256(space) == heads_sha256(base)  # no head weights of its own
    assert space.fingerprint() != base.fingerprint()  # other backbones make other vectors: never mixed
    assert base.towers["text"].backbone_ref == "minilm"  # loading the variant did not touch the base


def test_the_cli_and_collections_know_variants_by_name(tmp_path) -> None:
    from typer.testing import CliRunner

    from omnibind.cli import app

    result = CliRunner().invoke(app, ["info", "--space", "fast"])
    assert result.exit_code == 0, result.output
    assert VARIANTS["fast"][1]["text"] in result.output and "variant_of" in result.output

"""The backbone registry: families found by entry point (or, in a never-installed source tree, by
scanning the package), names and prefixes resolved, run-time registration for toys."""

import pytest

import omnibind.backbones.registry as registry
from omnibind.errors import BackboneError


def test_families_are_declared_as_entry_points():
    assert {"minilm", "st", "efficientnet-lite0", "aisfx", "hf"} <= {ep.name for ep in registry._entry_points()}


def test_names_and_prefixes_resolve_to_their_modality(monkeypatch):
    assert registry.default_modality("aisfx") == "audio" and registry.default_modality("minilm") == "text"
    assert registry.default_modality("hf:some/model") is None  # a prefix serves several modalities
    with pytest.raises(BackboneError, match="serves several modalities"):
        registry.load_backbone("hf:some/model")
    with pytest.raises(BackboneError, match="serves audio, not image"):
        registry.load_backbone("aisfx", "image")
    with pytest.raises(BackboneError, match="unknown backbone 'nope'; known: .*minilm"):
        registry.load_backbone("nope")


def test_a_source_tree_without_entry_points_scans_the_package(monkeypatch):
    import sys

    monkeypatch.setattr(registry, "_FACTORIES", {})
    monkeypatch.setattr(registry, "_entry_points", lambda: [])
    import omnibind.backbones as package

    for family in ("aisfx", "efficientnet", "hf", "sentence_transformers"):  # imported afresh
        monkeypatch.delitem(sys.modules, f"omnibind.backbones.{family}", raising=False)
        monkeypatch.delattr(package, family, raising=False)  # the package attribute comes back too
    assert registry.default_modality("efficientnet-lite0") == "image"
    assert {"aisfx", "minilm", "hf:", "st:"} <= set(registry._FACTORIES)


def test_run_time_registration_and_unregistration():
    made = []
    registry.register("toy-thing", "text")(lambda arg, modality: made.append(modality) or object())
    try:
        assert registry.load_backbone("toy-thing") is registry.load_backbone("toy-thing")  # loaded once
        assert made == ["text"]
    finally:
        registry.unregister("toy-thing")
    with pytest.raises(BackboneError):
        registry.load_backbone("toy-thing")

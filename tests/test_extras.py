"""Optional extras fail with one line that names the extra to install."""

import sys

import pytest

from omnibind.extras import MissingExtraError, require


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'omnibind\[ray\]'") as info:
        require("ray", "ray")
    assert "the Ray engine needs the 'ray' extra (ray is not installed)" in str(info.value)


def test_an_installed_module_is_returned():
    assert require("json", "eval").dumps([1]) == "[1]"


def test_the_ray_engine_says_which_extra(monkeypatch, space, tmp_path):
    from omnibind.collection import Collection
    from omnibind.ingest import ingest

    (tmp_path / "a.txt").write_text("a note", "utf-8")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match="omnibind\\[ray\\]"):
        ingest(Collection.open(tmp_path / "c", space=space), tmp_path / "a.txt", engine="ray")

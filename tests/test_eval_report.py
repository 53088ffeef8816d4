"""`omnibind eval` end to end on small slices of the real sets, and its pieces."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from omnibind.cli import app
from omnibind.evaluate import datasets as ds
from omnibind.evaluate import report as rep
from omnibind.evaluate.suite import CachedEmbedder, task_names
from omnibind.errors import OmnibindError


def test_cached_embedder_equals_space_embed_and_reads_the_cache(space, tmp_path: Path):
    texts = ["a dog barking", "rain on a roof", "a red circle"]
    images = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    first = CachedEmbedder(space, tmp_path)
    np.testing.assert_allclose(first(texts, "text"), space.embed(texts), atol=1e-5)
    np.testing.assert_allclose(first(images, "image"), space.embed(images), atol=1e-5)
    again = CachedEmbedder(space, tmp_path)
    again(images, "image")
    cache = again.caches.for_tower(space.towers["image"])
    assert (cache.hits, cache.misses) == (3, 0)  # second run: nothing recomputed
    with pytest.raises(OmnibindError, match="no video tower|no .* tower"):
        CachedEmbedder(space, tmp_path)(texts, "nope")


def test_report_records_the_one_version_lookup():
    from omnibind.version import __version__

    assert rep.run([], [], command="omnibind eval")["omnibind_version"] == __version__


def test_task_names():
    assert task_names("all")[0] == "tux-images" and "sts-b" in task_names("all")
    assert task_names("sts-b, tux-sounds") == ["sts-b", "tux-sounds"]
    with pytest.raises(OmnibindError, match="unknown task 'mnist'"):
        task_names("mnist")


def test_missing_data_names_the_package(tmp_path: Path):
    with pytest.raises(ds.DataMissingError, match="apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en"):
        ds.asterisk_prompts(sounds=tmp_path / "none")
    with pytest.raises(ds.DataMissingError, match="tuxpaint-stamps-default"):
        ds.tuxpaint_stamps(tmp_path / "none")


def test_labelled_folder(tmp_path: Path):
    for label, n in (("rain", 2), ("dog_bark", 1)):
        (tmp_path / label).mkdir()
        for i in range(n):
            (tmp_path / label / f"{i}.wav").write_bytes(b"x")
    files, labels, names = ds.labelled_folder(tmp_path)
    assert names == ["dog bark", "rain"] and labels == [0, 1, 1] and files[0].name == "0.wav"


@pytest.mark.slow
def test_eval_cli_two_spaces_report_plots_and_readme(tmp_path: Path, space):
    for loader in (ds.tuxpaint_sounds, ds.asterisk_prompts):
        try:
            loader()
        except ds.DataMissingError as exc:
            pytest.skip(str(exc))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{rep.README_BEGIN}\nold table\n{rep.README_END}\noutro\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--space", "default", "--space", "bridge", "--task",
                                      "tux-sounds,asterisk-speech,sts-b", "--limit", "30", "--out", str(out),
                                      "--cache", str(tmp_path / "cache"), "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["ref"] for s in report["spaces"]] == ["default", "bridge"]
    assert all(len(s["fingerprint"]) == 64 for s in report["spaces"])
    assert set(report["tasks"]) == {"tux-sounds", "asterisk-speech", "sts-b"}
    snd = report["tasks"]["tux-sounds"]
    assert snd["dataset"]["source"] == "debian:tuxpaint-stamps-default" and snd["dataset"]["version"]
    assert snd["dataset"]["n"] == 30 and report["limit"] == 30 and report["omnibind_version"]
    # the default space's audio tower is the bridge's: identical sound retrieval, different text rotation
    m_def, m_br = (snd["results"][r]["metrics"]["caption->sound"] for r in ("default", "bridge"))
    assert m_def["R@10"] == pytest.approx(m_br["R@10"])
    sts = report["tasks"]["sts-b"]["results"]["default"]["metrics"]
    assert sts["n"] == 30
    from scipy.stats import spearmanr

    a, b, gold = ds.sts_b("test")  # the report's number is plain Spearman x100 of the first 30 pairs' cosines
    va, vb = space.embed(a[:30]), space.embed(b[:30])
    assert sts["spearman"] == pytest.approx(100 * spearmanr((va * vb).sum(1), gold[:30]).statistic, abs=0.05)
    for plot in ("recall.png", "similarities-default.png", "similarities-bridge.png"):
        assert (out / plot).stat().st_size > 10_000, plot
    md = (out / "report.md").read_text()
    assert "| tux-sounds | caption→sound R@1/5/10 (n=30) |" in md and "![recall](recall.png)" in md
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| sts-b | Spearman / Pearson ×100 (n=30) |" in text


def test_eval_on_users_pairs_manifest_and_labelled_folder(space, tmp_path: Path):
    """pairs:MANIFEST and folder:DIR tasks through the CLI, on generated media."""
    from conftest import draw_image, write_wav

    colours = ["red", "blue", "green", "yellow"]
    rows = []
    for c in colours:
        draw_image("circle", 96, c).save(tmp_path / f"{c}.png")
        rows.append({"a": f"a {c} circle", "b": f"{c}.png"})
    rows.append({"a": "a red circle", "b": "blue.png"})  # a caption with two correct images
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for label, freq in (("low_hum", 110), ("high_whistle", 3000)):
        (tmp_path / "sounds" / label).mkdir(parents=True)
        write_wav(tmp_path / "sounds" / label / "1.wav", 2.0, freq)
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["eval", "--task", f"pairs:{tmp_path / 'pairs.jsonl'},folder:{tmp_path / 'sounds'}",
                                      "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    pairs = report["tasks"][f"pairs:{tmp_path / 'pairs.jsonl'}"]
    a_b = pairs["results"]["default"]["metrics"]["a->b"]
    assert pairs["dataset"]["n"] == 5 and a_b["queries"] == 4  # 4 distinct captions
    caps, imgs = space.embed([f"a {c} circle" for c in colours]), space.embed([tmp_path / f"{c}.png" for c in colours])
    from omnibind.evaluate.metrics import retrieval_metrics

    expected = retrieval_metrics(caps @ imgs.T, [{0, 1}, {1}, {2}, {3}])
    assert a_b == pytest.approx(expected)
    folder = report["tasks"][f"folder:{tmp_path / 'sounds'}"]["results"]["default"]["metrics"]
    assert folder["n"] == 2 and set(folder["per_class_accuracy"]) == {"high whistle", "low hum"}
    assert np.asarray(folder["confusion_matrix"]).sum() == 2

"""`--mode`, `--rerank` and `--like` through the CLI and HTTP: the options reach the library's
search (omnibind/search.py, fulltext.py, rerank.py, neighbours.py) and their errors are clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import draw_image
from omnibind.cli import app
from omnibind.collection import Collection
from omnibind.ingest import ingest
from omnibind.server import ServerSettings, create_app

runner = CliRunner()
NOTES = {"harbour.txt": "boats moored in a quiet harbour at dawn", "oven.txt": "bread baking in a hot oven",
         "match.txt": "the final score of the football match"}


@pytest.fixture(scope="module")
def coll(tmp_path_factory, space):
    root = tmp_path_factory.mktemp("opts")
    src = root / "media"
    src.mkdir()
    for name, text in NOTES.items():
        (src / name).write_text(text)
    draw_image("circle", 96, "red").save(src / "zebrafinch.png")  # a word only in its file name
    draw_image("square", 96, "blue").save(src / "blue_square.png")
    c = Collection.open("opts", space=space, home=root / "home")
    assert not ingest(c, src).failed
    return c, src, root


def names(rows) -> list[str]:
    return [Path(r["id"]).name for r in rows]


def cli(root: Path, *args: str):
    result = runner.invoke(app, ["--home", str(root / "home"), "search", "-c", "opts", *args, "--json", "--local"])
    return result


def test_cli_modes_find_file_name_words(coll):
    c, src, root = coll
    text = cli(root, "zebrafinch", "--mode", "text")
    assert text.exit_code == 0, text.output
    assert names(json.loads(text.stdout)) == ["zebrafinch.png"]
    hybrid = json.loads(cli(root, "zebrafinch", "--mode", "hybrid", "-k", "5").stdout)
    assert names(hybrid)[0] == "zebrafinch.png" and hybrid[0].get("keyword_score")
    bad = cli(root, "zebrafinch", "--mode", "fuzzy")
    assert bad.exit_code == 1 and "hybrid" in bad.output


def test_cli_rerank_and_its_errors(coll):
    c, src, root = coll
    result = cli(root, "a red circle", "--rerank", "hubness", "-k", "3")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3
    bad = cli(root, "a red circle", "--rerank", "nosuch")
    assert bad.exit_code == 1 and "hubness" in bad.output
    words_only = cli(root, "zebrafinch", "--mode", "text", "--rerank", "hubness")
    assert words_only.exit_code == 1 and "rerank works in vector and hybrid mode" in words_only.output


def test_cli_like_leaves_the_item_out(coll):
    c, src, root = coll
    one = str(src / "harbour.txt")
    result = cli(root, "--like", one, "-k", "10")
    assert result.exit_code == 0, result.output
    found = names(json.loads(result.stdout))
    assert "harbour.txt" not in found and len(found) == len(NOTES) + 1
    assert cli(root, "--like", "/no/such/item").exit_code == 1
    assert cli(root, "--like", one, "--mode", "text").exit_code == 1


@pytest.fixture
def http(coll):
    c, src, root = coll
    settings = ServerSettings(collection="opts", roots=[src], home=root / "home")
    with TestClient(create_app(settings, "tok-opts-123", c), raise_server_exceptions=False,
                    base_url="http://localhost") as client:
        yield client, src


def test_http_modes_rerank_and_like(http):
    client, src = http
    r = client.post("/v1/search", json={"text": "zebrafinch", "mode": "text"})
    assert r.status_code == 200 and names(r.json()["results"]) == ["zebrafinch.png"], r.text
    r = client.post("/v1/search", json={"text": "zebrafinch", "k": 3})  # the default mode reads words too
    assert names(r.json()["results"])[0] == "zebrafinch.png" and r.json()["results"][0]["keyword_score"], r.text
    r = client.post("/v1/search", json={"text": "a red circle", "mode": "hybrid", "rerank": "hubness", "k": 3})
    assert r.status_code == 200 and len(r.json()["results"]) == 3, r.text
    for body, words in [({"mode": "fuzzy"}, "hybrid"), ({"rerank": "cross-encoder:/tmp/model"}, "hubness"),
                        ({"rerank": "nosuch"}, "hubness")]:
        r = client.post("/v1/search", json={"text": "a red circle", **body})
        assert r.status_code == 422 and words in r.json()["error"], (body, r.text)
    r = client.post("/v1/search", json={"like": str(src / "oven.txt"), "k": 10})
    assert r.status_code == 200 and "oven.txt" not in names(r.json()["results"]), r.text
    assert client.post("/v1/search", json={"like": "/no/such"}).status_code == 404

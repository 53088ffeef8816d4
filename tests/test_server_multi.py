"""One server, several collections: the registry (`ServerState.collection_named`), the
collection-scoped routes (`/v1/collections/{name}/...`) beside the default collection's, the
search body's `collection`, links into the right collection, the listing, spaces loaded once per
fingerprint, `--all`, and `omnibind search` finding a server that serves a collection among others."""

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from live_server import Live
from omnibind import client as cli_client
from omnibind.collection import Collection
from omnibind.paths import CollectionError
from omnibind.server import ServerSettings, create_app

TOKEN = "test-token-multi"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHOTOS = {"x": "a cat asleep on a sofa", "car": "a red sports car", "soup": "a bowl of tomato soup"}
SOUNDS = {"x": "a dog barking loudly", "rain": "heavy rain on a tin roof", "piano": "a piano playing a waltz"}


def _fill(name: str, texts: dict[str, str], space, home: Path) -> Collection:
    coll = Collection.open(name, space=space, home=home)
    coll.add(list(texts.values()), ids=list(texts))
    return coll


@pytest.fixture
def world(tmp_path: Path, space):
    home = tmp_path / "home"
    return home, _fill("photos", PHOTOS, space, home), _fill("sounds", SOUNDS, space, home)


@pytest.fixture
def served(world):
    home, photos, sounds = world
    app = create_app(ServerSettings(collection="photos", others=["sounds"], home=home), TOKEN, photos)
    with TestClient(app, raise_server_exceptions=False, base_url="http://localhost") as http:
        yield http, photos, sounds


def _top(answer: dict) -> str:
    return answer["results"][0]["id"]


def test_search_each_collection_by_body_field_and_by_path(served):
    http, photos, sounds = served
    default = http.post("/v1/search", json={"text": "a dog barking", "k": 3}).json()
    assert default["collection"] == "photos" and {h["id"] for h in default["results"]} <= set(PHOTOS)
    by_body = http.post("/v1/search", json={"text": "a dog barking", "k": 3, "collection": "sounds"}).json()
    by_path = http.post("/v1/collections/sounds/search", json={"text": "a dog barking", "k": 3}).json()
    assert by_body["collection"] == by_path["collection"] == "sounds"
    assert [h["id"] for h in by_body["results"]] == [h["id"] for h in by_path["results"]]
    assert {h["id"] for h in by_body["results"]} == set(SOUNDS)
    assert _top(http.post("/v1/collections/sounds/search", json={"text": "rain storm"}).json()) == "rain"
    assert _top(http.post("/v1/collections/photos/search", json={"text": "an automobile"}).json()) == "car"
    form = http.post("/v1/collections/sounds/search", files={"text": (None, "piano music"), "k": (None, "1")}).json()
    assert _top(form) == "piano" and form["collection"] == "sounds"  # multipart, scoped by path
    both = http.post("/v1/collections/sounds/search", json={"text": "x", "collection": "photos"})
    assert both.status_code == 400 and "photos" in both.json()["error"]
    same = http.post("/v1/collections/sounds/search", json={"text": "x", "collection": "sounds"})
    assert same.status_code == 200


def test_unknown_collection_is_a_404_naming_the_served_ones(served):
    http, _, _ = served
    for r in (http.post("/v1/search", json={"text": "cat", "collection": "nope"}),
              http.post("/v1/collections/nope/search", json={"text": "cat"}),
              http.get("/v1/collections/nope/items/x"), http.get("/v1/collections/nope/items/x/media"),
              http.get("/v1/collections/nope/items/x/playback")):
        assert r.status_code == 404, r.text
        body = r.json()
        assert "nope" in body["error"] and "photos, sounds" in body["error"] and body["served"] == ["photos", "sounds"]
    assert http.post("/v1/search", json={"text": "cat", "collection": 3}).status_code == 422


def test_links_resolve_in_the_collection_the_hit_came_from(served):
    http, _, _ = served
    photo = http.post("/v1/search", json={"text": "a sleeping cat", "k": 1}).json()["results"][0]
    sound = http.post("/v1/collections/sounds/search", json={"text": "a dog barking", "k": 1}).json()["results"][0]
    assert photo["id"] == sound["id"] == "x"  # one id in both collections
    assert photo["links"]["media"] == "/v1/items/x/media"  # the default collection: the short routes, as before
    assert sound["links"]["media"] == "/v1/collections/sounds/items/x/media"
    assert http.get(photo["links"]["media"]).text == PHOTOS["x"]
    assert http.get(sound["links"]["media"]).text == SOUNDS["x"]
    item = http.get("/v1/collections/sounds/items/x").json()
    assert item["text"] == SOUNDS["x"] and item["links"]["media"] == sound["links"]["media"]
    assert http.get("/v1/items/x").json()["text"] == PHOTOS["x"]
    assert http.get("/v1/collections/photos/items/x").json()["text"] == PHOTOS["x"]
    assert http.get("/v1/collections/sounds/items/car").status_code == 404  # a photos item, not a sounds one


def test_delete_is_scoped_and_needs_the_token(served):
    http, photos, sounds = served
    assert http.delete("/v1/collections/sounds/items/x").status_code == 401
    assert http.delete("/v1/collections/sounds/items/x", headers=AUTH).json() == {"deleted": "x"}
    assert not sounds.refresh().get(["x"]) and photos.refresh().get(["x"])  # only the sounds item is gone


def test_listing_names_every_served_collection(served, tmp_path: Path, space):
    http, photos, sounds = served
    _fill("unserved", {"u": "an unserved note"}, space, tmp_path / "home")
    listed = http.get("/v1/collections").json()
    assert listed["served"] == "photos" and listed["served_all"] == ["photos", "sounds"]
    flags = {c["name"]: c["served"] for c in listed["collections"]}
    assert flags == {"photos": True, "sounds": True, "unserved": False}
    assert all("path" not in c for c in listed["collections"])  # paths only with the token
    assert http.get("/healthz").json()["served"] == ["photos", "sounds"]
    paths = http.get("/openapi.json").json()["paths"]
    scoped = paths["/v1/collections/{name}/items/{item_id}/media"]["get"]
    assert {p["name"] for p in scoped["parameters"]} >= {"name", "item_id", "thumbnail"}
    assert "/v1/collections/{name}/search" in paths and "/v1/search" in paths


def test_a_collection_of_another_space_is_searched_with_its_own_space(world, tmp_path: Path, space):
    """Spaces are loaded once per fingerprint: `other` brings its own, `more` shares the default's."""
    from omnibind.space import load_space

    home, photos, _ = world
    changed = load_space()
    changed.view_weights = {**changed.view_weights, "ocr": 0.5}  # another fingerprint, same text vectors
    changed.save(tmp_path / "changed-space")
    _fill("other", {"o": "a violin concerto"}, str(tmp_path / "changed-space"), home)
    _fill("more", {"m": "a mountain lake"}, space, home)
    app = create_app(ServerSettings(collection="photos", others=["sounds", "other", "more"], home=home), TOKEN, photos)
    state = app.state.server
    assert state.collection_named("other").space.fingerprint() != space.fingerprint()
    assert state.collection_named("more").space is space and state.collection_named("sounds").space is space
    assert len(state.spaces) == 2
    with TestClient(app, base_url="http://localhost") as http:
        assert _top(http.post("/v1/collections/other/search", json={"text": "violin"}).json()) == "o"
        assert _top(http.post("/v1/search", json={"text": "lake", "collection": "more"}).json()) == "m"


def test_a_name_twice_or_missing_is_refused(world, tmp_path: Path, space):
    home, photos, _ = world
    elsewhere = _fill(tmp_path / "elsewhere" / "sounds", {"s": "a bell"}, space, home)  # a path: same name
    with pytest.raises(ValueError, match="two collections are called 'sounds'"):
        create_app(ServerSettings(collection="photos", others=["sounds"], home=home), TOKEN, photos, [elsewhere])
    with pytest.raises(CollectionError, match="no collection 'ghost'"):
        create_app(ServerSettings(collection="photos", others=["ghost"], home=home), TOKEN, photos)


def test_serve_all_serves_collections_made_later(world, tmp_path: Path, space):
    home, photos, _ = world
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "note.txt").write_text("a lighthouse in a storm", "utf-8")
    app = create_app(ServerSettings(collection="photos", serve_all=True, roots=[inbox], home=home), TOKEN, photos)
    state = app.state.server
    changes = []
    state.on_change.append(lambda: changes.append(state.names()))
    assert state.names() == ["photos", "sounds"]
    with TestClient(app, base_url="http://localhost") as http:
        _fill("later", {"l": "a hot air balloon"}, space, home)  # by another process, after the start
        assert _top(http.post("/v1/collections/later/search", json={"text": "balloon"}).json()) == "l"
        r = http.post("/v1/collections/fresh/ingest", json={"path": str(inbox)}, headers=AUTH)
        assert r.status_code == 200 and r.json()["added"] == 1
        assert http.get("/v1/collections").json()["served_all"] == ["photos", "sounds", "later", "fresh"]
        assert _top(http.post("/v1/search", json={"text": "lighthouse", "collection": "fresh"}).json()).endswith(
            "note.txt")
        assert http.post("/v1/collections/..%2Fx/search", json={"text": "a"}).status_code == 404
    assert changes == [["photos", "sounds", "later"], ["photos", "sounds", "later", "fresh"]]


def test_without_all_an_ingest_into_a_new_name_is_not_served(served, tmp_path: Path):
    http, _, _ = served
    inbox = tmp_path / "inbox2"
    inbox.mkdir()
    (inbox / "n.txt").write_text("a note", "utf-8")
    http.app.state.server.settings.roots = [inbox]
    assert http.post("/v1/collections/newone/ingest", json={"path": str(inbox)}, headers=AUTH).status_code == 200
    assert http.post("/v1/collections/newone/search", json={"text": "note"}).status_code == 404


def test_omnibind_search_finds_the_server_of_a_collection_served_among_others(world):
    home, photos, sounds = world
    web = create_app(ServerSettings(collection="photos", others=["sounds"], home=home), TOKEN, photos)
    state = web.state.server
    live = Live(web, start=False)
    try:
        with cli_client.advertise(photos, "127.0.0.1", live.port, home, [state.served["sounds"]]) as record:
            live.start()
            saved = json.loads(record.read_text())
            assert [o["collection"] for o in saved["others"]] == ["sounds"]
            found = cli_client.search("sounds", "a dog barking", home=home, k=2)
            assert found.via == "server" and found.name == "sounds" and found.hits[0].id == "x"
            assert found.hits[0].to_dict()["text"] == SOUNDS["x"]
            assert cli_client.search("photos", "an automobile", home=home, k=1).via == "server"
            wrong = {**saved, "others": [{**saved["others"][0], "fingerprint": "0" * 64}]}
            cli_client._write_private(record, json.dumps(wrong))  # made by another space: never asked
            assert cli_client.search("sounds", "a dog barking", home=home).via == "local"
            cli_client.readvertise(record, [state.served["sounds"]])
            assert cli_client.search("sounds", "a dog barking", home=home).via == "server"
    finally:
        live.stop()
    assert not record.exists()


def test_serve_names(tmp_path: Path, world):
    from omnibind.cli_serve import serve_names as _serve_names

    home = world[0]
    assert _serve_names(["sounds", "photos", "sounds"], False, False, home) == ["sounds", "photos"]
    assert _serve_names([], True, False, home) == ["photos"]  # no 'default': the first one
    with pytest.raises(CollectionError, match="no collection 'soudns'"):
        _serve_names(["photos", "soudns"], False, True, home)  # --create makes the first only
    assert _serve_names(["brand-new"], False, True, home) == ["brand-new"]
    with pytest.raises(CollectionError, match="no collection 'default'"):
        _serve_names([], True, False, tmp_path / "empty-home")  # nothing to serve: say so
    assert _serve_names([], True, True, tmp_path / "empty-home") == ["default"]



def test_playback_of_another_collection_points_into_it(world, tmp_path: Path):
    from conftest import write_wav
    from omnibind.ingest import ingest

    home, photos, _ = world
    folder = tmp_path / "clips"
    folder.mkdir()
    wav = write_wav(folder / "tone.wav", seconds=1.0)
    clips = Collection.open("clips", space=photos.space, home=home)
    assert not ingest(clips, folder).failed
    app = create_app(ServerSettings(collection="photos", others=["clips"], home=home), TOKEN, photos)
    base = "/v1/collections/clips/items/" + quote(str(wav), safe="")
    with TestClient(app, base_url="http://localhost") as http:
        info = http.get(base + "/playback").json()
        assert info["playable"] is True and info["src"] == info["download"] == base + "/media"
        assert http.get(info["src"]).content == wav.read_bytes()
        assert http.get("/v1/items/" + quote(str(wav), safe="") + "/playback").status_code == 404  # not in photos

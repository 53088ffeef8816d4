"""The HTTP API through httpx (FastAPI's TestClient): every endpoint, every error path, auth,
path confinement, upload limits; and the search page in Debian's Chromium driven by Playwright."""

import io
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import draw_image, write_wav
from omnibind.collection import Collection
from omnibind.ingest import ingest
from omnibind.server import ServerSettings, create_app, load_token
from omnibind.server.settings import confine
from live_server import Live
from test_collection import make_folder

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path: Path, space):
    folder = make_folder(tmp_path / "media")
    coll = Collection.open("web", space=space, home=tmp_path / "home")
    assert not ingest(coll, folder).failed
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = ServerSettings(collection="web", roots=[inbox, folder], max_upload_bytes=2_000_000, max_files=3,
                              home=tmp_path / "home")
    app = create_app(settings, TOKEN, coll)
    with TestClient(app, raise_server_exceptions=False, base_url="http://localhost") as client:
        yield client, coll, folder, inbox


def png_bytes(colour: str = "red") -> bytes:
    out = io.BytesIO()
    draw_image("circle", 96, colour).save(out, format="PNG")
    return out.getvalue()


def test_health_and_page_without_external_resources(served):
    client, coll, _, _ = served
    assert client.get("/healthz").json() == {"status": "ok", "collection": "web", "items": 11, "space": coll.space.name,
                                             "served": ["web"]}
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and 'id="drop"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        body = client.get(asset)
        assert body.status_code == 200
        assert "http://" not in body.text and "https://" not in body.text  # no CDN, nothing external
    assert "http" not in page.text.replace('http-equiv', '')
    assert client.get("/openapi.json").json()["paths"]["/v1/search"]["post"]["requestBody"]["content"].keys() >= {
        "application/json", "multipart/form-data"}


def test_search_by_text_and_by_file(served, space):
    client, coll, folder, _ = served
    r = client.post("/v1/search", json={"text": "heavy rain on the roof", "k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 5 and hits[0]["id"] == str(folder / "notes" / "rain.txt")
    assert hits[0]["links"]["media"].startswith("/v1/items/%2F")
    only = client.post("/v1/search", json={"text": "a red circle", "modality": "image", "k": 3}).json()["results"]
    assert {h["modality"] for h in only} == {"image"}
    image = (folder / "photos" / "0-red-circle.png").read_bytes()
    r = client.post("/v1/search", files={"file": ("query.png", image, "image/png")}, data={"k": "2", "modality": "image"})
    assert r.status_code == 200, r.text
    first = r.json()["results"][0]
    assert first["id"] == str(folder / "photos" / "0-red-circle.png") and first["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert "thumbnail" in first["links"]


@pytest.mark.parametrize("body, status, words", [
    ({"text": "x", "where": "no_such_column = 1"}, 400, "filter"),
    ({"text": "x", "modality": "smell"}, 422, "unknown modality"),
    ({"text": "x", "k": 0}, 422, "k"),
    ({"text": ""}, 422, "text"),
    ({"k": 3}, 422, "text"),
])
def test_search_errors_are_json(served, body, status, words):
    client = served[0]
    r = client.post("/v1/search", json=body)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert "Traceback" not in r.text


def test_malformed_requests(served):
    client = served[0]
    r = client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert client.post("/v1/search", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    r = client.post("/v1/search", files={"file": ("junk.jpg", b"\x00\x01junk" * 50, "image/jpeg")})
    assert r.status_code == 422 and r.json()["source"] == "junk.jpg" and r.json()["reason"]
    r = client.post("/v1/search", files={"file": ("empty.wav", b"", "audio/wav")})
    assert r.status_code == 422 and "empty" in r.json()["error"]


def test_upload_limits(served):
    client = served[0]
    r = client.post("/v1/embed", files={"file": ("big.png", b"\x89PNG" + b"0" * 2_100_000, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(30):
            yield b"0" * 100_000

    r = client.post("/v1/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    files = [("file", (f"{i}.png", png_bytes(), "image/png")) for i in range(4)]
    r = client.post("/v1/embed", files=files)
    assert r.status_code == 413 and "files" in r.json()["error"].lower()


def test_embed_texts_and_files(served, space):
    client = served[0]
    r = client.post("/v1/embed", json={"texts": ["a dog barking", "rain"]})
    assert r.status_code == 200
    got = np.array([x["vector"] for x in r.json()["items"]])
    np.testing.assert_allclose(got, space.embed(["a dog barking", "rain"]), atol=1e-5)
    assert client.post("/v1/embed", json={"texts": ["a"], "dim": 64}).json()["dim"] == 64
    r = client.post("/v1/embed", files=[("file", ("c.png", png_bytes("blue"), "image/png"))], data={"texts": "a blue circle"})
    items = r.json()["items"]
    assert [i["modality"] for i in items] == ["image", "text"] and items[0]["source"] == "c.png"
    assert client.post("/v1/embed", json={"texts": []}).status_code == 422


def test_classify_texts_and_files(served, tmp_path: Path):
    client = served[0]
    r = client.post("/v1/classify", json={"texts": ["the weather forecast says storms", "bake the cake"],
                                          "labels": ["weather", "cooking"]})
    assert [x["label"] for x in r.json()["results"]] == ["weather", "cooking"]
    write_wav(tmp_path / "t.wav", 2.0, 440)
    r = client.post("/v1/classify", files={"file": ("t.wav", (tmp_path / "t.wav").read_bytes(), "audio/wav")},
                    data={"labels": "a beep tone,a dog"})
    res = r.json()["results"][0]
    assert r.status_code == 200 and res["modality"] == "audio" and abs(sum(res["probabilities"].values()) - 1) < 1e-5
    assert client.post("/v1/classify", files={"file": ("t.wav", b"RIFF", "audio/wav")}, data={"labels": "x"}).status_code == 422


def test_collections_items_and_media(served):
    client, coll, folder, _ = served
    listed = client.get("/v1/collections").json()
    assert listed["served"] == "web" and any(c["name"] == "web" and c["items"] == 11 for c in listed["collections"])
    image_id = str(folder / "photos" / "0-red-circle.png")
    from urllib.parse import quote

    base = "/v1/items/" + quote(image_id, safe="")
    item = client.get(base).json()
    assert item["modality"] == "image" and item["size"] == (folder / "photos" / "0-red-circle.png").stat().st_size
    full = client.get(base + "/media")
    assert full.status_code == 200 and full.content == (folder / "photos" / "0-red-circle.png").read_bytes()
    part = client.get(base + "/media", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == full.content[:10] and part.headers["content-range"].startswith("bytes 0-9/")
    thumb = client.get(base + "/media", params={"thumbnail": "true"})
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    video = client.get("/v1/items/" + quote(str(folder / "clip.mp4"), safe="") + "/media", headers={"Range": "bytes=0-1"})
    assert video.status_code == 206 and video.headers["content-type"] == "video/mp4"
    note = client.get("/v1/items/" + quote(str(folder / "notes" / "rain.txt"), safe="") + "/media")
    assert "Heavy rain" in note.text
    assert client.get("/v1/items/nope").status_code == 404
    assert client.get("/v1/items/nope/media").json()["error"].startswith("no item")
    os.remove(folder / "sounds" / "low.wav")
    gone = client.get("/v1/items/" + quote(str(folder / "sounds" / "low.wav"), safe="") + "/media")
    assert gone.status_code == 404 and "no longer" in gone.json()["error"]


def test_ingest_needs_token_and_stays_inside_roots(served, tmp_path: Path):
    client, coll, _, inbox = served
    draw_image("square", 80, "green").save(inbox / "new.png")
    url = "/v1/collections/web/ingest"
    assert client.post(url, json={"path": str(inbox)}).status_code == 401
    assert client.post(url, json={"path": str(inbox)}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "x.txt").write_text("private")
    for path in (str(inbox / ".." / "secret"), str(outside), "/etc"):
        r = client.post(url, json={"path": path}, headers=AUTH)
        assert r.status_code == 403 and "outside the allowed roots" in r.json()["error"], path
    os.symlink(outside, inbox / "escape")
    r = client.post(url, json={"path": str(inbox / "escape")}, headers=AUTH)
    assert r.status_code == 403  # a symlink inside a root that leads out of it
    assert client.post(url, json={"path": str(inbox / "missing")}, headers=AUTH).status_code == 404
    assert client.post("/v1/collections/..%2Fx/ingest", json={"path": str(inbox)}, headers=AUTH).status_code in (400, 404)
    (inbox / "escape").unlink()
    r = client.post(url, json={"path": str(inbox)}, headers=AUTH)
    assert r.status_code == 200 and r.json()["added"] == 1 and len(coll) == 12
    r = client.delete("/v1/items/" + str(inbox / "new.png"), headers=AUTH)
    assert r.status_code == 200 and len(coll) == 11
    assert client.delete("/v1/items/" + str(inbox / "new.png"), headers=AUTH).status_code == 404
    assert client.delete("/v1/items/x").status_code == 401


def test_http_ingest_reembeds_a_collection_of_another_space_when_asked(served, tmp_path: Path):
    """Re-embedding works from every entry point: HTTP ingest takes the same `reembed` as the CLI."""
    from omnibind.space import load_space

    client, coll, _, inbox = served
    (inbox / "note.txt").write_text("a note for the old collection", "utf-8")
    old = Collection.open("old", space=load_space("bridge"), home=tmp_path / "home")  # another space
    old.add(["made with the bridge space"], ids=["n1"])
    url = "/v1/collections/old/ingest"
    refused = client.post(url, json={"path": str(inbox)}, headers=AUTH)
    assert refused.status_code == 400 and "re-embed" in refused.json()["error"].lower()
    r = client.post(url, json={"path": str(inbox), "reembed": True}, headers=AUTH)
    assert r.status_code == 200 and r.json()["added"] == 1, r.json()
    again = Collection.open("old", create=False, home=tmp_path / "home")
    assert again.meta["space"]["fingerprint"] == coll.space.fingerprint() and "pending_space" not in again.meta
    assert set(again.column("space").column("space").to_pylist()) == {coll.space.fingerprint()}


def test_confine_and_token(tmp_path: Path, monkeypatch):
    with pytest.raises(PermissionError, match="disabled"):
        confine("/tmp", [])
    assert confine(str(tmp_path / "a" / ".." / "b"), [tmp_path]) == tmp_path / "b"
    monkeypatch.delenv("OMNIBIND_TOKEN", raising=False)
    token, created = load_token(home=tmp_path)
    assert created and len(token) >= 32 and oct((tmp_path / "server-token").stat().st_mode & 0o777) == "0o600"
    assert load_token(home=tmp_path) == (token, False)  # kept across restarts
    monkeypatch.setenv("OMNIBIND_TOKEN", "from-env")
    assert load_token(home=tmp_path) == ("from-env", False)


def test_home_is_passed_explicitly(tmp_path: Path, monkeypatch, space):
    """settings.home decides where collections are opened, listed and ingested, whatever $OMNIBIND_HOME says."""
    monkeypatch.setenv("OMNIBIND_HOME", str(tmp_path / "elsewhere"))
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    inbox.mkdir()
    draw_image("square", 80, "green").save(inbox / "new.png")
    coll = Collection.open("served", space=space, home=home)
    app = create_app(ServerSettings(collection="served", roots=[inbox], home=home), TOKEN, coll)
    with TestClient(app, raise_server_exceptions=False, base_url="http://localhost") as client:
        r = client.post("/v1/collections/other/ingest", json={"path": str(inbox)}, headers=AUTH)
        assert r.status_code == 200 and r.json()["added"] == 1 and r.json()["collection"] == "other"
        listed = client.get("/v1/collections", headers=AUTH).json()["collections"]
    assert sorted(c["name"] for c in listed) == ["other", "served"]
    assert all(Path(c["path"]).parent == home / "collections" for c in listed)
    assert not (tmp_path / "elsewhere").exists()


def test_internal_errors_are_json_without_traceback(served, monkeypatch):
    client, coll, _, _ = served
    monkeypatch.setattr(Collection, "stats", lambda self: 1 / 0)
    r = client.get("/v1/collections")
    assert r.status_code == 500 and r.json() == {"error": "internal server error (details are in the server log)"}


def test_state_is_explicit_and_locks_serialise(served, space):
    """The app's state holds the locks; the space is not patched; model and write calls wait for their lock."""
    client, coll, folder, _ = served
    state = client.app.state.server
    assert state.collection is coll and state.space is coll.space is space
    assert "embed" not in vars(space)  # no monkeypatched library object
    calls = [("model_lock", lambda: client.post("/v1/search", json={"text": "rain", "k": 2})),
             ("model_lock", lambda: client.post("/v1/embed", json={"texts": ["rain"]})),
             ("model_lock", lambda: client.post("/v1/classify", json={"texts": ["rain"], "labels": ["weather", "food"]})),
             ("write_lock", lambda: client.delete("/v1/items/" + str(folder / "notes" / "rain.txt"), headers=AUTH))]
    with ThreadPoolExecutor(1) as pool:
        for lock_name, call in calls:
            lock = getattr(state, lock_name)
            with lock:
                pending = pool.submit(call)
                time.sleep(0.3)
                assert not pending.done(), lock_name
            assert pending.result(timeout=60).status_code == 200
    assert client.get("/v1/items/nope").status_code == 404  # reads take no lock
    with state.model_lock, state.write_lock:
        assert client.get("/healthz").json()["items"] == 10


def test_concurrent_searches(served):
    client = served[0]
    texts = ["rain", "a red circle", "cake recipe", "a tone", "meeting on thursday", "a video"] * 4
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda t: client.post("/v1/search", json={"text": t, "k": 3}).status_code, texts))
    assert codes == [200] * len(texts)


# -- the page in a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def live_server(served):
    client, coll, folder, _ = served
    live = Live(client.app)
    yield live.url, folder
    live.stop()


def test_page_in_chromium(live_server, tmp_path: Path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    url, folder = live_server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        violations: list[str] = []  # the page and its JS/CSS live within the CSP (nothing inline, nothing eval'd)
        page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
        response = page.goto(url)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('items')")
        assert "11 items" in page.text_content("#status")
        page.fill("#q", "heavy rain on the roof")
        page.keyboard.press("Enter")  # the keyboard submits
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 11
        assert "rain.txt" in page.locator(".card .name").first.text_content()
        assert page.locator(".card img").count() >= 4 and page.locator(".card audio").count() == 2
        assert page.locator(".card .media.video .poster").count() == 1  # videos: a poster; the viewer plays them
        page.focus(".chip[data-modality=text]")
        page.keyboard.press("Space")  # chips are buttons: keyboard toggles them
        page.wait_for_function("() => document.querySelectorAll('.card').length === 8")
        assert page.get_attribute(".chip[data-modality=text]", "aria-pressed") == "false"
        page.set_input_files("#file", str(folder / "photos" / "1-blue-square.png"))
        page.wait_for_function("() => document.querySelector('#query-line').textContent.includes('1-blue-square.png')")
        assert "1-blue-square.png" in page.locator(".card .name").first.text_content()
        page.wait_for_function("() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        assert page.eval_on_selector(".card .bar span", "e => e.style.width").endswith("%")
        assert not violations, violations
        browser.close()

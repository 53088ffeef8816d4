"""Hardening of `omnibind serve` (issue 13, the HTTP part): every reproduced defect has a test.

* request size (4) and the 1 Hz WAV (3): each attack is refused or bounded within 2 s and
  +200 MB RSS while a concurrent search keeps answering within 1 s;
* time budget, bounded model queue, per-client concurrency and rate limits for anonymous clients;
* memory given back after a big request (RSS measured);
* other processes' writes are seen (7);
* Host / Origin / Content-Type checks against DNS rebinding and cross-site posts (8);
* 4xx, never 500, for malformed bodies (11);
* no absolute paths for anonymous callers, security headers on every answer (12);
* media re-checked at serve time: a file swapped for a symlink is not served (2).

The attacks run against the in-process app (FastAPI's TestClient, several threads); RSS is this
process's, read from /proc/self/status.
"""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import draw_image
from omnibind.collection import Collection
from omnibind.ingest import ingest
from omnibind.server import ServerSettings, create_app
from test_collection import make_folder

TOKEN = "hardening-token-456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "http://localhost"


def media_url(path: Path | str, thumbnail: bool = False) -> str:
    return "/v1/items/" + quote(str(path), safe="") + "/media" + ("?thumbnail=true" if thumbnail else "")


@pytest.fixture
def make_client(tmp_path: Path, space):
    """`make_client(**settings) -> (client, collection, folder)` over a freshly ingested folder
    (the media folder is a --root, so its files are served)."""
    folder = make_folder(tmp_path / "media")
    coll = Collection.open("hard", space=space, home=tmp_path / "home")
    assert not ingest(coll, folder).failed
    clients = []

    def make(**kw: Any) -> tuple[TestClient, Collection, Path]:
        kw = {"collection": "hard", "home": tmp_path / "home", "roots": [folder], **kw}
        client = TestClient(create_app(ServerSettings(**kw), TOKEN, coll), raise_server_exceptions=False, base_url=BASE)
        client.__enter__()
        clients.append(client)
        client.post("/v1/search", json={"text": "warm up", "k": 1})
        return client, coll, folder

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


# -- measuring an attack ------------------------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def settle() -> float:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return rss_mb()


def under_attack(client: TestClient, attack: Callable[[], Any], budget_s: float = 2.0) -> tuple[Any, float, float]:
    """Run `attack()` (one request) while another thread searches and a third samples RSS.
    Returns (the attack's response, its seconds, peak RSS growth in MB); asserts that every
    concurrent search answered 200 within 1 s and the attack within `budget_s`."""
    base = settle()
    done = threading.Event()
    peak = [base]
    searches: list[tuple[int, float]] = []

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    def search() -> None:
        for i in range(40):  # bounded: at most ~40 searches
            if done.is_set() and len(searches) >= 3:
                break
            t = time.perf_counter()
            r = client.post("/v1/search", json={"text": f"rain {i}", "k": 2})
            searches.append((r.status_code, time.perf_counter() - t))
            time.sleep(0.05)

    with ThreadPoolExecutor(3) as pool:
        sampler, searcher = pool.submit(sample), pool.submit(search)
        time.sleep(0.05)
        t = time.perf_counter()
        pending = pool.submit(attack)
        try:
            response = pending.result(timeout=max(10.0, 5 * budget_s))
        finally:
            seconds = time.perf_counter() - t
            done.set()
        searcher.result(timeout=60)
        sampler.result(timeout=5)
    grown = peak[0] - base
    assert seconds < budget_s, f"the attack took {seconds:.1f} s"
    assert grown < 200, f"RSS grew by {grown:.0f} MB"
    assert searches and all(code == 200 for code, _ in searches), searches
    assert max(s for _, s in searches) < 1.0, f"a concurrent search took {max(s for _, s in searches):.2f} s"
    return response, seconds, grown


def wav_1hz(samples: int = 3500) -> bytes:
    """A 7 KB WAV that declares a 1 Hz sample rate: an hour of 'audio' to resample to 22 kHz."""
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(np.arange(samples) / 3)).astype(np.float32), 1, format="WAV", subtype="PCM_16")
    return out.getvalue()


def huge_png(side: int = 8000) -> bytes:
    """An RGB PNG of side x side white pixels, ~190 KB on disk (built row by row: small in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(6)
    row = b"\x00" + b"\xff" * (side * 3)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# -- (3) and (4): the reproduced attacks ----------------------------------------------------------

def test_wav_declaring_1_hz_is_refused_quickly(client):
    client, _, _ = client
    data = wav_1hz()
    assert len(data) < 8000
    r, seconds, grown = under_attack(
        client, lambda: client.post("/v1/embed", files={"file": ("one-hz.wav", data, "audio/wav")}))
    # 413 max_media_seconds here (an hour from its header); a 422 once the decoders refuse rates under 4 kHz
    assert r.status_code in (413, 422) and r.json()["source"] == "one-hz.wav", r.text
    print(f"1 Hz WAV: {r.status_code} in {seconds:.2f} s, RSS +{grown:.0f} MB")


def test_20000_labels_are_refused_before_any_work(client):
    client, _, _ = client
    labels = [f"label number {i}" for i in range(20_000)]
    body = json.dumps({"texts": ["a dog barking"], "labels": labels}).encode()
    assert len(body) > 400_000
    r, seconds, grown = under_attack(client, lambda: client.post(
        "/v1/classify", content=body, headers={"content-type": "application/json"}))
    assert r.status_code == 413 and r.json()["limit"] == "max_labels", r.text
    print(f"20,000 labels: {r.status_code} in {seconds:.2f} s, RSS +{grown:.0f} MB")


def test_45_texts_of_a_million_characters_are_refused(client):
    client, _, _ = client
    body = json.dumps({"texts": ["x" * 1_000_000] * 45}).encode()
    r, seconds, grown = under_attack(client, lambda: client.post(
        "/v1/embed", content=body, headers={"content-type": "application/json"}))
    assert r.status_code == 413 and r.json()["limit"] in ("max_json_bytes", "max_text_chars"), r.text
    del body
    # the same texts as multipart form fields (each under starlette's own 1 MiB part limit), encoded beforehand
    form = httpx.Request("POST", BASE + "/v1/embed", files=[("file", ("a.txt", b"hello", "text/plain"))],
                         data={"texts": ["x" * 1_000_000] * 45})
    body, kind = form.read(), form.headers["content-type"]
    assert len(body) > 45_000_000
    r, seconds2, grown2 = under_attack(
        client, lambda: client.post("/v1/embed", content=body, headers={"content-type": kind}))
    assert r.status_code == 413 and r.json()["limit"] == "max_text_chars", r.text
    print(f"45 x 1M characters: {seconds:.2f} s, RSS +{grown:.0f} MB; "
          f"as form fields: {seconds2:.2f} s, +{grown2:.0f} MB")


def test_8_pngs_of_8000_squared_are_refused_from_their_headers(client):
    client, _, _ = client
    png = huge_png(8000)
    files = [("file", (f"big{i}.png", png, "image/png")) for i in range(8)]
    assert 8 * len(png) < 2_000_000
    r, seconds, grown = under_attack(client, lambda: client.post("/v1/embed", files=files))
    assert r.status_code == 413 and r.json()["limit"] == "max_image_pixels" and r.json()["source"] == "big0.png", r.text
    print(f"8 PNGs of 8000x8000: {r.status_code} in {seconds:.2f} s, RSS +{grown:.0f} MB")


def test_request_pixel_budget_and_per_item_limits(make_client):
    client, _, _ = make_client(max_image_pixels=2000 * 2000, max_request_pixels=3000 * 3000, max_texts=4,
                               max_request_chars=50, max_text_chars=30)
    png = huge_png(1900)
    r = client.post("/v1/embed", files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png")),
                                        ("file", ("c.png", png, "image/png"))])
    assert r.status_code == 413 and r.json()["limit"] == "max_request_pixels" and r.json()["source"] == "c.png", r.text
    r = client.post("/v1/embed", json={"texts": ["a"] * 5})
    assert r.status_code == 413 and r.json()["limit"] == "max_texts"
    r = client.post("/v1/embed", json={"texts": ["x" * 31]})
    assert r.status_code == 413 and r.json()["limit"] == "max_text_chars" and r.json()["max"] == 30
    r = client.post("/v1/embed", json={"texts": ["x" * 30, "y" * 30]})
    assert r.status_code == 413 and r.json()["limit"] == "max_request_chars"
    r = client.post("/v1/search", json={"text": "x" * 31})
    assert r.status_code == 413 and r.json()["limit"] == "max_text_chars"
    r = client.post("/v1/classify", json={"texts": ["a"], "labels": ["short", "l" * 201]})
    assert r.status_code == 413 and r.json()["limit"] == "max_label_chars"
    assert client.post("/v1/embed", json={"texts": ["fine", "also fine"]}).status_code == 200


# -- time budget, queue, concurrency and rate ----------------------------------------------------

def test_model_work_over_the_time_budget_is_abandoned(make_client):
    client, _, _ = make_client(model_timeout_s=1.0, max_labels=2000)
    labels = [f"a label about topic {i}" for i in range(1500)]  # 4,500 prompts: far more than 1 s here
    state = client.app.state.server

    def big() -> Any:
        return client.post("/v1/classify", json={"texts": ["weather"], "labels": labels})

    r, seconds, _ = under_attack(client, big, budget_s=3.0)
    assert r.status_code == 504 and "time" in r.json()["error"], r.text
    t = time.perf_counter()  # the abandoned work stops at its next chunk: the lock is soon free
    assert state.model_lock.acquire(timeout=5)
    state.model_lock.release()
    print(f"classify over budget: 504 after {seconds:.2f} s; lock free {time.perf_counter() - t:.2f} s later")
    r = client.post("/v1/classify", json={"texts": ["weather"], "labels": labels[:2]})
    assert r.status_code == 200
    r = client.post("/v1/classify", json={"texts": ["weather"], "labels": labels[:40]}, headers=AUTH)
    assert r.status_code == 200  # token holders have no time budget


def test_bounded_queue_and_per_client_concurrency(make_client):
    client, _, _ = make_client(max_model_queue=4, max_client_model_requests=1, model_timeout_s=20)
    state = client.app.state.server
    with ThreadPoolExecutor(2) as pool, state.model_lock:
        first = pool.submit(client.post, "/v1/search", json={"text": "rain"})
        time.sleep(0.3)
        r = client.post("/v1/search", json={"text": "rain"})  # the same client address, one already waiting
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.json()["retry_after"] >= 1, r.text
        trusted = pool.submit(client.post, "/v1/search", json={"text": "rain"}, headers=AUTH)  # not counted
        time.sleep(0.3)
        assert not trusted.done()
    assert first.result(timeout=30).status_code == 200 and trusted.result(timeout=30).status_code == 200
    assert state.gate.active == 0 and not state.gate.per_client


def test_queue_full_is_503_with_retry_after(make_client):
    client, _, _ = make_client(max_model_queue=1, model_timeout_s=20)
    state = client.app.state.server
    with ThreadPoolExecutor(1) as pool, state.model_lock:
        first = pool.submit(client.post, "/v1/search", json={"text": "rain"})
        time.sleep(0.3)
        r = client.post("/v1/embed", json={"texts": ["x"]})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
    assert first.result(timeout=30).status_code == 200


def test_lock_wait_over_the_budget_is_503(make_client):
    client, _, _ = make_client(model_timeout_s=0.5)
    with client.app.state.server.model_lock:
        t = time.perf_counter()
        r = client.post("/v1/search", json={"text": "rain"})
        assert r.status_code == 503 and "retry-after" in r.headers and time.perf_counter() - t < 3


def test_rate_limit_per_client_token_exempt(make_client):
    client, _, _ = make_client(rate_per_s=0.5, rate_burst=4)  # one token went to the warm-up search
    codes = [client.get("/v1/items/nope").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    r = client.get("/v1/items/nope")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "too many" in r.json()["error"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]  # answered by a middleware: headers too
    assert client.get("/v1/items/nope", headers=AUTH).status_code == 404  # the token is never limited
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200  # only /v1/


def test_searches_interleave_with_a_long_classify(make_client):
    """A big classify holds the model lock chunk by chunk: a search waits one chunk, not the whole job."""
    client, _, _ = make_client(model_timeout_s=120)
    labels = [f"label {i}" for i in range(200)]
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(client.post, "/v1/classify", json={"texts": ["weather"], "labels": labels}, headers=AUTH)
        time.sleep(0.5)
        times = []
        while not big.done() and len(times) < 10:
            t = time.perf_counter()
            assert client.post("/v1/search", json={"text": "rain", "k": 2}).status_code == 200
            times.append(time.perf_counter() - t)
        assert big.result(timeout=120).status_code == 200
    assert times and max(times) < 1.0, times


# -- memory -------------------------------------------------------------------------------------

def test_memory_is_given_back_after_a_big_request(client):
    client, _, _ = client
    png = huge_png(4000)
    files = [("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))]
    assert client.post("/v1/embed", files=files).status_code == 200  # warm: the image tower is loaded
    time.sleep(1.2)
    before = settle()
    for _ in range(3):  # 2 x 16 Mpx decoded each time (~100 MB of pixels)
        assert client.post("/v1/embed", files=files).status_code == 200
        time.sleep(1.2)  # the server releases memory once the answer is sent (at most once a second)
    after = rss_mb()
    print(f"RSS before {before:.0f} MB, after 3 requests of 2 x 16 Mpx: {after:.0f} MB (+{after - before:.0f})")
    assert after - before < 40


# -- (7) other processes' writes ----------------------------------------------------------------

def test_server_sees_rows_another_process_added(client, tmp_path: Path, space):
    client, coll, _ = client
    assert client.get("/healthz").json()["items"] == 11
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "new-note.txt").write_text("A brand new note about volcanoes erupting")
    other = Collection.open("hard", space=space, home=tmp_path / "home", create=False)  # like another process
    assert ingest(other, extra).added == 1
    assert client.get("/healthz").json()["items"] == 12
    hits = client.post("/v1/search", json={"text": "volcanoes erupting", "k": 1}).json()["results"]
    assert hits[0]["id"] == str(extra / "new-note.txt")
    assert client.get("/v1/items/" + quote(str(extra / "new-note.txt"), safe="")).status_code == 200
    listed = client.get("/v1/collections").json()["collections"]
    assert any(c["name"] == "hard" and c["items"] == 12 for c in listed)


# -- (8) Host, Origin, Content-Type -------------------------------------------------------------

def test_dns_rebinding_host_is_refused(client):
    client, _, _ = client
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
        for method, url in (("GET", "/v1/collections"), ("POST", "/v1/search"), ("GET", "/")):
            r = client.request(method, url, headers={"host": host}, json={"text": "x"} if method == "POST" else None)
            assert r.status_code == 400 and "Host" in r.json()["error"], (host, url, r.text)
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_and_bound_host(make_client):
    client, _, _ = make_client(host="192.168.1.5", allowed_hosts=["omni.lan", "*.example.org"])
    for host in ("192.168.1.5:8000", "omni.lan", "a.example.org", "localhost"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    for host in ("example.org", "omni.lan.evil", "10.0.0.1"):
        assert client.get("/healthz", headers={"host": host}).status_code == 400, host
    anywhere, _, _ = make_client(host="0.0.0.0", allowed_hosts=["*"])
    assert anywhere.get("/healthz", headers={"host": "anything.example"}).status_code == 200


def test_cross_origin_requests_are_refused(client):
    client, _, _ = client
    for origin in ("http://evil.example", "null", "http://localhost:3000", "https://localhost"):
        r = client.post("/v1/search", json={"text": "rain"}, headers={"origin": origin})
        assert r.status_code == 403 and "cross-origin" in r.json()["error"], origin
        assert client.get("/v1/collections", headers={"origin": origin}).status_code == 403
    assert client.post("/v1/search", json={"text": "rain"}, headers={"origin": "http://localhost"}).status_code == 200


def test_json_bodies_need_the_json_content_type(client, tmp_path: Path):
    client, _, folder = client
    body = json.dumps({"text": "rain"}).encode()
    for kind in (None, "text/plain", "application/x-www-form-urlencoded", "application/jsonp", "text/json"):
        headers = {"content-type": kind} if kind else {}
        r = client.post("/v1/search", content=body, headers=headers)
        assert r.status_code == 415, (kind, r.text)
        r = client.post("/v1/collections/hard/ingest", content=json.dumps({"path": str(folder)}).encode(),
                        headers={**AUTH, **headers})
        assert r.status_code == 415, (kind, r.text)
    r = client.post("/v1/collections/hard/ingest", files={"file": ("x", b"{}")}, headers=AUTH)
    assert r.status_code == 415  # ingest takes JSON only
    r = client.post("/v1/search", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


# -- (11) 4xx for every malformed body ----------------------------------------------------------

DEEP = b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
BAD_BODIES: list[tuple[str, Any]] = [
    # (endpoint, JSON value or raw bytes)
    ("/v1/embed", {"texts": ["a"], "dim": 10**9}),
    ("/v1/embed", {"texts": ["a"], "dim": "abc"}),
    ("/v1/embed", {"texts": ["a"], "dim": -5}),
    ("/v1/embed", {"texts": ["a"], "dim": 0}),
    ("/v1/embed", {"texts": ["a"], "dim": 1.5}),
    ("/v1/embed", {"texts": ["a"], "dim": 385}),
    ("/v1/embed", {"texts": "not a list"}),
    ("/v1/embed", {"texts": [1, 2]}),
    ("/v1/embed", {"texts": [["nested"]]}),
    ("/v1/embed", {"texts": [None]}),
    ("/v1/embed", {}),
    ("/v1/embed", []),
    ("/v1/embed", "a string"),
    ("/v1/embed", None),
    ("/v1/embed", DEEP),
    ("/v1/embed", b'{"texts": ["a"], "dim": ' + b"9" * 5000 + b"}"),
    ("/v1/embed", b'{"texts": ["\xff\xfe"]}'),
    ("/v1/embed", b'{"texts": ["a"], "dim": NaN}'),
    ("/v1/embed", b""),
    ("/v1/search", {"text": "x", "k": "abc"}),
    ("/v1/search", {"text": "x", "k": 10**9}),
    ("/v1/search", {"text": "x", "k": -5}),
    ("/v1/search", {"text": 5}),
    ("/v1/search", {"text": ["x"]}),
    ("/v1/search", {"text": "x", "modality": 5}),
    ("/v1/search", {"text": "x", "modality": "smell"}),
    ("/v1/search", {"text": "x", "where": "1 = (SELECT"}),
    ("/v1/search", {"text": "x", "where": ["list"]}),
    ("/v1/search", {"text": "x", "raw": "maybe"}),
    ("/v1/search", {"text": "x" * 20_000}),
    ("/v1/search", DEEP),
    ("/v1/search", b"[" * 5000),
    ("/v1/classify", {"texts": ["a"], "labels": ["only one"]}),
    ("/v1/classify", {"texts": ["a"], "labels": ["same", "same"]}),
    ("/v1/classify", {"texts": ["a"], "labels": ["", " "]}),
    ("/v1/classify", {"texts": ["a"], "labels": "a,b"}),
    ("/v1/classify", {"texts": [], "labels": ["a", "b"]}),
    ("/v1/classify", {"texts": ["a"], "labels": [{"x": 1}, "b"]}),
    ("/v1/classify", DEEP),
]


@pytest.mark.parametrize("url, body", BAD_BODIES, ids=[f"{u}-{i}" for i, (u, _) in enumerate(BAD_BODIES)])
def test_malformed_bodies_are_4xx(client, url, body):
    client, _, _ = client
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(url, content=data, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json" and r.json()["error"] and "Traceback" not in r.text
    assert len(r.content) < 5000  # the values sent are not echoed back


BAD_FORMS: list[tuple[str, dict[str, str]]] = [
    ("/v1/embed", {"dim": "abc"}),
    ("/v1/embed", {"dim": "-5"}),
    ("/v1/embed", {"dim": "1000000000"}),
    ("/v1/search", {"k": "abc"}),
    ("/v1/search", {"k": "-1"}),
    ("/v1/classify", {"labels": "one"}),
    ("/v1/classify", {"labels": "a,a"}),
]


@pytest.mark.parametrize("url, fields", BAD_FORMS, ids=[f"{u}-{i}" for i, (u, _) in enumerate(BAD_FORMS)])
def test_malformed_forms_are_4xx(client, url, fields):
    client, _, folder = client
    image = (folder / "photos" / "0-red-circle.png").read_bytes()
    r = client.post(url, files={"file": ("q.png", image, "image/png")}, data=fields)
    assert 400 <= r.status_code < 500 and r.json()["error"], (r.status_code, r.text[:300])


def test_malformed_paths_and_ingest_bodies(client):
    client, _, _ = client
    for path in ("/v1/items/%00", "/v1/items/a'b", "/v1/items/" + "x" * 5000, "/v1/items/%00/media",
                 "/v1/items/a%27%20OR%20%271%27%3D%271/media"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
    url = "/v1/collections/hard/ingest"
    for body in ({"path": 5}, {"path": ""}, {"path": "/tmp", "prune": "maybe"}, {}, {"path": "a\u0000b"}, []):
        r = client.post(url, json=body, headers=AUTH)
        assert 400 <= r.status_code < 500, (body, r.text)


# -- (12) paths and headers ---------------------------------------------------------------------

def test_collection_paths_only_with_the_token(client, tmp_path: Path):
    client, _, _ = client
    anonymous = client.get("/v1/collections")
    assert anonymous.status_code == 200 and str(tmp_path) not in anonymous.text
    assert all("path" not in c for c in anonymous.json()["collections"])
    trusted = client.get("/v1/collections", headers=AUTH).json()["collections"]
    assert any(c["path"].startswith(str(tmp_path)) for c in trusted)
    assert str(tmp_path) not in client.get("/v1/collections", headers={"Authorization": "Bearer wrong"}).text


def test_security_headers_on_every_answer(client, monkeypatch):
    client, _, folder = client
    answers = {
        "page": client.get("/"), "js": client.get("/static/app.js"), "css": client.get("/static/style.css"),
        "health": client.get("/healthz"), "json": client.post("/v1/search", json={"text": "rain", "k": 1}),
        "404": client.get("/v1/items/nope"), "413": client.post("/v1/embed", json={"texts": ["x" * 20_000]}),
        "415": client.post("/v1/search", content=b"x"),
        "host": client.get("/healthz", headers={"host": "evil.example"}),
        "origin": client.get("/healthz", headers={"origin": "http://evil.example"}),
        "body": client.post("/v1/embed", content=b"0" * (60 * 1024 * 1024),
                            headers={"content-type": "application/json"}),
    }
    monkeypatch.setattr(Collection, "stats", lambda self: 1 / 0)
    answers["500"] = client.get("/v1/collections")
    assert answers["500"].status_code == 500 and answers["body"].status_code == 413
    for name, r in answers.items():
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, name
        assert r.headers.get("x-content-type-options") == "nosniff" and r.headers.get("x-frame-options") == "DENY", name
        assert r.headers.get("referrer-policy") == "no-referrer", name
    docs = client.get("/docs", headers=AUTH)
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_media_answers_forbid_scripts(client):
    client, coll, folder = client
    note = client.get(media_url(folder / "notes" / "rain.txt"))
    image = client.get(media_url(folder / "photos" / "0-red-circle.png"))
    thumb = client.get(media_url(folder / "photos" / "0-red-circle.png", thumbnail=True))
    for r in (note, image, thumb):
        assert r.status_code == 200 and "sandbox" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert note.headers["content-type"] == "text/plain; charset=utf-8" and image.headers["content-type"] == "image/png"


# -- (2) media re-checked at serve time ---------------------------------------------------------

def test_media_file_swapped_for_a_symlink_is_not_served(client, tmp_path: Path):
    client, coll, folder = client
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET private key material")
    note = folder / "notes" / "rain.txt"
    image = folder / "photos" / "0-red-circle.png"
    assert client.get(media_url(image)).status_code == 200
    for target in (note, image):
        target.unlink()
        os.symlink(secret, target)  # swapped after ingest
        r = client.get(media_url(target))
        assert r.status_code in (403, 404) and "SECRET" not in r.text, r.text
        r = client.get(media_url(target), headers={"Range": "bytes=0-5"})
        assert r.status_code in (403, 404) and "SECRET" not in r.text
        item = client.get("/v1/items/" + quote(str(target), safe="")).json()
        assert "media" not in item["links"] and "symbolic link" in item["media_error"]
    # a folder on the way swapped for a symlink to a folder outside
    outside = tmp_path / "outside"
    (outside).mkdir()
    shutil.copy(folder / "sounds" / "low.wav", outside / "low.wav")
    shutil.rmtree(folder / "sounds")
    os.symlink(outside, folder / "sounds")
    r = client.get(media_url(folder / "sounds" / "low.wav"))
    assert r.status_code == 403 and "symbolic link" in r.json()["error"]


def test_media_outside_the_roots_is_not_served(make_client, tmp_path: Path):
    client, _, folder = make_client(roots=[tmp_path / "elsewhere"])
    r = client.get(media_url(folder / "photos" / "0-red-circle.png"))
    assert r.status_code == 403 and "roots" in r.json()["error"]
    open_client, _, _ = make_client(roots=[])  # no --root: any symlink-free stored path
    assert open_client.get(media_url(folder / "photos" / "0-red-circle.png")).status_code == 200


def test_media_ranges(client):
    client, _, folder = client
    path = folder / "photos" / "1-blue-square.png"
    data = path.read_bytes()
    url = media_url(path)
    cases = {"bytes=0-9": (206, data[:10]), "bytes=10-": (206, data[10:]), "bytes=-5": (206, data[-5:]),
             f"bytes=0-{10 * len(data)}": (206, data), "bytes=0-1,4-5": (200, data), "pages=1": (200, data)}
    for header, (status, content) in cases.items():
        r = client.get(url, headers={"Range": header})
        assert r.status_code == status and r.content == content, header
        if status == 206:
            assert r.headers["content-range"].endswith(f"/{len(data)}")
            assert int(r.headers["content-length"]) == len(content)
    r = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"


# -- units ----------------------------------------------------------------------------------------

def test_token_buckets_refill_and_stay_bounded():
    from omnibind.server.throttle import TokenBuckets

    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, max_keys=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("a") == 0
    buckets.take("b")
    buckets.take("c")
    assert list(buckets.buckets) == ["b", "c"]  # least recently seen dropped


def test_fair_lock_is_first_come_first_served():
    from omnibind.server.gate import FairLock

    lock, order = FairLock(), []
    lock.acquire()

    def worker(i: int) -> None:
        with lock:
            order.append(i)

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=worker, args=(i,)))
        threads[-1].start()
        time.sleep(0.05)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert lock.acquire(timeout=0.1) and not lock.acquire(timeout=0.05)
    lock.release()


def test_host_names_and_chunks():
    from omnibind.server.gate import chunks
    from omnibind.server.security import host_allowed, host_name

    assert host_name("[::1]:8000") == "::1" and host_name("::1") == "::1"
    assert host_name("Example.ORG:80") == "example.org"
    assert host_allowed("a.b.example.org", {"*.example.org"}) and not host_allowed("example.org", {"*.example.org"})
    assert not host_allowed("", {"localhost"}) and host_allowed("localhost.", {"localhost"})
    parts = chunks(["x" * 3000, "y" * 3000, "z"] + ["w"] * 40)
    assert [len(p) for p in parts] == [1, 16, 16, 10]  # 3000 + 3000 characters do not share a chunk


def test_drawing_helpers_stay_small():
    png = huge_png(8000)
    assert len(png) < 250_000 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert draw_image("circle", 8).size == (8, 8)


def test_media_of_a_name_that_is_not_utf8(client):
    client, coll, folder = client
    name = os.fsdecode(b"caf\xe9-note.txt")
    (folder / "notes" / name).write_text("Notes about the cafe on the corner")
    assert ingest(coll, folder).added == 1
    hits = client.post("/v1/search", json={"text": "the cafe on the corner", "k": 1}).json()["results"]
    with open(folder / "notes" / name, "a") as fh:
        fh.write(" (EDITED)")  # served from the file itself, not from the stored text
    r = client.get(hits[0]["links"]["media"])
    assert "(EDITED)" in r.text
    assert hits[0]["id"].startswith("fsbytes:") and r.status_code == 200 and "cafe on the corner" in r.text, r.text


def test_decoder_refusals_name_the_server_limit():
    from omnibind.errors import InputError
    from omnibind.inputs import Limits
    from omnibind.server.budget import Budget

    budget = Budget(ServerSettings(max_media_seconds=120, max_request_seconds=300), Limits())
    limits = budget.limits()
    cases = {"audio lasts 3500s, over the limit of 120s": ("max_media_seconds", 413),
             "audio decodes to more than the limit of 120s": ("max_media_seconds", 413),
             "video lasts 900s, over the limit of 120s": ("max_media_seconds", 413),
             "image is 8000x8000 = 64000000 pixels, over the limit of 16777216": ("max_image_pixels", 413),
             "sample rate of 1 Hz is below the minimum of 4000 Hz": (None, 422),
             "video has 400000 frames, over the limit of 300000": (None, 422)}
    for reason, (name, status) in cases.items():
        out = budget.refused(InputError("x.bin", reason), limits)
        assert (getattr(out, "status", 422), getattr(out, "extra", {}).get("limit")) == (status, name), reason
    budget.seconds = 250.0  # 50 s left in the request: its budget is the tighter limit now
    out = budget.refused(InputError("y.wav", "audio lasts 100s, over the limit of 50s"), budget.limits())
    assert out.extra["limit"] == "max_request_seconds" and out.status == 413

"""The search page (issue 16, item 5): every reported problem has a test that failed before.

* AVI / MPEG-4 Part 2 videos did not play: `/v1/items/{id}/playback` says what plays, `/preview`
  transcodes to a small cached WebM (bounded, atomic, once under concurrency), `/poster` gives a frame;
  in Chromium the viewer plays the preview, and says "cannot play here — download" when it cannot;
* clicking a result did nothing: a viewer with the full image / player, the path and a download link;
* tall images were cropped: the card shows the whole picture (pixels of its top and bottom bands);
* server down / empty collection: clear states instead of "Failed to fetch" and "No results.";
* 390 px: nothing runs off the screen; keyboard navigation; `strength` and `note` from the search.

Browser tests run Debian's Chromium through Playwright at 1280 and 390 px. Screenshots go to
$OMNIBIND_SCREENSHOTS (e.g. docs/results) when it is set, else to the test's temp folder.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from conftest import draw_image, write_wav
from live_server import Live
from omnibind.collection import Collection
from omnibind.ingest import ingest
from omnibind.server import ServerSettings, create_app

TOKEN = "page-token-789"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = [1280, 390]


def write_clip(path: Path, codec: str, fmt: str, size: tuple[int, int] = (640, 360), seconds: float = 2.0,
               fps: int = 10, sound: bool = False) -> Path:
    """A moving-bar video made with PyAV (optionally with a PCM tone): the formats browsers refuse."""
    import av

    w, h = size
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        a = out.add_stream("pcm_s16le", rate=16000) if sound else None
        if a is not None:
            a.layout = "mono"
        for i in range(int(seconds * fps)):
            frame = np.full((h, w, 3), (30, 60, 90), np.uint8)
            x = int(i * (w - 40) / max(1, seconds * fps - 1))
            frame[h // 3: 2 * h // 3, x: x + 40] = (250, 200, 40)
            out.mux(v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(v.encode())
        if a is not None:
            t = np.arange(int(16000 * seconds)) / 16000
            pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            for k in range(0, pcm.size, 1600):
                f = av.AudioFrame.from_ndarray(pcm[None, k:k + 1600], format="s16", layout="mono")
                f.sample_rate, f.pts = 16000, k
                out.mux(a.encode(f))
            out.mux(a.encode())
    return path


def tall_image() -> Image.Image:
    """40 x 400: a red band on top, a blue band at the bottom (a cropped card shows neither)."""
    image = Image.new("RGB", (40, 400), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 39, 60), fill=(220, 20, 20))
    draw.rectangle((0, 340, 39, 399), fill=(20, 20, 220))
    return image


def make_media(root: Path) -> Path:
    root.mkdir(parents=True)
    tall_image().save(root / "tall.png")
    draw_image("circle", 96, "green").save(root / "green-circle.png")
    draw_image("square", 120, "orange").save(root / "orange-square.png")
    write_clip(root / "clip-mpeg4.avi", "mpeg4", "avi", sound=True)
    write_clip(root / "clip-mjpeg.avi", "mjpeg", "avi", size=(320, 240))
    write_clip(root / "clip-h264.mp4", "libx264", "mp4", size=(320, 240))
    write_clip(root / "broken.avi", "mpeg4", "avi", size=(160, 120))
    write_wav(root / "tone.wav", 1.0, 440)
    (root / "note.txt").write_text("A note about heavy rain on a tin roof, written on a stormy evening.\n")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, space) -> dict[str, Any]:
    """One ingested collection (then broken.avi is overwritten with junk) and its app."""
    tmp = tmp_path_factory.mktemp("page")
    folder = make_media(tmp / "media")
    coll = Collection.open("page", space=space, home=tmp / "home")
    assert not ingest(coll, folder).failed
    (folder / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI junk" * 500)
    settings = ServerSettings(collection="page", roots=[folder], home=tmp / "home", rate_per_s=0)
    return {"tmp": tmp, "folder": folder, "coll": coll, "app": create_app(settings, TOKEN, coll)}


@pytest.fixture
def client(world, tmp_path: Path, monkeypatch) -> Iterator[TestClient]:
    monkeypatch.setenv("OMNIBIND_CACHE", str(tmp_path / "cache"))
    with TestClient(world["app"], raise_server_exceptions=False, base_url="http://localhost") as c:
        yield c


def item_url(path: Path | str, what: str = "") -> str:
    return "/v1/items/" + quote(str(path), safe="") + (f"/{what}" if what else "")


def preview_module() -> Any:
    """The preview router (imported here, so that each test fails on its own where it is missing)."""
    from omnibind.server.routers import preview

    return preview


def count_transcodes(monkeypatch) -> list[float]:
    preview = preview_module()
    calls: list[float] = []
    real = preview.transcode

    def counted(fd: int, target: Path, start: float, encoder: Any) -> None:
        calls.append(start)
        real(fd, target, start, encoder)

    monkeypatch.setattr(preview, "transcode", counted)
    return calls


# -- the API -------------------------------------------------------------------------------------


def test_playback_says_what_the_browser_can_play(client, world):
    folder = world["folder"]
    avi = client.get(item_url(folder / "clip-mpeg4.avi", "playback")).json()
    assert avi["playable"] is False and avi["container"] == "avi" and avi["video_codec"] == "mpeg4"
    assert avi["src"].endswith("/preview?start=0") and avi["poster"].endswith("/poster?start=0")
    assert avi["download"] == item_url(folder / "clip-mpeg4.avi", "media") and "AVI" in avi["reason"]
    mjpeg = client.get(item_url(folder / "clip-mjpeg.avi", "playback")).json()
    assert mjpeg["playable"] is False and mjpeg["video_codec"] == "mjpeg"
    mp4 = client.get(item_url(folder / "clip-h264.mp4", "playback")).json()
    assert mp4["playable"] is True and mp4["src"] == item_url(folder / "clip-h264.mp4", "media") and mp4["reason"] is None
    assert client.get(item_url(folder / "tone.wav", "playback")).json()["playable"] is True
    image = client.get(item_url(folder / "tall.png", "playback"))
    assert image.status_code == 422 and "only videos and sounds" in image.json()["error"]
    assert client.get(item_url("/nope.avi", "playback")).status_code == 404


def test_preview_is_a_small_webm_made_once_and_cached(client, world, tmp_path: Path, monkeypatch):
    import av

    calls = count_transcodes(monkeypatch)
    url = item_url(world["folder"] / "clip-mpeg4.avi", "preview")
    first = client.get(url)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "video/webm" and "sandbox" in first.headers["content-security-policy"]
    with av.open(io.BytesIO(first.content)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "vp8" and (v.codec_context.width, v.codec_context.height) == (480, 270)
        assert c.streams.audio[0].codec_context.name == "opus"
        assert 1.7 <= c.duration / 1e6 <= 2.3
    sha = world["coll"].get([str(world["folder"] / "clip-mpeg4.avi")], ["id", "sha256"])[0]["sha256"]
    assert [p.name for p in (tmp_path / "cache" / "previews").iterdir()] == [f"{sha}-0.webm"]
    again = client.get(url)
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert again.content == first.content and part.status_code == 206 and part.content == first.content[:100]
    assert calls == [0.0]  # made once


def test_concurrent_requests_transcode_once_and_atomically(client, world, tmp_path: Path, monkeypatch):
    calls = count_transcodes(monkeypatch)
    url = item_url(world["folder"] / "clip-mjpeg.avi", "preview")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.get(url), range(4)))
    assert [a.status_code for a in answers] == [200] * 4 and len({a.content for a in answers}) == 1
    assert calls == [0.0]
    assert not [p for p in (tmp_path / "cache" / "previews").iterdir() if p.name.startswith(".tmp")]


def test_preview_is_bounded_and_starts_where_the_match_is(client, world, monkeypatch):
    import av

    preview = preview_module()
    monkeypatch.setattr(preview, "PREVIEW_SECONDS", 0.8)
    monkeypatch.setattr(preview, "START_STEP", 1.0)
    avi = world["folder"] / "clip-mpeg4.avi"
    info = client.get(item_url(avi, "playback"), params={"start": 1.37}).json()
    assert info["preview_start"] == 1.0 and info["preview_seconds"] == 0.8 and info["src"].endswith("start=1")
    r = client.get(item_url(avi, "preview"), params={"start": 1.37})
    with av.open(io.BytesIO(r.content)) as c:
        frames = [f.time for f in c.decode(c.streams.video[0])]
    assert 6 <= len(frames) <= 9 and frames[0] < 0.05  # 0.8 s of a 10 fps clip, re-timed to start at 0
    huge = client.get(item_url(avi, "playback"), params={"start": 1e9}).json()
    assert huge["preview_start"] == 1.0  # snapped inside the clip


def test_poster_is_a_jpeg_frame(client, world):
    r = client.get(item_url(world["folder"] / "clip-mpeg4.avi", "poster"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (480, 270)


def test_previews_follow_the_media_rules(client, world, tmp_path: Path, monkeypatch):
    folder = world["folder"]
    note = client.get(item_url(folder / "note.txt", "preview"))
    assert note.status_code == 422
    broken = client.get(item_url(folder / "broken.avi", "playback")).json()
    assert broken["playable"] is False and broken["src"] is None and "cannot read" in broken["reason"]
    assert client.get(item_url(folder / "broken.avi", "preview")).status_code == 422
    monkeypatch.setattr(preview_module(), "encoders", lambda: None)
    none = client.get(item_url(folder / "clip-mjpeg.avi", "playback")).json()
    assert none["src"] is None and "cannot transcode" in none["reason"] and none["poster"]
    assert "encoder" in client.get(item_url(folder / "clip-mjpeg.avi", "preview")).json()["error"]
    swapped = folder / "clip-h264.mp4"
    keep = tmp_path / "keep.mp4"
    shutil.move(swapped, keep)
    os.symlink("/etc/hostname", swapped)  # swapped for a symlink after ingest: never read
    try:
        for what in ("playback", "preview", "poster"):
            assert client.get(item_url(swapped, what)).status_code == 403, what
    finally:
        swapped.unlink()
        shutil.move(keep, swapped)


# -- the page in Chromium ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(world) -> Iterator[Any]:
    need_chromium()
    os.environ["OMNIBIND_CACHE"] = str(world["tmp"] / "cache")
    with chromium_on(world["app"]) as b:
        yield b
    os.environ.pop("OMNIBIND_CACHE", None)


def need_chromium() -> None:
    """Skip unless Debian's Chromium and Playwright are installed (scripts/setup.sh installs both)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    pytest.importorskip("playwright.sync_api")


@contextmanager
def chromium_on(app: Any) -> Iterator[Any]:
    """Chromium, with `.url` the address of `app` served live for as long as the block runs."""
    from playwright.sync_api import sync_playwright

    live = Live(app)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            b.url = live.url
            yield b
            b.close()
    finally:
        live.stop()


def open_page(browser: Any, width: int, url: str | None = None) -> tuple[Any, list[str]]:
    """A page at `width` px (height 844 at 390, as a phone; else 900) and the CSP violations it logs."""
    page = browser.new_page(viewport={"width": width, "height": 844 if width < 600 else 900})
    violations: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    page.goto(url or browser.url)
    return page, violations


def search(page: Any, text: str = "a picture") -> None:
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('items')")
    page.fill("#q", text)
    page.keyboard.press("Enter")
    page.wait_for_selector(".card")


def shot(page: Any, name: str, tmp_path: Path, **kw: Any) -> Path:
    folder = Path(os.environ.get("OMNIBIND_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), **kw)
    return path


def fits(page: Any, selector: str) -> bool:
    """The element lies inside the content box of its `main` or `dialog` (padding respected) and the
    viewport, and the page does not scroll sideways."""
    return page.evaluate("""s => { const e = document.querySelector(s), r = e.getBoundingClientRect();
        const box = e.closest('dialog, main') || document.body, b = box.getBoundingClientRect(), st = getComputedStyle(box);
        const left = b.left + parseFloat(st.paddingLeft) + parseFloat(st.borderLeftWidth) - 0.5;
        const right = b.right - parseFloat(st.paddingRight) - parseFloat(st.borderRightWidth) + 0.5;
        return r.left >= left && r.right <= right && r.right <= innerWidth
               && document.documentElement.scrollWidth <= innerWidth; }""", selector)


def colours(png: bytes) -> tuple[int, int]:
    """Reddish and bluish pixels of a screenshot."""
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red = (a[..., 0] > 180) & (a[..., 1] < 80) & (a[..., 2] < 80)
    blue = (a[..., 2] > 180) & (a[..., 0] < 80) & (a[..., 1] < 80)
    return int(red.sum()), int(blue.sum())


@pytest.mark.parametrize("width", WIDTHS)
def test_grid_fits_and_shows_whole_images(browser, width, tmp_path: Path):
    page, violations = open_page(browser, width)
    search(page)
    page.wait_for_function("() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    assert fits(page, "#go") and fits(page, "#q") and fits(page, "#results")  # the Search button stays on screen
    red, blue = colours(page.locator(".card", has_text="tall.png").locator(".media").screenshot())
    assert red > 20 and blue > 20, (red, blue)  # the top and the bottom of the tall image: not cropped
    assert shot(page, f"page-{width}.png", tmp_path, full_page=True).stat().st_size > 20_000
    assert not violations, violations
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_viewer_shows_the_whole_item_its_path_and_a_download(browser, world, width, tmp_path: Path):
    folder = world["folder"]
    page, violations = open_page(browser, width)
    search(page)
    page.locator(".card", has_text="tall.png").locator(".media").click()
    page.wait_for_selector("#viewer[open] img.full")
    page.wait_for_function("() => document.querySelector('#viewer img.full').naturalHeight > 0")
    assert page.get_attribute("#viewer img.full", "src") == item_url(folder / "tall.png", "media")
    assert page.evaluate("() => document.querySelector('#viewer img.full').naturalHeight") == 400  # the file, not the thumbnail
    assert page.text_content("#viewer-path") == str(folder / "tall.png")
    assert page.get_attribute("#viewer-download", "href") == item_url(folder / "tall.png", "media")
    assert page.get_attribute("#viewer-download", "download") == "tall.png"
    box = page.locator("#viewer img.full").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"]  # fits, whole
    assert fits(page, "#viewer-download") and fits(page, "#viewer-close")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    page.locator(".card", has_text="clip-mpeg4.avi").locator(".media").click()  # the AVI: a converted preview plays
    page.wait_for_function("""() => { const v = document.querySelector('#viewer video.full');
        return v && v.readyState >= 2 && v.videoWidth > 0; }""", timeout=30_000)
    assert "/preview?start=0" in page.get_attribute("#viewer video.full", "src")
    assert "converted preview" in page.text_content("#viewer-message")
    played = page.evaluate("""() => new Promise(done => { const v = document.querySelector('#viewer video.full');
        v.muted = true; v.ontimeupdate = () => { if (v.currentTime > 0.5) { v.pause(); done(v.currentTime); } };
        v.play(); setTimeout(() => done(-1), 15000); })""")
    assert played > 0.5 and page.evaluate("() => document.querySelector('#viewer video.full').error") is None
    shot(page, f"page-viewer-{width}.png", tmp_path)
    assert not violations, violations
    page.close()


def test_a_video_that_cannot_play_says_so_with_a_download(browser, world, tmp_path: Path):
    page, _ = open_page(browser, 1280)
    search(page)
    page.locator(".card", has_text="broken.avi").locator(".media").click()
    page.wait_for_function("() => document.querySelector('#viewer-message').textContent.includes('Cannot play here')")
    link = page.locator("#viewer-message a")
    assert link.text_content() == "download" and link.get_attribute("href") == item_url(world["folder"] / "broken.avi", "media")
    assert page.locator("#viewer video").count() == 0
    page.close()


def test_keyboard_moves_opens_and_closes(browser):
    page, _ = open_page(browser, 1280)
    search(page)
    page.focus(".card[data-index='0'] .open")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.closest('.card').dataset.index") == "1"
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer[open]")
    assert page.text_content("#viewer-title").startswith("2. ")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#viewer-title').textContent.startsWith('3. ')")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    # back where it was: the dialog's "close" event (which moves the focus) fires after it hides
    page.wait_for_function("() => document.activeElement.closest('.card')?.dataset.index === '2'", timeout=5000)
    assert page.evaluate("() => document.activeElement.closest('.card').dataset.index") == "2"
    page.keyboard.press("End")
    assert page.evaluate("() => document.activeElement.closest('.card').dataset.index") == str(
        page.locator(".card").count() - 1)
    page.close()


def test_server_down_is_said_plainly(browser, world):
    live = Live(world["app"])
    page, _ = open_page(browser, 390, live.url)
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('items')")
    live.stop()
    page.fill("#q", "rain")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('unreachable')")
    assert "page" not in page.text_content("#status")  # no longer claims the collection
    line = page.text_content("#query-line")
    assert "Cannot reach the omnibind server" in line and "omnibind serve" in line and "Failed to fetch" not in line
    assert fits(page, "#query-line")
    page.close()


def test_empty_collection_says_how_to_fill_it(browser, world, space):
    coll = Collection.open("empty", space=space, home=world["tmp"] / "home")
    app = create_app(ServerSettings(collection="empty", home=world["tmp"] / "home"), TOKEN, coll)
    live = Live(app)
    try:
        page, _ = open_page(browser, 390, live.url)
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('empty')")
        assert "omnibind ingest FOLDER -c empty" in page.text_content("#results")
        page.fill("#q", "rain")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#query-line').textContent.includes('0 results')")
        assert "omnibind ingest FOLDER -c empty" in page.text_content("#results")
        assert fits(page, "#results")
        page.close()
    finally:
        live.stop()


def test_strength_is_the_bar_and_the_note_is_shown(browser, world):
    import json

    page, _ = open_page(browser, 1280)
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('items')")
    base = {"source": str(world["folder"] / "note.txt"), "modality": "text", "score_kind": "z", "cosine": 0.3,
            "text": "a note", "segment": None, "links": {"media": item_url(world["folder"] / "note.txt", "media")}}
    hits = [{**base, "id": "a", "score": 3.0, "strength": 0.9}, {**base, "id": "b", "score": 1.0, "strength": 0.5},
            {**base, "id": "c", "score": 0.5, "strength": 0.1}, {**base, "id": "d", "score": 0.4}]
    body = {"collection": "page", "query": "x", "results": hits, "note": "no confident match"}
    page.route("**/v1/search", lambda route: route.fulfill(status=200, content_type="application/json",
                                                           body=json.dumps(body)))
    page.fill("#q", "x")
    page.keyboard.press("Enter")
    page.wait_for_selector(".card")
    widths = page.eval_on_selector_all(".card .bar span", "s => s.map(e => e.style.width)")
    assert widths == ["90%", "50%", "10%", "13%"]  # strength; without it, today's share of the best score
    words = page.eval_on_selector_all(".card .score", "s => s.map(e => e.textContent)")
    assert words == ["strong match", "fair match", "weak match", "z 0.40"]
    assert page.text_content("#note") == "no confident match" and page.is_visible("#note")
    page.close()

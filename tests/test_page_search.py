"""The search page's issue-19 controls in Chromium: match and filters (tag, path glob, dates), "more
like this" on a card and in the viewer, and the collection picker of a server of two collections."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from conftest import draw_image
from omnibind.collection import Collection
from omnibind.ingest import ingest
from omnibind.server import ServerSettings, create_app
from test_page import chromium_on, fits, need_chromium, open_page

NOTES = {"harbour.txt": "boats moored in a quiet harbour at dawn", "oven.txt": "bread baking in a hot oven",
         "match.txt": "the final score of the football match", "garden.txt": "tulips flowering in a spring garden"}


@pytest.fixture(scope="module")
def two(tmp_path_factory, space) -> Iterator[Any]:
    need_chromium()
    root = tmp_path_factory.mktemp("page19")
    notes, pics = root / "notes", root / "pics"
    notes.mkdir()
    pics.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    (notes / "harbour.txt.json").write_text(json.dumps({"tags": ["sea"]}))
    draw_image("circle", 96, "red").save(pics / "red_circle.png")
    draw_image("square", 96, "blue").save(pics / "blue_square.jpg")
    home = root / "home"
    first = Collection.open("notes", space=space, home=home)
    second = Collection.open("pics", space=space, home=home)
    assert not ingest(first, notes).failed and not ingest(second, pics).failed
    settings = ServerSettings(collection="notes", others=["pics"], home=home)
    with chromium_on(create_app(settings, "tok-page19-123", first, others=[second])) as browser:
        yield browser


def names(page: Any) -> list[str]:
    return page.eval_on_selector_all(".card .open", "els => els.map(e => e.textContent.replace(/^\\d+\\. /, ''))")


def run(page: Any, text: str) -> None:
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('items')")
    page.fill("#q", text)
    page.keyboard.press("Enter")
    page.wait_for_function("() => /results for/.test(document.querySelector('#query-line').textContent)")


def cleared(page: Any) -> str:
    """Blank the query line, so the next search's "N results for" is told from the last one's."""
    page.evaluate("document.querySelector('#query-line').textContent = ''")
    return ""


def refreshed(page: Any, before: str) -> None:
    page.wait_for_function("b => document.querySelector('#query-line').textContent !== b"
                           " && /results for/.test(document.querySelector('#query-line').textContent)", arg=before)


@pytest.mark.parametrize("width", [1280, 390])
def test_filters_narrow_the_results_and_fit(two, width: int):
    page, violations = open_page(two, width)
    run(page, "the sea")
    assert len(names(page)) == len(NOTES)
    page.click("#filters summary")
    assert fits(page, "#f-glob") and fits(page, "#mode")
    line = cleared(page)
    page.fill("#f-tag", "sea")
    page.press("#f-tag", "Enter")
    refreshed(page, line)
    assert names(page) == ["harbour.txt"]
    line = cleared(page)
    page.fill("#f-tag", "")
    page.fill("#f-glob", "o*.txt")
    page.press("#f-glob", "Enter")
    refreshed(page, line)
    assert names(page) == ["oven.txt"]
    line = cleared(page)
    page.fill("#f-after", "2999-01-01")  # a date input: its change event searches again
    page.dispatch_event("#f-after", "change")
    refreshed(page, line)
    assert names(page) == [] and "Filters are on" in page.inner_text("#results")
    assert not violations
    page.close()


def test_more_like_this_leaves_the_item_out(two):
    page, _ = open_page(two, 1280)
    run(page, "bread in an oven")
    first = names(page)[0]
    line = cleared(page)
    page.click(".card .like >> nth=0")
    refreshed(page, line)
    assert f"items like “{first}”" in page.inner_text("#query-line")
    assert first not in names(page) and len(names(page)) == len(NOTES) - 1
    line = cleared(page)
    page.click(".card .open >> nth=0")
    page.click("#viewer-like")
    refreshed(page, line)
    assert not page.evaluate("document.querySelector('#viewer').open")
    page.close()


def test_the_picker_switches_collections(two):
    page, _ = open_page(two, 390)
    page.wait_for_selector("#collection-pick:not([hidden])")
    assert page.eval_on_selector_all("#collection option", "os => os.map(o => o.value)") == ["notes", "pics"]
    page.select_option("#collection", "pics")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('“pics” · 2 items')")
    run(page, "a red circle")
    assert sorted(names(page)) == ["blue_square.jpg", "red_circle.png"]
    assert fits(page, "#collection")
    page.close()

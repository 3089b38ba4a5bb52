"""The page at ``/`` in a real browser: Chromium from the system's packages, driven by Playwright.

Playwright cannot download its own browser build here, so the test uses the installed Chromium
(``RCML_ST_CHROMIUM``, else ``/usr/bin/chromium``, else ``chromium`` on the PATH; ``.ci/run``
installs it with apt-get). Without one the test skips, and with ``CI`` set it fails. It saves a
screenshot of the page as a test artifact in ``RCML_ST_TEST_ARTIFACTS`` (default:
``test-artifacts/`` at the repository root).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from rcml_st.index._testing import unavailable
from rcml_st.serve import SearchService, create_app

pytestmark = [pytest.mark.qdrant, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def screenshot_example():
    """``examples/serve_screenshot.py``: its Chromium flags and images-loaded check are the test's too."""
    spec = importlib.util.spec_from_file_location(
        "serve_screenshot", ROOT / "examples" / "serve_screenshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = screenshot_example()
IMAGES_LOADED = EXAMPLE.IMAGES_LOADED


def chromium() -> str:
    for candidate in (os.environ.get("RCML_ST_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    unavailable("no Chromium installed (apt-get install chromium, or set RCML_ST_CHROMIUM)")
    raise AssertionError  # unreachable


def artifacts() -> Path:
    folder = Path(os.environ.get("RCML_ST_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=EXAMPLE.ARGS)
        yield browser
        browser.close()


def column_ids(page) -> dict[str, list[str]]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.relation')].map(c => "
        "[c.dataset.relation, [...c.querySelectorAll('.card')].map(k => k.dataset.id)]))"
    )


def test_page_shows_every_relations_neighbours_with_images_and_follows_clicks(browser, indexed, live_server):
    service = SearchService(indexed.model, indexed.connect())
    errors: list[str] = []
    try:
        with live_server(create_app(service)) as server:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(server.url)
                    or route.request.url.startswith(("data:", "blob:"))
                    else route.abort()
                ),
            )
            query = indexed.items[4]

            # By id, from the address (what `rcml-st demo` tells the user to open).
            page.goto(f"{server.url}/?id={query.id}&limit=5")
            page.wait_for_selector(f"#query .card[data-id='{query.id}']")
            page.wait_for_function(IMAGES_LOADED)
            shown = column_ids(page)
            expected = service.search(None, item_id=query.id, limit=5)
            assert shown == {relation: [hit.item_id for hit in hits] for relation, hits in expected.items()}
            assert len(shown) == 3 and all(len(ids) == 5 for ids in shown.values())
            assert page.locator("#query .card img").evaluate("img => img.complete && img.naturalWidth > 0")
            page.screenshot(path=str(artifacts() / "serve-page-id-query.png"))

            # A click on a neighbour makes it the query.
            neighbour = shown[indexed.relations[1]][0]
            page.locator(
                f".relation[data-relation='{indexed.relations[1]}'] .card[data-id='{neighbour}']"
            ).click()
            page.wait_for_selector(f"#query .card[data-id='{neighbour}']")
            page.wait_for_function(IMAGES_LOADED)
            assert f"id={neighbour}" in page.url

            # By text, typed into the page, under the relations left ticked.
            page.click(".tabs button[data-mode='text']")
            page.uncheck(f"#relations input[value='{indexed.relations[0]}']")
            page.fill("#text-input", "navy bath toy")
            page.press("#text-input", "Enter")
            page.wait_for_selector("#query strong")
            page.wait_for_function(IMAGES_LOADED)
            shown = column_ids(page)
            expected = service.search(indexed.relations[1:], text="navy bath toy", limit=5)
            assert shown == {relation: [hit.item_id for hit in hits] for relation, hits in expected.items()}

            # By a photo, chosen in the file picker.
            page.click(".tabs button[data-mode='image']")
            page.set_input_files("#image-input", query.image)
            page.wait_for_selector("#query img.preview")
            page.wait_for_function(IMAGES_LOADED)
            assert all(ids for ids in column_ids(page).values())
            page.screenshot(path=str(artifacts() / "serve-page-photo-query.png"))

            # A bad id gives the server's one-line message on the page, not a blank page.
            page.goto(f"{server.url}/?id=NOPE")
            page.wait_for_selector("#status.error")
            assert "NOPE" in page.inner_text("#status")
    finally:
        service.close()
    assert errors == []


def test_page_asks_for_the_api_key_and_then_works(browser, indexed, live_server):
    service = SearchService(indexed.model, indexed.connect())
    try:
        with live_server(create_app(service, api_key="k3y")) as server:
            page = browser.new_page()
            page.goto(f"{server.url}/?id={indexed.items[0].id}")
            page.wait_for_selector("#key-label:not([hidden])")
            page.fill("#api-key", "k3y")
            page.press("#api-key", "Enter")
            page.dispatch_event("#api-key", "change")
            page.wait_for_selector(f"#query .card[data-id='{indexed.items[0].id}']")
            page.wait_for_function(IMAGES_LOADED)  # images fetched with the key header
    finally:
        service.close()

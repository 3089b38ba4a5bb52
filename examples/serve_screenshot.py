"""Screenshot of the page of ``rcml-st serve`` (the one in ``docs/serve-page.png``).

Run after ``rcml-st demo`` (in one terminal) and, in another, ``rcml-st serve --model rcml-demo/model
--qdrant-path rcml-demo/qdrant``:

    .venv/bin/python examples/serve_screenshot.py "http://127.0.0.1:8000/?id=S0001" docs/serve-page.png

Uses the installed Chromium (``/usr/bin/chromium``, e.g. Debian's package) through Playwright.
"""

from __future__ import annotations

import sys

# Headless Chromium without the services that would reach the network (also the flags of the
# page test, tests/serve/test_page.py, which loads them from here).
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES_LOADED = (
    "() => { const imgs = [...document.querySelectorAll('.relation .card img')];"
    " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"
)


def main(url: str, out: str, executable: str = "/usr/bin/chromium") -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(url)
        page.wait_for_selector("#query .card")
        page.wait_for_function(IMAGES_LOADED)
        page.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:])

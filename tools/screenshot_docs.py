"""Screenshot a page of the built documentation site in Debian's chromium (Playwright), for the
README: `mkdocs build --strict && python tools/screenshot_docs.py predict docs/site_predict.png`.

The site is served over HTTP from `site/` on a free local port (its pages are folders with an
`index.html`, which a `file://` URL does not open).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}


def screenshot(site: Path, page: str, output: Path) -> Path:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            tab = browser.new_page(viewport=VIEWPORT)
            tab.goto(f"http://127.0.0.1:{server.server_port}/{page.strip('/')}/")
            tab.wait_for_load_state("networkidle")
            tab.screenshot(path=str(output))
            browser.close()
        server.shutdown()
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", help="the page's path in the site, e.g. predict")
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("--site", type=Path, default=Path("site"), help="the built site")
    args = parser.parse_args(argv)
    print(screenshot(args.site, args.page, args.output))


if __name__ == "__main__":
    main()

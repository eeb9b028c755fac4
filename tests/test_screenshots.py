"""Browser check of the built book's layout: a screenshot of every page, on a desktop and a phone.

Serves ``_build/html`` (``make book`` first; another folder through the ``BOOK_HTML``
environment variable) on 127.0.0.1 and opens every page of ``_toc.yml`` in Debian's chromium
through Playwright, at a desktop width (1280 px) and a phone width (390 px). Each view is saved
as a whole-page screenshot in ``_build/screenshots/pages/`` for a person to look through. At the
phone width the page itself must not scroll sideways: ``document.documentElement.scrollWidth``
stays within the window. Wide content is fine inside a container that scrolls on its own (code
cells, tables and outputs do), because such a container does not widen the page.

Requests to any host but the local server are aborted, so the result does not depend on the
network (the fonts and scripts the theme fetches from CDNs fall back to local ones). Skipped,
with the reason, when playwright, chromium or the built book is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from book_site import CHROMIUM, browser, loopback_only, serve, toc_files  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SCREENSHOTS = ROOT / "_build" / "screenshots" / "pages"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
MAX_SHOT_HEIGHT = 16000  # chromium cannot paint a taller window in one piece

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright (the test "
    "uses /usr/bin/chromium, so skip 'playwright install')")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium")


PAGES = [str(Path(page).with_suffix("")) for page in toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))]

# Elements that stick out of the window and are not inside a container that scrolls or clips
# horizontally: what makes the whole page scroll sideways.
_OVERFLOW_JS = """() => {
  const limit = window.innerWidth + 1;
  const clips = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const style = getComputedStyle(p);
      if (['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX)) return true;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim()
      ? '.' + el.className.trim().split(/\\s+/).slice(0, 3).join('.') : '');
  const pinned = (el) => {  // fixed elements (off-canvas sidebars) never widen the page
    for (let p = el; p; p = p.parentElement) {
      if (getComputedStyle(p).position === 'fixed') return true;
    }
    return false;
  };
  const culprits = [];
  for (const el of document.body.querySelectorAll('*')) {
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.right <= limit || clips(el) || pinned(el)) continue;
    culprits.push(`${name(el)} (right edge ${Math.round(rect.right)} px)`);
    if (culprits.length >= 8) break;
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          culprits: culprits};
}"""


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """Serve the built book on 127.0.0.1; skip when it was not built, or not since the toc changed."""
    if not (HTML / "index.html").exists():
        pytest.skip(f"no built book at {HTML}: run `make book` first (or set BOOK_HTML)")
    missing = [page for page in PAGES if not (HTML / f"{page}.html").exists()]
    if missing:
        pytest.skip(f"the build in {HTML} predates _toc.yml (no HTML for {missing}): run `make book`")
    with serve(HTML) as url:
        yield url


def _local_only(site: str):
    """A Playwright route handler that lets requests to the local server through, aborts the rest."""
    def handle(route) -> None:
        if route.request.url.startswith(site) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()
    return handle


def _screenshot_whole_page(page, stem: Path) -> None:
    """Save the whole page as ``<stem>.png`` (``<stem>-part<k>.png`` beyond `MAX_SHOT_HEIGHT`).

    The window is made as tall as the page and photographed as it is. Playwright's own
    ``full_page=True`` renders this theme wrongly at desktop width: the left sidebar vanishes
    and the article slides under the left edge.
    """
    width = page.viewport_size["width"]
    height = page.evaluate("() => document.documentElement.scrollHeight")
    tile = max(1, min(height, MAX_SHOT_HEIGHT))
    page.set_viewport_size({"width": width, "height": tile})
    stem.parent.mkdir(parents=True, exist_ok=True)
    for old in stem.parent.glob(f"{stem.name}*.png"):
        old.unlink()
    tops = range(0, height, tile)
    for part, top in enumerate(tops, start=1):
        page.evaluate(f"() => window.scrollTo(0, {top})")
        page.wait_for_timeout(100)
        suffix = "" if len(tops) == 1 else f"-part{part}"
        page.screenshot(path=str(stem.with_name(f"{stem.name}{suffix}.png")))


@pytest.mark.parametrize("view", sorted(WIDTHS))
@pytest.mark.parametrize("page_path", PAGES)
def test_page_screenshot_and_no_sideways_scroll(site, browser, loopback_only, page_path, view):
    """Check that a page renders at a desktop and a phone width, and never scrolls sideways on a phone."""
    width, height = WIDTHS[view]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.route("**/*", _local_only(site))
    page.goto(f"{site}/{page_path}.html", wait_until="load")
    page.wait_for_selector("main")
    layout = page.evaluate(_OVERFLOW_JS)
    _screenshot_whole_page(page, SCREENSHOTS / f"{page_path.replace('/', '__')}-{view}-{width}")
    page.close()
    if view == "phone":
        assert layout["scrollWidth"] <= layout["innerWidth"] + 1, (
            f"{page_path} scrolls sideways at {width} px: the page is {layout['scrollWidth']} px "
            f"wide. Elements sticking out: {layout['culprits']}")


def test_every_page_of_the_book_is_photographed():
    """Check that the pages photographed are those of _toc.yml, each with its source, and that no
    page in book/ or notebooks/ is left out of the toc (and so out of the book and the screenshots)."""
    assert PAGES == [str(Path(page).with_suffix("")) for page in
                     toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))]
    assert len(PAGES) == len(set(PAGES))
    for page in PAGES:
        assert len(list(ROOT.glob(page + ".*"))) == 1, f"{page} in _toc.yml has no single source"
    sources = sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "book").glob("*.ipynb")) \
        + sorted((ROOT / "notebooks").glob("*.ipynb"))
    outside = [str(path.relative_to(ROOT).with_suffix("")) for path in sources
               if str(path.relative_to(ROOT).with_suffix("")) not in PAGES]
    assert outside == [], f"pages missing from _toc.yml, so from the screenshots: {outside}"

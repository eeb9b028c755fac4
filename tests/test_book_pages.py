"""Checks of the book as a whole: its table of contents, its built HTML, and the timing tool.

- Every file that ``_toc.yml`` names exists (no build needed).
- In the built HTML (``_build/html``, from ``make book``; another folder through the
  ``BOOK_HTML`` environment variable), every relative ``href``/``src`` of every page in the table
  of contents points at a file that exists, and every ``#anchor`` at an id in the target page.
- Every image on those pages has alt text a screen reader can say: not empty, and not just the
  image's file name, which is what Sphinx writes when a notebook figure has no alt text. A
  notebook figure gets its alt text (and, if wanted, a caption) from its code cell's metadata:
  ``{"mystnb": {"image": {"alt": "..."}, "figure": {"caption": "...", "name": "fig-..."}}}``.
- ``tools/notebook_times.py`` formats and measures as documented.

The HTML checks are skipped, with the reason, when the book has not been built (CI runs the unit
tests before ``make book-strict``; run ``pytest tests/test_book_pages.py`` after a build).
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
import yaml
from book_site import toc_files

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SOURCE_SUFFIXES = (".md", ".ipynb")
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, mailto:, data:, //host
IMAGE_FILE = re.compile(r"\.(?:png|jpe?g|gif|svg|webp)$", re.IGNORECASE)


TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = toc_files(TOC)


def _source_of(page: str) -> Path | None:
    """The source file of a toc entry (``book/intro`` -> ``book/intro.md``), or None."""
    path = ROOT / page
    if path.suffix in SOURCE_SUFFIXES and path.exists():
        return path
    return next((path.with_name(path.name + suffix) for suffix in SOURCE_SUFFIXES
                 if path.with_name(path.name + suffix).exists()), None)


def _html_of(page: str) -> Path:
    return HTML / Path(page).with_suffix(".html")


class _PageParser(html.parser.HTMLParser):
    """Collects the ids of a page, its links (href/src) and its images (src, alt)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attributes.get(key):
                self.ids.add(attributes[key])
        for key in ("href", "src"):
            if attributes.get(key) is not None:
                self.links.append(attributes[key])
        if tag == "img":
            self.images.append((attributes.get("src") or "", attributes.get("alt")))


_PARSED: dict[Path, _PageParser] = {}


def parse(path: Path) -> _PageParser:
    """The parsed HTML page at ``path`` (cached: several tests read the same pages)."""
    if path not in _PARSED:
        parser = _PageParser()
        parser.feed(path.read_text(encoding="utf-8"))
        _PARSED[path] = parser
    return _PARSED[path]


def broken_links(page: Path) -> list[str]:
    """The relative links of a built page whose file, or whose #anchor in that file, is missing."""
    broken = []
    for link in parse(page).links:
        if not link or EXTERNAL.match(link):
            continue
        parts = urlsplit(link)
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if parts.path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link} (no file {target})")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse(target).ids:
            broken.append(f"{link} (no id '{parts.fragment}' in {target.name})")
    return broken


def images_without_alt(page: Path) -> list[str]:
    """The images of a page whose alt text is missing, empty or only a file name."""
    bad = []
    for src, alt in parse(page).images:
        text = (alt or "").strip()
        if not text or text == src or IMAGE_FILE.search(text) or "_images/" in text:
            bad.append(f"{src} (alt={alt!r})")
    return bad


@pytest.fixture(scope="module")
def built() -> Path:
    """The built HTML folder; skip when the book was not built, or not since the toc changed."""
    if not (HTML / "index.html").exists():
        pytest.skip(f"no built book at {HTML}: run `make book` first (or set BOOK_HTML)")
    missing = [page for page in PAGES if not _html_of(page).exists()]
    if missing:
        pytest.skip(f"the build in {HTML} predates _toc.yml (no HTML for {missing}): run `make book`")
    return HTML


# ---- the table of contents ----------------------------------------------------------------

def test_toc_lists_pages():
    """Check that the toc parser finds the root and the chapters (the next test is not vacuous)."""
    assert PAGES[0] == TOC["root"] and len(PAGES) >= 3
    assert toc_files({"root": "a", "parts": [{"chapters": [{"file": "b", "sections": [{"file": "c"}]}]}]}) \
        == ["a", "b", "c"]


@pytest.mark.parametrize("page", PAGES)
def test_toc_page_exists(page):
    """Check that a page named in _toc.yml exists as .md or .ipynb."""
    assert _source_of(page) is not None, f"_toc.yml names {page}, but no {page}.md or {page}.ipynb exists"


def test_toc_has_no_duplicates():
    """Check that no page appears twice in _toc.yml (Sphinx would warn and number it twice)."""
    assert len(PAGES) == len(set(PAGES))


# ---- the built HTML -----------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_internal_links_resolve(built, page):
    """Check that every relative link of a built page reaches an existing file and anchor."""
    broken = broken_links(_html_of(page))
    assert not broken, f"{page}: {len(broken)} broken internal link(s):\n  " + "\n  ".join(broken)


def test_internal_links_resolve_on_generated_pages(built):
    """Check the relative links of the other built HTML files too (index, search, genindex)."""
    toc_html = {_html_of(page).resolve() for page in PAGES}
    others = [path for path in sorted(built.rglob("*.html"))
              if path.resolve() not in toc_html and "_static" not in path.parts]
    broken = [f"{path.relative_to(built)}: {link}" for path in others for link in broken_links(path)]
    assert others and not broken, "broken internal links:\n  " + "\n  ".join(broken)


def test_index_redirect_resolves(built):
    """Check that the site's index.html leads to a page that exists."""
    text = (built / "index.html").read_text()
    match = re.search(r'url=([^"\']+)', text)
    assert match, "index.html has no redirect"
    assert (built / unquote(urlsplit(match.group(1)).path)).is_file()


def figure_cells(notebook: Path) -> dict[str, str]:
    """Map the file name myst-nb gives each PNG output (its sha256) to the cell that made it."""
    cells = {}
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                digest = hashlib.sha256(base64.b64decode("".join(png))).hexdigest()
                last = [line for line in source.splitlines() if line.strip()][-1:] or [""]
                cells[digest] = f"code cell at index {index} ending `{last[0].strip()}`"
    return cells


@pytest.mark.parametrize("page", PAGES)
def test_images_have_alt_text(built, page):
    """Check that every image of a built page has alt text that is more than its file name."""
    bad = images_without_alt(_html_of(page))
    source = _source_of(page)
    if bad and source is not None and source.suffix == ".ipynb":
        cells = figure_cells(source)
        bad = [f"{cells.get(Path(entry.split()[0]).stem, 'an image')}: {entry.split()[0]}" for entry in bad]
    assert not bad, (
        f"{page}: {len(bad)} image(s) without alt text. For a notebook figure, give its code cell "
        'the metadata {"mystnb": {"image": {"alt": "what the figure shows"}}}:\n  ' + "\n  ".join(bad))


def test_link_and_alt_checks_can_fail(tmp_path):
    """Check that a missing file, a missing anchor and a file-name alt text are all reported."""
    (tmp_path / "other.html").write_text('<h1 id="here">x</h1>')
    (tmp_path / "_images").mkdir()
    for name in ("_images/a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"")
    page = tmp_path / "page.html"
    page.write_text('<a href="other.html#here">ok</a> <a href="other.html#gone">x</a> '
                    '<a href="missing.html">x</a> <a href="https://example.org/x">ext</a> '
                    '<a href="#top">x</a> <p id="top"></p> '
                    '<img src="_images/a.png" alt="_images/a.png"> <img src="b.png" alt="">'
                    '<img src="c.png" alt="Accuracy against depth">')
    assert [link.split()[0] for link in broken_links(page)] == ["other.html#gone", "missing.html"]
    assert [image.split()[0] for image in images_without_alt(page)] == ["_images/a.png", "b.png"]


# ---- tools/notebook_times.py --------------------------------------------------------------

def _notebook_times():
    spec = importlib.util.spec_from_file_location("notebook_times", ROOT / "tools" / "notebook_times.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_notebook_times_formats_whole_seconds():
    """Check that times print as whole seconds or minutes, with no decimals for the book pages."""
    times = _notebook_times()
    assert times.format_seconds(0.4) == "0 s"
    assert times.format_seconds(59.6) == "1 min 00 s"
    assert times.format_seconds(125.4) == "2 min 05 s"
    with pytest.raises(ValueError, match=">= 0"):
        times.format_seconds(-1)
    with pytest.raises(TypeError, match="number of seconds"):
        times.format_seconds("12")
    assert times.budget_seconds(Path("notebooks/07_layer_transfer.ipynb")) == 240
    assert times.budget_seconds(Path("notebooks/02_reusable_features.ipynb")) == 240
    assert times.budget_seconds(Path("notebooks/04_feature_extraction_vs_fine_tuning.ipynb")) == 480


def test_notebook_times_table_reads_titles_and_budgets(tmp_path):
    """Check that the table names each chapter by its title and compares the time with its budget."""
    times = _notebook_times()
    path = tmp_path / "07_layer_transfer.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# 7. Layer transfer\n\ntext")]
    nbformat.write(notebook, path)
    assert times.chapter_title(path) == "7. Layer transfer"
    table = times.markdown_table([
        times.Timing(path, "7. Layer transfer", 150.2, 260.0),
        times.Timing(path, "7. Layer transfer", 250.0, 300.0),
        times.Timing(path, "7. Layer transfer", 3.0, 1.0, error="CellExecutionError")], root=tmp_path)
    rows = table.splitlines()
    assert rows[0].startswith("| chapter | notebook | wall time | CPU time | budget |")
    assert rows[2] == "| 7. Layer transfer | `07_layer_transfer.ipynb` | 2 min 30 s | 4 min 20 s | 4 min 00 s, ok |"
    assert rows[3].endswith("| 4 min 00 s, over |")
    assert rows[4].endswith("| failed: CellExecutionError |")
    assert not re.search(r"\d\.\d", table.replace("7. Layer", "")), "a decimal number in the table"


def test_notebook_times_runs_a_notebook_without_changing_it(tmp_path):
    """Check that timing a tiny notebook runs it in a kernel, measures it and leaves the file as it was."""
    times = _notebook_times()
    path = tmp_path / "tiny.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Tiny"), nbformat.v4.new_code_cell("print(6 * 7)")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    before = path.read_bytes()
    timing = times.time_notebook(path, timeout=120)
    assert timing.error == "" and timing.title == "Tiny"
    assert timing.wall_seconds > 0 and timing.cpu_seconds > 0
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="existing .ipynb"):
        times.time_notebook(tmp_path / "missing.ipynb")
    with pytest.raises(ValueError, match="timeout"):
        times.time_notebook(path, timeout=0)


def test_default_notebooks_are_the_chapters_in_order():
    """Check that the default list is every chapter notebook by name, then the knowledge check."""
    paths = _notebook_times().default_notebooks()
    chapters = [path for path in paths if path.parent.name == "notebooks"]
    assert chapters == sorted(chapters) and len(chapters) >= 2
    assert json.loads(paths[0].read_text())["cells"]

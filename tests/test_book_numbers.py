"""Every measured number the book's prose quotes must be one a notebook prints.

The prose pages in ``book/`` are plain MyST markdown, not executed; this test keeps them honest:
each decimal number on a page (``0.691``, ``-0.363``) must appear in the committed text output
of some notebook, which nbval in turn checks against a fresh run. Version numbers ("Python
3.10") are the only exemption.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book").glob("*.md"))
VERSION = re.compile(r"(?:Python|version|torch|timm)\s+\d+\.\d+", re.IGNORECASE)
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")


def _notebook_text() -> str:
    """All text outputs (streams and text/plain results) of every committed notebook."""
    chunks = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                text = output.get("text") or output.get("data", {}).get("text/plain", "")
                chunks.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(chunks)


NOTEBOOK_TEXT = _notebook_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_numbers_come_from_notebook_outputs(page):
    """Check that each decimal number in a book page is printed by some notebook."""
    prose = VERSION.sub("", page.read_text())
    missing = [number for number in DECIMAL.findall(prose) if number.lstrip("-") not in NOTEBOOK_TEXT]
    assert not missing, f"{page.name} quotes {missing}, which no notebook output contains"


def test_the_check_can_fail():
    """Check that a number no notebook prints is reported (the test above is not vacuous)."""
    assert "0.987654" not in NOTEBOOK_TEXT
    assert DECIMAL.findall("accuracy 0.691 and -0.363, Python 3.10") == ["0.691", "-0.363", "3.10"]

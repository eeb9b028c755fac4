"""Every measured number the prose quotes must be one a notebook prints.

The prose pages in ``book/`` are plain MyST markdown, not executed, and the markdown cells of a
notebook are typed, not computed; this test keeps both honest. Each decimal number on a page
(``0.64``, ``-0.38``) must appear, as a whole number, in the committed text output of some
notebook (which nbval in turn checks against a fresh run), and each decimal in a notebook's
markdown must appear in that notebook's own outputs. "Whole" means that ``0.70`` in the prose
does not match ``0.705`` in an output. Version numbers ("Python 3.10") are the only exemption.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))
VERSION = re.compile(r"(?:Python|version|torch|timm|companion)\s+\d+\.\d+(?:\.\d+)?", re.IGNORECASE)
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")


def _outputs(path: Path) -> str:
    """All text outputs (streams and text/plain results) of one committed notebook."""
    chunks = []
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            chunks.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(chunks)


def _markdown(path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
                     if cell["cell_type"] == "markdown")


def printed(number: str, text: str) -> bool:
    """Whether ``number`` (sign ignored) appears in ``text`` as a whole number, not inside a longer one."""
    return re.search(rf"(?<![\d.]){re.escape(number.lstrip('-'))}(?![\d])", text) is not None


ALL_OUTPUTS = "\n".join(_outputs(path) for path in NOTEBOOKS)


def _quoted(text: str) -> list[str]:
    return DECIMAL.findall(VERSION.sub("", text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_numbers_come_from_notebook_outputs(page):
    """Check that each decimal number in a book page is printed, as a whole number, by some notebook."""
    missing = [number for number in _quoted(page.read_text()) if not printed(number, ALL_OUTPUTS)]
    assert not missing, f"{page.name} quotes {missing}, which no notebook output contains"


def _numeric_keys() -> str:
    """The answers and tolerances of the numeric questions: values the reader derives or predicts."""
    from companion import quiz

    return "\n".join(f"{q['answer']} {q['tolerance']}" for q in quiz.questions() if q["type"] == "numeric")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prose_quotes_its_own_outputs(path):
    """Check that each decimal in a notebook's markdown is printed by it (the knowledge check: by any chapter).

    The knowledge-check page gathers every chapter's questions, so its numbers come from all the
    chapters' outputs, and its answer dropdowns state the numeric keys the reader works out.
    """
    outputs = _outputs(path)
    if path.name == "knowledge_check.ipynb":
        outputs = ALL_OUTPUTS + "\n" + _numeric_keys()
    missing = [number for number in _quoted(_markdown(path)) if not printed(number, outputs)]
    assert not missing, f"{path.name} quotes {missing} in its markdown, which its outputs do not print"


def test_the_check_can_fail():
    """Check that a number no notebook prints is reported, and that a prefix of a longer one is too."""
    assert not printed("0.987654", ALL_OUTPUTS)
    assert not printed("0.70", "accuracy 0.705") and printed("0.70", "accuracy 0.70 +- 0.03")
    assert printed("-0.36", "a change of -0.36") and not printed("1.5", "11.5")
    assert _quoted("accuracy 0.691 and -0.363, Python 3.10") == ["0.691", "-0.363"]


INTERVAL = re.compile(r"[-+]?\d+\.\d+ \[[-+]?\d+\.\d+, [-+]?\d+\.\d+\]")  # a difference and its interval


def _intervals(text: str) -> list[str]:
    return INTERVAL.findall(text)


def _unsigned(interval: str) -> str:
    """``-0.12 [-0.17, -0.07]`` and ``+0.12 ...``: prose may drop a leading plus sign."""
    return interval.lstrip("+")


@pytest.mark.parametrize("path", PAGES + NOTEBOOKS, ids=lambda p: p.name)
def test_quoted_intervals_are_printed_whole(path):
    """Check that each ``mean [low, high]`` the prose quotes is printed as one piece, not three loose numbers.

    A stale interval whose three numbers happen to appear somewhere else passes the number test
    above; this one does not. A page may quote any notebook, a notebook only itself (the knowledge
    check: any chapter).
    """
    if path.suffix == ".md":
        text, outputs = path.read_text(), ALL_OUTPUTS
    else:
        text = _markdown(path)
        outputs = ALL_OUTPUTS if path.name == "knowledge_check.ipynb" else _outputs(path)
    printed_intervals = {_unsigned(found) for found in _intervals(outputs)}
    missing = [found for found in _intervals(text) if _unsigned(found) not in printed_intervals]
    assert not missing, f"{path.name} quotes {missing}, which no output prints as one interval"


def test_the_interval_check_can_fail():
    """Check that three numbers printed apart do not make an interval, and that a printed one is found."""
    outputs = "difference -0.12 [-0.17, -0.07]; elsewhere 0.05 and 0.09"
    assert _intervals("lost -0.12 [-0.17, -0.07] here") == ["-0.12 [-0.17, -0.07]"]
    assert _unsigned("+0.05 [+0.00, +0.09]") == "0.05 [+0.00, +0.09]"
    assert {_unsigned(i) for i in _intervals(outputs)} == {"-0.12 [-0.17, -0.07]"}
    assert "0.05 [0.05, 0.09]" not in {_unsigned(i) for i in _intervals(outputs)}

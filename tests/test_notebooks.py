"""Static checks of the chapter notebooks: Colab badge, Colab install cell, clean committed outputs.

nbval (``make test``) re-executes the notebooks; these checks catch what it cannot see.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "book" / "knowledge_check.ipynb"]
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    """Check that the chapter folder is not empty (the other checks would pass vacuously)."""
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_points_at_this_notebook(path):
    """Check that the notebook opens with an Open-in-Colab badge for its own .ipynb in the repository."""
    first_markdown = next(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    slug = REPOSITORY.removeprefix("https://github.com/")
    expected = f"https://colab.research.google.com/github/{slug}/blob/main/{path.relative_to(ROOT).as_posix()}"
    assert expected in first_markdown, f"{path.name}: no badge linking to {expected}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_the_companion_on_colab_only(path):
    """Check that the first code cell installs the package from the repository, and only on Colab."""
    first_code = next(_source(c) for c in _cells(path) if c["cell_type"] == "code")
    assert '"google.colab" in sys.modules' in first_code
    assert f"git+{REPOSITORY}" in first_code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    """Check that every code cell ran, none failed, and nothing needs the book's build folder."""
    for cell in _cells(path):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("execution_count") is not None, f"{path.name}: a code cell was never run"
        assert not [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not re.search(r"\b_build\b", _source(cell)), f"{path.name}: a cell reads the book's build folder"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_seed_everything(path):
    """Check that each chapter seeds once, at the top, so one seed fixes every printed number."""
    calls = sum(_source(c).count("seed_everything(") for c in _cells(path) if c["cell_type"] == "code")
    assert calls == (0 if path.parent.name == "book" else 1)



@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_page(path):
    """Check that no code line is over 88 characters, the width a book page shows without scrolling."""
    long = [(index, line) for index, cell in enumerate(_cells(path)) if cell["cell_type"] == "code"
            for line in _source(cell).splitlines() if len(line) > 88]
    assert not long, f"{path.name}: code lines over 88 characters (cell, line): {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_alt_text(path):
    """Check that each code cell that draws a figure gives it alt text in its metadata (mystnb.image.alt)."""
    missing = [index for index, cell in enumerate(_cells(path)) if cell["cell_type"] == "code"
               and any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
               and not cell.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt", "").strip()]
    assert not missing, f"{path.name}: figure cells without alt text: {missing}"

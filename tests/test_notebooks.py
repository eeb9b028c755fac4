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


def test_gpu_check_compares_printed_numbers():
    """Check that tools/gpu_check.py pairs printed numbers in order and flags a changed count."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "text": ["accuracy 0.691 +- 0.016\n", "delta -0.363\n"]},
        {"output_type": "execute_result", "data": {"text/plain": "0.5"}}]}]}
    assert gpu_check.printed_numbers(notebook) == [0.691, 0.016, -0.363, 0.5]
    assert gpu_check.compare([0.691, 0.5], [0.690, 0.5]) == (2, pytest.approx(0.001), 0.0)
    assert gpu_check.compare([0.691, 582.6], [0.691, 588.426]) == (2, 0.0, pytest.approx(0.01))
    assert gpu_check.compare([0.691], [0.691, 0.2]) == (1, float("inf"), float("inf"))


def test_gpu_check_names_the_failing_cells_exception():
    """Check that a failed notebook is reported with the cell's exception, not nbclient's banner."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    error = RuntimeError("An error occurred while executing the following cell:\n...")
    error.ename, error.evalue = "RuntimeError", "Expected all tensors to be on the same device"
    assert gpu_check.describe_failure(error) == "RuntimeError: Expected all tensors to be on the same device"
    assert gpu_check.describe_failure(ValueError("first\nlast line")) == "ValueError: last line"

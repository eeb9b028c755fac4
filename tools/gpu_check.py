"""Check the CUDA path: companion tests and every notebook on a GPU, in deterministic mode.

Runs the unit tests (``companion.repro.get_device`` picks CUDA when it is there, so the same
tests exercise the GPU path), then executes each notebook into a temporary copy and compares the
numbers it prints with the committed CPU outputs: per notebook, the wall time, how many printed
numbers were compared, and the largest absolute difference. Nothing in the repository is
modified. ``make gpu-check`` calls it.

Usage::

    python tools/gpu_check.py                 # needs CUDA
    python tools/gpu_check.py --allow-cpu     # try the script itself on a CPU-only machine
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")
DETERMINISTIC_PRELUDE = "from companion import repro as _repro\n_repro.deterministic_mode(True)\n"


def printed_numbers(notebook: dict) -> list[float]:
    """The decimal numbers in a notebook's text outputs, in order."""
    numbers = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            numbers += [float(n) for n in NUMBER.findall("".join(text) if isinstance(text, list) else text)]
    return numbers


def compare(committed: list[float], fresh: list[float]) -> tuple[int, float]:
    """How many numbers line up, and their largest absolute difference (inf if the counts differ)."""
    if len(committed) != len(fresh):
        return min(len(committed), len(fresh)), float("inf")
    return len(fresh), max((abs(a - b) for a, b in zip(committed, fresh)), default=0.0)


def run_notebook(path: Path, timeout: int) -> tuple[dict, float]:
    """Execute a copy of the notebook with deterministic algorithms on; return it and its wall time."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(notebook)
    fresh.cells.insert(0, nbformat.v4.new_code_cell(DETERMINISTIC_PRELUDE))
    start = time.perf_counter()
    NotebookClient(fresh, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    fresh.cells.pop(0)
    return json.loads(nbformat.writes(fresh)), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true", help="run even without CUDA (to test this script)")
    parser.add_argument("--skip-tests", action="store_true", help="only the notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb and book/*.ipynb")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check needs a CUDA device; none is visible (torch.cuda.is_available() is False). "
              "Use --allow-cpu to try the script on a CPU.")
        return 2
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"== device: {device}; torch {torch.__version__}; CUBLAS_WORKSPACE_CONFIG="
          f"{os.environ['CUBLAS_WORKSPACE_CONFIG']}")
    status = 0
    if not args.skip_tests:
        start = time.perf_counter()
        status = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests"),
                                  "--deselect", "tests/test_browser.py"], cwd=ROOT)
        print(f"== unit tests: exit {status} in {time.perf_counter() - start:.0f} s")
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))
    print(f"{'notebook':<44}{'seconds':>9}{'numbers':>9}{'largest |difference|':>22}")
    for path in paths:
        committed = printed_numbers(json.loads(path.read_text()))
        try:
            fresh, seconds = run_notebook(path, args.timeout)
        except Exception as error:  # report and go on with the other notebooks
            print(f"{path.name:<44}{'failed':>9}  {type(error).__name__}: {str(error).splitlines()[0][:80]}")
            status = status or 1
            continue
        count, difference = compare(committed, printed_numbers(fresh))
        print(f"{path.name:<44}{seconds:>9.1f}{count:>9}{difference:>22.4g}")
    return status


if __name__ == "__main__":
    sys.exit(main())

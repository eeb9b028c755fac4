"""Check the CUDA path: companion tests and every notebook on a GPU, in deterministic mode.

Runs the unit tests (``companion.repro.get_device`` picks CUDA when it is there, so the same
tests exercise the GPU path) while it executes each notebook into a temporary copy, several at a
time (``--jobs``), and compares the numbers it prints with the committed CPU outputs: per
notebook, the wall time, how many printed numbers were compared, the largest absolute difference
among the metrics (numbers within [-1, 1] on the CPU: accuracies, fractions, correlations), the
largest relative difference among the other numbers (distances, counts, ratios), and how many
operations warned that they have no deterministic CUDA implementation. A notebook that fails
shows the exception of the failing cell. Nothing in the repository is modified. The notebooks
are found afresh on every run (``notebooks/*.ipynb``, then ``book/*.ipynb``), so a new chapter is
checked without editing this file. The whole check should take under 8 minutes (``--budget``);
the last line says whether it did. ``make gpu-check`` calls it.

Deterministic mode: ``CUBLAS_WORKSPACE_CONFIG`` is set before CUDA starts (here, and so in every
kernel this script launches), and a first hidden cell calls ``repro.deterministic_mode(True)``
with ``warn_only=True``: an operation without a deterministic CUDA kernel warns (counted in the
table) instead of stopping the notebook; ``--strict`` makes it raise instead.

On a machine without internet, bring the packages it may lack as wheels: ``make wheels`` where
there is internet, copy the repository with ``wheelhouse/``, then there
``python3 -m venv --system-site-packages .venv`` (to see the machine's CUDA torch) and
``PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheelhouse make gpu-check`` (see tools/wheelhouse.py).

Usage::

    python tools/gpu_check.py                 # needs CUDA
    python tools/gpu_check.py --allow-cpu     # try the script itself on a CPU-only machine
    python tools/gpu_check.py --skip-tests notebooks/02_reusable_features.ipynb
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")
NONDETERMINISTIC = re.compile(r"does not have a deterministic implementation")
DETERMINISTIC_PRELUDE = "from companion import repro as _repro\n_repro.deterministic_mode(True)\n"
WARN_ONLY = "import torch as _torch\n_torch.use_deterministic_algorithms(True, warn_only=True)\n"
NEEDED = ("nbclient", "nbformat", "ipykernel", "jupyterquiz", "pytest", "pytest_socket", "companion")
BUDGET_S = 480


def printed_numbers(notebook: dict) -> list[float]:
    """The decimal numbers in a notebook's text outputs, in order (stderr, i.e. warnings, left out)."""
    numbers = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output.get("name") == "stderr":
                continue
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            numbers += [float(n) for n in NUMBER.findall("".join(text) if isinstance(text, list) else text)]
    return numbers


def nondeterministic_warnings(notebook: dict) -> int:
    """How many warnings of torch's deterministic mode the notebook's outputs hold."""
    return sum(len(NONDETERMINISTIC.findall("".join(output.get("text", ""))))
               for cell in notebook["cells"] for output in cell.get("outputs", [])
               if output.get("name") == "stderr")


def compare(committed: list[float], fresh: list[float]) -> tuple[int, float, float]:
    """``(count, metric, relative)``: how many numbers line up, the largest absolute difference
    among the committed numbers within [-1, 1] (accuracies and the like), and the largest
    relative difference among the others. Both are inf when the counts differ."""
    if len(committed) != len(fresh):
        return min(len(committed), len(fresh)), float("inf"), float("inf")
    pairs = list(zip(committed, fresh))
    metric = max((abs(a - b) for a, b in pairs if abs(a) <= 1), default=0.0)
    relative = max((abs(a - b) / abs(a) for a, b in pairs if abs(a) > 1), default=0.0)
    return len(fresh), metric, relative


def describe_failure(error: Exception) -> str:
    """One line for a notebook that failed: the failing cell's exception when nbclient gives it."""
    name, value = getattr(error, "ename", None), getattr(error, "evalue", None)
    if name:
        return f"{name}: {value}"[:300]
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[-1][:300] if text else ''}"


def find_notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook of the course: the chapters, then the book's generated pages."""
    return sorted((root / "notebooks").glob("*.ipynb")) + sorted((root / "book").glob("*.ipynb"))


def missing_packages(names: tuple[str, ...] | None = None) -> list[str]:
    """The modules among ``names`` (default ``NEEDED``) that this interpreter cannot import."""
    return [name for name in (NEEDED if names is None else names) if importlib.util.find_spec(name) is None]


def run_notebook(path: Path, timeout: int, strict: bool = False) -> tuple[dict, float]:
    """Execute a copy of the notebook with deterministic algorithms on; return it and its wall time."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(notebook)
    fresh.cells.insert(0, nbformat.v4.new_code_cell(DETERMINISTIC_PRELUDE + ("" if strict else WARN_ONLY)))
    start = time.perf_counter()
    NotebookClient(fresh, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    fresh.cells.pop(0)
    return json.loads(nbformat.writes(fresh)), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true", help="run even without CUDA (to test this script)")
    parser.add_argument("--skip-tests", action="store_true", help="only the notebooks")
    parser.add_argument("--strict", action="store_true",
                        help="operations without a deterministic CUDA kernel raise instead of warning")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--jobs", type=int, default=None,
                        help="notebooks executed at once (default: 4 on CUDA, 1 on a CPU); the CPU "
                             "threads of each kernel are divided among them")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds the whole check may take (default {BUDGET_S}); exit 3 beyond it")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb and book/*.ipynb")
    args = parser.parse_args(argv)
    begin = time.perf_counter()

    missing = missing_packages()
    if missing:
        print(f"gpu-check needs {', '.join(missing)}, which this Python cannot import. Offline, bring "
              "them as wheels: run 'make wheels' on a machine with internet, copy wheelhouse/ here, then "
              "pip install --no-index --find-links wheelhouse -e '.[test]' (see tools/wheelhouse.py)")
        return 2
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check needs a CUDA device; none is visible (torch.cuda.is_available() is False). "
              "Use --allow-cpu to try the script on a CPU.")
        return 2
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"== device: {device}; torch {torch.__version__}; CUBLAS_WORKSPACE_CONFIG="
          f"{os.environ['CUBLAS_WORKSPACE_CONFIG']}; deterministic: "
          f"{'strict' if args.strict else 'warn_only'}")
    status = 0
    paths = args.notebooks or find_notebooks()
    jobs = max(1, args.jobs if args.jobs is not None else (4 if torch.cuda.is_available() else 1))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))  # for the kernels
    tests, test_log = None, None
    if not args.skip_tests:  # in the background, its output kept for the end
        test_log = tempfile.TemporaryFile("w+", encoding="utf-8")
        tests = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                  str(ROOT / "tests"), "--deselect", "tests/test_browser.py"],
                                 cwd=ROOT, stdout=test_log, stderr=subprocess.STDOUT)
    print(f"== {len(paths)} notebooks, {jobs} at a time, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"{'notebook':<40}{'seconds':>9}{'numbers':>9}{'max |diff| metric':>19}{'max rel diff other':>20}"
          f"{'warnings':>10}")

    def one(path: Path) -> tuple[str, bool]:
        """The notebook's row of the table, and whether it failed."""
        committed = printed_numbers(json.loads(path.read_text()))
        try:
            fresh, seconds = run_notebook(path, args.timeout, args.strict)
        except Exception as error:  # report and go on with the other notebooks
            return f"{path.name:<40}{'failed':>9}  {describe_failure(error)}", True
        count, metric, relative = compare(committed, printed_numbers(fresh))
        return (f"{path.name:<40}{seconds:>9.1f}{count:>9}{metric:>19.4g}{relative:>20.4g}"
                f"{nondeterministic_warnings(fresh):>10}", False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for line, failed in pool.map(one, paths):  # in the order of the notebooks
            print(line, flush=True)
            status = status or int(failed)
    if tests is not None:
        test_status = tests.wait()
        test_log.seek(0)
        lines = test_log.read().splitlines()
        test_log.close()
        print("\n".join(line for line in lines if line.startswith(("FAILED", "ERROR")) or " passed" in line
                        or " failed" in line))
        print(f"== unit tests: exit {test_status} ({len(lines)} lines of output)")
        status = status or test_status
    total = time.perf_counter() - begin
    verdict = "within" if total <= args.budget else "OVER"
    print(f"== total: {total:.0f} s, {verdict} the budget of {args.budget:.0f} s")
    return status or (3 if total > args.budget else 0)


if __name__ == "__main__":
    sys.exit(main())

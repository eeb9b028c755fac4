"""Time every notebook of the book and print a markdown table of wall and CPU times.

Scope: each notebook is run once, in a fresh kernel, with ``jupyter execute`` (which saves
nothing: the committed notebook is left as it is). The wall time is what a reader waits for; the
CPU time (user + system of the whole run, the kernel included) tells how much of that wait was
the machine being busy with something else. Times are printed in whole seconds, so the table can
be pasted into a book page without tripping ``tests/test_book_numbers.py``. Each time is
compared with its budget (DESIGN.md): 240 s a notebook, and 480 s for chapter 4, which trains
every strategy, whole-network fine-tuning included, until its validation accuracy stops improving.
Run it with an empty cache (``COMPANION_CACHE_DIR`` pointing at a new folder) to measure a cold run.

Usage::

    .venv/bin/python tools/notebook_times.py                      # every chapter, in order
    .venv/bin/python tools/notebook_times.py notebooks/02_reusable_features.ipynb

Exits with status 1 if a notebook fails (its row says so); going over budget is only reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 240
LONGER_BUDGETS = {"04_feature_extraction_vs_fine_tuning": 480}


@dataclass
class Timing:
    """How long one notebook took; ``error`` is empty when it ran to the end."""

    path: Path
    title: str
    wall_seconds: float
    cpu_seconds: float
    error: str = ""


def default_notebooks(root: Path = ROOT) -> list[Path]:
    """The chapters in book order: ``notebooks/*.ipynb`` by name, then the knowledge check."""
    paths = sorted((root / "notebooks").glob("*.ipynb"))
    check = root / "book" / "knowledge_check.ipynb"
    return paths + ([check] if check.exists() else [])


def chapter_title(path: Path) -> str:
    """The first markdown heading of a notebook, e.g. ``"2. Reusable features: ..."``.

    Usage: ``chapter_title(Path("notebooks/02_reusable_features.ipynb"))``. Falls back to the file
    name when the notebook has no heading.
    """
    cells = json.loads(Path(path).read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        match = re.search(r"^#\s+(.+?)\s*$", source, flags=re.MULTILINE)
        if match:
            return match.group(1)
    return Path(path).stem


def budget_seconds(path: Path) -> int:
    """The time budget of a notebook in seconds: 240, and 480 for chapter 4."""
    return LONGER_BUDGETS.get(Path(path).stem, BUDGET_SECONDS)


def format_seconds(seconds: float) -> str:
    """Whole seconds as ``"45 s"`` or ``"2 min 05 s"``; usage: ``format_seconds(125.4) == "2 min 05 s"``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise TypeError(f"format_seconds needs a number of seconds; got {type(seconds).__name__}.")
    if seconds < 0:
        raise ValueError(f"format_seconds needs a number of seconds >= 0; got {seconds}.")
    whole = int(round(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def markdown_table(timings: list[Timing], root: Path = ROOT) -> str:
    """A markdown table with one row per notebook: chapter, file, wall and CPU time, budget.

    Usage: ``print(markdown_table([time_notebook(path) for path in default_notebooks()]))``.
    """
    lines = ["| chapter | notebook | wall time | CPU time | budget |", "|---|---|---|---|---|"]
    for timing in timings:
        path = Path(timing.path)
        try:
            shown = path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            shown = path.name
        budget = budget_seconds(path)
        if timing.error:
            verdict = f"failed: {timing.error}"
        elif timing.wall_seconds > budget:
            verdict = f"{format_seconds(budget)}, over"
        else:
            verdict = f"{format_seconds(budget)}, ok"
        lines.append(f"| {timing.title} | `{shown}` | {format_seconds(timing.wall_seconds)} | "
                     f"{format_seconds(timing.cpu_seconds)} | {verdict} |")
    return "\n".join(lines)


def _jupyter() -> str:
    """The ``jupyter`` next to this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("jupyter")
    if beside.exists():
        return str(beside)
    found = shutil.which("jupyter")
    if found is None:
        raise FileNotFoundError("no 'jupyter' command next to this Python or on PATH: run `make install`.")
    return found


def time_notebook(path: Path, *, timeout: int = 600) -> Timing:
    """Run one notebook with ``jupyter execute`` in a fresh kernel and measure it.

    Usage: ``time_notebook(Path("notebooks/01_meet_the_data_and_backbone.ipynb"))``. Nothing is
    written back to the notebook.
    """
    path = Path(path)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValueError(f"time_notebook needs an existing .ipynb file; got {str(path)!r}.")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"time_notebook needs a timeout in whole seconds > 0; got {timeout!r}.")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run([_jupyter(), "execute", f"--timeout={timeout}", str(path)],
                         cwd=path.parent, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    error = ""
    if run.returncode != 0:
        last = [line for line in run.stderr.strip().splitlines() if line.strip()]
        error = (last[-1] if last else f"exit status {run.returncode}").replace("|", "/")[:120]
    return Timing(path, chapter_title(path), wall, cpu, error)


def main(argv: list[str] | None = None) -> int:
    """Time the given notebooks (default: every chapter) and print the table; 1 if one failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in book order")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    paths = args.notebooks or default_notebooks()
    timings = []
    for path in paths:
        print(f"running {path} ...", file=sys.stderr, flush=True)
        timings.append(time_notebook(path, timeout=args.timeout))
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(markdown_table(timings))
    total = sum(timing.wall_seconds for timing in timings)
    print(f"\nAll together: {format_seconds(total)} of wall time on {os.cpu_count()} cores "
          f"(OMP_NUM_THREADS={threads}), one fresh kernel per notebook.")
    return 1 if any(timing.error for timing in timings) else 0


if __name__ == "__main__":
    sys.exit(main())

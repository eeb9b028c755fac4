"""Re-render the quiz cells of committed notebooks after a question file changed.

Scope: a chapter's last code cell calls ``quiz.show(...)``, whose output is the question file
rendered as HTML and JavaScript. Editing ``notebooks/quizzes/*.json`` leaves that output stale,
and nbval (and the built book) would show the old questions. Re-executing a whole chapter to
refresh one cell costs minutes; this tool re-runs only the cells that call ``quiz.show`` (they
depend on nothing else in the notebook) in an IPython shell, and replaces their outputs. Every
other cell, output and execution count is left as it is. ``--check`` changes nothing and exits
1 if a quiz cell's committed output differs from a fresh rendering.

Usage::

    python tools/refresh_quizzes.py notebooks/*.ipynb book/knowledge_check.ipynb
    python tools/refresh_quizzes.py --check notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat


def is_quiz_cell(cell: nbformat.NotebookNode) -> bool:
    """Whether a code cell only imports the quiz module and calls ``quiz.show``."""
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
    return (cell.cell_type == "code" and any(line.startswith("quiz.show(") for line in lines)
            and all(line.startswith(("quiz.show(", "from companion import quiz", "#")) for line in lines))


def render(source: str, folder: Path) -> list[nbformat.NotebookNode]:
    """The display outputs of running ``source`` in an IPython shell started in ``folder``."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    here = Path.cwd()
    os.chdir(folder)
    try:
        with capture_output(stdout=True, stderr=True, display=True) as captured:
            result = shell.run_cell(source, store_history=False)
    finally:
        os.chdir(here)
    result.raise_error()
    if captured.stdout or captured.stderr:
        raise RuntimeError(f"a quiz cell printed text: {captured.stdout}{captured.stderr}")
    return [nbformat.v4.new_output("display_data", data=dict(out.data), metadata=dict(out.metadata))
            for out in captured.outputs]


def stale_cells(path: Path) -> tuple[nbformat.NotebookNode, list[tuple[int, list]]]:
    """The notebook and, for each quiz cell whose output is out of date, its index and fresh output."""
    notebook = nbformat.read(path, as_version=4)
    stale = []
    for index, cell in enumerate(notebook.cells):
        if is_quiz_cell(cell):
            fresh = render(cell.source, path.parent)
            if [dict(o.get("data", {})) for o in cell.outputs] != [dict(o.data) for o in fresh]:
                stale.append((index, fresh))
    return notebook, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        notebook, stale = stale_cells(path)
        for index, fresh in stale:
            if args.check:
                print(f"{path}: quiz cell {index} is out of date with its question file")
                failed = True
            else:
                notebook.cells[index].outputs = fresh
                print(f"{path}: quiz cell {index} re-rendered")
        if stale and not args.check:
            tmp = path.with_suffix(".ipynb.tmp")
            nbformat.write(notebook, tmp)
            tmp.replace(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Remove metadata that changes on every execution from committed notebooks.

Scope: executing a notebook stamps each code cell with start and end times
(``metadata.execution``) and may store ipywidgets state in the notebook's
``metadata.widgets``. Neither is part of what the reader sees, and both make
every re-run show up as a diff. Outputs are left alone: nbval checks them.

``--check`` changes nothing and fails if a notebook still carries such metadata
or has a code cell that was never run: nbval compares outputs only for cells
that have an execution count, so an unexecuted notebook would pass unchecked.

Usage::

    python tools/strip_volatile.py notebooks/*.ipynb           # rewrite in place
    python tools/strip_volatile.py --check notebooks/*.ipynb   # exit 1 if not clean
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CELL_KEYS = ("execution",)
NOTEBOOK_KEYS = ("widgets",)


def strip_volatile(notebook: nbformat.NotebookNode) -> list[str]:
    """Delete volatile metadata from a notebook in place.

    Parameters
    ----------
    notebook : nbformat.NotebookNode
        A notebook as read by ``nbformat.read``.

    Returns
    -------
    list of str
        What was removed, e.g. ``["cell 3: metadata.execution"]``; empty if nothing.

    Usage: ``removed = strip_volatile(nbformat.read(path, as_version=4))``
    """
    if not isinstance(notebook, dict) or "cells" not in notebook:
        raise TypeError(
            "The 'notebook' parameter of strip_volatile must be a notebook read with "
            f"nbformat.read. Got {type(notebook).__name__} instead."
        )
    removed = []
    for key in NOTEBOOK_KEYS:
        if notebook.get("metadata", {}).pop(key, None) is not None:
            removed.append(f"metadata.{key}")
    for index, cell in enumerate(notebook["cells"]):
        for key in CELL_KEYS:
            if cell.get("metadata", {}).pop(key, None) is not None:
                removed.append(f"cell {index}: metadata.{key}")
    return removed


def unexecuted_cells(notebook: nbformat.NotebookNode) -> list[int]:
    """Return the indices of non-empty code cells that have no execution count.

    Cells tagged ``nbval-skip`` are not reported: nbval does not run them.

    Usage: ``missing = unexecuted_cells(nbformat.read(path, as_version=4))``
    """
    return [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
        and cell["source"].strip()
        and cell.get("execution_count") is None
        and "nbval-skip" not in cell.get("metadata", {}).get("tags", [])
    ]


def main(argv: list[str] | None = None) -> int:
    """Strip volatile metadata, or with ``--check`` only report it and unexecuted cells.

    Returns the exit status. Usage: ``main(["--check", "notebooks/01_intro.ipynb"])``
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks (.ipynb) to clean")
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a notebook has volatile metadata or unexecuted cells",
    )
    args = parser.parse_args(argv)

    problems = 0
    for path in args.paths:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file (.ipynb).")
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if args.check:
            missing = unexecuted_cells(notebook)
            if missing:
                problems += 1
                print(f"{path}: code cells {missing} were never run, so nbval cannot check them")
        removed = strip_volatile(notebook)
        if not removed:
            continue
        if args.check:
            problems += 1
            print(f"{path}: volatile metadata ({len(removed)} entries, e.g. {removed[0]})")
        else:
            nbformat.write(notebook, path)
            print(f"{path}: removed {len(removed)} volatile metadata entries")

    if problems:
        print("Run `make execute` (it re-runs the notebooks, then strips their metadata).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

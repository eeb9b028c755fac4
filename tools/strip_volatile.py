"""Remove metadata that changes on every execution from committed notebooks.

Scope: executing a notebook stamps each code cell with start and end times
(``metadata.execution``) and may store ipywidgets state in the notebook's
``metadata.widgets``. Neither is part of what the reader sees, and both make
every re-run show up as a diff. Outputs are left alone: nbval checks them.

Usage::

    python tools/strip_volatile.py notebooks/*.ipynb           # rewrite in place
    python tools/strip_volatile.py --check notebooks/*.ipynb   # exit 1 if any would change
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


def main(argv: list[str] | None = None) -> int:
    """Strip (or with ``--check`` only report) volatile metadata; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks (.ipynb) to clean")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook needs cleaning"
    )
    args = parser.parse_args(argv)

    needs_cleaning = []
    for path in args.paths:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file (.ipynb).")
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        removed = strip_volatile(notebook)
        if not removed:
            continue
        needs_cleaning.append(path)
        if args.check:
            print(f"{path}: volatile metadata ({len(removed)} entries, e.g. {removed[0]})")
        else:
            nbformat.write(notebook, path)
            print(f"{path}: removed {len(removed)} volatile metadata entries")

    if args.check and needs_cleaning:
        print("Run `python tools/strip_volatile.py` on these notebooks (make execute does it).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

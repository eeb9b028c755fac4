"""Helpers shared by the benchmark scripts (not part of the companion package)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_image_size() -> int:
    """The course's image size, `companion.recipes.IMAGE_SIZE` (64 px): every script's ``--image-size``."""
    from companion.recipes import IMAGE_SIZE

    return IMAGE_SIZE


def output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dry-run``: print the table and the JSON line but leave ``results/`` untouched (smoke tests)."""
    parser.add_argument("--dry-run", action="store_true",
                        help="print the results but write nothing (for smoke tests with tiny arguments)")


def save_result(args: argparse.Namespace, path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, unless ``--dry-run`` was given."""
    if getattr(args, "dry_run", False):
        print(f"(dry run: {path} left as it was)")
        return
    write_atomically(path, text)


def training_arguments(parser: argparse.ArgumentParser, *, lr: float) -> None:
    """The options every training benchmark takes: data size, schedule, repeats, threads, dry run."""
    parser.add_argument("--n-per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=default_image_size())
    parser.add_argument("--num-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    output_arguments(parser)


def warehouse_splits(args: argparse.Namespace):
    """Apply ``--threads``, then render the existing-camera pool and split it 60/20/20 (train, val, test)."""
    import torch

    from companion import data

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pool = data.make_dataset(args.n_per_class, "existing", image_size=args.image_size, seed=0)
    splits = data.stratified_split(pool, (0.6, 0.2, 0.2), seed=0)
    return splits["train"], splits["val"], splits["test"]

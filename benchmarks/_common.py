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


def training_arguments(parser: argparse.ArgumentParser, *, lr: float) -> None:
    """The options every training benchmark takes: data size, schedule, repeats, threads."""
    parser.add_argument("--n-per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--num-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")


def warehouse_splits(args: argparse.Namespace):
    """Apply ``--threads``, then render the existing-camera pool and split it 60/20/20 (train, val, test)."""
    import torch

    from companion import data

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pool = data.make_dataset(args.n_per_class, image_size=args.image_size, seed=0)
    splits = data.stratified_split(pool, (0.6, 0.2, 0.2), seed=0)
    return splits["train"], splits["val"], splits["test"]

"""Benchmark: a linear probe on cached features vs re-running the frozen backbone every epoch.

Both train the same new head of the pretrained Lite0 with the same loop (`train.fit`), data,
optimizer, seed and number of epochs; the backbone is frozen in both:

- ``cached``: ``run_strategy("head_only", cache_prefix=True)``: the frozen backbone runs ONCE
  over the training and validation images; every epoch then trains the head on the stored
  pooled features.
- ``recomputed``: ``cache_prefix=False``, the PyTorch-tutorial fixed feature extractor: every
  epoch sends every image through the frozen backbone again.

The scikit-learn probe (``run_strategy("linear_probe")``: features extracted once, logistic
regression with ``C`` chosen on the validation split) is timed alongside, with its disk and
memory caches emptied before each repeat. The methods alternate within each repeat (load from
other processes hits all alike); times are the best of ``--repeats``. Prints a table and a
JSON line and writes ``benchmarks/results/bench_probe.md``.

Usage::

    .venv/bin/python benchmarks/bench_probe.py                     # 50 images/class, 112 px, 10 epochs
    .venv/bin/python benchmarks/bench_probe.py --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from companion import features, strategies
from companion.repro import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import training_arguments, warehouse_splits, write_atomically  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_probe.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training_arguments(parser, lr=1e-2)
    args = parser.parse_args()
    train_set, val_set, test_set = warehouse_splits(args)
    common = dict(num_epochs=args.num_epochs, lr=args.lr, batch_size=args.batch_size, seed=0)
    methods = {
        "cached": lambda: strategies.run_strategy("head_only", train_set, val_set, cache_prefix=True, **common),
        "cached_warm": lambda: strategies.run_strategy("head_only", train_set, val_set, cache_prefix=True,
                                                       **common),
        "recomputed": lambda: strategies.run_strategy("head_only", train_set, val_set, cache_prefix=False,
                                                      **common),
        "sklearn": lambda: strategies.run_strategy("linear_probe", train_set, val_set, **common),
    }
    best = {name: float("inf") for name in methods}
    accuracy = {}
    with tempfile.TemporaryDirectory() as cache_root:
        os.environ["COMPANION_CACHE_DIR"] = cache_root  # the probe's feature cache: empty, then deleted
        for repeat in range(args.repeats):
            for name, method in methods.items():
                features.clear_feature_cache()
                if name != "cached_warm":  # the warm run reads the features "cached" left on disk
                    for stale in Path(cache_root).rglob("*.npz"):
                        stale.unlink()
                start = time.perf_counter()
                result = method()
                best[name] = min(best[name], time.perf_counter() - start)
                accuracy[name] = strategies.evaluate_strategy(result, test_set)["accuracy"]

    speedup = best["recomputed"] / best["cached"]
    speedup_warm = best["recomputed"] / best["cached_warm"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"Lite0 (pretrained, frozen) + new head, {len(train_set)} train / {len(val_set)} val / "
              f"{len(test_set)} test images ({args.n_per_class}/class, {args.image_size} px), "
              f"{args.num_epochs} epochs, batch {args.batch_size}, lr {args.lr}, best of {args.repeats}, "
              f"{get_device()}, {torch.get_num_threads()} threads, load average {load:.1f}")
    rows = [("cached features, extracted in this run (run_strategy head_only, cache_prefix=True)", "cached"),
            ("cached features, read from the disk cache (every later probe on the same images)", "cached_warm"),
            ("backbone re-run every epoch (cache_prefix=False, tutorial style)", "recomputed"),
            ("scikit-learn probe, features extracted in this run (linear_probe)", "sklearn")]
    table = "| method | seconds | test accuracy |\n|---|---|---|\n" + "\n".join(
        f"| {label} | {best[name]:.2f} | {accuracy[name]:.3f} |" for label, name in rows)
    summary = (f"speed-up of caching, extraction included: x{speedup:.1f}; with the features already cached: "
               f"x{speedup_warm:.1f} (target >= 10)")
    record = json.dumps({
        "benchmark": "bench_probe", "n_per_class": args.n_per_class, "image_size": args.image_size,
        "num_epochs": args.num_epochs, "lr": args.lr, "batch_size": args.batch_size, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "load_average": round(load, 2), "torch": torch.__version__,
        "seconds": {name: round(value, 3) for name, value in best.items()},
        "test_accuracy": {name: round(value, 4) for name, value in accuracy.items()},
        "speedup": round(speedup, 2), "speedup_warm_cache": round(speedup_warm, 2),
    })
    print(f"{header}\n{table}\n{summary}\n{record}")
    write_atomically(RESULTS, f"# bench_probe\n\n{header}\n\n{table}\n\n{summary}\n\n"
                              f"Command: `.venv/bin/python benchmarks/bench_probe.py {' '.join(sys.argv[1:])}`\n\n"
                              f"```json\n{record}\n```\n")


if __name__ == "__main__":
    main()

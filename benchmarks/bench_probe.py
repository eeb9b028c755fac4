"""Benchmark: a linear probe on cached features vs re-running the frozen backbone every epoch.

Both train the same new head of the pretrained Lite0 with the same loop (`train.fit`), data,
optimizer, learning rate, seed and number of epochs (validation after every epoch, the best
weights kept, no early stopping); the whole backbone is frozen in both:

- ``cached``: the frozen backbone runs ONCE over the training and validation images, into a new
  `companion.prefix.PrefixCache` (its pooled output, what ``head_only`` and ``linear_probe`` of
  `companion.strategies` train on); every epoch then trains the head on the stored features:
  ``train.fit(prefix.Suffix(model, num_depths), ..., model_input=cache.model_input(...))``.
- ``cached_warm``: the same, with the `PrefixCache` that ``cached`` filled in this repeat passed
  again, as for every later run on the same images (another seed, budget or strategy sharing
  one cache): nothing runs through the backbone. Before the refactor this row read the
  features from the disk cache; the frozen-prefix cache now lives in memory.
- ``recomputed``: the PyTorch-tutorial fixed feature extractor, ``adapt.freeze(model,
  num_depths)`` and ``train.fit`` on the full model: every epoch sends every image through the
  frozen backbone again. (This used to be ``run_strategy("head_only", cache_prefix=False)``; that
  flag is gone, and this is the equivalent measurement.)

The scikit-learn probe (``run_strategy(RECIPES["linear_probe"], ...)``: features extracted once,
logistic regression with the recipe's ``C``, or ``C`` chosen on the validation split when the
recipe has no tuned values) is timed alongside, with a new `PrefixCache` each repeat. Every timed
call includes building the model (`backbones.load_backbone`). The methods alternate within each
repeat (load from other processes hits all alike); times are the best of ``--repeats``. Prints a
table and a JSON line and writes ``benchmarks/results/bench_probe.md`` (not with ``--dry-run``).

Usage::

    .venv/bin/python benchmarks/bench_probe.py                     # 50 images/class, 64 px (IMAGE_SIZE), 10 epochs
    .venv/bin/python benchmarks/bench_probe.py --threads 1 --repeats 3
    .venv/bin/python benchmarks/bench_probe.py --n-per-class 5 --num-epochs 1 --repeats 1 --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from companion import adapt, backbones, prefix, strategies, train
from companion.recipes import RECIPES
from companion.repro import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result, training_arguments, warehouse_splits  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_probe.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training_arguments(parser, lr=1e-2)
    args = parser.parse_args()
    train_set, val_set, test_set = warehouse_splits(args)
    device = get_device()
    num_classes = len(train_set.classes)
    fit_options = dict(num_epochs=args.num_epochs, lr=args.lr, batch_size=args.batch_size, seed=0, device=device,
                       progress=False)

    def frozen_backbone():
        """The pretrained Lite0 with a new head (seed 0) and every depth frozen."""
        model = backbones.load_backbone(num_classes=num_classes, seed=0)
        num_depths = backbones.spec_of(model).num_depths
        adapt.freeze(model, num_depths)
        return model, num_depths

    def on_cache(cache: prefix.PrefixCache):
        model, num_depths = frozen_backbone()
        model_input = cache.model_input(model, num_depths, [train_set, val_set], device=device)
        train.fit(prefix.Suffix(model, num_depths), train_set, val_set, model_input=model_input, **fit_options)
        return model  # the Suffix shares its weights: the full model carries the trained head

    def recomputed():
        model, _ = frozen_backbone()
        train.fit(model, train_set, val_set, **fit_options)
        return model

    caches = {}

    def cached():
        caches["warm"] = prefix.PrefixCache()  # empty: the extraction is part of this run
        return on_cache(caches["warm"])

    methods = {
        "cached": cached,
        "cached_warm": lambda: on_cache(caches["warm"]),  # filled by "cached" just before
        "recomputed": recomputed,
        "sklearn": lambda: strategies.run_strategy(RECIPES["linear_probe"], train_set, val_set, seed=0,
                                                   prefix_cache=prefix.PrefixCache(), device=device),
    }
    best = {name: float("inf") for name in methods}
    accuracy = {}
    for repeat in range(args.repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            result = method()
            best[name] = min(best[name], time.perf_counter() - start)
            if isinstance(result, strategies.StrategyResult):
                accuracy[name] = strategies.evaluate_strategy(result, test_set, device=device)["accuracy"]
            else:
                accuracy[name] = train.evaluate(result, test_set, device=device)["accuracy"]

    speedup = best["recomputed"] / best["cached"]
    speedup_warm = best["recomputed"] / best["cached_warm"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"Lite0 (pretrained, frozen) + new head, {len(train_set)} train / {len(val_set)} val / "
              f"{len(test_set)} test images ({args.n_per_class}/class, {args.image_size} px), "
              f"{args.num_epochs} epochs, batch {args.batch_size}, lr {args.lr}, best of {args.repeats}, "
              f"{device}, {torch.get_num_threads()} threads, load average {load:.1f}")
    rows = [("cached features, extracted in this run (train.fit on prefix.Suffix, a new PrefixCache)", "cached"),
            ("cached features, already in the PrefixCache (every later run on the same images)", "cached_warm"),
            ("backbone re-run every epoch (adapt.freeze + train.fit on the full model, tutorial style)",
             "recomputed"),
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
    save_result(args, RESULTS, f"# bench_probe\n\n{header}\n\n{table}\n\n{summary}\n\n"
                               f"Command: `.venv/bin/python benchmarks/bench_probe.py {' '.join(sys.argv[1:])}`\n\n"
                               f"```json\n{record}\n```\n")


if __name__ == "__main__":
    main()

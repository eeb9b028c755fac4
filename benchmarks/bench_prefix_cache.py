"""Benchmark: partial fine-tuning with cached activations of the frozen prefix vs recomputing them.

``run_strategy("partial_finetune", top_k_stages=2)`` on the pretrained Lite0 trains depths 7-8
(``blocks.6``, ``head``) and the classifier; depths 0-6 are frozen. Without augmentation their
output never changes, so ``cache_prefix=True`` computes it once (train and validation images)
and trains only the suffix on the stored tensors; ``cache_prefix=False`` sends every batch
through the whole network every epoch. Same data, seed, learning rate and epochs; the two
alternate within each repeat and times are the best of ``--repeats``. The final validation and
test accuracies must match (the weights agree up to float rounding). Prints a table and a JSON
line and writes ``benchmarks/results/bench_prefix_cache.md``.

Usage::

    .venv/bin/python benchmarks/bench_prefix_cache.py              # 50 images/class, 112 px, 10 epochs
    .venv/bin/python benchmarks/bench_prefix_cache.py --threads 1 --num-epochs 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from companion import strategies
from companion.repro import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import training_arguments, warehouse_splits, write_atomically  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_prefix_cache.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training_arguments(parser, lr=1e-3)
    parser.add_argument("--top-k-stages", type=int, default=2)
    args = parser.parse_args()
    train_set, val_set, test_set = warehouse_splits(args)
    best = {"cached": float("inf"), "recomputed": float("inf")}
    scores, weights = {}, {}
    for repeat in range(args.repeats):
        for name in best:
            start = time.perf_counter()
            result = strategies.run_strategy(
                "partial_finetune", train_set, val_set, lr=args.lr, num_epochs=args.num_epochs, seed=0,
                top_k_stages=args.top_k_stages, batch_size=args.batch_size, cache_prefix=name == "cached")
            best[name] = min(best[name], time.perf_counter() - start)
            scores[name] = {"val": result.val_accuracy,
                            "test": strategies.evaluate_strategy(result, test_set)["accuracy"],
                            "train_loss": result.history.train_loss[-1]}
            weights[name] = result.model.state_dict()
    cached, recomputed = weights["cached"], weights["recomputed"]
    max_weight_difference = max((cached[key].float() - recomputed[key].float()).abs().max().item()
                                for key in cached)

    speedup = best["recomputed"] / best["cached"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"Lite0 (pretrained), partial fine-tuning of the top {args.top_k_stages} depths, {len(train_set)} "
              f"train / {len(val_set)} val / {len(test_set)} test images ({args.n_per_class}/class, "
              f"{args.image_size} px), {args.num_epochs} epochs, batch {args.batch_size}, lr {args.lr}, best of "
              f"{args.repeats}, {get_device()}, {torch.get_num_threads()} threads, load average {load:.1f}")
    table = ("| frozen prefix | seconds | final train loss | val accuracy | test accuracy |\n"
             "|---|---|---|---|---|\n")
    table += "\n".join(f"| {name} | {best[name]:.2f} | {scores[name]['train_loss']:.4f} | "
                       f"{scores[name]['val']:.3f} | {scores[name]['test']:.3f} |" for name in best)
    summary = (f"speed-up of caching the prefix: x{speedup:.1f}; largest weight difference between the two "
               f"models: {max_weight_difference:.2e}")
    record = json.dumps({
        "benchmark": "bench_prefix_cache", "n_per_class": args.n_per_class, "image_size": args.image_size,
        "num_epochs": args.num_epochs, "lr": args.lr, "top_k_stages": args.top_k_stages,
        "batch_size": args.batch_size, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "load_average": round(load, 2), "torch": torch.__version__,
        "seconds": {name: round(value, 3) for name, value in best.items()},
        "accuracy": {name: {k: round(v, 4) for k, v in value.items()} for name, value in scores.items()},
        "max_weight_difference": max_weight_difference, "speedup": round(speedup, 2),
    })
    print(f"{header}\n{table}\n{summary}\n{record}")
    write_atomically(RESULTS, f"# bench_prefix_cache\n\n{header}\n\n{table}\n\n{summary}\n\n"
                              f"Command: `.venv/bin/python benchmarks/bench_prefix_cache.py "
                              f"{' '.join(sys.argv[1:])}`\n\n```json\n{record}\n```\n")


if __name__ == "__main__":
    main()

"""Benchmark: partial fine-tuning with cached activations of the frozen prefix vs recomputing them.

Partial fine-tuning of the pretrained Lite0 as ``RECIPES["partial_top2"]`` sets it up
(``--top-k-stages`` 2: depths 7-8, ``blocks.6`` and ``head``, and the classifier train, the
classifier at the recipe's ``head_lr_mult`` times ``--lr`` through `adapt.param_groups`;
depths 0-6 are frozen with `adapt.freeze`). Without augmentation the frozen depths' output
never changes, so:

- ``cached``: a new `companion.prefix.PrefixCache` computes it once (train and validation
  images) and ``train.fit(prefix.Suffix(model, k), ..., model_input=cache.model_input(...))``
  trains only the suffix on the stored tensors (what `companion.strategies.run_strategy` does);
- ``recomputed``: ``train.fit`` on the full model sends every batch through the whole network
  every epoch.

Before the refactor the two rows were ``run_strategy("partial_finetune", cache_prefix=True)``
and ``cache_prefix=False``; that flag is gone, and timing `train.fit` directly in both ways is
the equivalent measurement. Same data, seed, learning rate, batch size and epochs (validation
after every epoch, the best weights kept, no early stopping); each timed run includes building
the model; the two alternate within each repeat and times are the best of ``--repeats``. The
final validation and test accuracies must match (the weights agree up to float rounding; the
largest difference is printed). Prints a table and a JSON line and writes
``benchmarks/results/bench_prefix_cache.md`` (not with ``--dry-run``).

Usage::

    .venv/bin/python benchmarks/bench_prefix_cache.py              # 50 images/class, 64 px (IMAGE_SIZE), 10 epochs
    .venv/bin/python benchmarks/bench_prefix_cache.py --threads 1 --num-epochs 20
    .venv/bin/python benchmarks/bench_prefix_cache.py --n-per-class 5 --num-epochs 1 --repeats 1 --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from companion import adapt, backbones, prefix, train
from companion.recipes import RECIPES
from companion.repro import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result, training_arguments, warehouse_splits  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_prefix_cache.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training_arguments(parser, lr=1e-3)
    parser.add_argument("--top-k-stages", type=int, default=2)
    args = parser.parse_args()
    num_depths = backbones.get_spec(RECIPES["partial_top2"].backbone).num_depths
    if not 1 <= args.top_k_stages < num_depths:
        parser.error(f"--top-k-stages must lie in [1, {num_depths - 1}]: at least one depth frozen, one trained")
    config = RECIPES["partial_top2"].with_(top_k_stages=args.top_k_stages)
    train_set, val_set, test_set = warehouse_splits(args)
    device = get_device()
    num_classes = len(train_set.classes)

    def run(cached: bool):
        """Build the model, freeze its prefix and train it; return the model and its History."""
        model = backbones.load_backbone(config.backbone, pretrained=config.pretrained, num_classes=num_classes,
                                        seed=0)
        num_frozen = num_depths - config.top_k_stages
        adapt.freeze(model, num_frozen)
        options = dict(num_epochs=args.num_epochs, lr=args.lr, batch_size=args.batch_size, seed=0, device=device,
                       progress=False,
                       param_groups=adapt.param_groups(model, lr=args.lr, head_lr_mult=config.head_lr_mult))
        if cached:
            model_input = prefix.PrefixCache().model_input(model, num_frozen, [train_set, val_set], device=device)
            history = train.fit(prefix.Suffix(model, num_frozen), train_set, val_set, model_input=model_input,
                                **options)
        else:
            history = train.fit(model, train_set, val_set, **options)
        return model, history  # the Suffix shares its weights: the full model is the trained one

    best = {"cached": float("inf"), "recomputed": float("inf")}
    scores, weights = {}, {}
    for repeat in range(args.repeats):
        for name in best:
            start = time.perf_counter()
            model, history = run(cached=name == "cached")
            best[name] = min(best[name], time.perf_counter() - start)
            scores[name] = {"val": history.best_val_accuracy,
                            "test": train.evaluate(model, test_set, device=device)["accuracy"],
                            "train_loss": history.train_loss[-1]}
            weights[name] = model.state_dict()
    cached, recomputed = weights["cached"], weights["recomputed"]
    max_weight_difference = max((cached[key].float() - recomputed[key].float()).abs().max().item()
                                for key in cached)

    speedup = best["recomputed"] / best["cached"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"Lite0 (pretrained), partial fine-tuning of the top {args.top_k_stages} depths, {len(train_set)} "
              f"train / {len(val_set)} val / {len(test_set)} test images ({args.n_per_class}/class, "
              f"{args.image_size} px), {args.num_epochs} epochs, batch {args.batch_size}, lr {args.lr} (head x"
              f"{config.head_lr_mult:g}), best of {args.repeats}, {device}, {torch.get_num_threads()} threads, "
              f"load average {load:.1f}")
    table = ("| frozen prefix | seconds | final train loss | val accuracy | test accuracy |\n"
             "|---|---|---|---|---|\n")
    table += "\n".join(f"| {name} | {best[name]:.2f} | {scores[name]['train_loss']:.4f} | "
                       f"{scores[name]['val']:.3f} | {scores[name]['test']:.3f} |" for name in best)
    summary = (f"speed-up of caching the prefix: x{speedup:.1f}; largest weight difference between the two "
               f"models: {max_weight_difference:.2e}")
    record = json.dumps({
        "benchmark": "bench_prefix_cache", "n_per_class": args.n_per_class, "image_size": args.image_size,
        "num_epochs": args.num_epochs, "lr": args.lr, "head_lr_mult": config.head_lr_mult,
        "top_k_stages": args.top_k_stages, "batch_size": args.batch_size, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "load_average": round(load, 2), "torch": torch.__version__,
        "seconds": {name: round(value, 3) for name, value in best.items()},
        "accuracy": {name: {k: round(v, 4) for k, v in value.items()} for name, value in scores.items()},
        "max_weight_difference": max_weight_difference, "speedup": round(speedup, 2),
    })
    print(f"{header}\n{table}\n{summary}\n{record}")
    save_result(args, RESULTS, f"# bench_prefix_cache\n\n{header}\n\n{table}\n\n{summary}\n\n"
                               f"Command: `.venv/bin/python benchmarks/bench_prefix_cache.py "
                               f"{' '.join(sys.argv[1:])}`\n\n```json\n{record}\n```\n")


if __name__ == "__main__":
    main()

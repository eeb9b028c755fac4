"""The learning-rate search behind `companion.recipes.RECIPES`: the same search for every strategy.

For every recipe and every label budget, each value of the recipe's grid (five learning rates;
five values of C for the linear probe) trains on the same images with the same seeds, and the
value with the best mean validation accuracy wins (ties: the smaller value). The data is a
tuning set of its own, never used by a chapter: the new camera rendered with seed 100, a pool of
300 parcels per class and a validation split of 50 per class (300 images, so the choice is less
noisy than on a chapter's validation split). Budgets 5, 20 and 50 labels per class average two
seeds; 100 and 300 use one (the whole-network strategies skip some budgets, see `BUDGETS_OF`). Every
run stops on the recipe's own rule (validation accuracy, patience, a maximum).

Writes ``results/tuned_recipes.json`` and ``results/tuned_recipes.md`` atomically and prints the
``tuned`` tuples to paste into ``companion/recipes.py`` (a test checks that the two agree). Each
run is cached in ``results/tuning_runs/`` (named by a hash of the recipe, the value, the budget,
the seed, the image size and the renderer version; not the grid, so widening a grid runs only
the new values), so an interrupted search resumes and a finished one re-prints in seconds. The
key does not hold the training code: after changing how a strategy trains, delete that
strategy's files there (their ``key`` names the recipe).

Usage (about an hour on 2 CPU cores)::

    python benchmarks/tune_recipes.py               # every recipe
    python benchmarks/tune_recipes.py --only scratch --only head_only
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from companion import data, prefix, render, repro, strategies  # noqa: E402
from companion.recipes import IMAGE_SIZE, RECIPES  # noqa: E402
from _common import write_atomically  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BUDGETS = (5, 20, 50, 100, 300)
# The whole-network strategies are searched only at the budgets where a chapter runs them on a CPU
# (LP-FT: chapter 4 at 20; full fine-tuning: chapter 5 at 5, chapter 4 at 20, chapter 8 at 300,
# and 50 as a reference): one search at 300 takes most of an hour on 2 cores. Elsewhere
# value_for gives the value tuned at the nearest budget, and FULL = True searches where it runs.
BUDGETS_OF = {"lp_ft": (20,), "full_finetune": (5, 20, 50, 300)}
SEEDS = {5: (0, 1), 20: (0, 1), 50: (0, 1), 100: (0,), 300: (0,)}
TUNING_SEED = 100  # the render seed of the tuning set: no chapter uses it


def tuning_set(image_size: int) -> tuple[data.ImageSet, data.ImageSet]:
    pool = data.make_dataset(350, "new", seed=TUNING_SEED, image_size=image_size)
    parts = data.stratified_split(pool, (300 / 350, 50 / 350), names=("train", "val"), seed=0)
    return parts["train"], parts["val"]


def cached(key: dict, compute) -> dict:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = RESULTS / "tuning_runs" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())["result"]
    result = compute()
    write_atomically(path, json.dumps({"key": key, "result": result}, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), help="tune these recipes only")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    args = parser.parse_args()
    repro.seed_everything(0)
    start = time.time()
    train_pool, val = tuning_set(args.image_size)
    cache = prefix.PrefixCache()
    results = {}
    for name in args.only or list(RECIPES):
        config = RECIPES[name].with_(tuned=())
        results[name] = {}
        for n in BUDGETS_OF.get(name, BUDGETS):
            scores = {}
            for value in config.grid:
                runs = []
                for seed in SEEDS[n]:
                    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("grid", "tuned")}
                    key = {"recipe": recipe, "value": value, "n": n, "seed": seed,
                           "size": args.image_size, "renderer": render.RENDERER_VERSION}
                    train_set = data.sample_per_class(train_pool, n, seed=seed)

                    def compute():
                        run_config = config if config.tunes_lr else config.with_(grid=(value,))
                        result = strategies.run_strategy(run_config, train_set, val, lr=value if config.tunes_lr
                                                         else None, seed=seed, prefix_cache=cache)
                        history = result.history
                        return {"val": result.val_accuracy, "epochs": history.num_epochs if history else 0,
                                "hit_max": bool(history and history.hit_max), "seconds": result.seconds}
                    runs.append(cached(key, compute))
                scores[value] = {"val": sum(r["val"] for r in runs) / len(runs),
                                 "hit_max": any(r["hit_max"] for r in runs),
                                 "epochs": [r["epochs"] for r in runs]}
                print(f"[{time.time() - start:7.0f}s] {name:<14} n={n:<4} {value:<8g} val {scores[value]['val']:.3f}"
                      f" epochs {scores[value]['epochs']}{' MAX' if scores[value]['hit_max'] else ''}", flush=True)
            best = max(scores, key=lambda value: (scores[value]["val"], -value))
            results[name][n] = {"best": best, "scores": {f"{v:g}": s for v, s in scores.items()}}
    old = json.loads((RESULTS / "tuned_recipes.json").read_text()) if (RESULTS / "tuned_recipes.json").exists() else {}
    old.update({name: {str(n): cell for n, cell in cells.items()} for name, cells in results.items()})
    write_atomically(RESULTS / "tuned_recipes.json", json.dumps(old, indent=1, sort_keys=True))
    lines = ["# Tuned recipes", "", f"`python benchmarks/tune_recipes.py`: the new camera, render seed {TUNING_SEED}, "
             f"{args.image_size} px, pool 300 per class, validation 50 per class; mean validation accuracy over "
             "seeds 0-1 (5-50 labels per class) or seed 0 (100, 300). **Bold**: the value chosen; "
             "(edge): it is the grid's smallest or largest value. (max): a run used up its maximum.", "",
             "| recipe | labels/class | " + " | ".join(["grid value: val accuracy"] * 5) + " |",
             "|---|---|" + "---|" * 5]
    for name, cells in old.items():
        for n, cell in sorted(cells.items(), key=lambda item: int(item[0])):
            values = [float(v) for v in cell["scores"]]
            edge = cell["best"] in (min(values), max(values))  # the best rate may lie outside the grid
            shown = [(f"**{v}: {s['val']:.3f}{' (edge)' if edge else ''}**" if float(v) == cell["best"]
                      else f"{v}: {s['val']:.3f}") + (" (max)" if s["hit_max"] else "")
                     for v, s in cell["scores"].items()]
            lines.append(f"| {name} | {n} | " + " | ".join(shown) + " |")
    write_atomically(RESULTS / "tuned_recipes.md", "\n".join(lines) + "\n")
    print("\nPaste into companion/recipes.py:")
    for name, cells in old.items():
        pairs = ", ".join(f"({n}, {cell['best']:g})" for n, cell in sorted(cells.items(), key=lambda i: int(i[0])))
        print(f"    {name}: tuned=({pairs})")


if __name__ == "__main__":
    main()

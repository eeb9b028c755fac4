"""Calibrate the warehouse renderer: is the task learnable, not trivial, and is the camera shift real?

Prints (and writes to ``benchmarks/results/calibration.md`` and ``.json``) the table behind the
dataset's design bars, each as mean +- sd over seeds, on test sets of 600 images (100 per class):

1. existing camera, 300 labels/class: the best method reaches >= 90 %;
2. existing camera, 5 labels/class: a from-scratch CNN stays under 50 %;
3. trained on the existing camera, tested on the new one: a loss of >= 15 points;
4. new camera, 300 labels/class: >= 80 %;
5. new camera, 20 labels/class: fine-tuning the pretrained backbone beats an equally tuned
   scratch CNN by >= 15 points.

"finetune" is the course's full fine-tuning recipe and "scratch" its scratch recipe
(``companion.recipes.RECIPES["full_finetune"]`` and ``["scratch"]``), each at the learning rate
its recipe's search chose for the budget, trained until validation accuracy stops improving:
the calibration measures the recipes the chapters use. Validation sets are sized like a real
team's hold-out (20 per class next to 5 or 20 training labels, 50 per class next to 300).

Usage (about 40 minutes on 2 CPU cores)::

    python benchmarks/calibrate_dataset.py            # full table, 3 seeds
    python benchmarks/calibrate_dataset.py --quick    # smoke run, 1 seed, few epochs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataclasses  # noqa: E402

from companion import data, render, repro, strategies  # noqa: E402
from companion.recipes import IMAGE_SIZE, RECIPES  # noqa: E402
from _common import write_atomically  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def pools(image_size: int, per_class: int) -> dict[str, dict[str, data.ImageSet]]:
    """Independent pools per camera (different render seeds), split 60/20/20 per class."""
    out = {}
    for seed, camera in enumerate(("existing", "new")):
        pool = data.make_dataset(per_class, camera, image_size=image_size, seed=100 + seed)
        out[camera] = data.stratified_split(pool, (0.6, 0.2, 0.2), seed=0)
    return out


METHODS = {"finetune": RECIPES["full_finetune"], "scratch": RECIPES["scratch"]}


def run(method: str, train_set, val_set, *, seed: int) -> strategies.StrategyResult:
    """One run of the method's recipe, at the learning rate its search chose for this budget."""
    repro.seed_everything(seed)
    return strategies.run_strategy(METHODS[method], train_set, val_set, seed=seed)


def accuracy(result, dataset) -> float:
    return strategies.evaluate_strategy(result, dataset)["accuracy"]


def cached_run(key: dict, compute) -> dict:
    """Return the stored result of one training run, or compute and store it (atomic write).

    Each run is a file under ``results/calibration_runs/`` named by a hash of everything that
    defines it, so an interrupted calibration resumes where it stopped, and groups of conditions
    can run in parallel processes (``--only``).
    """
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = RESULTS / "calibration_runs" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())["result"]
    result = compute()
    write_atomically(path, json.dumps({"key": key, "result": result}, indent=1))
    return result


def summary(values: list[float]) -> dict:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": 100 * statistics.fmean(values), "sd": 100 * sd, "runs": [round(100 * v, 1) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs: checks the script runs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 on a busy machine)")
    parser.add_argument("--only", choices=("few", "existing", "new"), default=None,
                        help="run one group of conditions (to use several processes); runs are cached")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seeds = [0] if args.quick else list(range(args.seeds))
    RESULTS.mkdir(exist_ok=True)
    log_path = RESULTS / f"calibration{'_' + args.only if args.only else ''}.log"
    start = time.time()

    def log(message: str) -> None:
        line = f"[{time.time() - start:7.1f}s] {message}"
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    log(repro.environment_report().replace("\n", " | "))
    split = pools(args.image_size, 50 if args.quick else 500)
    rows = {}

    def budget(camera, n, seed):
        return data.sample_per_class(split[camera]["train"], n, seed=seed)

    def val_for(camera, n):
        return data.sample_per_class(split[camera]["val"], min(20 if n <= 20 else 50, len(split[camera]["val"]) // 6), seed=0)

    # Few-label conditions, each method with its own tuned learning rate (same grid size).
    def recipe_key(method: str) -> dict:
        return {"recipe": dataclasses.asdict(METHODS[method]), "size": args.image_size, "quick": args.quick,
                "renderer": render.RENDERER_VERSION}

    for camera, n, methods in (("existing", 5, ("scratch",)), ("new", 20, ("finetune", "scratch"))):
        for method in methods:
            if args.only not in (None, "few"):
                continue
            val = val_for(camera, n)
            accs, epochs = [], []
            for seed in seeds:
                def compute():
                    result = run(method, budget(camera, n, seed), val, seed=seed)
                    return {"test": accuracy(result, split[camera]["test"]), "epochs": result.history.num_epochs,
                            "lr": result.lr}
                result = cached_run({**recipe_key(method), "camera": camera, "n": n, "seed": seed}, compute)
                accs.append(result["test"])
                epochs.append(result["epochs"])
                log(f"  {camera} {n}/class {method} lr={result['lr']:g} seed={seed}: test {accs[-1]:.3f}")
            rows[f"{camera}, {n}/class, {method}"] = {**summary(accs), "lr": result["lr"], "epochs": epochs}

    # Full-label conditions: fine-tuning and scratch, with the cross-camera test for the existing one.
    n_full = 25 if args.quick else 300
    for camera in ("existing", "new"):
        if args.only not in (None, camera):
            continue
        for method in ("finetune", "scratch"):
            accs, cross, epochs = [], [], []
            for seed in seeds:
                def compute():
                    model = run(method, budget(camera, n_full, seed), val_for(camera, n_full), seed=seed)
                    return {"test": accuracy(model, split[camera]["test"]), "epochs": model.history.num_epochs,
                            "lr": model.lr,
                            "cross": accuracy(model, split["new"]["test"]) if camera == "existing" else None}
                result = cached_run({**recipe_key(method), "camera": camera, "n": n_full, "seed": seed}, compute)
                accs.append(result["test"])
                epochs.append(result["epochs"])
                lr = result["lr"]
                msg = f"  {camera} {n_full}/class {method} seed={seed}: test {accs[-1]:.3f}"
                if camera == "existing":
                    cross.append(result["cross"])
                    msg += f", on new camera {cross[-1]:.3f}"
                log(msg)
            rows[f"{camera}, {n_full}/class, {method}"] = {**summary(accs), "lr": lr, "epochs": epochs}
            if cross:
                rows[f"existing -> new camera, {n_full}/class, {method}"] = {**summary(cross), "lr": lr, "epochs": epochs}

    if args.only is not None:
        log(f"group {args.only!r} done in {time.time() - start:.0f} s; run without --only for the table")
        return
    lines = ["| condition (test set: 600 images) | accuracy % (mean +- sd) | runs | lr | epochs run |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['mean']:.1f} +- {row['sd']:.1f} | {row['runs']} | {row['lr']:g} | "
                     f"{', '.join(map(str, row['epochs']))} |")
    ft20, sc20 = rows["new, 20/class, finetune"]["mean"], rows["new, 20/class, scratch"]["mean"]
    best_existing = max(rows[f"existing, {n_full}/class, {m}"]["mean"] for m in ("finetune", "scratch"))
    drop = rows[f"existing, {n_full}/class, finetune"]["mean"] - rows[f"existing -> new camera, {n_full}/class, finetune"]["mean"]
    best_new = max(rows[f"new, {n_full}/class, {m}"]["mean"] for m in ("finetune", "scratch"))
    checks = [
        ("existing camera learnable (best >= 90 %)", best_existing >= 90, f"{best_existing:.1f}"),
        ("not trivial (scratch at 5/class < 50 %)", rows["existing, 5/class, scratch"]["mean"] < 50,
         f"{rows['existing, 5/class, scratch']['mean']:.1f}"),
        ("camera shift is real (fine-tuned model loses >= 15 points)", drop >= 15, f"{drop:.1f}"),
        ("new camera learnable (best at 300/class >= 80 %)", best_new >= 80, f"{best_new:.1f}"),
        ("transfer matters (20/class: fine-tune - scratch >= 15 points)", ft20 - sc20 >= 15, f"{ft20 - sc20:.1f}"),
    ]
    lines += ["", "| bar | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if ok else 'NO'} | {value} |" for name, ok, value in checks]
    table = "\n".join(lines)
    log("done in %.0f s" % (time.time() - start))
    print(table)
    suffix = "_quick" if args.quick else ""
    write_atomically(RESULTS / f"calibration{suffix}.md", table + "\n")
    write_atomically(RESULTS / f"calibration{suffix}.json", json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

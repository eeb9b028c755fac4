"""Calibrate the warehouse renderer: is the task learnable, not trivial, and is the camera shift real?

Prints (and writes to ``benchmarks/results/calibration.md`` and ``.json``) the table behind the
dataset's design bars, each as mean +- sd over seeds, on test sets of 600 images (100 per class):

1. existing camera, 300 labels/class: the best method reaches >= 90 %;
2. existing camera, 5 labels/class: a from-scratch CNN stays under 50 %;
3. trained on the existing camera, tested on the new one: a loss of >= 15 points;
4. new camera, 300 labels/class: >= 80 %;
5. new camera, 20 labels/class: fine-tuning the pretrained backbone beats an equally tuned
   scratch CNN by >= 15 points.

"Equally tuned": both methods pick their learning rate from a grid of the same size on the
validation split (seed 0), with the same number of epochs scaled to the label budget. Validation
sets are sized like a real team's hold-out (20 per class next to 5 or 20 training labels, 50 per
class next to 300), which also keeps the per-epoch model selection affordable on a CPU.

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

from companion import backbones, data, render, repro, train  # noqa: E402
from _common import write_atomically  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def pools(image_size: int, per_class: int) -> dict[str, dict[str, data.ImageSet]]:
    """Independent pools per camera (different render seeds), split 60/20/20 per class."""
    out = {}
    for seed, camera in enumerate(("existing", "new")):
        pool = data.make_dataset(per_class, camera, image_size=image_size, seed=100 + seed)
        out[camera] = data.stratified_split(pool, (0.6, 0.2, 0.2), seed=0)
    return out


def make_model(method: str, seed: int) -> torch.nn.Module:
    if method == "finetune":
        return backbones.load_backbone("efficientnet_lite0", pretrained=True, num_classes=len(data.CLASSES), seed=seed)
    return train.make_scratch_cnn(len(data.CLASSES), width=32, seed=seed)


def run(method: str, train_set, val_set, *, lr: float, epochs: int, seed: int) -> torch.nn.Module:
    repro.seed_everything(seed)
    model = make_model(method, seed)
    train.fit(model, train_set, val_set, num_epochs=epochs, lr=lr, batch_size=32, seed=seed, progress=False)
    return model


def accuracy(model, dataset) -> float:
    return train.evaluate(model, dataset)["accuracy"]


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


def epochs_for(method: str, n_per_class: int, quick: bool) -> int:
    """Scale epochs so small sets still get enough optimizer steps (scratch needs ~1,000 steps)."""
    if quick:
        return 2
    steps_per_epoch = max(1, (n_per_class * len(data.CLASSES)) // 32)
    target = 1000 if method == "scratch" else 300
    return int(min(60 if method == "scratch" else 30, max(6 if method == "finetune" else 20, target // steps_per_epoch)))


LR_GRID = {"finetune": (3e-4, 1e-3, 3e-3), "scratch": (1e-3, 3e-3, 1e-2)}


def tune_lr(method, train_set, val_set, epochs, log, key) -> float:
    scores = {}
    for lr in LR_GRID[method]:
        result = cached_run({**key, "tune": True, "lr": lr, "epochs": epochs}, lambda: {
            "val": accuracy(run(method, train_set, val_set, lr=lr, epochs=epochs, seed=0), val_set)})
        scores[lr] = result["val"]
        log(f"    tune {method} lr={lr:g}: val {scores[lr]:.3f}")
    return max(scores, key=scores.get)


def summary(values: list[float]) -> dict:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": 100 * statistics.fmean(values), "sd": 100 * sd, "runs": [round(100 * v, 1) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs: checks the script runs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=112)
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
    for camera, n, methods in (("existing", 5, ("scratch",)), ("new", 20, ("finetune", "scratch"))):
        for method in methods:
            epochs = epochs_for(method, n, args.quick)
            if args.only not in (None, "few"):
                continue
            val = val_for(camera, n)
            key = {"method": method, "camera": camera, "n": n, "size": args.image_size, "quick": args.quick,
                   "renderer": render.RENDERER_VERSION}
            lr = tune_lr(method, budget(camera, n, 0), val, epochs, log, key)
            accs = []
            for seed in seeds:
                result = cached_run({**key, "lr": lr, "epochs": epochs, "seed": seed}, lambda: {
                    "test": accuracy(run(method, budget(camera, n, seed), val, lr=lr, epochs=epochs, seed=seed),
                                     split[camera]["test"])})
                accs.append(result["test"])
                log(f"  {camera} {n}/class {method} lr={lr:g} seed={seed}: test {accs[-1]:.3f}")
            rows[f"{camera}, {n}/class, {method}"] = {**summary(accs), "lr": lr, "epochs": epochs}

    # Full-label conditions: fine-tuning and scratch, with the cross-camera test for the existing one.
    n_full = 25 if args.quick else 300
    for camera in ("existing", "new"):
        if args.only not in (None, camera):
            continue
        for method in ("finetune", "scratch"):
            epochs = epochs_for(method, n_full, args.quick)
            lr = {"finetune": 1e-3, "scratch": 3e-3}[method]
            accs, cross = [], []
            for seed in seeds:
                def compute():
                    model = run(method, budget(camera, n_full, seed), val_for(camera, n_full), lr=lr,
                                epochs=epochs, seed=seed)
                    return {"test": accuracy(model, split[camera]["test"]),
                            "cross": accuracy(model, split["new"]["test"]) if camera == "existing" else None}
                result = cached_run({"method": method, "camera": camera, "n": n_full, "size": args.image_size,
                                     "quick": args.quick, "renderer": render.RENDERER_VERSION, "lr": lr,
                                     "epochs": epochs, "seed": seed}, compute)
                accs.append(result["test"])
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
    lines = ["| condition (test set: 600 images) | accuracy % (mean +- sd) | runs | lr | epochs |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['mean']:.1f} +- {row['sd']:.1f} | {row['runs']} | {row['lr']:g} | {row['epochs']} |")
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

"""Benchmark: the overhead of `companion.train.fit` over a bare PyTorch training loop.

Both loops train copies of the same initial model on the same images with AdamW at a
constant learning rate, the same batch size and the same number of optimizer steps, without
validation: each step draws a batch from a seeded permutation, normalises it with the model's
own spec (`backbones.preprocess(images, spec)`, moved in ``channels_last`` layout), runs
forward, cross-entropy, backward and the optimizer step, and reads the loss. ``fit`` adds its
validation of the arguments, the warmup schedule, the non-finite-loss check, running accuracy,
`adapt.train_mode`, the random state fork and the History. Models: the scratch CNN
(`companion.scratch.make_scratch_cnn`) and EfficientNet-Lite0 (full fine-tuning). The two
loops alternate (ABBA order) so load from other processes hits both alike; the overhead is the
median over repeats of ``fit time / bare time - 1``, on the process's CPU time
(``time.process_time``: with ``--threads 1`` it counts the work done, not the time other
processes held the cores, which on a shared machine swings wall time by 20-40 %) and on wall
time. Prints a table and a JSON line and writes ``benchmarks/results/bench_loop.md`` (not with
``--dry-run``).

Usage::

    .venv/bin/python benchmarks/bench_loop.py                       # 64 px (IMAGE_SIZE), batch 32
    .venv/bin/python benchmarks/bench_loop.py --threads 1 --repeats 4
    .venv/bin/python benchmarks/bench_loop.py --scratch-steps 1 --lite0-steps 1 --repeats 1 --dry-run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from companion import backbones, data, scratch, train
from companion.repro import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_image_size, output_arguments, save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_loop.md"


def bare_loop(model: nn.Module, train_set: data.ImageSet, *, lr: float, batch_size: int, num_steps: int,
              device: torch.device) -> None:
    """The plain loop every tutorial writes, with the same data handling as fit."""
    model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    spec = backbones.spec_of(model)  # the model's own normalisation
    generator = torch.Generator().manual_seed(0)
    model.train()
    step = 0
    while step < num_steps:
        for indices in torch.randperm(len(train_set), generator=generator).split(batch_size):
            if step == num_steps:
                break
            inputs = backbones.preprocess(train_set.images[indices], spec)  # (B, 3, H, W) float32
            inputs = inputs.to(device, memory_format=torch.channels_last)
            targets = train_set.labels[indices].to(device)  # (B,)
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # every loop logs its loss
            step += 1


def fit_loop(model: nn.Module, train_set: data.ImageSet, *, lr: float, batch_size: int, num_steps: int,
             device: torch.device) -> None:
    steps_per_epoch = len(train_set) // batch_size
    train.fit(model, train_set, None, num_epochs=-(-num_steps // steps_per_epoch), max_steps=num_steps,
              lr=lr, batch_size=batch_size, optimizer="adamw", weight_decay=0.05, schedule="constant",
              progress=False, seed=0, device=device)


def measure(initial: nn.Module, train_set, repeats: int, **options) -> dict:
    """CPU and wall times of both loops over ``repeats`` ABBA rounds (after one warm-up each)."""
    loops = {"bare": bare_loop, "fit": fit_loop}
    times = {(name, clock): [] for name in loops for clock in ("cpu", "wall")}
    for name, loop in loops.items():  # warm-up: allocations, oneDNN kernel choice
        loop(copy.deepcopy(initial), train_set, **{**options, "num_steps": 2})
    for repeat in range(repeats):
        order = ("bare", "fit") if repeat % 2 == 0 else ("fit", "bare")
        for name in order:
            model = copy.deepcopy(initial)
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            loops[name](model, train_set, **options)
            times[name, "cpu"].append(time.process_time() - start_cpu)
            times[name, "wall"].append(time.perf_counter() - start_wall)
    result = {}
    for clock in ("cpu", "wall"):
        overheads = [fit / bare - 1.0 for fit, bare in zip(times["fit", clock], times["bare", clock])]
        result[clock] = {"bare": statistics.median(times["bare", clock]),
                         "fit": statistics.median(times["fit", clock]),
                         "overhead": statistics.median(overheads), "overheads": overheads}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=default_image_size())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--scratch-steps", type=int, default=30)
    parser.add_argument("--lite0-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    output_arguments(parser)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = get_device()
    train_set = data.make_dataset(32, image_size=args.image_size, seed=0)  # 192 images: 6 full batches of 32
    train_set = train_set.subset(range(len(train_set) // args.batch_size * args.batch_size))
    models = {
        "scratch CNN": (scratch.make_scratch_cnn(6, seed=0), args.scratch_steps, 3e-3),
        "Lite0 (full fine-tuning)": (backbones.load_backbone(num_classes=6, seed=0), args.lite0_steps, 1e-3),
    }
    results = {}
    for name, (initial, num_steps, lr) in models.items():
        results[name] = measure(initial, train_set, args.repeats, lr=lr, batch_size=args.batch_size,
                                num_steps=num_steps, device=device)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"train.fit vs a bare loop, {len(train_set)} images, {args.image_size} px, batch {args.batch_size}, "
              f"AdamW, constant lr, no validation, medians of {args.repeats} runs each (ABBA order), {device}, "
              f"{torch.get_num_threads()} threads, load average {load:.1f}")
    table = ("| model | steps | clock | bare loop s | fit s | fit overhead (median of pairs) |\n"
             "|---|---|---|---|---|---|\n")
    table += "\n".join(
        f"| {name} | {models[name][1]} | {clock} | {r[clock]['bare']:.2f} | {r[clock]['fit']:.2f} | "
        f"{100 * r[clock]['overhead']:+.1f} % |" for name, r in results.items() for clock in ("cpu", "wall"))
    summary = "target: overhead <= 5 %"
    record = json.dumps({
        "benchmark": "bench_loop", "image_size": args.image_size, "batch_size": args.batch_size,
        "repeats": args.repeats, "threads": torch.get_num_threads(), "load_average": round(load, 2),
        "torch": torch.__version__, "device": str(device),
        "results": {name: {"num_steps": models[name][1], **{
            clock: {"bare_seconds": round(r[clock]["bare"], 3), "fit_seconds": round(r[clock]["fit"], 3),
                    "overhead": round(r[clock]["overhead"], 4),
                    "overheads": [round(value, 4) for value in r[clock]["overheads"]]}
            for clock in ("cpu", "wall")}} for name, r in results.items()},
    })
    print(f"{header}\n{table}\n{summary}\n{record}")
    save_result(args, RESULTS, f"# bench_loop\n\n{header}\n\n{table}\n\n{summary}\n\n"
                               f"Command: `.venv/bin/python benchmarks/bench_loop.py {' '.join(sys.argv[1:])}`\n\n"
                               f"```json\n{record}\n```\n")


if __name__ == "__main__":
    main()

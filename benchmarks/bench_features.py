"""Benchmark: feature-extraction speed of the pretrained backbone, with and without channels_last.

Measures images per second of ``forward_features`` (the output of the backbone's last depth,
before pooling) under ``torch.inference_mode()`` on the device ``companion.repro.get_device``
picks: one warm-up pass each, then the best of ``--repeats`` timed passes over
``--num-batches`` batches. The inputs are normalised with the backbone's own spec
(`companion.backbones.preprocess(images, model)`); the ``channels_last`` copy is made with
``model.to(memory_format=torch.channels_last)``, the layout `companion.train` and
`companion.features` use. The two layouts alternate within each repeat so that load from other
processes hits both alike. Prints a table and one JSON line and writes
``benchmarks/results/bench_features.md`` (not with ``--dry-run``).

Usage::

    .venv/bin/python benchmarks/bench_features.py                 # 64 px (IMAGE_SIZE), batch 64, best of 3
    .venv/bin/python benchmarks/bench_features.py --image-size 224 --threads 2
    .venv/bin/python benchmarks/bench_features.py --batch-size 4 --num-batches 1 --repeats 1 --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import timm
import torch

from companion.backbones import load_backbone, preprocess, spec_of
from companion.repro import get_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_image_size, output_arguments, save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_features.md"


def seconds(model: torch.nn.Module, batch: torch.Tensor, num_batches: int) -> float:
    """Return the wall time of ``num_batches`` forward passes of ``batch``."""
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(num_batches):
            model.forward_features(batch)  # (B, 1280, H/32, W/32) for Lite0
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=default_image_size())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    output_arguments(parser)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = get_device()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.image_size, args.image_size),
                           dtype=torch.uint8, generator=generator)
    contiguous = load_backbone().eval().to(device)
    channels_last = load_backbone().eval().to(device, memory_format=torch.channels_last)
    spec = spec_of(contiguous)
    batch = preprocess(images, spec).to(device)  # (B, 3, H, W), normalised with the backbone's mean and std
    setups = {
        "contiguous": (contiguous, batch),
        "channels_last": (channels_last, batch.contiguous(memory_format=torch.channels_last)),
    }
    best = {layout: float("inf") for layout in setups}
    for model, inputs in setups.values():
        seconds(model, inputs, 1)  # warm-up: allocations, oneDNN kernel choice
    for _ in range(args.repeats):
        for layout, (model, inputs) in setups.items():
            best[layout] = min(best[layout], seconds(model, inputs, args.num_batches))
    results = {layout: args.num_batches * args.batch_size / time_s for layout, time_s in best.items()}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"{spec.name} forward_features, {args.image_size} px, batch {args.batch_size}, best of {args.repeats} "
        f"x {args.num_batches} batches, {device}, torch {torch.__version__}, timm {timm.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.1f}",
        "", "| memory format | images/s |", "|---|---|",
        *(f"| {layout} | {speed:.0f} |" for layout, speed in results.items()),
        "", f"channels_last speed-up: x{results['channels_last'] / results['contiguous']:.2f}",
        "", "```json", json.dumps({
            "benchmark": "bench_features", "backbone": spec.name, "image_size": args.image_size,
            "batch_size": args.batch_size, "repeats": args.repeats, "num_batches": args.num_batches,
            "device": str(device), "torch": torch.__version__, "timm": timm.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": round(load, 2),
            "machine": platform.machine(),
            "images_per_second": {layout: round(speed, 1) for layout, speed in results.items()},
        }), "```",
    ]
    print("\n".join(lines))
    save_result(args, RESULTS, "# bench_features\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

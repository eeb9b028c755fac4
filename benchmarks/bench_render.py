"""Benchmark: how many warehouse photos per second the renderer makes, per camera preset.

Renders ``--num-images`` photos (all six classes) per preset of `companion.cameras.CAMERA_PRESETS`
with `companion.render.render_parcels` at ``--image-size`` px after one warm-up call, best of
``--repeats``; prints a table and one JSON line and writes ``benchmarks/results/bench_render.md``
(not with ``--dry-run``). Loading a cached dataset (``data.make_dataset`` after the first call,
from a temporary cache folder) is timed too, since that is what notebooks pay.

Usage::

    .venv/bin/python benchmarks/bench_render.py                  # 64 px (IMAGE_SIZE), 1,024 images, best of 3
    .venv/bin/python benchmarks/bench_render.py --threads 1
    .venv/bin/python benchmarks/bench_render.py --num-images 6 --repeats 1 --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from companion import data, render
from companion.cameras import CAMERA_PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_image_size, output_arguments, save_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_render.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=default_image_size())
    parser.add_argument("--num-images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    output_arguments(parser)
    args = parser.parse_args()
    if args.num_images < len(render.CLASSES):
        parser.error(f"--num-images must be at least {len(render.CLASSES)}, one per class")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    labels = np.arange(args.num_images) % len(render.CLASSES)
    results = {}
    for camera in CAMERA_PRESETS:
        render.render_parcels(labels[:64], camera, seed=0, image_size=args.image_size)  # warm-up
        best = float("inf")
        for repeat in range(args.repeats):
            start = time.perf_counter()
            render.render_parcels(labels, camera, seed=repeat, image_size=args.image_size)
            best = min(best, time.perf_counter() - start)
        results[f"render {camera}"] = args.num_images / best
    with tempfile.TemporaryDirectory() as cache_dir:
        per_class = args.num_images // len(render.CLASSES)
        data.make_dataset(per_class, "existing", image_size=args.image_size, cache_dir=cache_dir)
        start = time.perf_counter()
        data.make_dataset(per_class, "existing", image_size=args.image_size, cache_dir=cache_dir)
        results["load from disk cache"] = per_class * len(render.CLASSES) / (time.perf_counter() - start)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"renderer {render.RENDERER_VERSION}, {args.image_size} px, {args.num_images} images, best of "
        f"{args.repeats}, torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.1f}",
        "", "| what | images/s |", "|---|---|",
        *(f"| {name} | {rate:,.0f} |" for name, rate in results.items()),
        "", "```json", json.dumps({"benchmark": "render", "image_size": args.image_size,
                                   "threads": torch.get_num_threads(), "load_average": round(load, 2),
                                   **{k: round(v, 1) for k, v in results.items()}}), "```",
    ]
    print("\n".join(lines))
    save_result(args, RESULTS, "# bench_render\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

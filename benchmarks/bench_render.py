"""Benchmark: how many warehouse photos per second the renderer makes, per camera preset.

Renders ``--num-images`` photos (all six classes) per preset at ``--image-size`` px after one
warm-up call, best of ``--repeats``; prints a table and one JSON line. Loading a cached dataset
(``data.make_dataset`` after the first call) is timed too, since that is what notebooks pay.

Usage::

    .venv/bin/python benchmarks/bench_render.py                  # 112 px, 1,024 images, best of 3
    .venv/bin/python benchmarks/bench_render.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from companion import data, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--num-images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    labels = np.arange(args.num_images) % len(render.CLASSES)
    results = {}
    for camera in render.CAMERA_PRESETS:
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
    print(f"renderer {render.RENDERER_VERSION}, {args.image_size} px, {args.num_images} images, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'what':<24}{'images/s':>12}")
    for name, rate in results.items():
        print(f"{name:<24}{rate:>12,.0f}")
    print(json.dumps({"benchmark": "render", "image_size": args.image_size, "threads": torch.get_num_threads(),
                      **{k: round(v, 1) for k, v in results.items()}}))


if __name__ == "__main__":
    main()

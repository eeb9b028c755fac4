"""Does the course's scratch recipe reach the calibration's scratch figure on the existing camera?

Scope: `results/calibration.md` trained the scratch CNN on the existing camera at 300 labels per
class to 89.6 +- 1.2 % (112 px, a fixed 20 epochs at 3e-3). The chapters train scratch with
`companion.recipes.RECIPES["scratch"]` instead: 64 px, the rate its search chose for 300 labels
per class, and the course's stopping rule. This script trains that recipe on the same camera and
budget, 3 seeds (each drawing its own 300 per class from a pool of 400 per class), validation 50
per class and test 100 per class, each rendered with a render seed of its own, and writes the
table, the schedule check and the gap to the calibration figure to
`results/check_scratch_recipe.md`. Runs are cached like every grid (`companion.grid.run_grid`).

Usage::

    python benchmarks/check_scratch_recipe.py            # about 40 CPU-minutes, cold
    python benchmarks/check_scratch_recipe.py --dry-run  # print only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import output_arguments, save_result

CALIBRATION = 0.896  # results/calibration.md: existing camera, 300/class, scratch, mean of 3 seeds
RESULT = Path(__file__).resolve().parent / "results" / "check_scratch_recipe.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    output_arguments(parser)
    args = parser.parse_args(argv)

    from companion import data, grid, repro
    from companion.recipes import IMAGE_SIZE, RECIPES

    repro.seed_everything(0)
    pool = data.make_dataset(400, camera="existing", seed=0, image_size=IMAGE_SIZE)
    val_set = data.make_dataset(50, camera="existing", seed=1, image_size=IMAGE_SIZE)
    test_set = data.make_dataset(100, camera="existing", seed=2, image_size=IMAGE_SIZE)
    rows = grid.run_grid({"scratch": RECIPES["scratch"]}, pool, val_set, test_set,
                         budgets=[300], seeds=list(range(args.seeds)))
    summary = grid.summarize(rows)["scratch", 300]
    gap = 100 * (summary["mean"] - CALIBRATION)
    text = "\n".join([
        "# The course's scratch recipe on the existing camera, 300 labels per class",
        "",
        f"Test: {len(test_set)} images; {args.seeds} seeds; image size {IMAGE_SIZE} px.",
        "",
        "```",
        grid.schedule_check(rows),
        "",
        grid.table(rows),
        "```",
        "",
        f"Mean test accuracy {summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]; "
        f"calibration (112 px, 20 epochs at 3e-3) {CALIBRATION:.3f}; gap {gap:+.1f} points.",
        "",
    ])
    print(text)
    save_result(args, RESULT, text)


if __name__ == "__main__":
    main()

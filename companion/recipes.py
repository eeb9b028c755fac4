"""One recipe per strategy, as data: how every comparison of the course trains its contenders.

Scope: a `StrategyConfig` holds everything that decides how a strategy is trained except the
data, the learning rate and the seed: which depths train, the search grid (five learning
rates, or five values of ``C`` for the linear probe), the batch size, the stopping rule and its
limits. `RECIPES` has one per strategy, and every chapter that ranks strategies takes them from
here; a chapter changes a setting only to teach that setting (``RECIPES["scratch"].with_(...)``),
and says so.

The stopping rule is the same for every strategy: validate after every ``eval_images`` training
images (at least one epoch), keep the best weights, stop after ``patience`` validation passes
without improvement, and give up at ``max_passes`` passes, a ceiling the typical run does not
reach (a run that does is flagged by `companion.strategies.schedule_check`). `schedule_for`
turns this into epochs for a training set of a given size, so a 30-image set and an
1,800-image set both see about the same number of images between two checks.

Usage::

    >>> from companion.recipes import RECIPES
    >>> RECIPES["full_finetune"].grid
    (0.0001, 0.0003, 0.001, 0.003, 0.01)
    >>> RECIPES["full_finetune"].schedule_for(num_train=120)
    Schedule(eval_every=2, max_epochs=80, patience=5)

Taught in ``notebooks/04_feature_extraction_vs_fine_tuning.ipynb``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

from companion import backbones, probes
from companion.validation import check, check_choice, check_float, check_int, invalid

__all__ = ["STRATEGIES", "BATCHNORM", "StrategyConfig", "Schedule", "RECIPES", "IMAGE_SIZE"]

STRATEGIES = ("linear_probe", "head_only", "partial_finetune", "full_finetune", "lp_ft", "scratch")
BATCHNORM = ("train", "frozen", "adabn")
IMAGE_SIZE = backbones.get_spec().image_size  # px (64): the size every comparison renders its parcels at


class Schedule(NamedTuple):
    """`train.fit` settings for one training-set size: validate every ``eval_every`` epochs."""

    eval_every: int
    max_epochs: int
    patience: int


@dataclass(frozen=True)
class StrategyConfig:
    """How one strategy trains; `RECIPES` holds the course's, `with_` derives a variant.

    ``grid``: the learning rates the search tries (for ``linear_probe``, its values of ``C``;
    for ``lp_ft``, the fine-tuning phase's rates: its first phase is a linear probe, whose ``C``
    is searched on validation inside the run). ``top_k_stages``: trainable depths from the top for
    ``partial_finetune``. ``head_lr_mult``: the new head's rate as a multiple of the backbone's
    (``head_only``, ``partial_finetune``, ``full_finetune``; LP-FT's probed head fine-tunes at
    ``lr`` with the rest).
    ``scratch_width``: base channels of the scratch CNN. ``batchnorm``: ``"train"`` (the
    BatchNorm layers of trainable depths normalise with batch statistics and update their
    running ones, frozen depths keep the source's), ``"frozen"`` (every BatchNorm layer keeps
    the source's statistics and its scale and shift: nothing about normalisation adapts) or
    ``"adabn"`` (before training, every BatchNorm layer re-estimates its statistics on the
    training images, `companion.adapt.adabn`, then training goes on as with ``"train"``).
    ``tuned``: ``(labels per class, grid value)`` pairs chosen by the search of
    ``benchmarks/tune_recipes.py`` (see `value_for`).
    """

    strategy: str
    label: str
    grid: tuple[float, ...]
    batch_size: int = 32
    eval_images: int = 200
    patience: int = 5
    max_passes: int = 40
    top_k_stages: int | None = None
    head_lr_mult: float = 10.0
    scratch_width: int = 32
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    batchnorm: str = "train"
    tuned: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        func = "StrategyConfig"
        check_choice(self.strategy, "strategy", func, STRATEGIES)
        check(isinstance(self.grid, tuple) and len(self.grid) > 0 and len(set(self.grid)) == len(self.grid),
              self.grid, "grid", func, "a non-empty tuple of distinct floats > 0")
        for value in self.grid:
            check_float(value, "grid", func, low=0.0, low_open=True)
        for name, low in (("batch_size", 1), ("eval_images", 1), ("patience", 1), ("max_passes", 1),
                          ("scratch_width", 2)):
            check_int(getattr(self, name), name, func, low=low)
        check(self.patience < self.max_passes, self.patience, "patience", func, "smaller than max_passes")
        check_float(self.head_lr_mult, "head_lr_mult", func, low=0.0, low_open=True)
        check_choice(self.batchnorm, "batchnorm", func, BATCHNORM)
        check(self.batchnorm == "train" or self.strategy != "scratch", self.batchnorm, "batchnorm", func,
              "'train' for scratch, which has no source statistics to keep")
        partial = self.strategy == "partial_finetune"
        check(partial == (self.top_k_stages is not None), self.top_k_stages, "top_k_stages", func,
              "an int >= 1 for partial_finetune and None for every other strategy")
        if partial:
            check_int(self.top_k_stages, "top_k_stages", func, low=1)
        check(isinstance(self.tuned, tuple) and all(
            isinstance(pair, tuple) and len(pair) == 2 and pair[1] in self.grid for pair in self.tuned), self.tuned,
            "tuned", func, "a tuple of (labels per class, value of grid) pairs")

    def with_(self, **changes) -> StrategyConfig:
        """A copy with some settings changed, e.g. ``RECIPES["scratch"].with_(scratch_width=16)``.

        A new ``grid`` keeps only the tuned pairs whose value it still holds.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise invalid(unknown[0], "changes", "StrategyConfig.with_",
                          f"names of StrategyConfig fields {[f.name for f in dataclasses.fields(self)]}")
        if "grid" in changes and "tuned" not in changes:
            changes["tuned"] = tuple(pair for pair in self.tuned if pair[1] in tuple(changes["grid"]))
        return dataclasses.replace(self, **changes)

    def schedule_for(self, num_train: int) -> Schedule:
        """Epochs for a training set of ``num_train`` images: a check every ``eval_images`` images."""
        num_train = check_int(num_train, "num_train", "StrategyConfig.schedule_for", low=1)
        eval_every = max(1, math.ceil(self.eval_images / num_train))
        return Schedule(eval_every, eval_every * self.max_passes, self.patience)

    def value_for(self, n_per_class: int) -> float:
        """The searched value (learning rate, or C for the probe) for a budget of ``n_per_class``.

        The value tuned at the nearest budget on a log scale (the smaller one on a tie); with
        nothing tuned, a one-value grid gives that value.

        >>> RECIPES["scratch"].with_(tuned=((5, 0.01), (100, 0.003))).value_for(20)
        0.01
        """
        n_per_class = check_int(n_per_class, "n_per_class", "StrategyConfig.value_for", low=1)
        if not self.tuned and len(self.grid) == 1:
            return self.grid[0]
        check(len(self.tuned) > 0, self, "config", "StrategyConfig.value_for",
              "a recipe with tuned values (run benchmarks/tune_recipes.py)")
        budget, value = min(self.tuned, key=lambda pair: (abs(math.log(pair[0] / n_per_class)), pair[0]))
        return value

    @property
    def tunes_lr(self) -> bool:
        """False for the linear probe, whose grid holds values of C, searched inside one run."""
        return self.strategy != "linear_probe"


_FRAME = dict(batch_size=32, eval_images=200, patience=5, max_passes=40)  # one stopping rule for all
# Five rates per strategy, half a decade apart, placed where its search found the best rates: the
# head alone prefers smaller rates than the strategies that move the backbone (tuned_recipes.md).
_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
_HEAD_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
# ``tuned``: the search of benchmarks/tune_recipes.py (results/tuned_recipes.md), pasted by hand.
RECIPES: dict[str, StrategyConfig] = {
    "linear_probe": StrategyConfig(
        "linear_probe", "linear probe", probes.CS, **_FRAME,
        tuned=((5, 0.01), (20, 0.001), (50, 0.1), (100, 0.1), (300, 0.01))),
    "head_only": StrategyConfig(
        "head_only", "head only", _HEAD_GRID, **_FRAME,
        tuned=((5, 0.0001), (20, 0.0003), (50, 0.001), (100, 3e-05), (300, 3e-05))),
    "partial_top2": StrategyConfig(
        "partial_finetune", "partial (top 2)", _LR_GRID, top_k_stages=2, **_FRAME,
        tuned=((5, 0.0003), (20, 0.0003), (50, 0.0003), (100, 0.003), (300, 0.003))),
    "full_finetune": StrategyConfig(
        "full_finetune", "full fine-tuning", _LR_GRID, **_FRAME,
        tuned=((5, 0.001), (20, 0.001), (50, 0.001), (300, 0.001))),
    "lp_ft": StrategyConfig(
        "lp_ft", "LP-FT", _LR_GRID, **_FRAME,
        tuned=((20, 0.0001),)),
    "scratch": StrategyConfig(
        "scratch", "scratch", (3e-3, 1e-2, 3e-2, 1e-1, 3e-1), **_FRAME,
        tuned=((5, 0.03), (20, 0.3), (50, 0.1), (100, 0.03), (300, 0.01))),
}

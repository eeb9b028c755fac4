"""Sample efficiency: accuracy against the number of labels, cheaply, and what to read off the curves.

Scope: a sample-efficiency curve trains one strategy on many label budgets (5, 10, ...,
300 labels per class) and several seeds, all drawn from one pool of images. Two things make
that affordable on a CPU, and two functions read the curves:

- `frozen_prefix` runs the frozen depths of a pretrained backbone ONCE over the whole pool
  and finds any subset's rows by image content, so every budget and seed reuses that pass:
  `FrozenPrefix.features` gives the pooled final features for a linear probe, and
  `run_partial_finetune` trains the top depths on the cached activations (the recipe of
  ``strategies.run_strategy("partial_finetune", ...)`` without recomputing the prefix);
  `prefix_accuracy` scores it on a test set that is also in the pool.
- `labels_to_reach` interpolates a curve on a log scale of labels to find the budget at which
  it first reaches an accuracy; `crossing_budget` finds where two curves cross.

Usage::

    from companion import backbones, data, efficiency
    model = backbones.load_backbone(pretrained=True)
    prefix = efficiency.frozen_prefix(model, pool, num_frozen=7)
    result = efficiency.run_partial_finetune(prefix, data.sample_per_class(train, 20, seed=0), val,
                                             lr=1e-3, num_epochs=15, seed=0)
    print(efficiency.prefix_accuracy(result, prefix, test))
    efficiency.labels_to_reach([5, 20, 100], [0.40, 0.70, 0.90], target=0.8)  # 44.7

Taught in ``notebooks/06_sample_efficiency.ipynb``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from companion import adapt, backbones, repro, strategies, train
from companion.data import ImageSet
from companion.train import _check, _check_image_set, _check_train_val, _is_float, _is_int

__all__ = ["FrozenPrefix", "frozen_prefix", "run_partial_finetune", "prefix_accuracy", "labels_to_reach",
           "crossing_budget"]

NUM_DEPTHS = backbones.NUM_DEPTHS


def _digest(image: torch.Tensor) -> bytes:
    """A fingerprint of one uint8 image (C, H, W): its shape and bytes."""
    hasher = hashlib.blake2b(str(tuple(image.shape)).encode(), digest_size=16)
    hasher.update(image.contiguous().numpy().tobytes())
    return hasher.digest()


@dataclass
class FrozenPrefix:
    """The output of depths ``[0, num_frozen)`` of a frozen backbone for every image of a pool.

    ``activations`` is ``(N, C, h, w)`` (eval mode, computed once); ``model`` is the frozen
    backbone that produced it. Any dataset whose images all come from the pool (a split, a
    `data.sample_per_class` subset) is served from it by image content.
    """

    model: nn.Module = field(repr=False)
    num_frozen: int
    activations: torch.Tensor = field(repr=False)
    _rows: dict = field(repr=False)
    _known: dict = field(default_factory=dict, repr=False)

    def rows(self, dataset: ImageSet) -> torch.Tensor:
        """Row of each image of ``dataset`` in the pool, shape ``(len(dataset),)`` int64.

        Usage: ``prefix.rows(data.sample_per_class(train, 5, seed=0))``
        """
        _check(isinstance(dataset, ImageSet), "dataset", "FrozenPrefix.rows", "a companion.data.ImageSet",
               dataset, TypeError)
        known = self._known.get(id(dataset))
        if known is not None and known[0] is dataset:
            return known[1]
        rows = []
        for position, image in enumerate(dataset.images):
            row = self._rows.get(_digest(image))
            if row is None:
                raise ValueError(f"FrozenPrefix.rows: image {position} of the dataset is not in the pool the "
                                 "prefix was computed on. Subset the pool (data.stratified_split, "
                                 "data.sample_per_class) or call frozen_prefix on a pool holding these images.")
            rows.append(row)
        rows = torch.tensor(rows, dtype=torch.int64)  # (N,)
        self._known[id(dataset)] = (dataset, rows)
        return rows

    def model_input(self, dataset: ImageSet, indices: torch.Tensor) -> torch.Tensor:
        """The cached activations of ``dataset``'s images at ``indices``: a `train.fit` ``model_input``."""
        return self.activations[self.rows(dataset)[indices].to(self.activations.device)]  # (B, C, h, w)

    def features(self, dataset: ImageSet, *, batch_size: int = 256) -> np.ndarray:
        """Pooled final features ``(N, F)`` of ``dataset`` (1280 for Lite0), from the cached prefix.

        The same numbers as ``features.extract_features(model, dataset)`` up to float rounding,
        without running the frozen prefix again. Usage: ``X = prefix.features(train_set)``
        """
        _check(_is_int(batch_size, 1), "batch_size", "FrozenPrefix.features", "an int >= 1", batch_size)
        rows = self.rows(dataset)
        depths = [stage for _, stage in backbones.stages(self.model)[self.num_frozen:]]
        chunks = []
        self.model.eval()
        with torch.inference_mode():
            for batch in rows.split(batch_size):
                x = self.activations[batch.to(self.activations.device)]  # (B, C, h, w)
                for stage in depths:
                    x = stage(x)  # (B, C_k, h_k, w_k)
                chunks.append(x.mean(dim=(2, 3)).float().cpu())  # (B, F)
        return torch.cat(chunks).numpy()  # (N, F)


def frozen_prefix(model: nn.Module, pool: ImageSet, num_frozen: int, *, batch_size: int = 128,
                  device: torch.device | str | None = None) -> FrozenPrefix:
    """Run depths ``[0, num_frozen)`` of ``model`` once over ``pool`` (eval mode); return a `FrozenPrefix`.

    ``num_frozen`` counts depths of `backbones.stages` from the bottom: 7 leaves ``blocks.6``
    and ``head`` to train (``top_k_stages=2``); 9 (`NUM_DEPTHS`) freezes the whole backbone.
    The model is copied, so later changes to it do not affect the prefix. Memory: 192 x 4 x 4
    floats (12 KB) per 112-px image at ``num_frozen=7``.

    Usage: ``prefix = frozen_prefix(backbones.load_backbone(pretrained=True), pool, num_frozen=7)``
    """
    func = "frozen_prefix"
    _check(isinstance(model, nn.Module), "model", func, "a torch.nn.Module", model, TypeError)
    backbones.stages(model)  # raises TypeError for a model without depths
    _check_image_set(pool, "pool", func)
    _check(_is_int(num_frozen, 1) and num_frozen <= NUM_DEPTHS, "num_frozen", func,
           f"an int in [1, {NUM_DEPTHS}]", num_frozen)
    _check(_is_int(batch_size, 1), "batch_size", func, "an int >= 1", batch_size)
    device = repro.get_device(device)
    model = copy.deepcopy(model).to(device, memory_format=torch.channels_last).eval()
    adapt.freeze(model, NUM_DEPTHS)
    prefix = nn.Sequential(*(stage for _, stage in backbones.stages(model)[:num_frozen]))
    chunks = []
    with torch.inference_mode():
        for indices in torch.arange(len(pool)).split(int(batch_size)):
            chunks.append(prefix(train._to_input(pool.images[indices], device)))  # (B, C, h, w)
    activations = torch.cat(chunks).clone()  # (N, C, h, w): a normal tensor, usable by autograd
    rows = {}
    for row, image in enumerate(pool.images):
        rows.setdefault(_digest(image), row)  # a repeated image has the same activations
    return FrozenPrefix(model, int(num_frozen), activations, rows)


def run_partial_finetune(prefix: FrozenPrefix, train_set: ImageSet, val_set: ImageSet | None, *, lr: float,
                         num_epochs: int, seed: int = 0, head_lr_mult: float = 10.0, batch_size: int = 32,
                         patience: int | None = None, max_steps: int | None = None,
                         device: torch.device | str | None = None) -> strategies.StrategyResult:
    """Partial fine-tuning of the depths above ``prefix.num_frozen``, fed by the cached prefix.

    The recipe of ``strategies.run_strategy("partial_finetune", ...,
    top_k_stages=NUM_DEPTHS - prefix.num_frozen)``: a new head (its random start follows
    ``seed``, though not the same draw as `run_strategy`'s), the head at ``head_lr_mult * lr``,
    `train.fit` with early stopping (``patience``) on ``val_set``. Every image of
    ``train_set`` and ``val_set`` must be in the prefix's pool. Score the result with
    `prefix_accuracy` (fast) or `strategies.evaluate_strategy` (runs the whole network).

    Usage: ``result = run_partial_finetune(prefix, train_set, val_set, lr=1e-3, num_epochs=15, seed=0)``
    """
    func = "run_partial_finetune"
    _check(isinstance(prefix, FrozenPrefix), "prefix", func, "a FrozenPrefix from frozen_prefix", prefix, TypeError)
    _check_train_val(train_set, val_set, func)
    _check(prefix.num_frozen < NUM_DEPTHS, "prefix", func,
           f"a FrozenPrefix with num_frozen < {NUM_DEPTHS} (something left to fine-tune)", prefix.num_frozen)
    _check(_is_float(lr, 0.0, strict=True), "lr", func, "a float > 0", lr)
    _check(_is_float(head_lr_mult, 0.0, strict=True), "head_lr_mult", func, "a float > 0", head_lr_mult)
    _check(_is_int(seed, 0), "seed", func, "an int >= 0", seed)
    start = time.perf_counter()
    model = copy.deepcopy(prefix.model)
    with torch.random.fork_rng(devices=[]):  # the new head's weights follow ``seed`` only
        torch.manual_seed(seed)
        model.reset_classifier(len(train_set.classes))
    adapt.freeze(model, prefix.num_frozen)
    groups = adapt.param_groups(model, lr=lr, head_lr_mult=head_lr_mult)
    history = train.fit(strategies._Suffix(model, prefix.num_frozen), train_set, val_set, num_epochs=num_epochs,
                        lr=lr, batch_size=batch_size, patience=patience, seed=seed, device=device,
                        progress=False, max_steps=max_steps, param_groups=groups,
                        model_input=prefix.model_input)
    model.eval()
    config = {"strategy": "partial_finetune", "lr": lr, "num_epochs": num_epochs, "seed": seed,
              "top_k_stages": NUM_DEPTHS - prefix.num_frozen, "head_lr_mult": head_lr_mult,
              "batch_size": batch_size, "patience": patience, "max_steps": max_steps, "cached_prefix": True}
    return strategies.StrategyResult("partial_finetune", model, {"fit": history},
                                     adapt.count_parameters(model)["trainable"], time.perf_counter() - start,
                                     config)


def prefix_accuracy(result: strategies.StrategyResult, prefix: FrozenPrefix, test_set: ImageSet) -> float:
    """Test accuracy of a `run_partial_finetune` result, its frozen depths read from ``prefix``.

    Usage: ``prefix_accuracy(result, prefix, test_set)``
    """
    func = "prefix_accuracy"
    _check(isinstance(result, strategies.StrategyResult) and result.config.get("cached_prefix") is True,
           "result", func, "a StrategyResult from run_partial_finetune", result, TypeError)
    _check(isinstance(prefix, FrozenPrefix), "prefix", func, "a FrozenPrefix from frozen_prefix", prefix, TypeError)
    _check_image_set(test_set, "test_set", func)
    suffix = strategies._Suffix(result.model, prefix.num_frozen)
    return train.evaluate(suffix, test_set, model_input=prefix.model_input)["accuracy"]


# ----------------------------------------------------------------------------- reading the curves
def _curve(budgets, accuracy, name: str, func: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated budgets (increasing, > 0) and a mean accuracy per budget (2-D input: mean over seeds)."""
    budgets_array = np.asarray(budgets, dtype=float)
    ok = budgets_array.ndim == 1 and len(budgets_array) >= 2 and np.all(np.isfinite(budgets_array)) \
        and np.all(budgets_array > 0) and np.all(np.diff(budgets_array) > 0)
    _check(bool(ok), "budgets", func, "a sequence of at least 2 increasing numbers > 0", budgets)
    values = np.asarray(accuracy, dtype=float)
    if values.ndim == 2:
        values = values.mean(axis=0)  # (num_seeds, num_budgets) -> (num_budgets,)
    ok = values.ndim == 1 and len(values) == len(budgets_array) and np.all(np.isfinite(values))
    _check(bool(ok), name, func, f"{len(budgets_array)} finite accuracies, shape ({len(budgets_array)},) or "
           f"(num_seeds, {len(budgets_array)}), one per budget", accuracy)
    return budgets_array, values


def labels_to_reach(budgets, accuracy, target: float) -> float:
    """The label budget at which a curve first reaches ``target``, interpolated on a log scale.

    ``accuracy`` holds one value per budget (or ``(num_seeds, num_budgets)``: the mean is used).
    Between two measured budgets the curve is taken as a straight line in log(budget), the
    scale on which these curves are plotted. Returns ``budgets[0]`` when the first budget
    already reaches ``target`` (the true need may be lower: treat it as an upper bound) and
    ``math.inf`` when no budget does.

    Usage: ``labels_to_reach([5, 20, 100], [0.40, 0.70, 0.90], target=0.8)  # 44.7 labels``
    """
    func = "labels_to_reach"
    budgets, values = _curve(budgets, accuracy, "accuracy", func)
    _check(_is_float(target, -math.inf, strict=True), "target", func, "a finite float", target)
    if values[0] >= target:
        return float(budgets[0])
    for i in range(1, len(budgets)):
        if values[i] >= target:
            fraction = (target - values[i - 1]) / (values[i] - values[i - 1])  # in (0, 1]
            log_budget = np.log(budgets[i - 1]) + fraction * (np.log(budgets[i]) - np.log(budgets[i - 1]))
            return float(np.exp(log_budget))
    return math.inf


def crossing_budget(budgets, accuracy_a, accuracy_b) -> float | None:
    """The budget where curve ``a`` and curve ``b`` first cross (log-scale interpolation), or None.

    A crossing is a change of sign of ``a - b`` between two measured budgets (or an exact tie
    at a budget after a non-zero gap). Returns None when one curve stays above the other at
    every budget: then they do not cross within the measured range.

    Usage: ``crossing_budget([5, 50, 300], [0.6, 0.7, 0.75], [0.2, 0.6, 0.85])  # ~110``
    """
    func = "crossing_budget"
    budgets, a = _curve(budgets, accuracy_a, "accuracy_a", func)
    _, b = _curve(budgets, accuracy_b, "accuracy_b", func)
    gap = a - b  # (num_budgets,)
    for i in range(1, len(budgets)):
        if gap[i - 1] != 0 and (gap[i] == 0 or np.sign(gap[i]) != np.sign(gap[i - 1])):
            fraction = gap[i - 1] / (gap[i - 1] - gap[i])  # in (0, 1]
            log_budget = np.log(budgets[i - 1]) + fraction * (np.log(budgets[i]) - np.log(budgets[i - 1]))
            return float(np.exp(log_budget))
    return None

"""The reuse regimes of the course, each trained by the one loop `companion.train.fit`.

Scope: `run_strategy` builds the model a `companion.recipes.StrategyConfig` describes and trains
it at one learning rate and seed; `tune_and_run` gives it the learning-rate search of its
recipe on the validation split (every strategy, the scratch baseline included, tries the same
number of values); `evaluate_strategy` scores a result on a test split, image by image. The
regimes, from least to most adapted:

- ``linear_probe``: logistic regression (`companion.probes.fit_probe`, ``C`` from the recipe's
  grid, chosen on validation) on the pooled features of the frozen backbone, copied into the
  model's classifier, so the result is an ordinary model.
- ``head_only``: the backbone frozen, a new head trained by `fit`.
- ``partial_finetune``: the top ``top_k_stages`` depths and the head train, the head at
  ``head_lr_mult`` times ``lr`` (`adapt.param_groups`).
- ``full_finetune``: everything trains, the head at ``head_lr_mult`` times ``lr``.
- ``lp_ft``: a linear probe first (logistic regression on the frozen backbone's pooled
  features, ``C`` searched on validation over `companion.probes.CS`, copied into the head),
  then everything fine-tuned from that head at ``lr``, the head included (linear probing, then
  fine-tuning: Kumar et al., 2022). The probe's head stays a candidate (validation pass 0), so
  fine-tuning is kept only if it improves on it on validation.
- ``scratch``: `companion.scratch.ScratchCNN` trained from random weights.

Frozen depths are run once per image through a shared `companion.prefix.PrefixCache`
(without one, each call makes its own). Grids of runs and their comparison are in
`companion.grid` and `companion.compare`.

Usage::

    >>> from companion import data, strategies
    >>> from companion.recipes import RECIPES
    >>> pool = data.make_dataset(5, seed=0, image_size=32, cache=False)
    >>> result = strategies.run_strategy(RECIPES["head_only"], pool, pool, lr=1e-2, seed=0)
    >>> result.strategy, result.trainable_parameters
    ('head_only', 7686)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from companion import adapt, backbones, prefix, probes, repro, scratch, train
from companion.data import ImageSet
from companion.recipes import StrategyConfig
from companion.validation import (check, check_float, check_image_set, check_instance, check_seed,
                                  check_train_val, invalid)

__all__ = ["StrategyResult", "run_strategy", "tune_and_run", "evaluate_strategy"]


@dataclass
class StrategyResult:
    """A trained model and how it was obtained.

    ``history`` is the `train.History` of the last training phase (None for ``linear_probe``,
    whose fitted `companion.probes.ProbeResult` is in ``probe``).
    ``num_frozen`` counts the bottom depths that kept their loaded weights. ``seconds`` is
    wall-clock time (volatile, left out of the repr).
    """

    config: StrategyConfig
    lr: float | None
    seed: int
    model: nn.Module = field(repr=False)
    history: train.History | None
    trainable_parameters: int
    num_frozen: int
    seconds: float = field(repr=False)
    probe: probes.ProbeResult | None = field(default=None, repr=False)

    @property
    def strategy(self) -> str:
        return self.config.strategy

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy of the selected model (best epoch, or the probe's chosen C)."""
        if self.history is not None:
            return self.history.best_val_accuracy
        return self.probe.val_accuracy


def _num_frozen(config: StrategyConfig, num_depths: int) -> int:
    return {"linear_probe": num_depths, "head_only": num_depths, "lp_ft": 0, "full_finetune": 0,
            "scratch": 0}.get(config.strategy, num_depths - (config.top_k_stages or 0))


def _fit(model: nn.Module, num_frozen: int, config: StrategyConfig, train_set, val_set, *, lr, seed, cache,
         device, progress, param_groups=None, validate_first=False) -> train.History:
    """`train.fit` with the recipe's schedule; depths ``[0, num_frozen)`` read from the prefix cache."""
    schedule = config.schedule_for(len(train_set))
    options = dict(num_epochs=schedule.max_epochs, eval_every=schedule.eval_every, lr=lr, seed=seed,
                   batch_size=config.batch_size, device=device, progress=progress, param_groups=param_groups,
                   patience=schedule.patience if val_set is not None else None, validate_first=validate_first)
    if num_frozen == 0:
        return train.fit(model, train_set, val_set, **options)
    model_input = cache.model_input(model, num_frozen, [train_set, val_set], device=device)
    return train.fit(prefix.Suffix(model, num_frozen), train_set, val_set, model_input=model_input, **options)


def _probe(model: nn.Module, train_set: ImageSet, val_set: ImageSet, Cs, seed: int, cache, device) -> probes.ProbeResult:
    """Fit a linear probe on the pooled output of the whole frozen backbone and copy it into the head."""
    num_depths = backbones.spec_of(model).num_depths
    X_train, X_val = (cache.activations(model, num_depths, dataset, device=device).flatten(1).cpu().numpy()
                      for dataset in (train_set, val_set))  # (N, F), (M, F)
    probe = probes.fit_probe(X_train, train_set.labels, X_val, val_set.labels, Cs=Cs, seed=seed)
    probes.copy_into_classifier(probe, model.get_classifier())
    return probe


def run_strategy(config: StrategyConfig, train_set: ImageSet, val_set: ImageSet | None, *, lr: float | None = None,
                 seed: int = 0, prefix_cache: prefix.PrefixCache | None = None,
                 device: torch.device | str | None = None, progress: bool = False) -> StrategyResult:
    """Build the model of ``config`` and train it at learning rate ``lr`` with ``seed``.

    ``lr=None`` takes the learning rate the recipe's search chose for this budget (the labels
    of the smallest class, `StrategyConfig.value_for`). The linear probe takes no ``lr``: it
    uses its recipe's tuned ``C``, or searches its grid on ``val_set`` when the recipe has no
    tuned values. ``seed`` fixes the new head (or the scratch weights), the batches and the
    probe. Without ``val_set`` a run trains for the recipe's maximum and keeps its last weights
    (the probe and LP-FT need a ``val_set``).
    """
    func = "run_strategy"
    check_instance(config, "config", func, StrategyConfig, "a StrategyConfig (companion.recipes.RECIPES[...])")
    check_train_val(train_set, val_set, func)
    seed = check_seed(seed, "seed", func)
    check_instance(prefix_cache, "prefix_cache", func, prefix.PrefixCache, "None or a prefix.PrefixCache",
                   optional=True)
    labels_per_class = min(train_set.class_counts().values())
    if config.tunes_lr:
        lr = config.value_for(labels_per_class) if lr is None and config.tuned else lr
        lr = check_float(lr, "lr", func, low=0.0, low_open=True,
                         hint="Pass lr, or give the recipe tuned values (benchmarks/tune_recipes.py).")
    elif lr is not None:
        raise invalid(lr, "lr", func, "None for linear_probe", "The probe uses its C grid instead.")
    elif config.tuned:  # the probe's C chosen by the recipe's search for this budget
        config = config.with_(grid=(config.value_for(labels_per_class),), tuned=())
    if val_set is None and config.strategy == "linear_probe":
        raise invalid(val_set, "val_set", func, "an ImageSet for linear_probe: it chooses C on it")
    if config.strategy == "partial_finetune":  # before any work: the backbone must have that many depths
        spec = backbones.get_spec(config.backbone)
        check(config.top_k_stages <= spec.num_depths, config.top_k_stages, "top_k_stages", func,
              f"at most {spec.num_depths}, the number of depths of {spec.name}",
              "Lower it in the recipe: config.with_(top_k_stages=...).")
    cache = prefix_cache if prefix_cache is not None else prefix.PrefixCache()
    device = repro.get_device(device)
    start, history, probe = time.perf_counter(), None, None
    num_classes = len(train_set.classes)
    if config.strategy == "scratch":
        model = scratch.make_scratch_cnn(num_classes, width=config.scratch_width, seed=seed)
    else:
        model = backbones.load_backbone(config.backbone, pretrained=config.pretrained, num_classes=num_classes,
                                        seed=seed)
    num_depths = backbones.spec_of(model).num_depths
    num_frozen = _num_frozen(config, num_depths)
    if config.batchnorm == "adabn":  # the target's own statistics in every BatchNorm layer, before training
        adapt.adabn(model, train_set, batch_size=min(len(train_set), 256), device=device)  # one batch: exact
    fit = dict(lr=lr, seed=seed, cache=cache, device=device, progress=progress)
    if config.strategy == "linear_probe":
        adapt.freeze(model, num_depths)
        probe = _probe(model, train_set, val_set, config.grid, seed, cache, device)
    elif config.strategy == "lp_ft":  # a linear probe first, on the frozen backbone, then everything from it
        adapt.freeze(model, num_depths)
        probe = _probe(model, train_set, val_set, probes.CS, seed, cache, device)
        adapt.unfreeze(model)
        history = _fit(model, 0, config, train_set, val_set, **fit, validate_first=True,
                       param_groups=adapt.param_groups(model, lr=lr, head_lr_mult=1.0))
    elif config.strategy in ("head_only", "partial_finetune", "full_finetune"):
        adapt.freeze(model, num_frozen)
        if config.batchnorm == "frozen":  # scale, shift and statistics of every BatchNorm stay the source's
            adapt.freeze_batchnorm(model)
        groups = adapt.param_groups(model, lr=lr, head_lr_mult=config.head_lr_mult)
        history = _fit(model, num_frozen, config, train_set, val_set, **fit, param_groups=groups)
    elif config.strategy == "scratch":
        history = _fit(model, 0, config, train_set, val_set, **fit)
    model.eval()
    trainable = adapt.count_parameters(model)["trainable"] if config.strategy != "linear_probe" else \
        model.get_classifier().weight.numel() + model.get_classifier().bias.numel()
    return StrategyResult(config, lr, seed, model, history, trainable, num_frozen, time.perf_counter() - start, probe)


def tune_and_run(config: StrategyConfig, train_set: ImageSet, val_set: ImageSet, *, seed: int = 0,
                 prefix_cache: prefix.PrefixCache | None = None, device: torch.device | str | None = None
                 ) -> tuple[StrategyResult, dict[float, float]]:
    """Run ``config`` at every learning rate of its grid; return the best run and every val accuracy.

    The best is chosen on ``val_set`` only (ties go to the smaller rate). The linear probe runs
    once: its ``C`` search happens inside the run, and the scores map each ``C`` to its accuracy.
    """
    check_image_set(val_set, "val_set", "tune_and_run")
    if not config.tunes_lr:
        result = run_strategy(config.with_(tuned=()), train_set, val_set, seed=seed, prefix_cache=prefix_cache,
                              device=device)
        return result, dict(result.probe.val_accuracies)
    cache = prefix_cache if prefix_cache is not None else prefix.PrefixCache()
    runs = {lr: run_strategy(config, train_set, val_set, lr=lr, seed=seed, prefix_cache=cache, device=device)
            for lr in sorted(config.grid)}
    best = max(runs, key=lambda lr: (runs[lr].val_accuracy, -lr))
    return runs[best], {lr: run.val_accuracy for lr, run in runs.items()}


def evaluate_strategy(result: StrategyResult, test_set: ImageSet, *, prefix_cache: prefix.PrefixCache | None = None,
                      device: torch.device | str | None = None) -> dict:
    """Score ``result`` on ``test_set``: ``accuracy``, ``per_class`` accuracies and ``correct`` per image.

    ``correct`` is a boolean array (N,), what `companion.compare` pairs between strategies.
    With the ``prefix_cache`` of the run, frozen depths are read from it, not recomputed.
    """
    func = "evaluate_strategy"
    check_instance(result, "result", func, StrategyResult, "a StrategyResult from run_strategy")
    check_image_set(test_set, "test_set", func)
    device = repro.get_device(device)
    if result.num_frozen and prefix_cache is not None:
        model_input = prefix_cache.model_input(result.model, result.num_frozen, [test_set], device=device)
        predictions = train.predict(prefix.Suffix(result.model, result.num_frozen), test_set, device=device,
                                    model_input=model_input)
    else:
        predictions = train.predict(result.model, test_set, device=device)  # (N,)
    correct = (predictions == test_set.labels).numpy()  # (N,)
    labels = test_set.labels.numpy()
    per_class = {name: float(correct[labels == index].mean()) if (labels == index).any() else float("nan")
                 for index, name in enumerate(test_set.classes)}
    return {"accuracy": float(correct.mean()), "per_class": per_class, "correct": correct}


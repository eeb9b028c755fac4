"""The reuse regimes of the course, each trained by the one loop `companion.train.fit`.

Scope: `run_strategy` builds a model for one of `STRATEGIES` and trains it; `tune_lr` gives
every strategy (the scratch baseline included) the same learning-rate search; and
`evaluate_strategy` scores the result on a test split; `run_grid` runs strategies x label
budgets x seeds with one shared frozen-prefix cache and `summarize_grid` averages its rows. The
regimes, from least to most adapted:

- ``linear_probe``: logistic regression (`companion.features.fit_probe`, ``C`` chosen on the
  validation split) on cached pooled features; the probe is then copied into the model's
  classifier, so the result is an ordinary model.
- ``head_only``: the backbone frozen (`adapt.freeze_backbone`), the new head trained by `fit`.
- ``partial_finetune``: the top ``top_k_stages`` depths and the head train
  (`adapt.freeze`), the head at ``head_lr_mult`` times ``lr`` (`adapt.param_groups`).
- ``full_finetune``: everything trains, the head at ``head_lr_mult`` times ``lr``.
- ``lp_ft``: first the head alone (at ``lr * head_lr_mult``, ``lp_epochs``), then everything
  from that head at ``lr`` for the head too, with a new optimizer (Kumar et al., 2022).
- ``scratch``: `train.make_scratch_cnn`, trained from random weights.

Frozen prefix, computed once: without augmentation the frozen depths see the same images
every epoch, so their output is computed once (eval mode, ``torch.inference_mode``) and
only the trainable suffix runs in training (``fit``'s ``model_input`` hook). It gives the
same weights as recomputing, up to float rounding; ``cache_prefix=False`` recomputes.

Usage::

    from companion import strategies
    result = strategies.run_strategy("partial_finetune", train_set, val_set, lr=1e-3, num_epochs=5)
    print(strategies.evaluate_strategy(result, test_set)["accuracy"])
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from companion import adapt, backbones, data, features, repro, train
from companion.data import ImageSet
from companion.train import _check, _check_image_set, _check_train_val, _is_float, _is_int

__all__ = ["STRATEGIES", "StrategyResult", "run_strategy", "tune_lr", "evaluate_strategy", "run_grid",
           "summarize_grid"]

STRATEGIES = ("linear_probe", "head_only", "partial_finetune", "full_finetune", "lp_ft", "scratch")
NUM_DEPTHS = backbones.NUM_DEPTHS
ABSENT_CLASS_BIAS = -1e4  # logit bias of a class the probe never saw: never predicted


@dataclass
class StrategyResult:
    """A trained model and how it was obtained.

    ``histories`` maps a phase to its `train.History`: ``{"fit": ...}``, or for ``lp_ft``
    ``{"linear_probe": ..., "fine_tune": ...}``, or ``{}`` for ``linear_probe`` (whose fitted
    `features.ProbeResult` is in ``probe``). ``seconds`` is wall-clock time (volatile, left out
    of the repr); ``config`` holds the arguments that produced the result.
    """

    strategy: str
    model: nn.Module = field(repr=False)
    histories: dict[str, train.History]
    trainable_parameters: int
    seconds: float = field(repr=False)
    config: dict
    probe: features.ProbeResult | None = field(default=None, repr=False)

    @property
    def history(self) -> train.History | None:
        """The History of the last training phase (None for ``linear_probe``)."""
        return list(self.histories.values())[-1] if self.histories else None

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy of the selected model (chosen ``C`` or best epoch; NaN without val_set)."""
        if self.probe is not None:
            return self.probe.val_accuracy
        return self.history.best_val_accuracy


# ----------------------------------------------------------------------------- frozen prefix
class _Suffix(nn.Module):
    """Depths ``start..8`` and the head of ``model``, fed the cached output of depth ``start - 1``."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) prefix output
        for _, stage in backbones.stages(self.model)[self.start:]:
            x = stage(x)  # (B, C_k, h_k, w_k)
        return self.model.forward_head(x)  # (B, num_classes)


def _image_digest(image: torch.Tensor) -> bytes:
    """A fingerprint of one uint8 image (C, H, W): its shape and bytes."""
    hasher = hashlib.blake2b(str(tuple(image.shape)).encode(), digest_size=16)
    hasher.update(image.contiguous().numpy().tobytes())
    return hasher.digest()


def _memo_activations(prefix: nn.Module, num_frozen: int, dataset: ImageSet, batch_size: int,
                      device: torch.device, memo: dict) -> torch.Tensor:
    """The prefix output of every image of ``dataset`` (N, C, h, w), computed only for images not in ``memo``.

    ``memo`` maps (prefix weights fingerprint, num_frozen) to {image digest: activation}, so
    any later dataset sharing images (another `data.sample_per_class` draw, the same val or
    test split) reuses them. The whole frozen backbone's output is pooled to (C, 1, 1).
    """
    store = memo.setdefault((features._model_fingerprint(prefix), num_frozen), {})
    digests = [_image_digest(image) for image in dataset.images]
    missing, seen = [], set()
    for row, digest in enumerate(digests):
        if digest not in store and digest not in seen:
            seen.add(digest)
            missing.append(row)
    with torch.inference_mode():
        for rows in torch.tensor(missing, dtype=torch.int64).split(batch_size):
            x = prefix(train._to_input(dataset.images[rows], device))  # (B, C, h, w)
            if num_frozen == NUM_DEPTHS:
                x = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
            for row, activation in zip(rows.tolist(), x):
                store[digests[row]] = activation.clone()
    # .to(device): the memo may hold activations computed on another device by an earlier run
    return torch.stack([store[digest] for digest in digests]).to(device).clone()  # (N, C, h, w), for autograd


def _prefix_input(model: nn.Module, num_frozen: int, datasets: list[ImageSet], batch_size: int,
                  device: torch.device, memo: dict | None = None) -> Callable:
    """A ``model_input`` for `train.fit`: the frozen depths' output for each dataset, computed once.

    With the whole backbone frozen the output is pooled to (N, C, 1, 1): the head pools anyway,
    and the average of a 1x1 map is itself. Those pooled features come from
    `features.extract_features`, so its memory and disk caches serve every later run. With a
    ``memo`` (see `_memo_activations`) every output is looked up per image instead.
    """
    prefix = nn.Sequential(*(stage for _, stage in backbones.stages(model)[:num_frozen]))
    model.to(device, memory_format=torch.channels_last)
    prefix.eval()  # frozen BatchNorm normalises with its running statistics, as in adapt.train_mode
    cached = []
    for dataset in datasets:
        if memo is not None:
            cached.append((dataset, _memo_activations(prefix, num_frozen, dataset, batch_size, device, memo)))
            continue
        if num_frozen == NUM_DEPTHS:  # the pooled output of the whole backbone: features' disk cache has it
            pooled = features.extract_features(model, dataset, batch_size=batch_size, device=device)  # (N, C)
            cached.append((dataset, torch.from_numpy(pooled).to(device)[:, :, None, None]))  # (N, C, 1, 1)
            continue
        chunks = []
        with torch.inference_mode():
            for indices in torch.arange(len(dataset)).split(batch_size):
                x = prefix(train._to_input(dataset.images[indices], device))  # (B, C, h, w)
                chunks.append(x.mean(dim=(2, 3), keepdim=True) if num_frozen == NUM_DEPTHS else x)
        cached.append((dataset, torch.cat(chunks)))  # (N, C, h, w): a normal tensor, usable by autograd

    def model_input(dataset: ImageSet, indices: torch.Tensor) -> torch.Tensor:
        activations = next(tensor for known, tensor in cached if known is dataset)  # (N, C, h, w)
        return activations[indices.to(activations.device)]  # (B, C, h, w)

    return model_input


def _fit_frozen(model: nn.Module, num_frozen: int, train_set: ImageSet, val_set: ImageSet | None, *,
                augment, cache_prefix: bool, memo: dict | None = None, **fit_options) -> train.History:
    """`train.fit` with depths ``[0, num_frozen)`` frozen; their output cached when it cannot change."""
    if num_frozen == 0 or augment is not None or not cache_prefix:
        return train.fit(model, train_set, val_set, augment=augment, **fit_options)
    datasets = [dataset for dataset in (train_set, val_set) if dataset is not None]
    model_input = _prefix_input(model, num_frozen, datasets, fit_options["batch_size"],
                                repro.get_device(fit_options["device"]), memo)
    return train.fit(_Suffix(model, num_frozen), train_set, val_set, model_input=model_input, **fit_options)


# ----------------------------------------------------------------------------- linear probe
def _copy_probe_into_head(probe: features.ProbeResult, classifier: nn.Linear) -> None:
    """Write scaler + logistic regression as one linear layer: W' = W / s, b' = b - W' m."""
    scaler, logistic = probe.pipeline.named_steps["scaler"], probe.pipeline.named_steps["classifier"]
    weight = torch.as_tensor(logistic.coef_ / scaler.scale_, dtype=torch.float32)  # (K', F)
    bias = torch.as_tensor(logistic.intercept_, dtype=torch.float32) - weight @ torch.as_tensor(
        scaler.mean_, dtype=torch.float32)  # (K',)
    if len(logistic.classes_) == 2:  # one decision value z: softmax([-z/2, z/2]) = sigmoid(z)
        weight, bias = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
    classes = torch.as_tensor(logistic.classes_, dtype=torch.long)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.fill_(ABSENT_CLASS_BIAS)
        classifier.weight[classes] = weight.to(classifier.weight.device)
        classifier.bias[classes] = bias.to(classifier.bias.device)


def _linear_probe(model: nn.Module, train_set: ImageSet, val_set: ImageSet, *, Cs, seed: int,
                  batch_size: int, device, memo: dict | None = None) -> features.ProbeResult:
    if memo is None:
        options = dict(batch_size=batch_size, device=device)
        X_train = features.extract_features(model, train_set, **options)  # (N, 1280), cached
        X_val = features.extract_features(model, val_set, **options)  # (M, 1280)
    else:
        model_input = _prefix_input(model, NUM_DEPTHS, [train_set, val_set], batch_size,
                                    repro.get_device(device), memo)
        X_train, X_val = (model_input(dataset, torch.arange(len(dataset))).flatten(1).cpu().numpy()
                          for dataset in (train_set, val_set))  # (N, 1280), (M, 1280)
    probe = features.fit_probe(X_train, train_set.labels, X_val, val_set.labels, Cs=Cs, seed=seed)
    _copy_probe_into_head(probe, model.get_classifier())
    model.eval()
    return probe


# ----------------------------------------------------------------------------- strategies
def _check_arguments(strategy, train_set, val_set, lr, num_epochs, options: dict, func: str) -> None:
    _check(strategy in STRATEGIES, "strategy", func, f"one of {STRATEGIES}", strategy)
    _check_train_val(train_set, val_set, func)
    probe = strategy == "linear_probe"
    if probe and val_set is None:
        raise ValueError("run_strategy('linear_probe') needs a val_set: the probe chooses its C on it.")
    if probe and options["augment"] is not None:
        raise ValueError("linear_probe fits cached features of unaugmented images and cannot use "
                         "'augment'. Use strategy='head_only' to train a head with augmentation.")
    optional = " (ignored by linear_probe)" if probe else ""
    checks = [
        ((probe and lr is None) or _is_float(lr, 0.0, strict=True), "lr", f"a float > 0{optional}", lr),
        ((probe and num_epochs is None) or _is_int(num_epochs, 1), "num_epochs", f"an int >= 1{optional}",
         num_epochs),
        (_is_int(options["seed"], 0), "seed", "an int >= 0", options["seed"]),
        (_is_int(options["top_k_stages"], 1) and options["top_k_stages"] <= NUM_DEPTHS, "top_k_stages",
         f"an int in [1, {NUM_DEPTHS}]", options["top_k_stages"]),
        (_is_float(options["head_lr_mult"], 0.0, strict=True), "head_lr_mult", "a float > 0",
         options["head_lr_mult"]),
        (_is_int(options["batch_size"], 1), "batch_size", "an int >= 1", options["batch_size"]),
        (options["patience"] is None or _is_int(options["patience"], 1), "patience", "None or an int >= 1",
         options["patience"]),
        (options["lp_epochs"] is None or _is_int(options["lp_epochs"], 1), "lp_epochs",
         "None or an int >= 1", options["lp_epochs"]),
        (options["max_steps"] is None or _is_int(options["max_steps"], 1), "max_steps",
         "None or an int >= 1", options["max_steps"]),
    ]
    for ok, name, allowed, value in checks:
        _check(ok, name, func, allowed, value)
    for name in ("pretrained", "progress", "cache_prefix"):
        _check(isinstance(options[name], bool), name, func, "a bool", options[name], TypeError)
    _check(options["augment"] is None or callable(options["augment"]), "augment", func,
           "None or a callable transform (e.g. torchvision.transforms.v2)", options["augment"], TypeError)


def run_strategy(
    strategy: str,
    train_set: ImageSet,
    val_set: ImageSet | None,
    *,
    lr: float | None,
    num_epochs: int | None,
    seed: int = 0,
    top_k_stages: int = 2,
    head_lr_mult: float = 10.0,
    backbone: str = "efficientnet_lite0",
    pretrained: bool = True,
    batch_size: int = 32,
    patience: int | None = None,
    augment: Callable | None = None,
    progress: bool = False,
    lp_epochs: int | None = None,
    Cs: tuple[float, ...] = (0.01, 0.1, 1, 10),
    cache_prefix: bool = True,
    scratch_width: int = 32,
    max_steps: int | None = None,
    device: torch.device | str | None = None,
    prefix_cache: dict | None = None,
) -> StrategyResult:
    """Build and train a model with one reuse ``strategy`` of `STRATEGIES`; return a `StrategyResult`.

    ``lr`` and ``num_epochs`` drive `train.fit` (``linear_probe`` ignores them and picks ``C``
    from ``Cs`` on ``val_set`` instead). ``top_k_stages`` (partial fine-tuning) counts the
    trainable depths from the top: 2 trains ``blocks.6`` and ``head``. ``lp_epochs`` (default
    ``num_epochs``) is the length of the probe phase of ``lp_ft``. ``seed`` fixes the new
    head or the scratch weights, the batches and the probe. Without ``augment`` the output of
    the frozen depths of every train and val image is kept on the device (22 MB for 1,800
    images at 112 px with ``top_k_stages=2``, 0.7 GB with 8); ``cache_prefix=False`` recomputes
    it every step instead (same result up to float rounding, slower). ``max_steps`` caps each
    `fit` (quick runs). ``prefix_cache``: a dict (start with ``{}``) shared between calls that
    keeps the frozen depths' output per image, so later runs on overlapping images (other
    label budgets, seeds or strategies, the same val split) skip it; `run_grid` passes one.

    Usage: ``result = run_strategy("full_finetune", train_set, val_set, lr=3e-4, num_epochs=5, seed=0)``
    """
    func = "run_strategy"
    options = dict(seed=seed, top_k_stages=top_k_stages, head_lr_mult=head_lr_mult, backbone=backbone,
                   pretrained=pretrained, batch_size=batch_size, patience=patience, augment=augment,
                   progress=progress, lp_epochs=lp_epochs, Cs=Cs, cache_prefix=cache_prefix,
                   scratch_width=scratch_width, max_steps=max_steps)
    _check_arguments(strategy, train_set, val_set, lr, num_epochs, options, func)
    _check(prefix_cache is None or isinstance(prefix_cache, dict), "prefix_cache", func,
           "None or a dict shared between calls (start with {})", prefix_cache, TypeError)
    config = {"strategy": strategy, "lr": lr, "num_epochs": num_epochs, **options,
              "augment": None if augment is None else repr(augment)}
    start = time.perf_counter()
    num_classes = len(train_set.classes)
    fit_options = dict(batch_size=batch_size, patience=patience, seed=seed, device=device, progress=progress,
                       max_steps=max_steps)
    histories, probe = {}, None
    if strategy == "scratch":
        model = train.make_scratch_cnn(num_classes, width=scratch_width, seed=seed)
        histories["fit"] = train.fit(model, train_set, val_set, num_epochs=num_epochs, lr=lr, augment=augment,
                                     **fit_options)
    else:
        model = backbones.load_backbone(backbone, pretrained=pretrained, num_classes=num_classes, seed=seed)
        frozen = {"linear_probe": NUM_DEPTHS, "head_only": NUM_DEPTHS, "lp_ft": NUM_DEPTHS,
                  "partial_finetune": NUM_DEPTHS - top_k_stages, "full_finetune": 0}[strategy]
        adapt.freeze(model, frozen)
        common = dict(augment=augment, cache_prefix=cache_prefix, memo=prefix_cache, **fit_options)
        if strategy == "linear_probe":
            probe = _linear_probe(model, train_set, val_set, Cs=Cs, seed=seed, batch_size=batch_size,
                                  device=device, memo=prefix_cache)
        elif strategy == "head_only":
            histories["fit"] = _fit_frozen(model, frozen, train_set, val_set, num_epochs=num_epochs, lr=lr,
                                           **common)
        elif strategy == "lp_ft":
            histories["linear_probe"] = _fit_frozen(
                model, frozen, train_set, val_set, num_epochs=lp_epochs or num_epochs, lr=lr * head_lr_mult,
                **common)
            adapt.unfreeze(model)  # fit builds a new optimizer over every parameter
            groups = adapt.param_groups(model, lr=lr, head_lr_mult=1.0)
            histories["fine_tune"] = train.fit(model, train_set, val_set, num_epochs=num_epochs, lr=lr,
                                               param_groups=groups, augment=augment, **fit_options)
        else:
            groups = adapt.param_groups(model, lr=lr, head_lr_mult=head_lr_mult)
            histories["fit"] = _fit_frozen(model, frozen, train_set, val_set, num_epochs=num_epochs, lr=lr,
                                           param_groups=groups, **common)
    model.eval()
    trainable = adapt.count_parameters(model)["trainable"]
    return StrategyResult(strategy, model, histories, trainable, time.perf_counter() - start, config, probe)


def tune_lr(strategy: str, train_set: ImageSet, val_set: ImageSet, lr_grid, *, num_epochs: int, seed: int = 0,
            **options) -> tuple[float, dict[float, float]]:
    """Run ``strategy`` once per learning rate of ``lr_grid``; return the best and every val accuracy.

    Give every strategy the same grid size, the scratch baseline included: a comparison is
    only fair with equal tuning budgets. Ties go to the smaller learning rate. ``options`` are
    passed to `run_strategy`. (``linear_probe`` has no learning rate: it tunes ``C`` itself.)

    Usage: ``best_lr, scores = tune_lr("scratch", train_set, val_set, [1e-3, 3e-3, 1e-2], num_epochs=10)``
    """
    func = "tune_lr"
    _check(strategy in STRATEGIES, "strategy", func, f"one of {STRATEGIES}", strategy)
    if strategy == "linear_probe":
        raise ValueError("tune_lr cannot tune 'linear_probe': it has no learning rate and already chooses "
                         "its C on val_set. Pass a grid of C values as run_strategy(..., Cs=...) instead.")
    _check(isinstance(val_set, ImageSet), "val_set", func, "a companion.data.ImageSet", val_set, TypeError)
    grid = [lr_grid] if not hasattr(lr_grid, "__iter__") or isinstance(lr_grid, str) else list(lr_grid)
    _check(bool(grid) and all(_is_float(lr, 0.0, strict=True) for lr in grid) and len(set(grid)) == len(grid),
           "lr_grid", func, "a non-empty sequence of distinct floats > 0", lr_grid)
    scores = {}
    for lr in sorted(float(lr) for lr in grid):
        result = run_strategy(strategy, train_set, val_set, lr=lr, num_epochs=num_epochs, seed=seed, **options)
        scores[lr] = result.val_accuracy
    best_lr = max(scores, key=lambda lr: (scores[lr], -lr))
    return best_lr, scores


def _num_frozen(result: StrategyResult) -> int:
    """How many bottom depths of ``result.model`` still hold the weights they were loaded with (0: none known)."""
    config = result.config
    if config.get("augment") is not None or not config.get("cache_prefix", False):
        return 0  # the frozen prefix was not cached, so no memo holds its output
    return {"linear_probe": NUM_DEPTHS, "head_only": NUM_DEPTHS,
            "partial_finetune": NUM_DEPTHS - config.get("top_k_stages", NUM_DEPTHS)}.get(result.strategy, 0)


def evaluate_strategy(result: StrategyResult, test_set: ImageSet, *, batch_size: int = 256,
                      device: torch.device | str | None = None, prefix_cache: dict | None = None) -> dict:
    """Return ``{"accuracy": float, "per_class": {class name: accuracy}}`` of a result on ``test_set``.

    ``prefix_cache`` (the dict given to `run_strategy`) lets a result with frozen depths
    (``linear_probe``, ``head_only``, ``partial_finetune``) read their output for the test
    images from the cache and run only the trained top: the same predictions up to float rounding.

    Usage: ``evaluate_strategy(result, test_set)["per_class"]["dent"]``
    """
    func = "evaluate_strategy"
    _check(isinstance(result, StrategyResult), "result", func, "a StrategyResult from run_strategy", result,
           TypeError)
    _check_image_set(test_set, "test_set", func)
    _check(prefix_cache is None or isinstance(prefix_cache, dict), "prefix_cache", func,
           "None or the dict passed to run_strategy", prefix_cache, TypeError)
    num_frozen = _num_frozen(result) if prefix_cache is not None else 0
    if num_frozen:
        device = repro.get_device(device)
        model_input = _prefix_input(result.model, num_frozen, [test_set], batch_size, device, prefix_cache)
        suffix = _Suffix(result.model, num_frozen).eval()
        with torch.inference_mode():
            predictions = torch.cat([suffix(model_input(test_set, rows)).argmax(dim=1).cpu()
                                     for rows in torch.arange(len(test_set)).split(batch_size)])  # (N,)
    else:
        predictions = train.predict(result.model, test_set, batch_size=batch_size, device=device)  # (N,)
    correct = predictions == test_set.labels  # (N,)
    per_class = {}
    for index, name in enumerate(test_set.classes):
        mask = test_set.labels == index  # (N,)
        per_class[name] = float(correct[mask].float().mean()) if mask.any() else float("nan")
    return {"accuracy": float(correct.float().mean()), "per_class": per_class}


# ----------------------------------------------------------------------------- grids of runs
GRID_COLUMNS = ("label", "strategy", "n_per_class", "seed", "val_accuracy", "test_accuracy",
                "trainable_parameters", "seconds")


def _for_budget(value, n_per_class: int, label: str, name: str):
    """A config value, or its entry for ``n_per_class`` when given per budget as a dict."""
    if not isinstance(value, Mapping):
        return value
    if n_per_class not in value:
        raise ValueError(f"The config {label!r} of run_grid gives {name!r} per budget but has no entry for "
                         f"{n_per_class} labels per class. Got keys {sorted(value)}; add one for every budget.")
    return value[n_per_class]


def run_grid(configs: Mapping[str, Mapping], train_pool: ImageSet, val_set: ImageSet, test_set: ImageSet, *,
             budgets: Sequence[int], seeds: Sequence[int], device: torch.device | str | None = None) -> list[dict]:
    """Run every configuration for every label budget and seed; return one row (a dict) per run.

    ``configs`` maps a label (``"partial (top 1)"``) to keyword arguments of `run_strategy`,
    ``strategy`` included; a value given as a dict keyed by budget (``{"num_epochs": {5: 8, 100: 2}}``)
    is looked up per budget, and ``"validate": False`` trains without ``val_set`` (no epoch
    selection: cheaper for full fine-tuning). The training set of (budget ``n``, seed ``s``) is
    ``data.sample_per_class(train_pool, n, seed=s)``, the same images for every configuration,
    and ``s`` is also the run's seed. One prefix cache is shared by all runs, so the frozen
    depths see each image once. Row keys: `GRID_COLUMNS` (``seconds`` is volatile wall time: plot
    it, never print it in a checked notebook). Summarise with `summarize_grid`.

    Usage: ``rows = run_grid({"probe": {"strategy": "linear_probe"}}, pool, val, test, budgets=[5, 20], seeds=[0, 1, 2])``
    """
    func = "run_grid"
    _check(isinstance(configs, Mapping) and len(configs) > 0 and all(
        isinstance(label, str) and isinstance(config, Mapping) and config.get("strategy") in STRATEGIES
        for label, config in configs.items()), "configs", func,
        f"a non-empty dict of label -> run_strategy keyword arguments with a 'strategy' in {STRATEGIES}", configs,
        TypeError)
    for name, dataset in (("train_pool", train_pool), ("val_set", val_set), ("test_set", test_set)):
        _check_image_set(dataset, name, func)
    budgets, seeds = list(budgets), list(seeds)
    smallest = min(train_pool.class_counts().values())
    _check(bool(budgets) and all(_is_int(n, 1) and n <= smallest for n in budgets), "budgets", func,
           f"a non-empty sequence of ints in [1, {smallest}] (labels per class in train_pool)", budgets)
    _check(bool(seeds) and all(_is_int(seed, 0) for seed in seeds), "seeds", func,
           "a non-empty sequence of ints >= 0", seeds)
    memo, rows = {}, []
    for n_per_class in budgets:
        for seed in seeds:
            train_set = data.sample_per_class(train_pool, n_per_class, seed=seed)
            for label, config in configs.items():
                options = {name: _for_budget(value, n_per_class, label, name) for name, value in config.items()}
                strategy, validate = options.pop("strategy"), options.pop("validate", True)
                options.setdefault("lr", None)
                options.setdefault("num_epochs", None)
                result = run_strategy(strategy, train_set, val_set if validate else None, seed=seed,
                                      device=device, prefix_cache=memo, **options)
                accuracy = evaluate_strategy(result, test_set, device=device, prefix_cache=memo)["accuracy"]
                rows.append({"label": label, "strategy": strategy, "n_per_class": n_per_class, "seed": seed,
                             "val_accuracy": result.val_accuracy, "test_accuracy": accuracy,
                             "trainable_parameters": result.trainable_parameters, "seconds": result.seconds})
    return rows


def summarize_grid(rows: Sequence[Mapping]) -> list[dict]:
    """Mean and sd over seeds of each (label, budget) of `run_grid` rows, in first-seen order.

    Returns dicts with ``label``, ``strategy``, ``n_per_class``, ``mean``, ``sd`` (population sd
    of the test accuracies), ``runs`` (the accuracies), ``trainable_parameters`` and ``seconds``
    (mean wall time, volatile).

    Usage: ``for row in summarize_grid(rows): print(row["label"], row["n_per_class"], f"{row['mean']:.3f}")``
    """
    _check(isinstance(rows, Sequence) and len(rows) > 0 and all(
        isinstance(row, Mapping) and set(GRID_COLUMNS) <= set(row) for row in rows), "rows", "summarize_grid",
        f"a non-empty list of run_grid rows (dicts with keys {GRID_COLUMNS})", rows, TypeError)
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["n_per_class"]), []).append(row)
    summary = []
    for (label, n_per_class), members in groups.items():
        accuracies = [float(row["test_accuracy"]) for row in members]
        mean = sum(accuracies) / len(accuracies)
        sd = math.sqrt(sum((value - mean) ** 2 for value in accuracies) / len(accuracies))
        summary.append({"label": label, "strategy": members[0]["strategy"], "n_per_class": n_per_class,
                        "mean": mean, "sd": sd, "runs": accuracies,
                        "trainable_parameters": members[0]["trainable_parameters"],
                        "seconds": sum(row["seconds"] for row in members) / len(members)})
    return summary

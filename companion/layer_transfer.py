"""Layer transfer in miniature: copy the first n layers of a small CNN, frozen or fine-tuned.

Scope: the experiment of Yosinski et al. (2014), "How transferable are features in deep neural
networks?", at a scale a laptop runs in minutes. The warehouse classes are split into two tasks
A and B (`TASK_A`, `TASK_B`, `task_subset`); a small network of ``num_layers`` conv-BN-ReLU
layers (`LayerNet`) is trained on each (`train_base`, cached on disk); then, for each n, a new
network for task B gets the first n layers of the base network of A (``AnB``) or of B itself
(``BnB``), frozen or fine-tuned (``AnB+``, ``BnB+``), while the layers above are re-initialised
(`transfer_layers`). `run_layer_transfer` runs the whole grid over several seeds. Every network
trains with the same recipe (`LayerTransferConfig.recipe`: batch size and stopping rule of
``RECIPES["scratch"]``) at one learning rate, chosen by the baseline's search on task B's
validation split. A frozen prefix's output comes from `companion.prefix.PrefixCache`.

Base networks are cached by `companion.cache`, keyed by the architecture, the recipe, the
learning rate, the seed, a digest of the training and validation images, the device type (and
CPU thread count: float rounding differs between them), the torch version and `CACHE_VERSION`.

Usage::

    >>> from companion import layer_transfer
    >>> model = layer_transfer.make_layer_net(3, num_layers=4, width=4, seed=0)
    >>> copy = layer_transfer.transfer_layers(model, 2, num_classes=3, freeze=True, seed=1)
    >>> [any(p.requires_grad for p in layer.parameters()) for layer in copy.layers]
    [False, False, True, True]

Taught in ``notebooks/07_layer_transfer.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from torch import nn

from companion import cache as disk, prefix, repro, train
from companion.backbones import BackboneSpec
from companion.data import ImageSet
from companion.recipes import RECIPES, StrategyConfig
from companion.validation import (check, check_bool, check_image_set, check_instance, check_int, check_seed,
                                  check_train_val)

__all__ = ["TASK_A", "TASK_B", "VARIANTS", "CACHE_VERSION", "PAPER_REFERENCE", "LayerNet", "LayerTransferConfig",
           "CONFIGS", "LayerTransferResult", "task_subset", "make_layer_net", "transfer_layers", "fit_layer_net",
           "train_base", "run_layer_transfer"]

TASK_A: tuple[str, ...] = ("ok", "tear", "water_damage")
TASK_B: tuple[str, ...] = ("dent", "puncture", "crushed_corner")
VARIANTS: tuple[str, ...] = ("BnB", "BnB+", "AnB", "AnB+")
CACHE_VERSION = 3  # bump when LayerNet, the training recipe of train_base or what is stored changes

# Yosinski et al. (2014), Figure 2: top-1 accuracy on ImageNet task B (500 classes) of an
# 8-layer network, n = 1..7 layers copied. Approximate values read off the published figure
# (the paper gives no table); baseB, the network trained on B from scratch, is about 0.625.
PAPER_REFERENCE: dict[str, dict[int, float]] = {
    "baseB": {0: 0.625},
    "BnB": {1: 0.625, 2: 0.620, 3: 0.610, 4: 0.595, 5: 0.595, 6: 0.610, 7: 0.625},
    "BnB+": {1: 0.625, 2: 0.625, 3: 0.625, 4: 0.625, 5: 0.625, 6: 0.625, 7: 0.625},
    "AnB": {1: 0.625, 2: 0.620, 3: 0.610, 4: 0.600, 5: 0.585, 6: 0.565, 7: 0.545},
    "AnB+": {1: 0.640, 2: 0.640, 3: 0.640, 4: 0.641, 5: 0.641, 6: 0.642, 7: 0.643},
}


@dataclass(frozen=True)
class LayerTransferConfig:
    """Everything that sizes the experiment: data, network and recipe.

    ``image_size`` and ``n_per_class`` size the rendered dataset (per class, before the split);
    ``num_layers`` conv layers of ``width`` base channels; every network trains with ``recipe``
    (its grid is what the baseline searches); ``num_seeds`` repeats the grid for intervals.
    """

    image_size: int = 32
    n_per_class: int = 400
    num_layers: int = 6
    width: int = 16
    recipe: StrategyConfig = RECIPES["scratch"]
    num_seeds: int = 3


CONFIGS: dict[str, LayerTransferConfig] = {
    "cpu": LayerTransferConfig(),
    "gpu": LayerTransferConfig(image_size=48, n_per_class=1000, width=32, num_seeds=5),
}


def task_subset(dataset: ImageSet, classes: Sequence[str]) -> ImageSet:
    """Keep the images of ``classes`` and relabel them ``0..len(classes)-1`` in that order."""
    func = "task_subset"
    check_instance(dataset, "dataset", func, ImageSet, "a companion.data.ImageSet")
    check(isinstance(classes, Sequence) and not isinstance(classes, str), classes, "classes", func,
          "a sequence of class names")
    classes = tuple(classes)
    unknown = [name for name in classes if name not in dataset.classes]
    check(len(classes) >= 2 and len(set(classes)) == len(classes) and not unknown, classes, "classes", func,
          f"at least 2 distinct classes of the dataset, from {dataset.classes}")
    old_index = torch.tensor([dataset.classes.index(name) for name in classes])  # (K,)
    mask = torch.isin(dataset.labels, old_index)  # (N,)
    new_label = torch.full((len(dataset.classes),), -1, dtype=torch.int64)
    new_label[old_index] = torch.arange(len(classes))
    return ImageSet(dataset.images[mask], new_label[dataset.labels[mask]], classes)


class LayerNet(nn.Module):
    """``num_layers`` conv-BN-ReLU layers, global average pooling and a linear classifier.

    Layer k (0-based) has ``width * 2 ** (k // 2)`` channels, and every second layer halves the
    resolution: at 32 px the maps are 32, 16, 16, 8, 8, 4 px for six layers. "Layer n" in the lab
    means ``layers[n - 1]``; the classifier is never copied. It carries a `BackboneSpec` whose
    depths are its layers, so the frozen-prefix cache and `train.fit` treat it as any backbone.
    """

    def __init__(self, num_classes: int, num_layers: int = 6, width: int = 16) -> None:
        super().__init__()
        channels = [3] + [width * 2 ** (k // 2) for k in range(num_layers)]
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels[k], channels[k + 1], 3, 1 + k % 2, padding=1, bias=False),
                          nn.BatchNorm2d(channels[k + 1]), nn.ReLU(inplace=True))
            for k in range(num_layers))
        self.num_features = channels[-1]
        self.classifier = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.backbone_spec = BackboneSpec(
            name=f"layer_net_{num_layers}x{width}", timm_name=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            image_size=32, stage_layout=tuple((f"layer{k + 1}", (f"layers.{k}",)) for k in range(num_layers)),
            channels=tuple(channels[1:]), strides=tuple(2 ** ((k + 1) // 2) for k in range(num_layers)),
            classifier="classifier", first_conv="layers.0.0")

    @property
    def num_layers(self) -> int:
        """Number of conv layers (the n of the experiment runs from 1 to this)."""
        return len(self.layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)  # (B, C_k, H_k, W_k)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean(dim=(2, 3)))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, num_classes)


def make_layer_net(num_classes: int, *, num_layers: int = 6, width: int = 16, seed: int | None = None) -> LayerNet:
    """A randomly initialised `LayerNet`; ``seed`` fixes its weights (global RNG untouched)."""
    func = "make_layer_net"
    num_classes = check_int(num_classes, "num_classes", func, low=2)
    num_layers = check_int(num_layers, "num_layers", func, low=1, high=12)
    width = check_int(width, "width", func, low=1)
    seed = check_seed(seed, "seed", func, optional=True)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return LayerNet(num_classes, num_layers, width)


def transfer_layers(base: LayerNet, num_copied: int, num_classes: int, *, freeze: bool,
                    seed: int | None = None) -> LayerNet:
    """The surgery: a new network whose first ``num_copied`` layers are copies of ``base``'s.

    The copied layers (weights and BatchNorm statistics) are frozen (``freeze=True``) or left
    trainable (fine-tuned). The layers above and a new ``num_classes``-way classifier are freshly
    initialised from ``seed``. ``base`` itself is not changed.
    """
    func = "transfer_layers"
    check_instance(base, "base", func, LayerNet, "a LayerNet (from make_layer_net)")
    num_copied = check_int(num_copied, "num_copied", func, low=0, high=base.num_layers)
    check_bool(freeze, "freeze", func)
    width = base.layers[0][0].out_channels
    model = make_layer_net(num_classes, num_layers=base.num_layers, width=width, seed=seed)
    model.to(next(base.parameters()).device)
    for k in range(num_copied):
        model.layers[k].load_state_dict(base.layers[k].state_dict())
        model.layers[k].requires_grad_(not freeze)
    return model


def _num_frozen(model: LayerNet) -> int:
    """How many leading layers have no trainable parameter."""
    count = 0
    for layer in model.layers:
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


def fit_layer_net(model: LayerNet, train_set: ImageSet, val_set: ImageSet, *, recipe: StrategyConfig, lr: float,
                  seed: int = 0, prefix_cache: prefix.PrefixCache | None = None,
                  device: torch.device | str | None = None) -> train.History:
    """Train ``model`` with `companion.train.fit` and the schedule and stopping rule of ``recipe``.

    Frozen leading layers are read from ``prefix_cache`` (their output cannot change), so only
    the layers above run in training.
    """
    func = "fit_layer_net"
    check_instance(model, "model", func, LayerNet, "a LayerNet (from make_layer_net)")
    check_train_val(train_set, val_set, func)
    check_image_set(val_set, "val_set", func)
    schedule = recipe.schedule_for(len(train_set))
    options = dict(num_epochs=schedule.max_epochs, eval_every=schedule.eval_every, patience=schedule.patience,
                   lr=lr, batch_size=recipe.batch_size, seed=seed, device=device, progress=False)
    start = _num_frozen(model)
    if start == 0:
        return train.fit(model, train_set, val_set, **options)
    cache = prefix_cache if prefix_cache is not None else prefix.PrefixCache()
    model_input = cache.model_input(model, start, [train_set, val_set], device=device)
    return train.fit(prefix.Suffix(model, start), train_set, val_set, model_input=model_input, **options)


def _digest(dataset: ImageSet) -> str:
    """sha256 of a dataset's images, labels and class names: its identity for the cache key."""
    digest = hashlib.sha256()
    digest.update(dataset.images.contiguous().numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    digest.update(json.dumps(dataset.classes).encode())
    return digest.hexdigest()


def _fit_summary(history: train.History) -> tuple[int, int, bool, bool]:
    """Epochs run, epoch kept, stopped on patience, kept its first validation pass."""
    return (history.num_epochs, history.best_epoch, bool(history.stopped_early),
            bool(history.val_epochs) and history.best_epoch == history.val_epochs[0])


def _train_base(train_set: ImageSet, val_set: ImageSet, *, recipe: StrategyConfig, lr: float, num_layers: int,
                width: int, seed: int, device, cache: bool, cache_dir) -> tuple[LayerNet, tuple]:
    """`train_base`, also returning how its run ended (`_fit_summary`), which the cache keeps too."""
    device = repro.get_device(device)
    model = make_layer_net(len(train_set.classes), num_layers=num_layers, width=width, seed=seed)
    key = json.dumps({"version": CACHE_VERSION, "num_layers": num_layers, "width": width,
                      "num_classes": len(train_set.classes), "recipe": asdict(recipe), "lr": float(lr), "seed": seed,
                      "train": _digest(train_set), "val": _digest(val_set), "device": device.type,
                      "threads": torch.get_num_threads() if device.type == "cpu" else None,
                      "torch": torch.__version__}, sort_keys=True)
    directory = Path(cache_dir) if cache_dir is not None else disk.cache_dir()
    path = directory / f"layernet_{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    names = list(model.state_dict())
    stored = disk.read(path, key, names + ["fit_summary"]) if cache else None
    if stored is not None:
        model.load_state_dict({name: torch.from_numpy(stored[name]) for name in names})
        epochs, kept, patient, first = (int(v) for v in stored["fit_summary"])
        return model.to(device, memory_format=torch.channels_last).eval(), (epochs, kept, bool(patient), bool(first))
    summary = _fit_summary(fit_layer_net(model, train_set, val_set, recipe=recipe, lr=lr, seed=seed, device=device))
    if cache:
        disk.write(path, key, fit_summary=np.array(summary, dtype=np.int64),
                   **{name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()})
    return model.eval(), summary


def train_base(train_set: ImageSet, val_set: ImageSet, *, recipe: StrategyConfig, lr: float, num_layers: int = 6,
               width: int = 16, seed: int = 0, device: torch.device | str | None = None, cache: bool = True,
               cache_dir: str | Path | None = None) -> LayerNet:
    """Train (or load from the disk cache) a base `LayerNet` on one task, from random weights."""
    func = "train_base"
    check_train_val(train_set, val_set, func)
    check_image_set(val_set, "val_set", func)
    check_bool(cache, "cache", func)
    return _train_base(train_set, val_set, recipe=recipe, lr=lr, num_layers=num_layers, width=width, seed=seed,
                       device=device, cache=cache, cache_dir=cache_dir)[0]


@dataclass
class LayerTransferResult:
    """Test results on task B of the whole grid.

    ``accuracy[variant]`` has shape ``(num_seeds, len(depths))``; ``correct[variant][s][j]`` is
    the per-image correctness of seed ``s`` at ``depths[j]``. ``base_b`` (the baseline, trained
    on B from scratch) and ``base_a`` (on task A's test set) have shape ``(num_seeds,)``;
    ``base_b_correct`` holds the baseline's per-image correctness, what `companion.compare`
    pairs each treatment with. ``fits`` maps each network (``"baseA"``, ``"baseB"``, or
    ``(variant, n)``) to one `(epochs run, epoch kept, stopped on patience, kept its first
    check)` per seed, which `schedule_check` prints.
    """

    depths: tuple[int, ...]
    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]
    correct: dict[str, list]
    base_a: np.ndarray
    base_b: np.ndarray
    base_b_correct: list
    lr: float
    config: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)

    def relative(self, variant: str) -> np.ndarray:
        """Accuracy minus the same seed's baseB, shape ``(num_seeds, len(depths))``."""
        check(variant in self.accuracy, variant, "variant", "LayerTransferResult.relative", f"one of {VARIANTS}")
        return self.accuracy[variant] - self.base_b[:, None]

    def table(self) -> str:
        """Mean +- sd (ddof 1) over seeds of every variant at every n, and the baseline, as text."""
        sd = (lambda values: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
        lines = [f"test accuracy on task B, mean +- sd over {len(self.seeds)} seeds",
                 f"{'n':>3}" + "".join(f"{variant:>16}" for variant in self.accuracy)]
        for column, depth in enumerate(self.depths):
            cells = [f"{values[:, column].mean():.2f} +- {sd(values[:, column]):.2f}"
                     for values in self.accuracy.values()]
            lines.append(f"{depth:>3}" + "".join(f"{cell:>16}" for cell in cells))
        lines.append(f"baseB (n = 0): {self.base_b.mean():.2f} +- {sd(self.base_b):.2f};  "
                     f"baseA on task A: {self.base_a.mean():.2f} +- {sd(self.base_a):.2f}")
        return "\n".join(lines)

    def schedule_check(self) -> str:
        """Per network: epochs run and kept over the seeds, and how many stopped on patience or kept their 1st check."""
        lines = [f"{'network':<12}{'epochs run':>12}{'epoch kept':>12}{'on patience':>13}{'kept 1st':>10}"]
        span = (lambda values: f"{min(values)}-{max(values)}" if min(values) != max(values) else f"{values[0]}")
        for name, runs in self.fits.items():
            label = name if isinstance(name, str) else f"{name[0]}, n={name[1]}"
            flag = "" if all(run[2] for run in runs) else "  MAX"
            lines.append(f"{label:<12}{span([r[0] for r in runs]):>12}{span([r[1] for r in runs]):>12}"
                         f"{f'{sum(r[2] for r in runs)} of {len(runs)}':>13}"
                         f"{f'{sum(r[3] for r in runs)} of {len(runs)}':>10}{flag}")
        return "\n".join(lines)


def _check_task(value: object, name: str, func: str) -> None:
    check(isinstance(value, dict) and {"train", "val", "test"} <= set(value), value, name, func,
          "a dict with 'train', 'val' and 'test' ImageSets")
    for part in ("train", "val", "test"):
        check_image_set(value[part], f"{name}['{part}']", func)


def _correct(model: nn.Module, dataset: ImageSet, device) -> np.ndarray:
    return (train.predict(model, dataset, device=device) == dataset.labels).numpy()  # (N,)


def run_layer_transfer(task_a: dict[str, ImageSet], task_b: dict[str, ImageSet], *,
                       config: LayerTransferConfig = CONFIGS["cpu"], depths: Sequence[int] | None = None,
                       seeds: Sequence[int] | None = None, device: torch.device | str | None = None,
                       cache: bool = True, cache_dir: str | Path | None = None) -> LayerTransferResult:
    """Train baseA and baseB, then AnB, BnB, AnB+ and BnB+ for every n in ``depths``, per seed.

    The learning rate of every network is the one baseB's search picks (``config.recipe.grid``,
    first seed, task B's validation split). For seed s the bases start from weights drawn with
    seed s; every transferred network gets its new upper layers from seed ``1000 + s``, so BnB
    never restarts from baseB's own initial weights.
    """
    func = "run_layer_transfer"
    _check_task(task_a, "task_a", func)
    _check_task(task_b, "task_b", func)
    check_instance(config, "config", func, LayerTransferConfig, "a LayerTransferConfig")
    depths = tuple(range(1, config.num_layers + 1)) if depths is None else tuple(depths)
    check(len(depths) > 0 and all(isinstance(d, Integral) and not isinstance(d, bool) and 1 <= d <= config.num_layers
                                  for d in depths), depths, "depths", func,
          f"a non-empty sequence of ints in [1, {config.num_layers}]")
    depths = tuple(int(d) for d in depths)  # np.int64 from np.arange is an int too
    seeds = tuple(range(config.num_seeds)) if seeds is None else tuple(seeds)
    check(len(seeds) > 0, seeds, "seeds", func, "a non-empty sequence of ints >= 0")
    for seed in seeds:
        check_seed(seed, "seeds", func)
    network = dict(num_layers=config.num_layers, width=config.width, recipe=config.recipe, device=device,
                   cache=cache, cache_dir=cache_dir)
    search = {lr: _train_base(task_b["train"], task_b["val"], lr=lr, seed=seeds[0], **network)[0]
              for lr in sorted(config.recipe.grid)}
    scores = {lr: train.evaluate(model, task_b["val"], device=device)["accuracy"] for lr, model in search.items()}
    lr = max(scores, key=lambda value: (scores[value], -value))
    num_classes = len(task_b["train"].classes)
    accuracy = {variant: np.zeros((len(seeds), len(depths))) for variant in VARIANTS}
    correct = {variant: [[None] * len(depths) for _ in seeds] for variant in VARIANTS}
    base_a, base_b, base_b_correct = np.zeros(len(seeds)), np.zeros(len(seeds)), []
    cache_of_prefixes = prefix.PrefixCache()
    fits: dict = {}
    for row, seed in enumerate(seeds):
        bases = {}
        for name, task in (("A", task_a), ("B", task_b)):
            bases[name], summary = _train_base(task["train"], task["val"], lr=lr, seed=seed, **network)
            fits.setdefault(f"base{name}", []).append(summary)
        base_a[row] = train.evaluate(bases["A"], task_a["test"], device=device)["accuracy"]
        base_b_correct.append(_correct(bases["B"], task_b["test"], device))
        base_b[row] = base_b_correct[-1].mean()
        for column, depth in enumerate(depths):
            for variant in VARIANTS:
                model = transfer_layers(bases[variant[0]], depth, num_classes, freeze=not variant.endswith("+"),
                                        seed=1000 + seed)
                history = fit_layer_net(model, task_b["train"], task_b["val"], recipe=config.recipe, lr=lr,
                                        seed=seed, prefix_cache=cache_of_prefixes, device=device)
                fits.setdefault((variant, depth), []).append(_fit_summary(history))
                correct[variant][row][column] = _correct(model, task_b["test"], device)
                accuracy[variant][row, column] = correct[variant][row][column].mean()
    return LayerTransferResult(depths=depths, seeds=seeds, accuracy=accuracy, correct=correct, base_a=base_a,
                               base_b=base_b, base_b_correct=base_b_correct, lr=lr,
                               config=dict(asdict(config), task_a=task_a["train"].classes,
                                           task_b=task_b["train"].classes, lr=lr), fits=fits)

"""Layer transfer in miniature: copy the first n layers of a small CNN, frozen or fine-tuned.

Scope: the experiment of Yosinski et al. (2014), "How transferable are features in deep neural
networks?", at a scale a laptop runs in minutes. The warehouse classes are split into two
tasks A and B (`TASK_A`, `TASK_B`, `task_subset`); a small network of ``num_layers``
conv-BN-ReLU layers (`LayerNet`) is trained on each (`train_base`, cached on disk); then, for
each n, a new network for task B gets the first n layers of the base network of A (``AnB``)
or of B itself (``BnB``), frozen or fine-tuned (``AnB+``, ``BnB+``), while the layers above
are re-initialised (`transfer_layers`). `run_layer_transfer` runs the whole grid over several
seeds. All training goes through `companion.train.fit`; a frozen prefix's output is computed
once per dataset (it cannot change) and fed to ``fit`` through its ``model_input`` hook.

Base models are cached as ``.npz`` files under `companion.data.default_cache_dir` (or
``$COMPANION_CACHE_DIR``), keyed by the architecture, the training settings, the seed, a digest
of the training and validation images, the device type (and CPU thread count: float
rounding differs between them), the torch version and `CACHE_VERSION`; they are written
atomically (temporary file, then ``os.replace``).

Usage::

    from companion import data, layer_transfer
    pool = data.make_dataset(300, image_size=32, seed=0)
    parts = data.stratified_split(pool, (0.6, 0.15, 0.25), seed=0)
    task_a = {k: layer_transfer.task_subset(v, layer_transfer.TASK_A) for k, v in parts.items()}
    task_b = {k: layer_transfer.task_subset(v, layer_transfer.TASK_B) for k, v in parts.items()}
    result = layer_transfer.run_layer_transfer(task_a, task_b, seeds=(0, 1))
    print(result.table())

Taught in ``notebooks/07_layer_transfer.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from companion import data, repro, train
from companion.data import ImageSet
from companion.train import _check, _check_image_set, _check_train_val, _is_float, _is_int

__all__ = ["TASK_A", "TASK_B", "VARIANTS", "CACHE_VERSION", "PAPER_REFERENCE", "LayerNet", "LayerTransferConfig",
           "CONFIGS", "LayerTransferResult", "task_subset", "make_layer_net", "transfer_layers", "fit_layer_net",
           "train_base", "run_layer_transfer"]

TASK_A: tuple[str, ...] = ("ok", "tear", "water_damage")
TASK_B: tuple[str, ...] = ("dent", "puncture", "crushed_corner")
VARIANTS: tuple[str, ...] = ("BnB", "BnB+", "AnB", "AnB+")
CACHE_VERSION = 1  # bump when LayerNet or the training recipe of train_base changes

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


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LayerTransferConfig:
    """Everything that sizes the experiment: data, network and training.

    ``image_size`` and ``n_per_class`` size the rendered dataset (per class, before the split);
    ``num_layers`` conv layers of ``width`` base channels; every network (bases and transfers)
    trains ``num_epochs`` epochs with AdamW at ``lr``, batch ``batch_size``; ``num_seeds``
    repeats the grid for error bars.
    """

    image_size: int = 32
    n_per_class: int = 300
    num_layers: int = 6
    width: int = 16
    num_epochs: int = 8
    lr: float = 1e-2
    batch_size: int = 32
    num_seeds: int = 3


CONFIGS: dict[str, LayerTransferConfig] = {
    "cpu": LayerTransferConfig(),  # the committed run: under 3 minutes of 1-thread CPU time, cold caches
    "gpu": LayerTransferConfig(image_size=48, n_per_class=1000, width=32, num_epochs=30, num_seeds=5),
}


# ----------------------------------------------------------------------------- tasks
def task_subset(dataset: ImageSet, classes: Sequence[str]) -> ImageSet:
    """Keep the images of ``classes`` and relabel them ``0..len(classes)-1`` in that order.

    Usage: ``task_a_train = task_subset(parts["train"], TASK_A)``
    """
    func = "task_subset"
    _check(isinstance(dataset, ImageSet), "dataset", func, "a companion.data.ImageSet", dataset, TypeError)
    _check(isinstance(classes, Sequence) and not isinstance(classes, str), "classes", func,
           "a sequence of class names", classes, TypeError)
    classes = tuple(classes)
    unknown = [name for name in classes if name not in dataset.classes]
    if len(classes) < 2 or len(set(classes)) != len(classes) or unknown:
        raise ValueError(f"The 'classes' parameter of {func} must name at least 2 distinct classes of the "
                         f"dataset, from {dataset.classes}. Got {classes} instead.")
    old_index = torch.tensor([dataset.classes.index(name) for name in classes])  # (K,)
    mask = torch.isin(dataset.labels, old_index)  # (N,)
    new_label = torch.full((len(dataset.classes),), -1, dtype=torch.int64)
    new_label[old_index] = torch.arange(len(classes))
    return ImageSet(dataset.images[mask], new_label[dataset.labels[mask]], classes)


# ----------------------------------------------------------------------------- the network
class LayerNet(nn.Module):
    """``num_layers`` conv-BN-ReLU layers, global average pooling and a linear classifier.

    Layer k (0-based) has ``width * 2 ** (k // 2)`` channels, and every second layer halves the
    resolution (strides 1, 2, 1, 2, ...): at 32 px the maps are 32, 16, 16, 8, 8, 4 px for six
    layers. "Layer n" in the lab means ``layers[n - 1]``; the classifier is never copied.
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

    @property
    def num_layers(self) -> int:
        """Number of conv layers (the n of the experiment runs from 1 to this)."""
        return len(self.layers)

    def forward_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run layers ``start..`` and the head on ``x``, the output of layer ``start`` (1-based)."""
        for layer in self.layers[start:]:
            x = layer(x)  # (B, C_k, H_k, W_k)
        return self.classifier(x.mean(dim=(2, 3)))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)  # (B, num_classes)


def _check_layer_net(value: object, name: str, func: str) -> None:
    _check(isinstance(value, LayerNet), name, func, "a LayerNet (from make_layer_net)", value, TypeError)


def make_layer_net(num_classes: int, *, num_layers: int = 6, width: int = 16, seed: int | None = None) -> LayerNet:
    """Return a randomly initialised `LayerNet`; ``seed`` fixes its weights (global RNG untouched).

    Usage: ``model = make_layer_net(3, num_layers=6, width=16, seed=0)``
    """
    func = "make_layer_net"
    _check(_is_int(num_classes, 2), "num_classes", func, "an int >= 2", num_classes)
    _check(_is_int(num_layers, 1) and num_layers <= 12, "num_layers", func, "an int in [1, 12]", num_layers)
    _check(_is_int(width, 1), "width", func, "an int >= 1", width)
    _check(seed is None or _is_int(seed, 0), "seed", func, "None or an int >= 0", seed)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return LayerNet(int(num_classes), int(num_layers), int(width))


def transfer_layers(base: LayerNet, num_copied: int, num_classes: int, *, freeze: bool,
                    seed: int | None = None) -> LayerNet:
    """The surgery: a new network whose first ``num_copied`` layers are copies of ``base``'s.

    The copied layers (weights and BatchNorm statistics) are frozen (``freeze=True``: no
    gradient, and `companion.adapt.train_mode` keeps their BatchNorm in eval mode) or left
    trainable (fine-tuned). The layers above and a new ``num_classes``-way classifier are
    freshly initialised from ``seed``. ``base`` itself is not changed.

    Usage: ``model = transfer_layers(base_a, 3, num_classes=3, freeze=True, seed=1)  # A3B``
    """
    func = "transfer_layers"
    _check_layer_net(base, "base", func)
    _check(_is_int(num_copied, 0) and num_copied <= base.num_layers, "num_copied", func,
           f"an int in [0, {base.num_layers}] (the base has {base.num_layers} layers)", num_copied)
    _check(isinstance(freeze, bool), "freeze", func, "True or False", freeze, TypeError)
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


class _Suffix(nn.Module):
    """The layers above a frozen prefix and the head, fed the prefix's cached output."""

    def __init__(self, model: LayerNet, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) output of layer ``start``
        return self.model.forward_from(x, self.start)  # (B, num_classes)


def _prefix_input(model: LayerNet, start: int, datasets: list[ImageSet], batch_size: int,
                  device: torch.device) -> Callable:
    """A ``model_input`` for `train.fit` returning the frozen layers' output, computed once."""
    model.to(device, memory_format=torch.channels_last)
    model.eval()  # frozen BatchNorm normalises with its running statistics, as in adapt.train_mode
    cached = []
    with torch.inference_mode():
        for dataset in datasets:
            chunks = []
            for indices in torch.arange(len(dataset)).split(batch_size):
                x = train._to_input(dataset.images[indices], device)  # (B, 3, H, W)
                for layer in model.layers[:start]:
                    x = layer(x)  # (B, C_k, H_k, W_k)
                chunks.append(x)
            cached.append((dataset, torch.cat(chunks).clone()))  # (N, C, h, w), usable by autograd

    def model_input(dataset: ImageSet, indices: torch.Tensor) -> torch.Tensor:
        activations = next(tensor for known, tensor in cached if known is dataset)  # (N, C, h, w)
        return activations[indices.to(activations.device)]  # (B, C, h, w)

    return model_input


def fit_layer_net(model: LayerNet, train_set: ImageSet, val_set: ImageSet | None, *, num_epochs: int,
                  lr: float, batch_size: int = 32, seed: int = 0,
                  device: torch.device | str | None = None) -> train.History:
    """Train ``model`` with `companion.train.fit` (AdamW, cosine schedule, best validation epoch).

    If its first layers are frozen, their output is computed once per dataset and only the
    layers above train (the same result as recomputing it every step, much faster).

    Usage: ``history = fit_layer_net(model, task_b["train"], task_b["val"], num_epochs=12, lr=1e-2)``
    """
    func = "fit_layer_net"
    _check_layer_net(model, "model", func)
    _check_train_val(train_set, val_set, func)
    options = dict(num_epochs=num_epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, progress=False)
    start = _num_frozen(model)
    if start == 0:
        return train.fit(model, train_set, val_set, **options)
    _check(_is_int(batch_size, 1), "batch_size", func, "an int >= 1", batch_size)
    datasets = [dataset for dataset in (train_set, val_set) if dataset is not None]
    model_input = _prefix_input(model, start, datasets, int(batch_size), repro.get_device(device))
    return train.fit(_Suffix(model, start), train_set, val_set, model_input=model_input, **options)


# ----------------------------------------------------------------------------- base models, cached
def _digest(dataset: ImageSet) -> str:
    """sha256 of a dataset's images, labels and class names: its identity for the cache key."""
    digest = hashlib.sha256()
    digest.update(dataset.images.contiguous().numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    digest.update(json.dumps(dataset.classes).encode())
    return digest.hexdigest()


def train_base(train_set: ImageSet, val_set: ImageSet, *, num_layers: int = 6, width: int = 16,
               num_epochs: int = 12, lr: float = 1e-2, batch_size: int = 32, seed: int = 0,
               device: torch.device | str | None = None, cache: bool = True,
               cache_dir: str | Path | None = None) -> LayerNet:
    """Train (or load from the disk cache) a base `LayerNet` on one task, from random weights.

    The cache key holds every argument that determines the weights, a digest of the two
    datasets, the device type, the torch version and `CACHE_VERSION`; the file is written
    atomically. The model is returned in eval mode on ``device``.

    Usage: ``base_a = train_base(task_a["train"], task_a["val"], seed=0)``
    """
    func = "train_base"
    _check_train_val(train_set, val_set, func)
    _check(val_set is not None, "val_set", func, "an ImageSet (it picks the best epoch)", val_set, TypeError)
    _check(_is_int(num_epochs, 1), "num_epochs", func, "an int >= 1", num_epochs)
    _check(_is_float(lr, 0.0, strict=True), "lr", func, "a float > 0", lr)
    _check(_is_int(batch_size, 1), "batch_size", func, "an int >= 1", batch_size)
    _check(_is_int(seed, 0), "seed", func, "an int >= 0", seed)
    _check(isinstance(cache, bool), "cache", func, "True or False", cache, TypeError)
    device = repro.get_device(device)
    num_classes = len(train_set.classes)
    model = make_layer_net(num_classes, num_layers=num_layers, width=width, seed=seed)
    key = json.dumps({"version": CACHE_VERSION, "num_layers": num_layers, "width": width, "num_classes": num_classes,
                      "num_epochs": num_epochs, "lr": float(lr), "batch_size": batch_size, "seed": seed,
                      "train": _digest(train_set), "val": _digest(val_set), "device": device.type,
                      "threads": torch.get_num_threads() if device.type == "cpu" else None,
                      "torch": torch.__version__}, sort_keys=True)
    directory = Path(cache_dir) if cache_dir is not None else data.default_cache_dir()
    path = directory / f"layernet_{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    state = {name: torch.from_numpy(stored[name]) for name in model.state_dict()}
                    model.load_state_dict(state)
                    return model.to(device, memory_format=torch.channels_last).eval()
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign file: train again and overwrite it
    fit_layer_net(model, train_set, val_set, num_epochs=num_epochs, lr=lr, batch_size=batch_size, seed=seed,
                  device=device)
    if cache:
        arrays = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
        try:
            data.atomic_save_npz(path, key=np.array(key), **arrays)
        except OSError as error:
            raise OSError(f"Could not write the base-model cache to {path.parent} ({error}). Pass cache=False, "
                          "or set COMPANION_CACHE_DIR to a writable folder.") from error
    return model.eval()


# ----------------------------------------------------------------------------- the experiment
@dataclass
class LayerTransferResult:
    """Test accuracies on task B of the whole grid.

    ``accuracy[variant]`` has shape ``(num_seeds, len(depths))`` for each of `VARIANTS`;
    ``base_b`` (the baseline, trained on B from scratch) and ``base_a`` (on task A's test
    set) have shape ``(num_seeds,)``.
    """

    depths: tuple[int, ...]
    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]
    base_a: np.ndarray
    base_b: np.ndarray
    config: dict = field(default_factory=dict)

    def relative(self, variant: str) -> np.ndarray:
        """Accuracy minus the same seed's baseB, shape ``(num_seeds, len(depths))``."""
        _check(variant in self.accuracy, "variant", "LayerTransferResult.relative", f"one of {VARIANTS}", variant)
        return self.accuracy[variant] - self.base_b[:, None]

    def table(self) -> str:
        """Mean +- sd over seeds of every variant at every n, and the baseline, as text."""
        lines = [f"test accuracy on task B, mean +- sd over {len(self.seeds)} seeds",
                 f"{'n':>3}" + "".join(f"{variant:>16}" for variant in self.accuracy)]
        for column, depth in enumerate(self.depths):
            cells = [f"{values[:, column].mean():.3f} +- {values[:, column].std():.3f}"
                     for values in self.accuracy.values()]
            lines.append(f"{depth:>3}" + "".join(f"{cell:>16}" for cell in cells))
        lines.append(f"baseB (n = 0): {self.base_b.mean():.3f} +- {self.base_b.std():.3f};  "
                     f"baseA on task A: {self.base_a.mean():.3f} +- {self.base_a.std():.3f}")
        return "\n".join(lines)


def _check_task(value: object, name: str, func: str) -> None:
    _check(isinstance(value, dict) and {"train", "val", "test"} <= set(value), name, func,
           "a dict with 'train', 'val' and 'test' ImageSets", type(value).__name__, TypeError)
    for part in ("train", "val", "test"):
        _check_image_set(value[part], f"{name}['{part}']", func)


def run_layer_transfer(task_a: dict[str, ImageSet], task_b: dict[str, ImageSet], *,
                       config: LayerTransferConfig = CONFIGS["cpu"], depths: Sequence[int] | None = None,
                       seeds: Sequence[int] | None = None, device: torch.device | str | None = None,
                       cache: bool = True, cache_dir: str | Path | None = None) -> LayerTransferResult:
    """Train baseA and baseB, then AnB, BnB, AnB+ and BnB+ for every n in ``depths``, per seed.

    ``depths`` defaults to ``1..config.num_layers``; ``seeds`` to ``range(config.num_seeds)``.
    For seed s the bases start from weights drawn with seed s; every transferred network gets
    its new upper layers from seed ``1000 + s``, so BnB never restarts from baseB's own
    initial weights. All networks train with the same epochs, lr and batch size.

    Usage: ``result = run_layer_transfer(task_a, task_b, seeds=(0, 1)); print(result.table())``
    """
    func = "run_layer_transfer"
    _check_task(task_a, "task_a", func)
    _check_task(task_b, "task_b", func)
    _check(isinstance(config, LayerTransferConfig), "config", func, "a LayerTransferConfig", config, TypeError)
    depths = tuple(range(1, config.num_layers + 1)) if depths is None else tuple(depths)
    _check(len(depths) > 0 and all(_is_int(d, 1) and d <= config.num_layers for d in depths), "depths", func,
           f"a non-empty sequence of ints in [1, {config.num_layers}]", depths)
    seeds = tuple(range(config.num_seeds)) if seeds is None else tuple(seeds)
    _check(len(seeds) > 0 and all(_is_int(s, 0) for s in seeds), "seeds", func,
           "a non-empty sequence of ints >= 0", seeds)
    network = dict(num_layers=config.num_layers, width=config.width)
    fitting = dict(num_epochs=config.num_epochs, lr=config.lr, batch_size=config.batch_size, device=device)
    num_classes = len(task_b["train"].classes)
    accuracy = {variant: np.zeros((len(seeds), len(depths))) for variant in VARIANTS}
    base_a, base_b = np.zeros(len(seeds)), np.zeros(len(seeds))
    for row, seed in enumerate(seeds):
        bases = {}
        for name, task in (("A", task_a), ("B", task_b)):
            bases[name] = train_base(task["train"], task["val"], seed=seed, cache=cache, cache_dir=cache_dir,
                                     **network, **fitting)
        base_a[row] = train.evaluate(bases["A"], task_a["test"], device=device)["accuracy"]
        base_b[row] = train.evaluate(bases["B"], task_b["test"], device=device)["accuracy"]
        for column, depth in enumerate(depths):
            for variant in VARIANTS:
                model = transfer_layers(bases[variant[0]], depth, num_classes, freeze=not variant.endswith("+"),
                                        seed=1000 + seed)
                fit_layer_net(model, task_b["train"], task_b["val"], seed=seed, **fitting)
                accuracy[variant][row, column] = train.evaluate(model, task_b["test"], device=device)["accuracy"]
    return LayerTransferResult(depths=depths, seeds=seeds, accuracy=accuracy, base_a=base_a, base_b=base_b,
                               config=dict(vars(config), task_a=task_a["train"].classes,
                                           task_b=task_b["train"].classes))

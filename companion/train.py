"""The one training loop every transfer strategy uses, plus the from-scratch CNN baseline.

Scope: two plain functions, `train_one_epoch` and `evaluate` (the torchvision-references
shape), `fit` around them (optimizer over trainable parameters only, warmup + cosine
schedule, early stopping on validation accuracy with the best weights restored, a progress
bar, a `History`), `per_class_accuracy`, and `make_scratch_cnn`. No Trainer class, no
callbacks: freezing, heads and parameter groups come from `companion.adapt`.

Inputs are `companion.data.ImageSet`s of uint8 images held in memory. Each batch is picked
by an index permutation drawn from a seeded `torch.Generator`, optionally augmented (a
torchvision ``transforms.v2`` transform applied per image to uint8 tensors), normalised with
`companion.backbones.preprocess`, and moved to the device in ``channels_last`` layout.

Usage::

    from companion import train
    model = train.make_scratch_cnn(num_classes=6, seed=0)
    history = train.fit(model, train_set, val_set, num_epochs=10, lr=3e-3, seed=0)
    print(train.evaluate(model, test_set)["accuracy"])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from companion import backbones, repro
from companion.data import ImageSet

__all__ = [
    "History",
    "NonFiniteLossError",
    "train_one_epoch",
    "evaluate",
    "predict",
    "per_class_accuracy",
    "fit",
    "make_scratch_cnn",
]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
WARMUP_FRACTION = 0.05  # of all optimizer steps, at least one step


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite (usually: the lr is too high)."""


# ----------------------------------------------------------------------------- validation


def _check_image_set(value: object, name: str, func: str, *, min_classes: int = 1) -> None:
    if not isinstance(value, ImageSet):
        raise TypeError(
            f"The '{name}' parameter of {func} must be a companion.data.ImageSet. "
            f"Got {type(value).__name__} instead."
        )
    if len(value) == 0:
        raise ValueError(f"The '{name}' parameter of {func} must not be empty. Got 0 images.")
    num_present = int(torch.unique(value.labels).numel())
    if num_present < min_classes:
        raise ValueError(
            f"The '{name}' parameter of {func} must contain at least {min_classes} classes. "
            f"Got {num_present} (a classifier cannot learn from one class)."
        )


def _check_positive(value: object, name: str, func: str, kind: type = float) -> None:
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not value > 0:
        what = "an int >= 1" if kind is int else "a float > 0"
        raise ValueError(f"The '{name}' parameter of {func} must be {what}. Got {value!r} instead.")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"The '{name}' parameter of {func} must be a float > 0. Got {value!r} instead.")


def _check_outputs(logits: torch.Tensor, dataset: ImageSet, func: str) -> None:
    num_classes = len(dataset.classes)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"{func}: the model outputs shape {tuple(logits.shape)} but the dataset has "
            f"{num_classes} classes {dataset.classes}; the model must output (batch, {num_classes}). "
            f"Replace its head first, e.g. model.reset_classifier({num_classes})."
        )


def _check_labels(dataset: ImageSet, name: str, func: str) -> None:
    num_classes = len(dataset.classes)
    low, high = int(dataset.labels.min()), int(dataset.labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"The labels of '{name}' in {func} must be in [0, {num_classes - 1}] for its "
            f"{num_classes} classes. Got labels in [{low}, {high}] instead."
        )


# ----------------------------------------------------------------------------- batches


def _to_input(
    images: torch.Tensor, device: torch.device, augment: Callable | None = None
) -> torch.Tensor:
    """Augment (per image, on CPU), normalise and move a uint8 batch to the device."""
    if augment is not None:
        images = torch.stack([augment(image) for image in images])  # (B, 3, H, W)
    inputs = backbones.preprocess(images)  # (B, 3, H, W) float32, normalised
    if inputs.ndim == 4:
        return inputs.to(device, memory_format=torch.channels_last)
    return inputs.to(device)


def _batches(num_items: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches: a random permutation when a generator is given, else in order.

    When shuffling, a trailing batch of a single image is dropped (BatchNorm cannot compute
    batch statistics of one image at 1x1 resolution); it is a different image every epoch.
    """
    if generator is None:
        order = torch.arange(num_items)
    else:
        order = torch.randperm(num_items, generator=generator)
    batches = list(order.split(batch_size))
    if generator is not None and batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


# ----------------------------------------------------------------------------- the two loops


def train_one_epoch(
    model: nn.Module,
    train_set: ImageSet,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    device: torch.device | str | None,
    generator: torch.Generator,
    augment: Callable | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_steps: int | None = None,
    progress_bar: tqdm | None = None,
) -> dict[str, float]:
    """Train ``model`` (already on ``device``) for one pass over ``train_set``.

    Batches follow a permutation drawn from ``generator``; ``scheduler`` (if any) steps after
    every optimizer step; ``max_steps`` stops the epoch early. Raises `NonFiniteLossError` as
    soon as a loss is NaN or infinite.

    Returns ``{"loss", "accuracy", "num_steps", "seconds"}`` (loss and accuracy averaged over the
    images seen).

    Usage: ``metrics = train_one_epoch(model, train_set, optimizer, batch_size=32,
    device="cpu", generator=torch.Generator().manual_seed(0))``
    """
    func = "train_one_epoch"
    _check_image_set(train_set, "train_set", func, min_classes=2)
    _check_labels(train_set, "train_set", func)
    _check_positive(batch_size, "batch_size", func, kind=int)
    device = repro.get_device(device)
    criterion = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    total_loss, total_correct, total_seen, num_steps = 0.0, 0, 0, 0
    for indices in _batches(len(train_set), batch_size, generator):
        if max_steps is not None and num_steps >= max_steps:
            break
        images = train_set.images[indices]  # (B, 3, H, W) uint8
        targets = train_set.labels[indices].to(device)  # (B,)
        if augment is not None:
            augment_seed = int(torch.randint(2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(augment_seed)
                inputs = _to_input(images, device, augment)
        else:
            inputs = _to_input(images, device)
        logits = model(inputs)  # (B, num_classes)
        if num_steps == 0:
            _check_outputs(logits, train_set, func)
        loss = criterion(logits, targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            lr = max(group["lr"] for group in optimizer.param_groups)
            raise NonFiniteLossError(
                f"The training loss became {loss_value} at step {num_steps + 1} of this epoch "
                f"(lr={lr:.3g}). The learning rate is probably too high: try a 10x lower 'lr' "
                f"(e.g. {lr / 10:.3g}). The model's weights are now invalid; rebuild or reload "
                f"the model before training again."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        batch_len = len(indices)
        total_loss += loss_value * batch_len
        total_correct += int((logits.argmax(dim=1) == targets).sum())
        total_seen += batch_len
        num_steps += 1
        if progress_bar is not None:
            progress_bar.update(1)
            progress_bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
    return {
        "loss": total_loss / max(total_seen, 1),
        "accuracy": total_correct / max(total_seen, 1),
        "num_steps": num_steps,
        "seconds": time.perf_counter() - start,
    }


def _logits_in_batches(model, dataset, batch_size, device, func):
    model.eval()
    with torch.inference_mode():
        for step, indices in enumerate(_batches(len(dataset), batch_size, None)):
            inputs = _to_input(dataset.images[indices], device)  # (B, 3, H, W)
            logits = model(inputs)  # (B, num_classes)
            if step == 0:
                _check_outputs(logits, dataset, func)
            yield indices, logits


def evaluate(
    model: nn.Module,
    dataset: ImageSet,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Return the mean cross-entropy ``loss`` and the ``accuracy`` of ``model`` on ``dataset``.

    Puts the model in eval mode (BatchNorm uses running statistics) and moves it to ``device``
    (default: `companion.repro.get_device()`).

    Usage: ``evaluate(model, test_set)["accuracy"]``
    """
    func = "evaluate"
    _check_image_set(dataset, "dataset", func)
    _check_labels(dataset, "dataset", func)
    _check_positive(batch_size, "batch_size", func, kind=int)
    device = repro.get_device(device)
    model.to(device, memory_format=torch.channels_last)
    total_loss, total_correct = 0.0, 0
    for indices, logits in _logits_in_batches(model, dataset, batch_size, device, func):
        targets = dataset.labels[indices].to(device)  # (B,)
        total_loss += float(nn.functional.cross_entropy(logits.float(), targets, reduction="sum"))
        total_correct += int((logits.argmax(dim=1) == targets).sum())
    return {"loss": total_loss / len(dataset), "accuracy": total_correct / len(dataset)}


def predict(
    model: nn.Module,
    dataset: ImageSet,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Return the predicted class index of every image, shape ``(N,)`` int64 on the CPU.

    Usage: ``predictions = predict(model, test_set)``
    """
    func = "predict"
    _check_image_set(dataset, "dataset", func)
    _check_positive(batch_size, "batch_size", func, kind=int)
    device = repro.get_device(device)
    model.to(device, memory_format=torch.channels_last)
    predictions = [
        logits.argmax(dim=1).cpu()
        for _, logits in _logits_in_batches(model, dataset, batch_size, device, func)
    ]
    return torch.cat(predictions)  # (N,)


def per_class_accuracy(
    model: nn.Module,
    dataset: ImageSet,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Return ``{class name: accuracy on the images of that class}`` (NaN for absent classes).

    Usage: ``per_class_accuracy(model, test_set)["dent"]``
    """
    _check_image_set(dataset, "dataset", "per_class_accuracy")
    _check_labels(dataset, "dataset", "per_class_accuracy")
    predictions = predict(model, dataset, batch_size=batch_size, device=device)  # (N,)
    result = {}
    for index, name in enumerate(dataset.classes):
        mask = dataset.labels == index  # (N,)
        count = int(mask.sum())
        result[name] = float((predictions[mask] == index).sum()) / count if count else float("nan")
    return result


# ----------------------------------------------------------------------------- fit


@dataclass
class History:
    """Per-epoch metrics of one `fit` run; ``best_epoch`` counts from 1.

    ``lr`` is the largest learning rate over the parameter groups at the end of each epoch;
    ``epoch_seconds`` is wall-clock time (volatile: never print it in a checked notebook).
    Without a validation set, the ``val_*`` lists hold NaN.
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    num_steps: int = 0
    stopped_early: bool = False

    @property
    def num_epochs(self) -> int:
        """Number of epochs actually run."""
        return len(self.train_loss)

    @property
    def best_val_accuracy(self) -> float:
        """Validation accuracy of the restored (best) epoch."""
        return self.val_accuracy[self.best_epoch - 1] if self.best_epoch else float("nan")

    def plot(self):
        """Return a matplotlib Figure with loss and accuracy curves (train and validation).

        The figure is not registered with pyplot, so a notebook shows it once when it is the
        cell's last expression. Usage: ``history.plot()``
        """
        from matplotlib.figure import Figure

        epochs = range(1, self.num_epochs + 1)
        figure = Figure(figsize=(8, 3), layout="constrained")
        loss_axes, accuracy_axes = figure.subplots(1, 2)
        for axes, train_values, val_values, title in (
            (loss_axes, self.train_loss, self.val_loss, "loss"),
            (accuracy_axes, self.train_accuracy, self.val_accuracy, "accuracy"),
        ):
            axes.plot(epochs, train_values, marker="o", label="train")
            axes.plot(epochs, val_values, marker="o", label="validation")
            if self.best_epoch:
                axes.axvline(self.best_epoch, color="gray", linestyle="--", linewidth=1, label="best epoch")
            axes.set_xlabel("epoch")
            axes.set_title(title)
        accuracy_axes.set_ylim(0, 1.02)
        accuracy_axes.legend(loc="lower right")
        return figure


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters only; no weight decay on biases and normalisation weights (1-D)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


def _trainable_groups(param_groups: Iterable[dict], weight_decay: float) -> list[dict]:
    groups = []
    for group in param_groups:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(
                "The 'param_groups' parameter of fit must be a list of dicts with a 'params' key "
                f"(as returned by companion.adapt). Got an item {group!r} instead."
            )
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            groups.append({"weight_decay": weight_decay, **group, "params": params})
    return groups


def _make_schedule(optimizer, schedule: str, total_steps: int):
    """Linear warmup over 5 % of the steps (at least one), then cosine decay to 0 or constant."""
    warmup_steps = max(1, round(WARMUP_FRACTION * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_optional_int(value, name: str, func: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"The '{name}' parameter of {func} must be None or an int >= 1. Got {value!r} instead.")


def fit(
    model: nn.Module,
    train_set: ImageSet,
    val_set: ImageSet | None,
    *,
    num_epochs: int,
    lr: float,
    batch_size: int = 32,
    weight_decay: float | None = None,
    optimizer: str = "adamw",
    schedule: str = "cosine",
    patience: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    augment: Callable | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    param_groups: list[dict] | None = None,
) -> History:
    """Train ``model`` on ``train_set``, select the epoch with the best validation accuracy.

    The optimizer sees only trainable parameters (``requires_grad``); pass ``param_groups``
    (e.g. from `companion.adapt`) for per-group learning rates. ``optimizer="adamw"`` (default
    ``weight_decay`` 0.05) or ``"sgd"`` (momentum 0.9, default ``weight_decay`` 5e-4); biases and
    normalisation weights get no weight decay. The learning rate warms up linearly over the
    first 5 % of the steps, then follows ``schedule``: ``"cosine"`` decay to 0 at the last
    planned step (robust with no tuning of a decay epoch), or ``"constant"``. After every
    epoch the model is evaluated on ``val_set``; the best weights (by accuracy, first epoch
    wins ties) are copied and restored at the end. ``patience`` stops after that many epochs
    without improvement. Batches, augmentation and dropout are functions of ``seed`` (the
    caller's global random state is left as it was); call `companion.repro.deterministic_mode`
    too for bit-identical GPU runs. ``max_steps`` caps the optimizer steps (quick runs).

    Usage: ``history = fit(model, train_set, val_set, num_epochs=10, lr=1e-3, seed=0)``
    """
    func = "fit"
    _check_image_set(train_set, "train_set", func, min_classes=2)
    _check_labels(train_set, "train_set", func)
    if val_set is not None:
        _check_image_set(val_set, "val_set", func)
        _check_labels(val_set, "val_set", func)
        if tuple(val_set.classes) != tuple(train_set.classes):
            raise ValueError(
                f"The 'val_set' parameter of fit must have the same classes as train_set. "
                f"Got {val_set.classes} and {train_set.classes}."
            )
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of fit must be a torch.nn.Module. Got {type(model).__name__} instead.")
    _check_positive(num_epochs, "num_epochs", func, kind=int)
    _check_positive(lr, "lr", func)
    _check_positive(batch_size, "batch_size", func, kind=int)
    _check_optional_int(patience, "patience", func)
    _check_optional_int(max_steps, "max_steps", func)
    if patience is not None and val_set is None:
        raise ValueError("The 'patience' parameter of fit needs a val_set to stop on. Pass val_set or patience=None.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"The 'optimizer' parameter of fit must be one of {OPTIMIZERS}. Got {optimizer!r} instead.")
    if schedule not in SCHEDULES:
        raise ValueError(f"The 'schedule' parameter of fit must be one of {SCHEDULES}. Got {schedule!r} instead.")
    if weight_decay is None:
        weight_decay = 0.05 if optimizer == "adamw" else 5e-4
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"The 'weight_decay' parameter of fit must be a float >= 0. Got {weight_decay!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"The 'seed' parameter of fit must be an int >= 0. Got {seed!r} instead.")
    if augment is not None and not callable(augment):
        raise TypeError(f"The 'augment' parameter of fit must be None or a callable transform. Got {augment!r} instead.")

    device = repro.get_device(device)
    model.to(device, memory_format=torch.channels_last)
    if param_groups is None:
        groups = _parameter_groups(model, weight_decay)
    else:
        groups = _trainable_groups(param_groups, weight_decay)
    if not groups:
        raise ValueError(
            "fit found no trainable parameters: every parameter has requires_grad=False. "
            "Unfreeze some layers (e.g. companion.adapt) or give the model a trainable head."
        )
    if optimizer == "adamw":
        optim = torch.optim.AdamW(groups, lr=lr)
    else:
        optim = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    steps_per_epoch = len(_batches(len(train_set), batch_size, torch.Generator().manual_seed(0)))
    total_steps = num_epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    scheduler = _make_schedule(optim, schedule, total_steps)

    history = History()
    best_accuracy, best_state, epochs_without_improvement = -math.inf, None, 0
    generator = torch.Generator().manual_seed(seed)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    bar = tqdm(total=total_steps, desc=f"epoch 1/{num_epochs}", unit="step", disable=not progress)
    with torch.random.fork_rng(devices=fork_devices), bar:
        torch.manual_seed(seed)  # dropout / drop-path draws; restored on exit
        for epoch in range(1, num_epochs + 1):
            try:
                train_metrics = train_one_epoch(
                    model, train_set, optim, batch_size=batch_size, device=device,
                    generator=generator, augment=augment, scheduler=scheduler,
                    max_steps=total_steps - history.num_steps, progress_bar=bar,
                )
            except NonFiniteLossError as error:
                raise NonFiniteLossError(f"fit, epoch {epoch}: {error}") from None
            history.num_steps += train_metrics["num_steps"]
            history.train_loss.append(train_metrics["loss"])
            history.train_accuracy.append(train_metrics["accuracy"])
            history.lr.append(max(group["lr"] for group in optim.param_groups))
            if val_set is not None:
                val_metrics = evaluate(model, val_set, device=device)
            else:
                val_metrics = {"loss": float("nan"), "accuracy": float("nan")}
            history.val_loss.append(val_metrics["loss"])
            history.val_accuracy.append(val_metrics["accuracy"])
            history.epoch_seconds.append(train_metrics["seconds"])
            bar.set_description(f"epoch {min(epoch + 1, num_epochs)}/{num_epochs} (val acc {val_metrics['accuracy']:.3f})")
            if val_set is None or val_metrics["accuracy"] > best_accuracy:
                best_accuracy, history.best_epoch, epochs_without_improvement = val_metrics["accuracy"], epoch, 0
                if val_set is not None:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                epochs_without_improvement += 1
            if patience is not None and epochs_without_improvement >= patience and epoch < num_epochs:
                history.stopped_early = True
                break
            if history.num_steps >= total_steps:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


# ----------------------------------------------------------------------------- scratch baseline


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ScratchCNN(nn.Module):
    """Five conv-BN-ReLU blocks, global average pooling and a linear classifier.

    At 112 px the feature maps are 56, 28, 14, 14 and 7 px with ``w/2, w, 2w, 2w, 4w``
    channels: a 1-3 px defect still spans a few cells of the 28-px map, and the stride-1 block
    at 14 px adds context before the last downsampling. It answers `forward_features` and
    `forward_head` like a timm model.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        channels = [3, width // 2, width, 2 * width, 2 * width, 4 * width]
        strides = [2, 2, 2, 1, 2]
        self.blocks = nn.Sequential(
            *(_conv_block(channels[i], channels[i + 1], strides[i]) for i in range(len(strides)))
        )
        self.num_features = channels[-1]
        self.classifier = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # (B, 4w, H/16, W/16)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean(dim=(2, 3)))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, num_classes)


def make_scratch_cnn(num_classes: int, width: int = 32, seed: int | None = None) -> nn.Module:
    """Return a small randomly initialised CNN: the from-scratch baseline that transfer must beat.

    BatchNorm, Kaiming initialisation and ``width`` base channels (``4 * width`` features
    before the classifier); train it with `fit` and the same learning-rate search and
    augmentation as the transferred models, so the comparison is fair. ``seed`` makes the
    initial weights reproducible without touching the global random state.

    Usage: ``model = make_scratch_cnn(num_classes=6, seed=0)``
    """
    func = "make_scratch_cnn"
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"The 'num_classes' parameter of {func} must be an int >= 2. Got {num_classes!r} instead.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 2 or width % 2:
        raise ValueError(f"The 'width' parameter of {func} must be an even int >= 2. Got {width!r} instead.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"The 'seed' parameter of {func} must be None or an int >= 0. Got {seed!r} instead.")
    if seed is None:
        return ScratchCNN(num_classes, width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ScratchCNN(num_classes, width)

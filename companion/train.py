"""The one training loop every transfer strategy uses, plus the from-scratch CNN baseline.

Scope: two plain functions, `train_one_epoch` and `evaluate` (the torchvision-references
shape), `fit` around them (optimizer over trainable parameters only, warmup + cosine
schedule, early stopping on validation accuracy with the best weights restored, a progress
bar, a `History`), `predict`, `per_class_accuracy`, and `make_scratch_cnn`. No Trainer class,
no callbacks: freezing, heads and parameter groups come from `companion.adapt`.

Inputs are `companion.data.ImageSet`s of uint8 images held in memory. Each batch is picked by
an index permutation drawn from a seeded `torch.Generator`, optionally augmented (a
torchvision ``transforms.v2`` transform applied to each uint8 image), normalised with
`companion.backbones.preprocess`, and moved to the device in ``channels_last`` layout. A
``model_input(dataset, indices)`` callable replaces that last step (e.g. cached activations
of a frozen prefix, see `companion.strategies`).

Usage::

    from companion import train
    model = train.make_scratch_cnn(num_classes=6, seed=0)
    history = train.fit(model, train_set, val_set, num_epochs=10, lr=3e-3, seed=0)
    print(train.evaluate(model, test_set)["accuracy"])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real

import torch
from torch import nn
from tqdm.auto import tqdm

from companion import adapt, backbones, repro
from companion.data import ImageSet

__all__ = ["History", "NonFiniteLossError", "ScratchCNN", "train_one_epoch", "evaluate", "predict",
           "per_class_accuracy", "fit", "make_scratch_cnn"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
WARMUP_FRACTION = 0.05  # of all optimizer steps, at least one step
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite (usually: the lr is too high)."""


# ----------------------------------------------------------------------------- validation
def _is_int(value: object, low: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= low


def _is_float(value: object, low: float, *, strict: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        return False
    return value > low if strict else value >= low


def _check(ok: bool, name: str, func: str, allowed: str, value: object, error: type = ValueError):
    if not ok:
        shown = type(value).__name__ if error is TypeError else repr(value)
        raise error(f"The '{name}' parameter of {func} must be {allowed}. Got {shown} instead.")


def _check_image_set(value: object, name: str, func: str, *, min_classes: int = 1) -> None:
    _check(isinstance(value, ImageSet), name, func, "a companion.data.ImageSet", value, TypeError)
    if len(value) == 0:
        raise ValueError(f"The '{name}' parameter of {func} must not be empty. Got 0 images.")
    num_present = int(torch.unique(value.labels).numel())
    if num_present < min_classes:
        raise ValueError(f"The '{name}' parameter of {func} must contain at least {min_classes} classes. "
                         f"Got {num_present} (a classifier cannot learn from one class).")


def _check_train_val(train_set: object, val_set: object, func: str) -> None:
    """A training set of at least two classes, and an optional validation set with the same classes."""
    _check_image_set(train_set, "train_set", func, min_classes=2)
    if val_set is not None:
        _check_image_set(val_set, "val_set", func)
        if val_set.classes != train_set.classes:
            raise ValueError(f"The 'val_set' parameter of {func} must have the same classes as train_set. "
                             f"Got {val_set.classes} and {train_set.classes}.")


def _check_outputs(logits: torch.Tensor, dataset: ImageSet, func: str) -> None:
    num_classes = len(dataset.classes)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"{func}: the model outputs shape {tuple(logits.shape)} but the dataset has {num_classes} "
            f"classes {dataset.classes}; the model must output (batch, {num_classes}). Replace its "
            f"head first, e.g. model.reset_classifier({num_classes}) or adapt.replace_head.")


# ----------------------------------------------------------------------------- batches
def _to_input(images: torch.Tensor, device: torch.device, augment: Callable | None = None) -> torch.Tensor:
    """Augment (each image, on the CPU), normalise and move a uint8 batch to the device."""
    if augment is not None:
        images = torch.stack([augment(image) for image in images])  # (B, 3, H, W)
    inputs = backbones.preprocess(images)  # (B, 3, H, W) float32, normalised
    return inputs.to(device, memory_format=torch.channels_last)


def _batches(num_items: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches: a random permutation when a generator is given, else in order.

    When shuffling, a trailing batch of a single image is dropped (BatchNorm cannot compute
    batch statistics of one image at 1x1 resolution); it is a different image every epoch.
    """
    order = torch.arange(num_items) if generator is None else torch.randperm(num_items, generator=generator)
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
    model_input: Callable | None = None,
    keep_frozen_batchnorm: bool = True,
) -> dict[str, float]:
    """Train ``model`` (already on ``device``) for one pass over ``train_set``.

    Puts the model in train mode with `companion.adapt.train_mode` (``model.train()``, except
    that BatchNorm layers of frozen depths stay in eval mode). Batches follow a permutation
    drawn from ``generator``; ``scheduler`` (if any) steps after every optimizer step;
    ``max_steps`` ends the epoch early; ``model_input(train_set, indices)``, if given, returns
    the model's input batch instead of the preprocessed images. Raises `NonFiniteLossError` as
    soon as a loss is NaN or infinite. Returns ``{"loss", "accuracy", "num_steps", "seconds"}``
    (averages over the images seen). ``keep_frozen_batchnorm=False`` calls plain
    ``model.train()`` instead, so frozen BatchNorm layers update their running statistics: a
    common bug, kept only to reproduce it (chapter 5).

    Usage: ``train_one_epoch(model, train_set, optimizer, batch_size=32, device="cpu",
    generator=torch.Generator().manual_seed(0))``
    """
    func = "train_one_epoch"
    _check_image_set(train_set, "train_set", func, min_classes=2)
    _check(_is_int(batch_size, 1), "batch_size", func, "an int >= 1", batch_size)
    _check(isinstance(keep_frozen_batchnorm, bool), "keep_frozen_batchnorm", func, "a bool",
           keep_frozen_batchnorm, TypeError)
    device, batch_size = repro.get_device(device), int(batch_size)
    if keep_frozen_batchnorm:
        adapt.train_mode(model)
    else:  # the bug of chapter 5: every BatchNorm, frozen or not, updates its running statistics
        model.train()
    start = time.perf_counter()
    total_loss, total_correct, total_seen, num_steps = 0.0, 0, 0, 0
    for indices in _batches(len(train_set), batch_size, generator):
        if max_steps is not None and num_steps >= max_steps:
            break
        images = train_set.images[indices]  # (B, 3, H, W) uint8
        targets = train_set.labels[indices].to(device)  # (B,)
        if model_input is not None:
            inputs = model_input(train_set, indices).to(device)  # (B, ...): a cache may live elsewhere
        elif augment is None:
            inputs = _to_input(images, device)  # (B, 3, H, W) float32
        else:  # the transform draws from torch's global RNG: give it a seed from ``generator``
            augment_seed = int(torch.randint(2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(augment_seed)
                inputs = _to_input(images, device, augment)  # (B, 3, H, W) float32
        logits = model(inputs)  # (B, num_classes)
        if num_steps == 0:
            _check_outputs(logits, train_set, func)
        loss = nn.functional.cross_entropy(logits, targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            lr = max(group["lr"] for group in optimizer.param_groups)
            raise NonFiniteLossError(
                f"The training loss became {loss_value} at step {num_steps + 1} of the epoch (lr={lr:.3g}). "
                f"The learning rate is probably too high: try a 10x lower 'lr' (e.g. {lr / 10:.3g}). "
                "The model's weights are now invalid; rebuild or reload the model before training again.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss_value * len(indices)
        total_correct += int((logits.argmax(dim=1) == targets).sum())
        total_seen += len(indices)
        num_steps += 1
        if progress_bar is not None:
            progress_bar.update(1)
            progress_bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
    return {"loss": total_loss / max(total_seen, 1), "accuracy": total_correct / max(total_seen, 1),
            "num_steps": num_steps, "seconds": time.perf_counter() - start}


def _logits_in_batches(model: nn.Module, dataset: ImageSet, batch_size: int, device, func: str,
                       model_input: Callable | None = None):
    """Yield ``(indices, logits)`` batch by batch, in eval mode and under inference_mode."""
    _check_image_set(dataset, "dataset", func)
    _check(_is_int(batch_size, 1), "batch_size", func, "an int >= 1", batch_size)
    device, batch_size = repro.get_device(device), int(batch_size)
    model.to(device, memory_format=torch.channels_last)
    model.eval()
    with torch.inference_mode():
        for step, indices in enumerate(_batches(len(dataset), batch_size, None)):
            inputs = (_to_input(dataset.images[indices], device) if model_input is None
                      else model_input(dataset, indices).to(device))  # (B, 3, H, W) or cached (B, ...)
            logits = model(inputs)  # (B, num_classes)
            if step == 0:
                _check_outputs(logits, dataset, func)
            yield indices, logits


def evaluate(model: nn.Module, dataset: ImageSet, *, batch_size: int = 256,
             device: torch.device | str | None = None,
             model_input: Callable | None = None) -> dict[str, float]:
    """Return the mean cross-entropy ``loss`` and the ``accuracy`` of ``model`` on ``dataset``.

    Moves the model to ``device`` (default: `companion.repro.get_device()`) and leaves it in
    eval mode (BatchNorm uses its running statistics, dropout is off). ``model_input``: as in
    `train_one_epoch`.

    Usage: ``evaluate(model, test_set)["accuracy"]``
    """
    total_loss, total_correct = 0.0, 0
    for indices, logits in _logits_in_batches(model, dataset, batch_size, device, "evaluate", model_input):
        targets = dataset.labels[indices].to(logits.device)  # (B,)
        total_loss += float(nn.functional.cross_entropy(logits.float(), targets, reduction="sum"))
        total_correct += int((logits.argmax(dim=1) == targets).sum())
    return {"loss": total_loss / len(dataset), "accuracy": total_correct / len(dataset)}


def predict(model: nn.Module, dataset: ImageSet, *, batch_size: int = 256,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Return the predicted class index of every image, shape ``(N,)`` int64 on the CPU.

    Usage: ``predictions = predict(model, test_set)``
    """
    batches = _logits_in_batches(model, dataset, batch_size, device, "predict")
    return torch.cat([logits.argmax(dim=1).cpu() for _, logits in batches])  # (N,)


def per_class_accuracy(model: nn.Module, dataset: ImageSet, *, batch_size: int = 256,
                       device: torch.device | str | None = None) -> dict[str, float]:
    """Return ``{class name: accuracy on the images of that class}`` (NaN for an absent class).

    Usage: ``per_class_accuracy(model, test_set)["dent"]``
    """
    _check_image_set(dataset, "dataset", "per_class_accuracy")
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
    """Per-epoch metrics of one `fit` run; ``best_epoch`` counts from 1 (the restored epoch).

    ``lr`` is the largest learning rate over the parameter groups at the end of each epoch;
    ``epoch_seconds`` is wall-clock training time (volatile, so left out of the repr; never
    print it in a checked notebook). Without a validation set the ``val_*`` lists hold NaN.
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list, repr=False)  # volatile
    best_epoch: int = 0
    num_steps: int = 0
    stopped_early: bool = False

    @property
    def num_epochs(self) -> int:
        """Number of epochs actually run."""
        return len(self.train_loss)

    @property
    def best_val_accuracy(self) -> float:
        """Validation accuracy of the best (restored) epoch."""
        return self.val_accuracy[self.best_epoch - 1] if self.best_epoch else float("nan")

    def plot(self):
        """Return a matplotlib Figure with loss and accuracy per epoch, train and validation.

        The figure is not registered with pyplot, so a notebook shows it once when it is the
        cell's last expression. Usage: ``history.plot()``
        """
        from matplotlib.figure import Figure

        epochs = range(1, self.num_epochs + 1)
        figure = Figure(figsize=(8, 3), layout="constrained")
        loss_axes, accuracy_axes = figure.subplots(1, 2)
        for axes, train_values, val_values, title in (
                (loss_axes, self.train_loss, self.val_loss, "loss"),
                (accuracy_axes, self.train_accuracy, self.val_accuracy, "accuracy")):
            axes.plot(epochs, train_values, marker="o", label="train")
            axes.plot(epochs, val_values, marker="o", label="validation")
            if self.best_epoch:
                axes.axvline(self.best_epoch, color="gray", linestyle="--", linewidth=1, label="best epoch")
            axes.set_xlabel("epoch")
            axes.set_title(title)
        accuracy_axes.set_ylim(0, 1.02)
        accuracy_axes.legend(loc="lower right")
        return figure


def _optimizer_groups(model: nn.Module, param_groups: list[dict] | None, weight_decay: float) -> list[dict]:
    """Trainable parameters only. Default grouping: no weight decay on biases and norm weights."""
    if param_groups is None:
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
    else:
        groups = []
        for group in param_groups:
            _check(isinstance(group, dict) and "params" in group, "param_groups", "fit",
                   "a list of dicts with a 'params' key (e.g. from companion.adapt.param_groups)", group,
                   TypeError)
            params = [p for p in group["params"] if p.requires_grad]
            groups.append({"weight_decay": weight_decay, **group, "params": params})
    return [group for group in groups if group["params"]]


def _make_schedule(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    """Linear warmup over 5 % of the steps (at least one), then cosine decay to 0, or constant."""
    warmup_steps = max(1, round(WARMUP_FRACTION * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)  # scales each group's own lr


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
    model_input: Callable | None = None,
    keep_frozen_batchnorm: bool = True,
) -> History:
    """Train ``model`` on ``train_set`` and keep the epoch with the best validation accuracy.

    - Optimizer: only trainable parameters (``requires_grad``). ``"adamw"`` (default
      ``weight_decay`` 0.05) or ``"sgd"`` (momentum 0.9, default ``weight_decay`` 5e-4); biases
      and normalisation weights get no weight decay. ``param_groups`` (e.g. from
      `companion.adapt.param_groups`) keeps each group's own ``lr``.
    - Schedule: linear warmup over the first 5 % of the steps, then ``"cosine"`` decay to 0 at
      the last planned step (no decay epoch to tune) or ``"constant"``.
    - Selection: after each epoch the model is evaluated on ``val_set``; the best weights (by
      accuracy; the earlier epoch wins a tie) are restored at the end. ``patience`` stops
      after that many epochs without improvement. The model is left in eval mode.
    - Randomness: batches, augmentation and dropout follow ``seed``; the caller's global random
      state is left as it was. For bit-identical GPU runs call `repro.deterministic_mode` too.
    - ``max_steps`` caps the optimizer steps (quick runs); ``progress=False`` prints nothing.
    - ``model_input(dataset, indices)`` returns each batch's model input for training and
      validation instead of the preprocessed images (no ``augment`` then).
    - ``keep_frozen_batchnorm=False`` trains with plain ``model.train()``: the BatchNorm layers of
      frozen depths then drift to the training batches' statistics (the bug of chapter 5).

    Usage: ``history = fit(model, train_set, val_set, num_epochs=10, lr=1e-3, seed=0)``
    """
    func = "fit"
    _check(isinstance(model, nn.Module), "model", func, "a torch.nn.Module", model, TypeError)
    _check_train_val(train_set, val_set, func)
    _check(_is_int(num_epochs, 1), "num_epochs", func, "an int >= 1", num_epochs)
    _check(_is_float(lr, 0.0, strict=True), "lr", func, "a float > 0", lr)
    _check(_is_int(batch_size, 1), "batch_size", func, "an int >= 1", batch_size)
    _check(optimizer in OPTIMIZERS, "optimizer", func, f"one of {OPTIMIZERS}", optimizer)
    _check(schedule in SCHEDULES, "schedule", func, f"one of {SCHEDULES}", schedule)
    weight_decay = DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else weight_decay
    _check(_is_float(weight_decay, 0.0, strict=False), "weight_decay", func, "a float >= 0", weight_decay)
    _check(patience is None or _is_int(patience, 1), "patience", func, "None or an int >= 1", patience)
    _check(max_steps is None or _is_int(max_steps, 1), "max_steps", func, "None or an int >= 1", max_steps)
    _check(_is_int(seed, 0), "seed", func, "an int >= 0", seed)
    _check(augment is None or callable(augment), "augment", func,
           "None or a callable transform (e.g. torchvision.transforms.v2)", augment, TypeError)
    _check(model_input is None or callable(model_input), "model_input", func,
           "None or a callable (dataset, indices) -> inputs", model_input, TypeError)
    _check(isinstance(keep_frozen_batchnorm, bool), "keep_frozen_batchnorm", func, "a bool",
           keep_frozen_batchnorm, TypeError)
    if model_input is not None and augment is not None:
        raise ValueError("fit cannot apply 'augment' when 'model_input' supplies the inputs "
                         "(augmentation acts on images). Pass one of them, not both.")
    if patience is not None and val_set is None:
        raise ValueError("The 'patience' parameter of fit needs a val_set to stop on. "
                         "Pass a val_set or patience=None.")

    num_epochs, batch_size, seed = int(num_epochs), int(batch_size), int(seed)
    patience = None if patience is None else int(patience)
    device = repro.get_device(device)
    model.to(device, memory_format=torch.channels_last)
    groups = _optimizer_groups(model, param_groups, weight_decay)
    if not groups:
        raise ValueError("fit found no trainable parameters: every parameter has requires_grad=False. "
                         "Unfreeze some layers (companion.adapt.unfreeze) or give the model a new head.")
    if optimizer == "adamw":
        optim = torch.optim.AdamW(groups, lr=lr)
    else:
        optim = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    steps_per_epoch = len(_batches(len(train_set), batch_size, torch.Generator()))
    total_steps = num_epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, int(max_steps))
    scheduler = _make_schedule(optim, schedule, total_steps)

    history = History()
    best_accuracy, best_state, epochs_without_improvement = -math.inf, None, 0
    generator = torch.Generator().manual_seed(seed)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    bar = tqdm(total=total_steps, desc=f"epoch 1/{num_epochs}", unit="step", disable=not progress)
    with torch.random.fork_rng(devices=fork_devices), bar:
        torch.manual_seed(seed)  # dropout / drop-path draws; the caller's state is restored on exit
        for epoch in range(1, num_epochs + 1):
            try:
                train_metrics = train_one_epoch(
                    model, train_set, optim, batch_size=batch_size, device=device, generator=generator,
                    augment=augment, scheduler=scheduler, max_steps=total_steps - history.num_steps,
                    progress_bar=bar, model_input=model_input, keep_frozen_batchnorm=keep_frozen_batchnorm)
            except NonFiniteLossError as error:
                raise NonFiniteLossError(f"fit, epoch {epoch}: {error}") from None
            if val_set is None:
                val_metrics = {"loss": math.nan, "accuracy": math.nan}
            else:
                val_metrics = evaluate(model, val_set, device=device, model_input=model_input)
            history.num_steps += train_metrics["num_steps"]
            history.train_loss.append(train_metrics["loss"])
            history.train_accuracy.append(train_metrics["accuracy"])
            history.val_loss.append(val_metrics["loss"])
            history.val_accuracy.append(val_metrics["accuracy"])
            history.lr.append(max(group["lr"] for group in optim.param_groups))
            history.epoch_seconds.append(train_metrics["seconds"])
            bar.set_description(f"epoch {min(epoch + 1, num_epochs)}/{num_epochs} "
                                f"(val acc {val_metrics['accuracy']:.3f})")
            if val_set is None or val_metrics["accuracy"] > best_accuracy:
                best_accuracy, history.best_epoch = val_metrics["accuracy"], epoch
                epochs_without_improvement = 0
                if val_set is not None:  # copy: the live tensors keep changing
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                epochs_without_improvement += 1
            if history.num_steps >= total_steps:
                break
            if patience is not None and epochs_without_improvement >= patience:
                history.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


# ----------------------------------------------------------------------------- scratch baseline
class ScratchCNN(nn.Module):
    """Five conv-BN-ReLU blocks, global average pooling and a linear classifier.

    At 112 px the feature maps are 56, 28, 14, 14 and 7 px with ``w/2, w, 2w, 2w, 4w``
    channels: a defect of a few pixels still spans cells of the 28-px map, and the stride-1
    block at 14 px adds context before the last downsampling. Like a timm model it answers
    ``forward_features``, ``forward_head`` and ``num_features``.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        channels = (3, width // 2, width, 2 * width, 2 * width, 4 * width)
        strides = (2, 2, 2, 1, 2)
        self.blocks = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(channels[i], channels[i + 1], 3, stride, padding=1, bias=False),
                          nn.BatchNorm2d(channels[i + 1]), nn.ReLU(inplace=True))
            for i, stride in enumerate(strides)))
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
    """Return a small randomly initialised CNN: the from-scratch baseline transfer must beat.

    BatchNorm, Kaiming initialisation and ``width`` base channels (``4 * width`` features before
    the classifier). Train it with `fit`, with the same learning-rate search and augmentation
    as the transferred models, so the comparison is fair. ``seed`` fixes the initial weights
    without touching the global random state.

    Usage: ``model = make_scratch_cnn(num_classes=6, seed=0)``
    """
    func = "make_scratch_cnn"
    _check(_is_int(num_classes, 2), "num_classes", func, "an int >= 2", num_classes)
    _check(_is_int(width, 2) and width % 2 == 0, "width", func, "an even int >= 2", width)
    _check(seed is None or _is_int(seed, 0), "seed", func, "None or an int >= 0", seed)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return ScratchCNN(num_classes, width)

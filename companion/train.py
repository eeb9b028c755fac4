"""The one training loop every transfer strategy uses.

Scope: two plain functions, `train_one_epoch` and `evaluate` (the torchvision-references
shape), `fit` around them (optimizer over trainable parameters only, warmup then a constant or
cosine learning rate, early stopping on validation accuracy with the best weights restored, a
progress bar, a `History`), `predict` and `per_class_accuracy`. No Trainer class, no callbacks:
freezing, heads and parameter groups come from `companion.adapt`, strategies and their recipes
from `companion.strategies` and `companion.recipes`.

Inputs are `companion.data.ImageSet`s of uint8 images held in memory. Each batch is picked by an
index permutation drawn from a seeded `torch.Generator`, optionally augmented (a torchvision
``transforms.v2`` transform applied to each uint8 image), normalised with the model's own
`companion.backbones.BackboneSpec`, and moved to the device in ``channels_last`` layout. A
``model_input(dataset, indices)`` callable replaces that last step (the cached output of a
frozen prefix, see `companion.prefix`).

Usage::

    >>> from companion import data, scratch, train
    >>> pool = data.make_dataset(4, seed=0, image_size=32, cache=False)
    >>> model = scratch.make_scratch_cnn(num_classes=6, width=4, seed=0)
    >>> history = train.fit(model, pool, pool, num_epochs=2, lr=1e-2, seed=0, progress=False)
    >>> history.num_epochs, len(history.val_accuracy)
    (2, 2)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from companion import adapt, backbones, repro
from companion.data import ImageSet
from companion.validation import (check, check_bool, check_callable, check_choice, check_float, check_image_set,
                                  check_instance, check_int, check_seed, check_train_val, invalid)

__all__ = ["History", "NonFiniteLossError", "train_one_epoch", "evaluate", "predict", "per_class_accuracy",
           "fit", "to_input"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine")
WARMUP_FRACTION = 0.05  # of the planned optimizer steps, at least one step and at most MAX_WARMUP_STEPS
MAX_WARMUP_STEPS = 50
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite (usually: the lr is too high)."""


def _check_outputs(logits: torch.Tensor, dataset: ImageSet, func: str) -> None:
    num_classes = len(dataset.classes)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"{func}: the model outputs shape {tuple(logits.shape)} but the dataset has {num_classes} "
            f"classes {dataset.classes}; the model must output (batch, {num_classes}). Replace its "
            f"head first, e.g. model.reset_classifier({num_classes}) or adapt.replace_head.")


# ----------------------------------------------------------------------------- batches
def to_input(model: nn.Module, images: torch.Tensor, device: torch.device,
             augment: Callable | None = None) -> torch.Tensor:
    """Augment (each image, on the CPU), normalise with ``model``'s spec and move a uint8 batch.

    >>> from companion import scratch
    >>> tuple(to_input(scratch.make_scratch_cnn(6), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "cpu").shape)
    (2, 3, 8, 8)
    """
    if augment is not None:
        images = torch.stack([augment(image) for image in images])  # (B, 3, H, W)
    inputs = backbones.preprocess(images, backbones.spec_of(model))  # (B, 3, H, W) float32, normalised
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


def _inputs(model, dataset, indices, device, model_input, augment=None) -> torch.Tensor:
    if model_input is not None:
        return model_input(dataset, indices).to(device)  # (B, ...): a cache may live elsewhere
    return to_input(model, dataset.images[indices], device, augment)  # (B, 3, H, W) float32


# ----------------------------------------------------------------------------- the two loops
def train_one_epoch(model: nn.Module, train_set: ImageSet, optimizer: torch.optim.Optimizer, *, batch_size: int,
                    device: torch.device | str | None, generator: torch.Generator, augment: Callable | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, max_steps: int | None = None,
                    progress_bar: tqdm | None = None, model_input: Callable | None = None,
                    keep_frozen_batchnorm: bool = True) -> dict[str, float]:
    """Train ``model`` (already on ``device``) for one pass over ``train_set``.

    Puts the model in train mode with `companion.adapt.train_mode` (``model.train()``, except
    that BatchNorm layers of frozen depths stay in eval mode); ``keep_frozen_batchnorm=False``
    calls plain ``model.train()`` instead, the bug of chapter 5. ``scheduler`` steps after every
    optimizer step; ``max_steps`` ends the epoch early. Raises `NonFiniteLossError` as soon as a
    loss is NaN or infinite. Returns ``{"loss", "accuracy", "num_steps", "seconds"}``.
    """
    func = "train_one_epoch"
    check_image_set(train_set, "train_set", func, min_classes=2)
    batch_size = check_int(batch_size, "batch_size", func, low=1)
    check_bool(keep_frozen_batchnorm, "keep_frozen_batchnorm", func)
    device = repro.get_device(device)
    if keep_frozen_batchnorm:
        adapt.train_mode(model)
    else:  # the bug of chapter 5: every BatchNorm, frozen or not, updates its running statistics
        model.train()
    start = time.perf_counter()
    total_loss, total_correct, total_seen, num_steps = 0.0, 0, 0, 0
    for indices in _batches(len(train_set), batch_size, generator):
        if max_steps is not None and num_steps >= max_steps:
            break
        targets = train_set.labels[indices].to(device)  # (B,)
        if augment is None:
            inputs = _inputs(model, train_set, indices, device, model_input)
        else:  # the transform draws from torch's global RNG: give it a seed from ``generator``
            augment_seed = int(torch.randint(2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(augment_seed)
                inputs = _inputs(model, train_set, indices, device, None, augment)
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
    check_image_set(dataset, "dataset", func)
    batch_size = check_int(batch_size, "batch_size", func, low=1)
    device = repro.get_device(device)
    model.to(device, memory_format=torch.channels_last)
    model.eval()
    with torch.inference_mode():
        for step, indices in enumerate(_batches(len(dataset), batch_size, None)):
            logits = model(_inputs(model, dataset, indices, device, model_input))  # (B, num_classes)
            if step == 0:
                _check_outputs(logits, dataset, func)
            yield indices, logits


def evaluate(model: nn.Module, dataset: ImageSet, *, batch_size: int = 256, device: torch.device | str | None = None,
             model_input: Callable | None = None) -> dict[str, float]:
    """Return the mean cross-entropy ``loss`` and the ``accuracy`` of ``model`` on ``dataset``.

    Moves the model to ``device`` (default: `companion.repro.get_device()`) and leaves it in
    eval mode (BatchNorm uses its running statistics, dropout is off).
    """
    total_loss, total_correct = 0.0, 0
    for indices, logits in _logits_in_batches(model, dataset, batch_size, device, "evaluate", model_input):
        targets = dataset.labels[indices].to(logits.device)  # (B,)
        total_loss += float(nn.functional.cross_entropy(logits.float(), targets, reduction="sum"))
        total_correct += int((logits.argmax(dim=1) == targets).sum())
    return {"loss": total_loss / len(dataset), "accuracy": total_correct / len(dataset)}


def predict(model: nn.Module, dataset: ImageSet, *, batch_size: int = 256, device: torch.device | str | None = None,
            model_input: Callable | None = None) -> torch.Tensor:
    """The predicted class index of every image, shape ``(N,)`` int64 on the CPU."""
    batches = _logits_in_batches(model, dataset, batch_size, device, "predict", model_input)
    return torch.cat([logits.argmax(dim=1).cpu() for _, logits in batches])  # (N,)


def per_class_accuracy(model: nn.Module, dataset: ImageSet, *, batch_size: int = 256,
                       device: torch.device | str | None = None) -> dict[str, float]:
    """``{class name: accuracy on the images of that class}`` (NaN for an absent class)."""
    check_image_set(dataset, "dataset", "per_class_accuracy")
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
    """Metrics of one `fit` run: per epoch for training, per validation pass for ``val_*``.

    ``val_epochs`` holds the epoch (counted from 1) after which each validation pass ran (0: the
    starting weights, with ``validate_first``); ``best_epoch`` is the epoch whose weights were
    restored. ``stopped_early`` says the run
    ended on its patience; ``hit_max`` that it used up its planned epochs while validation was
    still improving within the patience window (the run may not have converged).
    ``epoch_seconds`` is wall-clock time (volatile, left out of the repr).
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_epochs: list[int] = field(default_factory=list)
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
        """Validation accuracy of the restored epoch (NaN without a validation set)."""
        if self.best_epoch in self.val_epochs:
            return self.val_accuracy[self.val_epochs.index(self.best_epoch)]
        return float("nan")

    @property
    def hit_max(self) -> bool:
        """True when a validated run ended on its maximum rather than on its patience."""
        return bool(self.val_epochs) and not self.stopped_early


def _optimizer_groups(model: nn.Module, param_groups: list[dict] | None, weight_decay: float) -> list[dict]:
    """Trainable parameters only. Default grouping: no weight decay on biases and norm weights."""
    if param_groups is None:
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
    else:
        groups = []
        for group in param_groups:
            check(isinstance(group, dict) and "params" in group, group, "param_groups", "fit",
                  "a list of dicts with a 'params' key (e.g. from companion.adapt.param_groups)")
            params = [p for p in group["params"] if p.requires_grad]
            groups.append({"weight_decay": weight_decay, **group, "params": params})
    return [group for group in groups if group["params"]]


def _make_schedule(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    """Linear warmup (5 % of the steps, 1 to 50 steps), then constant or cosine decay to 0."""
    warmup_steps = min(MAX_WARMUP_STEPS, max(1, round(WARMUP_FRACTION * total_steps)))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)  # scales each group's own lr


def _check_fit(model, train_set, val_set, num_epochs, lr, batch_size, weight_decay, optimizer, schedule,
               patience, eval_every, seed, augment, max_steps, model_input, keep_frozen_batchnorm) -> None:
    func = "fit"
    check_instance(model, "model", func, nn.Module, "a torch.nn.Module")
    check_train_val(train_set, val_set, func)
    check_int(num_epochs, "num_epochs", func, low=1)
    check_float(lr, "lr", func, low=0.0, low_open=True)
    check_int(batch_size, "batch_size", func, low=1)
    check_choice(optimizer, "optimizer", func, OPTIMIZERS)
    check_choice(schedule, "schedule", func, SCHEDULES)
    check_float(weight_decay, "weight_decay", func, low=0.0, optional=True)
    check_int(patience, "patience", func, low=1, optional=True)
    check_int(eval_every, "eval_every", func, low=1)
    check_int(max_steps, "max_steps", func, low=1, optional=True)
    check_seed(seed, "seed", func)
    check_callable(augment, "augment", func, "None or a callable transform (e.g. torchvision.transforms.v2)",
                   optional=True)
    check_callable(model_input, "model_input", func, "None or a callable (dataset, indices) -> inputs",
                   optional=True)
    check_bool(keep_frozen_batchnorm, "keep_frozen_batchnorm", func)
    if model_input is not None and augment is not None:
        raise invalid(augment, "augment", func, "None when 'model_input' supplies the inputs",
                      "Augmentation acts on images; pass one of the two, not both.")
    if patience is not None and val_set is None:
        raise invalid(patience, "patience", func, "None without a val_set to stop on", "Pass a val_set.")


def fit(model: nn.Module, train_set: ImageSet, val_set: ImageSet | None, *, num_epochs: int, lr: float,
        batch_size: int = 32, weight_decay: float | None = None, optimizer: str = "adamw",
        schedule: str = "constant", patience: int | None = None, eval_every: int = 1, seed: int = 0,
        device: torch.device | str | None = None, augment: Callable | None = None, progress: bool = True,
        max_steps: int | None = None, param_groups: list[dict] | None = None, model_input: Callable | None = None,
        keep_frozen_batchnorm: bool = True, validate_first: bool = False) -> History:
    """Train ``model`` on ``train_set`` and keep the weights with the best validation accuracy.

    - Optimizer: only trainable parameters (``requires_grad``). ``"adamw"`` (default
      ``weight_decay`` 0.05) or ``"sgd"`` (momentum 0.9, default 5e-4); biases and normalisation
      weights get no weight decay. ``param_groups`` (`companion.adapt.param_groups`) keeps each
      group's own ``lr``.
    - Schedule: linear warmup (5 % of the planned steps, at most 50), then ``"constant"`` or
      ``"cosine"`` decay to 0 at the last planned step.
    - Selection: every ``eval_every`` epochs (and after the last) the model is scored on
      ``val_set``; the best weights (the earlier pass wins a tie) are restored at the end.
      ``patience`` stops after that many validation passes without improvement; a run that
      ends on ``num_epochs`` instead says so in ``History.hit_max``. The model ends in eval mode.
    - Randomness: batches, augmentation and dropout follow ``seed``; the caller's global random
      state is left as it was. For bit-identical GPU runs call `repro.deterministic_mode` too.
    - ``model_input(dataset, indices)`` gives each batch's model input for training and
      validation instead of the preprocessed images (no ``augment`` then).
    - ``keep_frozen_batchnorm=False`` trains with plain ``model.train()``: the BatchNorm layers of
      frozen depths then drift to the training batches' statistics (the bug of chapter 5).
    - ``validate_first=True`` scores the starting weights too (as epoch 0) and gives them back if
      no later pass beats them; the patience counts the passes of training only, so a dip right
      after the start does not end the run (the fine-tuning phase of LP-FT starts from a trained
      head).
    """
    check_bool(validate_first, "validate_first", "fit")
    _check_fit(model, train_set, val_set, num_epochs, lr, batch_size, weight_decay, optimizer, schedule, patience,
               eval_every, seed, augment, max_steps, model_input, keep_frozen_batchnorm)
    num_epochs, batch_size, seed, eval_every = int(num_epochs), int(batch_size), int(seed), int(eval_every)
    weight_decay = DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else float(weight_decay)
    device = repro.get_device(device)
    model.to(device, memory_format=torch.channels_last)
    groups = _optimizer_groups(model, param_groups, weight_decay)
    if not groups:
        raise ValueError("fit found no trainable parameters: every parameter has requires_grad=False. "
                         "Unfreeze some layers (companion.adapt.unfreeze) or give the model a new head.")
    optim = (torch.optim.AdamW(groups, lr=lr) if optimizer == "adamw"
             else torch.optim.SGD(groups, lr=lr, momentum=0.9))
    steps_per_epoch = len(_batches(len(train_set), batch_size, torch.Generator()))
    total_steps = num_epochs * steps_per_epoch if max_steps is None else min(num_epochs * steps_per_epoch,
                                                                             int(max_steps))
    scheduler = _make_schedule(optim, schedule, total_steps)
    history = History()
    best_accuracy, best_state, passes_without_improvement = -math.inf, None, 0
    generator = torch.Generator().manual_seed(seed)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    bar = tqdm(total=total_steps, desc=f"epoch 1/{num_epochs}", unit="step", disable=not progress)
    start = None  # (accuracy, weights) of the starting point, with validate_first
    if validate_first and val_set is not None:
        val = evaluate(model, val_set, device=device, model_input=model_input)
        history.val_epochs.append(0)
        history.val_loss.append(val["loss"])
        history.val_accuracy.append(val["accuracy"])
        start = (val["accuracy"], {k: v.detach().clone() for k, v in model.state_dict().items()})
    with torch.random.fork_rng(devices=fork_devices), bar:
        torch.manual_seed(seed)  # dropout / drop-path draws; the caller's state is restored on exit
        for epoch in range(1, num_epochs + 1):
            try:
                metrics = train_one_epoch(model, train_set, optim, batch_size=batch_size, device=device,
                                          generator=generator, augment=augment, scheduler=scheduler,
                                          max_steps=total_steps - history.num_steps, progress_bar=bar,
                                          model_input=model_input, keep_frozen_batchnorm=keep_frozen_batchnorm)
            except NonFiniteLossError as error:
                raise NonFiniteLossError(f"fit, epoch {epoch}: {error}") from None
            history.num_steps += metrics["num_steps"]
            history.train_loss.append(metrics["loss"])
            history.train_accuracy.append(metrics["accuracy"])
            history.lr.append(max(group["lr"] for group in optim.param_groups))
            history.epoch_seconds.append(metrics["seconds"])
            last = epoch == num_epochs or history.num_steps >= total_steps
            if val_set is None:
                history.best_epoch = epoch
            elif epoch % eval_every == 0 or last:
                val = evaluate(model, val_set, device=device, model_input=model_input)
                history.val_epochs.append(epoch)
                history.val_loss.append(val["loss"])
                history.val_accuracy.append(val["accuracy"])
                bar.set_description(f"epoch {epoch}/{num_epochs} (val acc {val['accuracy']:.3f})")
                if val["accuracy"] > best_accuracy:
                    best_accuracy, history.best_epoch, passes_without_improvement = val["accuracy"], epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    passes_without_improvement += 1
                if patience is not None and passes_without_improvement >= patience:
                    history.stopped_early = True
                    break
            if last:
                break
    if start is not None and start[0] >= best_accuracy:  # training never beat its start: give it back
        best_state, history.best_epoch = start[1], 0
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history

"""Adapting a pretrained backbone: freezing by depth, the new head, BatchNorm, learning rates.

Scope: everything that decides *which* parameters of a backbone change during training and
*how fast*. Depths come from ``companion.backbones.stages`` (9 for EfficientNet-Lite0: 0 is
the stem, 1-7 the blocks, 8 the 1x1 conv head); the classifier is not a depth and is always
trainable after ``freeze``.

BatchNorm is handled on purpose: ``model.train()`` makes every BatchNorm layer update its
running statistics, even in layers whose weights are frozen, so a "frozen" backbone silently
drifts. Call ``train_mode(model)`` instead of ``model.train()``: it keeps the BatchNorm layers
of frozen depths in eval mode. ``adabn`` re-estimates the statistics on target data when that
is what you want.

After any freeze/unfreeze, build a new optimizer with ``make_optimizer``: an optimizer only
updates the parameters it was given.

Usage::

    from companion import adapt
    print(adapt.freeze(model, up_to=6))   # depths 0-5 frozen
    optimizer = adapt.make_optimizer(model, lr=1e-3, decay=0.5)
    adapt.train_mode(model)               # instead of model.train()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from torch.nn.modules.batchnorm import _BatchNorm  # every BatchNorm*d, SyncBatchNorm, timm's

from companion import backbones, repro

__all__ = ["FreezeReport", "AdaBNReport", "count_parameters", "freeze", "unfreeze",
           "freeze_backbone", "replace_head", "train_mode", "adabn", "param_groups",
           "make_optimizer"]

OPTIMIZER_KINDS = ("adamw", "sgd")


# ----------------------------------------------------------------------------- validation
def _invalid(name: str, caller: str, allowed: str, value: object, error: type = ValueError):
    return error(f"The {name!r} parameter of {caller} must be {allowed}. Got {value!r} instead.")


def _check_int(value: object, name: str, caller: str, low: int, high: int | None = None) -> int:
    allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, caller, allowed, value, TypeError)
    if value < low or (high is not None and value > high):
        raise _invalid(name, caller, allowed, value)
    return value


def _check_float(value: object, name: str, caller: str, allowed: str,
                 ok: Callable[[float], bool]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(name, caller, allowed, value, TypeError)
    if not math.isfinite(value) or not ok(value):
        raise _invalid(name, caller, allowed, value)
    return float(value)


def _check_model(model: object, caller: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise _invalid("model", caller, "a torch.nn.Module", type(model).__name__, TypeError)
    return model


def _depths(model: object, caller: str) -> list[tuple[str, nn.Module]]:
    """Return ``backbones.stages(model)`` or raise a message that names ``caller``."""
    _check_model(model, caller)
    try:
        return backbones.stages(model)
    except (AttributeError, TypeError, ValueError) as error:
        raise TypeError(
            f"The 'model' parameter of {caller} must be a backbone that backbones.stages splits "
            f"into depths (a timm EfficientNet from backbones.load_backbone). "
            f"Got {type(model).__name__} instead."
        ) from error


def _split(model: nn.Module, caller: str) -> tuple[list[tuple[str, list[nn.Parameter]]], list]:
    """Return the parameters of each depth (name, params) and the rest (the classifier)."""
    seen: set[int] = set()
    depth_params = []
    for name, module in _depths(model, caller):
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        depth_params.append((name, params))
    rest = [p for p in model.parameters() if id(p) not in seen]
    return depth_params, rest


# ----------------------------------------------------------------------------- counting
def count_parameters(model: nn.Module) -> dict[str, int]:
    """Count trainable, frozen and total parameters (shared tensors counted once).

    Usage: ``count_parameters(model)  # {'trainable': 7686, 'frozen': 3371008, 'total': ...}``
    """
    _check_model(model, "count_parameters")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable, "total": total}


@dataclass(frozen=True)
class FreezeReport:
    """What ``freeze`` did: frozen depths and trainable vs frozen parameter counts.

    ``print(report)`` gives a nanoGPT-style summary; the fields are there for tests and tables.
    """

    up_to: int
    depth_names: tuple[str, ...]
    trainable: int
    frozen: int
    num_trainable_tensors: int
    num_frozen_tensors: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    @property
    def frozen_depths(self) -> tuple[str, ...]:
        return self.depth_names[: self.up_to]

    def __str__(self) -> str:
        num_depths = len(self.depth_names)
        if self.up_to == 0:
            which = "none"
        else:
            which = f"{self.depth_names[0]} .. {self.depth_names[self.up_to - 1]}"
        total = max(self.total, 1)
        return (
            f"frozen depths: {which} ({self.up_to} of {num_depths})\n"
            f"trainable parameters: {self.trainable:,} ({100 * self.trainable / total:.1f} %) "
            f"in {self.num_trainable_tensors} tensors\n"
            f"frozen parameters:    {self.frozen:,} ({100 * self.frozen / total:.1f} %) "
            f"in {self.num_frozen_tensors} tensors"
        )


# ----------------------------------------------------------------------------- freezing
def freeze(model: nn.Module, up_to: int, *, verbose: bool = False) -> FreezeReport:
    """Freeze depths ``[0, up_to)``; depths ``up_to`` and above and the classifier train.

    ``up_to=0`` freezes nothing (full fine-tuning); ``up_to=len(stages(model))`` (9 for Lite0)
    freezes the whole backbone (feature extraction). Rebuild the optimizer afterwards, and
    call ``train_mode(model)`` instead of ``model.train()`` so frozen BatchNorm stays fixed.

    Usage: ``print(freeze(model, up_to=6))``
    """
    depth_params, rest = _split(model, "freeze")
    up_to = _check_int(up_to, "up_to", "freeze", 0, len(depth_params))
    for depth, (_, params) in enumerate(depth_params):
        for param in params:
            param.requires_grad_(depth >= up_to)
    for param in rest:
        param.requires_grad_(True)
    params = list(model.parameters())
    counts = count_parameters(model)
    report = FreezeReport(
        up_to=up_to,
        depth_names=tuple(name for name, _ in depth_params),
        trainable=counts["trainable"],
        frozen=counts["frozen"],
        num_trainable_tensors=sum(p.requires_grad for p in params),
        num_frozen_tensors=sum(not p.requires_grad for p in params),
    )
    if verbose:
        print(report)
    return report


def unfreeze(model: nn.Module, *, verbose: bool = False) -> FreezeReport:
    """Make every parameter trainable again (full fine-tuning); rebuild the optimizer after.

    Usage: ``unfreeze(model); optimizer = make_optimizer(model, lr=1e-4)``
    """
    return freeze(model, 0, verbose=verbose)


def freeze_backbone(model: nn.Module, *, verbose: bool = False) -> FreezeReport:
    """Freeze every depth so only the classifier trains (feature extraction, a linear probe).

    Usage: ``print(freeze_backbone(model))``
    """
    return freeze(model, len(_depths(model, "freeze_backbone")), verbose=verbose)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the classifier by a new, trainable one with ``num_classes`` outputs.

    Uses timm's ``reset_classifier`` and puts the new layer on the model's device and dtype.
    The backbone's freezing is unchanged. Returns the model.

    Usage: ``replace_head(model, num_classes=len(train_set.classes))``
    """
    _check_model(model, "replace_head")
    if not callable(getattr(model, "reset_classifier", None)):
        raise _invalid(
            "model", "replace_head", "a timm model with a reset_classifier method",
            type(model).__name__, TypeError,
        )
    num_classes = _check_int(num_classes, "num_classes", "replace_head", 1)
    reference = next(model.parameters(), None)
    model.reset_classifier(num_classes)
    if reference is not None:
        model.get_classifier().to(device=reference.device, dtype=reference.dtype)
    return model


# ----------------------------------------------------------------------------- BatchNorm
def _frozen_batchnorms(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers whose affine parameters are all frozen (or, without any, whose depth is)."""
    batchnorms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    frozen = [m for m in batchnorms
              if m.affine and not any(p.requires_grad for p in m.parameters())]
    plain = {id(m): m for m in batchnorms if not m.affine}
    if plain:  # affine=False: follow the depth the layer sits in, if the model has depths
        try:
            depths = backbones.stages(model)
        except TypeError:
            depths = []
        for _, module in depths:
            if not any(p.requires_grad for p in module.parameters()):
                frozen += [m for m in module.modules() if id(m) in plain]
    return frozen


def train_mode(model: nn.Module) -> nn.Module:
    """Put ``model`` in train mode but keep the BatchNorm layers of frozen depths in eval mode.

    Call it in the training loop *instead of* ``model.train()``, once per epoch, after
    ``freeze``. Frozen BatchNorm layers then normalise with their stored running statistics
    and never update them, so a frozen backbone gives bit-identical features before and after
    training. Works on any module: with nothing frozen it equals ``model.train()``.

    Usage: ``adapt.train_mode(model)``
    """
    _check_model(model, "train_mode")
    model.train()
    for module in _frozen_batchnorms(model):
        module.eval()
    return model


@dataclass(frozen=True)
class AdaBNReport:
    """What ``adabn`` did."""

    num_layers: int
    num_images: int
    num_batches: int

    def __str__(self) -> str:
        return (
            f"AdaBN: re-estimated the running statistics of {self.num_layers} BatchNorm layers "
            f"on {self.num_images} target images ({self.num_batches} batches)"
        )


def _batches(images: object, batch_size: int, name: str):
    """Yield preprocessed float batches (B, 3, H, W) from a float tensor or an ImageSet."""
    if isinstance(getattr(images, "images", None), torch.Tensor):  # an ImageSet
        for start in range(0, len(images.images), batch_size):
            yield backbones.preprocess(images.images[start : start + batch_size], name)
        return
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]  # (B, 3, H, W)


@torch.no_grad()
def adabn(
    model: nn.Module,
    images: torch.Tensor | object,
    batch_size: int = 64,
    *,
    device: torch.device | str | None = None,
    name: str = "efficientnet_lite0",
) -> AdaBNReport:
    """Re-estimate every BatchNorm layer's running statistics on target images (AdaBN).

    Resets the running mean and variance, then runs forward passes without gradients with
    only the BatchNorm layers in train mode and ``momentum=None`` (a cumulative average over
    batches: exact for the mean when ``batch_size`` divides the number of images). Weights
    are untouched; the model is left in eval mode. Li et al., 2016, "Revisiting Batch
    Normalization For Practical Domain Adaptation".

    Parameters
    ----------
    images : torch.Tensor or ImageSet
        A preprocessed float tensor (N, 3, H, W), or an ``ImageSet`` (uint8), which is
        preprocessed batch by batch with ``backbones.preprocess(..., name)``.
    device : torch.device, str or None
        Where to run (resolved by ``repro.get_device``, the model is moved there); ``None``
        keeps the model where it is.

    Usage: ``print(adabn(model, target_set, batch_size=64))``
    """
    _check_model(model, "adabn")
    batch_size = _check_int(batch_size, "batch_size", "adabn", 1)
    is_imageset = isinstance(getattr(images, "images", None), torch.Tensor)
    if not is_imageset and not (
        isinstance(images, torch.Tensor) and images.is_floating_point() and images.ndim == 4
    ):
        shown = f"tensor of dtype {images.dtype} with shape {tuple(images.shape)}" if isinstance(
            images, torch.Tensor) else type(images).__name__
        raise TypeError(
            f"The 'images' parameter of adabn must be a preprocessed float tensor "
            f"(N, 3, H, W) or an ImageSet. Got {shown} instead. Pass the ImageSet itself, or "
            f"backbones.preprocess(images)."
        )
    num_images = len(images.images) if is_imageset else len(images)
    if num_images == 0:
        raise ValueError("The 'images' parameter of adabn must hold at least one image. Got 0.")
    if device is not None:
        model.to(repro.get_device(device))
    reference = next(model.parameters(), None)
    target = reference.device if reference is not None else torch.device("cpu")

    layers = [m for m in model.modules()
              if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in layers]
    model.eval()  # dropout and drop-path off: the statistics of the eval-mode activations
    for module in layers:
        module.reset_running_stats()
        module.momentum = None  # cumulative average
        module.train()
    num_batches = 0
    try:
        for batch in _batches(images, batch_size, name):
            model(batch.to(target))  # (B, num_classes), only the BN buffers matter
            num_batches += 1
    finally:
        for module, momentum in zip(layers, momenta):
            module.momentum = momentum
        model.eval()
    return AdaBNReport(num_layers=len(layers), num_images=num_images, num_batches=num_batches)


# ----------------------------------------------------------------------------- learning rates
def _param_groups(model, lr, head_lr_mult, decay, caller) -> list[dict]:
    lr = _check_float(lr, "lr", caller, "a float > 0", lambda v: v > 0)
    head_lr_mult = _check_float(
        head_lr_mult, "head_lr_mult", caller, "a float > 0", lambda v: v > 0
    )
    if decay is not None:
        decay = _check_float(decay, "decay", caller, "a float in (0, 1] or None",
                             lambda v: 0 < v <= 1)
    depth_params, rest = _split(model, caller)
    top = len(depth_params) - 1
    groups = []
    for depth, (name, params) in enumerate(depth_params):
        rate = lr if decay is None else lr * decay ** (top - depth)
        groups.append({"name": name, "depth": depth, "lr": rate,
                       "params": [p for p in params if p.requires_grad]})
    groups.append({"name": "classifier", "depth": None, "lr": lr * head_lr_mult,
                   "params": [p for p in rest if p.requires_grad]})
    return [group for group in groups if group["params"]]


def param_groups(
    model: nn.Module, *, lr: float, head_lr_mult: float = 10.0, decay: float | None = None
) -> list[dict]:
    """Optimizer parameter groups with discriminative learning rates, one group per depth.

    Depth ``d`` gets ``lr * decay ** (top - d)`` (the top depth gets ``lr``; ``decay=None``
    gives every depth ``lr``), the new classifier ``lr * head_lr_mult`` (D2L's 10x for the new
    head). Only trainable parameters are included, each once; empty groups are dropped. Each
    group also carries ``name`` and ``depth`` (``None`` for the classifier).

    Usage: ``torch.optim.AdamW(param_groups(model, lr=1e-4, decay=0.5))``
    """
    return _param_groups(model, lr, head_lr_mult, decay, "param_groups")


def make_optimizer(
    model: nn.Module,
    lr: float,
    *,
    head_lr_mult: float = 10.0,
    decay: float | None = None,
    kind: str = "adamw",
    weight_decay: float | None = None,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Build an AdamW or SGD optimizer over ``param_groups(model, ...)``.

    An optimizer holds the parameters it was given: after ``freeze``/``unfreeze``/
    ``replace_head`` call ``make_optimizer`` again (there is no in-place rebuild; the old
    optimizer's state is dropped on purpose). ``weight_decay=None`` keeps PyTorch's default
    (0.01 for AdamW, 0 for SGD); ``momentum`` is used by SGD only.

    Usage: ``optimizer = make_optimizer(model, lr=1e-3, decay=0.5, kind="sgd")``
    """
    caller = "make_optimizer"
    if kind not in OPTIMIZER_KINDS:
        raise _invalid("kind", caller, "a str among {'adamw', 'sgd'}", kind)
    if weight_decay is not None:
        weight_decay = _check_float(weight_decay, "weight_decay", caller, "a float >= 0 or None",
                                    lambda v: v >= 0)
    momentum = _check_float(momentum, "momentum", caller, "a float in [0, 1)",
                            lambda v: 0 <= v < 1)
    groups = _param_groups(model, lr, head_lr_mult, decay, caller)
    if not groups:
        raise ValueError(
            "make_optimizer found no trainable parameters in the model: every parameter is "
            "frozen. Call unfreeze(model) or freeze(model, up_to) with a smaller up_to first."
        )
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum,
                               weight_decay=0.0 if weight_decay is None else weight_decay)
    return torch.optim.AdamW(groups, lr=lr,
                             weight_decay=0.01 if weight_decay is None else weight_decay)

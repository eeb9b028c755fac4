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

    >>> from companion import adapt, backbones
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> print(adapt.freeze(model, up_to=6).frozen_depths)   # depths 0-5 frozen
    ('stem', 'blocks.0', 'blocks.1', 'blocks.2', 'blocks.3', 'blocks.4')
    >>> optimizer = adapt.make_optimizer(model, lr=1e-3, decay=0.5)
    >>> _ = adapt.train_mode(model)                          # instead of model.train()

Taught in ``notebooks/04_feature_extraction_vs_fine_tuning.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from torch.nn.modules.batchnorm import _BatchNorm  # every BatchNorm*d, SyncBatchNorm, timm's

from companion import backbones, repro
from companion.validation import check, check_float, check_instance, check_int, invalid

__all__ = ["FreezeReport", "AdaBNReport", "count_parameters", "freeze", "unfreeze",
           "freeze_backbone", "freeze_batchnorm", "replace_head", "train_mode", "adabn", "param_groups",
           "make_optimizer"]

OPTIMIZER_KINDS = ("adamw", "sgd")


# ----------------------------------------------------------------------------- validation
def _check_model(model: object, caller: str) -> nn.Module:
    return check_instance(model, "model", caller, nn.Module, "a torch.nn.Module")


def _depths(model: object, caller: str) -> list[tuple[str, nn.Module]]:
    """Return ``backbones.stages(model)`` or raise a message that names ``caller``."""
    _check_model(model, caller)
    try:
        return backbones.stages(model)
    except (AttributeError, TypeError, ValueError) as error:
        raise invalid(model, "model", caller, "a backbone that backbones.stages splits into depths",
                      "Build it with backbones.load_backbone (or give it a backbone_spec).") from error


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

    >>> from companion import backbones
    >>> count_parameters(backbones.load_backbone(pretrained=False, num_classes=6, seed=0))["total"]
    3378694
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

    >>> from companion import backbones
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> freeze(model, up_to=7).frozen_depths[-1]
    'blocks.5'
    """
    depth_params, rest = _split(model, "freeze")
    up_to = check_int(up_to, "up_to", "freeze", low=0, high=len(depth_params))
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

    >>> from companion import backbones
    >>> unfreeze(backbones.load_backbone(pretrained=False, num_classes=6, seed=0)).frozen
    0
    """
    return freeze(model, 0, verbose=verbose)


def freeze_backbone(model: nn.Module, *, verbose: bool = False) -> FreezeReport:
    """Freeze every depth so only the classifier trains (feature extraction, a linear probe).

    >>> from companion import backbones
    >>> freeze_backbone(backbones.load_backbone(pretrained=False, num_classes=6, seed=0)).trainable
    7686
    """
    return freeze(model, len(_depths(model, "freeze_backbone")), verbose=verbose)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the classifier by a new, trainable one with ``num_classes`` outputs.

    Uses timm's ``reset_classifier`` and puts the new layer on the model's device and dtype.
    The backbone's freezing is unchanged. Returns the model.

    >>> from companion import backbones
    >>> replace_head(backbones.load_backbone(pretrained=False), 3).get_classifier().out_features
    3
    """
    _check_model(model, "replace_head")
    if not callable(getattr(model, "reset_classifier", None)):
        raise invalid(model, "model", "replace_head", "a timm model with a reset_classifier method")
    num_classes = check_int(num_classes, "num_classes", "replace_head", low=1)
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


def freeze_batchnorm(model: nn.Module) -> int:
    """Freeze the scale and shift of every BatchNorm layer; return how many layers were frozen.

    `train_mode` then keeps all of them in eval mode, so their running statistics never change
    either: the normalisation stays exactly as pretrained (torchvision's ``FrozenBatchNorm2d``).

    >>> from companion import backbones
    >>> freeze_batchnorm(backbones.load_backbone(pretrained=False))
    49
    """
    layers = [module for module in _check_model(model, "freeze_batchnorm").modules() if isinstance(module, _BatchNorm)]
    for module in layers:
        module.requires_grad_(False)
    return len(layers)


def train_mode(model: nn.Module) -> nn.Module:
    """Put ``model`` in train mode but keep the BatchNorm layers of frozen depths in eval mode.

    Call it in the training loop *instead of* ``model.train()``, once per epoch, after
    ``freeze``. Frozen BatchNorm layers then normalise with their stored running statistics
    and never update them, so a frozen backbone gives bit-identical features before and after
    training. Works on any module: with nothing frozen it equals ``model.train()``.

    >>> from companion import backbones
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> _ = freeze(model, up_to=9)
    >>> train_mode(model).bn1.training, model.get_classifier().training
    (False, True)
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


def _batches(images: object, batch_size: int, model: nn.Module):
    """Yield preprocessed float batches (B, 3, H, W) from a float tensor or an ImageSet."""
    if isinstance(getattr(images, "images", None), torch.Tensor):  # an ImageSet
        for start in range(0, len(images.images), batch_size):
            yield backbones.preprocess(images.images[start : start + batch_size], model)
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
        preprocessed batch by batch with the model's own normalisation.
    device : torch.device, str or None
        Where to run (resolved by ``repro.get_device``, the model is moved there); ``None``
        keeps the model where it is.

    >>> from companion import backbones, data
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> adabn(model, data.make_dataset(2, seed=0, image_size=32, cache=False)).num_images
    12
    """
    _check_model(model, "adabn")
    batch_size = check_int(batch_size, "batch_size", "adabn", low=1)
    is_imageset = isinstance(getattr(images, "images", None), torch.Tensor)
    if not is_imageset and not (
        isinstance(images, torch.Tensor) and images.is_floating_point() and images.ndim == 4
    ):
        raise invalid(images, "images", "adabn", "a preprocessed float tensor (N, 3, H, W) or an ImageSet",
                      "Pass the ImageSet itself, or backbones.preprocess(images, model).")
    num_images = len(images.images) if is_imageset else len(images)
    check(num_images > 0, images, "images", "adabn", "at least one image")
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
        for batch in _batches(images, batch_size, model):
            model(batch.to(target))  # (B, num_classes), only the BN buffers matter
            num_batches += 1
    finally:
        for module, momentum in zip(layers, momenta):
            module.momentum = momentum
        model.eval()
    return AdaBNReport(num_layers=len(layers), num_images=num_images, num_batches=num_batches)


# ----------------------------------------------------------------------------- learning rates
def _param_groups(model, lr, head_lr_mult, decay, caller) -> list[dict]:
    lr = check_float(lr, "lr", caller, low=0.0, low_open=True)
    head_lr_mult = check_float(head_lr_mult, "head_lr_mult", caller, low=0.0, low_open=True)
    if decay is not None:
        decay = check_float(decay, "decay", caller, low=0.0, high=1.0, low_open=True)
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

    >>> from companion import backbones
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> [(group["name"], group["lr"]) for group in param_groups(model, lr=1e-3)][-2:]
    [('head', 0.001), ('classifier', 0.01)]
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

    >>> from companion import backbones
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> type(make_optimizer(model, lr=1e-3, kind="sgd")).__name__
    'SGD'
    """
    caller = "make_optimizer"
    if kind not in OPTIMIZER_KINDS:
        raise invalid(kind, "kind", caller, f"one of {OPTIMIZER_KINDS}")
    if weight_decay is not None:
        weight_decay = check_float(weight_decay, "weight_decay", caller, low=0.0)
    momentum = check_float(momentum, "momentum", caller, low=0.0, high=1.0, high_open=True)
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

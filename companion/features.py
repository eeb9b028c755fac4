"""Feature extraction from a frozen backbone, cached in memory and on disk, and linear probes.

Scope: `extract_features` runs a model once over an `ImageSet` and returns globally
average-pooled activations, either the final features (``depth=None``) or those after depth
``k`` of `companion.backbones.stages`; `extract_features_by_depth` gets several depths from ONE
forward pass. Results are memoised in memory and stored as ``.npz`` files under
``companion.data.default_cache_dir() / "features"``, keyed by fingerprints of the backbone
weights (the classifier excluded), the images, the depth and `FEATURES_VERSION`
(`feature_cache_key`). `fit_probe` trains a scikit-learn logistic-regression probe with its
``C`` chosen on a validation split; `probe_accuracy` scores it; `probe_by_depth` probes every
depth (the layer-transfer lab).

Usage::

    from companion import backbones, features
    model = backbones.load_backbone("efficientnet_lite0")
    X_train = features.extract_features(model, train_set)     # (N, 1280)
    X_val = features.extract_features(model, val_set)
    probe = features.fit_probe(X_train, train_set.labels, X_val, val_set.labels, seed=0)
    print(features.probe_accuracy(probe, features.extract_features(model, test_set), test_set.labels))
    rows = features.probe_by_depth(model, train_set, val_set, test_set, seed=0)  # one row per depth
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from companion import backbones, repro
from companion.data import ImageSet, atomic_save_npz, default_cache_dir

__all__ = ["FEATURES_VERSION", "extract_features", "extract_features_by_depth", "feature_cache_key",
           "clear_feature_cache", "ProbeResult", "fit_probe", "probe_accuracy", "probe_by_depth"]

FEATURES_VERSION = 1  # bump when extraction or pooling changes: older disk files are then ignored
MAX_CACHE_ENTRIES = 64
_FEATURE_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


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

    Usage: ``feature_cache_key(model, train_set, None)``
    """
    return _key(_model_fingerprint(model), _dataset_fingerprint(dataset), depth)


def clear_feature_cache() -> None:
    """Forget every memoised feature array (the disk cache stays). Usage: ``clear_feature_cache()``"""
    _FEATURE_CACHE.clear()


# ----------------------------------------------------------------------------- caches


def _load(path: Path, key: str, num_images: int) -> np.ndarray | None:
    """The stored features, or None when the file is missing, unreadable or not this key's."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            features = stored["features"]
            if str(stored["key"]) == key and features.ndim == 2 and len(features) == num_images:
                return features.astype(np.float32, copy=False)
    except _UNREADABLE:
        pass  # missing, corrupt or foreign: recompute and overwrite
    return None


def _save(path: Path, key: str, features: np.ndarray) -> None:
    try:
        atomic_save_npz(path, features=features, key=np.array(key))
    except OSError as error:
        raise OSError(
            f"Could not write the feature cache to {path.parent} ({error}). Pass cache_dir= a writable "
            "folder, set COMPANION_CACHE_DIR to one, or pass cache=False."
        ) from error


def _remember(key: str, features: np.ndarray) -> None:
    _FEATURE_CACHE[key] = features.copy()
    while len(_FEATURE_CACHE) > MAX_CACHE_ENTRIES:
        _FEATURE_CACHE.popitem(last=False)


# ----------------------------------------------------------------------------- extraction


def _check_inputs(model, dataset, batch_size, cache_dir, func: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {func} must be a torch.nn.Module. "
                        f"Got {type(model).__name__} instead.")
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"The 'dataset' parameter of {func} must be a companion.data.ImageSet. "
                        f"Got {type(dataset).__name__} instead.")
    if len(dataset) == 0:
        raise ValueError(f"The 'dataset' parameter of {func} must not be empty. Got 0 images.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"The 'batch_size' parameter of {func} must be an int >= 1. "
                         f"Got {batch_size!r} instead.")
    if cache_dir is not None and not isinstance(cache_dir, (str, Path)):
        raise TypeError(f"The 'cache_dir' parameter of {func} must be None, a str or a pathlib.Path. "
                        f"Got {type(cache_dir).__name__} instead.")


def _check_depth(model: nn.Module, depth: int | None) -> None:
    if depth is None:
        if not callable(getattr(model, "forward_features", None)):
            raise TypeError(f"extract_features with depth=None needs a model with a forward_features method "
                            f"(a timm model or companion.train.ScratchCNN). Got {type(model).__name__}.")
        return
    num_depths = len(backbones.stages(model))
    if isinstance(depth, bool) or not isinstance(depth, Integral) or not 0 <= depth < num_depths:
        raise ValueError(f"The 'depth' parameter of extract_features must be None or an int in "
                         f"[0, {num_depths - 1}]. Got {depth!r} instead.")


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average over space for (B, C, h, w) maps, over tokens for (B, T, C) transformer output."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))  # (B, C)
    if x.ndim == 3:
        return x.mean(dim=1)  # (B, C)
    return x.flatten(1)  # (B, C)


def _named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``model`` by name."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _tensor_layouts(model: nn.Module) -> dict:
    """Device and strides of every parameter and buffer, to put the model back as it came."""
    return {name: (tensor.device, tensor.stride()) for name, tensor in _named_tensors(model).items()}


def _restore_layouts(model: nn.Module, layouts: dict) -> None:
    """Undo ``model.to(device, memory_format=...)``: each tensor back on its device, in its strides.

    Without this a cache miss would leave the caller's model in ``channels_last`` and a cache
    hit would not, and later float results (a train-mode pass, say) would depend on the cache.
    """
    for name, tensor in _named_tensors(model).items():
        device, stride = layouts[name]
        if tensor.device != device or tensor.stride() != stride:
            restored = torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=device)
            tensor.data = restored.copy_(tensor.data)


def _compute_features(model, dataset, depths: list, batch_size, device) -> dict:
    """One pass over the images: pooled features at each of ``depths`` ([None]: final features)."""
    was_training, layouts = model.training, _tensor_layouts(model)
    model.to(device, memory_format=torch.channels_last)
    model.eval()
    outputs = {depth: [] for depth in depths}
    try:
        with torch.inference_mode():
            for indices in torch.arange(len(dataset)).split(batch_size):
                inputs = backbones.preprocess(dataset.images[indices])  # (B, 3, H, W) float32
                x = inputs.to(device, memory_format=torch.channels_last)
                if depths == [None]:
                    activations = {None: model.forward_features(x)}  # {None: (B, C, h, w)}
                else:  # runs depths 0..max(depths) only
                    activations = backbones.forward_depths(model, x, depths)  # {k: (B, C_k, h_k, w_k)}
                for depth, activation in activations.items():
                    outputs[depth].append(_global_pool(activation).float().cpu())  # (B, C_k)
    finally:
        model.train(was_training)
        _restore_layouts(model, layouts)
    return {depth: torch.cat(chunks).numpy() for depth, chunks in outputs.items()}  # (N, C_k) each


def _extract(model, dataset, depths: list, batch_size, device, cache: bool, cache_dir) -> dict:
    """Features per depth: memory cache, then disk cache, then one pass for the missing depths."""
    device = repro.get_device(device)
    if not cache:
        return _compute_features(model, dataset, depths, int(batch_size), device)
    model_print, dataset_print = _model_fingerprint(model), _dataset_fingerprint(dataset)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "features"
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
            _save(root / f"{keys[depth]}.npz", keys[depth], features)
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
    ``.npz`` file stored under ``cache_dir`` (default ``default_cache_dir() / "features"``),
    without running the model; an unreadable file is recomputed and replaced.

    Usage: ``X_train = extract_features(model, train_set, depth=6)``
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

    Usage: ``by_depth = extract_features_by_depth(model, train_set)  # {0: (N, 32), ..., 8: (N, 1280)}``
    """
    func = "extract_features_by_depth"
    _check_inputs(model, dataset, batch_size, cache_dir, func)
    num_depths = len(backbones.stages(model))
    depths = range(num_depths) if depths is None else ([depths] if isinstance(depths, Integral) else depths)
    depths = list(depths) if not isinstance(depths, (str, bytes)) and np.iterable(depths) else [depths]
    if not depths or any(isinstance(d, bool) or not isinstance(d, Integral) or not 0 <= d < num_depths
                         for d in depths):
        raise ValueError(f"The 'depths' parameter of {func} must be None or a non-empty sequence of ints "
                         f"in [0, {num_depths - 1}]. Got {depths!r} instead.")
    depths = sorted({int(depth) for depth in depths})
    return _extract(model, dataset, depths, batch_size, device, cache, cache_dir)


# ----------------------------------------------------------------------------- probes


@dataclass
class ProbeResult:
    """A fitted linear probe: the pipeline, the chosen ``C`` and validation accuracies."""

    pipeline: Pipeline
    C: float
    val_accuracy: float
    val_accuracies: dict[float, float] = field(default_factory=dict)
    refit: bool = False


def _as_features(X, name: str, func: str) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"The '{name}' parameter of {func} must be a non-empty 2-D numeric array "
                         f"(num_samples, num_features). Got shape {X.shape} and dtype {X.dtype} instead.")
    if not np.isfinite(X).all():
        raise ValueError(
            f"The '{name}' parameter of {func} contains NaN or infinite values "
            f"({int((~np.isfinite(X)).sum())} of {X.size}); check the model that produced the features."
        )
    return X


def _as_labels(y, num_samples: int, name: str, x_name: str, func: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"The '{name}' parameter of {func} must be a 1-D integer array of class indices. "
                         f"Got shape {y.shape} and dtype {y.dtype} instead.")
    if len(y) != num_samples:
        raise ValueError(f"The '{name}' parameter of {func} must have one label per row of {x_name}. "
                         f"Got {len(y)} labels for {num_samples} rows.")
    return y


def fit_probe(X_train, y_train, X_val, y_val, *, Cs: tuple[float, ...] = (0.01, 0.1, 1, 10), seed: int = 0,
              refit: bool = False, max_iter: int = 2000) -> ProbeResult:
    """Fit a standardised logistic-regression probe, choosing ``C`` on the validation split.

    Each ``C`` (inverse regularisation strength) is fitted on the training split and scored on
    the validation split; the best wins (ties go to the smaller ``C``, the stronger
    regularisation). The default ``refit=False`` keeps the training-only fit: the validation
    split only selects ``C``, as it only selects the epoch in `companion.train.fit`, so the
    probe is compared fairly with methods that never train on validation labels.
    ``refit=True`` refits the chosen ``C`` on training plus validation data.

    Usage: ``probe = fit_probe(X_train, y_train, X_val, y_val, seed=0)``
    """
    func = "fit_probe"
    X_train = _as_features(X_train, "X_train", func)
    X_val = _as_features(X_val, "X_val", func)
    y_train = _as_labels(y_train, len(X_train), "y_train", "X_train", func)
    y_val = _as_labels(y_val, len(X_val), "y_val", "X_val", func)
    if X_train.shape[1] != X_val.shape[1]:
        raise ValueError(f"X_train and X_val of {func} must have the same number of features. "
                         f"Got {X_train.shape[1]} and {X_val.shape[1]}.")
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"The 'y_train' parameter of {func} must contain at least 2 classes. "
                         f"Got only class {np.unique(y_train).tolist()}.")
    Cs = (Cs,) if isinstance(Cs, Real) else tuple(Cs)
    if not Cs or any(isinstance(C, bool) or not isinstance(C, Real) or not C > 0 for C in Cs):
        raise ValueError(f"The 'Cs' parameter of {func} must be a non-empty sequence of floats > 0. "
                         f"Got {Cs!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"The 'seed' parameter of {func} must be an int >= 0. Got {seed!r} instead.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 1:
        raise ValueError(f"The 'max_iter' parameter of {func} must be an int >= 1. Got {max_iter!r} instead.")

    def make_pipeline(C: float) -> Pipeline:
        classifier = LogisticRegression(C=C, max_iter=int(max_iter), random_state=int(seed))
        return Pipeline([("scaler", StandardScaler()), ("classifier", classifier)])

    val_accuracies: dict[float, float] = {}
    best_C, best_accuracy, best_pipeline = None, -1.0, None
    for C in sorted(float(C) for C in Cs):
        pipeline = make_pipeline(C).fit(X_train, y_train)
        val_accuracies[C] = float(pipeline.score(X_val, y_val))
        if val_accuracies[C] > best_accuracy:
            best_C, best_accuracy, best_pipeline = C, val_accuracies[C], pipeline
    if refit:
        best_pipeline = make_pipeline(best_C).fit(np.concatenate([X_train, X_val]),
                                                  np.concatenate([y_train, y_val]))
    return ProbeResult(best_pipeline, best_C, best_accuracy, val_accuracies, refit)


def probe_accuracy(result: ProbeResult, X_test, y_test) -> float:
    """Return the accuracy of a fitted probe on test features.

    Usage: ``probe_accuracy(probe, X_test, y_test)``
    """
    func = "probe_accuracy"
    if not isinstance(result, ProbeResult):
        raise TypeError(f"The 'result' parameter of {func} must be a ProbeResult from fit_probe. "
                        f"Got {type(result).__name__} instead.")
    X_test = _as_features(X_test, "X_test", func)
    y_test = _as_labels(y_test, len(X_test), "y_test", "X_test", func)
    num_features = result.pipeline.named_steps["scaler"].n_features_in_
    if X_test.shape[1] != num_features:
        raise ValueError(f"The 'X_test' parameter of {func} must have {num_features} features like the "
                         f"probe's training data. Got {X_test.shape[1]}.")
    return float(result.pipeline.score(X_test, y_test))


def probe_by_depth(model: nn.Module, train_set: ImageSet, val_set: ImageSet, test_set: ImageSet, depths=None,
                   *, seed: int = 0, Cs: tuple[float, ...] = (0.01, 0.1, 1, 10), batch_size: int = 128,
                   device: torch.device | str | None = None, cache: bool = True,
                   cache_dir: str | Path | None = None) -> list[dict]:
    """Fit a linear probe at each depth: how linearly decodable the classes are, layer by layer.

    Features of each split come from one `extract_features_by_depth` pass (cached); at each
    depth `fit_probe` picks ``C`` on ``val_set`` (no refit) and `probe_accuracy` scores
    ``test_set``. Returns one dict per depth, shallow to deep: ``depth``, ``name``,
    ``channels``, ``val_accuracy``, ``test_accuracy``, ``C``.

    Usage: ``rows = probe_by_depth(model, train_set, val_set, test_set, seed=0)``
    """
    options = dict(batch_size=batch_size, device=device, cache=cache, cache_dir=cache_dir)
    X_train = extract_features_by_depth(model, train_set, depths, **options)
    X_val = extract_features_by_depth(model, val_set, depths, **options)
    X_test = extract_features_by_depth(model, test_set, depths, **options)
    names = [name for name, _ in backbones.stages(model)]
    rows = []
    for depth, features in X_train.items():
        probe = fit_probe(features, train_set.labels, X_val[depth], val_set.labels, Cs=Cs, seed=seed)
        rows.append({"depth": depth, "name": names[depth], "channels": features.shape[1],
                     "val_accuracy": probe.val_accuracy,
                     "test_accuracy": probe_accuracy(probe, X_test[depth], test_set.labels), "C": probe.C})
    return rows

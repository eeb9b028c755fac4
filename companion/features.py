"""Feature extraction from a frozen backbone, memoised, and linear probes on the features.

Scope: `extract_features` runs a model once over an `ImageSet` and returns globally
average-pooled activations, either the final features (``depth=None``) or those after depth
``k`` of `companion.backbones.stages`; results are memoised in memory under a key built from
fingerprints of the weights, the images and the depth (`feature_cache_key`, ready to name a
file when a disk cache is added). `fit_probe` trains a scikit-learn logistic-regression probe
with its ``C`` chosen on a validation split; `probe_accuracy` scores it on a test split.

Usage::

    from companion import backbones, features
    model = backbones.load_backbone("efficientnet_lite0")
    X_train = features.extract_features(model, train_set)     # (N, 1280)
    X_val = features.extract_features(model, val_set)
    probe = features.fit_probe(X_train, train_set.labels, X_val, val_set.labels, seed=0)
    print(features.probe_accuracy(probe, features.extract_features(model, test_set), test_set.labels))
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from companion import backbones, repro
from companion.data import ImageSet

__all__ = [
    "extract_features",
    "feature_cache_key",
    "clear_feature_cache",
    "ProbeResult",
    "fit_probe",
    "probe_accuracy",
]

MAX_CACHE_ENTRIES = 64
_FEATURE_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()


# ----------------------------------------------------------------------------- fingerprints


def _tensor_digest(hasher, tensor: torch.Tensor) -> None:
    hasher.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    flat = tensor.detach().cpu().contiguous().reshape(-1)  # (numel,)
    if flat.numel():
        hasher.update(flat.view(torch.uint8).numpy())


def _model_fingerprint(model: nn.Module) -> str:
    """Hash of the class name and every weight and buffer (changes when training changes them)."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        hasher.update(name.encode())
        _tensor_digest(hasher, tensor)
    return hasher.hexdigest()


def _dataset_fingerprint(dataset: ImageSet) -> str:
    """Hash of all image bytes and their shape (labels do not change features)."""
    hasher = hashlib.blake2b(digest_size=16)
    _tensor_digest(hasher, dataset.images)
    return hasher.hexdigest()


def feature_cache_key(model: nn.Module, dataset: ImageSet, depth: int | None) -> str:
    """Return the cache key of ``extract_features(model, dataset, depth=depth)``: a hex string.

    It changes whenever a weight, an image or the depth changes, so it can name a file.

    Usage: ``feature_cache_key(model, train_set, None)``
    """
    depth_name = "final" if depth is None else f"depth{depth}"
    return f"{_model_fingerprint(model)}-{_dataset_fingerprint(dataset)}-{depth_name}"


def clear_feature_cache() -> None:
    """Forget every memoised feature array. Usage: ``clear_feature_cache()``"""
    _FEATURE_CACHE.clear()


# ----------------------------------------------------------------------------- extraction


def _check_depth(model: nn.Module, depth: int | None) -> list[tuple[str, nn.Module]] | None:
    if depth is None:
        if not callable(getattr(model, "forward_features", None)):
            raise TypeError(
                f"extract_features with depth=None needs a model with a forward_features method "
                f"(a timm model or companion.train.ScratchCNN). Got {type(model).__name__}."
            )
        return None
    model_stages = backbones.stages(model)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth < len(model_stages):
        raise ValueError(
            f"The 'depth' parameter of extract_features must be None or an int in "
            f"[0, {len(model_stages) - 1}]. Got {depth!r} instead."
        )
    return model_stages[: depth + 1]


def _compute_features(model, dataset, model_stages, batch_size, device) -> np.ndarray:
    was_training = model.training
    model.to(device, memory_format=torch.channels_last)
    model.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for indices in torch.arange(len(dataset)).split(batch_size):
                inputs = backbones.preprocess(dataset.images[indices])  # (B, 3, H, W) float32
                x = inputs.to(device, memory_format=torch.channels_last)
                if model_stages is None:
                    x = model.forward_features(x)  # (B, C, h, w)
                else:
                    for _, stage in model_stages:  # depths 0..k only; the rest never runs
                        x = stage(x)  # (B, C_k, h_k, w_k)
                outputs.append(x.float().mean(dim=(2, 3)).cpu())  # (B, C)
    finally:
        model.train(was_training)
    return torch.cat(outputs).numpy()  # (N, C)


def extract_features(
    model: nn.Module,
    dataset: ImageSet,
    *,
    depth: int | None = None,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    cache: bool = True,
) -> np.ndarray:
    """Return globally average-pooled features of every image, shape ``(N, C)`` float32.

    ``depth=None`` gives the final features (``model.forward_features`` then pooling: 1280 for
    Lite0); ``depth=k`` runs only depths ``0..k`` of `companion.backbones.stages(model)` and pools
    the output of depth ``k``. The model runs in eval mode under ``torch.inference_mode`` (its
    train/eval mode is restored afterwards). With ``cache=True`` a repeated call with the same
    weights, images and depth returns a copy of the memoised array without running the model.

    Usage: ``X_train = extract_features(model, train_set, depth=6)``
    """
    func = "extract_features"
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {func} must be a torch.nn.Module. Got {type(model).__name__} instead.")
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"The 'dataset' parameter of {func} must be a companion.data.ImageSet. Got {type(dataset).__name__} instead.")
    if len(dataset) == 0:
        raise ValueError(f"The 'dataset' parameter of {func} must not be empty. Got 0 images.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"The 'batch_size' parameter of {func} must be an int >= 1. Got {batch_size!r} instead.")
    model_stages = _check_depth(model, depth)
    device = repro.get_device(device)
    key = feature_cache_key(model, dataset, depth) if cache else None
    if key is not None and key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        return _FEATURE_CACHE[key].copy()
    features = _compute_features(model, dataset, model_stages, batch_size, device)  # (N, C)
    if key is not None:
        _FEATURE_CACHE[key] = features.copy()
        while len(_FEATURE_CACHE) > MAX_CACHE_ENTRIES:
            _FEATURE_CACHE.popitem(last=False)
    return features


# ----------------------------------------------------------------------------- probes


@dataclass
class ProbeResult:
    """A fitted linear probe: the pipeline, the chosen ``C`` and validation accuracies."""

    pipeline: Pipeline
    C: float
    val_accuracy: float
    val_accuracies: dict[float, float] = field(default_factory=dict)
    refit: bool = True


def _as_features(X, name: str, func: str) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(
            f"The '{name}' parameter of {func} must be a non-empty 2-D numeric array "
            f"(num_samples, num_features). Got shape {X.shape} and dtype {X.dtype} instead."
        )
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
        raise ValueError(
            f"The '{name}' parameter of {func} must be a 1-D integer array of class indices. "
            f"Got shape {y.shape} and dtype {y.dtype} instead."
        )
    if len(y) != num_samples:
        raise ValueError(
            f"The '{name}' parameter of {func} must have one label per row of {x_name}. "
            f"Got {len(y)} labels for {num_samples} rows."
        )
    return y


def fit_probe(
    X_train,
    y_train,
    X_val,
    y_val,
    *,
    Cs: tuple[float, ...] = (0.01, 0.1, 1, 10),
    seed: int = 0,
    refit: bool = True,
    max_iter: int = 2000,
) -> ProbeResult:
    """Fit a standardised logistic-regression probe, choosing ``C`` on the validation split.

    Each ``C`` (inverse regularisation strength) is fitted on the training split and scored on
    the validation split; the best wins (ties go to the smaller ``C``, the stronger
    regularisation). With ``refit=True`` the chosen pipeline is refitted on training plus
    validation data; ``refit=False`` keeps the training-only fit (the val split then only
    selects ``C``, like early stopping does for `companion.train.fit`).

    Usage: ``probe = fit_probe(X_train, y_train, X_val, y_val, seed=0)``
    """
    func = "fit_probe"
    X_train = _as_features(X_train, "X_train", func)
    X_val = _as_features(X_val, "X_val", func)
    y_train = _as_labels(y_train, len(X_train), "y_train", "X_train", func)
    y_val = _as_labels(y_val, len(X_val), "y_val", "X_val", func)
    if X_train.shape[1] != X_val.shape[1]:
        raise ValueError(
            f"X_train and X_val of {func} must have the same number of features. "
            f"Got {X_train.shape[1]} and {X_val.shape[1]}."
        )
    if len(np.unique(y_train)) < 2:
        raise ValueError(
            f"The 'y_train' parameter of {func} must contain at least 2 classes. "
            f"Got only class {np.unique(y_train).tolist()}."
        )
    Cs = tuple(Cs) if not isinstance(Cs, (int, float)) else (Cs,)
    if not Cs or any(isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0 for C in Cs):
        raise ValueError(f"The 'Cs' parameter of {func} must be a non-empty sequence of floats > 0. Got {Cs!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"The 'seed' parameter of {func} must be an int >= 0. Got {seed!r} instead.")

    def make_pipeline(C: float) -> Pipeline:
        classifier = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        return Pipeline([("scaler", StandardScaler()), ("classifier", classifier)])

    val_accuracies: dict[float, float] = {}
    best_C, best_accuracy, best_pipeline = None, -1.0, None
    for C in sorted(float(C) for C in Cs):
        pipeline = make_pipeline(C).fit(X_train, y_train)
        val_accuracies[C] = float(pipeline.score(X_val, y_val))
        if val_accuracies[C] > best_accuracy:
            best_C, best_accuracy, best_pipeline = C, val_accuracies[C], pipeline
    if refit:
        best_pipeline = make_pipeline(best_C).fit(
            np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val])
        )
    return ProbeResult(best_pipeline, best_C, best_accuracy, val_accuracies, refit)


def probe_accuracy(result: ProbeResult, X_test, y_test) -> float:
    """Return the accuracy of a fitted probe on test features. Usage: ``probe_accuracy(probe, X_test, y_test)``"""
    func = "probe_accuracy"
    if not isinstance(result, ProbeResult):
        raise TypeError(f"The 'result' parameter of {func} must be a ProbeResult from fit_probe. Got {type(result).__name__} instead.")
    X_test = _as_features(X_test, "X_test", func)
    y_test = _as_labels(y_test, len(X_test), "y_test", "X_test", func)
    num_features = result.pipeline.named_steps["scaler"].n_features_in_
    if X_test.shape[1] != num_features:
        raise ValueError(
            f"The 'X_test' parameter of {func} must have {num_features} features like the "
            f"probe's training data. Got {X_test.shape[1]}."
        )
    return float(result.pipeline.score(X_test, y_test))

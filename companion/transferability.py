"""Transferability before training: LogME, how well features explain the target's labels.

Scope: `logme` scores a set of features against the target labels with a Bayesian linear model
whose regularisation is chosen by the evidence (You et al., "LogME: Practical Assessment of
Pre-trained Models for Transfer Learning", ICML 2021). It needs no validation split and no
training run; higher means more transferable. Its values rank depths or backbones on the same
data; they have no absolute scale.

Usage::

    >>> import numpy as np
    >>> from companion import transferability
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> informative = np.c_[y + 0.1 * rng.normal(size=100), rng.normal(size=100)]
    >>> noise = rng.normal(size=(100, 2))
    >>> transferability.logme(informative, y) > transferability.logme(noise, y)
    True

Taught in ``notebooks/03_source_target_similarity.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from companion.validation import InvalidParameterError, check_array, check_features

__all__ = ["logme"]

# LogME search over log(alpha / beta): grid step, and how far beyond the spectrum it reaches.
_LOGME_GRID_STEP = 0.25
_LOGME_MARGIN = 30.0


def _check_labels(labels: ArrayLike, function: str, num_samples: int) -> np.ndarray:
    """Return ``labels`` as a 1-D array with one label per sample and >= 2 classes, or raise."""
    array = check_array(labels, "labels", function, kinds="biuUS", ndim=1,
                        kind_text="an array of integer or string class labels",
                        shape_text="(n_samples,)")
    if len(array) != num_samples:
        raise InvalidParameterError(
            f"The 'labels' parameter of {function} must have one label per row of 'features' "
            f"({num_samples}). Got {len(array)} labels instead."
        )
    classes = np.unique(array)
    if len(classes) < 2:
        raise InvalidParameterError(
            f"The 'labels' parameter of {function} must contain at least 2 classes. Got 1 "
            f"class ({classes[0].item()!r}) instead."
        )
    return array


def _profile_log_evidence(
    log_ratios: np.ndarray, sigma: np.ndarray, projections2: np.ndarray, outside2: float,
    num_samples: int,
) -> np.ndarray:
    """Log evidence / N of one target column at each ``log(alpha / beta)``, best beta plugged in.

    The model ``w ~ N(0, I / alpha)``, ``y = F w + N(0, I / beta)`` gives
    ``y ~ N(0, I / beta + F F^T / alpha)``. In the eigenbasis of ``F F^T`` (eigenvalues
    ``sigma``, rank k) with ``t = alpha / beta``, ``x = U^T y`` and ``r0`` the squared norm of
    the part of y outside the span of F:

        log|C| = -N log beta + sum log(t + sigma) - k log t
        y^T C^-1 y = beta Q(t),   Q(t) = sum x^2 t / (t + sigma) + r0

    so the evidence is maximised over beta at ``beta = N / Q(t)``, leaving one variable, t.
    """
    ratios = np.exp(np.asarray(log_ratios, dtype=np.float64))[:, None]  # (T, 1)
    quadratic = np.sum(projections2 * ratios / (ratios + sigma), axis=1) + outside2  # (T,) Q(t)
    evidence = (
        len(sigma) / 2.0 * np.log(ratios[:, 0])
        - 0.5 * np.sum(np.log(ratios + sigma), axis=1)
        + num_samples / 2.0 * np.log(num_samples / quadratic)
        - num_samples / 2.0 * (1.0 + math.log(2.0 * math.pi))
    )  # (T,)
    return evidence / num_samples


def _max_log_evidence(
    sigma: np.ndarray, projections: np.ndarray, target_norm2: float, num_samples: int
) -> float:
    """Maximum over alpha, beta of the log evidence of one target column, divided by N.

    A grid over ``log(alpha / beta)`` spanning the spectrum (and 30 e-folds beyond it on both
    sides, where the evidence has reached its limits) finds the best cell, then a bounded Brent
    search refines it. The paper's fixed-point updates of alpha and beta stop at the same
    maximum when it lies inside; they crawl when it lies at a limit (N < D: an interpolating
    fit, or no signal at all), which this search handles.
    """
    projections2 = projections**2  # (k,)
    if len(sigma) == num_samples:  # F F^T has full rank: y lies in the span of F
        outside2 = 0.0
    else:
        outside2 = max(target_norm2 - float(projections2.sum()), 0.0)
    low = math.log(sigma.min()) - _LOGME_MARGIN
    high = math.log(sigma.max()) + _LOGME_MARGIN
    grid = np.arange(low, high + _LOGME_GRID_STEP, _LOGME_GRID_STEP)  # (T,)
    values = _profile_log_evidence(grid, sigma, projections2, outside2, num_samples)  # (T,)
    best = int(np.argmax(values))

    def negative(log_ratio: float) -> float:
        ratio = np.array([log_ratio])
        return -float(_profile_log_evidence(ratio, sigma, projections2, outside2, num_samples)[0])

    result = optimize.minimize_scalar(
        negative,
        bounds=(grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": 1e-9},
    )
    return float(max(-result.fun, values[best]))


def _spectrum_and_projections(
    features: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared singular values ``sigma`` (k,) of F and ``U^T targets`` (k, C), k = rank of F.

    Uses the eigendecomposition of the smaller Gram matrix (N, N) or (D, D), several times
    faster than an SVD of F; directions below the rank tolerance are dropped.
    """
    num_samples, num_features = features.shape
    if num_samples <= num_features:
        sigma, U = np.linalg.eigh(features @ features.T)  # (N,), (N, N)
    else:
        sigma, V = np.linalg.eigh(features.T @ features)  # (D,), (D, D)
    tolerance = sigma.max(initial=0.0) * max(num_samples, num_features) * np.finfo(float).eps
    keep = sigma > tolerance
    if not np.any(keep):
        raise ValueError(
            "The 'features' parameter of logme is all zeros, so it explains no label. Pass the "
            "extracted features themselves."
        )
    sigma = sigma[keep]  # (k,)
    if num_samples <= num_features:
        projections = U[:, keep].T @ targets  # (k, C)
    else:
        # U = F V / s for the kept directions, so U^T y = V^T (F^T y) / s.
        projections = (V[:, keep].T @ (features.T @ targets)) / np.sqrt(sigma)[:, None]  # (k, C)
    return sigma, projections


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME transferability score of features for a classification target (higher = better).

    For every class, a Bayesian linear regression from the features to the class's one-hot
    column (prior precision alpha on the weights, noise precision beta) is fitted by maximising
    its evidence over alpha and beta; LogME is that maximum log evidence divided by N, averaged
    over the classes (You et al., "LogME: Practical assessment of pre-trained models for
    transfer learning", ICML 2021). One eigendecomposition of the features serves every class.
    The paper climbs to the maximum with fixed-point updates of alpha and beta; here beta is
    maximised in closed form and alpha / beta by a 1-D search, which reaches the same maximum
    and also the ones at a limit that the updates approach only slowly (common when N < D).
    The evidence is exact for any shape (thuml/LogME's default ``_fit_fixed_point`` drops
    D - k terms of ``log|A|`` when N < D). The score is unchanged by rescaling or rotating the
    features; compare it between backbones or layers on the same target data.

    Parameters
    ----------
    features : array of shape (N, D), not centered or scaled (use them as extracted).
    labels : array of shape (N,), integer or string class labels, at least 2 classes.

    """
    function = "logme"
    features = check_features(features, "features", function)
    labels = _check_labels(labels, function, num_samples=len(features))
    classes = np.unique(labels)
    targets = (labels[:, None] == classes[None, :]).astype(np.float64)  # (N, C) one-hot columns
    sigma, projections = _spectrum_and_projections(features, targets)  # (k,), (k, C)
    target_norms2 = np.sum(targets**2, axis=0)  # (C,)
    evidences = [
        _max_log_evidence(sigma, projections[:, column], float(norm2), len(features))
        for column, norm2 in enumerate(target_norms2)
    ]
    return float(np.mean(evidences))

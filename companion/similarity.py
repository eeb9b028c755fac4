"""Similarity and transferability scores computed before any fine-tuning.

Scope: the lesson's central question, *is the learned representation close enough to what my
target task needs?*, asked of feature arrays of shape ``(N, D)`` (for example pooled backbone
features from ``companion.features``), in four ways:

- ``domain_classifier_accuracy`` and ``proxy_a_distance``: how easily a linear classifier tells
  source features from target features (Ben-David et al., 2007; 0 = indistinguishable,
  2 = perfectly separable).
- ``feature_statistics_distance``: the Frechet distance between Gaussians fitted to two feature
  sets (their means and covariances; 0 for identical sets).
- ``linear_cka``: how alike two representations of the *same* examples are (Kornblith et al.,
  2019; 1 = the same up to rotation and scale).
- ``logme``: how well the features explain the target labels with a Bayesian linear model
  (You et al., ICML 2021; higher = more transferable).

Every function accepts NumPy arrays (CPU tensors work too, through ``np.asarray``), computes in
float64, validates its inputs where they enter, and takes an explicit ``seed`` where it samples.
None of them touches a backbone: extract the features once, then compare them here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "domain_classifier_accuracy", "proxy_a_distance", "feature_statistics_distance",
    "linear_cka", "logme",
]

# LogME search over log(alpha / beta): grid step, and how far beyond the spectrum it reaches.
_LOGME_GRID_STEP = 0.25
_LOGME_MARGIN = 30.0


# --------------------------------------------------------------------------- validation
def _check_features(
    features: ArrayLike, name: str, function: str, min_samples: int = 2
) -> np.ndarray:
    """Return ``features`` as a finite float64 array of shape (N, D), or raise."""
    array = np.asarray(features)
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"The '{name}' parameter of {function} must be a real-valued numeric array of shape "
            f"(n_samples, n_features). Got an array of dtype {array.dtype} instead."
        )
    if array.ndim != 2:
        raise ValueError(
            f"The '{name}' parameter of {function} must be a 2-D array of shape "
            f"(n_samples, n_features). Got an array of shape {array.shape} instead. Pool or "
            f"flatten each example's features first, e.g. features.reshape(len(features), -1)."
        )
    num_samples, num_features = array.shape
    if num_samples < min_samples:
        raise ValueError(
            f"The '{name}' parameter of {function} must have at least {min_samples} samples "
            f"(rows). Got {num_samples} instead."
        )
    if num_features < 1:
        raise ValueError(
            f"The '{name}' parameter of {function} must have at least 1 feature (column). "
            f"Got 0 instead."
        )
    array = array.astype(np.float64, copy=False)
    num_bad = int(np.count_nonzero(~np.isfinite(array)))
    if num_bad:
        raise ValueError(
            f"The '{name}' parameter of {function} must contain only finite values. Got "
            f"{num_bad} NaN or infinite entries instead; drop or impute them first."
        )
    return array


def _check_same_num_features(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str], function: str
) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"The '{names[0]}' and '{names[1]}' parameters of {function} must have the same "
            f"number of features (columns). Got {a.shape[1]} and {b.shape[1]} instead."
        )


def _check_labels(labels: ArrayLike, function: str, num_samples: int) -> np.ndarray:
    """Return ``labels`` as a 1-D array with one label per sample and >= 2 classes, or raise."""
    array = np.asarray(labels)
    if array.dtype.kind not in "biuUS":
        raise TypeError(
            f"The 'labels' parameter of {function} must be an array of integer or string class "
            f"labels. Got an array of dtype {array.dtype} instead."
        )
    if array.ndim != 1:
        raise ValueError(
            f"The 'labels' parameter of {function} must be a 1-D array of shape (n_samples,). "
            f"Got an array of shape {array.shape} instead."
        )
    if len(array) != num_samples:
        raise ValueError(
            f"The 'labels' parameter of {function} must have one label per row of 'features' "
            f"({num_samples}). Got {len(array)} labels instead."
        )
    classes = np.unique(array)
    if len(classes) < 2:
        raise ValueError(
            f"The 'labels' parameter of {function} must contain at least 2 classes. Got 1 "
            f"class ({classes[0].item()!r}) instead."
        )
    return array


def _check_float(value: object, name: str, function: str, low: float, high: float) -> float:
    """Return ``value`` as a float in the open interval (low, high), or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"The '{name}' parameter of {function} must be a float in ({low}, {high}). "
            f"Got {value!r} of type {type(value).__name__} instead."
        )
    if not low < value < high:
        raise ValueError(
            f"The '{name}' parameter of {function} must be a float in ({low}, {high}). "
            f"Got {value!r} instead."
        )
    return float(value)


def _check_seed(seed: object, function: str) -> int:
    """Return ``seed`` as a non-negative int, or raise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"The 'seed' parameter of {function} must be a non-negative int. "
            f"Got {seed!r} of type {type(seed).__name__} instead."
        )
    if seed < 0:
        raise ValueError(
            f"The 'seed' parameter of {function} must be a non-negative int. Got {seed!r} instead."
        )
    return int(seed)


# --------------------------------------------------------------------------- domain classifier
def domain_classifier_accuracy(
    source_features: ArrayLike,
    target_features: ArrayLike,
    *,
    seed: int = 0,
    test_fraction: float = 0.5,
    C: float = 1.0,
) -> float:
    """Held-out accuracy of a linear classifier that tells source from target features.

    The larger domain is subsampled (with ``seed``) to the size of the smaller one, each domain
    is split into a training and a held-out part of the same sizes, and a
    ``StandardScaler + LogisticRegression(C=C)`` pipeline is trained to predict the domain.
    Chance is 0.5; 1.0 means the two feature sets are linearly separable.

    Parameters
    ----------
    source_features, target_features : arrays of shape (N_source, D) and (N_target, D)
    seed : int, seeds the subsampling and the split.
    test_fraction : float in (0, 1), share of each (balanced) domain held out for scoring.
    C : float > 0, inverse L2 regularisation strength of the logistic regression.

    Usage: ``accuracy = domain_classifier_accuracy(source, target, seed=0)``
    """
    return _domain_classifier_accuracy(
        source_features, target_features, seed, test_fraction, C, "domain_classifier_accuracy"
    )


def _domain_classifier_accuracy(
    source_features: ArrayLike, target_features: ArrayLike, seed: int, test_fraction: float,
    C: float, function: str,
) -> float:
    """``domain_classifier_accuracy``, with error messages naming the public ``function``."""
    source = _check_features(source_features, "source_features", function)
    target = _check_features(target_features, "target_features", function)
    _check_same_num_features(source, target, ("source_features", "target_features"), function)
    seed = _check_seed(seed, function)
    test_fraction = _check_float(test_fraction, "test_fraction", function, 0.0, 1.0)
    C = _check_float(C, "C", function, 0.0, math.inf)

    num_per_domain = min(len(source), len(target))
    num_test = int(round(test_fraction * num_per_domain))
    if not 1 <= num_test <= num_per_domain - 1:
        raise ValueError(
            f"{function} cannot split {num_per_domain} examples per domain with "
            f"test_fraction={test_fraction}: the training and the held-out part each need at "
            f"least 1 example per domain (the held-out part would get {num_test}). Pass more "
            f"examples or a test_fraction nearer 0.5."
        )

    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for features in (source, target):
        # Balance the domains and shuffle in one step: a random subset of num_per_domain rows.
        order = rng.permutation(len(features))[:num_per_domain]
        test_parts.append(features[order[:num_test]])  # (num_test, D)
        train_parts.append(features[order[num_test:]])  # (num_per_domain - num_test, D)
    X_train, X_test = np.vstack(train_parts), np.vstack(test_parts)
    y_train = np.repeat([0, 1], num_per_domain - num_test)  # 0 = source, 1 = target
    y_test = np.repeat([0, 1], num_test)

    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    classifier.fit(X_train, y_train)
    return float(np.mean(classifier.predict(X_test) == y_test))


def proxy_a_distance(
    source_features: ArrayLike,
    target_features: ArrayLike,
    *,
    seed: int = 0,
    test_fraction: float = 0.5,
    C: float = 1.0,
) -> float:
    """Proxy A-distance between two feature sets: ``2 (1 - 2 error)``, clipped to [0, 2].

    ``error`` is the held-out error of the linear domain classifier of
    ``domain_classifier_accuracy`` (same arguments). 0 means the classifier is at chance (the
    domains look alike to a linear model), 2 means it separates them perfectly. Ben-David et al.,
    "Analysis of representations for domain adaptation", NeurIPS 2007.

    Usage: ``distance = proxy_a_distance(source, target, seed=0)``
    """
    accuracy = _domain_classifier_accuracy(
        source_features, target_features, seed, test_fraction, C, "proxy_a_distance"
    )
    error = 1.0 - accuracy
    return float(np.clip(2.0 * (1.0 - 2.0 * error), 0.0, 2.0))  # chance (0.5) -> 0


# --------------------------------------------------------------------------- feature statistics
def _covariance_factor(features: np.ndarray) -> np.ndarray:
    """A factor ``R`` of shape (min(N, D), D) with ``R^T R`` = the unbiased sample covariance."""
    centered = features - features.mean(axis=0)  # (N, D)
    return np.linalg.qr(centered, mode="r") / math.sqrt(len(features) - 1)  # (min(N, D), D)


def feature_statistics_distance(a: ArrayLike, b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (their first two moments).

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with the sample means ``mu`` and
    the unbiased sample covariances ``S`` (the formula behind the FID score; the matrix square
    root is never formed, see the comment in the code). It is 0 for identical sets, symmetric,
    and in squared feature units: it grows with the square of the feature scale, so compare
    distances computed on the same kind of features only (the same backbone and layer), never
    across backbones.

    Parameters
    ----------
    a, b : arrays of shape (N_a, D) and (N_b, D), at least 2 samples each.

    Usage: ``distance = feature_statistics_distance(source, target)``
    """
    function = "feature_statistics_distance"
    a = _check_features(a, "a", function)
    b = _check_features(b, "b", function)
    _check_same_num_features(a, b, ("a", "b"), function)
    mean_term = float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2))
    # With S_a = R_a^T R_a and S_b = R_b^T R_b, the non-zero eigenvalues of S_a S_b are the
    # squared singular values of R_a R_b^T, so Tr((S_a S_b)^(1/2)) is its nuclear norm: exact,
    # real and stable, without sqrtm, even for the singular covariances of N < D.
    factor_a, factor_b = _covariance_factor(a), _covariance_factor(b)  # (k_a, D), (k_b, D)
    cross = np.linalg.svd(factor_a @ factor_b.T, compute_uv=False).sum()  # (k_a, k_b) -> scalar
    trace_term = np.sum(factor_a**2) + np.sum(factor_b**2) - 2.0 * cross  # Tr S_a + Tr S_b - 2 ...
    return float(max(mean_term + trace_term, 0.0))


# --------------------------------------------------------------------------- linear CKA
def linear_cka(X: ArrayLike, Y: ArrayLike) -> float:
    """Linear centered kernel alignment between two representations of the same examples.

    ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` after centering every column (Kornblith
    et al., "Similarity of neural network representations revisited", ICML 2019). Row ``i`` of
    ``X`` and of ``Y`` must describe the same example; the feature dimensions may differ. The
    score lies in [0, 1], is 1 for ``Y = X @ Q * c`` (any orthogonal ``Q``, scale ``c > 0``), and
    is near 0 for unrelated representations when N is much larger than the dimensions. The
    cheaper of the feature-space and the (N, N) Gram-matrix form is used.

    Usage: ``similarity = linear_cka(features_layer_3, features_layer_7)``
    """
    function = "linear_cka"
    X = _check_features(X, "X", function)
    Y = _check_features(Y, "Y", function)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"The 'X' and 'Y' parameters of {function} must describe the same examples in the "
            f"same order, so they need the same number of rows. Got {X.shape[0]} and "
            f"{Y.shape[0]} instead."
        )
    for name, array in (("X", X), ("Y", Y)):
        if np.all(array.max(axis=0) == array.min(axis=0)):
            raise ValueError(
                f"The '{name}' parameter of {function} has no variance: every column is "
                f"constant, so CKA is undefined. Check that the features are not all equal."
            )
    X = X - X.mean(axis=0)  # (N, D_x)
    Y = Y - Y.mean(axis=0)  # (N, D_y)
    num_samples, dim_x = X.shape
    dim_y = Y.shape[1]
    feature_cost = num_samples * (dim_x * dim_y + dim_x**2 + dim_y**2)
    gram_cost = num_samples**2 * (dim_x + dim_y + 2)
    if feature_cost <= gram_cost:
        cross = np.sum((Y.T @ X) ** 2)  # ||Y^T X||_F^2
        norm_x = np.linalg.norm(X.T @ X)  # (D_x, D_x) -> ||X^T X||_F
        norm_y = np.linalg.norm(Y.T @ Y)  # (D_y, D_y) -> ||Y^T Y||_F
    else:
        gram_x = X @ X.T  # (N, N), already centered because the columns are
        gram_y = Y @ Y.T  # (N, N)
        cross = np.sum(gram_x * gram_y)  # <K, L>_F = ||Y^T X||_F^2
        norm_x, norm_y = np.linalg.norm(gram_x), np.linalg.norm(gram_y)
    return float(cross / (norm_x * norm_y))


# --------------------------------------------------------------------------- LogME
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

    Usage: ``score = logme(train_features, train_labels)``
    """
    function = "logme"
    features = _check_features(features, "features", function)
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

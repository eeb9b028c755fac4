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
- ``with_source_statistics``: a copy of a fine-tuned model that normalises with the source's
  BatchNorm statistics again, to tell what fine-tuning changed in the weights from what it
  re-estimated in the statistics.
- ``source_distance``: how far a target's activations sit from the source's own statistics,
  read from the backbone's BatchNorm layers, whose running means and variances were estimated
  on ImageNet: a measured distance *from the source*, although no ImageNet photo is at hand.

The feature functions accept NumPy arrays (CPU tensors work too, through ``np.asarray``),
compute in float64, validate their inputs where they enter, and take an explicit ``seed`` where
they sample; they never touch a backbone. LogME, which scores features against labels, is in
`companion.transferability`.

Usage::

    >>> import numpy as np
    >>> from companion import similarity
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(similarity.linear_cka(X, 2 * X), 6)
    1.0

Taught in ``notebooks/03_source_target_similarity.ipynb``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from companion import backbones, repro
from companion.data import ImageSet
from companion.validation import InvalidParameterError, check_float, check_image_set, check_instance, check_int
from companion.validation import check_features, check_seed

__all__ = ["domain_classifier_accuracy", "proxy_a_distance", "feature_statistics_distance", "linear_cka",
           "SourceDistance", "source_distance", "with_source_statistics"]


# --------------------------------------------------------------------------- validation
def _check_same_num_features(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str], function: str
) -> None:
    if a.shape[1] != b.shape[1]:
        raise InvalidParameterError(
            f"The '{names[0]}' and '{names[1]}' parameters of {function} must have the same "
            f"number of features (columns). Got {a.shape[1]} and {b.shape[1]} instead."
        )


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
    """
    return _domain_classifier_accuracy(
        source_features, target_features, seed, test_fraction, C, "domain_classifier_accuracy"
    )


def _domain_classifier_accuracy(
    source_features: ArrayLike, target_features: ArrayLike, seed: int, test_fraction: float,
    C: float, function: str,
) -> float:
    """``domain_classifier_accuracy``, with error messages naming the public ``function``."""
    source = check_features(source_features, "source_features", function)
    target = check_features(target_features, "target_features", function)
    _check_same_num_features(source, target, ("source_features", "target_features"), function)
    seed = check_seed(seed, "seed", function)
    test_fraction = check_float(test_fraction, "test_fraction", function, low=0.0, high=1.0, low_open=True,
                                high_open=True)
    C = check_float(C, "C", function, low=0.0, low_open=True)

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
    """
    function = "feature_statistics_distance"
    a = check_features(a, "a", function)
    b = check_features(b, "b", function)
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
    """
    function = "linear_cka"
    X = check_features(X, "X", function)
    Y = check_features(Y, "Y", function)
    if X.shape[0] != Y.shape[0]:
        raise InvalidParameterError(
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




# --------------------------------------------------------------------------- distance from the source
@dataclass(frozen=True)
class SourceDistance:
    """How far a target's activations are from the source statistics the backbone stored.

    ``by_depth[k]`` is the mean over the BatchNorm channels of depth ``k`` of the Gaussian KL
    divergence (in nats) of the target's activation statistics from the stored running ones;
    ``mean`` averages the depths. 0 means the target's activations have, channel by channel,
    the mean and variance the source's had.
    """

    by_depth: tuple[float, ...]
    depth_names: tuple[str, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.by_depth))


def _gaussian_kl(mean_t: torch.Tensor, var_t: torch.Tensor, mean_s: torch.Tensor, var_s: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_t, var_t) || N(mean_s, var_s)) per channel."""
    var_t, var_s = var_t.clamp(min=1e-8), var_s.clamp(min=1e-8)
    return 0.5 * ((var_t + (mean_t - mean_s) ** 2) / var_s - 1.0 - torch.log(var_t / var_s))


def source_distance(model: nn.Module, dataset: ImageSet, *, batch_size: int = 128,
                    device: torch.device | str | None = None) -> SourceDistance:
    """Distance of ``dataset``'s activations from the source statistics stored in ``model``'s BatchNorm layers.

    Each BatchNorm layer of a pretrained backbone keeps the running mean and variance of its
    input channels over the source data (ImageNet photos for the course's backbone). The target
    images run through the model in eval mode; at every BatchNorm layer the per-channel mean and
    variance of its input over the target images (all positions) are compared with the stored
    ones by a Gaussian KL divergence, averaged over the layer's channels and then over the
    layers of each depth. The model comes back as it went in.

    >>> from companion import backbones, data
    >>> model = backbones.load_backbone(pretrained=True)
    >>> images = data.make_dataset(2, seed=0, image_size=64, cache=False)
    >>> distance = source_distance(model, images)
    >>> len(distance.by_depth), distance.mean > 0
    (9, True)
    """
    func = "source_distance"
    check_instance(model, "model", func, nn.Module, "a pretrained backbone (torch.nn.Module)")
    check_image_set(dataset, "dataset", func)
    batch_size = check_int(batch_size, "batch_size", func, low=1)
    device = repro.get_device(device)
    depths = backbones.stages(model)
    layers = {id(module): depth for depth, (_, stage) in enumerate(depths) for module in stage.modules()
              if isinstance(module, _BatchNorm) and module.track_running_stats}
    if not layers:
        raise InvalidParameterError(f"The 'model' parameter of {func} must have BatchNorm layers with running "
                                    "statistics in its depths. Got a model without any.")
    sums: dict[int, list[torch.Tensor]] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0].detach().double()  # (B, C, h, w)
        totals = sums.setdefault(id(module), [0, torch.zeros(x.shape[1], dtype=torch.float64, device=x.device),
                                              torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)])
        totals[0] += x.shape[0] * x.shape[2] * x.shape[3]
        totals[1] += x.sum(dim=(0, 2, 3))
        totals[2] += (x * x).sum(dim=(0, 2, 3))

    modules = {id(module): module for _, stage in depths for module in stage.modules() if id(module) in layers}
    handles = [module.register_forward_pre_hook(record) for module in modules.values()]
    try:
        with repro.model_left_as_it_was(model), torch.inference_mode():
            model.to(device).eval()
            for batch in dataset.images.split(batch_size):
                x = backbones.preprocess(batch, model).to(device)  # (B, 3, H, W)
                for _, stage in depths:
                    x = stage(x)  # (B, C_k, h_k, w_k)
    finally:
        for handle in handles:
            handle.remove()
    per_depth: dict[int, list[float]] = {}
    for key, module in modules.items():
        count, total, squares = sums[key]
        mean_t = total / count
        var_t = squares / count - mean_t ** 2
        kl = _gaussian_kl(mean_t, var_t, module.running_mean.double().to(mean_t.device),
                          module.running_var.double().to(mean_t.device))
        per_depth.setdefault(layers[key], []).append(float(kl.mean()))
    return SourceDistance(tuple(float(np.mean(per_depth[d])) for d in range(len(depths)) if d in per_depth),
                          tuple(name for d, (name, _) in enumerate(depths) if d in per_depth))


def with_source_statistics(model: nn.Module, source: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers hold ``source``'s running means and variances.

    Fine-tuning in train mode re-estimates every BatchNorm layer's statistics on the target;
    putting the source's back separates that change from the change of the weights. The two
    models must have the same BatchNorm layers (same names and sizes); neither is modified.

    >>> from companion import backbones
    >>> source = backbones.load_backbone(pretrained=True)
    >>> tuned = backbones.load_backbone(pretrained=False, num_classes=6)
    >>> restored = with_source_statistics(tuned, source)
    >>> bool((restored.bn1.running_var == source.bn1.running_var).all())
    True
    """
    func = "with_source_statistics"
    check_instance(model, "model", func, nn.Module, "a torch.nn.Module with BatchNorm layers")
    check_instance(source, "source", func, nn.Module, "a torch.nn.Module with BatchNorm layers")
    mine = {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats}
    theirs = {name: m for name, m in source.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats}
    if not mine or set(mine) != set(theirs) or any(
            mine[name].running_mean.shape != theirs[name].running_mean.shape for name in mine):
        raise InvalidParameterError(
            f"The 'source' parameter of {func} must have the same BatchNorm layers as 'model' (names and "
            f"sizes). Got {len(theirs)} layers against {len(mine)}"
            + (", with different names or sizes." if len(mine) == len(theirs) else "."))
    restored = copy.deepcopy(model)
    layers = dict(restored.named_modules())
    with torch.no_grad():
        for name, layer in theirs.items():
            layers[name].running_mean.copy_(layer.running_mean)
            layers[name].running_var.copy_(layer.running_var)
    return restored

"""Linear probes: how linearly decodable the classes are from a set of features.

Scope: `fit_probe` trains a scikit-learn logistic-regression probe on standardised features with
its inverse regularisation ``C`` chosen on a validation split (`CS`, five values: the same size
of search as every learning-rate grid of `companion.recipes`); `probe_accuracy` scores it;
`probe_by_depth` probes every depth of a backbone from one cached feature pass;
`copy_into_classifier` writes a fitted probe into a model's linear head, so a probe becomes an
ordinary model (the linear-probe strategy and the first phase of LP-FT).

Usage::

    >>> import numpy as np
    >>> from companion import probes
    >>> X, y = np.r_[np.zeros((5, 2)), np.ones((5, 2))], np.r_[np.zeros(5, int), np.ones(5, int)]
    >>> probe = probes.fit_probe(X, y, X, y, seed=0)
    >>> probes.probe_accuracy(probe, X, y)
    1.0

Taught in ``notebooks/02_reusable_features.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from companion import backbones, features
from companion.data import ImageSet
from companion.validation import check, check_instance, check_int, check_seed

__all__ = ["CS", "ProbeResult", "fit_probe", "probe_accuracy", "probe_by_depth", "copy_into_classifier"]

CS = (0.0001, 0.001, 0.01, 0.1, 1.0)  # the probe's search grid: five values, like every learning-rate grid
ABSENT_CLASS_BIAS = -1e4  # logit bias of a class the probe never saw: never predicted


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
    check(X.ndim == 2 and X.shape[0] > 0 and X.shape[1] > 0 and np.issubdtype(X.dtype, np.number), X, name,
          func, "a non-empty 2-D numeric array (num_samples, num_features)")
    check(bool(np.isfinite(X).all()), X, name, func, "finite features",
          f"{int((~np.isfinite(X)).sum())} of {X.size} values are NaN or infinite; check the model that "
          "produced them.")
    return X


def _as_labels(y, num_samples: int, name: str, x_name: str, func: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    check(y.ndim == 1 and np.issubdtype(y.dtype, np.integer), y, name, func,
          "a 1-D integer array of class indices")
    check(len(y) == num_samples, y, name, func, f"one label per row of {x_name}",
          f"It has {len(y)} labels for {num_samples} rows.")
    return y


def fit_probe(X_train, y_train, X_val, y_val, *, Cs: tuple[float, ...] = CS, seed: int = 0,
              refit: bool = False, max_iter: int = 2000) -> ProbeResult:
    """Fit a standardised logistic-regression probe, choosing ``C`` on the validation split.

    Each ``C`` (inverse regularisation strength) is fitted on the training split and scored on
    the validation split; the best wins (ties go to the smaller ``C``, the stronger
    regularisation). The default ``refit=False`` keeps the training-only fit: the validation
    split only selects ``C``, as it only selects the epoch in `companion.train.fit`, so the
    probe is compared fairly with methods that never train on validation labels.
    ``refit=True`` refits the chosen ``C`` on training plus validation data.

    """
    func = "fit_probe"
    X_train = _as_features(X_train, "X_train", func)
    X_val = _as_features(X_val, "X_val", func)
    y_train = _as_labels(y_train, len(X_train), "y_train", "X_train", func)
    y_val = _as_labels(y_val, len(X_val), "y_val", "X_val", func)
    check(X_train.shape[1] == X_val.shape[1], X_val, "X_val", func,
          f"features of the same width as X_train ({X_train.shape[1]})")
    check(len(np.unique(y_train)) >= 2, y_train, "y_train", func, "labels of at least 2 classes")
    Cs = (Cs,) if isinstance(Cs, Real) else tuple(Cs)
    check(bool(Cs) and all(isinstance(C, Real) and not isinstance(C, bool) and C > 0 for C in Cs), Cs, "Cs", func,
          "a non-empty sequence of floats > 0")
    seed = check_seed(seed, "seed", func)
    max_iter = check_int(max_iter, "max_iter", func, low=1)

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
    """The accuracy of a fitted probe on test features."""
    func = "probe_accuracy"
    check_instance(result, "result", func, ProbeResult, "a ProbeResult from fit_probe")
    X_test = _as_features(X_test, "X_test", func)
    y_test = _as_labels(y_test, len(X_test), "y_test", "X_test", func)
    num_features = result.pipeline.named_steps["scaler"].n_features_in_
    check(X_test.shape[1] == num_features, X_test, "X_test", func,
          f"{num_features} features, like the probe's training data")
    return float(result.pipeline.score(X_test, y_test))


def probe_by_depth(model: nn.Module, train_set: ImageSet, val_set: ImageSet, test_set: ImageSet, depths=None,
                   *, seed: int = 0, Cs: tuple[float, ...] = CS, batch_size: int = 128,
                   device: torch.device | str | None = None, cache: bool = True,
                   cache_dir: str | Path | None = None) -> list[dict]:
    """Fit a linear probe at each depth: how linearly decodable the classes are, layer by layer.

    Features of each split come from one `extract_features_by_depth` pass (cached); at each
    depth `fit_probe` picks ``C`` on ``val_set`` (no refit) and `probe_accuracy` scores
    ``test_set``. Returns one dict per depth, shallow to deep: ``depth``, ``name``,
    ``channels``, ``val_accuracy``, ``test_accuracy``, ``correct`` (per test image) and ``C``.
    """
    options = dict(batch_size=batch_size, device=device, cache=cache, cache_dir=cache_dir)
    X_train = features.extract_features_by_depth(model, train_set, depths, **options)
    X_val = features.extract_features_by_depth(model, val_set, depths, **options)
    X_test = features.extract_features_by_depth(model, test_set, depths, **options)
    names = [name for name, _ in backbones.stages(model)]
    rows = []
    for depth, X in X_train.items():  # not "features": that name is the module used above
        probe = fit_probe(X, train_set.labels, X_val[depth], val_set.labels, Cs=Cs, seed=seed)
        correct = probe.pipeline.predict(X_test[depth]) == test_set.labels.numpy()  # (N_test,)
        rows.append({"depth": depth, "name": names[depth], "channels": X.shape[1],
                     "val_accuracy": probe.val_accuracy, "test_accuracy": float(correct.mean()),
                     "correct": correct, "C": probe.C})
    return rows


def copy_into_classifier(probe: ProbeResult, classifier: nn.Linear) -> None:
    """Write a fitted probe (scaler + logistic regression) into a linear layer: W' = W / s, b' = b - W' m.

    A class the probe never saw gets zero weights and a bias of -1e4, so it is never predicted.
    """
    check_instance(probe, "probe", "copy_into_classifier", ProbeResult, "a ProbeResult from fit_probe")
    check_instance(classifier, "classifier", "copy_into_classifier", nn.Linear, "a torch.nn.Linear")
    scaler, logistic = probe.pipeline.named_steps["scaler"], probe.pipeline.named_steps["classifier"]
    weight = torch.as_tensor(logistic.coef_ / scaler.scale_, dtype=torch.float32)  # (K', F)
    bias = torch.as_tensor(logistic.intercept_, dtype=torch.float32) - weight @ torch.as_tensor(
        scaler.mean_, dtype=torch.float32)  # (K',)
    if len(logistic.classes_) == 2:  # one decision value z: softmax([-z/2, z/2]) = sigmoid(z)
        weight, bias = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
    check(classifier.in_features == weight.shape[1], classifier, "classifier", "copy_into_classifier",
          f"a linear layer with {weight.shape[1]} inputs, the probe's feature count")
    classes = torch.as_tensor(logistic.classes_, dtype=torch.long)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.fill_(ABSENT_CLASS_BIAS)
        classifier.weight[classes] = weight.to(classifier.weight.device)
        classifier.bias[classes] = bias.to(classifier.bias.device)

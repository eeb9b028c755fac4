"""Tests for companion.transferability: LogME against the paper's algorithm and a brute-force maximum."""

import numpy as np
import pytest
from scipy import optimize

from companion import transferability
from companion.transferability import logme


def gaussian(num_samples, num_features, seed, shift=0.0):
    return np.random.default_rng(seed).normal(size=(num_samples, num_features)) + shift


def random_orthogonal(size, seed):
    Q, R = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return Q * np.sign(np.diag(R))


def exact_max_evidence(features, labels):
    """LogME by brute force: maximise log N(y; 0, I / beta + F F^T / alpha) with Nelder-Mead."""
    num_samples = len(features)
    scores = []
    for label in np.unique(labels):
        y = (labels == label).astype(float)

        def negative_log_evidence(log_precisions):
            alpha, beta = np.exp(log_precisions)
            cov = np.eye(num_samples) / beta + features @ features.T / alpha
            _, log_det = np.linalg.slogdet(cov)
            return 0.5 * (num_samples * np.log(2 * np.pi) + log_det + y @ np.linalg.solve(cov, y))

        result = optimize.minimize(
            negative_log_evidence, x0=[0.0, 0.0], method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 10000},
        )
        scores.append(-result.fun / num_samples)
    return np.mean(scores)


def fixed_point_logme(features, labels, num_iterations=500):
    """LogME by the paper's Algorithm 1 with explicit matrices (no SVD), run to convergence."""
    num_samples, num_features = features.shape
    eigenvalues = np.linalg.eigvalsh(features.T @ features)
    scores = []
    for label in np.unique(labels):
        y = (labels == label).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(num_iterations):
            A = alpha * np.eye(num_features) + beta * features.T @ features
            m = beta * np.linalg.solve(A, features.T @ y)
            gamma = np.sum(beta * eigenvalues / (alpha + beta * eigenvalues))
            alpha = gamma / (m @ m)
            beta = (num_samples - gamma) / np.sum((features @ m - y) ** 2)
        A = alpha * np.eye(num_features) + beta * features.T @ features
        m = beta * np.linalg.solve(A, features.T @ y)
        evidence = (
            num_samples / 2 * np.log(beta) + num_features / 2 * np.log(alpha)
            - num_samples / 2 * np.log(2 * np.pi) - beta / 2 * np.sum((features @ m - y) ** 2)
            - alpha / 2 * m @ m - 0.5 * np.linalg.slogdet(A)[1]
        )
        scores.append(evidence / num_samples)
    return np.mean(scores)


def labelled_features(num_samples, num_features, signal, seed):
    """Features whose first columns carry the one-hot label times ``signal``, plus noise."""
    labels = np.arange(num_samples) % 3
    features = gaussian(num_samples, num_features, seed)
    features[:, :3] += signal * np.eye(3)[labels]
    return features, labels


def test_logme_matches_the_papers_fixed_point_iteration():
    """Check LogME against a direct NumPy run of the paper's alpha/beta fixed point (N > D)."""
    features, labels = labelled_features(45, 6, signal=1.0, seed=29)
    assert logme(features, labels) == pytest.approx(fixed_point_logme(features, labels), rel=1e-7)


@pytest.mark.parametrize("shape", [(40, 5), (12, 30)], ids=["N>D", "N<D"])
def test_logme_matches_the_brute_force_maximum_evidence(shape):
    """Check LogME against maximising the Gaussian marginal likelihood directly."""
    features, labels = labelled_features(*shape, signal=1.0, seed=30)
    assert logme(features, labels) == pytest.approx(exact_max_evidence(features, labels), rel=1e-6)


def test_logme_prefers_features_that_separate_the_labels():
    """Check that label-carrying features score higher than random ones, and both are finite."""
    informative, labels = labelled_features(90, 8, signal=3.0, seed=31)
    random_score = logme(gaussian(90, 8, seed=32), labels)
    informative_score = logme(informative, labels)
    assert np.isfinite(random_score) and np.isfinite(informative_score)
    assert informative_score > random_score + 0.1


def test_logme_is_invariant_to_scaling_rotation_and_label_names():
    """Check that rescaling or rotating features and renaming classes keep the score."""
    features, labels = labelled_features(60, 5, signal=1.5, seed=33)
    score = logme(features, labels)
    assert logme(1e3 * features @ random_orthogonal(5, seed=34), labels) == pytest.approx(score)
    names = np.array(["tear", "dent", "ok"])[labels]
    assert logme(features, names) == pytest.approx(score)


def test_logme_is_finite_in_degenerate_cases():
    """Check finite scores for few-shot N < D and for features that contain the labels."""
    few_shot, labels = labelled_features(18, 200, signal=2.0, seed=35)
    assert np.isfinite(logme(few_shot, labels))
    assert np.isfinite(logme(np.eye(3)[labels], labels))  # y lies exactly in the feature span


@pytest.mark.parametrize("features, error, message", [
    (np.where(np.eye(10, 3) > 0, np.nan, 1.0), ValueError, r"The 'features' parameter of logme must contain only "
                                                           r"finite values. Got 3 NaN"),
    (np.zeros(10), ValueError, r"must be a 2-D array .*Got an array of shape \(10,\)"),
    (np.ones((10, 3), dtype=complex), TypeError, r"must be a real-valued numeric array.*complex128"),
    (np.full((10, 3), "a"), TypeError, r"real-valued numeric array.*<U1"),
    (np.ones((1, 3)), ValueError, r"must have at least 2 samples \(rows\). Got 1 instead"),
    (np.zeros((10, 0)), ValueError, r"must have at least 1 feature \(column\). Got 0"),
], ids=["nan", "1-D", "complex", "strings", "one row", "no column"])
def test_logme_refuses_bad_features(features, error, message):
    """Check that NaN, 1-D, non-numeric, single-row and empty features are refused, naming logme."""
    labels = np.arange(len(features)) % 2 if len(features) > 1 else np.array([0])
    with pytest.raises(error, match=message):
        logme(features, labels)


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        (np.arange(9) % 2, ValueError, r"one label per row of 'features' \(10\). Got 9 labels"),
        (np.zeros(10, dtype=int), ValueError, r"at least 2 classes. Got 1 class \(0\)"),
        (np.zeros((10, 2), dtype=int), ValueError, r"1-D array of shape \(n_samples,\)"),
        (np.linspace(0, 1, 10), TypeError, r"integer or string class labels. .*float64"),
    ],
    ids=["length", "one-class", "2-D", "float"],
)
def test_logme_refuses_bad_labels(labels, error, message):
    """Check each label problem raises its own message."""
    with pytest.raises(error, match=message):
        logme(gaussian(10, 3, seed=45), labels)


def test_logme_refuses_all_zero_features():
    """Check that all-zero features raise instead of returning a meaningless score."""
    with pytest.raises(ValueError, match=r"'features' parameter of logme is all zeros"):
        logme(np.zeros((10, 3)), np.arange(10) % 2)


def test_public_names_are_exported():
    """Check that __all__ lists LogME."""
    assert transferability.__all__ == ["logme"]

"""Tests for companion.similarity: each score against a direct formula or a known answer."""

import numpy as np
import pytest
from scipy import linalg, optimize

from companion import similarity
from companion.similarity import (
    domain_classifier_accuracy,
    feature_statistics_distance,
    linear_cka,
    logme,
    proxy_a_distance,
)


def gaussian(num_samples, num_features, seed, shift=0.0):
    return np.random.default_rng(seed).normal(size=(num_samples, num_features)) + shift


def random_orthogonal(size, seed):
    Q, R = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return Q * np.sign(np.diag(R))


# --------------------------------------------------------------------------- proxy A-distance
def test_proxy_a_distance_near_zero_for_identical_domains():
    """Check that two halves of one Gaussian sample are about indistinguishable (PAD < 0.3)."""
    sample = gaussian(600, 8, seed=0)
    assert proxy_a_distance(sample[:300], sample[300:], seed=0) < 0.3


def test_proxy_a_distance_near_two_for_disjoint_domains():
    """Check that far-apart domains (means shifted by 10 sd) give a PAD above 1.8."""
    distance = proxy_a_distance(gaussian(200, 8, seed=1), gaussian(200, 8, seed=2, shift=10.0))
    assert 1.8 < distance <= 2.0


def test_proxy_a_distance_grows_with_the_shift():
    """Check that the PAD grows (up to sampling noise) as the target's mean moves away."""
    source = gaussian(300, 8, seed=3)
    distances = [
        proxy_a_distance(source, gaussian(300, 8, seed=4, shift=shift), seed=0)
        for shift in (0.0, 0.3, 0.6, 1.0, 3.0)
    ]
    assert all(later >= earlier - 0.1 for earlier, later in zip(distances, distances[1:]))
    assert distances[0] < 0.3 and distances[-1] > 1.8


def test_proxy_a_distance_is_two_minus_four_times_the_error():
    """Check that PAD = 2 (1 - 2 error) with the domain classifier's held-out error."""
    source, target = gaussian(120, 5, seed=5), gaussian(80, 5, seed=6, shift=0.5)
    accuracy = domain_classifier_accuracy(source, target, seed=7, test_fraction=0.25, C=0.5)
    expected = np.clip(2 * (1 - 2 * (1 - accuracy)), 0, 2)
    assert proxy_a_distance(source, target, seed=7, test_fraction=0.25, C=0.5) == expected
    # 80 examples per domain after balancing, 20 of them held out: accuracy is a multiple of 1/40.
    assert (accuracy * 40) == pytest.approx(round(accuracy * 40))


def test_domain_classifier_accuracy_depends_only_on_the_seed():
    """Check that the same seed gives the same accuracy and the larger domain is subsampled."""
    source, target = gaussian(300, 6, seed=8), gaussian(60, 6, seed=9, shift=0.4)
    first = domain_classifier_accuracy(source, target, seed=1)
    assert first == domain_classifier_accuracy(source, target, seed=1)
    values = {domain_classifier_accuracy(source, target, seed=seed) for seed in range(5)}
    assert len(values) > 1  # another seed, another subsample and split
    assert all(0.0 <= value <= 1.0 for value in values)


# --------------------------------------------------------------------------- feature statistics
def with_exact_moments(num_samples, mean, variances, seed):
    """A sample whose sample mean and unbiased sample covariance are exactly the given ones."""
    sample = gaussian(num_samples, len(mean), seed)
    sample -= sample.mean(axis=0)
    whitening = np.linalg.cholesky(np.cov(sample, rowvar=False))
    sample = np.linalg.solve(whitening, sample.T).T  # sample covariance = I
    return sample * np.sqrt(variances) + mean


def test_feature_statistics_distance_is_zero_for_identical_sets():
    """Check that the distance of a feature set to itself is 0 (N > D and N < D)."""
    for shape in [(50, 6), (5, 20)]:
        features = gaussian(*shape, seed=10)
        assert feature_statistics_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_distance_matches_the_diagonal_gaussian_closed_form():
    """Check the value against ||mu_a - mu_b||^2 + sum (sqrt(var_a) - sqrt(var_b))^2."""
    mean_a, variances_a = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 4.0, 0.25, 2.0])
    mean_b, variances_b = np.array([1.0, 1.0, 0.0, -0.5]), np.array([9.0, 1.0, 0.25, 0.5])
    a = with_exact_moments(40, mean_a, variances_a, seed=11)
    b = with_exact_moments(70, mean_b, variances_b, seed=12)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum(
        (np.sqrt(variances_a) - np.sqrt(variances_b)) ** 2
    )
    assert feature_statistics_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_feature_statistics_distance_matches_sqrtm_for_full_covariances():
    """Check the value against the textbook formula with scipy.linalg.sqrtm."""
    a = gaussian(60, 5, seed=13) @ gaussian(5, 5, seed=14)
    b = gaussian(45, 5, seed=15, shift=0.7) @ gaussian(5, 5, seed=16)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(
        cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real
    )
    assert feature_statistics_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_feature_statistics_distance_is_symmetric_and_sees_a_pure_shift():
    """Check symmetry, and that shifting a set by mu (N < D) gives exactly ||mu||^2."""
    a, b = gaussian(30, 4, seed=17), gaussian(50, 4, seed=18, shift=1.0)
    assert feature_statistics_distance(a, b) == pytest.approx(feature_statistics_distance(b, a))
    few = gaussian(6, 12, seed=19)  # singular covariance
    shift = np.linspace(-1.0, 1.0, 12)
    assert feature_statistics_distance(few, few + shift) == pytest.approx(np.sum(shift**2))


# --------------------------------------------------------------------------- linear CKA
def cka_with_centering_matrix(X, Y):
    """Linear CKA from its definition: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X^T."""
    num_samples = len(X)
    H = np.eye(num_samples) - np.ones((num_samples, num_samples)) / num_samples
    K, L = X @ X.T, Y @ Y.T

    def hsic(first, second):
        return np.trace(first @ H @ second @ H)

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def test_linear_cka_of_a_representation_with_itself_is_one():
    """Check that CKA(X, X) is 1."""
    X = gaussian(40, 7, seed=20)
    assert linear_cka(X, X) == pytest.approx(1.0)


def test_linear_cka_is_invariant_to_rotation_and_isotropic_scaling():
    """Check that rotating (X @ Q) and scaling a representation leaves CKA unchanged."""
    X, Y = gaussian(50, 6, seed=21), gaussian(50, 9, seed=22)
    Y[:, :6] += X  # related representations
    Q = random_orthogonal(6, seed=23)
    assert linear_cka(X, X @ Q * 3.5) == pytest.approx(1.0)
    assert linear_cka(X @ Q * 0.1, 7.0 * Y) == pytest.approx(linear_cka(X, Y))


@pytest.mark.parametrize("shape", [(60, 4, 7), (12, 30, 25)], ids=["N>D", "N<D"])
def test_linear_cka_matches_the_hsic_formula(shape):
    """Check CKA against HSIC with the centering matrix H, in both code paths."""
    num_samples, dim_x, dim_y = shape
    X = gaussian(num_samples, dim_x, seed=24) + 3.0  # uncentered on purpose
    Y = np.tanh(X @ gaussian(dim_x, dim_y, seed=25)) + 0.5 * gaussian(num_samples, dim_y, seed=26)
    assert linear_cka(X, Y) == pytest.approx(cka_with_centering_matrix(X, Y), rel=1e-10)


def test_linear_cka_is_near_zero_for_independent_representations():
    """Check that unrelated representations with N >> D score below 0.1."""
    assert linear_cka(gaussian(2000, 5, seed=27), gaussian(2000, 8, seed=28)) < 0.1


# --------------------------------------------------------------------------- LogME
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


# --------------------------------------------------------------------------- validation
FUNCTIONS_OF_TWO_SETS = [
    proxy_a_distance, domain_classifier_accuracy, feature_statistics_distance, linear_cka
]


def call(function, features):
    """Call a score with ``features`` in the first slot and a valid partner in the second."""
    if function is logme:
        return function(features, np.arange(10) % 2)
    return function(features, gaussian(10, 3, seed=36))


ALL_FUNCTIONS = FUNCTIONS_OF_TWO_SETS + [logme]
IDS = [function.__name__ for function in ALL_FUNCTIONS]


@pytest.mark.parametrize("function", ALL_FUNCTIONS, ids=IDS)
def test_nan_features_raise_a_clear_error(function):
    """Check that NaN entries raise a ValueError that counts them."""
    features = gaussian(10, 3, seed=37)
    features[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"must contain only finite values. Got 1 NaN"):
        call(function, features)


@pytest.mark.parametrize("function", ALL_FUNCTIONS, ids=IDS)
def test_non_2d_features_raise(function):
    """Check that a 1-D array is refused with the expected shape in the message."""
    with pytest.raises(ValueError, match=r"must be a 2-D array .*Got an array of shape \(10,\)"):
        call(function, np.zeros(10))


@pytest.mark.parametrize("function", ALL_FUNCTIONS, ids=IDS)
def test_non_numeric_features_raise_type_error(function):
    """Check that string or complex features raise a TypeError naming the dtype."""
    with pytest.raises(TypeError, match=r"must be a real-valued numeric array.*complex128"):
        call(function, np.ones((10, 3), dtype=complex))
    with pytest.raises(TypeError, match=r"real-valued numeric array.*<U1"):
        call(function, np.full((10, 3), "a"))


@pytest.mark.parametrize("function", ALL_FUNCTIONS, ids=IDS)
def test_too_few_samples_or_no_features_raise(function):
    """Check that a single sample or zero feature columns are refused."""
    with pytest.raises(ValueError, match=r"must have at least 2 samples \(rows\). Got 1 instead"):
        call(function, gaussian(1, 3, seed=38))
    with pytest.raises(ValueError, match=r"must have at least 1 feature \(column\). Got 0"):
        call(function, np.zeros((10, 0)))


@pytest.mark.parametrize(
    "function", [proxy_a_distance, domain_classifier_accuracy, feature_statistics_distance]
)
def test_mismatched_feature_dimensions_raise(function):
    """Check that two sets with different feature dimensions are refused."""
    with pytest.raises(ValueError, match=r"same number of features \(columns\). Got 3 and 4"):
        function(gaussian(10, 3, seed=40), gaussian(10, 4, seed=41))


def test_linear_cka_refuses_different_examples_and_constant_features():
    """Check that CKA needs the same rows and some variance in each representation."""
    with pytest.raises(ValueError, match=r"same number of rows. Got 10 and 12 instead"):
        linear_cka(gaussian(10, 3, seed=42), gaussian(12, 3, seed=43))
    with pytest.raises(ValueError, match=r"'Y' parameter of linear_cka has no variance"):
        linear_cka(gaussian(10, 3, seed=44), np.ones((10, 4)))


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


@pytest.mark.parametrize(
    ("keyword", "value", "error", "message"),
    [
        ("test_fraction", 0.0, ValueError, r"'test_fraction' .* float in \(0.0, 1.0\). Got 0.0"),
        ("test_fraction", 1.5, ValueError, r"'test_fraction' .* float in \(0.0, 1.0\). Got 1.5"),
        ("test_fraction", "0.5", TypeError, r"'test_fraction' .*Got '0.5' of type str"),
        ("C", -1.0, ValueError, r"'C' parameter of proxy_a_distance .* float in \(0.0, inf\)"),
        ("seed", -1, ValueError, r"'seed' .* non-negative int. Got -1 instead"),
        ("seed", 1.5, TypeError, r"'seed' .* non-negative int. Got 1.5 of type float"),
    ],
)
def test_proxy_a_distance_refuses_bad_options(keyword, value, error, message):
    """Check the messages for out-of-range or mistyped test_fraction, C and seed."""
    with pytest.raises(error, match=message):
        proxy_a_distance(gaussian(10, 3, seed=46), gaussian(10, 3, seed=47), **{keyword: value})


def test_proxy_a_distance_refuses_an_impossible_split():
    """Check that a split leaving no held-out example per domain is refused with a fix."""
    message = r"cannot split 3 examples per domain .*held-out part would get 0"
    with pytest.raises(ValueError, match=message):
        proxy_a_distance(gaussian(3, 2, seed=48), gaussian(5, 2, seed=49), test_fraction=0.1)


def test_public_names_are_exported():
    """Check that __all__ lists exactly the public scores."""
    assert set(similarity.__all__) == {function.__name__ for function in ALL_FUNCTIONS}

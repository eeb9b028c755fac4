"""Tests for companion.similarity: each score against a direct formula or a known answer."""

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from companion import backbones, data, similarity
from companion.backbones import BackboneSpec
from companion.data import ImageSet
from companion.similarity import (
    domain_classifier_accuracy,
    feature_statistics_distance,
    linear_cka,
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


# --------------------------------------------------------------------------- validation
FUNCTIONS_OF_TWO_SETS = [
    proxy_a_distance, domain_classifier_accuracy, feature_statistics_distance, linear_cka
]


def call(function, features):
    """Call a score with ``features`` in the first slot and a valid partner in the second."""
    return function(features, gaussian(10, 3, seed=36))


ALL_FUNCTIONS = FUNCTIONS_OF_TWO_SETS
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
    ("keyword", "value", "error", "message"),
    [
        ("test_fraction", 0.0, ValueError, r"The 'test_fraction' parameter of proxy_a_distance must be a float in "
                                           r"\(0.0, 1.0\). Got 0.0 instead"),
        ("test_fraction", 1.5, ValueError, r"'test_fraction' .* float in \(0.0, 1.0\). Got 1.5"),
        ("test_fraction", "0.5", TypeError, r"'test_fraction' .* float in \(0.0, 1.0\). Got '0.5' instead"),
        ("C", -1.0, ValueError, r"The 'C' parameter of proxy_a_distance must be a float > 0.0. Got -1.0"),
        ("seed", -1, ValueError, r"The 'seed' parameter of proxy_a_distance must be an int >= 0. Got -1 instead"),
        ("seed", 1.5, TypeError, r"'seed' .* an int >= 0. Got 1.5 instead"),
        ("seed", np.int64(3), None, None),
    ],
)
def test_proxy_a_distance_refuses_bad_options(keyword, value, error, message):
    """Check the messages for out-of-range or mistyped test_fraction, C and seed (numpy ints are fine)."""
    if error is None:
        assert 0.0 <= proxy_a_distance(gaussian(10, 3, seed=46), gaussian(10, 3, seed=47), **{keyword: value}) <= 2.0
        return
    with pytest.raises(error, match=message):
        proxy_a_distance(gaussian(10, 3, seed=46), gaussian(10, 3, seed=47), **{keyword: value})


def test_proxy_a_distance_refuses_an_impossible_split():
    """Check that a split leaving no held-out example per domain is refused with a fix."""
    message = r"cannot split 3 examples per domain .*held-out part would get 0"
    with pytest.raises(ValueError, match=message):
        proxy_a_distance(gaussian(3, 2, seed=48), gaussian(5, 2, seed=49), test_fraction=0.1)


def test_public_names_are_exported():
    """Check that __all__ lists exactly the public scores and the distance from the source."""
    assert set(similarity.__all__) == {function.__name__ for function in ALL_FUNCTIONS} | {"SourceDistance",
                                                                                            "source_distance",
                                                                                            "with_source_statistics"}


# --------------------------------------------------------------------------- distance from the source
class OneBatchNorm(nn.Module):
    """One BatchNorm layer over the raw pixels in [0, 1] (mean 0, std 1: no normalisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.backbone_spec = BackboneSpec(name="one_batchnorm", timm_name=None, mean=(0.0, 0.0, 0.0),
                                          std=(1.0, 1.0, 1.0), image_size=8, stage_layout=(("bn", ("bn",)),),
                                          channels=(3,), strides=(1,), classifier="bn", first_conv="bn")

    def forward(self, x):
        return self.bn(x)


@pytest.fixture(scope="module")
def pixels() -> ImageSet:
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageSet(images, torch.arange(10) % 2, ("a", "b"))


def with_stored_statistics(images: ImageSet, mean_shift_sds: float = 0.0, variance_ratio: float = 1.0):
    """A OneBatchNorm whose running statistics are the images' own, the mean moved by some sds, the variance scaled."""
    x = images.images.double() / 255  # (N, 3, H, W), what reaches the layer
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)  # over images and positions
    model = OneBatchNorm()
    with torch.no_grad():
        model.bn.running_mean.copy_(mean + mean_shift_sds * var.sqrt())
        model.bn.running_var.copy_(var * variance_ratio)
    return model


def test_source_distance_is_zero_when_the_target_has_the_stored_statistics(pixels):
    """Check that a layer whose running statistics equal its input's statistics gives a KL of about 0."""
    distance = similarity.source_distance(with_stored_statistics(pixels), pixels, device="cpu")
    assert distance.depth_names == ("bn",) and len(distance.by_depth) == 1
    assert distance.by_depth[0] == pytest.approx(0.0, abs=1e-6) and distance.mean == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("shift, ratio, expected", [
    (1.0, 1.0, 0.5),                                 # KL of a mean shifted by one sd: 1/2
    (-2.0, 1.0, 2.0),                                # two sds: 2^2 / 2
    (0.0, 2.0, 0.5 * (0.5 - 1.0 + np.log(2.0))),     # stored variance twice the target's
])
def test_source_distance_is_the_gaussian_kl_of_the_statistics(pixels, shift, ratio, expected):
    """Check known answers of KL(N(m_t, v_t) || N(m_s, v_s)) = ((v_t + (m_t - m_s)^2) / v_s - 1 - ln(v_t / v_s)) / 2."""
    distance = similarity.source_distance(with_stored_statistics(pixels, shift, ratio), pixels, batch_size=3,
                                          device="cpu")
    assert distance.by_depth[0] == pytest.approx(expected, rel=1e-5) and distance.mean == distance.by_depth[0]


def test_source_distance_of_a_backbone_per_depth_and_model_left_as_it_was():
    """Check one distance per depth of a pretrained backbone, independent of the batch size, the model unchanged."""
    model = backbones.load_backbone(pretrained=True).train()
    images = data.make_dataset(1, image_size=32, seed=0, cache=False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    distance = similarity.source_distance(model, images, device="cpu")
    assert distance.depth_names == backbones.get_spec().depth_names and len(distance.by_depth) == 9
    assert all(value >= 0 for value in distance.by_depth) and distance.mean > 0
    assert distance.mean == pytest.approx(np.mean(distance.by_depth))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(module._forward_pre_hooks for module in model.modules())
    in_pairs = similarity.source_distance(model, images, batch_size=2, device="cpu")
    np.testing.assert_allclose(in_pairs.by_depth, distance.by_depth, rtol=1e-6)


def test_source_distance_rejects_bad_arguments(pixels):
    """Check that a model without BatchNorm, a non-ImageSet and a bad batch size are refused."""
    plain = OneBatchNorm()
    plain.bn = nn.Identity()
    with pytest.raises(ValueError, match="The 'model' parameter of source_distance must have BatchNorm layers with "
                                         "running statistics"):
        similarity.source_distance(plain, pixels)
    with pytest.raises(TypeError, match="The 'dataset' parameter of source_distance must be a companion.data.ImageSet"):
        similarity.source_distance(OneBatchNorm(), pixels.images)
    with pytest.raises(ValueError, match="The 'batch_size' parameter of source_distance must be an int >= 1"):
        similarity.source_distance(OneBatchNorm(), pixels, batch_size=0)
    with pytest.raises(TypeError, match="The 'model' parameter of source_distance must be a pretrained backbone"):
        similarity.source_distance("model", pixels)


# --------------------------------------------------------------------------- source statistics put back
def test_with_source_statistics_copies_only_the_running_statistics(pixels):
    """Check that the copy holds the source's running statistics, keeps its own weights, and changes neither input."""
    source, tuned = with_stored_statistics(pixels, 1.0, 2.0), with_stored_statistics(pixels)
    with torch.no_grad():
        tuned.bn.weight.fill_(3.0)
    before = {name: tensor.clone() for name, tensor in tuned.state_dict().items()}
    restored = similarity.with_source_statistics(tuned, source)
    assert restored is not tuned
    assert torch.equal(restored.bn.running_mean, source.bn.running_mean)
    assert torch.equal(restored.bn.running_var, source.bn.running_var)
    assert torch.equal(restored.bn.weight, tuned.bn.weight)
    assert all(torch.equal(before[name], value) for name, value in tuned.state_dict().items())
    assert similarity.source_distance(restored, pixels, device="cpu").mean == pytest.approx(
        similarity.source_distance(source, pixels, device="cpu").mean)


def test_with_source_statistics_refuses_other_layers(pixels):
    """Check that models with different BatchNorm layers, or none, are refused with what was expected."""
    other = OneBatchNorm()
    other.bn = nn.BatchNorm2d(4)
    with pytest.raises(ValueError, match="must have the same BatchNorm layers as 'model' .names and sizes.. Got 1 "
                                         "layers against 1, with different names or sizes"):
        similarity.with_source_statistics(OneBatchNorm(), other)
    with pytest.raises(TypeError, match="The 'source' parameter of with_source_statistics must be a torch.nn.Module"):
        similarity.with_source_statistics(OneBatchNorm(), "resnet")

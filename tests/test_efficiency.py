"""Tests for companion.efficiency: the shared frozen prefix and reading sample-efficiency curves."""

import math

import numpy as np
import pytest
import torch

from companion import adapt, backbones, data, efficiency, features, strategies
from companion.data import ImageSet

CLASSES = ("red", "green", "blue")

pytestmark = pytest.mark.usefixtures("fresh_feature_cache")


def make_set(num_per_class: int, seed: int) -> ImageSet:
    """Dark 32-px noise images whose class is the one bright colour channel."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat(num_per_class)  # (N,)
    images = torch.randint(0, 60, (len(labels), 3, 32, 32), dtype=torch.uint8, generator=generator)
    images[torch.arange(len(labels)), labels] += 150  # (N, 3, H, W): class channel bright
    return ImageSet(images, labels, CLASSES)


@pytest.fixture(scope="module")
def model():
    return backbones.load_backbone(pretrained=False, seed=0)


@pytest.fixture(scope="module")
def pool():
    return make_set(6, seed=0)


def test_prefix_features_match_extract_features_for_any_subset(model, pool):
    """Check that pooled features from the cached prefix equal a fresh extraction, for a shuffled subset."""
    prefix = efficiency.frozen_prefix(model, pool, num_frozen=7, device="cpu")
    assert prefix.activations.shape[:2] == (len(pool), 192)
    subset = data.sample_per_class(pool, 2, seed=3)
    expected = features.extract_features(model, subset, cache=False, device="cpu")  # (6, 1280)
    np.testing.assert_allclose(prefix.features(subset), expected, atol=1e-5)
    reordered = subset.subset([5, 0, 3])
    np.testing.assert_allclose(prefix.features(reordered), expected[[5, 0, 3]], atol=1e-5)
    assert torch.equal(pool.images[prefix.rows(subset)], subset.images)


def test_prefix_rejects_images_outside_the_pool_and_bad_arguments(model, pool):
    """Check that an unknown image and bad num_frozen / model / prefix arguments raise clear errors."""
    prefix = efficiency.frozen_prefix(model, pool.subset(range(6)), num_frozen=8, device="cpu")
    with pytest.raises(ValueError, match="image 0 of the dataset is not in the pool"):
        prefix.rows(make_set(1, seed=9))
    with pytest.raises(ValueError, match=r"'num_frozen' parameter of frozen_prefix must be an int in \[1, 9\]"):
        efficiency.frozen_prefix(model, pool, num_frozen=0)
    with pytest.raises(TypeError, match="must be a timm EfficientNet-style model"):
        efficiency.frozen_prefix(torch.nn.Linear(2, 2), pool, num_frozen=3)
    with pytest.raises(TypeError, match="'prefix' parameter of run_partial_finetune must be a FrozenPrefix"):
        efficiency.run_partial_finetune(None, pool, pool, lr=1e-3, num_epochs=1)
    full = efficiency.frozen_prefix(model, pool.subset(range(6)), num_frozen=9, device="cpu")
    with pytest.raises(ValueError, match="num_frozen < 9"):
        efficiency.run_partial_finetune(full, pool.subset(range(6)), None, lr=1e-3, num_epochs=1)


def test_partial_finetune_on_the_prefix_trains_only_the_top_depths(model, pool):
    """Check that only the top depths and head train, the backbone below is untouched, and
    prefix_accuracy equals evaluate_strategy's full-network accuracy."""
    prefix = efficiency.frozen_prefix(model, pool, num_frozen=7, device="cpu")
    train_set, test_set = data.sample_per_class(pool, 3, seed=0), pool
    result = efficiency.run_partial_finetune(prefix, train_set, pool, lr=1e-2, num_epochs=2, seed=0, batch_size=4,
                                             device="cpu")
    reference = backbones.load_backbone(pretrained=False, seed=0, num_classes=3)
    adapt.freeze(reference, 7)
    assert result.trainable_parameters == adapt.count_parameters(reference)["trainable"]
    assert result.history.num_epochs == 2 and result.config["top_k_stages"] == 2
    for (_, trained), (_, original) in zip(backbones.stages(result.model)[:7], backbones.stages(model)[:7]):
        for a, b in zip(trained.state_dict().values(), original.state_dict().values()):
            assert torch.equal(a, b)
    accuracy = efficiency.prefix_accuracy(result, prefix, test_set)
    assert accuracy == pytest.approx(strategies.evaluate_strategy(result, test_set, device="cpu")["accuracy"])
    again = efficiency.run_partial_finetune(prefix, train_set, pool, lr=1e-2, num_epochs=2, seed=0, batch_size=4,
                                            device="cpu")
    assert efficiency.prefix_accuracy(again, prefix, test_set) == accuracy  # same seed, same result


def test_labels_to_reach_interpolates_on_a_log_scale():
    """Check the log-scale interpolation against a hand computation, and the two edge cases."""
    budgets = [5, 20, 100]
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.8) == pytest.approx(math.sqrt(20 * 100))
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.7) == pytest.approx(20)
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.3) == 5  # reached at the first budget
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.95) == math.inf
    seeds = np.array([[0.3, 0.6, 0.8], [0.5, 0.8, 1.0]])  # mean: 0.4, 0.7, 0.9
    assert efficiency.labels_to_reach(budgets, seeds, 0.8) == pytest.approx(math.sqrt(2000))
    assert efficiency.labels_to_reach(budgets, [0.4, 0.85, 0.8], 0.82) < 20  # the first time it is reached


def test_crossing_budget_finds_the_first_sign_change():
    """Check crossing_budget against a hand computation, and None when one curve stays above."""
    budgets = [5, 50, 500]
    # gap = a - b: 0.4, 0.1, -0.2 -> crossing one third of the way from 50 to 500 in log space
    crossing = efficiency.crossing_budget(budgets, [0.6, 0.7, 0.75], [0.2, 0.6, 0.95])
    assert crossing == pytest.approx(50 * 10 ** (1 / 3))
    assert efficiency.crossing_budget(budgets, [0.6, 0.7, 0.8], [0.2, 0.6, 0.7]) is None
    assert efficiency.crossing_budget(budgets, [0.6, 0.7, 0.8], [0.2, 0.7, 0.9]) == pytest.approx(50)


@pytest.mark.parametrize("call, error, match", [
    (lambda: efficiency.labels_to_reach([20, 5], [0.1, 0.2], 0.5), ValueError,
     "'budgets' parameter of labels_to_reach must be a sequence of at least 2 increasing numbers > 0"),
    (lambda: efficiency.labels_to_reach([5, 20], [0.1, 0.2, 0.3], 0.5), ValueError,
     r"'accuracy' parameter of labels_to_reach must be 2 finite accuracies, shape \(2,\)"),
    (lambda: efficiency.labels_to_reach([5, 20], [0.1, 0.2], "high"), ValueError,
     "'target' parameter of labels_to_reach must be a finite float"),
    (lambda: efficiency.crossing_budget([5, 20], [0.1, 0.2], [0.1, np.nan]), ValueError,
     "'accuracy_b' parameter of crossing_budget must be 2 finite accuracies"),
])
def test_curve_readers_reject_bad_inputs(call, error, match):
    """Check that the curve readers say which argument is wrong and what is allowed."""
    with pytest.raises(error, match=match):
        call()

"""Tests for companion.probes: linear probes on features, by depth, and copied into a model's head."""

import numpy as np
import pytest
import torch

from companion import backbones, probes
from companion.data import ImageSet
from companion.recipes import RECIPES


def blobs(num_per_class: int, seed: int, num_features: int = 8, num_classes: int = 3):
    """Gaussian blobs, well separated: a linearly separable oracle."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), num_per_class)
    centres = np.eye(num_classes, num_features) * 6.0
    return centres[y] + rng.normal(size=(len(y), num_features)), y


def test_fit_probe_picks_a_C_and_beats_chance():
    """Check that fit_probe chooses C from Cs on validation data and separates the blobs."""
    X_train, y_train = blobs(10, seed=0)
    X_val, y_val = blobs(5, seed=1)
    X_test, y_test = blobs(20, seed=2)
    result = probes.fit_probe(X_train, y_train, X_val, y_val, Cs=(0.01, 1.0), seed=0)
    assert result.C in (0.01, 1.0) and set(result.val_accuracies) == {0.01, 1.0}
    assert result.val_accuracy == max(result.val_accuracies.values())
    assert probes.probe_accuracy(result, X_test, y_test) > 0.9
    assert result.pipeline.named_steps["classifier"].n_features_in_ == 8


def test_fit_probe_breaks_ties_towards_the_smaller_C():
    """Check that when several C score the same on validation the strongest regularisation wins."""
    X, y = blobs(10, seed=0)
    result = probes.fit_probe(X, y, X, y, Cs=(10.0, 1.0, 0.1), seed=0)
    assert set(result.val_accuracies.values()) == {1.0} and result.C == 0.1
    assert list(result.val_accuracies) == [0.1, 1.0, 10.0]


def test_the_default_grid_is_CS_and_as_large_as_every_learning_rate_grid():
    """Check that the probe's search tries as many values as every other strategy's (a fair comparison)."""
    X, y = blobs(5, seed=0)
    assert set(probes.fit_probe(X, y, X, y).val_accuracies) == set(probes.CS)
    assert {len(recipe.grid) for recipe in RECIPES.values()} == {len(probes.CS)}


def test_fit_probe_refit_uses_train_and_val():
    """Check that the default keeps the train-only fit and refit=True refits on train + val."""
    X_train, y_train = blobs(5, seed=0)
    X_val, y_val = blobs(5, seed=1)
    refitted = probes.fit_probe(X_train, y_train, X_val, y_val, Cs=(1.0,), refit=True)
    kept = probes.fit_probe(X_train, y_train, X_val, y_val, Cs=1.0)
    assert refitted.refit and not kept.refit
    scaler_mean = refitted.pipeline.named_steps["scaler"].mean_
    np.testing.assert_allclose(scaler_mean, np.concatenate([X_train, X_val]).mean(axis=0))
    np.testing.assert_allclose(kept.pipeline.named_steps["scaler"].mean_, X_train.mean(axis=0))


def test_fit_probe_accepts_torch_tensors():
    """Check that features and labels may be torch tensors (e.g. ImageSet.labels)."""
    X_train, y_train = blobs(5, seed=0)
    result = probes.fit_probe(torch.from_numpy(X_train), torch.from_numpy(y_train), X_train, y_train, Cs=(1.0,))
    assert probes.probe_accuracy(result, torch.from_numpy(X_train), torch.from_numpy(y_train)) > 0.9


def test_fit_probe_rejects_bad_inputs():
    """Check the errors for mismatched lengths, NaN, one class, feature counts and Cs."""
    X, y = blobs(4, seed=0)
    with pytest.raises(ValueError, match="The 'y_train' parameter of fit_probe must be one label per row of X_train. "
                                         ".*It has 11 labels for 12 rows"):
        probes.fit_probe(X, y[:-1], X, y)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="The 'X_val' parameter of fit_probe must be finite features.*1 of 96 "
                                         "values are NaN or infinite"):
        probes.fit_probe(X, y, bad, y)
    with pytest.raises(ValueError, match="The 'y_train' parameter of fit_probe must be labels of at least 2 classes"):
        probes.fit_probe(X[y == 0], y[y == 0], X, y)
    with pytest.raises(ValueError, match=r"The 'X_val' parameter of fit_probe must be features of the same width as "
                                         r"X_train \(8\)"):
        probes.fit_probe(X, y, X[:, :4], y)
    with pytest.raises(ValueError, match="must be a non-empty 2-D numeric array"):
        probes.fit_probe(X[:, 0], y, X, y)
    with pytest.raises(ValueError, match="must be a 1-D integer array of class indices"):
        probes.fit_probe(X, y.astype(float), X, y)
    with pytest.raises(ValueError, match="The 'Cs' parameter of fit_probe must be a non-empty sequence of floats > 0"):
        probes.fit_probe(X, y, X, y, Cs=(1.0, -1.0))
    with pytest.raises(ValueError, match="The 'seed' parameter of fit_probe must be an int >= 0"):
        probes.fit_probe(X, y, X, y, seed=-1)
    with pytest.raises(ValueError, match="The 'max_iter' parameter of fit_probe must be an int >= 1"):
        probes.fit_probe(X, y, X, y, max_iter=0)


def test_probe_accuracy_rejects_bad_inputs():
    """Check that probe_accuracy rejects a non-ProbeResult and test features of the wrong width."""
    X, y = blobs(4, seed=0)
    result = probes.fit_probe(X, y, X, y, Cs=(1.0,))
    with pytest.raises(ValueError, match="The 'X_test' parameter of probe_accuracy must be 8 features"):
        probes.probe_accuracy(result, X[:, :3], y)
    with pytest.raises(TypeError, match="The 'result' parameter of probe_accuracy must be a ProbeResult"):
        probes.probe_accuracy(result.pipeline, X, y)


@pytest.mark.usefixtures("fresh_feature_cache")
def test_probe_by_depth_rows():
    """Check that probe_by_depth returns one row per depth with names, channels and accuracies."""
    model = backbones.load_backbone(pretrained=False, seed=0)
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(12) % 2
    images = torch.randint(0, 80, (12, 3, 32, 32), dtype=torch.uint8, generator=generator)
    images[labels == 1] += 150  # bright images are class 1: linearly separable at every depth
    split = ImageSet(images, labels, ("dark", "bright"))
    rows = probes.probe_by_depth(model, split, split, split, depths=[0, 8], seed=0, Cs=(1.0,))
    assert [row["depth"] for row in rows] == [0, 8] and [row["name"] for row in rows] == ["stem", "head"]
    assert [row["channels"] for row in rows] == [32, 1280]
    assert all(row["C"] == 1.0 and row["val_accuracy"] == row["test_accuracy"] == 1.0 for row in rows)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_copy_into_classifier_reproduces_the_probe(num_classes):
    """Check that the linear layer's logits are the probe's decision values and its softmax the probabilities."""
    X, y = blobs(10, seed=0, num_classes=num_classes)
    probe = probes.fit_probe(X, y, X, y, Cs=(0.5,))
    head = torch.nn.Linear(8, num_classes)
    probes.copy_into_classifier(probe, head)
    with torch.no_grad():
        logits = head(torch.as_tensor(X, dtype=torch.float32)).double()
    np.testing.assert_allclose(logits.softmax(dim=1).numpy(), probe.pipeline.predict_proba(X), atol=1e-4)
    assert np.array_equal(logits.argmax(dim=1).numpy(), probe.pipeline.predict(X))


def test_a_class_the_probe_never_saw_is_never_predicted():
    """Check that an absent class gets zero weights and a bias of ABSENT_CLASS_BIAS."""
    X, y = blobs(10, seed=0, num_classes=3)
    probe = probes.fit_probe(X, y, X, y, Cs=(1.0,))
    head = torch.nn.Linear(8, 5)
    probes.copy_into_classifier(probe, head)
    assert torch.equal(head.weight[3:], torch.zeros(2, 8))
    assert head.bias[3:].tolist() == [probes.ABSENT_CLASS_BIAS] * 2
    with torch.no_grad():
        assert head(torch.as_tensor(X, dtype=torch.float32)).argmax(dim=1).max() < 3


def test_copy_into_classifier_rejects_bad_arguments():
    """Check that copy_into_classifier wants a ProbeResult and a linear layer of the probe's width."""
    X, y = blobs(4, seed=0)
    probe = probes.fit_probe(X, y, X, y, Cs=(1.0,))
    with pytest.raises(ValueError, match="The 'classifier' parameter of copy_into_classifier must be a linear layer "
                                         "with 8 inputs"):
        probes.copy_into_classifier(probe, torch.nn.Linear(7, 3))
    with pytest.raises(TypeError, match="The 'classifier' parameter of copy_into_classifier must be a torch.nn.Linear"):
        probes.copy_into_classifier(probe, torch.nn.Conv2d(8, 3, 1))
    with pytest.raises(TypeError, match="The 'probe' parameter of copy_into_classifier must be a ProbeResult"):
        probes.copy_into_classifier(probe.pipeline, torch.nn.Linear(8, 3))

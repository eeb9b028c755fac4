"""Tests for companion.features: pooled feature extraction per depth, memoisation, linear probes."""

import numpy as np
import pytest
import torch

from companion import backbones, features, train
from companion.data import ImageSet


@pytest.fixture(scope="module")
def model():
    return backbones.load_backbone(pretrained=False, seed=0)


@pytest.fixture(scope="module")
def dataset():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(6) % 3, ("a", "b", "c"))


@pytest.fixture(autouse=True)
def empty_cache():
    features.clear_feature_cache()
    yield
    features.clear_feature_cache()


class CallCounter:
    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args):
        self.calls += 1


def test_final_features_are_pooled_forward_features(model, dataset):
    """Check that depth=None gives the pooled forward_features (1280-d for Lite0), as float32."""
    X = features.extract_features(model, dataset, batch_size=4, device="cpu")
    model.eval()
    with torch.no_grad():
        expected = model.forward_features(backbones.preprocess(dataset.images)).mean(dim=(2, 3))
    assert X.shape == (6, 1280) and X.dtype == np.float32
    np.testing.assert_allclose(X, expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depth", range(backbones.NUM_DEPTHS))
def test_depth_features_match_the_stage_outputs(model, dataset, depth):
    """Check that depth k has the channels of stage k and equals its pooled activation."""
    X = features.extract_features(model, dataset, depth=depth, device="cpu")
    model.eval()
    with torch.no_grad():
        activation = backbones.forward_to_depth(model, backbones.preprocess(dataset.images), depth)
    assert X.shape == (6, activation.shape[1])
    assert X.shape[1] == backbones.get_spec().feature_info[depth]["channels"]
    np.testing.assert_allclose(X, activation.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)


def test_extraction_stops_at_the_requested_depth(model, dataset):
    """Check that depth k never runs stage k + 1 nor the head."""
    model_stages = backbones.stages(model)
    later, head = CallCounter(model_stages[4][1]), CallCounter(model.conv_head)
    features.extract_features(model, dataset, depth=3, device="cpu")
    later.handle.remove()
    head.handle.remove()
    assert later.calls == 0 and head.calls == 0


def test_features_are_memoised_until_weights_or_images_change(model, dataset):
    """Check that a repeated call reuses the cache and a weight or image change recomputes."""
    counter = CallCounter(model.conv_stem)
    first = features.extract_features(model, dataset, depth=2, device="cpu")
    first[:] = 0.0  # the caller's copy; the cache must stay intact
    second = features.extract_features(model, dataset, depth=2, device="cpu")
    assert counter.calls == 1 and np.abs(second).sum() > 0
    features.extract_features(model, dataset, depth=2, device="cpu", cache=False)
    assert counter.calls == 2
    changed_images = ImageSet(dataset.images.flip(-1), dataset.labels, dataset.classes)
    features.extract_features(model, changed_images, depth=2, device="cpu")
    assert counter.calls == 3
    key = features.feature_cache_key(model, dataset, 2)
    with torch.no_grad():
        model.conv_stem.weight[0, 0, 0, 0] += 1.0
    assert features.feature_cache_key(model, dataset, 2) != key
    features.extract_features(model, dataset, depth=2, device="cpu")
    assert counter.calls == 4
    with torch.no_grad():
        model.conv_stem.weight[0, 0, 0, 0] -= 1.0
    counter.handle.remove()


def test_extraction_restores_train_mode(dataset):
    """Check that extract_features runs in eval mode and leaves a training model training."""
    scratch = train.make_scratch_cnn(3, width=4, seed=0).train()
    X = features.extract_features(scratch, dataset, device="cpu")
    assert X.shape == (6, 16) and scratch.training


def test_extract_features_rejects_bad_arguments(model, dataset):
    """Check the errors for a bad depth, dataset, batch size and a model without forward_features."""
    with pytest.raises(ValueError, match=r"The 'depth' parameter of extract_features must be None or an int in \[0, 8\]. Got 9"):
        features.extract_features(model, dataset, depth=9)
    with pytest.raises(TypeError, match="The 'dataset' parameter of extract_features must be a companion.data.ImageSet"):
        features.extract_features(model, dataset.images)
    with pytest.raises(ValueError, match="The 'dataset' parameter of extract_features must not be empty"):
        features.extract_features(model, dataset.subset(torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="The 'batch_size' parameter of extract_features must be an int >= 1"):
        features.extract_features(model, dataset, batch_size=0)
    with pytest.raises(TypeError, match="needs a model with a forward_features method"):
        features.extract_features(torch.nn.Conv2d(3, 4, 3), dataset)


def blobs(num_per_class: int, seed: int, num_features: int = 8):
    """Three Gaussian blobs, well separated: a linearly separable oracle."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), num_per_class)
    centres = np.eye(3, num_features) * 6.0
    return centres[y] + rng.normal(size=(len(y), num_features)), y


def test_fit_probe_picks_a_C_and_beats_chance():
    """Check that fit_probe chooses C from Cs on validation data and separates the blobs."""
    X_train, y_train = blobs(10, seed=0)
    X_val, y_val = blobs(5, seed=1)
    X_test, y_test = blobs(20, seed=2)
    result = features.fit_probe(X_train, y_train, X_val, y_val, Cs=(0.01, 1.0), seed=0)
    assert result.C in (0.01, 1.0) and set(result.val_accuracies) == {0.01, 1.0}
    assert result.val_accuracy == max(result.val_accuracies.values())
    assert features.probe_accuracy(result, X_test, y_test) > 0.9
    assert result.pipeline.named_steps["classifier"].n_features_in_ == 8


def test_fit_probe_refit_uses_train_and_val():
    """Check that refit=True refits on train + val and refit=False keeps the train-only fit."""
    X_train, y_train = blobs(5, seed=0)
    X_val, y_val = blobs(5, seed=1)
    refitted = features.fit_probe(X_train, y_train, X_val, y_val, Cs=(1.0,))
    kept = features.fit_probe(X_train, y_train, X_val, y_val, Cs=(1.0,), refit=False)
    scaler_mean = refitted.pipeline.named_steps["scaler"].mean_
    np.testing.assert_allclose(scaler_mean, np.concatenate([X_train, X_val]).mean(axis=0))
    np.testing.assert_allclose(kept.pipeline.named_steps["scaler"].mean_, X_train.mean(axis=0))


def test_fit_probe_accepts_torch_tensors():
    """Check that features and labels may be torch tensors (e.g. ImageSet.labels)."""
    X_train, y_train = blobs(5, seed=0)
    result = features.fit_probe(torch.from_numpy(X_train), torch.from_numpy(y_train),
                                X_train, y_train, Cs=(1.0,))
    assert features.probe_accuracy(result, torch.from_numpy(X_train), torch.from_numpy(y_train)) > 0.9


def test_fit_probe_rejects_bad_inputs():
    """Check the errors for mismatched lengths, NaN, one class, feature counts and Cs."""
    X, y = blobs(4, seed=0)
    with pytest.raises(ValueError, match="must have one label per row of X_train. Got 11 labels for 12 rows"):
        features.fit_probe(X, y[:-1], X, y)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="The 'X_val' parameter of fit_probe contains NaN or infinite values"):
        features.fit_probe(X, y, bad, y)
    with pytest.raises(ValueError, match=r"must contain at least 2 classes. Got only class \[0\]"):
        features.fit_probe(X[y == 0], y[y == 0], X, y)
    with pytest.raises(ValueError, match="must have the same number of features. Got 8 and 4"):
        features.fit_probe(X, y, X[:, :4], y)
    with pytest.raises(ValueError, match="must be a non-empty 2-D numeric array"):
        features.fit_probe(X[:, 0], y, X, y)
    with pytest.raises(ValueError, match="must be a 1-D integer array of class indices"):
        features.fit_probe(X, y.astype(float), X, y)
    with pytest.raises(ValueError, match="The 'Cs' parameter of fit_probe must be a non-empty sequence of floats > 0"):
        features.fit_probe(X, y, X, y, Cs=(1.0, -1.0))
    with pytest.raises(ValueError, match="The 'seed' parameter of fit_probe must be an int >= 0"):
        features.fit_probe(X, y, X, y, seed=-1)


def test_probe_accuracy_rejects_bad_inputs():
    """Check that probe_accuracy rejects a non-ProbeResult and test features of the wrong width."""
    X, y = blobs(4, seed=0)
    result = features.fit_probe(X, y, X, y, Cs=(1.0,))
    with pytest.raises(ValueError, match="The 'X_test' parameter of probe_accuracy must have 8 features"):
        features.probe_accuracy(result, X[:, :3], y)
    with pytest.raises(TypeError, match="The 'result' parameter of probe_accuracy must be a ProbeResult"):
        features.probe_accuracy(result.pipeline, X, y)

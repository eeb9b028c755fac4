"""Tests for companion.features: pooled features per depth, and their memory and disk caches."""

import copy

import numpy as np
import pytest
import torch

from companion import backbones, cache, features, scratch
from companion.backbones import BackboneSpec
from companion.cache import CacheWarning
from companion.data import ImageSet

NUM_DEPTHS = backbones.get_spec().num_depths


def plain_spec(name: str) -> BackboneSpec:
    """The spec a hand-made model carries: one depth, the 0.5 / 0.5 normalisation."""
    return BackboneSpec(name=name, timm_name=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=32,
                        stage_layout=(("all", ("proj",)),), channels=(5,), strides=(8,), classifier="proj",
                        first_conv="proj")


@pytest.fixture(scope="module")
def model():
    return backbones.load_backbone(pretrained=False, seed=0)


@pytest.fixture(scope="module")
def dataset():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.arange(6) % 3, ("a", "b", "c"))


pytestmark = pytest.mark.usefixtures("fresh_feature_cache")


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
        expected = model.forward_features(backbones.preprocess(dataset.images, model)).mean(dim=(2, 3))
    assert X.shape == (6, backbones.spec_of(model).num_features) and X.dtype == np.float32
    np.testing.assert_allclose(X, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_features_are_normalised_with_the_model_spec(dataset):
    """Check that the images are normalised with the model's own mean and std (ImageNet's for efficientnet_b0)."""
    b0 = backbones.load_backbone("efficientnet_b0", pretrained=False, seed=0)
    X = features.extract_features(b0, dataset, depth=0, device="cpu", cache=False)
    b0.eval()
    with torch.no_grad():
        right = backbones.forward_to_depth(b0, backbones.preprocess(dataset.images, "efficientnet_b0"), 0)
        wrong = backbones.forward_to_depth(b0, backbones.preprocess(dataset.images, "efficientnet_lite0"), 0)
    np.testing.assert_allclose(X, right.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(X, wrong.mean(dim=(2, 3)).numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("depth", range(NUM_DEPTHS))
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
    network = scratch.make_scratch_cnn(3, width=4, seed=0).train()
    X = features.extract_features(network, dataset, device="cpu")
    assert X.shape == (6, 16) and network.training


def test_extraction_leaves_the_model_layout_as_it_was(model, dataset):
    """A cache miss and a cache hit leave the caller's model in the same state (the lab-5 bug).

    extract_features runs in channels_last; it once left the model converted on a miss only,
    so a later train-mode pass gave other floats (0.379 vs 0.375) on a cold cache than a warm one.
    """
    features.clear_feature_cache()
    before = {name: (p.device, p.stride()) for name, p in model.named_parameters()}
    for _ in range(2):  # a miss, then a hit from memory
        features.extract_features(model, dataset, depth=1, device="cpu")
        after = {name: (p.device, p.stride()) for name, p in model.named_parameters()}
        assert after == before
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    strides = {name: p.stride() for name, p in channels_last.named_parameters()}
    features.extract_features(channels_last, dataset, depth=1, device="cpu", cache=False)
    assert {name: p.stride() for name, p in channels_last.named_parameters()} == strides


def test_extract_features_rejects_bad_arguments(model, dataset):
    """Check the errors for a bad depth, dataset, batch size and a model without forward_features."""
    with pytest.raises(ValueError, match=r"The 'depth' parameter of extract_features must be None or an int in "
                                         r"\[0, 8\]. Got 9"):
        features.extract_features(model, dataset, depth=9)
    with pytest.raises(TypeError, match="The 'dataset' parameter of extract_features must be a "
                                        "companion.data.ImageSet"):
        features.extract_features(model, dataset.images)
    with pytest.raises(ValueError, match="The 'dataset' parameter of extract_features must be a non-empty ImageSet"):
        features.extract_features(model, dataset.subset(torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="The 'batch_size' parameter of extract_features must be an int >= 1"):
        features.extract_features(model, dataset, batch_size=0)
    with pytest.raises(TypeError, match="The 'model' parameter of extract_features must be a model with a "
                                        "forward_features method"):
        features.extract_features(torch.nn.Conv2d(3, 4, 3), dataset)
    with pytest.raises(TypeError, match="The 'model' parameter of extract_features must be a torch.nn.Module"):
        features.extract_features("model", None)


class TokenModel(torch.nn.Module):
    """A transformer-like model whose forward_features returns (B, tokens, C)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 5, kernel_size=8, stride=8)
        self.backbone_spec = plain_spec("token_model")

    def forward_features(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, T, 5)


def test_token_features_are_averaged_over_tokens(dataset):
    """Check that (B, T, C) forward_features are pooled over tokens, and numpy ints are accepted."""
    model = TokenModel()
    X = features.extract_features(model, dataset, batch_size=np.int64(4), device="cpu")
    with torch.no_grad():
        expected = model.forward_features(backbones.preprocess(dataset.images)).mean(dim=1)
    np.testing.assert_allclose(X, expected.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- disk cache


def test_disk_cache_is_reused_after_the_memory_cache_is_cleared(model, dataset, tmp_path):
    """Check that features land in one .npz under cache_dir and a later call reads it, not the model."""
    first = features.extract_features(model, dataset, depth=1, device="cpu", cache_dir=tmp_path)
    key = features.feature_cache_key(model, dataset, 1)
    assert [path.name for path in tmp_path.iterdir()] == [f"{key}.npz"]
    assert key.startswith(f"v{features.FEATURES_VERSION}-") and features.FEATURES_VERSION == 2
    features.clear_feature_cache()
    counter = CallCounter(model.conv_stem)
    second = features.extract_features(model, dataset, depth=1, device="cpu", cache_dir=tmp_path)
    counter.handle.remove()
    assert counter.calls == 0
    np.testing.assert_array_equal(first, second)


def test_default_disk_cache_folder(model, dataset):
    """Check that without cache_dir the files go to cache.cache_dir() / "features"."""
    features.extract_features(model, dataset, depth=0, device="cpu")
    assert len(list((cache.cache_dir() / "features").glob("*.npz"))) == 1


def test_a_new_features_version_or_head_changes_the_key(model, dataset, monkeypatch):
    """Check that the key changes with FEATURES_VERSION but not with the classifier's weights."""
    key = features.feature_cache_key(model, dataset, None)
    head = backbones.load_backbone(pretrained=False, seed=0, num_classes=3)
    head.load_state_dict({k: v for k, v in model.state_dict().items() if "classifier" not in k}, strict=False)
    assert features.feature_cache_key(head, dataset, None) == key
    monkeypatch.setattr(features, "FEATURES_VERSION", features.FEATURES_VERSION + 1)
    assert features.feature_cache_key(model, dataset, None) != key


def _foreign(path, key):
    np.savez(path, features=np.zeros((6, 16), np.float32), key=np.array("another key"))


def _wrong_rows(path, key):
    np.savez(path, features=np.zeros((5, 16), np.float32), key=np.array(key))


def _a_folder(path, key):
    (path / "inside").mkdir(parents=True)


DAMAGE = {"garbage": lambda path, key: path.write_bytes(b"not a zip file"),
          "truncated zip": lambda path, key: path.write_bytes(b"PK\x03\x04truncated"),
          "another key": _foreign, "a folder": _a_folder}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_corrupt_or_foreign_cache_files_are_recomputed_and_replaced(model, dataset, tmp_path, damage):
    """Check that garbage, a truncated zip, another key's file or a folder is recomputed, warned about and replaced."""
    expected = features.extract_features(model, dataset, depth=1, device="cpu", cache=False)
    key = features.feature_cache_key(model, dataset, 1)
    path = tmp_path / f"{key}.npz"
    DAMAGE[damage](path, key)
    with pytest.warns(CacheWarning, match=key):
        X = features.extract_features(model, dataset, depth=1, device="cpu", cache_dir=tmp_path)
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    with np.load(path) as stored:
        assert str(stored["key"]) == key
        np.testing.assert_array_equal(stored["features"], X)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_file_with_the_wrong_number_of_rows_is_recomputed(model, dataset, tmp_path):
    """Check that stored features of another length are not returned."""
    expected = features.extract_features(model, dataset, depth=1, device="cpu", cache=False)
    key = features.feature_cache_key(model, dataset, 1)
    _wrong_rows(tmp_path / f"{key}.npz", key)
    X = features.extract_features(model, dataset, depth=1, device="cpu", cache_dir=tmp_path)
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)


def test_an_unwritable_cache_dir_raises_a_clear_oserror(model, dataset, tmp_path):
    """Check that a cache folder that cannot be created names the fixes (env, cache=False)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="Could not write the cache file .*a_file.*COMPANION_CACHE_DIR.*cache=False"):
        features.extract_features(model, dataset, depth=0, device="cpu", cache_dir=blocker / "features")
    with pytest.raises(TypeError, match="The 'cache_dir' parameter of extract_features must be None, a str or a "
                                        "pathlib.Path"):
        features.extract_features(model, dataset, cache_dir=3)


# ----------------------------------------------------------------------------- all depths


def test_by_depth_matches_single_depths_in_one_pass(model, dataset):
    """Check that extract_features_by_depth runs the stem once per batch and equals each depth's features."""
    counter = CallCounter(model.conv_stem)
    by_depth = features.extract_features_by_depth(model, dataset, batch_size=4, device="cpu", cache=False)
    counter.handle.remove()
    assert counter.calls == 2 and list(by_depth) == list(range(NUM_DEPTHS))
    for depth in (0, 4, 8):
        single = features.extract_features(model, dataset, depth=depth, device="cpu", cache=False)
        np.testing.assert_allclose(by_depth[depth], single, rtol=1e-4, atol=1e-5)


def test_by_depth_caches_each_depth_and_computes_only_the_missing(model, dataset):
    """Check that cached depths are reused, only missing ones run, and the keys match extract_features."""
    features.extract_features(model, dataset, depth=5, device="cpu")
    later = CallCounter(backbones.stages(model)[5][1])
    by_depth = features.extract_features_by_depth(model, dataset, [np.int64(2), 5, 2], device="cpu")
    assert list(by_depth) == [2, 5] and later.calls == 0  # depth 5 came from the cache
    counter = CallCounter(model.conv_stem)
    again = features.extract_features(model, dataset, depth=2, device="cpu")
    counter.handle.remove()
    later.handle.remove()
    assert counter.calls == 0
    np.testing.assert_array_equal(again, by_depth[2])


@pytest.mark.parametrize("depths", [[], [9], [True], "3"])
def test_by_depth_rejects_bad_depths(model, dataset, depths):
    """Check that an empty, out-of-range or non-int depths argument is refused with the allowed range."""
    with pytest.raises(ValueError, match=r"The 'depths' parameter of extract_features_by_depth must be None "
                                         r"or a non-empty sequence of ints in \[0, 8\]"):
        features.extract_features_by_depth(model, dataset, depths)


class FlatModel(torch.nn.Module):
    """A model whose forward_features already returns pooled (B, C) vectors."""

    backbone_spec = plain_spec("flat_model")

    def forward_features(self, x):
        return x.mean(dim=(2, 3))  # (B, 3)


def test_memory_cache_evicts_the_oldest_entry_and_flat_features_pass_through(dataset, monkeypatch):
    """Check the LRU bound of the memory cache and that (B, C) features are returned as they are."""
    monkeypatch.setattr(features, "MAX_CACHE_ENTRIES", 1)
    X = features.extract_features(FlatModel(), dataset, device="cpu")
    np.testing.assert_allclose(X, backbones.preprocess(dataset.images).mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    flipped = ImageSet(dataset.images.flip(-1), dataset.labels, dataset.classes)
    features.extract_features(FlatModel(), flipped, device="cpu")
    assert list(features._FEATURE_CACHE) == [features.feature_cache_key(FlatModel(), flipped, None)]

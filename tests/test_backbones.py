"""Tests for companion.backbones: real ImageNet weights offline, stages, preprocessing."""

import time
from collections import OrderedDict

import numpy as np
import pytest
import skimage.data
import torch

from companion import backbones
from companion.backbones import (BACKBONES, LITE0_SHA256, NUM_DEPTHS, forward_depths, forward_to_depth,
                                 get_spec, load_backbone, permute_weights, preprocess, stages)

CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}
COFFEE_CLASSES = {"espresso", "cup", "coffee mug"}


@pytest.fixture(scope="module")
def pretrained():
    return load_backbone("efficientnet_lite0", pretrained=True).eval()


@pytest.fixture(scope="module")
def random_init():
    return load_backbone("efficientnet_lite0", pretrained=False, seed=0).eval()


@pytest.fixture(scope="module")
def photos():
    return torch.stack([backbones.load_image(skimage.data.chelsea()),
                        backbones.load_image(skimage.data.coffee())])  # (2, 3, 224, 224)


# ----------------------------------------------------------------------------- weights
def test_pretrained_recognises_cat_and_espresso(pretrained, photos):
    """Check that the loaded weights are ImageNet-trained: chelsea is a cat, coffee an espresso."""
    cat, coffee = backbones.predict_imagenet(pretrained, photos, top_k=5)
    assert cat[0][0] in CAT_CLASSES
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5
    assert {"Egyptian cat", "tiger cat"} <= {label for label, _ in cat}


def test_random_init_does_not_recognise_photos(random_init, photos):
    """Check that the random-init control predicts neither a cat nor an espresso."""
    cat, coffee = backbones.predict_imagenet(random_init, photos, top_k=1)
    assert cat[0][0] not in CAT_CLASSES
    assert coffee[0][0] not in COFFEE_CLASSES


def test_state_dict_matches_package_file_positionally(pretrained):
    """Check that every model tensor equals the package file's tensor at the same position."""
    path = backbones._package_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = pretrained.state_dict()
    assert len(source) == len(target) == 296
    for (source_key, expected), (target_key, actual) in zip(source.items(), target.items()):
        assert torch.equal(expected, actual), (source_key, target_key)


def test_repeated_loads_use_the_cache(pretrained):
    """Check that a second load reads the state dict from the in-memory cache."""
    hits = backbones._read_checked_state_dict.cache_info().hits
    load_backbone()
    assert backbones._read_checked_state_dict.cache_info().hits == hits + 1


def test_corrupted_weight_file_raises_hash_error(tmp_path):
    """Check that a file with the wrong sha256 is refused before unpickling, naming the fix."""
    path = tmp_path / "efficientnet-lite0.pth"
    path.write_bytes(b"not really weights")
    with pytest.raises(ValueError, match=rf"{path.name}.*expected {LITE0_SHA256}, got [0-9a-f]{{64}}.*reinstall"):
        load_backbone(weights_path=path)
    with pytest.raises(ValueError, match="does not exist"):
        load_backbone(weights_path=tmp_path / "missing.pth")


def test_positional_mapping_checks_shapes(tmp_path):
    """Check that the positional key mapping refuses tensors of the wrong count or shape."""
    target = OrderedDict(a=torch.zeros(2, 3), b=torch.zeros(4))
    with pytest.raises(ValueError, match=r"'y' has shape \(5,\) but 'b' expects \(4,\)"):
        backbones._map_positionally(OrderedDict(x=torch.ones(2, 3), y=torch.ones(5)), target, tmp_path)
    with pytest.raises(ValueError, match="holds 1 tensors but the timm model expects 2"):
        backbones._map_positionally(OrderedDict(x=torch.ones(2, 3)), target, tmp_path)


def test_unknown_backbone_names_offline_default():
    """Check that an unknown name raises an error naming the registry and the offline default."""
    with pytest.raises(ValueError, match="Unknown backbone 'no_such_net'.*offline default is 'efficientnet_lite0'"):
        load_backbone("no_such_net")
    with pytest.raises(ValueError, match="must be one of"):
        get_spec("no_such_net")


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_hub_backbone_fails_fast_offline(socket_disabled):
    """Check that a hub-only backbone fails within 5 s with a clear message when offline."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match="needs weights from the Hugging Face hub.*offline default"):
        load_backbone("resnet18", pretrained=True)
    assert time.perf_counter() - start < 5.0


def test_hub_backbone_respects_hf_hub_offline(monkeypatch):
    """Check that HF_HUB_OFFLINE=1 counts as offline without any connection attempt."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert backbones._hub_reachable() is False


def test_random_init_is_seeded_without_touching_global_rng():
    """Check that the same seed gives the same weights and the global RNG is left alone."""
    state = torch.random.get_rng_state()
    first = load_backbone(pretrained=False, seed=3).conv_stem.weight
    second = load_backbone(pretrained=False, seed=3).conv_stem.weight
    other = load_backbone(pretrained=False, seed=4).conv_stem.weight
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert torch.equal(state, torch.random.get_rng_state())


def test_num_classes_replaces_head_after_loading(pretrained):
    """Check that num_classes=6 keeps the ImageNet body and gives a 6-way head."""
    model = load_backbone(num_classes=6, seed=0)
    assert model.get_classifier().out_features == 6
    assert torch.equal(model.conv_head.weight, pretrained.conv_head.weight)
    assert load_backbone(num_classes=0).get_classifier().__class__.__name__ == "Identity"


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": -1}, "'num_classes' parameter of load_backbone must be an int >= 0. Got -1"),
    ({"pretrained": "yes"}, "'pretrained' parameter of load_backbone must be a bool"),
    ({"seed": 1.5}, "'seed' parameter of load_backbone must be an int or None"),
])
def test_load_backbone_validates_arguments(kwargs, match):
    """Check that bad arguments to load_backbone raise messages naming the parameter."""
    with pytest.raises((ValueError, TypeError), match=match):
        load_backbone(**kwargs)


# ----------------------------------------------------------------------------- depths
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_feature_info_matches_stage_outputs(name):
    """Check that each registry entry's channels and strides match the real stage outputs."""
    spec = get_spec(name)
    model = load_backbone(name, pretrained=False, seed=0).eval()
    x = torch.zeros(1, 3, 64, 64)  # (B, C, H, W)
    with torch.inference_mode():
        activations = forward_depths(model, x, range(NUM_DEPTHS))
    assert [info["name"] for info in spec.feature_info] == list(spec.depth_names)
    for depth, info in enumerate(spec.feature_info):
        size = 64 // info["stride"]
        assert activations[depth].shape == (1, info["channels"], size, size), spec.depth_names[depth]
    assert spec.feature_info[-1]["channels"] == spec.num_features
    assert backbones.describe_features(model) == spec.feature_info


def test_stages_share_parameters_with_model(pretrained):
    """Check that stages() gives 9 named depths made of the model's own modules."""
    result = stages(pretrained)
    assert [name for name, _ in result] == list(get_spec().depth_names) and len(result) == 9
    assert result[0][1][0] is pretrained.conv_stem and result[8][1][1] is pretrained.bn2
    stage_parameters = {id(p) for _, module in result for p in module.parameters()}
    head_parameters = {id(p) for p in pretrained.get_classifier().parameters()}
    assert stage_parameters | head_parameters == {id(p) for p in pretrained.parameters()}


def test_stages_rejects_other_models():
    """Check that a model without EfficientNet stages raises a TypeError naming what is needed."""
    with pytest.raises(TypeError, match="must be a timm EfficientNet-style model.*Got Linear"):
        stages(torch.nn.Linear(2, 2))


def test_forward_to_depth_head_equals_forward_features(pretrained):
    """Check that depth 8 reproduces timm's forward_features exactly."""
    x = preprocess(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    with torch.inference_mode():
        assert torch.equal(forward_to_depth(pretrained, x, 8), pretrained.forward_features(x))
    with pytest.raises(ValueError, match=r"'depth' parameter of forward_to_depth must be an int in \[0, 8\]. Got 9"):
        forward_to_depth(pretrained, x, 9)


def test_forward_depths_returns_the_requested_depths(pretrained):
    """Check that forward_depths returns exactly the requested depths, matching forward_to_depth."""
    x = preprocess(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8))
    with torch.inference_mode():
        activations = forward_depths(pretrained, x, [5, 2])
        assert sorted(activations) == [2, 5]
        assert torch.equal(activations[2], forward_to_depth(pretrained, x, 2))
    with pytest.raises(ValueError, match="must hold at least one depth"):
        forward_depths(pretrained, x, [])


def test_channels_last_gives_same_features(pretrained):
    """Check that the channels_last model computes the same features."""
    import copy
    x = preprocess(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    model = backbones.to_channels_last(copy.deepcopy(pretrained))
    with torch.inference_mode():
        fast = model.forward_features(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(fast, pretrained.forward_features(x), atol=1e-4, rtol=1e-4)


def test_permute_weights_keeps_histogram_and_changes_outputs(pretrained):
    """Check that permuted weights keep their values but not their arrangement or outputs."""
    control = permute_weights(pretrained, depths=[0, 3], seed=0)
    original, permuted = pretrained.conv_stem.weight, control.conv_stem.weight
    assert torch.equal(original.flatten().sort().values, permuted.flatten().sort().values)
    assert not torch.equal(original, permuted)
    assert torch.equal(control.blocks[0][0].conv_dw.weight, pretrained.blocks[0][0].conv_dw.weight)
    assert torch.equal(permute_weights(pretrained, [0], seed=0).conv_stem.weight, permuted)
    x = preprocess(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    with torch.inference_mode():
        assert not torch.allclose(control(x), pretrained(x))
    with pytest.raises(ValueError, match="'depths' parameter of permute_weights"):
        permute_weights(pretrained, [10], seed=0)


# ----------------------------------------------------------------------------- images
def test_preprocess_normalises_uint8_and_float():
    """Check that uint8 and [0, 1] floats map to the same values with mean and std 0.5."""
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).repeat(2, 1, 4, 4)
    x = preprocess(images)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 4, 4)
    assert x[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0, -0.6])
    torch.testing.assert_close(preprocess(images.double() / 255), x)
    torch.testing.assert_close(preprocess(images.numpy()), x)


@pytest.mark.parametrize("images, error, match", [
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ValueError, r"3 RGB channels.*repeat\(1, 3, 1, 1\)"),
    (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), ValueError, r"3 RGB channels.*images\[:, :3\]"),
    (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), ValueError, r"channels-last.*permute\(0, 3, 1, 2\)"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), ValueError, r"shape \(N, 3, H, W\).*unsqueeze\(0\)"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int64), TypeError, "must be uint8 or floating point. Got torch.int64"),
    (torch.full((2, 3, 8, 8), 255.0), ValueError, r"must be in \[0, 1\]. Got values in \[255, 255\]"),
    ([[1, 2, 3]], TypeError, "must be a torch.Tensor or numpy array. Got list"),
])
def test_preprocess_rejects_bad_images(images, error, match):
    """Check that bad shapes, channel counts, dtypes and ranges raise clear errors."""
    with pytest.raises(error, match=match):
        preprocess(images)


def test_preprocess_uses_the_backbone_statistics():
    """Check that efficientnet_b0 uses ImageNet mean/std, not 0.5."""
    x = preprocess(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), "efficientnet_b0")
    assert x[0, 0, 0, 0].item() == pytest.approx(-0.485 / 0.229)


def test_load_image_resizes_and_converts():
    """Check that load_image gives (3, size, size) uint8 from color, grayscale and path input."""
    assert backbones.load_image(skimage.data.chelsea(), size=64).shape == (3, 64, 64)
    gray = backbones.load_image(skimage.data.camera(), size=32)
    assert gray.dtype == torch.uint8 and gray.shape == (3, 32, 32)
    with pytest.raises(TypeError, match="must be a path, PIL image or numpy array. Got int"):
        backbones.load_image(3)
    with pytest.raises(ValueError, match="must be uint8"):
        backbones.load_image(np.zeros((4, 4), dtype=np.float64))


def test_imagenet_class_names_offline():
    """Check that the 1000 ImageNet names come from timm, in index order."""
    names = backbones.imagenet_class_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"

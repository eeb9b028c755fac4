"""Tests for companion.backbones: the registry, real ImageNet weights offline, depths, preprocessing."""

import copy
import dataclasses
import time
from collections import OrderedDict

import numpy as np
import pytest
import timm
import torch

from companion import backbones, checkpoints, data, features, strategies
from companion.backbones import (BACKBONES, LITE0_SHA256, BackboneSpec, describe_features, forward_depths,
                                 forward_to_depth, get_spec, load_backbone, permute_weights, preprocess, spec_of,
                                 stages)
from companion.recipes import RECIPES


@pytest.fixture(scope="module")
def pretrained():
    return load_backbone("efficientnet_lite0", pretrained=True).eval()


# ----------------------------------------------------------------------------- the registry
def test_the_default_entry_describes_efficientnet_lite0():
    """Check the default spec's facts: 0.5/0.5 normalisation, 9 named depths, 1280 features, offline weights."""
    spec = get_spec()
    assert spec.name == backbones.DEFAULT == "efficientnet_lite0" and spec.timm_name == "tf_efficientnet_lite0"
    assert spec.mean == spec.std == (0.5, 0.5, 0.5) and spec.weights.startswith("package:")
    assert spec.num_depths == 9 and spec.depth_names[0] == "stem" and spec.depth_names[-1] == "head"
    assert spec.num_features == 1280 and spec.image_size == 64
    assert [info["depth"] for info in spec.feature_info] == list(range(9))
    assert spec.feature_info[3] == {"depth": 3, "name": "blocks.2", "modules": ("blocks.2",), "channels": 40,
                                    "stride": 8}


def test_get_spec_takes_the_registry_or_the_timm_name():
    """Check that a spec is found by its registry name or its timm name, and unknown names list the registry."""
    assert get_spec("tf_efficientnet_lite0") is get_spec("efficientnet_lite0")
    with pytest.raises(ValueError, match=r"The 'name' parameter of get_spec must be one of "
                                         r"\['efficientnet_b0', 'efficientnet_lite0'.*backbones.register"):
        get_spec("no_such_net")
    with pytest.raises(TypeError, match=r"The 'name' parameter of get_spec must be a backbone name \(str\)"):
        get_spec(3)


def test_register_checks_that_every_depth_has_channels_and_a_stride():
    """Check that register refuses a spec whose channels or strides do not match its stage layout."""
    bad = dataclasses.replace(get_spec(), name="broken", channels=(32, 16))
    with pytest.raises(ValueError, match="The 'spec' parameter of register must be a BackboneSpec with one channel"):
        backbones.register(bad)
    with pytest.raises(TypeError, match="The 'spec' parameter of register must be a BackboneSpec"):
        backbones.register({"name": "dict"})
    assert "broken" not in BACKBONES


def test_spec_of_reads_the_attached_spec_or_the_timm_architecture():
    """Check that spec_of finds the spec of a loaded model and of a timm model built elsewhere, else says how."""
    assert spec_of(load_backbone(pretrained=False)) is get_spec()
    assert spec_of(timm.create_model("tf_efficientnet_lite0")) is get_spec()
    with pytest.raises(ValueError, match="The 'model' parameter of spec_of must be a backbone that carries its "
                                         "BackboneSpec. Got a Linear instead.*model.backbone_spec"):
        spec_of(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_feature_info_matches_stage_outputs(name):
    """Check that each registry entry's channels and strides match the real stage outputs."""
    spec = get_spec(name)
    model = load_backbone(name, pretrained=False, seed=0).eval()
    x = torch.zeros(1, 3, 64, 64)  # (B, C, H, W)
    with torch.inference_mode():
        activations = forward_depths(model, x, range(spec.num_depths))
    assert [info["name"] for info in spec.feature_info] == list(spec.depth_names)
    for depth, info in enumerate(spec.feature_info):
        size = 64 // info["stride"]
        assert activations[depth].shape == (1, info["channels"], size, size), spec.depth_names[depth]
    assert spec.feature_info[-1]["channels"] == spec.num_features
    assert describe_features(model) == (spec.channels, spec.strides)


# ----------------------------------------------------------------------------- weights
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
    with pytest.raises(ValueError, match=rf"{path.name}.*expected {LITE0_SHA256}, got [0-9a-f]{{64}}.*Reinstall"):
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


def test_unknown_backbone_names_the_registry():
    """Check that an unknown name raises an error naming the registered backbones and how to add one."""
    with pytest.raises(ValueError, match=r"The 'name' parameter of get_spec must be one of \[.*'efficientnet_lite0'"
                                         r"\]. Got 'no_such_net' instead"):
        load_backbone("no_such_net")
    with pytest.raises(TypeError, match=r"The 'name' parameter of load_backbone must be a backbone name \(str\)"):
        load_backbone(None)


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_hub_backbone_fails_fast_offline(socket_disabled):
    """Check that a hub-only backbone fails within 5 s with a clear message when offline."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match="needs weights from the Hugging Face hub.*offline default is "
                                         "'efficientnet_lite0'"):
        load_backbone("efficientnet_b0", pretrained=True)
    assert time.perf_counter() - start < 5.0


def test_hub_backbone_respects_hf_hub_offline(monkeypatch):
    """Check that HF_HUB_OFFLINE=1 counts as offline without any connection attempt."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert backbones._hub_reachable() is False


def test_random_init_is_seeded_without_touching_global_rng():
    """Check that the same seed gives the same weights and the global RNG is left alone."""
    state = torch.random.get_rng_state()
    first = load_backbone(pretrained=False, seed=3).conv_stem.weight
    second = load_backbone(pretrained=False, seed=np.int64(3)).conv_stem.weight
    other = load_backbone(pretrained=False, seed=4).conv_stem.weight
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert torch.equal(state, torch.random.get_rng_state())


def test_num_classes_replaces_head_after_loading(pretrained):
    """Check that num_classes=6 keeps the ImageNet body and gives a 6-way head, and the spec is attached."""
    model = load_backbone(num_classes=6, seed=0)
    assert model.get_classifier().out_features == 6 and model.backbone_spec is get_spec()
    assert torch.equal(model.conv_head.weight, pretrained.conv_head.weight)
    assert load_backbone(num_classes=0).get_classifier().__class__.__name__ == "Identity"


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": -1}, "The 'num_classes' parameter of load_backbone must be an int >= 0. Got -1 instead"),
    ({"num_classes": 6.0}, "The 'num_classes' parameter of load_backbone must be an int >= 0. Got 6.0"),
    ({"pretrained": "yes"}, "The 'pretrained' parameter of load_backbone must be True or False. Got 'yes'"),
    ({"seed": 1.5}, "The 'seed' parameter of load_backbone must be None or an int >= 0. Got 1.5"),
])
def test_load_backbone_validates_arguments(kwargs, match):
    """Check that bad arguments to load_backbone raise messages naming the parameter."""
    with pytest.raises((ValueError, TypeError), match=match):
        load_backbone(**kwargs)


# ----------------------------------------------------------------------------- depths
def test_stages_share_parameters_with_model(pretrained):
    """Check that stages() gives 9 named depths made of the model's own modules."""
    result = stages(pretrained)
    assert [name for name, _ in result] == list(get_spec().depth_names) and len(result) == 9
    assert result[0][1][0] is pretrained.conv_stem and result[8][1][1] is pretrained.bn2
    assert result[3][1] is pretrained.blocks[2]
    stage_parameters = {id(p) for _, module in result for p in module.parameters()}
    head_parameters = {id(p) for p in pretrained.get_classifier().parameters()}
    assert stage_parameters | head_parameters == {id(p) for p in pretrained.parameters()}


def test_stages_rejects_other_models():
    """Check that a model without a spec, or a non-module, raises an error naming what is needed."""
    with pytest.raises(ValueError, match="must be a backbone that carries its BackboneSpec. Got a Linear"):
        stages(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="The 'model' parameter of stages must be a torch.nn.Module. Got 'model'"):
        stages("model")


def test_forward_to_depth_head_equals_forward_features(pretrained):
    """Check that depth 8 reproduces timm's forward_features exactly and depth 9 is refused."""
    x = preprocess(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    with torch.inference_mode():
        assert torch.equal(forward_to_depth(pretrained, x, 8), pretrained.forward_features(x))
    with pytest.raises(ValueError, match=r"The 'depth' parameter of forward_to_depth must be an int in \[0, 8\]. "
                                         r"Got 9"):
        forward_to_depth(pretrained, x, 9)


def test_forward_depths_returns_the_requested_depths(pretrained):
    """Check that forward_depths returns exactly the requested depths, matching forward_to_depth."""
    x = preprocess(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8))
    with torch.inference_mode():
        activations = forward_depths(pretrained, x, [5, 2])
        assert sorted(activations) == [2, 5]
        assert torch.equal(activations[2], forward_to_depth(pretrained, x, 2))
        assert sorted(forward_depths(pretrained, x, np.int64(4))) == [4]
    with pytest.raises(ValueError, match="The 'depths' parameter of forward_depths must be at least one depth"):
        forward_depths(pretrained, x, [])
    with pytest.raises(ValueError, match=r"The 'x' parameter of forward_depths must be a \(B, C, H, W\) tensor"):
        forward_depths(pretrained, x[0], [1])


def test_channels_last_gives_same_features(pretrained):
    """Check that the channels_last model computes the same features."""
    x = preprocess(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    model = copy.deepcopy(pretrained).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = model.forward_features(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(fast, pretrained.forward_features(x), atol=1e-4, rtol=1e-4)


def test_describe_features_leaves_the_model_in_its_mode():
    """Check that describe_features measures in eval mode and gives a training model back in train mode."""
    model = load_backbone(pretrained=False, seed=0).train()
    assert describe_features(model, image_size=32) == (get_spec().channels, (2, 2, 4, 8, 16, 16, 32, 32, 32))
    assert model.training


def test_permute_weights_keeps_histogram_and_changes_outputs(pretrained):
    """Check that permuted weights keep their values but not their arrangement or outputs."""
    control = permute_weights(pretrained, depths=[0, 3], seed=0)
    original, permuted = pretrained.conv_stem.weight, control.conv_stem.weight
    assert torch.equal(original.flatten().sort().values, permuted.flatten().sort().values)
    assert not torch.equal(original, permuted)
    assert torch.equal(control.blocks[0][0].conv_dw.weight, pretrained.blocks[0][0].conv_dw.weight)
    assert torch.equal(control.bn1.weight, pretrained.bn1.weight)  # BatchNorm is left as it is
    assert torch.equal(permute_weights(pretrained, [0], seed=0).conv_stem.weight, permuted)
    x = preprocess(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    with torch.inference_mode():
        assert not torch.allclose(control(x), pretrained(x))
    with pytest.raises(ValueError, match=r"The 'depths' parameter of permute_weights must be an int in \[0, 8\]"):
        permute_weights(pretrained, [10], seed=0)
    with pytest.raises(ValueError, match="The 'seed' parameter of permute_weights must be an int >= 0"):
        permute_weights(pretrained, [0], seed=-1)


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
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ValueError,
     r"RGB images with 3 channels in dim 1.*repeat\(1, 3, 1, 1\)"),
    (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), ValueError, r"RGB images with 3 channels in dim 1.*images\[:, :3\]"),
    (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), ValueError,
     r"RGB images .*channels-last: use images.permute\(0, 3, 1, 2\)"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), ValueError, r"a batch of shape \(N, 3, H, W\).*unsqueeze\(0\)"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int64), TypeError, r"uint8 or floating point. Got a Tensor of "
                                                            r"shape \(2, 3, 8, 8\) torch.int64"),
    (torch.full((2, 3, 8, 8), 255.0), ValueError, r"float images in \[0, 1\].*Values lie in \[255, 255\]"),
    ([[1, 2, 3]], TypeError, r"a torch.Tensor or numpy array. Got \[\[1, 2, 3\]\] instead"),
])
def test_preprocess_rejects_bad_images(images, error, match):
    """Check that bad shapes, channel counts, dtypes and ranges raise clear errors naming preprocess."""
    with pytest.raises(error, match="The 'images' parameter of preprocess must be " + match):
        preprocess(images)


def test_preprocess_uses_the_statistics_of_the_spec_the_model_or_the_name():
    """Check that efficientnet_b0 uses ImageNet mean/std, not 0.5, given by name, spec or model."""
    images = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    expected = -0.485 / 0.229
    assert preprocess(images, "efficientnet_b0")[0, 0, 0, 0].item() == pytest.approx(expected)
    assert preprocess(images, get_spec("efficientnet_b0"))[0, 0, 0, 0].item() == pytest.approx(expected)
    b0 = load_backbone("efficientnet_b0", pretrained=False)
    assert preprocess(images, b0)[0, 0, 0, 0].item() == pytest.approx(expected)
    with pytest.raises(TypeError, match="The 'spec' parameter of preprocess must be a BackboneSpec, a model"):
        preprocess(images, 3)


# ----------------------------------------------------------------------------- a second backbone
TEST_RESNET = "test_resnet_imagenet_stats"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESNET_LAYOUT = (("stem", ("conv1", "bn1", "act1", "maxpool")), ("layer1", ("layer1",)), ("layer2", ("layer2",)),
                 ("layer3", ("layer3",)), ("layer4", ("layer4",)))


@pytest.fixture
def resnet_spec():
    """timm's tiny test_resnet registered with random weights and the ImageNet statistics; removed afterwards."""
    provisional = BackboneSpec(name=TEST_RESNET, timm_name="test_resnet", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                               image_size=32, stage_layout=RESNET_LAYOUT, channels=(1,) * 5, strides=(1,) * 5,
                               classifier="fc", first_conv="conv1", weights="none")
    backbones.register(provisional)
    try:
        channels, strides = describe_features(load_backbone(TEST_RESNET, pretrained=False, seed=0))
        yield backbones.register(dataclasses.replace(provisional, channels=channels, strides=strides))
    finally:
        BACKBONES.pop(TEST_RESNET, None)


class FirstConvInputs:
    """Record what reaches a model's first convolution, by a forward pre-hook."""

    def __init__(self, model):
        self.inputs = []
        self.handle = model.get_submodule(spec_of(model).first_conv).register_forward_pre_hook(
            lambda module, args: self.inputs.append(args[0].detach().float().cpu()))

    def corner(self) -> torch.Tensor:
        """The value of pixel (0, 0) of every recorded image, per channel: (N, 3)."""
        self.handle.remove()
        assert self.inputs, "the first convolution never ran"
        return torch.cat([x[:, :, 0, 0] for x in self.inputs])


def black_corner_set(n_per_class: int, seed: int) -> data.ImageSet:
    """Rendered 32-px parcels whose top-left pixel is black: its model input is -mean / std."""
    dataset = data.make_dataset(n_per_class, image_size=32, seed=seed, cache=False)
    images = dataset.images.clone()
    images[:, :, 0, 0] = 0
    return data.ImageSet(images, dataset.labels, dataset.classes)


def assert_normalised_with(corner: torch.Tensor, mean, std) -> None:
    expected = -torch.tensor(mean) / torch.tensor(std)  # (3,)
    torch.testing.assert_close(corner, expected.expand_as(corner), rtol=1e-5, atol=1e-5)


def test_a_registered_backbone_trains_extracts_and_checkpoints_with_its_own_normalisation(
        resnet_spec, tmp_path, monkeypatch):
    """Check that a second registry entry goes through a strategy, feature extraction and a checkpoint
    round trip, and that every step feeds its first conv with ITS mean and std, not 0.5 / 0.5."""
    assert spec_of(timm.create_model("test_resnet")) is resnet_spec
    assert resnet_spec.num_depths == 5 and resnet_spec.channels[-1] == resnet_spec.num_features
    with pytest.raises(ValueError, match=f"The 'pretrained' parameter of load_backbone must be False for "
                                         f"'{TEST_RESNET}'"):
        load_backbone(TEST_RESNET, pretrained=True)
    train_set, val_set = black_corner_set(2, seed=0), black_corner_set(1, seed=1)
    recorders = []
    real_load = backbones.load_backbone

    def recording_load(*args, **kwargs):
        model = real_load(*args, **kwargs)
        recorders.append(FirstConvInputs(model))
        return model

    monkeypatch.setattr(backbones, "load_backbone", recording_load)
    config = RECIPES["partial_top2"].with_(top_k_stages=1, backbone=TEST_RESNET, pretrained=False, max_passes=2,
                                          patience=1)
    result = strategies.run_strategy(config, train_set, val_set, lr=1e-3, seed=0, device="cpu")
    monkeypatch.undo()
    assert spec_of(result.model) is resnet_spec and result.num_frozen == 4
    assert result.history.num_epochs >= 1 and result.model.get_classifier().out_features == 6
    (recorder,) = recorders
    assert_normalised_with(recorder.corner(), IMAGENET_MEAN, IMAGENET_STD)

    extraction = FirstConvInputs(result.model)
    X = features.extract_features(result.model, val_set, device="cpu", cache=False)
    assert X.shape == (len(val_set), resnet_spec.num_features)
    assert_normalised_with(extraction.corner(), IMAGENET_MEAN, IMAGENET_STD)

    path = checkpoints.save_classifier(result.model, tmp_path / "resnet.safetensors", train_set.classes)
    loaded, metadata = checkpoints.load_classifier(path, device="cpu")
    assert (metadata["backbone"], metadata["image_size"]) == (TEST_RESNET, 32)
    assert metadata["mean"] == IMAGENET_MEAN and metadata["std"] == IMAGENET_STD
    prediction = FirstConvInputs(loaded)
    predictions = checkpoints.predict_images(loaded, metadata, val_set, device="cpu")
    assert_normalised_with(prediction.corner(), IMAGENET_MEAN, IMAGENET_STD)
    expected = strategies.evaluate_strategy(result, val_set, device="cpu")["correct"]
    assert np.array_equal((predictions.labels == val_set.labels).numpy(), expected)

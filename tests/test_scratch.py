"""Tests for companion.scratch: the from-scratch CNN baseline and its spec."""

import pytest
import torch
from torch import nn

from companion import backbones, scratch


def test_make_scratch_cnn_shapes_and_seed():
    """Check that the scratch CNN maps 112-px images to logits and its seed fixes the weights."""
    model = scratch.make_scratch_cnn(6, width=8, seed=1)
    again = scratch.make_scratch_cnn(6, width=8, seed=1).state_dict()
    other = scratch.make_scratch_cnn(6, width=8, seed=2).state_dict()
    assert all(torch.equal(v, again[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, other[k]) for k, v in model.state_dict().items())
    assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 6)
    assert model.forward_features(torch.zeros(2, 3, 112, 112)).shape == (2, 32, 7, 7)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_make_scratch_cnn_leaves_the_global_rng_alone():
    """Check that a seeded scratch CNN does not consume or reset the caller's torch random state."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    scratch.make_scratch_cnn(3, width=4, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_the_spec_matches_the_network():
    """Check that the spec's depths are the five blocks, with the channels and strides measured."""
    model = scratch.make_scratch_cnn(6, width=8, seed=0)
    spec = backbones.spec_of(model)
    assert spec is model.spec and spec == scratch.scratch_spec(8)
    assert spec.name == "scratch_cnn_w8" and spec.timm_name is None and spec.num_depths == 5
    assert spec.channels == (4, 8, 16, 16, 32) and spec.strides == (2, 4, 8, 8, 16)
    assert backbones.describe_features(model, image_size=64) == (spec.channels, spec.strides)
    assert [module for _, module in backbones.stages(model)] == list(model.blocks)
    assert spec.num_features == model.num_features == 32 and spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert model.get_submodule(spec.first_conv) is model.blocks[0][0]


def test_forward_is_features_then_head_and_the_head_can_be_replaced():
    """Check forward = forward_head(forward_features), and that reset_classifier gives a new head."""
    model = scratch.make_scratch_cnn(6, width=4, seed=0).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))
    assert model.get_classifier() is model.classifier
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.num_classes == 3
    assert model(x).shape == (2, 3)


def test_loading_a_scratch_spec_by_name_is_refused():
    """Check that load_backbone says the scratch CNN is built by its own function."""
    spec = backbones.register(scratch.scratch_spec(4))
    try:
        with pytest.raises(ValueError, match="The 'name' parameter of load_backbone must be a timm backbone of the "
                                             "registry.*one of the course's own networks"):
            backbones.load_backbone(spec.name, pretrained=False)
    finally:
        backbones.BACKBONES.pop(spec.name)


@pytest.mark.parametrize("options, message", [
    ({"num_classes": 1}, "The 'num_classes' parameter of make_scratch_cnn must be an int >= 2. Got 1 instead"),
    ({"num_classes": 3, "width": 7}, "The 'width' parameter of make_scratch_cnn must be an even int >= 2. Got 7"),
    ({"num_classes": 3, "width": 1}, "The 'width' parameter of make_scratch_cnn must be an int >= 2"),
    ({"num_classes": 3, "seed": -2}, "The 'seed' parameter of make_scratch_cnn must be None or an int >= 0"),
])
def test_make_scratch_cnn_rejects_bad_arguments(options, message):
    """Check that make_scratch_cnn validates num_classes, width and seed."""
    with pytest.raises(ValueError, match=message):
        scratch.make_scratch_cnn(**options)

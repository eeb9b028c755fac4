"""Tests for companion.adapt: freezing by depth, heads, BatchNorm handling, parameter groups."""

import pytest
import timm
import torch
from torch import nn

from companion import adapt, backbones
from companion.data import ImageSet

NUM_DEPTHS = backbones.get_spec().num_depths
IMAGE_SIZE = 32


@pytest.fixture
def model() -> nn.Module:
    """A random-init EfficientNet-Lite0 with a 6-class head (no download), built by timm: found by its architecture."""
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", num_classes=6)


def _images(num_images: int = 8, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_images, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)  # (N, 3, H, W)
    return x + shift


def _batchnorms(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)  # (B, 1280)


def _train_epoch(model: nn.Module, set_mode, num_steps: int = 2) -> None:
    """A minimal training epoch: ``set_mode(model)`` then a few AdamW steps on random data."""
    optimizer = adapt.make_optimizer(model, lr=1e-2)
    set_mode(model)
    for step in range(num_steps):
        x = _images(4, seed=100 + step, shift=1.0)  # (4, 3, 32, 32), not the eval statistics
        loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


# ----------------------------------------------------------------------------- freezing
def test_count_parameters_matches_direct_sum(model):
    """Check that count_parameters agrees with a direct sum over requires_grad."""
    model.classifier.weight.requires_grad_(False)
    counts = adapt.count_parameters(model)
    total = sum(p.numel() for p in model.parameters())
    assert counts == {"trainable": total - model.classifier.weight.numel(),
                      "frozen": model.classifier.weight.numel(), "total": total}


def test_freeze_counts_are_monotone(model):
    """Check that up_to=0 freezes nothing, up_to=9 leaves only the classifier, counts grow."""
    classifier_size = sum(p.numel() for p in model.get_classifier().parameters())
    reports = [adapt.freeze(model, up_to) for up_to in range(NUM_DEPTHS + 1)]
    assert reports[0].frozen == 0 and reports[0].frozen_depths == ()
    assert reports[-1].trainable == classifier_size
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "classifier.weight", "classifier.bias"]
    frozen = [report.frozen for report in reports]
    assert frozen == sorted(frozen) and len(set(frozen)) == len(frozen)
    assert {report.total for report in reports} == {adapt.count_parameters(model)["total"]}
    assert reports[3].frozen_depths == ("stem", "blocks.0", "blocks.1")


def test_freeze_follows_stages_and_report_prints(model, capsys):
    """Check that freeze(up_to) freezes exactly the parameters of depths [0, up_to)."""
    report = adapt.freeze(model, 4, verbose=True)
    for depth, (_, module) in enumerate(backbones.stages(model)):
        assert all(p.requires_grad == (depth >= 4) for p in module.parameters())
    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    assert "frozen depths: stem .. blocks.2 (4 of 9)" in printed
    assert f"trainable parameters: {report.trainable:,}" in printed


def test_unfreeze_and_freeze_backbone(model):
    """Check that freeze_backbone equals freeze(up_to=9) and unfreeze makes all trainable."""
    assert adapt.freeze_backbone(model) == adapt.freeze(model, NUM_DEPTHS)
    report = adapt.unfreeze(model)
    assert report.frozen == 0 and all(p.requires_grad for p in model.parameters())


def test_frozen_parameters_get_no_gradient(model):
    """Check that after a backward pass frozen parameters have no grad and trainable ones do."""
    adapt.freeze(model, 5)
    model(_images(2)).sum().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == param.requires_grad, name


def test_replace_head_is_trainable_and_follows_dtype(model):
    """Check that replace_head gives a new trainable head on the model's dtype, body untouched."""
    adapt.freeze_backbone(model)
    model.double()
    adapt.replace_head(model, 3)
    head = model.get_classifier()
    assert head.out_features == 3 and head.weight.dtype == torch.float64
    assert all(p.requires_grad for p in head.parameters())
    assert adapt.count_parameters(model)["trainable"] == 1280 * 3 + 3
    assert model(_images(2).double()).shape == (2, 3)


# ----------------------------------------------------------------------------- BatchNorm
def test_train_mode_sets_only_frozen_batchnorm_to_eval(model):
    """Check that train_mode keeps BatchNorm of frozen depths in eval and the rest in train."""
    adapt.freeze(model, 3)
    adapt.train_mode(model)
    frozen_names = ("bn1", "blocks.0.", "blocks.1.")
    for name, module in _batchnorms(model):
        assert module.training != name.startswith(frozen_names), name
    assert model.training
    adapt.unfreeze(model)
    assert all(m.training for m in adapt.train_mode(model).modules())


def test_train_mode_follows_the_depth_of_batchnorm_without_parameters(model):
    """Check that an affine=False BatchNorm is kept in eval exactly when its depth is frozen."""
    model.bn1 = nn.BatchNorm2d(32, affine=False)  # stem BN with no parameters of its own
    adapt.freeze(model, 1)
    assert not adapt.train_mode(model).bn1.training
    adapt.freeze(model, 0)
    assert adapt.train_mode(model).bn1.training


def test_train_mode_works_on_any_module():
    """Check that train_mode on a plain network equals train() except for frozen BatchNorm."""
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False))
    assert all(m.training for m in adapt.train_mode(network).modules())
    network[1].requires_grad_(False)
    adapt.train_mode(network)
    assert [m.training for m in network] == [True, False, True]


def test_frozen_backbone_is_bit_identical_with_train_mode(model):
    """Check that with train_mode a frozen backbone's features and BN buffers never change."""
    adapt.freeze_backbone(model)
    x = _images(4)
    before_features, before_buffers = _features(model, x), _buffers(model)
    head_before = model.get_classifier().weight.clone()
    _train_epoch(model, adapt.train_mode)
    assert torch.equal(_features(model, x), before_features)
    after_buffers = _buffers(model)
    assert all(torch.equal(after_buffers[k], v) for k, v in before_buffers.items())
    assert not torch.equal(model.get_classifier().weight, head_before)  # the head did learn


def test_plain_train_mode_would_change_a_frozen_backbone(model):
    """Check that plain model.train() drifts a 'frozen' backbone via BN running statistics."""
    adapt.freeze_backbone(model)
    x = _images(4)
    before_features, before_buffers = _features(model, x), _buffers(model)
    before_weights = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    _train_epoch(model, lambda m: m.train())  # what PyTorch's transfer-learning tutorial does
    assert all(torch.equal(p, before_weights[n]) for n, p in model.named_parameters()
               if n in before_weights)  # weights did not move ...
    assert not torch.equal(model.bn1.running_mean, before_buffers["bn1.running_mean"])
    assert not torch.equal(_features(model, x), before_features)  # ... but the features did


def test_adabn_sets_running_stats_to_target_statistics(model):
    """Check that adabn sets running_mean/var to the target data's BN-input mean/variance."""
    target = _images(16, seed=1, shift=2.0)  # (16, 3, 32, 32), a shifted "target domain"
    inputs = []
    hook = model.bn1.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    weights = {n: p.clone() for n, p in model.named_parameters()}
    report = adapt.adabn(model, target, batch_size=8)
    assert (report.num_images, report.num_batches) == (16, 2)
    assert report.num_layers == len(_batchnorms(model)) and "AdaBN" in str(report)
    stem_input = torch.cat(inputs)  # (16, 32, 16, 16): the conv_stem output, BN-independent
    hook.remove()
    expected_mean = stem_input.mean(dim=(0, 2, 3))  # (32,)
    assert torch.allclose(model.bn1.running_mean, expected_mean, atol=1e-5)
    batch_vars = [b.var(dim=(0, 2, 3)) for b in stem_input.split(8)]  # unbiased, per batch
    assert torch.allclose(model.bn1.running_var, sum(batch_vars) / 2, rtol=1e-4)
    assert not model.training and all(m.momentum == 0.1 for _, m in _batchnorms(model))
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def _image_set(num_images: int = 6) -> ImageSet:
    images = torch.randint(0, 256, (num_images, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return ImageSet(images, torch.arange(num_images) % 3, ("a", "b", "c"))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_b0"])
def test_adabn_preprocesses_an_imageset_with_the_model_spec(name):
    """Check that adabn on an ImageSet equals adabn on the images preprocessed with the model's own statistics."""
    image_set = _image_set()
    model = backbones.load_backbone(name, pretrained=False, num_classes=6, seed=0)
    twin = backbones.load_backbone(name, pretrained=False, num_classes=6, seed=0)
    report = adapt.adabn(model, image_set, batch_size=3)
    adapt.adabn(twin, backbones.preprocess(image_set.images, name), batch_size=3)
    assert (report.num_images, report.num_batches) == (6, 2)
    assert torch.equal(model.bn2.running_var, twin.bn2.running_var)
    other = backbones.load_backbone(name, pretrained=False, num_classes=6, seed=0)
    wrong = "efficientnet_b0" if name == "efficientnet_lite0" else "efficientnet_lite0"
    adapt.adabn(other, backbones.preprocess(image_set.images, wrong), batch_size=3)
    assert not torch.equal(model.bn1.running_mean, other.bn1.running_mean)


def test_freeze_batchnorm_freezes_every_batchnorm_layer(model):
    """Check that freeze_batchnorm freezes every BatchNorm layer's scale and shift, and train_mode keeps them fixed."""
    count = adapt.freeze_batchnorm(model)
    batchnorms = _batchnorms(model)
    assert count == len(batchnorms) > 0
    assert all(not p.requires_grad for _, m in batchnorms for p in m.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if n.endswith("conv_stem.weight"))
    adapt.train_mode(model)
    assert model.training and not any(m.training for _, m in batchnorms)


# ----------------------------------------------------------------------------- learning rates
def test_param_groups_rates_per_depth_and_head(model):
    """Check that group rates are lr * decay**(8 - depth) and the head gets 10x lr."""
    groups = adapt.param_groups(model, lr=1e-3, decay=0.5)
    assert [g["name"] for g in groups] == [name for name, _ in backbones.stages(model)] + [
        "classifier"]
    for group in groups[:-1]:
        assert group["lr"] == pytest.approx(1e-3 * 0.5 ** (8 - group["depth"]))
    assert groups[-1]["lr"] == pytest.approx(1e-2) and groups[-1]["depth"] is None
    assert {g["lr"] for g in adapt.param_groups(model, lr=1e-3, head_lr_mult=1.0)} == {1e-3}


def test_param_groups_only_trainable_and_no_duplicates(model):
    """Check that groups hold each trainable parameter exactly once and no frozen one."""
    adapt.freeze(model, 6)
    groups = adapt.param_groups(model, lr=1e-3, decay=0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert [g["name"] for g in groups] == ["blocks.5", "blocks.6", "head", "classifier"]
    adapt.freeze_backbone(model)
    assert [g["name"] for g in adapt.param_groups(model, lr=1e-3)] == ["classifier"]


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_make_optimizer_never_updates_frozen_parameters(model, kind):
    """Check that an optimizer step moves every trainable parameter and no frozen one."""
    adapt.freeze(model, 7)
    optimizer = adapt.make_optimizer(model, lr=1e-2, decay=0.5, kind=kind)
    before = {n: p.clone() for n, p in model.named_parameters()}
    adapt.train_mode(model)
    model(_images(4)).sum().backward()
    optimizer.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) != param.requires_grad, name


def test_make_optimizer_must_be_rebuilt_after_unfreezing(model):
    """Check that an old optimizer misses newly unfrozen parameters and a rebuilt one has all."""
    adapt.freeze_backbone(model)
    old = adapt.make_optimizer(model, lr=1e-3)
    adapt.unfreeze(model)
    held = {id(p) for g in old.param_groups for p in g["params"]}
    assert len(held) == 2  # the classifier only
    new = adapt.make_optimizer(model, lr=1e-3, kind="sgd", weight_decay=0.0)
    held = [id(p) for g in new.param_groups for p in g["params"]]
    assert sorted(held) == sorted(id(p) for p in model.parameters())
    assert isinstance(new, torch.optim.SGD) and isinstance(old, torch.optim.AdamW)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: adapt.freeze(m, 12), ValueError,
         r"The 'up_to' parameter of freeze must be an int in \[0, 9\]. Got 12 instead."),
        (lambda m: adapt.freeze(m, -1), ValueError, r"'up_to' .* Got -1 instead"),
        (lambda m: adapt.freeze(m, 2.0), TypeError, r"'up_to' .* int in \[0, 9\]. Got 2.0"),
        (lambda m: adapt.freeze(m, True), TypeError, r"'up_to' .* Got True instead"),
        (lambda m: adapt.freeze([m], 1), TypeError,
         r"The 'model' parameter of freeze must be a torch.nn.Module. Got a list instead"),
        (lambda m: adapt.freeze(nn.Linear(2, 2), 1), TypeError,
         r"The 'model' parameter of freeze must be a backbone that backbones.stages splits into depths. Got a Linear "
         r"instead. Build it with backbones.load_backbone"),
        (lambda m: adapt.freeze_backbone(nn.Conv2d(3, 3, 1)), TypeError,
         r"'model' parameter of freeze_backbone .* Got a Conv2d instead"),
        (lambda m: adapt.param_groups(nn.Linear(2, 2), lr=1.0), TypeError,
         r"'model' parameter of param_groups must be a backbone"),
        (lambda m: adapt.count_parameters("model"), TypeError,
         r"'model' parameter of count_parameters must be a torch.nn.Module"),
        (lambda m: adapt.train_mode(None), TypeError, r"'model' parameter of train_mode"),
        (lambda m: adapt.replace_head(m, 0), ValueError,
         r"The 'num_classes' parameter of replace_head must be an int >= 1. Got 0 instead."),
        (lambda m: adapt.replace_head(m, "6"), TypeError, r"'num_classes' .* Got '6' instead"),
        (lambda m: adapt.replace_head(nn.Linear(2, 2), 3), TypeError,
         r"'model' parameter of replace_head must be a timm model with a reset_classifier"),
        (lambda m: adapt.param_groups(m, lr=0.0), ValueError,
         r"The 'lr' parameter of param_groups must be a float > 0.0. Got 0.0 instead."),
        (lambda m: adapt.param_groups(m, lr=float("nan")), ValueError, r"'lr' .* Got nan"),
        (lambda m: adapt.param_groups(m, lr="1e-3"), TypeError, r"'lr' .* Got '1e-3'"),
        (lambda m: adapt.param_groups(m, lr=1e-3, decay=1.5), ValueError,
         r"The 'decay' parameter of param_groups must be a float in \(0.0, 1.0\]. Got 1.5"),
        (lambda m: adapt.param_groups(m, lr=1e-3, decay=0), ValueError, r"'decay' .* Got 0 instead"),
        (lambda m: adapt.param_groups(m, lr=1e-3, head_lr_mult=-10), ValueError,
         r"The 'head_lr_mult' parameter of param_groups must be a float > 0.0. Got -10"),
        (lambda m: adapt.make_optimizer(m, -1e-3), ValueError,
         r"The 'lr' parameter of make_optimizer must be a float > 0.0. Got -0.001 instead."),
        (lambda m: adapt.make_optimizer(m, 1e-3, kind="adam"), ValueError,
         r"The 'kind' parameter of make_optimizer must be one of \('adamw', 'sgd'\). Got 'adam' instead."),
        (lambda m: adapt.make_optimizer(m, 1e-3, weight_decay=-1.0), ValueError,
         r"The 'weight_decay' parameter of make_optimizer must be a float >= 0.0. Got -1.0"),
        (lambda m: adapt.make_optimizer(m, 1e-3, kind="sgd", momentum=1.0), ValueError,
         r"The 'momentum' parameter of make_optimizer must be a float in \[0.0, 1.0\). Got 1.0"),
        (lambda m: adapt.adabn(m, _images(2), batch_size=0), ValueError,
         r"The 'batch_size' parameter of adabn must be an int >= 1. Got 0 instead."),
        (lambda m: adapt.adabn(m, torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), TypeError,
         r"The 'images' parameter of adabn must be a preprocessed float tensor \(N, 3, H, W\) or an ImageSet. "
         r"Got a Tensor of shape \(2, 3, 8, 8\) torch.uint8 instead.*backbones.preprocess\(images, model\)"),
        (lambda m: adapt.adabn(m, [1, 2]), TypeError, r"'images' .* Got \[1, 2\] instead"),
        (lambda m: adapt.adabn(m, _images(0)), ValueError,
         r"The 'images' parameter of adabn must be at least one image. Got a Tensor of shape \(0, 3, 32, 32\)"),
        (lambda m: adapt.freeze_batchnorm("model"), TypeError,
         r"The 'model' parameter of freeze_batchnorm must be a torch.nn.Module"),
        (lambda m: adapt.adabn(m, _images(2), device="tpu"), ValueError,
         r"The 'prefer' parameter of get_device"),
    ],
)
def test_errors_name_the_parameter_and_what_is_allowed(model, call, error, match):
    """Check that invalid arguments raise the documented error with a helpful message."""
    with pytest.raises(error, match=match):
        call(model)


def test_make_optimizer_without_trainable_parameters_says_how_to_fix(model):
    """Check that make_optimizer on a fully frozen model tells the user to unfreeze."""
    for param in model.parameters():
        param.requires_grad_(False)
    with pytest.raises(ValueError, match=r"no trainable parameters .* Call unfreeze\(model\)"):
        adapt.make_optimizer(model, lr=1e-3)

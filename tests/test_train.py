"""Tests for companion.train: the loops, fit (schedule, validation passes, early stopping, errors)."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from companion import backbones, scratch, train
from companion.backbones import BackboneSpec
from companion.data import ImageSet

CLASSES = ("red", "green", "blue")
# The spec a hand-made model carries: train.to_input normalises with it (0.5 / 0.5, as Lite0).
CONSTANT_SPEC = BackboneSpec(name="constant_logits", timm_name=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                             image_size=16, stage_layout=(("linear", ("linear",)),), channels=(3,), strides=(1,),
                             classifier="linear", first_conv="linear")


def make_separable_set(num_per_class: int = 8, size: int = 16, seed: int = 0) -> ImageSet:
    """Dark noise images whose class is the one bright colour channel."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat_interleave(num_per_class)  # (N,)
    images = torch.randint(0, 60, (len(labels), 3, size, size), dtype=torch.uint8, generator=generator)
    images[torch.arange(len(labels)), labels] += 150  # (N, 3, H, W): class channel bright
    return ImageSet(images, labels, CLASSES)


@pytest.fixture(scope="module")
def train_set():
    return make_separable_set(8, seed=0)


@pytest.fixture(scope="module")
def val_set():
    return make_separable_set(4, seed=1)


def tiny_cnn(seed: int = 0) -> nn.Module:
    return scratch.make_scratch_cnn(len(CLASSES), width=4, seed=seed)


def fit_tiny(model, train_set, val_set, **kwargs):
    options = dict(num_epochs=2, lr=1e-2, batch_size=8, progress=False, device="cpu")
    options.update(kwargs)
    return train.fit(model, train_set, val_set, **options)


class ConstantLogits(nn.Module):
    """Logits from a linear layer on the mean colour; ``bias`` can make them NaN."""

    def __init__(self, num_classes: int = 3, bias: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(3, num_classes)
        self.bias = bias
        self.backbone_spec = CONSTANT_SPEC

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3))) + self.bias  # (B, num_classes)


def scripted_evaluate(monkeypatch, accuracies, snapshots=None):
    """Replace train.evaluate by one that returns the given validation accuracies, in order."""
    scripted = iter(accuracies)

    def fake_evaluate(model, dataset, **kwargs):
        if snapshots is not None:
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": 1.0, "accuracy": next(scripted)}

    monkeypatch.setattr(train, "evaluate", fake_evaluate)


def test_fit_reduces_loss_and_learns_separable_classes(train_set, val_set):
    """Check that fit lowers the training loss, validates every epoch and reaches high validation accuracy."""
    model = tiny_cnn()
    history = fit_tiny(model, train_set, val_set, num_epochs=6)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.best_val_accuracy >= 0.9
    assert history.num_epochs == 6 and len(history.lr) == len(history.val_loss) == 6
    assert history.val_epochs == [1, 2, 3, 4, 5, 6]
    assert train.evaluate(model, val_set, device="cpu")["accuracy"] == history.best_val_accuracy


def test_to_input_normalises_with_the_model_spec(train_set):
    """Check that to_input uses the model's own mean and std, moves to channels_last and augments each image."""
    imagenet = backbones.get_spec("efficientnet_b0")
    model = ConstantLogits()
    model.backbone_spec = imagenet
    images = train_set.images[:4]
    inputs = train.to_input(model, images, torch.device("cpu"))
    torch.testing.assert_close(inputs, backbones.preprocess(images, imagenet))
    assert inputs.is_contiguous(memory_format=torch.channels_last)
    flipped = train.to_input(model, images, "cpu", augment=lambda image: image.flip(-1))
    torch.testing.assert_close(flipped, backbones.preprocess(images.flip(-1), imagenet))


def test_a_model_without_a_spec_is_refused(train_set, val_set):
    """Check that fit says how to give a hand-made model its spec (for its normalisation)."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="must be a backbone that carries its BackboneSpec.*model.backbone_spec"):
        fit_tiny(model, train_set, val_set)


def test_evaluate_matches_a_direct_computation(train_set):
    """Check that evaluate's loss and accuracy equal cross-entropy and argmax computed by hand."""
    model = ConstantLogits()
    metrics = train.evaluate(model, train_set, batch_size=5, device="cpu")
    with torch.no_grad():
        logits = model(train_set.images.float() / 127.5 - 1.0)  # (N, 3)
    expected_loss = nn.functional.cross_entropy(logits, train_set.labels).item()
    expected_accuracy = (logits.argmax(1) == train_set.labels).float().mean().item()
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(expected_accuracy)
    assert not model.training


def test_per_class_accuracy_and_predict(train_set):
    """Check that per_class_accuracy agrees with predict, class by class, and predict is int64 on the CPU."""
    model = ConstantLogits()
    predictions = train.predict(model, train_set, device="cpu")
    assert predictions.dtype == torch.int64 and predictions.shape == (len(train_set),)
    result = train.per_class_accuracy(model, train_set, device="cpu")
    assert list(result) == list(CLASSES)
    for index, name in enumerate(CLASSES):
        mask = train_set.labels == index
        assert result[name] == pytest.approx((predictions[mask] == index).float().mean().item())
    absent = train.per_class_accuracy(model, train_set.subset(train_set.labels != 2), device="cpu")
    assert math.isnan(absent["blue"])


def test_train_one_epoch_returns_metrics_in_train_mode(train_set):
    """Check that train_one_epoch sets train mode, takes ceil(N / B) steps and reports metrics."""
    model = tiny_cnn().eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    metrics = train.train_one_epoch(model, train_set, optimizer, batch_size=10, device="cpu",
                                    generator=torch.Generator().manual_seed(0))
    assert model.training
    assert metrics["num_steps"] == 3
    assert set(metrics) == {"loss", "accuracy", "num_steps", "seconds"}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and math.isfinite(metrics["loss"])


def test_early_stopping_restores_the_best_weights(train_set, val_set, monkeypatch):
    """Check that patience stops training and the weights of the best epoch are restored."""
    snapshots = []
    scripted_evaluate(monkeypatch, [0.5, 0.9, 0.6, 0.4, 0.95], snapshots)
    model = tiny_cnn()
    history = fit_tiny(model, train_set, val_set, num_epochs=5, patience=2)
    assert history.stopped_early and not history.hit_max and history.num_epochs == 4
    assert history.best_epoch == 2 and history.best_val_accuracy == 0.9
    assert history.val_accuracy == [0.5, 0.9, 0.6, 0.4]
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)


def test_eval_every_validates_every_k_epochs_and_after_the_last(train_set, val_set, monkeypatch):
    """Check that validation runs after every eval_every-th epoch and always after the last one."""
    scripted_evaluate(monkeypatch, [0.4, 0.5, 0.3])
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=5, eval_every=2)
    assert history.val_epochs == [2, 4, 5] and len(history.val_accuracy) == len(history.val_loss) == 3
    assert history.num_epochs == 5 and len(history.train_loss) == len(history.lr) == 5
    assert history.best_epoch == 4 and history.best_val_accuracy == 0.5


def test_patience_counts_validation_passes_not_epochs(train_set, val_set, monkeypatch):
    """Check that with eval_every=2, patience=2 stops two validation passes (four epochs) after the best."""
    scripted_evaluate(monkeypatch, [0.5, 0.9, 0.6, 0.4, 0.95])
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=20, eval_every=2, patience=2)
    assert history.val_epochs == [2, 4, 6, 8] and history.num_epochs == 8
    assert history.stopped_early and history.best_epoch == 4


def test_a_tie_keeps_the_earlier_pass(train_set, val_set, monkeypatch):
    """Check that an equal validation accuracy later does not replace the best epoch."""
    scripted_evaluate(monkeypatch, [0.7, 0.7, 0.7])
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=3)
    assert history.best_epoch == 1


def test_validate_first_gives_back_the_starting_weights_when_training_never_beats_them(train_set, val_set,
                                                                                     monkeypatch):
    """Check that validate_first scores the start as epoch 0 and restores it when no later pass is better."""
    scripted_evaluate(monkeypatch, [0.8, 0.5, 0.6, 0.4, 0.3, 0.2])
    model = tiny_cnn()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit_tiny(model, train_set, val_set, num_epochs=5, patience=3, validate_first=True)
    assert history.val_epochs == [0, 1, 2, 3, 4, 5] and history.stopped_early
    assert history.best_epoch == 0 and history.best_val_accuracy == 0.8
    assert all(torch.equal(model.state_dict()[k], start[k]) for k in start)


def test_validate_first_does_not_let_a_dip_after_the_start_end_the_run(train_set, val_set, monkeypatch):
    """Check that the patience counts training passes only, so a run that dips below its start can recover."""
    scripted_evaluate(monkeypatch, [0.8, 0.5, 0.6, 0.9])
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=3, patience=1, validate_first=True)
    assert history.val_epochs == [0, 1, 2, 3] and history.best_epoch == 3 and history.best_val_accuracy == 0.9


def test_hit_max_flags_a_run_that_used_up_its_epochs(train_set, val_set, monkeypatch):
    """Check that hit_max is True when validation was still improving at the last epoch, False without val_set."""
    scripted_evaluate(monkeypatch, [0.5, 0.6, 0.7])
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=3, patience=2)
    assert history.hit_max and not history.stopped_early and history.best_epoch == 3
    assert not fit_tiny(tiny_cnn(), train_set, None, num_epochs=1).hit_max


def test_nan_loss_raises_a_friendly_error(train_set, val_set):
    """Check that a NaN loss stops fit with an error that suggests a lower learning rate."""
    with pytest.raises(train.NonFiniteLossError, match=r"epoch 1: The training loss became nan.*try a 10x lower 'lr'"):
        fit_tiny(ConstantLogits(bias=float("nan")), train_set, val_set)


def test_huge_learning_rate_raises_the_friendly_error(train_set, val_set):
    """Check that lr=1e30 with SGD makes the loss non-finite and raises the same error."""
    with pytest.raises(train.NonFiniteLossError, match="learning rate is probably too high"):
        fit_tiny(ConstantLogits(), train_set, val_set, lr=1e30, optimizer="sgd", num_epochs=5)


def test_optimizer_gets_only_trainable_parameters(train_set, val_set, monkeypatch):
    """Check that fit hands the optimizer exactly the parameters with requires_grad."""
    model = tiny_cnn()
    for parameter in model.blocks.parameters():
        parameter.requires_grad_(False)
    frozen_before = {k: v.detach().clone() for k, v in model.blocks.named_parameters()}
    received = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, params, **kwargs):
            params = list(params)
            received.extend(p for group in params for p in group["params"])
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    fit_tiny(model, train_set, val_set, num_epochs=1)
    assert {id(p) for p in received} == {id(p) for p in model.classifier.parameters()}
    frozen_after = dict(model.blocks.named_parameters())
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)


def test_frozen_batchnorm_statistics_stay_fixed(train_set, val_set):
    """Check that fit keeps the running statistics of frozen BatchNorm layers (adapt.train_mode)."""
    model = tiny_cnn()
    model.blocks.requires_grad_(False)
    buffers_before = {k: v.clone() for k, v in model.blocks.named_buffers()}
    fit_tiny(model, train_set, val_set, num_epochs=1)
    assert all(torch.equal(v, buffers_before[k]) for k, v in model.blocks.named_buffers())
    assert not model.training


def test_keep_frozen_batchnorm_false_reproduces_the_drift(train_set, val_set):
    """Check that keep_frozen_batchnorm=False lets frozen BatchNorm statistics drift, weights fixed."""
    model = tiny_cnn()
    model.blocks.requires_grad_(False)
    weights_before = {k: v.clone() for k, v in model.blocks.named_parameters()}
    means_before = {k: v.clone() for k, v in model.blocks.named_buffers() if k.endswith("running_mean")}
    fit_tiny(model, train_set, val_set, num_epochs=1, keep_frozen_batchnorm=False)
    assert all(torch.equal(v, weights_before[k]) for k, v in model.blocks.named_parameters())
    buffers = dict(model.blocks.named_buffers())
    assert all(not torch.equal(buffers[k], v) for k, v in means_before.items())
    with pytest.raises(TypeError, match="The 'keep_frozen_batchnorm' parameter of fit must be True or False"):
        fit_tiny(tiny_cnn(), train_set, val_set, keep_frozen_batchnorm="no")


def test_param_groups_keep_their_own_learning_rates(train_set, val_set):
    """Check that per-group learning rates from param_groups survive the schedule's scaling."""
    model = tiny_cnn()
    groups = [{"params": model.blocks.parameters(), "lr": 1e-4}, {"params": model.classifier.parameters()}]
    history = fit_tiny(model, train_set, val_set, num_epochs=1, lr=1e-2, param_groups=groups)
    assert history.lr == [pytest.approx(1e-2)]


def test_fit_with_the_same_seed_gives_bit_identical_weights(train_set, val_set):
    """Check that two fits with the same seed (and augmentation) give bit-identical weights on CPU."""
    augment = v2.RandomHorizontalFlip()
    states = []
    for seed in (3, 3, 4):
        model = tiny_cnn(seed=0)
        fit_tiny(model, train_set, val_set, seed=seed, augment=augment)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_fit_leaves_the_global_random_state_alone(train_set, val_set):
    """Check that fit draws from its own seed and restores the caller's torch random state."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=1)
    assert torch.equal(torch.rand(3), expected)


def test_max_steps_and_the_two_schedules(train_set, val_set):
    """Check that max_steps caps the steps (validating at the end), constant holds the rate and cosine decays it."""
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=10, max_steps=7, batch_size=8, schedule="cosine")
    assert history.num_steps == 7 and history.num_epochs == 3 and history.val_epochs == [1, 2, 3]
    assert history.lr[-1] == pytest.approx(0.0, abs=1e-12)
    assert history.lr[0] > history.lr[1] > history.lr[-1]
    constant = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=10, max_steps=7, batch_size=8)
    assert constant.lr == [pytest.approx(1e-2)] * 3


def test_fit_without_validation_set(train_set):
    """Check that fit runs without a val_set, keeps the last epoch and records no validation pass."""
    history = fit_tiny(tiny_cnn(), train_set, None, num_epochs=2)
    assert history.best_epoch == 2 and history.val_epochs == history.val_accuracy == history.val_loss == []
    assert math.isnan(history.best_val_accuracy) and not history.stopped_early


def test_progress_false_prints_nothing(train_set, val_set, capsys):
    """Check that progress=False writes nothing to stdout or stderr."""
    fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_fit_trains_a_timm_backbone(train_set):
    """Check that fit drives a timm EfficientNet-Lite0 (random init, new head) for a step."""
    model = backbones.load_backbone(pretrained=False, num_classes=len(CLASSES), seed=0)
    before = model.get_classifier().weight.detach().clone()
    history = fit_tiny(model, train_set, None, num_epochs=1, max_steps=1)
    assert history.num_steps == 1 and not torch.equal(before, model.get_classifier().weight)


# ----------------------------------------------------------------------------- errors


def test_fit_rejects_non_imageset_and_empty_or_single_class_sets(train_set, val_set):
    """Check that fit explains a wrong dataset type, an empty set and a single-class set."""
    with pytest.raises(TypeError, match="The 'train_set' parameter of fit must be a companion.data.ImageSet"):
        fit_tiny(tiny_cnn(), train_set.images, val_set)
    with pytest.raises(ValueError, match="The 'train_set' parameter of fit must be a non-empty ImageSet"):
        fit_tiny(tiny_cnn(), train_set.subset(torch.zeros(0, dtype=torch.long)), val_set)
    with pytest.raises(ValueError, match="must be an ImageSet with at least 2 classes.*It holds 1"):
        fit_tiny(tiny_cnn(), train_set.subset(train_set.labels == 0), val_set)
    with pytest.raises(ValueError, match="The 'val_set' parameter of fit must be a non-empty ImageSet"):
        fit_tiny(tiny_cnn(), train_set, val_set.subset(torch.zeros(0, dtype=torch.long)))


@pytest.mark.parametrize("options, message", [
    ({"lr": 0}, r"The 'lr' parameter of fit must be a float > 0.0. Got 0 instead."),
    ({"lr": float("nan")}, "The 'lr' parameter of fit must be a float > 0"),
    ({"num_epochs": 0}, "The 'num_epochs' parameter of fit must be an int >= 1. Got 0 instead."),
    ({"batch_size": 2.5}, "The 'batch_size' parameter of fit must be an int >= 1"),
    ({"optimizer": "adam"}, r"The 'optimizer' parameter of fit must be one of \('adamw', 'sgd'\)"),
    ({"schedule": "step"}, r"The 'schedule' parameter of fit must be one of \('constant', 'cosine'\)"),
    ({"patience": 0}, "The 'patience' parameter of fit must be None or an int >= 1"),
    ({"eval_every": 0}, "The 'eval_every' parameter of fit must be an int >= 1. Got 0"),
    ({"max_steps": -1}, "The 'max_steps' parameter of fit must be None or an int >= 1"),
    ({"weight_decay": -0.1}, "The 'weight_decay' parameter of fit must be None or a float >= 0"),
    ({"seed": -1}, "The 'seed' parameter of fit must be an int >= 0"),
    ({"device": "tpu"}, "The 'prefer' parameter of get_device must be"),
])
def test_fit_rejects_bad_arguments(train_set, val_set, options, message):
    """Check that each invalid fit argument raises a ValueError naming it and what is allowed."""
    with pytest.raises(ValueError, match=message):
        fit_tiny(tiny_cnn(), train_set, val_set, **options)


def test_fit_rejects_a_wrong_output_size(train_set, val_set):
    """Check that a model with the wrong number of outputs gets an error naming reset_classifier."""
    with pytest.raises(ValueError, match=r"outputs shape \(8, 5\) but the dataset has 3 classes.*"
                                         r"reset_classifier\(3\)"):
        fit_tiny(ConstantLogits(num_classes=5), train_set, val_set)
    with pytest.raises(ValueError, match="evaluate: .*the model must output"):
        train.evaluate(ConstantLogits(num_classes=2), val_set, device="cpu")


def test_fit_rejects_other_mistakes(train_set, val_set):
    """Check the errors for a frozen model, patience without val_set, class mismatch and bad augment."""
    frozen = tiny_cnn().requires_grad_(False)
    with pytest.raises(ValueError, match="fit found no trainable parameters"):
        fit_tiny(frozen, train_set, val_set)
    with pytest.raises(ValueError, match="The 'patience' parameter of fit must be None without a val_set"):
        fit_tiny(tiny_cnn(), train_set, None, patience=2)
    other = ImageSet(val_set.images, val_set.labels, ("a", "b", "c"))
    with pytest.raises(ValueError, match="The 'val_set' parameter of fit must be an ImageSet with the same classes "
                                         "as train_set"):
        fit_tiny(tiny_cnn(), train_set, other)
    with pytest.raises(TypeError, match="The 'augment' parameter of fit must be None or a callable"):
        fit_tiny(tiny_cnn(), train_set, val_set, augment="flip")
    with pytest.raises(TypeError, match="The 'model' parameter of fit must be a torch.nn.Module"):
        fit_tiny("model", train_set, val_set)
    with pytest.raises(TypeError, match="The 'param_groups' parameter of fit must be a list of dicts"):
        fit_tiny(tiny_cnn(), train_set, val_set, param_groups=[1])


def test_evaluate_and_per_class_accuracy_reject_bad_input(val_set):
    """Check that evaluate, predict and per_class_accuracy refuse non-ImageSets and bad batch sizes, by name."""
    with pytest.raises(TypeError, match="The 'dataset' parameter of evaluate must be a companion.data.ImageSet"):
        train.evaluate(ConstantLogits(), [1, 2], device="cpu")
    with pytest.raises(ValueError, match="The 'batch_size' parameter of evaluate must be an int >= 1"):
        train.evaluate(ConstantLogits(), val_set, batch_size=0, device="cpu")
    with pytest.raises(TypeError, match="The 'dataset' parameter of predict must be a companion.data.ImageSet"):
        train.predict(ConstantLogits(), None, device="cpu")
    with pytest.raises(TypeError, match="The 'dataset' parameter of per_class_accuracy must be"):
        train.per_class_accuracy(ConstantLogits(), None, device="cpu")


def test_fit_accepts_numpy_integers(train_set, val_set):
    """Check that numpy integers (e.g. from np.arange) work as num_epochs, batch_size, eval_every and seed."""
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=np.int64(2), batch_size=np.int64(8),
                       eval_every=np.int64(2), seed=np.int64(2), patience=np.int64(1))
    assert history.num_epochs == 2 and history.val_epochs == [2]


def test_history_repr_has_no_timings(train_set, val_set):
    """Check that printing a History shows no wall-clock times (nbval compares outputs)."""
    history = fit_tiny(tiny_cnn(), train_set, val_set, num_epochs=1)
    assert "epoch_seconds" not in repr(history) and len(history.epoch_seconds) == 1


def test_model_input_replaces_the_image_pipeline(train_set, val_set):
    """Check that model_input feeds training and validation, and giving the same inputs gives the same weights."""
    seen = []

    def model_input(dataset, indices):
        seen.append(dataset)
        return backbones.preprocess(dataset.images[indices]).contiguous(memory_format=torch.channels_last)

    states = []
    for hook in (None, model_input):
        model = tiny_cnn(seed=0)
        fit_tiny(model, train_set, val_set, model_input=hook)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(d is train_set for d in seen) and any(d is val_set for d in seen)
    metrics = train.evaluate(ConstantLogits(), val_set, device="cpu", model_input=model_input)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and seen[-1] is val_set
    predictions = train.predict(ConstantLogits(), val_set, device="cpu", model_input=model_input)
    assert predictions.shape == (len(val_set),) and seen[-1] is val_set


def test_fit_rejects_a_bad_model_input(train_set, val_set):
    """Check that model_input must be callable and cannot be combined with augment."""
    with pytest.raises(TypeError, match="The 'model_input' parameter of fit must be None or a callable"):
        fit_tiny(tiny_cnn(), train_set, val_set, model_input="cache")
    with pytest.raises(ValueError, match="The 'augment' parameter of fit must be None when 'model_input' supplies"):
        fit_tiny(tiny_cnn(), train_set, val_set, model_input=lambda d, i: None, augment=v2.RandomHorizontalFlip())


def test_a_trailing_batch_of_one_image_is_dropped(train_set):
    """Check that a shuffled epoch drops a last batch of one image (BatchNorm needs two)."""
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    metrics = train.train_one_epoch(model, train_set, optimizer, batch_size=len(train_set) - 1,
                                    device="cpu", generator=torch.Generator().manual_seed(0))
    assert metrics["num_steps"] == 1

"""Tests for companion.strategies: the reuse regimes, their learning-rate search and their evaluation."""

import numpy as np
import pytest
import torch

from companion import adapt, backbones, features, prefix, probes, scratch, strategies, train
from companion.data import ImageSet
from companion.recipes import RECIPES, StrategyConfig

CLASSES = ("red", "green", "blue")
NUM_DEPTHS = backbones.get_spec().num_depths
NUM_FROZEN = {"linear_probe": NUM_DEPTHS, "head_only": NUM_DEPTHS,
              "partial_top2": NUM_DEPTHS - 2, "full_finetune": 0, "lp_ft": 0, "scratch": 0}


def make_set(num_per_class: int, seed: int, classes=CLASSES, present=None) -> ImageSet:
    """Dark 32-px noise images whose class is the one bright colour channel."""
    present = range(len(classes)) if present is None else present
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(list(present)).repeat(num_per_class)  # (N,)
    images = torch.randint(0, 60, (len(labels), 3, 32, 32), dtype=torch.uint8, generator=generator)
    images[torch.arange(len(labels)), labels % 3] += 150  # (N, 3, H, W): class channel bright
    return ImageSet(images, labels, classes)


@pytest.fixture(scope="module")
def train_set():
    return make_set(4, seed=0)


@pytest.fixture(scope="module")
def val_set():
    return make_set(2, seed=1)


pytestmark = pytest.mark.usefixtures("fresh_feature_cache")


def fast(key: str, **changes) -> StrategyConfig:
    """RECIPES[key] with random weights, a validation pass per epoch and at most 2 epochs: seconds, not minutes."""
    options = dict(pretrained=False, max_passes=2, patience=1, batch_size=6, eval_images=1, tuned=())
    if key == "scratch":
        options["scratch_width"] = 4
    return RECIPES[key].with_(**{**options, **changes})


def run(key, train_set, val_set, **kwargs):
    config = fast(key) if isinstance(key, str) else key
    options = dict(lr=None if config.strategy == "linear_probe" else 1e-2, seed=0, device="cpu")
    return strategies.run_strategy(config, train_set, val_set, **{**options, **kwargs})


def expected_trainable(key: str) -> int:
    """Trainable parameters computed independently from a fresh model's stages."""
    if key == "scratch":
        return sum(p.numel() for p in scratch.make_scratch_cnn(3, width=4).parameters())
    model = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    head = sum(p.numel() for p in model.get_classifier().parameters())
    top = backbones.stages(model)[NUM_FROZEN[key]:]
    return head + sum(p.numel() for _, stage in top for p in stage.parameters())


@pytest.fixture
def stem_images(monkeypatch):
    """Count the images that reach conv_stem in every backbone load_backbone builds."""
    seen = []
    load_backbone = backbones.load_backbone

    def counting_load_backbone(*args, **kwargs):
        model = load_backbone(*args, **kwargs)
        model.conv_stem.register_forward_hook(lambda module, args, output: seen.append(len(args[0])))
        return model

    monkeypatch.setattr(backbones, "load_backbone", counting_load_backbone)
    return seen


@pytest.mark.parametrize("key", list(RECIPES))
def test_every_strategy_trains_and_reports(key, train_set, val_set):
    """Check that each recipe returns a trained model, its history or probe, parameter count and config."""
    config = fast(key)
    result = run(config, train_set, val_set)
    assert result.config is config and result.strategy == config.strategy and result.seed == 0
    assert result.lr == (None if key == "linear_probe" else 1e-2)
    assert result.trainable_parameters == expected_trainable(key)
    assert result.num_frozen == NUM_FROZEN[key]
    assert (result.history is None) == (key == "linear_probe")
    assert (result.probe is not None) == (key in ("linear_probe", "lp_ft"))  # LP-FT's first phase is a probe
    if result.history is not None:
        first = [0] if key == "lp_ft" else []  # LP-FT scores its probed head before fine-tuning
        epochs = result.history.num_epochs  # LP-FT may stop at once when fine-tuning does not beat its head
        assert (epochs == 2 or key == "lp_ft") and result.history.val_epochs == first + list(range(1, epochs + 1))
        assert result.val_accuracy == result.history.best_val_accuracy
    else:
        assert result.val_accuracy == result.probe.val_accuracy
    assert 0.0 <= result.val_accuracy <= 1.0 and result.seconds > 0 and not result.model.training
    assert "seconds" not in repr(result) and "Conv2d" not in repr(result)
    scores = strategies.evaluate_strategy(result, val_set, device="cpu")
    assert scores["accuracy"] == pytest.approx(train.evaluate(result.model, val_set, device="cpu")["accuracy"])
    assert scores["per_class"] == pytest.approx(train.per_class_accuracy(result.model, val_set, device="cpu"))
    assert scores["correct"].dtype == bool and scores["correct"].shape == (len(val_set),)
    assert np.array_equal(scores["correct"], (train.predict(result.model, val_set, device="cpu")
                                              == val_set.labels).numpy())
    assert scores["accuracy"] == pytest.approx(scores["correct"].mean())


def test_the_seed_fixes_the_head_and_the_batches(train_set, val_set):
    """Check that the same seed gives bit-identical weights and another seed other weights."""
    first, again, other = (run("head_only", train_set, val_set, seed=seed) for seed in (3, 3, 4))
    head = [r.model.get_classifier().weight for r in (first, again, other)]
    assert torch.equal(head[0], head[1]) and not torch.equal(head[0], head[2])


def test_a_shared_prefix_cache_runs_the_frozen_depths_once_per_image(train_set, val_set, stem_images):
    """Check that with one PrefixCache the frozen backbone sees each image once, across runs and the evaluation."""
    cache = prefix.PrefixCache()
    first = run("head_only", train_set, val_set, prefix_cache=cache, lr=1e-2)
    assert sum(stem_images) == len(train_set) + len(val_set)  # not once per epoch
    second = run("head_only", train_set, val_set, prefix_cache=cache, lr=1e-3)  # same seed: same frozen weights
    assert sum(stem_images) == len(train_set) + len(val_set)
    cached = strategies.evaluate_strategy(second, val_set, prefix_cache=cache, device="cpu")
    assert sum(stem_images) == len(train_set) + len(val_set)
    plain = strategies.evaluate_strategy(second, val_set, device="cpu")
    assert np.array_equal(cached["correct"], plain["correct"]) and cached["accuracy"] == plain["accuracy"]
    assert first.model is not second.model


@pytest.mark.parametrize("key", ["linear_probe", "head_only", "partial_top2"])
def test_a_shared_prefix_cache_gives_the_same_weights_and_predictions(key, train_set, val_set):
    """Check that a run with a warm shared cache reproduces a run with its own cache, and its evaluation."""
    plain = run(key, train_set, val_set)
    cache = prefix.PrefixCache()
    run(key, train_set, val_set, prefix_cache=cache, seed=0)  # fills the cache
    cached = run(key, train_set, val_set, prefix_cache=cache)
    assert len(cache) > 0
    for name, tensor in plain.model.state_dict().items():
        torch.testing.assert_close(cached.model.state_dict()[name], tensor, atol=1e-5, rtol=1e-4)
    expected = strategies.evaluate_strategy(plain, val_set)
    got = strategies.evaluate_strategy(cached, val_set, prefix_cache=cache)
    assert np.array_equal(got["correct"], expected["correct"]) and got["per_class"] == expected["per_class"]


@pytest.mark.parametrize("key, trained_from", [("partial_top2", NUM_DEPTHS - 2), ("head_only", NUM_DEPTHS),
                                               ("full_finetune", 0)])
def test_frozen_depths_stay_bitwise_fixed_and_the_others_train(key, trained_from, train_set, val_set):
    """Check that depths below the trained ones keep their weights and BatchNorm statistics; the others change."""
    result = run(key, train_set, val_set)
    fresh = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    trained_stages, fresh_stages = backbones.stages(result.model), backbones.stages(fresh)
    for depth in range(NUM_DEPTHS):
        trained, original = trained_stages[depth][1].state_dict(), fresh_stages[depth][1].state_dict()
        same = all(torch.equal(trained[k], original[k]) for k in original)
        assert same == (depth < trained_from), depth


def test_partial_finetune_trains_the_head_faster(train_set, val_set, monkeypatch):
    """Check that the head's learning rate is head_lr_mult times the backbone's, per the recipe."""
    groups = []
    fit = train.fit

    def spy_fit(model, *args, **kwargs):
        groups.append(kwargs["param_groups"])
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(train, "fit", spy_fit)
    run(fast("partial_top2", head_lr_mult=4.0), train_set, val_set, lr=1e-3)
    (call,) = groups
    rates = {group["name"]: group["lr"] for group in call}
    assert rates == {"blocks.6": 1e-3, "head": 1e-3, "classifier": pytest.approx(4e-3)}


def test_lp_ft_fits_a_linear_probe_first_then_fine_tunes_everything_from_it(train_set, val_set, monkeypatch):
    """Check that lp_ft starts from the linear probe's head (C chosen on validation), then trains every parameter at lr."""
    calls = []
    fit = train.fit

    def spy_fit(model, *args, **kwargs):
        calls.append({"start": model.get_classifier().weight.detach().clone(), "kwargs": kwargs,
                      "trainable": adapt.count_parameters(model)})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(train, "fit", spy_fit)
    result = run(fast("lp_ft"), train_set, val_set, lr=1e-3)
    (fine_tune,) = calls  # one gradient-descent phase: the probe is a logistic regression, not a trained head
    probe = run(fast("linear_probe").with_(grid=probes.CS), train_set, val_set)
    assert result.probe.C == probe.probe.C and result.probe.val_accuracies == probe.probe.val_accuracies
    torch.testing.assert_close(fine_tune["start"], probe.model.get_classifier().weight)  # starts from the probe
    assert fine_tune["trainable"]["frozen"] == 0  # everything trains
    assert {group["lr"] for group in fine_tune["kwargs"]["param_groups"]} == {1e-3}  # the head included
    assert fine_tune["kwargs"]["validate_first"]  # the probe's head is validation pass 0, a candidate
    assert result.history.val_accuracy[0] == pytest.approx(probe.val_accuracy)
    assert result.trainable_parameters == fine_tune["trainable"]["total"]


def test_linear_probe_head_reproduces_the_sklearn_probe(val_set):
    """Check that the probe copied into the classifier predicts like the sklearn pipeline (3 and 2 classes)."""
    for present in ([0, 1, 2], [0, 1]):  # [0, 1]: a binary probe and one class absent from training
        train_set = make_set(4, seed=0, present=present)
        result = run(fast("linear_probe", grid=(0.1, 1.0)), train_set, val_set)
        assert result.probe.C in (0.1, 1.0) and set(result.probe.val_accuracies) == {0.1, 1.0}
        assert result.history is None
        X = features.extract_features(result.model, val_set, device="cpu")
        expected = result.probe.pipeline.predict(X)
        np.testing.assert_array_equal(train.predict(result.model, val_set, device="cpu").numpy(), expected)
        with torch.no_grad():
            logits_of_absent = result.model(backbones.preprocess(val_set.images, result.model))[:, 2]
        assert bool((logits_of_absent < -1e3).all()) == (present == [0, 1])


def test_a_tuned_probe_fits_only_its_tuned_c(train_set, val_set):
    """Check that a probe recipe with tuned values fits the C tuned for its budget, not the whole grid."""
    config = fast("linear_probe", tuned=((4, 0.1), (40, 1.0)))
    result = run(config, train_set, val_set)
    assert result.probe.C == 0.1 and set(result.probe.val_accuracies) == {0.1}
    assert result.config.grid == (0.1,) and result.config.tuned == ()


def test_without_a_val_set_a_run_trains_to_its_maximum(train_set):
    """Check that without a val_set a run trains for the recipe's maximum and keeps its last weights."""
    result = run("head_only", train_set, None)
    assert result.history.num_epochs == fast("head_only").schedule_for(len(train_set)).max_epochs
    assert result.history.val_epochs == [] and np.isnan(result.val_accuracy)


def test_tune_and_run_picks_the_best_and_breaks_ties_towards_the_smaller_lr(train_set, val_set, monkeypatch):
    """Check that tune_and_run runs each lr once with one shared cache and prefers the smaller lr on ties."""
    seen = []

    class Fake:
        def __init__(self, lr):
            self.lr, self.val_accuracy = lr, {1e-3: 0.5, 3e-3: 0.8, 1e-2: 0.8}[lr]

    def fake_run_strategy(config, train_set, val_set, *, lr, seed, prefix_cache, device):
        seen.append((config, lr, seed, prefix_cache))
        return Fake(lr)

    monkeypatch.setattr(strategies, "run_strategy", fake_run_strategy)
    config = fast("scratch", grid=(1e-2, 1e-3, 3e-3))
    best, scores = strategies.tune_and_run(config, train_set, val_set, seed=2)
    assert best.lr == 3e-3 and scores == {1e-3: 0.5, 3e-3: 0.8, 1e-2: 0.8}
    assert [lr for _, lr, *_ in seen] == [1e-3, 3e-3, 1e-2]
    assert all(call[0] is config and call[2] == 2 for call in seen)
    assert len({id(call[3]) for call in seen}) == 1 and isinstance(seen[0][3], prefix.PrefixCache)


def test_tune_and_run_runs_real_strategies_and_the_probe_once(train_set, val_set):
    """Check that tune_and_run drives run_strategy end to end, and the probe reports its C search."""
    best, scores = strategies.tune_and_run(fast("scratch", grid=(1e-3, 1e-2)), train_set, val_set, device="cpu")
    assert best.lr in (1e-3, 1e-2) and set(scores) == {1e-3, 1e-2}
    assert best.val_accuracy == max(scores.values()) and all(0.0 <= s <= 1.0 for s in scores.values())
    probe, scores = strategies.tune_and_run(fast("linear_probe", grid=(0.1, 1.0)), train_set, val_set, device="cpu")
    assert probe.lr is None and scores == probe.probe.val_accuracies and set(scores) == {0.1, 1.0}


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("key, options, error, message", [
    ("head_only", {"lr": 0}, ValueError, r"The 'lr' parameter of run_strategy must be a float > 0.0. Got 0 instead."),
    ("head_only", {"lr": None}, TypeError, "The 'lr' parameter of run_strategy must be a float > 0.0. Got None"),
    ("head_only", {"seed": -1}, ValueError, "The 'seed' parameter of run_strategy must be an int >= 0"),
    ("head_only", {"prefix_cache": {}}, TypeError,
     "The 'prefix_cache' parameter of run_strategy must be None or a prefix.PrefixCache"),
    ("head_only", {"train_set": None}, TypeError, "The 'train_set' parameter of run_strategy must be a companion.data"),
    ("head_only", {"device": "tpu"}, ValueError, "The 'prefer' parameter of get_device"),
    ("linear_probe", {"val_set": None}, ValueError,
     "The 'val_set' parameter of run_strategy must be an ImageSet for linear_probe: it chooses C on it"),
    ("linear_probe", {"lr": 1e-3}, ValueError,
     "The 'lr' parameter of run_strategy must be None for linear_probe. Got 0.001 instead. The probe uses"),
])
def test_run_strategy_rejects_bad_arguments(train_set, val_set, key, options, error, message):
    """Check that each invalid run_strategy argument raises an error naming it and what is allowed."""
    arguments = {"train_set": train_set, "val_set": val_set, **options}
    with pytest.raises(error, match=message):
        run(key, arguments.pop("train_set"), arguments.pop("val_set"), **arguments)


def test_run_strategy_wants_a_config_and_a_fitting_top_k(train_set, val_set, stem_images):
    """Check that a strategy name instead of a config, or more top stages than depths, is refused before any work."""
    with pytest.raises(TypeError, match=r"The 'config' parameter of run_strategy must be a StrategyConfig "
                                        r"\(companion.recipes.RECIPES\[...\]\)"):
        strategies.run_strategy("head_only", train_set, val_set, lr=1e-2)
    with pytest.raises(ValueError, match=rf"The 'top_k_stages' parameter of run_strategy must be at most {NUM_DEPTHS}, "
                                         r"the number of depths of efficientnet_lite0. Got 10"):
        run(fast("partial_top2", top_k_stages=10), train_set, val_set)
    assert stem_images == []


def test_run_strategy_rejects_mismatched_classes(train_set, val_set):
    """Check that a val_set with other class names is refused before any training."""
    other = ImageSet(val_set.images, val_set.labels, ("a", "b", "c"))
    with pytest.raises(ValueError, match="The 'val_set' parameter of run_strategy must be an ImageSet with the same "
                                         "classes as train_set"):
        run("scratch", train_set, other)


def test_tune_and_run_rejects_a_missing_val_set(train_set):
    """Check that tune_and_run needs the validation split it selects on."""
    with pytest.raises(TypeError, match="The 'val_set' parameter of tune_and_run must be a companion.data.ImageSet"):
        strategies.tune_and_run(fast("scratch"), train_set, None)


def test_evaluate_strategy_rejects_bad_arguments(train_set, val_set):
    """Check that evaluate_strategy wants a StrategyResult and a non-empty ImageSet."""
    with pytest.raises(TypeError, match="The 'result' parameter of evaluate_strategy must be a StrategyResult"):
        strategies.evaluate_strategy(scratch.make_scratch_cnn(3, width=4), val_set)
    result = run("scratch", train_set, val_set)
    with pytest.raises(ValueError, match="The 'test_set' parameter of evaluate_strategy must be a non-empty ImageSet"):
        strategies.evaluate_strategy(result, val_set.subset([]))


def _batchnorm_state(model) -> dict:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()
            if "running_" in name or name.endswith("bn1.weight")}


def test_frozen_batchnorm_keeps_every_statistic_and_scale_of_the_source(train_set, val_set):
    """Check that batchnorm="frozen" partial fine-tuning leaves every BatchNorm buffer and scale as loaded."""
    before = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    result = run(fast("partial_top2", batchnorm="frozen"), train_set, val_set)
    after = result.model.state_dict()
    for name, tensor in _batchnorm_state(before).items():
        assert torch.equal(tensor, after[name].cpu()), name
    trainable = {name for name, p in result.model.named_parameters() if p.requires_grad}
    assert not any(name.startswith(("blocks.6.0.bn", "conv_head", "bn2")) and "bn" in name for name in trainable)


def test_default_batchnorm_lets_the_unfrozen_statistics_adapt(train_set, val_set):
    """Check the control: with batchnorm="train" the top depths' running statistics do move."""
    before = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    after = run(fast("partial_top2"), train_set, val_set).model.state_dict()
    assert not torch.equal(before.state_dict()["bn2.running_mean"], after["bn2.running_mean"].cpu())
    assert torch.equal(before.state_dict()["bn1.running_mean"], after["bn1.running_mean"].cpu())


def test_adabn_reestimates_the_statistics_before_a_frozen_head_trains(train_set, val_set):
    """Check that batchnorm="adabn" replaces the stem's statistics by the training images' and trains only the head."""
    loaded = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    result = run(fast("head_only", batchnorm="adabn"), train_set, val_set)
    after = result.model.state_dict()
    assert not torch.equal(loaded.state_dict()["bn1.running_mean"], after["bn1.running_mean"].cpu())
    expected = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    adapt.adabn(expected, train_set, device="cpu")
    assert torch.allclose(expected.state_dict()["bn1.running_mean"], after["bn1.running_mean"].cpu(), atol=1e-5)
    assert torch.equal(loaded.state_dict()["conv_stem.weight"], after["conv_stem.weight"].cpu())
    assert result.trainable_parameters == sum(p.numel() for p in loaded.get_classifier().parameters())


def test_batchnorm_modes_are_validated():
    """Check that an unknown batchnorm mode, or one for scratch, is refused with the allowed values."""
    with pytest.raises(ValueError, match="'batchnorm' parameter of StrategyConfig must be one of"):
        RECIPES["head_only"].with_(batchnorm="target")
    with pytest.raises(ValueError, match="'train' for scratch"):
        RECIPES["scratch"].with_(batchnorm="frozen")

"""Tests for companion.strategies: the reuse regimes, the prefix cache, LR tuning and evaluation."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from companion import adapt, backbones, features, strategies, train
from companion.data import ImageSet

CLASSES = ("red", "green", "blue")


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


def run(strategy, train_set, val_set, **kwargs):
    options = dict(lr=1e-2, num_epochs=2, pretrained=False, batch_size=6, device="cpu", scratch_width=4)
    options.update(kwargs)
    return strategies.run_strategy(strategy, train_set, val_set, **options)


def expected_trainable(strategy: str) -> int:
    """Trainable parameters computed independently from a fresh model's stages."""
    if strategy == "scratch":
        return sum(p.numel() for p in train.make_scratch_cnn(3, width=4).parameters())
    model = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    head = sum(p.numel() for p in model.get_classifier().parameters())
    top = {"linear_probe": 0, "head_only": 0, "partial_finetune": 2, "full_finetune": 9, "lp_ft": 9}[strategy]
    stages = backbones.stages(model)[backbones.NUM_DEPTHS - top:] if top else []
    return head + sum(p.numel() for _, stage in stages for p in stage.parameters())


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_every_strategy_trains_and_reports(strategy, train_set, val_set):
    """Check that each strategy returns a trained model, its phases, parameter count and config."""
    result = run(strategy, train_set, val_set, max_steps=2)
    phases = {"linear_probe": [], "lp_ft": ["linear_probe", "fine_tune"]}.get(strategy, ["fit"])
    assert result.strategy == strategy and list(result.histories) == phases
    assert result.trainable_parameters == expected_trainable(strategy)
    assert all(history.num_steps == 2 for history in result.histories.values())
    assert 0.0 <= result.val_accuracy <= 1.0 and result.seconds > 0 and not result.model.training
    assert result.config["strategy"] == strategy and result.config["lr"] == 1e-2
    assert "seconds" not in repr(result) and "Conv2d" not in repr(result)
    scores = strategies.evaluate_strategy(result, val_set, device="cpu")
    assert scores["accuracy"] == pytest.approx(train.evaluate(result.model, val_set, device="cpu")["accuracy"])
    assert scores["per_class"] == pytest.approx(train.per_class_accuracy(result.model, val_set, device="cpu"))


@pytest.fixture
def stem_calls(monkeypatch):
    """Count forward calls of conv_stem in every backbone load_backbone builds."""
    calls = []
    load_backbone = backbones.load_backbone

    def counting_load_backbone(*args, **kwargs):
        model = load_backbone(*args, **kwargs)
        model.conv_stem.register_forward_hook(lambda *_: calls.append(1))
        return model

    monkeypatch.setattr(backbones, "load_backbone", counting_load_backbone)
    return calls


@pytest.mark.parametrize("strategy", ["partial_finetune", "head_only"])
def test_prefix_cache_gives_the_recomputed_result(strategy, train_set, val_set, stem_calls):
    """Check that cached prefix activations give the recomputing path's weights and run the prefix once."""
    cached = run(strategy, train_set, val_set, cache_prefix=True)
    cached_calls = len(stem_calls)
    recomputed = run(strategy, train_set, val_set, cache_prefix=False)
    assert cached_calls == 3  # 2 train batches + 1 val batch, once, not once per epoch
    assert len(stem_calls) - cached_calls == 2 * (2 + 1)  # 2 epochs x (2 steps + 1 val batch)
    np.testing.assert_allclose(cached.history.train_loss, recomputed.history.train_loss, rtol=1e-5)
    reference = recomputed.model.state_dict()
    for name, tensor in cached.model.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-5)


def test_augmentation_recomputes_the_prefix(train_set, val_set, stem_calls):
    """Check that with augment the frozen prefix runs every step (augmented images differ)."""
    run("partial_finetune", train_set, val_set, num_epochs=1, augment=v2.RandomHorizontalFlip())
    assert len(stem_calls) == 2 + 1


@pytest.mark.parametrize("cache_prefix", [True, False])
def test_partial_finetune_leaves_the_frozen_depths_bitwise_fixed(train_set, val_set, cache_prefix):
    """Check that depths below the top 2 keep their weights and BatchNorm statistics; the top ones change."""
    result = run("partial_finetune", train_set, val_set, top_k_stages=2, cache_prefix=cache_prefix)
    fresh = backbones.load_backbone(pretrained=False, num_classes=3, seed=0)
    trained_stages, fresh_stages = backbones.stages(result.model), backbones.stages(fresh)
    for depth in range(backbones.NUM_DEPTHS):
        trained, original = trained_stages[depth][1].state_dict(), fresh_stages[depth][1].state_dict()
        same = all(torch.equal(trained[k], original[k]) for k in original)
        assert same == (depth < backbones.NUM_DEPTHS - 2), depth


def test_lp_ft_fine_tunes_from_the_probe_head_with_a_new_optimizer(train_set, val_set, monkeypatch):
    """Check that lp_ft trains the head at lr x head_lr_mult, then everything from that head at lr."""
    calls = []
    fit = train.fit

    def spy_fit(model, *args, **kwargs):
        head = getattr(model, "model", model).get_classifier()  # a cached-prefix suffix wraps the model
        start = head.weight.detach().clone()
        trainable = adapt.count_parameters(model)["trainable"]
        history = fit(model, *args, **kwargs)
        calls.append({"start": start, "end": head.weight.detach().clone(), "trainable": trainable,
                      "kwargs": kwargs, "history": history})
        return history

    monkeypatch.setattr(train, "fit", spy_fit)
    result = run("lp_ft", train_set, val_set, lr=1e-3, head_lr_mult=10.0, lp_epochs=1)
    probe, fine_tune = calls
    assert torch.equal(fine_tune["start"], probe["end"]) and not torch.equal(probe["start"], probe["end"])
    assert probe["trainable"] == 3843 and fine_tune["trainable"] == result.trainable_parameters > 3_000_000
    assert probe["kwargs"]["lr"] == pytest.approx(1e-2) and probe["kwargs"]["num_epochs"] == 1
    assert fine_tune["kwargs"]["num_epochs"] == 2
    assert {group["lr"] for group in fine_tune["kwargs"]["param_groups"]} == {1e-3}  # head included
    assert result.histories == {"linear_probe": probe["history"], "fine_tune": fine_tune["history"]}


def test_linear_probe_head_reproduces_the_sklearn_probe(val_set):
    """Check that the probe copied into the classifier predicts like the sklearn pipeline (3 and 2 classes)."""
    for present in ([0, 1, 2], [0, 1]):  # [0, 1]: a binary probe and one class absent from training
        train_set = make_set(4, seed=0, present=present)
        result = run("linear_probe", train_set, val_set, lr=None, num_epochs=None, Cs=(0.1, 1.0))
        assert result.probe.C in (0.1, 1.0) and result.histories == {} and result.history is None
        X = features.extract_features(result.model, val_set, device="cpu")
        expected = result.probe.pipeline.predict(X)
        np.testing.assert_array_equal(train.predict(result.model, val_set, device="cpu").numpy(), expected)
        logits_of_absent = result.model(backbones.preprocess(val_set.images))[:, 2]
        assert (logits_of_absent < -1e3).all() == (present == [0, 1])


def test_tune_lr_picks_the_best_and_breaks_ties_towards_the_smaller_lr(train_set, val_set, monkeypatch):
    """Check that tune_lr runs each lr once, reports every val accuracy and prefers the smaller lr on ties."""
    seen = []

    class Fake:
        def __init__(self, lr):
            self.val_accuracy = {1e-3: 0.5, 3e-3: 0.8, 1e-2: 0.8}[lr]

    def fake_run_strategy(strategy, train_set, val_set, *, lr, num_epochs, seed, **options):
        seen.append((strategy, lr, num_epochs, seed, options))
        return Fake(lr)

    monkeypatch.setattr(strategies, "run_strategy", fake_run_strategy)
    best, scores = strategies.tune_lr("scratch", train_set, val_set, [1e-2, 1e-3, 3e-3], num_epochs=3, seed=2,
                                      batch_size=6)
    assert best == 3e-3 and scores == {1e-3: 0.5, 3e-3: 0.8, 1e-2: 0.8}
    assert [lr for _, lr, *_ in seen] == [1e-3, 3e-3, 1e-2]
    assert all(call[2:] == (3, 2, {"batch_size": 6}) for call in seen)


def test_tune_lr_runs_real_strategies(train_set, val_set):
    """Check that tune_lr drives run_strategy end to end and returns a grid value."""
    best, scores = strategies.tune_lr("scratch", train_set, val_set, (1e-3, 1e-2), num_epochs=1, batch_size=6,
                                      scratch_width=4, device="cpu")
    assert best in (1e-3, 1e-2) and set(scores) == {1e-3, 1e-2}
    assert all(0.0 <= score <= 1.0 for score in scores.values())


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("options, error, message", [
    ({"strategy": "fine_tune"}, ValueError, r"The 'strategy' parameter of run_strategy must be one of "
                                            r"\('linear_probe', 'head_only', 'partial_finetune'"),
    ({"lr": 0}, ValueError, "The 'lr' parameter of run_strategy must be a float > 0. Got 0 instead."),
    ({"lr": None}, ValueError, "The 'lr' parameter of run_strategy must be a float > 0"),
    ({"num_epochs": 0}, ValueError, "The 'num_epochs' parameter of run_strategy must be an int >= 1"),
    ({"top_k_stages": 0}, ValueError, r"The 'top_k_stages' parameter of run_strategy must be an int in \[1, 9\]. "
                                      "Got 0 instead."),
    ({"top_k_stages": 10}, ValueError, r"must be an int in \[1, 9\]. Got 10"),
    ({"head_lr_mult": -1.0}, ValueError, "The 'head_lr_mult' parameter of run_strategy must be a float > 0"),
    ({"seed": -1}, ValueError, "The 'seed' parameter of run_strategy must be an int >= 0"),
    ({"batch_size": 0}, ValueError, "The 'batch_size' parameter of run_strategy must be an int >= 1"),
    ({"patience": 0}, ValueError, "The 'patience' parameter of run_strategy must be None or an int >= 1"),
    ({"lp_epochs": 0}, ValueError, "The 'lp_epochs' parameter of run_strategy must be None or an int >= 1"),
    ({"max_steps": 0}, ValueError, "The 'max_steps' parameter of run_strategy must be None or an int >= 1"),
    ({"pretrained": "yes"}, TypeError, "The 'pretrained' parameter of run_strategy must be a bool"),
    ({"cache_prefix": 1}, TypeError, "The 'cache_prefix' parameter of run_strategy must be a bool"),
    ({"augment": "flip"}, TypeError, "The 'augment' parameter of run_strategy must be None or a callable"),
    ({"train_set": None}, TypeError, "The 'train_set' parameter of run_strategy must be a companion.data"),
    ({"strategy": "linear_probe", "val_set": None}, ValueError, "linear_probe.*needs a val_set"),
    ({"strategy": "linear_probe", "augment": v2.RandomHorizontalFlip()}, ValueError,
     "linear_probe .* cannot use 'augment'. Use strategy='head_only'"),
    ({"strategy": "linear_probe", "lr": -1.0}, ValueError, r"must be a float > 0 \(ignored by linear_probe\)"),
])
def test_run_strategy_rejects_bad_arguments(train_set, val_set, options, error, message):
    """Check that each invalid run_strategy argument raises an error naming it and what is allowed."""
    arguments = {"strategy": "head_only", "train_set": train_set, "val_set": val_set, **options}
    with pytest.raises(error, match=message):
        run(arguments.pop("strategy"), arguments.pop("train_set"), arguments.pop("val_set"), **arguments)


def test_run_strategy_rejects_mismatched_classes(train_set, val_set):
    """Check that a val_set with other class names is refused before any training."""
    other = ImageSet(val_set.images, val_set.labels, ("a", "b", "c"))
    with pytest.raises(ValueError, match="The 'val_set' parameter of run_strategy must have the same classes"):
        run("scratch", train_set, other)


@pytest.mark.parametrize("strategy, grid, error, message", [
    ("linear_probe", [1e-3], ValueError, "tune_lr cannot tune 'linear_probe'.*Cs="),
    ("scratch", [], ValueError, "The 'lr_grid' parameter of tune_lr must be a non-empty sequence of distinct"),
    ("scratch", [1e-3, 1e-3], ValueError, "of distinct floats > 0"),
    ("scratch", [1e-3, 0.0], ValueError, "of distinct floats > 0"),
    ("scratch", None, ValueError, "The 'lr_grid' parameter of tune_lr"),
    ("magic", [1e-3], ValueError, "The 'strategy' parameter of tune_lr must be one of"),
])
def test_tune_lr_rejects_bad_arguments(train_set, val_set, strategy, grid, error, message):
    """Check the errors of tune_lr for linear_probe, empty, repeated and non-positive grids."""
    with pytest.raises(error, match=message):
        strategies.tune_lr(strategy, train_set, val_set, grid, num_epochs=1)
    with pytest.raises(TypeError, match="The 'val_set' parameter of tune_lr must be a companion.data.ImageSet"):
        strategies.tune_lr("scratch", train_set, None, [1e-3], num_epochs=1)


def test_evaluate_strategy_rejects_bad_arguments(train_set, val_set):
    """Check that evaluate_strategy wants a StrategyResult and a non-empty ImageSet."""
    with pytest.raises(TypeError, match="The 'result' parameter of evaluate_strategy must be a StrategyResult"):
        strategies.evaluate_strategy(train.make_scratch_cnn(3, width=4), val_set)
    result = run("scratch", train_set, val_set, max_steps=1)
    with pytest.raises(ValueError, match="The 'test_set' parameter of evaluate_strategy must not be empty"):
        strategies.evaluate_strategy(result, val_set.subset([]))


@pytest.mark.parametrize("strategy", ["linear_probe", "head_only", "partial_finetune"])
def test_prefix_cache_gives_the_same_predictions(strategy, train_set, val_set):
    """Check that a shared prefix_cache reproduces the uncached run and its evaluation on frozen depths."""
    cache = {}
    plain = run(strategy, train_set, val_set)
    cached = run(strategy, train_set, val_set, prefix_cache=cache)
    assert cache, "the cache was not filled"
    for name, tensor in plain.model.state_dict().items():
        torch.testing.assert_close(cached.model.state_dict()[name], tensor, atol=1e-5, rtol=1e-4)
    expected = strategies.evaluate_strategy(plain, val_set)
    assert strategies.evaluate_strategy(cached, val_set, prefix_cache=cache) == expected


def test_run_grid_runs_every_config_budget_and_seed_and_summarizes(monkeypatch):
    """Check that run_grid gives one row per run with per-budget options, and summarize_grid averages them."""
    pool, val, test = make_set(4, seed=0), make_set(2, seed=1), make_set(2, seed=2)
    calls = []
    original = strategies.run_strategy

    def spy(strategy, train_set, val_set, **options):
        calls.append((strategy, len(train_set), val_set is None, options.get("num_epochs")))
        return original(strategy, train_set, val_set, **options)

    monkeypatch.setattr(strategies, "run_strategy", spy)
    configs = {"probe": {"strategy": "linear_probe", "pretrained": False},
               "full": {"strategy": "full_finetune", "lr": 1e-2, "num_epochs": {1: 1, 2: 2}, "pretrained": False,
                        "validate": False, "batch_size": 6}}
    rows = strategies.run_grid(configs, pool, val, test, budgets=[1, 2], seeds=[0, 1], device="cpu")
    assert len(rows) == 8 and set(rows[0]) == set(strategies.GRID_COLUMNS)
    assert ("full_finetune", 6, True, 2) in calls and ("linear_probe", 3, False, None) in calls
    summary = strategies.summarize_grid(rows)
    assert [(row["label"], row["n_per_class"]) for row in summary] == [("probe", 1), ("full", 1), ("probe", 2),
                                                                       ("full", 2)]
    first = [row["test_accuracy"] for row in rows if row["label"] == "probe" and row["n_per_class"] == 1]
    assert summary[0]["runs"] == first and summary[0]["mean"] == pytest.approx(np.mean(first))
    assert summary[0]["sd"] == pytest.approx(np.std(first))


def test_run_grid_and_summarize_grid_reject_bad_arguments(train_set, val_set):
    """Check that run_grid and summarize_grid name the bad argument and what is allowed."""
    with pytest.raises(TypeError, match="'configs' parameter of run_grid"):
        strategies.run_grid({"x": {"strategy": "magic"}}, train_set, val_set, val_set, budgets=[1], seeds=[0])
    with pytest.raises(ValueError, match="'budgets' parameter of run_grid"):
        strategies.run_grid({"p": {"strategy": "linear_probe"}}, train_set, val_set, val_set, budgets=[99],
                            seeds=[0])
    with pytest.raises(ValueError, match="no entry for 1 labels per class"):
        strategies.run_grid({"h": {"strategy": "head_only", "lr": 1e-2, "num_epochs": {5: 1}}}, train_set, val_set,
                            val_set, budgets=[1], seeds=[0])
    with pytest.raises(TypeError, match="summarize_grid"):
        strategies.summarize_grid([{"label": "x"}])
    with pytest.raises(TypeError, match="prefix_cache"):
        run("head_only", train_set, val_set, prefix_cache=[])

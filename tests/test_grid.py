"""Tests for companion.grid: strategies x budgets x seeds, the learning-rate search, the run cache, the checks."""

import numpy as np
import pytest
import torch

from companion import compare, data, grid, strategies, train
from companion.recipes import RECIPES

ROW_KEYS = {"label", "strategy", "n_per_class", "seed", "lr", "C", "search", "val_accuracy", "test_accuracy",
            "correct", "epochs_run", "best_epoch", "stopped_early", "hit_max", "kept_first", "trainable_parameters",
            "seconds"}
HEAD = RECIPES["head_only"].with_(max_passes=3, patience=1)
GRID = {"probe": RECIPES["linear_probe"], "head": HEAD}


@pytest.fixture(scope="module")
def parts():
    pool = data.make_dataset(4, image_size=32, seed=0, cache=False)  # 24 images
    return data.stratified_split(pool, (0.5, 0.25, 0.25), seed=0)  # 2 / 1 / 1 per class


@pytest.fixture
def run_cache(tmp_path, monkeypatch):
    """A run cache of this test's own."""
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path))
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def grid_run(parts, tmp_path_factory):
    """One real grid (2 recipes x 2 budgets x 2 seeds) and the cache folder it filled."""
    folder = tmp_path_factory.mktemp("grid-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPANION_CACHE_DIR", str(folder))
        rows = grid.run_grid(GRID, parts["train"], parts["val"], parts["test"], budgets=[1, 2], seeds=[0, 1],
                             search=True, device="cpu")
    return rows, folder


@pytest.fixture
def rows(grid_run):
    return [dict(row) for row in grid_run[0]]


def test_run_grid_gives_one_row_per_recipe_budget_and_seed(rows, parts):
    """Check the rows' order and keys, and that the first seed's search chose the lr the other seed used."""
    assert [(row["n_per_class"], row["label"], row["seed"]) for row in rows] == [
        (n, label, seed) for n in (1, 2) for label in GRID for seed in (0, 1)]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["strategy"] == GRID[row["label"]].strategy
        assert row["correct"].dtype == bool and row["correct"].shape == (len(parts["test"]),)
        assert row["test_accuracy"] == pytest.approx(row["correct"].mean())
    for n in (1, 2):
        head = [row for row in rows if row["label"] == "head" and row["n_per_class"] == n]
        assert set(head[0]["search"]) == set(HEAD.grid) and head[1]["search"] is None
        assert head[0]["lr"] == max(sorted(HEAD.grid), key=lambda lr: (head[0]["search"][lr], -lr))
        assert head[1]["lr"] == head[0]["lr"] and head[0]["C"] is None
        assert head[0]["val_accuracy"] == head[0]["search"][head[0]["lr"]]
        assert all(1 <= row["epochs_run"] <= HEAD.schedule_for(6 * n).max_epochs for row in head)
        probe = [row for row in rows if row["label"] == "probe" and row["n_per_class"] == n]
        assert set(probe[0]["search"]) == set(RECIPES["linear_probe"].grid) and probe[1]["search"] is None
        assert probe[0]["C"] in RECIPES["linear_probe"].grid and probe[1]["C"] == probe[0]["C"]
        assert all(row["lr"] is None and row["epochs_run"] == 0 and not row["hit_max"] for row in probe)


def test_the_training_sets_are_the_same_images_for_every_recipe(parts, run_cache, monkeypatch):
    """Check that budget n and seed s train every recipe on sample_per_class(train_pool, n, seed=s), seeded s."""
    seen = []
    real = strategies.run_strategy

    def spy(config, train_set, val_set, **kwargs):
        seen.append((config.strategy, kwargs["seed"], train_set.images.clone(), val_set is parts["val"]))
        return real(config, train_set, val_set, **kwargs)

    monkeypatch.setattr(strategies, "run_strategy", spy)
    grid.run_grid(GRID, parts["train"], parts["val"], parts["test"], budgets=[1], seeds=[3, 5], search=True,
                  device="cpu")
    for strategy, seed, images, on_val in seen:
        assert on_val and torch.equal(images, data.sample_per_class(parts["train"], 1, seed=seed).images)
    assert [(strategy, seed) for strategy, seed, *_ in seen] == [
        ("linear_probe", 3), ("linear_probe", 5)] + [("head_only", 3)] * len(HEAD.grid) + [("head_only", 5)]


def test_the_run_cache_returns_the_same_rows_without_training(grid_run, parts, monkeypatch):
    """Check that a second identical grid reads every row from the disk cache, and cache=False trains again."""
    rows, folder = grid_run
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(folder))
    run_cache = folder / "runs"
    assert len(list(run_cache.glob("run_*.npz"))) == 2 * (2 + len(HEAD.grid) + 1)  # every run, searched ones too

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the run was cached")

    monkeypatch.setattr(strategies, "run_strategy", no_training)
    again = grid.run_grid(GRID, parts["train"], parts["val"], parts["test"], budgets=[1, 2], seeds=[0, 1],
                          search=True, device="cpu")
    assert len(again) == len(rows)
    for old, new in zip(rows, again):
        assert set(new) == set(old)
        for key in old:
            if key == "correct":
                assert np.array_equal(new[key], old[key]) and new[key].dtype == bool
            else:
                assert new[key] == old[key], key
    with pytest.raises(AssertionError, match="trained although"):
        grid.run_grid(GRID, parts["train"], parts["val"], parts["test"], budgets=[1], seeds=[0], search=True,
                      device="cpu", cache=False)
    with pytest.raises(AssertionError, match="trained although"):  # another recipe is another run
        grid.run_grid({"head": HEAD.with_(batch_size=8)}, parts["train"], parts["val"], parts["test"], budgets=[1],
                      seeds=[0], search=True, device="cpu")


def fake_result(config, train_set, *, lr, seed, val_accuracy):
    history = None
    if config.tunes_lr:
        history = train.History(train_loss=[1.0, 0.5], val_epochs=[1, 2], val_accuracy=[val_accuracy / 2, val_accuracy],
                                val_loss=[1.0, 0.9], best_epoch=2)
    return strategies.StrategyResult(config, lr, seed, torch.nn.Identity(), history, 10, 9, 0.1, None)


def test_tune_budget_searches_once_and_reuses_the_rate_everywhere(parts, run_cache, monkeypatch):
    """Check that tune_budget searches the grid at that budget first, then uses its lr at every budget and seed."""
    calls = []
    scores = {1e-3: 0.4, 3e-3: 0.9, 1e-2: 0.9}

    def fake_run(config, train_set, val_set, *, lr, seed, prefix_cache, device):
        calls.append((len(train_set) // 6, lr, seed))
        return fake_result(config, train_set, lr=lr, seed=seed, val_accuracy=scores[lr])

    def fake_evaluate(result, test_set, **kwargs):
        return {"accuracy": 0.5, "correct": np.arange(len(test_set)) % 2 == 0}

    monkeypatch.setattr(strategies, "run_strategy", fake_run)
    monkeypatch.setattr(strategies, "evaluate_strategy", fake_evaluate)
    rows = grid.run_grid({"head": HEAD.with_(grid=tuple(scores))}, parts["train"], parts["val"], parts["test"],
                         budgets=[1, 2], seeds=[0, 1], search=True, tune_budget=2, device="cpu", cache=False)
    assert calls == [(2, 1e-3, 0), (2, 3e-3, 0), (2, 1e-2, 0), (2, 3e-3, 1), (1, 3e-3, 0), (1, 3e-3, 1)]
    assert [row["n_per_class"] for row in rows] == [1, 1, 2, 2]  # in the order of budgets
    assert [row["search"] is not None for row in rows] == [False, False, True, False]
    assert all(row["lr"] == 3e-3 for row in rows)  # the tie went to the smaller rate


def test_without_search_every_run_uses_the_recipe_tuned_value(parts, run_cache, monkeypatch):
    """Check that search=False runs each recipe once per seed at value_for(budget), the probe with that C only."""
    calls = []

    def fake_run(config, train_set, val_set, *, lr, seed, prefix_cache, device):
        assert lr is None  # run_strategy resolves the recipe's tuned value itself
        lr = config.value_for(len(train_set) // 6)
        calls.append((config.strategy, len(train_set) // 6, lr, config.grid if not config.tunes_lr else None))
        return fake_result(config, train_set, lr=lr, seed=seed, val_accuracy=0.5)

    monkeypatch.setattr(strategies, "run_strategy", fake_run)
    monkeypatch.setattr(strategies, "evaluate_strategy",
                        lambda result, test_set, **kwargs: {"accuracy": 0.5, "correct": np.ones(len(test_set), bool)})
    head = HEAD.with_(tuned=((1, HEAD.grid[0]), (2, HEAD.grid[-1])))
    rows = grid.run_grid({"head": head}, parts["train"], parts["val"], parts["test"], budgets=[1, 2], seeds=[0, 1],
                         device="cpu", cache=False)
    assert calls == [("head_only", 1, HEAD.grid[0], None)] * 2 + [("head_only", 2, HEAD.grid[-1], None)] * 2
    assert all(row["search"] is None for row in rows)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="The 'lr' parameter of run_strategy must be a float > 0.0. Got None "
                                         "instead. Pass lr, or give the recipe tuned values"):
        grid.run_grid({"head": HEAD.with_(tuned=())}, parts["train"], parts["val"], parts["test"], budgets=[1], seeds=[0],
                      device="cpu", cache=False)


def test_summarize_gives_each_recipe_and_budget_its_interval(rows):
    """Check that summarize averages the seeds with compare.accuracy_interval and keeps the runs."""
    summary = grid.summarize(rows)
    assert list(summary) == [(label, n) for n in (1, 2) for label in GRID]
    for (label, n), cell in summary.items():
        members = [row for row in rows if row["label"] == label and row["n_per_class"] == n]
        assert cell["runs"] == [row["test_accuracy"] for row in members] and cell["num_seeds"] == 2
        assert (cell["mean"], cell["low"], cell["high"]) == compare.accuracy_interval([r["correct"] for r in members])
        assert cell["sd"] == pytest.approx(np.std(cell["runs"])) and cell["low"] <= cell["mean"] <= cell["high"]


def test_schedule_check_flags_a_run_that_hit_its_maximum(rows):
    """Check that the table has a line per recipe and budget and flags MAX where some seed used up its epochs."""
    rows = [dict(row, hit_max=False, stopped_early=row["label"] == "head") for row in rows]
    rows[-1] = dict(rows[-1], hit_max=True, stopped_early=False)  # head, 2 labels per class, seed 1
    lines = grid.schedule_check(rows).splitlines()
    assert lines[0].split()[:3] == ["strategy", "labels/class", "lr"] and len(lines) == 1 + 4
    flagged = [line for line in lines[1:] if line.endswith("MAX")]
    assert len(flagged) == 1 and flagged[0].split()[:2] == ["head", "2"] and "1 of 2" in flagged[0]
    probe_line = next(line for line in lines[1:] if line.startswith("probe"))
    assert "C " in probe_line and not probe_line.endswith("MAX")  # the probe has no epochs to use up
    assert probe_line.split()[-4:] == ["-", "-", "-", "-"]  # nor a patience or a first check


def test_schedule_check_counts_the_runs_that_kept_their_first_check(rows):
    """Check the 'kept 1st' column: seeds whose best weights were those of their first validation pass."""
    rows = [dict(row, kept_first=row["label"] == "head" and row["seed"] == 0) for row in rows]
    head_lines = [line for line in grid.schedule_check(rows).splitlines() if line.startswith("head")]
    assert head_lines and all(line.split()[-3:] == ["1", "of", "2"] for line in head_lines)


def test_compare_rows_pairs_the_runs_by_seed(rows):
    """Check that compare_rows is paired_difference of the two recipes' runs matched seed by seed, not by position."""
    at_two = [row for row in rows if row["n_per_class"] == 2]
    expected = compare.paired_difference([r["correct"] for r in at_two if r["label"] == "head"],
                                         [r["correct"] for r in at_two if r["label"] == "probe"],
                                         names=("head", "probe"))
    assert grid.compare_rows(rows, "head", "probe", 2) == expected
    good, half = np.ones(8, bool), np.arange(8) < 4
    made = [{"label": "a", "n_per_class": 5, "seed": 0, "correct": good},
            {"label": "a", "n_per_class": 5, "seed": 1, "correct": half},
            {"label": "b", "n_per_class": 5, "seed": 1, "correct": half},  # listed in the other order
            {"label": "b", "n_per_class": 5, "seed": 0, "correct": good}]
    paired = grid.compare_rows(made, "a", "b", 5)
    assert (paired.mean, paired.low, paired.high, paired.num_seeds) == (0.0, 0.0, 0.0, 2)  # the same, seed by seed
    with pytest.raises(ValueError, match="The 'b' parameter of compare_rows must be a label run at 2 labels per class: "
                                         r"one of \['head', 'probe'\]"):
        grid.compare_rows(rows, "head", "scratch", 2)
    with pytest.raises(ValueError, match="The 'a' parameter of compare_rows must be a label run at 3 labels per class"):
        grid.compare_rows(rows, "head", "probe", 3)


@pytest.mark.parametrize("changes, error, match", [
    ({"recipes": {"probe": "linear_probe"}}, TypeError, "The 'recipes' parameter of run_grid must be a non-empty dict "
                                                        "of label -> StrategyConfig"),
    ({"recipes": {}}, ValueError, "The 'recipes' parameter of run_grid"),
    ({"budgets": []}, ValueError, "The 'budgets' parameter of run_grid must be a non-empty sequence"),
    ({"budgets": [3]}, ValueError, r"The 'budgets' parameter of run_grid must be an int in \[1, 2\]. Got 3"),
    ({"seeds": [0, 0]}, ValueError, "The 'seeds' parameter of run_grid must be a non-empty list of distinct seeds"),
    ({"seeds": [-1]}, ValueError, "The 'seeds' parameter of run_grid must be an int >= 0"),
    ({"tune_budget": 5}, ValueError,
     r"The 'tune_budget' parameter of run_grid must be None or one of the budgets \[1\]"),
    ({"cache": 1}, TypeError, "The 'cache' parameter of run_grid must be True or False"),
    ({"search": "yes"}, TypeError, "The 'search' parameter of run_grid must be True or False"),
    ({"prefix_cache": {}}, TypeError, "The 'prefix_cache' parameter of run_grid must be None or a prefix.PrefixCache"),
    ({"test_set": None}, TypeError, "The 'test_set' parameter of run_grid must be a companion.data.ImageSet"),
])
def test_run_grid_rejects_bad_arguments(parts, changes, error, match, monkeypatch):
    """Check that run_grid names the bad argument and what is allowed, before any training."""
    monkeypatch.setattr(strategies, "run_strategy", lambda *a, **k: pytest.fail("trained"))
    arguments = {"recipes": GRID, "train_pool": parts["train"], "val_set": parts["val"], "test_set": parts["test"],
                 "budgets": [1], "seeds": [0], "search": True, **changes}
    with pytest.raises(error, match=match):
        grid.run_grid(arguments.pop("recipes"), arguments.pop("train_pool"), arguments.pop("val_set"),
                      arguments.pop("test_set"), **arguments)


def test_summarize_and_schedule_check_reject_what_are_not_rows():
    """Check that the readers of rows name what they expect."""
    for reader in (grid.summarize, grid.schedule_check):
        with pytest.raises(ValueError, match="a non-empty list of run_grid rows"):
            reader([])
        with pytest.raises(ValueError, match="a non-empty list of run_grid rows"):
            reader([{"label": "x"}])


def synthetic_rows(accuracies: dict, parameters: dict, n_per_class: int = 20, seeds=(0, 1, 2),
                   strategies: dict | None = None) -> list[dict]:
    """Rows of three seeds per recipe on 600 test images, each seed right on a given share of them."""
    rows, strategies = [], strategies or {}
    for label, shares in accuracies.items():
        for seed, share in zip(seeds, shares):
            correct = np.zeros(600, bool)
            correct[np.random.default_rng(seed).permutation(600)[:int(share * 600)]] = True
            rows.append({"label": label, "strategy": strategies.get(label, "head_only"), "n_per_class": n_per_class,
                         "seed": seed,
                         "lr": 1e-3, "C": None, "search": None, "val_accuracy": share, "test_accuracy": share,
                         "correct": correct, "epochs_run": 10, "best_epoch": 5, "stopped_early": True,
                         "hit_max": False, "trainable_parameters": parameters[label], "seconds": 1.0})
    return rows


def test_ranking_ties_what_the_interval_cannot_separate_and_names_the_cheapest():
    """Check the best first, ties where the paired interval includes 0, and the fewest parameters among the tied."""
    rows = synthetic_rows({"big": (0.80, 0.82, 0.81), "small": (0.80, 0.81, 0.80), "bad": (0.40, 0.42, 0.41)},
                          {"big": 3_000_000, "small": 7_000, "bad": 1_000})
    ranked = grid.ranking(rows, 20)
    assert [entry["label"] for entry in ranked] == ["big", "small", "bad"]
    assert [entry["tied"] for entry in ranked] == [True, True, False]
    assert ranked[0]["difference"] is None  # each other entry: the best minus it
    assert ranked[2]["difference"].low > 0 and ranked[1]["difference"].low < 0 < ranked[1]["difference"].high
    assert grid.cheapest_tied(rows, 20) == "small"  # "bad" has fewer parameters but is beaten
    assert grid.advice(rows, 20) == ("best mean: big (0.81); tied with it: small; "
                                     "cheapest of the tied: small")
    alone = [row for row in rows if row["label"] != "small"]
    assert grid.advice(alone, 20) == "best mean: big (0.81)" and grid.cheapest_tied(alone, 20) == "big"
    with pytest.raises(ValueError, match="The 'n_per_class' parameter of ranking must be a budget of the rows"):
        grid.ranking(rows, 5)


def test_cheapest_tied_prefers_the_probe_to_a_head_of_the_same_size():
    """Check the tie-break between equal parameter counts: the probe's convex fit beats gradient descent."""
    rows = synthetic_rows({"head": (0.81, 0.81, 0.82), "probe": (0.82, 0.80, 0.80)}, {"head": 7_686, "probe": 7_686},
                          strategies={"probe": "linear_probe"})
    assert [(e["label"], e["tied"]) for e in grid.ranking(rows, 20)] == [("head", True), ("probe", True)]
    assert grid.cheapest_tied(rows, 20) == "probe"


def test_make_row_is_the_row_run_grid_makes(parts):
    """Check that a run made by hand and turned into a row by make_row equals run_grid's row of the same run."""
    (made,) = grid.run_grid({"head": HEAD}, parts["train"], parts["val"], parts["test"], budgets=[2], seeds=[0],
                            device="cpu", cache=False)
    train_set = data.sample_per_class(parts["train"], 2, seed=0)
    result = strategies.run_strategy(HEAD, train_set, parts["val"], seed=0, device="cpu")
    row = grid.make_row("head", 2, result, strategies.evaluate_strategy(result, parts["test"], device="cpu"))
    assert set(row) == ROW_KEYS
    np.testing.assert_array_equal(row.pop("correct"), made.pop("correct"))
    assert {k: v for k, v in row.items() if k != "seconds"} == {k: v for k, v in made.items() if k != "seconds"}

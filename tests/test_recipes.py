"""Tests for companion.recipes: StrategyConfig, its schedule arithmetic, and the course's RECIPES."""

import dataclasses
import math

import numpy as np
import pytest

from companion import backbones, probes
from companion.recipes import IMAGE_SIZE, RECIPES, STRATEGIES, Schedule, StrategyConfig

KEYS = ("linear_probe", "head_only", "partial_top2", "full_finetune", "lp_ft", "scratch")


def config(**changes) -> StrategyConfig:
    """A recipe of this test's own, so the arithmetic does not depend on the course's values."""
    return StrategyConfig(**{"strategy": "head_only", "label": "test", "grid": (1e-3, 1e-2), "eval_images": 240,
                             "patience": 5, "max_passes": 40, **changes})


@pytest.mark.parametrize("num_train, eval_every", [(1, 240), (7, 35), (120, 2), (239, 2), (240, 1), (1800, 1)])
def test_schedule_for_validates_every_eval_images_and_caps_at_max_passes(num_train, eval_every):
    """Check eval_every = ceil(eval_images / num_train) (at least 1), max_epochs = eval_every * max_passes."""
    schedule = config().schedule_for(num_train)
    assert isinstance(schedule, Schedule)
    assert schedule == (eval_every, eval_every * 40, 5)
    assert schedule.eval_every == max(1, math.ceil(240 / num_train))
    assert schedule.eval_every * num_train >= 240 or schedule.eval_every == 1  # a check per eval_images images


def test_schedule_for_follows_the_recipe_and_accepts_numpy_ints():
    """Check that the schedule uses the recipe's own eval_images, max_passes and patience."""
    recipe = config(eval_images=100, max_passes=3, patience=2)
    assert recipe.schedule_for(np.int64(30)) == Schedule(eval_every=4, max_epochs=12, patience=2)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="The 'num_train' parameter of StrategyConfig.schedule_for must be "
                                             "an int >= 1"):
            recipe.schedule_for(bad)


def test_with_changes_a_copy_and_validates_it():
    """Check that with_ returns a changed copy, leaves the original alone, and refuses unknown or invalid changes."""
    recipe = config()
    faster = recipe.with_(max_passes=3, patience=1)
    assert (faster.max_passes, faster.patience, recipe.max_passes) == (3, 1, 40)
    assert faster.with_() == faster and faster.with_(max_passes=40, patience=5) == recipe
    with pytest.raises(ValueError, match=r"The 'changes' parameter of StrategyConfig.with_ must be names of "
                                         r"StrategyConfig fields \[.*'max_passes'.*\]. Got 'epochs' instead"):
        recipe.with_(epochs=3)
    with pytest.raises(ValueError, match="The 'patience' parameter of StrategyConfig must be smaller than max_passes"):
        recipe.with_(max_passes=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.patience = 1


@pytest.mark.parametrize("changes, error, message", [
    ({"strategy": "fine_tune"}, ValueError, r"The 'strategy' parameter of StrategyConfig must be one of "
                                            r"\('linear_probe', 'head_only', 'partial_finetune'"),
    ({"grid": ()}, ValueError, "The 'grid' parameter of StrategyConfig must be a non-empty tuple of distinct floats"),
    ({"grid": (1e-3, 1e-3)}, ValueError, "non-empty tuple of distinct floats > 0"),
    ({"grid": [1e-3]}, TypeError, "non-empty tuple of distinct floats > 0"),
    ({"grid": (1e-3, 0.0)}, ValueError, r"The 'grid' parameter of StrategyConfig must be a float > 0.0. Got 0.0"),
    ({"grid": (1e-3, float("nan"))}, ValueError, "The 'grid' parameter of StrategyConfig must be a float > 0.0"),
    ({"batch_size": 0}, ValueError, "The 'batch_size' parameter of StrategyConfig must be an int >= 1"),
    ({"eval_images": 2.5}, TypeError, "The 'eval_images' parameter of StrategyConfig must be an int >= 1"),
    ({"patience": 0}, ValueError, "The 'patience' parameter of StrategyConfig must be an int >= 1"),
    ({"max_passes": 0}, ValueError, "The 'max_passes' parameter of StrategyConfig must be an int >= 1"),
    ({"scratch_width": 1}, ValueError, "The 'scratch_width' parameter of StrategyConfig must be an int >= 2"),
    ({"head_lr_mult": -1.0}, ValueError, "The 'head_lr_mult' parameter of StrategyConfig must be a float > 0.0"),
    ({"top_k_stages": 2}, ValueError, "The 'top_k_stages' parameter of StrategyConfig must be an int >= 1 for "
                                      "partial_finetune and None for every other strategy. Got 2"),
])
def test_strategy_config_rejects_bad_settings(changes, error, message):
    """Check that every setting is validated when a config is made, naming the setting and what is allowed."""
    with pytest.raises(error, match=message):
        config(**changes)


def test_partial_finetune_needs_top_k_stages():
    """Check that partial_finetune needs top_k_stages >= 1 and no other strategy takes one."""
    assert config(strategy="partial_finetune", top_k_stages=3).top_k_stages == 3
    for top_k in (None, 0, 1.5):
        with pytest.raises(ValueError, match="The 'top_k_stages' parameter of StrategyConfig must be an int >= 1"):
            config(strategy="partial_finetune", top_k_stages=top_k)


def test_tunes_lr_is_false_only_for_the_linear_probe():
    """Check that only the probe, whose grid holds values of C, searches inside one run."""
    assert {strategy: config(strategy=strategy, top_k_stages=1 if strategy == "partial_finetune" else None).tunes_lr
            for strategy in STRATEGIES} == {strategy: strategy != "linear_probe" for strategy in STRATEGIES}


def test_every_recipe_is_a_valid_config_of_the_course():
    """Check that RECIPES has one valid recipe per strategy, each searched over a grid of the same size."""
    assert tuple(RECIPES) == KEYS
    assert {recipe.strategy for recipe in RECIPES.values()} == set(STRATEGIES)
    for key, recipe in RECIPES.items():
        assert isinstance(recipe, StrategyConfig) and dataclasses.replace(recipe) == recipe, key
        assert recipe.patience < recipe.max_passes and recipe.schedule_for(30).max_epochs >= recipe.max_passes, key
        assert recipe.backbone in backbones.BACKBONES and recipe.pretrained, key
        assert key == recipe.strategy or key.startswith("partial_top"), key
    assert len({len(recipe.grid) for recipe in RECIPES.values()}) == 1  # the same search for every contender
    assert len({recipe.label for recipe in RECIPES.values()}) == len(RECIPES)
    assert RECIPES["linear_probe"].grid == probes.CS and not RECIPES["linear_probe"].tunes_lr
    assert RECIPES["partial_top2"].top_k_stages == 2
    assert {recipe.batch_size for recipe in RECIPES.values()} == {RECIPES["scratch"].batch_size}
    assert {recipe.eval_images for recipe in RECIPES.values()} == {RECIPES["scratch"].eval_images}
    assert isinstance(IMAGE_SIZE, int) and 32 <= IMAGE_SIZE <= 512  # a size the renderer draws


def test_value_for_takes_the_value_tuned_at_the_nearest_budget_on_a_log_scale():
    """Check value_for: the nearest tuned budget in log(labels), the smaller one on a tie, and its validation."""
    recipe = config(grid=(1e-3, 3e-3, 1e-2), tuned=((5, 1e-2), (100, 3e-3)))
    assert [recipe.value_for(n) for n in (1, 5, 20, 23, 100, 1000)] == [1e-2, 1e-2, 1e-2, 3e-3, 3e-3, 3e-3]
    tie = config(grid=(1e-3, 1e-2), tuned=((10, 1e-3), (40, 1e-2)))
    assert tie.value_for(20) == 1e-3 and tie.value_for(np.int64(21)) == 1e-2
    with pytest.raises(ValueError, match="The 'config' parameter of StrategyConfig.value_for must be a recipe with "
                                         "tuned values"):
        config().value_for(5)
    with pytest.raises(ValueError, match="The 'n_per_class' parameter of StrategyConfig.value_for must be an int >= 1"):
        recipe.value_for(0)
    with pytest.raises(ValueError, match=r"The 'tuned' parameter of StrategyConfig must be a tuple of \(labels per "
                                         r"class, value of grid\) pairs"):
        config(tuned=((5, 0.5),))  # 0.5 is not in the grid


def test_tuned_values_are_the_ones_the_search_chose():
    """Check that every recipe's tuned values equal benchmarks/results/tuned_recipes.json, budget by budget."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "tuned_recipes.json"
    searched = json.loads(path.read_text())
    for name, config in RECIPES.items():
        chosen = {int(n): cell["best"] for n, cell in searched[name].items()}
        assert dict(config.tuned) == chosen, f"RECIPES[{name!r}].tuned differs from the search: {chosen}"
        assert all(value in config.grid for value in chosen.values())

"""Grids of runs: strategies x label budgets x seeds, tuned alike, with a schedule check.

Scope: `run_grid` trains every recipe for every label budget and seed on the same images, one
row (a dict) per run. Every recipe gets the same learning-rate search: at each budget, its grid
is tried on the first seed's training set and scored on the validation split only; that seed's
best run is kept and the chosen rate is used for the other seeds (``tune_budget`` tunes once,
at one budget, for all of them). One `companion.prefix.PrefixCache` serves every run, so frozen
depths see each image once. `summarize` gives each (recipe, budget) its mean test accuracy with
a 95 % interval; `schedule_check` prints, per recipe and budget, the epochs run, the epoch kept,
and how many seeds stopped on patience rather than on the maximum; `compare` pairs two recipes
seed by seed (`companion.compare.paired_difference`).

Usage::

    >>> from companion import data, grid
    >>> from companion.recipes import RECIPES
    >>> pool = data.make_dataset(8, seed=0, image_size=32, cache=False)
    >>> parts = data.stratified_split(pool, (0.5, 0.25, 0.25), seed=0)
    >>> rows = grid.run_grid({"probe": RECIPES["linear_probe"]}, parts["train"], parts["val"], parts["test"],
    ...                      budgets=[2], seeds=[0, 1], cache=False)
    >>> len(rows), rows[0]["label"], rows[0]["correct"].shape
    (2, 'probe', (12,))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from companion import cache as disk, compare, data, prefix, repro, strategies
from companion.data import ImageSet
from companion.recipes import StrategyConfig
from companion.validation import check, check_bool, check_image_set, check_instance, check_int, check_seed

# Modules whose code decides a run's numbers: their source is part of every run's cache key.
_RUN_MODULES = ("adapt", "backbones", "data", "grid", "prefix", "probes", "recipes", "render", "cameras",
                "scratch", "strategies", "train")

__all__ = ["run_grid", "make_row", "summarize", "schedule_check", "compare_rows", "table", "ranking", "cheapest_tied", "advice"]


def make_row(label: str, n_per_class: int, result: strategies.StrategyResult, evaluation: dict,
             scores: dict | None = None) -> dict:
    """The row `run_grid` makes of one run: for runs made by hand, whose models a notebook keeps.

    ``evaluation`` is `companion.strategies.evaluate_strategy`'s dict; ``scores`` the search's
    validation accuracy per grid value, if any. `summarize`, `schedule_check`, `table`,
    `compare_rows` and `ranking` take these rows as they take `run_grid`'s.
    """
    history = result.history
    return {"label": label, "strategy": result.strategy, "n_per_class": n_per_class, "seed": result.seed,
            "lr": result.lr, "C": result.probe.C if result.probe is not None else None,
            "search": dict(result.probe.val_accuracies) if scores is None and not result.config.tunes_lr else scores,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": evaluation["accuracy"], "correct": evaluation["correct"],
            "epochs_run": history.num_epochs if history else 0, "best_epoch": history.best_epoch if history else 0,
            "stopped_early": history.stopped_early if history else True,
            "hit_max": history.hit_max if history else False,
            "kept_first": bool(history and history.val_epochs and history.best_epoch == history.val_epochs[0]),
            "trainable_parameters": result.trainable_parameters, "seconds": result.seconds}


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """A hash of the source of every module that decides a run's numbers."""
    hasher = hashlib.sha256()
    for name in _RUN_MODULES:
        hasher.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return hasher.hexdigest()[:16]


def _digest(dataset: ImageSet) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(dataset.images.contiguous().numpy().tobytes())
    hasher.update(dataset.labels.numpy().tobytes())
    hasher.update(json.dumps(dataset.classes).encode())
    return hasher.hexdigest()


def _run(label: str, n_per_class: int, config: StrategyConfig, train_set: ImageSet, val_set: ImageSet,
         test_set: ImageSet, *, lr, seed: int, prefix_cache, device, use_cache: bool) -> dict:
    """One run's row, read from the run cache when the same run was made before (same code, data, settings)."""
    device = repro.get_device(device)
    key = json.dumps({"config": dataclasses.asdict(config), "lr": lr, "seed": seed, "train": _digest(train_set),
                      "val": _digest(val_set), "test": _digest(test_set), "code": _code_version(),
                      "torch": torch.__version__, "device": device.type,
                      "threads": torch.get_num_threads() if device.type == "cpu" else None}, sort_keys=True)
    path = disk.cache_dir() / "runs" / f"run_{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    stored = disk.read(path, key, ["row", "correct"]) if use_cache else None
    if stored is not None:
        row = json.loads(str(stored["row"]))
        row["search"] = {float(k): v for k, v in row["search"].items()} if row["search"] else None
        return {**row, "label": label, "n_per_class": n_per_class, "correct": stored["correct"].astype(bool)}
    result = strategies.run_strategy(config, train_set, val_set, lr=lr, seed=seed, prefix_cache=prefix_cache,
                                     device=device)
    evaluation = strategies.evaluate_strategy(result, test_set, prefix_cache=prefix_cache, device=device)
    row = make_row(label, n_per_class, result, evaluation)
    if use_cache:
        stored_row = {k: v for k, v in row.items() if k != "correct"}
        disk.write(path, key, row=np.array(json.dumps(stored_row)), correct=row["correct"])
    return row


def run_grid(recipes: Mapping[str, StrategyConfig], train_pool: ImageSet, val_set: ImageSet, test_set: ImageSet, *,
             budgets: Sequence[int], seeds: Sequence[int], search: bool = False, tune_budget: int | None = None,
             prefix_cache: prefix.PrefixCache | None = None, device: torch.device | str | None = None,
             cache: bool = True) -> list[dict]:
    """Run every recipe for every label budget and seed; return one row per run.

    With ``search=False`` every run uses its recipe's tuned value for its budget
    (`companion.recipes.StrategyConfig.value_for`: the learning rate, or the probe's C, that the
    search of ``benchmarks/tune_recipes.py`` chose on a tuning set of its own, with the same
    grid size for every recipe). With ``search=True`` the grid is searched here: at each budget
    (or at ``tune_budget`` only) on the first seed, on ``val_set``.

    The training set of (budget ``n``, seed ``s``) is ``data.sample_per_class(train_pool, n,
    seed=s)``, the same images for every recipe, and ``s`` is also the run's seed. Row keys:
    ``label``, ``strategy``, ``n_per_class``, ``seed``, ``lr``, ``search`` (the first seed's
    validation accuracy per grid value, else None), ``val_accuracy``, ``test_accuracy``,
    ``correct`` (per test image), ``epochs_run``, ``best_epoch``, ``stopped_early``,
    ``hit_max``, ``trainable_parameters`` and ``seconds`` (volatile: never print it).

    With ``cache=True`` every run's row is stored by `companion.cache` under ``runs/``, keyed
    by its recipe, learning rate, seed, the bytes of its training, validation and test images,
    the source code of the modules that train it, the torch version, the device and the thread
    count; a later grid (another chapter, a rerun) that needs the same run reads it back.
    """
    func = "run_grid"
    check(isinstance(recipes, Mapping) and len(recipes) > 0 and all(
        isinstance(label, str) and isinstance(config, StrategyConfig) for label, config in recipes.items()),
        recipes, "recipes", func, "a non-empty dict of label -> StrategyConfig")
    for name, dataset in (("train_pool", train_pool), ("val_set", val_set), ("test_set", test_set)):
        check_image_set(dataset, name, func)
    smallest = min(train_pool.class_counts().values())
    budgets, seeds = list(budgets), list(seeds)
    check(len(budgets) > 0, budgets, "budgets", func, "a non-empty sequence of labels per class")
    for n in budgets:
        check_int(n, "budgets", func, low=1, high=smallest)
    check(len(seeds) > 0 and len(set(seeds)) == len(seeds), seeds, "seeds", func, "a non-empty list of distinct seeds")
    for seed in seeds:
        check_seed(seed, "seeds", func)
    check_bool(search, "search", func)
    check(tune_budget is None or tune_budget in budgets, tune_budget, "tune_budget", func,
          f"None or one of the budgets {budgets}")
    check_instance(prefix_cache, "prefix_cache", func, prefix.PrefixCache, "None or a prefix.PrefixCache",
                   optional=True)
    check_bool(cache, "cache", func)
    run = functools.partial(_run, val_set=val_set, test_set=test_set, device=device, use_cache=cache,
                            prefix_cache=prefix_cache if prefix_cache is not None else prefix.PrefixCache())
    chosen: dict[tuple[str, int], float | None] = {}
    order = ([tune_budget] + [n for n in budgets if n != tune_budget]) if tune_budget is not None else budgets
    rows = []
    for n_per_class in order:
        train_sets = {seed: data.sample_per_class(train_pool, n_per_class, seed=seed) for seed in seeds}
        for label, config in recipes.items():
            for seed in seeds:
                key = (label, n_per_class if tune_budget is None else tune_budget)
                if not search:  # the recipe's tuned value for this budget
                    row = dict(run(label, n_per_class, config, train_sets[seed], lr=None, seed=seed), search=None)
                elif key not in chosen and config.tunes_lr:  # the search, on the first seed
                    tried = {lr: run(label, n_per_class, config, train_sets[seed], lr=lr, seed=seed)
                             for lr in sorted(config.grid)}
                    chosen[key] = max(tried, key=lambda lr: (tried[lr]["val_accuracy"], -lr))
                    row = dict(tried[chosen[key]], search={lr: r["val_accuracy"] for lr, r in tried.items()})
                elif key not in chosen:  # the probe searches its C inside one run
                    row = run(label, n_per_class, config.with_(tuned=()), train_sets[seed], lr=None, seed=seed)
                    chosen[key] = row["C"]
                elif config.tunes_lr:
                    row = dict(run(label, n_per_class, config, train_sets[seed], lr=chosen[key], seed=seed),
                               search=None)
                else:  # the probe keeps the C the search chose, as the others keep their learning rate
                    row = dict(run(label, n_per_class, config.with_(grid=(chosen[key],), tuned=()),
                                   train_sets[seed], lr=None, seed=seed), search=None)
                rows.append(row)
    position = {n: i for i, n in enumerate(budgets)}
    return sorted(rows, key=lambda row: (position[row["n_per_class"]], list(recipes).index(row["label"])))


def _groups(rows: Sequence[Mapping]) -> dict[tuple[str, int], list[Mapping]]:
    check(isinstance(rows, Sequence) and len(rows) > 0 and all(isinstance(r, Mapping) and "correct" in r
                                                               for r in rows),
          rows, "rows", "summarize", "a non-empty list of run_grid rows")
    groups: dict[tuple[str, int], list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["n_per_class"]), []).append(row)
    return groups


def summarize(rows: Sequence[Mapping]) -> dict[tuple[str, int], dict]:
    """Per (label, budget): ``mean``, ``low``, ``high`` (95 %), ``sd`` over seeds, ``runs``, the rest of row 0."""
    summary = {}
    for key, members in _groups(rows).items():
        mean, low, high = compare.accuracy_interval([row["correct"] for row in members])
        accuracies = np.array([row["test_accuracy"] for row in members])
        summary[key] = {**members[0], "mean": mean, "low": low, "high": high, "sd": float(accuracies.std()),
                        "runs": accuracies.tolist(), "num_seeds": len(members),
                        "seconds": float(np.mean([row["seconds"] for row in members]))}
    return summary


def schedule_check(rows: Sequence[Mapping]) -> str:
    """A table: per recipe and budget the learning rate, epochs run and kept, and how each run ended.

    ``on patience`` counts the seeds whose validation accuracy stopped improving; a cell in which
    some seed used up its maximum is flagged ``MAX``: do not draw a conclusion from it.
    ``kept 1st`` counts the seeds that kept the weights of their first validation pass: for
    LP-FT, the probe's head (fine-tuning never beat it); for any other, a run that never improved
    after its first check. The linear probe has no epochs (a convex fit): ``-``.
    """
    lines = [f"{'strategy':<18}{'labels/class':>13}{'lr':>9}{'epochs run':>12}{'epoch kept':>12}"
             f"{'on patience':>13}{'kept 1st':>10}"]
    for (label, n), members in _groups(rows).items():
        run = [row["epochs_run"] for row in members]
        kept = [row["best_epoch"] for row in members]
        seeds = len(members)
        span = (lambda values: f"{min(values)}-{max(values)}" if min(values) != max(values) else f"{values[0]}")
        if members[0]["lr"] is None:  # the linear probe
            lr, run, kept, patient, first, flag = f"C {members[0]['C']:g}", "-", "-", "-", "-", ""
        else:
            lr, run, kept = f"{members[0]['lr']:g}", span(run), span(kept)
            patient = f"{sum(bool(row['stopped_early']) for row in members)} of {seeds}"
            first = f"{sum(bool(row.get('kept_first')) for row in members)} of {seeds}"
            flag = "  MAX" if any(row["hit_max"] for row in members) else ""
        lines.append(f"{label:<18}{n:>13}{lr:>9}{run:>12}{kept:>12}{patient:>13}{first:>10}{flag}")
    return "\n".join(lines)


def compare_rows(rows: Sequence[Mapping], a: str, b: str, n_per_class: int) -> compare.PairedDifference:
    """`companion.compare.paired_difference` of recipes ``a`` and ``b`` at one budget, paired by seed."""
    groups = _groups(rows)
    for label in (a, b):
        check((label, n_per_class) in groups, label, "a" if label == a else "b", "compare_rows",
              f"a label run at {n_per_class} labels per class: one of {sorted({k[0] for k in groups})}")
    by_seed = {label: {row["seed"]: row["correct"] for row in groups[label, n_per_class]} for label in (a, b)}
    seeds = sorted(set(by_seed[a]) & set(by_seed[b]))
    return compare.paired_difference([by_seed[a][s] for s in seeds], [by_seed[b][s] for s in seeds], names=(a, b))


def table(rows: Sequence[Mapping]) -> str:
    """Mean test accuracy and its 95 % interval, one line per recipe and one column per budget.

    A cell reads ``0.42 +- 0.04``: the mean over seeds and the half-width of its interval (seed
    spread and the test set's binomial error together), two decimals.
    """
    summary = summarize(rows)
    labels = list(dict.fromkeys(label for label, _ in summary))
    budgets = sorted({n for _, n in summary})
    lines = [f"{'strategy':<18}" + "".join(f"{f'{n}/class':>15}" for n in budgets)]
    for label in labels:
        cells = [(f"{summary[label, n]['mean']:.2f} +- {(summary[label, n]['high'] - summary[label, n]['low']) / 2:.2f}"
                  if (label, n) in summary else "-") for n in budgets]
        lines.append(f"{label:<18}" + "".join(f"{cell:>15}" for cell in cells))
    return "\n".join(lines)


def ranking(rows: Sequence[Mapping], n_per_class: int) -> list[dict]:
    """Every recipe at one budget against the one with the best mean: the paired difference and its verdict.

    Returns dicts, best first, with ``label``, ``mean``, ``strategy``, ``trainable_parameters``,
    ``difference`` (a `companion.compare.PairedDifference` against the best; None for the best
    itself) and ``tied`` (True for the best and for every recipe whose interval includes 0).
    """
    summary = {label: entry for (label, n), entry in summarize(rows).items() if n == n_per_class}
    check(len(summary) > 0, n_per_class, "n_per_class", "ranking", "a budget of the rows")
    best = max(summary, key=lambda label: summary[label]["mean"])
    result = []
    for label in sorted(summary, key=lambda label: -summary[label]["mean"]):
        difference = None if label == best else compare_rows(rows, best, label, n_per_class)
        result.append({"label": label, "mean": summary[label]["mean"], "strategy": summary[label]["strategy"],
                       "trainable_parameters": summary[label]["trainable_parameters"],
                       "difference": difference, "tied": difference is None or difference.winner is None})
    return result


def _cost(entry: Mapping) -> tuple[int, int]:
    """Trainable parameters, then the kind of fit: a convex probe fit is cheaper than gradient descent."""
    return entry["trainable_parameters"], 0 if entry["strategy"] == "linear_probe" else 1


def cheapest_tied(rows: Sequence[Mapping], n_per_class: int) -> str:
    """The cheapest recipe among those tied with the best at ``n_per_class``.

    Cheapest: the fewest trainable parameters; between equal counts (the probe and the head
    train the same 7,686 numbers) the linear probe, whose one convex fit needs no epochs.
    """
    tied = [entry for entry in ranking(rows, n_per_class) if entry["tied"]]
    return min(tied, key=_cost)["label"]


def advice(rows: Sequence[Mapping], n_per_class: int) -> str:
    """One line: the best recipe at ``n_per_class``, the ones it does not beat, and the cheapest of those."""
    ranked = ranking(rows, n_per_class)
    tied = [entry for entry in ranked if entry["tied"]]
    text = f"best mean: {ranked[0]['label']} ({ranked[0]['mean']:.2f})"
    if len(tied) > 1:
        others = ", ".join(entry["label"] for entry in tied[1:])
        text += f"; tied with it: {others}; cheapest of the tied: {cheapest_tied(rows, n_per_class)}"
    return text

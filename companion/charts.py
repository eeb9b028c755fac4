"""Charts of results: learning curves, accuracy by depth or label budget, layer transfer, cost.

Scope: every function draws one results figure in the course style of `companion.plots` and
returns the ``Figure``. Each line gets its own colour, line style and marker (`plots.SERIES`),
so no two are told apart by colour alone. A curve is given either as an array of accuracies,
``(num_points,)`` or ``(num_seeds, num_points)`` (drawn as the mean with a band of +- one sd over
seeds), or as a dict ``{"mean": ..., "low": ..., "high": ...}`` of arrays (drawn as the mean with
its 95 % interval, as `companion.grid.summarize` computes it); `curves_from_summary` builds such
dicts from a grid's summary.

Usage::

    >>> from companion import charts
    >>> figure = charts.sample_efficiency_curves({"probe": [0.3, 0.5, 0.6]}, [5, 20, 100], chance=1 / 6)
    >>> figure.axes[0].get_xscale()
    'log'

Taught in ``notebooks/04_feature_extraction_vs_fine_tuning.ipynb`` and the labs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from companion.plots import SERIES, _styled, _to_numpy
from companion.validation import check, invalid

__all__ = ["curves_from_summary", "learning_curves", "accuracy_by_depth", "sample_efficiency_curves",
           "layer_transfer_curves", "cost_accuracy"]


def curves_from_summary(summary: Mapping, labels: Sequence[str], budgets: Sequence[int]) -> dict:
    """``{label: {"mean", "low", "high"}}`` arrays over ``budgets`` from `companion.grid.summarize` output."""
    check(isinstance(summary, Mapping), summary, "summary", "curves_from_summary", "the dict of grid.summarize")
    curves = {}
    for label in labels:
        missing = [n for n in budgets if (label, n) not in summary]
        check(not missing, label, "labels", "curves_from_summary", f"labels run at every budget of {list(budgets)}",
              f"{label!r} has no run at {missing}.")
        curves[label] = {key: np.array([summary[label, n][key] for n in budgets]) for key in ("mean", "low", "high")}
    return curves


def _band(values, label: str, length: int, caller: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(mean, lower, upper) of one curve given as an interval dict or as per-seed accuracies."""
    if isinstance(values, Mapping):
        check({"mean", "low", "high"} <= set(values), values, "curves", caller,
              "arrays, or dicts with 'mean', 'low' and 'high'")
        mean, low, high = (np.asarray(values[key], dtype=float) for key in ("mean", "low", "high"))
    else:
        array = _to_numpy(values, "curves", caller).astype(float)
        check(array.ndim in (1, 2), values, "curves", caller, "per-point or (num_seeds, num_points) accuracies")
        if array.ndim == 1:
            mean, low, high = array, None, None
        else:
            mean, spread = array.mean(axis=0), array.std(axis=0)
            low, high = mean - spread, mean + spread
    check(mean.shape == (length,), values, "curves", caller, f"{length} points per curve ({label!r})")
    return mean, low, high


def _check_curves(curves: object, caller: str) -> None:
    check(isinstance(curves, Mapping) and len(curves) > 0, curves, "curves", caller,
          "a non-empty dict of label -> accuracies")


@_styled
def learning_curves(history, title: str | None = None) -> Figure:
    """Loss and accuracy per epoch of a `companion.train.History`: training lines, validation markers.

    Validation is drawn at the epochs it ran (``history.val_epochs``); a dashed line marks the
    epoch whose weights were kept.
    """
    caller = "learning_curves"
    check(all(hasattr(history, name) for name in ("train_loss", "val_epochs", "best_epoch")), history, "history",
          caller, "a companion.train.History")
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, history.num_epochs + 1)
    for axis, train_values, val_values, name in ((loss_axis, history.train_loss, history.val_loss, "loss"),
                                                 (accuracy_axis, history.train_accuracy, history.val_accuracy,
                                                  "accuracy")):
        for (colour, style, marker), values, x, split in ((SERIES[0], train_values, epochs, "train"),
                                                          (SERIES[1], val_values, history.val_epochs, "validation")):
            axis.plot(x, values, color=colour, linestyle=style, marker=marker, markersize=4, label=split)
        if history.best_epoch:
            axis.axvline(history.best_epoch, color="grey", linestyle="--", linewidth=1, label="epoch kept")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    accuracy_axis.set_ylim(0, 1.02)
    accuracy_axis.legend(loc="lower right", fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def _draw(axis, x, curves: Mapping, caller: str) -> None:
    for index, (label, values) in enumerate(curves.items()):
        colour, style, marker = SERIES[index % len(SERIES)]
        mean, low, high = _band(values, label, len(x), caller)
        axis.plot(x, mean, color=colour, linestyle=style, marker=marker, label=label)
        if low is not None:
            axis.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)


@_styled
def accuracy_by_depth(curves: Mapping, depth_names: Sequence[str], chance: float | None = None,
                      title: str | None = None) -> Figure:
    """Accuracy against depth, one line per model (``curves``: label -> one value per depth)."""
    caller = "accuracy_by_depth"
    _check_curves(curves, caller)
    depth_names = list(depth_names)
    figure, axis = plt.subplots(figsize=(7, 3.8))
    _draw(axis, np.arange(len(depth_names)), curves, caller)
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle=":", label="chance")
    axis.set_xticks(range(len(depth_names)), [f"{d}\n{n}" for d, n in enumerate(depth_names)], fontsize=8)
    axis.set_xlabel("depth")
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title)
    return figure


@_styled
def sample_efficiency_curves(curves: Mapping, budgets: Sequence[float], chance: float | None = None,
                             title: str | None = None, xlabel: str = "labels per class (log scale)") -> Figure:
    """Test accuracy against the label budget on a log x-axis, one line per strategy."""
    caller = "sample_efficiency_curves"
    _check_curves(curves, caller)
    budgets = np.asarray(list(budgets), dtype=float)
    check(budgets.ndim == 1 and len(budgets) >= 2 and bool(np.all(budgets > 0)) and bool(np.all(np.diff(budgets) > 0)),
          budgets.tolist(), "budgets", caller, "at least 2 increasing numbers > 0 (a log axis)")
    figure, axis = plt.subplots(figsize=(7, 4))
    _draw(axis, budgets, curves, caller)
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle=":", label="chance")
    axis.set_xscale("log")
    axis.set_xticks(budgets, [f"{b:g}" for b in budgets])
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xlabel(xlabel)
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=9, loc="upper left")
    if title:
        axis.set_title(title)
    return figure


_LAYER_TRANSFER_SERIES = {"BnB": SERIES[0], "BnB+": SERIES[5], "AnB": SERIES[3], "AnB+": SERIES[1]}


@_styled
def layer_transfer_curves(curves: Mapping, depths: Sequence[int], baseline, reference: Mapping | None = None,
                          title: str | None = None, reference_title: str = "reference") -> Figure:
    """Accuracy on task B against n, the number of layers copied, one line per treatment.

    ``baseline`` (one number, or one per seed) is the network trained on B from scratch, drawn at
    n = 0 and as a dotted line. ``reference`` (``{treatment: {n: accuracy}}`` with an optional
    ``"baseB": {0: accuracy}``, e.g. ``layer_transfer.PAPER_REFERENCE``) goes in a second panel
    with its own scale.
    """
    caller = "layer_transfer_curves"
    _check_curves(curves, caller)
    depths = np.asarray(list(depths))
    check(depths.ndim == 1 and len(depths) > 0 and bool(np.all(np.diff(depths) > 0)) and depths.min() >= 1,
          depths.tolist(), "depths", caller, "increasing ints >= 1 (layers copied)")
    baseline = np.atleast_1d(np.asarray(baseline, dtype=float))
    if reference is not None and not (isinstance(reference, Mapping)
                                      and all(isinstance(v, Mapping) for v in reference.values())):
        raise invalid(reference, "reference", caller, "None or a dict of treatment -> {n: accuracy}")
    figure = plt.figure(figsize=(11 if reference is not None else 6.5, 4))
    axes = figure.subplots(1, 2 if reference is not None else 1, squeeze=False)[0]

    def draw_baseline(axis, value, spread=0.0):
        axis.errorbar([0], [float(value)], yerr=[float(spread)], marker="D", color="black", capsize=3,
                      linestyle="none", markerfacecolor="white", label="baseB (trained on B)")
        axis.axhline(value, color="grey", linestyle=":", linewidth=1)

    draw_baseline(axes[0], baseline.mean(), baseline.std())
    for label, values in curves.items():
        colour, style, marker = _LAYER_TRANSFER_SERIES.get(label, SERIES[2])
        mean, low, high = _band(values, label, len(depths), caller)
        error = None if low is None else np.vstack([mean - low, high - mean])
        axes[0].errorbar(depths, mean, yerr=error, marker=marker, linestyle=style, color=colour, capsize=3,
                         label=label)
    if reference is not None:
        if "baseB" in reference:
            draw_baseline(axes[1], next(iter(reference["baseB"].values())))
        for label, points in reference.items():
            if label != "baseB":
                colour, style, marker = _LAYER_TRANSFER_SERIES.get(label, SERIES[2])
                ns = sorted(points)
                axes[1].plot(ns, [points[n] for n in ns], marker=marker, linestyle=style, color=colour, label=label)
        axes[1].set_title(reference_title)
    for axis in axes:
        axis.set_xlabel("n: layers copied from the base network")
        axis.set_ylabel("test accuracy on task B")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=8, loc="lower left")
    if title:
        axes[0].set_title(title)
    return figure


def _plain_number(value: float, _position=None) -> str:
    """A log-axis tick as a short plain number: 10k, 1M or 0.5, not 10^4 or 5x10^-1."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


@_styled
def cost_accuracy(summary: Mapping, title: str | None = None) -> Figure:
    """Test accuracy against trainable parameters and against wall time per run, one series per strategy.

    ``summary`` is `companion.grid.summarize` output: each (label, budget) entry has ``mean``,
    ``low``, ``high`` (drawn as the point and its 95 % interval), ``trainable_parameters`` and
    ``seconds`` (mean wall time of a converged run). A point's size grows with the budget.
    """
    caller = "cost_accuracy"
    keys = ("mean", "low", "high", "trainable_parameters", "seconds")
    check(isinstance(summary, Mapping) and len(summary) > 0 and all(
        isinstance(entry, Mapping) and all(key in entry for key in keys) for entry in summary.values()),
        summary, "summary", caller, f"the dict of grid.summarize (entries with {keys})")
    check(all(entry["trainable_parameters"] > 0 and entry["seconds"] > 0 for entry in summary.values()), summary,
          "summary", caller, "entries with trainable_parameters and seconds > 0 (log axes)")
    labels = list(dict.fromkeys(label for label, _ in summary))
    budgets = sorted({n for _, n in summary})
    sizes = {n: 25 + 45 * index for index, n in enumerate(budgets)}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, key, xlabel in ((axes[0], "trainable_parameters", "trainable parameters (log scale)"),
                              (axes[1], "seconds", "wall time of a converged run, s (log scale)")):
        for index, label in enumerate(labels):
            colour, _, marker = SERIES[index % len(SERIES)]
            entries = [summary[label, n] for n in budgets if (label, n) in summary]
            x = [entry[key] for entry in entries]
            means = np.array([entry["mean"] for entry in entries])
            error = np.vstack([means - [e["low"] for e in entries], [e["high"] for e in entries] - means])
            axis.errorbar(x, means, yerr=error, color=colour, linestyle="none", capsize=2, alpha=0.6)
            axis.scatter(x, means, s=[sizes[n] for n in budgets if (label, n) in summary], color=colour,
                         marker=marker, label=label, zorder=3)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain_number))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel(xlabel)
    axes[0].set_ylabel("test accuracy")
    handles, names = axes[1].get_legend_handles_labels()
    figure.legend(handles, names, fontsize=8, loc="outside right upper", title="small to large:\n"
                  + ", ".join(f"{n}" for n in budgets) + " labels/class", title_fontsize=8)
    if title:
        figure.suptitle(title)
    return figure

"""The course's figures: image grids, first-layer filters, feature maps, predictions, curves.

Scope: every function draws one figure in the course style (``COURSE_STYLE``: readable
font sizes, a colour-blind-safe palette, no seaborn), returns the ``Figure`` and never calls
``plt.show()``. In Jupyter the inline backend shows the figure once the cell ends; assign it
(``fig = plots.image_grid(...)``) so it is not displayed twice.

Usage::

    from companion import plots
    fig = plots.image_grid(image_set.images[:16], image_set.labels[:16], image_set.classes)
    fig.savefig("grid.png")
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
COURSE_STYLE: dict = {
    "figure.dpi": 100, "savefig.dpi": 100, "savefig.bbox": "tight",
    "figure.constrained_layout.use": True,
    "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "figure.titlesize": 13,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "axes.axisbelow": True, "grid.alpha": 0.3, "axes.prop_cycle": cycler(color=PALETTE),
    "image.cmap": "viridis", "svg.hashsalt": "companion",
}


def use_course_style() -> None:
    """Apply ``COURSE_STYLE`` globally, for a notebook's own matplotlib figures.

    Usage: ``plots.use_course_style()``
    """
    matplotlib.rcParams.update(COURSE_STYLE)


def _styled(function):
    """Run a plot function inside the course style (an rcParams context).

    The figure is detached from pyplot before it is returned, so a notebook shows it exactly
    once, as the cell's value (leaving the rcParams context can close pyplot's open figures
    under the inline backend, which would otherwise lose all but the first).
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(COURSE_STYLE):
            figure = function(*args, **kwargs)
        plt.close(figure)
        return figure
    return wrapper


def _to_numpy(values, parameter: str, caller: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values)
    raise TypeError(f"The '{parameter}' parameter of {caller} must be a tensor, array or list. "
                    f"Got {type(values).__name__} instead.")


def _check_positive_int(value: object, parameter: str, caller: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"The '{parameter}' parameter of {caller} must be an int >= 1. Got {value!r} instead.")
    return value


def _check_labels(labels, count: int, classes, caller: str) -> np.ndarray:
    labels = _to_numpy(labels, "labels", caller)
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"The 'labels' parameter of {caller} must be {count} integer labels, shape "
                         f"({count},). Got {labels.dtype} with shape {labels.shape} instead.")
    if classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"The 'labels' parameter of {caller} must be in [0, {len(classes) - 1}] for "
                         f"{len(classes)} classes. Got values in [{labels.min()}, {labels.max()}] instead.")
    return labels


def _grid(count: int, ncols: int, cell: float = 1.6, title_space: float = 0.0) -> tuple[Figure, list]:
    """Make a figure with exactly ``count`` image axes on ``ncols`` columns (unused ones removed)."""
    ncols = min(ncols, count)
    nrows = -(-count // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + title_space),
                                squeeze=False)
    axes = list(axes.flat)
    for axis in axes[count:]:
        axis.remove()
    for axis in axes[:count]:
        axis.set_axis_off()
    return figure, axes[:count]


@_styled
def image_grid(images, labels=None, classes: Sequence[str] | None = None, ncols: int = 8,
               title: str | None = None) -> Figure:
    """Show uint8 images (N, 3, H, W) in a grid, titled with their class names if given.

    Usage: ``image_grid(image_set.images[:16], image_set.labels[:16], image_set.classes)``
    """
    images = _to_numpy(images, "images", "image_grid")
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"The 'images' parameter of image_grid must be uint8 with shape (N, 3, H, W). "
                         f"Got {images.dtype} with shape {images.shape} instead.")
    if len(images) == 0:
        raise ValueError("The 'images' parameter of image_grid must hold at least one image. Got 0 instead.")
    _check_positive_int(ncols, "ncols", "image_grid")
    if labels is not None:
        labels = _check_labels(labels, len(images), classes, "image_grid")
    figure, axes = _grid(len(images), ncols, title_space=0.4 if title else 0.0)
    for index, axis in enumerate(axes):
        axis.imshow(images[index].transpose(1, 2, 0))  # (H, W, 3)
        if labels is not None:
            label = int(labels[index])
            axis.set_title(classes[label] if classes is not None else str(label), fontsize=9)
    if title:
        figure.suptitle(title)
    return figure


@_styled
def first_layer_filters(model: torch.nn.Module, first_conv: str = "conv_stem", ncols: int = 8) -> Figure:
    """Show each RGB filter of the first convolution as a small image (each min-max normalised).

    ImageNet-trained filters look like colour blobs and oriented edges; random ones like noise.

    Usage: ``first_layer_filters(load_backbone("efficientnet_lite0"))``
    """
    convolution = getattr(model, first_conv, None)
    weight = getattr(convolution, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"first_layer_filters needs a model whose '{first_conv}' is a convolution over "
                         f"3 RGB channels. Got {type(model).__name__} with weight shape "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else None} instead.")
    _check_positive_int(ncols, "ncols", "first_layer_filters")
    filters = weight.detach().float().cpu()  # (C_out, 3, k, k)
    low = filters.amin(dim=(1, 2, 3), keepdim=True)
    high = filters.amax(dim=(1, 2, 3), keepdim=True)
    filters = ((filters - low) / (high - low).clamp_min(1e-12)).numpy()  # (C_out, 3, k, k) in [0, 1]
    figure, axes = _grid(len(filters), ncols, cell=0.9, title_space=0.4)
    for axis, image in zip(axes, filters):
        axis.imshow(image.transpose(1, 2, 0), interpolation="nearest")  # (k, k, 3)
    figure.suptitle(f"{len(filters)} first-layer filters ({filters.shape[2]}x{filters.shape[3]}, RGB)")
    return figure


@_styled
def feature_maps(activations, num_maps: int = 16, ncols: int = 8, title: str | None = None) -> Figure:
    """Show the first ``num_maps`` channels of one image's activations (C, H, W).

    Usage: ``feature_maps(forward_to_depth(model, x, 2)[0])  # x[0] -> (40, H/8, W/8)``
    """
    activations = _to_numpy(activations, "activations", "feature_maps")
    if activations.ndim != 3:
        hint = " Select one image, e.g. activations[0]." if activations.ndim == 4 else ""
        raise ValueError(f"The 'activations' parameter of feature_maps must have shape (C, H, W). "
                         f"Got shape {activations.shape} instead.{hint}")
    _check_positive_int(num_maps, "num_maps", "feature_maps")
    _check_positive_int(ncols, "ncols", "feature_maps")
    count = min(num_maps, len(activations))
    figure, axes = _grid(count, ncols, title_space=0.4 if title else 0.0)
    for channel, axis in enumerate(axes):
        axis.imshow(activations[channel], interpolation="nearest")  # (H, W), own colour scale
        axis.set_title(f"channel {channel}", fontsize=9)
    if title:
        figure.suptitle(title)
    return figure


@_styled
def bar_chart_topk(predictions: Sequence[tuple[str, float]], title: str | None = None) -> Figure:
    """Show one image's top-k (class name, probability) pairs as horizontal bars.

    Usage: ``bar_chart_topk(predict_imagenet(model, images)[0])``
    """
    if (not isinstance(predictions, (list, tuple)) or not predictions
            or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in predictions)):
        raise ValueError("The 'predictions' parameter of bar_chart_topk must be a non-empty list of "
                         f"(class name, probability) pairs for one image. Got {predictions!r:.80} instead.")
    names = [str(name).split(",")[0] for name, _ in predictions][::-1]
    values = [float(value) for _, value in predictions][::-1]
    figure, axis = plt.subplots(figsize=(5.5, 0.45 * len(names) + 1.0))
    axis.barh(names, values, color=PALETTE[0])
    axis.set_xlim(0, 1)
    axis.grid(axis="y", visible=False)
    axis.set_xlabel("probability")
    for position, value in enumerate(values):
        axis.text(value + 0.01, position, f"{value:.2f}", va="center", fontsize=9)
    if title:
        axis.set_title(title)
    return figure


@_styled
def class_balance(labels, classes: Sequence[str], title: str | None = "Images per class") -> Figure:
    """Show how many images each class has, as bars with counts.

    Usage: ``class_balance(image_set.labels, image_set.classes)``
    """
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"The 'classes' parameter of class_balance must be a non-empty list of names. "
                         f"Got {classes!r} instead.")
    labels = _to_numpy(labels, "labels", "class_balance")
    labels = _check_labels(labels, len(labels), classes, "class_balance")
    counts = np.bincount(labels, minlength=len(classes))  # (num_classes,)
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(classes)), 3.2))
    bars = axis.bar(range(len(classes)), counts, color=PALETTE[0])
    axis.bar_label(bars, fontsize=9)
    axis.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    axis.set_ylabel("images")
    axis.grid(axis="x", visible=False)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        axis.set_title(title)
    return figure


@_styled
def confusion_matrix(y_true, y_pred, classes: Sequence[str], normalize: bool = True,
                     title: str | None = None) -> Figure:
    """Show the confusion matrix (rows: true class; row-normalised unless ``normalize=False``).

    Usage: ``confusion_matrix(test_set.labels, predictions, test_set.classes)``
    """
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"The 'classes' parameter of confusion_matrix must be a non-empty list of names. "
                         f"Got {classes!r} instead.")
    y_true = _to_numpy(y_true, "y_true", "confusion_matrix")
    y_true = _check_labels(y_true, len(y_true), classes, "confusion_matrix")
    y_pred = _check_labels(y_pred, len(y_true), classes, "confusion_matrix")
    counts = np.zeros((len(classes), len(classes)))  # (true, predicted)
    np.add.at(counts, (y_true, y_pred), 1)
    matrix = counts / counts.sum(axis=1, keepdims=True).clip(min=1) if normalize else counts
    figure, axis = plt.subplots(figsize=(0.7 * len(classes) + 2.5, 0.7 * len(classes) + 1.5))
    axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    axis.grid(False)
    axis.spines[["top", "right"]].set_visible(True)
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > 0.6 * max(matrix.max(), 1e-12) else "black"
        axis.text(column, row, f"{value:.2f}" if normalize else f"{int(value)}",
                  ha="center", va="center", fontsize=9, color=color)
    axis.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title or f"accuracy {np.trace(counts) / max(counts.sum(), 1):.3f}")
    return figure


@_styled
def learning_curves(history, title: str | None = None) -> Figure:
    """Plot metrics per epoch; ``history`` maps metric names to lists, or is a list of dicts.

    Losses go on the left axis and accuracies on the right one.

    Usage: ``learning_curves({"train_loss": [...], "val_accuracy": [...]})``
    """
    if isinstance(history, (list, tuple)) and history and all(isinstance(row, dict) for row in history):
        keys = [key for key in history[0] if key != "epoch"]
        history = {key: [row.get(key, np.nan) for row in history] for key in keys}
    if not isinstance(history, dict) or not history or not all(
            isinstance(values, (list, tuple, np.ndarray)) for values in history.values()):
        raise ValueError("The 'history' parameter of learning_curves must be a non-empty dict of metric "
                         f"lists or a list of per-epoch dicts. Got {type(history).__name__} instead.")
    figure, loss_axis = plt.subplots(figsize=(6.5, 3.5))
    accuracy_axis = None
    splits = ("train_", "val_", "valid_", "validation_", "test_")
    metrics = list(dict.fromkeys(key.removeprefix(next((p for p in splits if key.startswith(p)), ""))
                                 for key in history))  # train_loss and val_loss share a colour
    for key, values in history.items():
        metric = key.removeprefix(next((p for p in splits if key.startswith(p)), ""))
        if "acc" in key and accuracy_axis is None:
            accuracy_axis = loss_axis.twinx() if any("acc" not in k for k in history) else loss_axis
            accuracy_axis.spines["right"].set_visible(True)
            accuracy_axis.grid(False)
            accuracy_axis.set_ylabel("accuracy")
        axis = accuracy_axis if "acc" in key else loss_axis
        axis.plot(np.arange(1, len(values) + 1), values, label=key, marker=".",
                  color=PALETTE[metrics.index(metric) % len(PALETTE)],
                  linestyle="-" if key.startswith("train") else "--")
    loss_axis.set_xlabel("epoch")
    loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if any("acc" not in key for key in history):
        loss_axis.set_ylabel("loss")
    axes = [loss_axis] + ([accuracy_axis] if accuracy_axis not in (None, loss_axis) else [])
    handles = [line for axis in axes for line in axis.get_lines()]
    figure.legend(handles, [line.get_label() for line in handles], loc="outside right upper")
    if title:
        loss_axis.set_title(title)
    return figure


def _curve_values(values, label: str, length: int, per: str, caller: str) -> np.ndarray:
    """One curve of a ``curves`` dict as floats of shape ``(length,)`` or ``(num_seeds, length)``."""
    values = _to_numpy(values, "curves", caller).astype(float)
    if values.shape[-1] != length or values.ndim not in (1, 2):
        raise ValueError(f"{caller}: the values of {label!r} must have shape ({length},) or "
                         f"(num_seeds, {length}), one per {per}. Got {values.shape}.")
    return values


@_styled
def accuracy_by_depth(curves: dict, depth_names: Sequence[str], chance: float | None = None,
                      title: str | None = None) -> Figure:
    """Plot accuracy against depth, one line per model; 2-D values get mean +- sd error bars.

    ``curves`` maps a label to accuracies of shape ``(num_depths,)`` or ``(num_seeds, num_depths)``.

    Usage: ``accuracy_by_depth({"pretrained": acc}, [n for n, _ in backbones.stages(model)], chance=1/6)``
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError("The 'curves' parameter of accuracy_by_depth must be a non-empty dict of label -> "
                         f"accuracies. Got {type(curves).__name__} instead.")
    depth_names = list(depth_names)
    figure, axis = plt.subplots(figsize=(7, 3.8))
    for label, values in curves.items():
        values = _curve_values(values, label, len(depth_names), "depth", "accuracy_by_depth")
        if values.ndim == 2:
            axis.errorbar(range(len(depth_names)), values.mean(axis=0), yerr=values.std(axis=0), marker="o",
                          capsize=3, label=label)
        else:
            axis.plot(range(len(depth_names)), values, marker="o", label=label)
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
def sample_efficiency_curves(curves: dict, budgets: Sequence[float], chance: float | None = None,
                             title: str | None = None, xlabel: str = "labels per class (log scale)") -> Figure:
    """Plot test accuracy against the label budget on a log x-axis, one line per strategy.

    ``curves`` maps a label to accuracies of shape ``(num_budgets,)`` or ``(num_seeds, num_budgets)``;
    2-D values are drawn as the mean with a shaded mean +- sd band. The x ticks are the budgets.

    Usage: ``sample_efficiency_curves({"scratch": acc_scratch, "linear probe": acc_probe}, [5, 20, 100], chance=1/6)``
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError("The 'curves' parameter of sample_efficiency_curves must be a non-empty dict of "
                         f"label -> accuracies. Got {type(curves).__name__} instead.")
    budgets = _to_numpy(list(budgets) if isinstance(budgets, range) else budgets, "budgets",
                        "sample_efficiency_curves").astype(float)
    if budgets.ndim != 1 or len(budgets) < 2 or not np.all(budgets > 0) or not np.all(np.diff(budgets) > 0):
        raise ValueError("The 'budgets' parameter of sample_efficiency_curves must be at least 2 increasing "
                         f"numbers > 0 (a log axis). Got {budgets.tolist()} instead.")
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        values = _curve_values(values, label, len(budgets), "budget", "sample_efficiency_curves")
        mean = values.mean(axis=0) if values.ndim == 2 else values
        line, = axis.plot(budgets, mean, marker="o", label=label)
        if values.ndim == 2:
            spread = values.std(axis=0)
            axis.fill_between(budgets, mean - spread, mean + spread, color=line.get_color(), alpha=0.2,
                              linewidth=0)
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle=":", label="chance")
    axis.set_xscale("log")
    axis.set_xticks(budgets, [f"{b:g}" for b in budgets])
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xlabel(xlabel)
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=9, loc="lower right")
    if title:
        axis.set_title(title)
    return figure


_LAYER_TRANSFER_STYLE = {  # variant -> (colour, marker, line style): selffers blue, transfers orange/red
    "BnB": (PALETTE[0], "o", "-"), "BnB+": (PALETTE[5], "s", "--"),
    "AnB": (PALETTE[3], "o", "-"), "AnB+": (PALETTE[1], "s", "--"),
}


@_styled
def layer_transfer_curves(curves: dict, depths: Sequence[int], baseline, reference: dict | None = None,
                          title: str | None = None, reference_title: str = "reference") -> Figure:
    """Plot accuracy on task B against n, the number of layers copied, one line per variant.

    ``curves`` maps a variant (``"AnB"``, ``"BnB+"``, ...) to accuracies of shape ``(len(depths),)``
    or ``(num_seeds, len(depths))`` (drawn as mean +- sd error bars); ``baseline`` (one number, or
    one per seed) is the network trained on B from scratch, drawn at n = 0 and as a dotted line.
    ``reference``, if given, is drawn in a second panel with its own scale: a dict
    ``{variant: {n: accuracy}}`` with an optional ``"baseB": {0: accuracy}`` (for example
    ``companion.layer_transfer.PAPER_REFERENCE``), titled ``reference_title``.

    Usage: ``layer_transfer_curves(result.accuracy, result.depths, result.base_b, PAPER_REFERENCE)``
    """
    caller = "layer_transfer_curves"
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"The 'curves' parameter of {caller} must be a non-empty dict of variant -> "
                         f"accuracies. Got {type(curves).__name__} instead.")
    depths = _to_numpy(list(depths) if isinstance(depths, range) else depths, "depths", caller)
    if depths.ndim != 1 or len(depths) == 0 or not np.all(np.diff(depths) > 0) or depths.min() < 1:
        raise ValueError(f"The 'depths' parameter of {caller} must be increasing ints >= 1 (layers copied). "
                         f"Got {depths.tolist()} instead.")
    baseline = np.atleast_1d(_to_numpy(baseline if not np.isscalar(baseline) else [baseline], "baseline",
                                       caller).astype(float))
    if reference is not None and (not isinstance(reference, dict)
                                  or not all(isinstance(v, dict) for v in reference.values())):
        raise TypeError(f"The 'reference' parameter of {caller} must be None or a dict of variant -> "
                        f"{{n: accuracy}}. Got {type(reference).__name__} instead.")
    figure = plt.figure(figsize=(11 if reference is not None else 6.5, 4))
    axes = figure.subplots(1, 2 if reference is not None else 1, squeeze=False)[0]

    def draw_baseline(axis, value, spread=0.0):
        axis.errorbar([0], [float(value)], yerr=[float(spread)], marker="D", color="black", capsize=3, linestyle="none",
                      markerfacecolor="white", label="baseB (trained on B)")
        axis.axhline(value, color="grey", linestyle=":", linewidth=1)

    draw_baseline(axes[0], baseline.mean(), baseline.std())
    for label, values in curves.items():
        values = _curve_values(values, label, len(depths), "n", caller)
        colour, marker, style = _LAYER_TRANSFER_STYLE.get(label, (None, "o", "-"))
        spread = values.std(axis=0) if values.ndim == 2 else None
        mean = values.mean(axis=0) if values.ndim == 2 else values
        axes[0].errorbar(depths, mean, yerr=spread, marker=marker, linestyle=style, color=colour, capsize=3,
                         label=label)
    if reference is not None:
        if "baseB" in reference:
            draw_baseline(axes[1], next(iter(reference["baseB"].values())))
        for label, points in reference.items():
            if label == "baseB":
                continue
            colour, marker, style = _LAYER_TRANSFER_STYLE.get(label, (None, "o", "-"))
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
def cost_accuracy(summary: Sequence[dict], title: str | None = None) -> Figure:
    """Plot test accuracy against trainable parameters and against wall time, one series per strategy.

    ``summary`` holds dicts with ``label``, ``n_per_class``, ``mean``, ``sd``,
    ``trainable_parameters`` and ``seconds`` (`companion.strategies.summarize_grid` rows). Each
    strategy gets one colour; a point is one label budget (mean +- sd over seeds), its size grows
    with the budget. Both x axes are logarithmic.

    Usage: ``cost_accuracy(strategies.summarize_grid(rows), title="Cost against accuracy")``
    """
    caller = "cost_accuracy"
    keys = ("label", "n_per_class", "mean", "sd", "trainable_parameters", "seconds")
    if not isinstance(summary, Sequence) or not summary or not all(
            isinstance(row, dict) and all(key in row for key in keys) for row in summary):
        raise ValueError(f"The 'summary' parameter of {caller} must be a non-empty list of dicts with keys "
                         f"{keys} (strategies.summarize_grid rows). Got {type(summary).__name__} instead.")
    if any(row["trainable_parameters"] <= 0 or row["seconds"] <= 0 for row in summary):
        raise ValueError(f"{caller}: 'trainable_parameters' and 'seconds' must be > 0 (log axes).")
    labels = list(dict.fromkeys(row["label"] for row in summary))
    budgets = sorted({row["n_per_class"] for row in summary})
    sizes = {n: 25 + 45 * index for index, n in enumerate(budgets)}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, key, xlabel, subs in ((axes[0], "trainable_parameters", "trainable parameters (log scale)", (1.0,)),
                                    (axes[1], "seconds", "wall time per run, s (log scale)", (1.0, 2.0, 5.0))):
        for index, label in enumerate(labels):
            rows = sorted((row for row in summary if row["label"] == label), key=lambda row: row["n_per_class"])
            colour = PALETTE[index % len(PALETTE)]
            x = [row[key] for row in rows]
            axis.errorbar(x, [row["mean"] for row in rows], yerr=[row["sd"] for row in rows], color=colour,
                          linestyle="none", capsize=2, alpha=0.6)
            axis.scatter(x, [row["mean"] for row in rows], s=[sizes[row["n_per_class"]] for row in rows],
                         color=colour, label=label, zorder=3)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain_number))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded 3x10^-1 labels
        axis.set_xlabel(xlabel)
    axes[0].set_ylabel("test accuracy")
    handles, names = axes[1].get_legend_handles_labels()
    figure.legend(handles, names, fontsize=8, loc="outside right upper", title="small to large:\n"
                  + ", ".join(f"{n}" for n in budgets) + " labels/class", title_fontsize=8)
    if title:
        figure.suptitle(title)
    return figure

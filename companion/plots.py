"""The course's figures of images and models: image grids, filters, feature maps, predictions.

Scope: every function draws one figure in the course style (``COURSE_STYLE``: readable font
sizes, a colour-blind-safe palette, no seaborn), returns the ``Figure`` and never calls
``plt.show()``; the notebook shows it once, as the cell's value. Charts of results (curves
against labels, depth or cost) are in `companion.charts`, which shares this style. `SERIES`
gives every line of a multi-line figure its own colour, line style and marker, so two lines
are never told apart by colour alone.

Usage::

    >>> from companion import data, plots
    >>> images = data.make_dataset(1, seed=0, image_size=32, cache=False)
    >>> figure = plots.image_grid(images.images, images.labels, images.classes, ncols=6)
    >>> len(figure.axes)
    6

Taught in ``notebooks/01_meet_the_data_and_backbone.ipynb``.
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

from companion.validation import check, check_int, invalid

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
# (colour, line style, marker) per series: colour, dash pattern and marker all differ between neighbours
SERIES = tuple(zip(PALETTE, ("-", "--", "-.", ":", "-", "--", "-.", ":"), ("o", "s", "^", "D", "v", "P", "X", "*")))
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
    """Apply ``COURSE_STYLE`` globally, for a notebook's own matplotlib figures."""
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
    raise invalid(values, parameter, caller, "a tensor, array or list")


def _check_positive_int(value: object, parameter: str, caller: str) -> int:
    return check_int(value, parameter, caller, low=1)


def _check_labels(labels, count: int, classes, caller: str, name: str = "labels") -> np.ndarray:
    labels = _to_numpy(labels, name, caller)
    check(labels.ndim == 1 and len(labels) == count and np.issubdtype(labels.dtype, np.integer), labels, name,
          caller, f"{count} integer labels, shape ({count},)")
    check(classes is None or not len(labels) or (labels.min() >= 0 and labels.max() < len(classes)), labels,
          name, caller, f"labels in [0, {len(classes) - 1 if classes else 0}]")
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

    >>> import torch
    >>> len(image_grid(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), ncols=3).axes)
    3
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

    >>> from companion import backbones
    >>> len(first_layer_filters(backbones.load_backbone(pretrained=False)).axes)
    32
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

    >>> import torch
    >>> len(feature_maps(torch.rand(40, 8, 8), num_maps=8).axes)
    8
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

    >>> bar_chart_topk([("espresso", 0.9), ("cup", 0.05)]).axes[0].get_xlabel()
    'probability'
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

    >>> import torch
    >>> len(class_balance(torch.tensor([0, 0, 1]), ("ok", "dent")).axes[0].patches)
    2
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

    >>> confusion_matrix([0, 1, 1], [0, 1, 0], ("ok", "dent")).axes[0].get_ylabel()
    'true'
    """
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"The 'classes' parameter of confusion_matrix must be a non-empty list of names. "
                         f"Got {classes!r} instead.")
    y_true = _to_numpy(y_true, "y_true", "confusion_matrix")
    y_true = _check_labels(y_true, len(y_true), classes, "confusion_matrix", "y_true")
    y_pred = _check_labels(y_pred, len(y_true), classes, "confusion_matrix", "y_pred")
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

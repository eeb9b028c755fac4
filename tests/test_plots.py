"""Tests for companion.plots: every figure of images and models returns a styled Figure and checks its inputs.

The charts of results (curves against labels, depth or cost) moved to companion.charts.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from companion import plots  # noqa: E402

CLASSES = ("ok", "dent", "tear")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def random_images(count: int, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)


def test_image_grid_has_one_axis_per_image_with_class_titles():
    """Check that image_grid draws N axes titled with the class names."""
    figure = plots.image_grid(random_images(10), torch.arange(10) % 3, CLASSES, ncols=4, title="grid")
    assert isinstance(figure, Figure) and len(figure.axes) == 10
    assert [axis.get_title() for axis in figure.axes[:4]] == ["ok", "dent", "tear", "ok"]
    assert figure.get_suptitle() == "grid"


def test_image_grid_accepts_numpy_and_no_labels():
    """Check that image_grid takes a numpy array and works without labels."""
    figure = plots.image_grid(random_images(3).numpy())
    assert len(figure.axes) == 3 and figure.axes[0].get_title() == ""


@pytest.mark.parametrize("kwargs, error, match", [
    ({"images": torch.zeros(2, 3, 8, 8)}, ValueError, r"must be uint8 with shape \(N, 3, H, W\). Got float32"),
    ({"images": torch.zeros(2, 1, 8, 8, dtype=torch.uint8)}, ValueError, r"Got uint8 with shape \(2, 1, 8, 8\)"),
    ({"images": torch.zeros(0, 3, 8, 8, dtype=torch.uint8)}, ValueError, "at least one image"),
    ({"images": "cat.png"}, TypeError, "The 'images' parameter of image_grid must be a tensor, array or list. "
                                       "Got 'cat.png' instead"),
    ({"images": random_images(2), "labels": [0]}, ValueError, r"The 'labels' parameter of image_grid must be 2 "
                                                              r"integer labels, shape \(2,\)"),
    ({"images": random_images(2), "labels": [0, 5], "classes": CLASSES}, ValueError, r"must be labels in \[0, 2\]"),
    ({"images": random_images(2), "labels": [0.0, 1.0]}, ValueError, "must be 2 integer labels"),
    ({"images": random_images(2), "ncols": 0}, ValueError, "'ncols' parameter of image_grid must be an int >= 1"),
    ({"images": random_images(2), "ncols": 2.0}, TypeError, "'ncols' parameter of image_grid must be an int >= 1"),
])
def test_image_grid_rejects_bad_inputs(kwargs, error, match):
    """Check that image_grid raises clear errors for bad images, labels and ncols."""
    with pytest.raises(error, match=match):
        plots.image_grid(**kwargs)


def test_first_layer_filters_draws_every_filter():
    """Check that first_layer_filters shows the 32 conv_stem filters of an EfficientNet."""
    from companion.backbones import load_backbone
    figure = plots.first_layer_filters(load_backbone(pretrained=False, seed=0))
    assert len(figure.axes) == 32
    image = figure.axes[0].get_images()[0].get_array()
    assert image.shape == (3, 3, 3) and image.min() >= 0.0 and image.max() <= 1.0
    with pytest.raises(ValueError, match="'conv_stem' is a convolution over 3 RGB channels. Got Linear"):
        plots.first_layer_filters(torch.nn.Linear(2, 2))


def test_feature_maps_limits_the_number_of_maps():
    """Check that feature_maps shows min(num_maps, C) channels and rejects batched input."""
    assert len(plots.feature_maps(torch.rand(40, 7, 7), num_maps=16).axes) == 16
    assert len(plots.feature_maps(np.random.default_rng(0).random((5, 7, 7)), num_maps=16).axes) == 5
    with pytest.raises(ValueError, match=r"must have shape \(C, H, W\).*activations\[0\]"):
        plots.feature_maps(torch.rand(1, 4, 7, 7))
    with pytest.raises(ValueError, match="'num_maps' parameter of feature_maps must be an int >= 1. Got 0"):
        plots.feature_maps(torch.rand(4, 7, 7), num_maps=0)


def test_bar_chart_topk_draws_one_bar_per_prediction():
    """Check that bar_chart_topk draws k bars with short class names."""
    figure = plots.bar_chart_topk([("Egyptian cat", 0.6), ("tabby, tabby cat", 0.3)])
    axis = figure.axes[0]
    assert len(axis.patches) == 2
    assert [label.get_text() for label in axis.get_yticklabels()] == ["tabby", "Egyptian cat"]
    with pytest.raises(ValueError, match="list of \\(class name, probability\\) pairs"):
        plots.bar_chart_topk([0.6, 0.3])


def test_class_balance_counts_each_class():
    """Check that class_balance draws one bar per class with the right heights."""
    figure = plots.class_balance(torch.tensor([0, 0, 2, 2, 2]), CLASSES)
    assert [bar.get_height() for bar in figure.axes[0].patches] == [2, 0, 3]
    with pytest.raises(ValueError, match=r"The 'labels' parameter of class_balance must be labels in \[0, 2\]"):
        plots.class_balance([0, 3], CLASSES)
    with pytest.raises(ValueError, match="'classes' parameter of class_balance must be a non-empty list"):
        plots.class_balance([0, 1], [])


def test_confusion_matrix_rows_sum_to_one():
    """Check that the row-normalised confusion matrix has the known values and accuracy."""
    figure = plots.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], CLASSES)
    matrix = figure.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(matrix, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    assert figure.axes[0].get_title() == "accuracy 0.750"
    with pytest.raises(ValueError, match=r"The 'y_pred' parameter of confusion_matrix must be 4 integer labels"):
        plots.confusion_matrix([0, 0, 1, 2], [0, 1], CLASSES)
    with pytest.raises(ValueError, match=r"The 'y_true' parameter of confusion_matrix must be labels in \[0, 2\]"):
        plots.confusion_matrix([0, 3], [0, 1], CLASSES)
    counts = plots.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], CLASSES, normalize=False)
    np.testing.assert_allclose(counts.axes[0].get_images()[0].get_array(), [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_plots_use_the_course_style_without_changing_global_rcparams():
    """Check that plot functions apply the course style only inside their own call."""
    before = dict(plt.rcParams)
    figure = plots.class_balance([0, 1], CLASSES)
    assert figure.axes[0].title.get_fontsize() == plots.COURSE_STYLE["axes.titlesize"]
    assert not figure.axes[0].spines["top"].get_visible()
    assert dict(plt.rcParams) == before


def test_use_course_style_applies_the_style_globally():
    """Check that use_course_style sets every COURSE_STYLE entry in matplotlib's global rcParams."""
    with plt.rc_context():  # put the global state back afterwards
        plots.use_course_style()
        for key in ("font.size", "axes.titlesize", "axes.spines.top", "axes.grid", "image.cmap"):
            assert plt.rcParams[key] == plots.COURSE_STYLE[key], key
        assert plt.rcParams["axes.prop_cycle"].by_key()["color"] == list(plots.PALETTE)


def test_series_give_neighbours_their_own_colour_line_style_and_marker():
    """Check that no two neighbouring series share a colour, a line style or a marker, and colours are the palette."""
    assert [colour for colour, _, _ in plots.SERIES] == list(plots.PALETTE)
    assert len({marker for _, _, marker in plots.SERIES}) == len(plots.SERIES)
    for (colour_a, style_a, marker_a), (colour_b, style_b, marker_b) in zip(plots.SERIES, plots.SERIES[1:]):
        assert colour_a != colour_b and style_a != style_b and marker_a != marker_b
    figure, axis = plt.subplots()
    for colour, style, marker in plots.SERIES:
        axis.plot([0, 1], [0, 1], color=colour, linestyle=style, marker=marker)  # matplotlib accepts every entry
    plt.close(figure)

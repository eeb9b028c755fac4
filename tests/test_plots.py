"""Tests for companion.plots: every function returns a styled Figure and checks its inputs."""

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
    ({"images": "cat.png"}, TypeError, "must be a tensor, array or list. Got str"),
    ({"images": random_images(2), "labels": [0]}, ValueError, r"must be 2 integer labels"),
    ({"images": random_images(2), "labels": [0, 5], "classes": CLASSES}, ValueError, r"must be in \[0, 2\]"),
    ({"images": random_images(2), "ncols": 0}, ValueError, "'ncols' parameter of image_grid must be an int >= 1"),
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
    with pytest.raises(ValueError, match=r"must be in \[0, 2\] for 3 classes. Got values in \[0, 3\]"):
        plots.class_balance([0, 3], CLASSES)
    with pytest.raises(ValueError, match="'classes' parameter of class_balance must be a non-empty list"):
        plots.class_balance([0, 1], [])


def test_confusion_matrix_rows_sum_to_one():
    """Check that the row-normalised confusion matrix has the known values and accuracy."""
    figure = plots.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], CLASSES)
    matrix = figure.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(matrix, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    assert figure.axes[0].get_title() == "accuracy 0.750"
    with pytest.raises(ValueError, match="must be 4 integer labels"):
        plots.confusion_matrix([0, 0, 1, 2], [0, 1], CLASSES)


def test_learning_curves_accepts_dict_and_list_of_dicts():
    """Check that learning_curves plots each metric and puts accuracies on a second axis."""
    history = [{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5},
               {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.7}]
    figure = plots.learning_curves(history)
    assert len(figure.axes) == 2
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["train_loss", "val_accuracy"]
    assert len(plots.learning_curves({"train_loss": [1.0, 0.4]}).axes) == 1
    with pytest.raises(ValueError, match="'history' parameter of learning_curves must be a non-empty dict"):
        plots.learning_curves({})


def test_plots_use_the_course_style_without_changing_global_rcparams():
    """Check that plot functions apply the course style only inside their own call."""
    before = dict(plt.rcParams)
    figure = plots.class_balance([0, 1], CLASSES)
    assert figure.axes[0].title.get_fontsize() == plots.COURSE_STYLE["axes.titlesize"]
    assert not figure.axes[0].spines["top"].get_visible()
    assert dict(plt.rcParams) == before


def test_accuracy_by_depth_draws_error_bars_and_lines():
    """Check that 2-D curves get error bars, 1-D curves plain lines, and wrong lengths a clear error."""
    names = ["stem", "blocks.0", "head"]
    figure = plots.accuracy_by_depth({"pretrained": np.array([[0.2, 0.5, 0.4], [0.3, 0.6, 0.5]]),
                                      "random": [0.2, 0.2, 0.2]}, names, chance=1 / 6, title="probe")
    axis = figure.axes[0]
    assert len(axis.containers) == 1  # the error bars of "pretrained"
    np.testing.assert_allclose(axis.containers[0].lines[0].get_ydata(), [0.25, 0.55, 0.45])
    assert sorted(t.get_text() for t in axis.get_legend().get_texts()) == ["chance", "pretrained", "random"]
    with pytest.raises(ValueError, match=r"must have shape \(3,\) or \(num_seeds, 3\)"):
        plots.accuracy_by_depth({"short": [0.1, 0.2]}, names)
    with pytest.raises(ValueError, match="non-empty dict"):
        plots.accuracy_by_depth({}, names)


def test_sample_efficiency_curves_draws_bands_on_a_log_axis():
    """Check that 2-D curves get a mean line and an sd band, the x-axis is log with the budgets as ticks."""
    budgets = [5, 20, 100]
    figure = plots.sample_efficiency_curves({"scratch": np.array([[0.2, 0.5, 0.8], [0.4, 0.7, 0.9]]),
                                             "probe": [0.5, 0.6, 0.7]}, budgets, chance=1 / 6, title="curves")
    axis = figure.axes[0]
    assert axis.get_xscale() == "log" and axis.get_title() == "curves"
    np.testing.assert_allclose(axis.get_lines()[0].get_ydata(), [0.3, 0.6, 0.85])
    assert len(axis.collections) == 1  # one band: only "scratch" has seeds
    band = axis.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.2) and band.max() == pytest.approx(0.9)
    np.testing.assert_allclose(axis.get_xticks(), budgets)
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["scratch", "probe", "chance"]


@pytest.mark.parametrize("curves, budgets, match", [
    ({}, [5, 20], "non-empty dict"),
    ({"a": [0.1, 0.2]}, [20, 5], r"at least 2 increasing numbers > 0 \(a log axis\). Got \[20.0, 5.0\]"),
    ({"a": [0.1, 0.2]}, [0, 5], "increasing numbers > 0"),
    ({"a": [0.1, 0.2, 0.3]}, [5, 20], r"must have shape \(2,\) or \(num_seeds, 2\)"),
])
def test_sample_efficiency_curves_rejects_bad_inputs(curves, budgets, match):
    """Check that sample_efficiency_curves names what is wrong with curves and budgets."""
    with pytest.raises(ValueError, match=match):
        plots.sample_efficiency_curves(curves, budgets)


def test_layer_transfer_curves_draws_both_panels_and_rejects_bad_inputs():
    """Check the measured panel (mean +- sd per variant, baseline at n = 0), the reference panel,
    and the messages for wrong shapes and depths."""
    curves = {"AnB": np.array([[0.6, 0.5], [0.8, 0.7]]), "BnB": [0.7, 0.7]}
    reference = {"baseB": {0: 0.625}, "AnB": {1: 0.62, 2: 0.6}}
    figure = plots.layer_transfer_curves(curves, [1, 2], [0.7, 0.8], reference=reference, title="lab",
                                         reference_title="paper")
    measured, paper = figure.axes
    assert measured.get_title() == "lab" and paper.get_title() == "paper"
    labels = [t.get_text() for t in measured.get_legend().get_texts()]
    assert labels == ["baseB (trained on B)", "AnB", "BnB"]
    np.testing.assert_allclose(measured.containers[1].lines[0].get_ydata(), [0.7, 0.6])  # AnB mean
    np.testing.assert_allclose(np.asarray(measured.containers[0].lines[0].get_ydata(), float), [0.75])
    np.testing.assert_allclose(paper.get_lines()[-1].get_ydata(), [0.62, 0.6])
    assert len(plots.layer_transfer_curves(curves, [1, 2], 0.75).axes) == 1
    with pytest.raises(ValueError, match=r"must have shape \(2,\) or \(num_seeds, 2\)"):
        plots.layer_transfer_curves({"AnB": [0.1, 0.2, 0.3]}, [1, 2], 0.5)
    with pytest.raises(ValueError, match="increasing ints >= 1"):
        plots.layer_transfer_curves(curves, [2, 1], 0.5)
    with pytest.raises(TypeError, match="'reference' parameter"):
        plots.layer_transfer_curves(curves, [1, 2], 0.5, reference=[0.6])


def test_cost_accuracy_draws_two_log_panels_and_rejects_bad_rows():
    """Check that cost_accuracy draws one point per strategy and budget on two log axes, and validates rows."""
    summary = [{"label": label, "n_per_class": n, "mean": 0.5, "sd": 0.1, "trainable_parameters": params,
                "seconds": seconds} for label, params, seconds in (("probe", 7686, 0.2), ("full", 3_400_000, 9.0))
               for n in (5, 20)]
    figure = plots.cost_accuracy(summary, title="cost")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert all(axis.get_xscale() == "log" for axis in figure.axes)
    assert sum(len(collection.get_offsets()) for collection in figure.axes[0].collections
               if collection.get_offsets().shape[-1] == 2 and collection.__class__.__name__ == "PathCollection") == 4
    figure.canvas.draw()
    ticks = [label.get_text() for label in figure.axes[1].get_xticklabels() if label.get_text()]
    assert ticks and all("10^" not in tick and "times" not in tick for tick in ticks), ticks  # plain numbers
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["probe", "full"]  # beside the panels
    with pytest.raises(ValueError, match="non-empty list of dicts"):
        plots.cost_accuracy([])
    with pytest.raises(ValueError, match="must be > 0"):
        plots.cost_accuracy([{**summary[0], "seconds": 0.0}])

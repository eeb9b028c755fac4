"""Tests for companion.compare: paired differences over seeds and test images, with oracle checks."""

import math

import numpy as np
import pytest
from scipy import stats

from companion import compare
from companion.compare import PairedDifference, accuracy_interval, paired_difference


def correct(num_right: int, num_test: int, *, shift: int = 0) -> np.ndarray:
    """``num_right`` correct answers out of ``num_test``, rolled by ``shift`` (other images right)."""
    return np.roll(np.arange(num_test) < num_right, shift)


def random_runs(num_seeds: int, num_test: int, accuracy: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(num_test) < accuracy for _ in range(num_seeds)]


def direct_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """The module docstring's formula written out: SE^2 = Var_seeds(d) / k + mean_s (p10 + p01 - d^2) / n,
    with a Student t quantile on Welch-Satterthwaite degrees of freedom."""
    k, n = a.shape
    d = a.mean(axis=1) - b.mean(axis=1)  # (k,)
    p10, p01 = (a & ~b).mean(axis=1), (~a & b).mean(axis=1)  # discordant pairs per seed
    seed_term = d.var(ddof=1) / k if k > 1 else 0.0
    test_term = np.mean((p10 + p01 - d**2) / n)
    se2 = seed_term + test_term
    df = se2**2 / ((seed_term**2 / (k - 1) if k > 1 else 0.0) + test_term**2 / (n - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(se2)
    return d.mean(), d.mean() - half, d.mean() + half


@pytest.mark.parametrize("num_seeds, num_test", [(5, 200), (3, 60), (1, 100), (8, 30)])
def test_paired_difference_matches_the_formula_written_out(num_seeds, num_test):
    """Check the mean and the 95 % interval against a direct numpy computation of the documented formula."""
    a = np.array(random_runs(num_seeds, num_test, 0.75, seed=num_seeds))
    b = np.array(random_runs(num_seeds, num_test, 0.65, seed=100 + num_seeds))
    result = paired_difference(list(a), list(b), names=("A", "B"))
    mean, low, high = direct_interval(a, b)
    assert (result.num_seeds, result.num_test) == (num_seeds, num_test)
    assert result.mean == pytest.approx(mean, abs=1e-12)
    assert result.low == pytest.approx(low, rel=1e-9) and result.high == pytest.approx(high, rel=1e-9)


def test_identical_correctness_is_a_tie_of_width_zero():
    """Check that two strategies right on the same images give mean 0, a zero-width interval and a tie."""
    runs = random_runs(4, 50, 0.7, seed=1)
    result = paired_difference(runs, [run.copy() for run in runs], names=("probe", "full"))
    assert (result.mean, result.low, result.high) == (0.0, 0.0, 0.0)
    assert result.verdict == "probe and full tie" and result.winner is None


def test_the_same_accuracy_on_other_images_is_a_tie():
    """Check that equal accuracy reached on different images gives mean 0 and an interval around 0."""
    a = [correct(70, 100, shift=seed) for seed in range(3)]
    b = [correct(70, 100, shift=seed + 50) for seed in range(3)]
    result = paired_difference(a, b)
    assert result.mean == pytest.approx(0.0) and result.low < 0 < result.high and result.verdict == "a and b tie"


def test_a_clear_difference_on_many_images_excludes_zero_and_names_the_winner():
    """Check that 0.80 vs 0.60 on 500 images over consistent seeds beats, in both orders."""
    a = [correct(400 + seed, 500, shift=seed) for seed in range(4)]
    b = [correct(300 - seed, 500, shift=seed) for seed in range(4)]
    forward = paired_difference(a, b, names=("partial", "probe"))
    assert 0 < forward.low < forward.mean < forward.high and forward.mean == pytest.approx(0.2 + 2 * 1.5 / 500)
    assert forward.verdict == "partial beats probe" and forward.winner == "partial"
    backward = paired_difference(b, a, names=("probe", "partial"))
    assert backward.verdict == "partial beats probe" and backward.winner == "partial"
    assert (backward.mean, backward.low, backward.high) == pytest.approx((-forward.mean, -forward.high, -forward.low))


def test_the_interval_widens_with_fewer_test_images():
    """Check that the same accuracies on 50 test images give a wider interval than on 1000."""
    def width(num_test: int) -> float:
        a = [correct(int(0.8 * num_test), num_test)] * 3
        b = [correct(int(0.7 * num_test), num_test, shift=num_test // 3)] * 3
        result = paired_difference(a, b)
        return result.high - result.low

    widths = [width(n) for n in (50, 200, 1000)]
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[0] / widths[2] == pytest.approx(math.sqrt(1000 / 50), rel=0.1)  # binomial: 1 / sqrt(n)


def test_seed_to_seed_spread_widens_the_interval():
    """Check that a difference that changes sign between seeds is a tie although its mean is not 0."""
    a = [correct(right, 400) for right in (360, 240, 370, 250)]
    b = [correct(300, 400)] * 4
    result = paired_difference(a, b)
    assert result.mean == pytest.approx(0.0125) and result.verdict == "a and b tie"
    steady = paired_difference([correct(305, 400)] * 4, b)
    assert result.high - result.low > 3 * (steady.high - steady.low)


def test_accuracy_interval_matches_the_formula_and_the_docstring():
    """Check accuracy_interval: mean over seeds, SE^2 = Var_seeds / k + mean p (1 - p) / n, t quantile."""
    mean, low, high = accuracy_interval([correct(60, 100)] * 3)
    assert mean == pytest.approx(0.6) and high - mean == pytest.approx(stats.t.ppf(0.975, 99) * math.sqrt(0.24 / 100))
    runs = np.array(random_runs(5, 80, 0.7, seed=3))
    accuracies = runs.mean(axis=1)
    seed_term, test_term = accuracies.var(ddof=1) / 5, np.mean(accuracies * (1 - accuracies)) / 80
    df = (seed_term + test_term) ** 2 / (seed_term**2 / 4 + test_term**2 / 79)
    half = stats.t.ppf(0.975, df) * math.sqrt(seed_term + test_term)
    assert accuracy_interval(list(runs)) == pytest.approx((accuracies.mean(), accuracies.mean() - half,
                                                           accuracies.mean() + half))
    assert accuracy_interval([np.ones(10, bool)] * 2) == (1.0, 1.0, 1.0)  # no error at all: no width


def test_str_reports_the_difference_its_interval_and_the_verdict():
    """Check the printed line of a comparison."""
    result = PairedDifference(("A", "B"), 0.2, 0.1, 0.3, 3, 100)
    assert str(result) == "A - B: +0.20 [+0.10, +0.30] (3 seeds, 100 test images): A beats B"
    assert PairedDifference(("A", "B"), -0.2, -0.3, -0.1, 3, 100).verdict == "B beats A"
    one = PairedDifference(("A", "B"), 0.2, 0.1, 0.3, 1, 100)  # one run each: a claim about two models
    assert str(one) == ("A - B: +0.20 [+0.10, +0.30] (1 seed: training randomness not counted, 100 test "
                        "images): A beats B on these test images (one run each)")
    assert one.winner == "A" and PairedDifference(("A", "B"), 0.0, -0.1, 0.1, 1, 100).verdict == "A and B tie"
    # two decimals: an interval about 0.07 wide does not support a third
    assert str(PairedDifference(("A", "B"), 0.1034, 0.0681, 0.1392, 1, 600)).startswith("A - B: +0.10 [+0.07, +0.14]")


@pytest.mark.parametrize("a, b, names, match", [
    ([], [np.ones(3, bool)], ("a", "b"), "The 'correct_a' parameter of paired_difference must be a non-empty sequence"),
    ([np.ones(3, bool)], [np.ones(4, bool)], ("a", "b"),
     r"The 'correct_b' parameter of paired_difference must be the same seeds and test images as correct_a "
     r"\(1 seeds x 3 images\)"),
    ([np.ones(3, bool)] * 2, [np.ones(3, bool)], ("a", "b"), "the same seeds and test images"),
    ([np.array([0, 1, 2])], [np.ones(3, bool)], ("a", "b"), "must be per-seed boolean arrays of one length"),
    ([np.ones(3, bool), np.ones(4, bool)], [np.ones(3, bool)] * 2, ("a", "b"), "per-seed boolean arrays of one length"),
    ([np.ones(3, bool)], [np.ones(3, bool)], ("a",), "The 'names' parameter of paired_difference must be a pair"),
])
def test_paired_difference_rejects_bad_inputs(a, b, names, match):
    """Check that empty, mismatched or non-boolean correctness and bad names are refused with what is allowed."""
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b, names=names)


def test_accuracy_interval_rejects_bad_inputs():
    """Check that accuracy_interval wants a non-empty sequence of boolean arrays."""
    with pytest.raises(ValueError, match="The 'correct' parameter of accuracy_interval must be a non-empty sequence"):
        accuracy_interval([])
    assert set(compare.__all__) == {"PairedDifference", "paired_difference", "accuracy_interval"}

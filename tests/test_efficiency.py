"""Tests for companion.efficiency: reading sample-efficiency curves (labels to reach, crossings)."""

import math

import numpy as np
import pytest

from companion import efficiency


def test_labels_to_reach_interpolates_on_a_log_scale():
    """Check the log-scale interpolation against a hand computation, and the two edge cases."""
    budgets = [5, 20, 100]
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.8) == pytest.approx(math.sqrt(20 * 100))
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.7) == pytest.approx(20)
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.3) == 5  # reached at the first budget
    assert efficiency.labels_to_reach(budgets, [0.4, 0.7, 0.9], 0.95) == math.inf
    seeds = np.array([[0.3, 0.6, 0.8], [0.5, 0.8, 1.0]])  # mean: 0.4, 0.7, 0.9
    assert efficiency.labels_to_reach(budgets, seeds, 0.8) == pytest.approx(math.sqrt(2000))
    assert efficiency.labels_to_reach(budgets, [0.4, 0.85, 0.8], 0.82) < 20  # the first time it is reached


def test_crossing_budget_finds_the_first_sign_change():
    """Check crossing_budget against a hand computation, and None when one curve stays above."""
    budgets = [5, 50, 500]
    # gap = a - b: 0.4, 0.1, -0.2 -> crossing one third of the way from 50 to 500 in log space
    crossing = efficiency.crossing_budget(budgets, [0.6, 0.7, 0.75], [0.2, 0.6, 0.95])
    assert crossing == pytest.approx(50 * 10 ** (1 / 3))
    assert efficiency.crossing_budget(budgets, [0.6, 0.7, 0.8], [0.2, 0.6, 0.7]) is None
    assert efficiency.crossing_budget(budgets, [0.6, 0.7, 0.8], [0.2, 0.7, 0.9]) == pytest.approx(50)


@pytest.mark.parametrize("call, error, match", [
    (lambda: efficiency.labels_to_reach([20, 5], [0.1, 0.2], 0.5), ValueError,
     "'budgets' parameter of labels_to_reach must be a sequence of at least 2 increasing numbers > 0"),
    (lambda: efficiency.labels_to_reach([5, 20], [0.1, 0.2, 0.3], 0.5), ValueError,
     r"'accuracy' parameter of labels_to_reach must be 2 finite accuracies, shape \(2,\)"),
    (lambda: efficiency.labels_to_reach([5, 20], [0.1, 0.2], "high"), ValueError,
     "The 'target' parameter of labels_to_reach must be a float. Got 'high' instead"),
    (lambda: efficiency.labels_to_reach([5, 20], [0.1, 0.2], float("nan")), ValueError,
     "The 'target' parameter of labels_to_reach must be a float. Got nan"),
    (lambda: efficiency.labels_to_reach([0, 20], [0.1, 0.2], 0.5), ValueError, "increasing numbers > 0"),
    (lambda: efficiency.labels_to_reach([5], [0.1], 0.5), ValueError, "at least 2 increasing numbers"),
    (lambda: efficiency.crossing_budget([5, 20], np.zeros((3, 3)), [0.1, 0.2]), ValueError,
     r"'accuracy_a' parameter of crossing_budget must be 2 finite accuracies, shape \(2,\) or \(num_seeds, 2\)"),
    (lambda: efficiency.crossing_budget([5, 20], [0.1, 0.2], [0.1, np.nan]), ValueError,
     "'accuracy_b' parameter of crossing_budget must be 2 finite accuracies"),
])
def test_curve_readers_reject_bad_inputs(call, error, match):
    """Check that the curve readers say which argument is wrong and what is allowed."""
    with pytest.raises(error, match=match):
        call()


def test_crossing_budget_of_seed_arrays_uses_their_means():
    """Check that (num_seeds, num_budgets) curves are averaged over seeds before they are compared."""
    budgets = [5, 50, 500]
    a = np.array([[0.5, 0.7, 0.7], [0.7, 0.7, 0.8]])  # mean 0.6, 0.7, 0.75
    b = np.array([[0.2, 0.5, 0.9], [0.2, 0.7, 1.0]])  # mean 0.2, 0.6, 0.95
    assert efficiency.crossing_budget(budgets, a, b) == pytest.approx(50 * 10 ** (1 / 3))
    assert efficiency.crossing_budget(budgets, a, a) is None  # equal everywhere: no change of sign
    assert set(efficiency.__all__) == {"labels_to_reach", "crossing_budget"}

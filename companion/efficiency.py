"""Sample efficiency: reading accuracy-against-labels curves.

Scope: a sample-efficiency curve is one strategy's mean test accuracy at several label budgets
(5, 20, ..., 300 labels per class), measured with `companion.grid.run_grid`. Two functions
read the curves: `labels_to_reach` interpolates a curve on a log scale of labels to find the
budget at which it first reaches an accuracy (the horizontal reading: how many labels does
transfer save?), and `crossing_budget` finds where two curves cross.

Usage::

    >>> from companion import efficiency
    >>> round(efficiency.labels_to_reach([5, 20, 100], [0.40, 0.70, 0.90], target=0.8), 1)
    44.7
    >>> round(efficiency.crossing_budget([5, 50, 300], [0.6, 0.7, 0.75], [0.2, 0.6, 0.85]))
    122

Taught in ``notebooks/06_sample_efficiency.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np

from companion.validation import check, check_float

__all__ = ["labels_to_reach", "crossing_budget"]


# ----------------------------------------------------------------------------- reading the curves
def _curve(budgets, accuracy, name: str, func: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated budgets (increasing, > 0) and a mean accuracy per budget (2-D input: mean over seeds)."""
    budgets_array = np.asarray(budgets, dtype=float)
    ok = budgets_array.ndim == 1 and len(budgets_array) >= 2 and np.all(np.isfinite(budgets_array)) \
        and np.all(budgets_array > 0) and np.all(np.diff(budgets_array) > 0)
    check(bool(ok), budgets, "budgets", func, "a sequence of at least 2 increasing numbers > 0")
    values = np.asarray(accuracy, dtype=float)
    if values.ndim == 2:
        values = values.mean(axis=0)  # (num_seeds, num_budgets) -> (num_budgets,)
    ok = values.ndim == 1 and len(values) == len(budgets_array) and np.all(np.isfinite(values))
    check(bool(ok), accuracy, name, func, f"{len(budgets_array)} finite accuracies, shape ({len(budgets_array)},) "
          f"or (num_seeds, {len(budgets_array)}), one per budget")
    return budgets_array, values


def labels_to_reach(budgets, accuracy, target: float) -> float:
    """The label budget at which a curve first reaches ``target``, interpolated on a log scale.

    ``accuracy`` holds one value per budget (or ``(num_seeds, num_budgets)``: the mean is used).
    Between two measured budgets the curve is taken as a straight line in log(budget), the
    scale on which these curves are plotted. Returns ``budgets[0]`` when the first budget
    already reaches ``target`` (the true need may be lower: treat it as an upper bound) and
    ``math.inf`` when no budget does.
    """
    func = "labels_to_reach"
    budgets, values = _curve(budgets, accuracy, "accuracy", func)
    target = check_float(target, "target", func)
    if values[0] >= target:
        return float(budgets[0])
    for i in range(1, len(budgets)):
        if values[i] >= target:
            fraction = (target - values[i - 1]) / (values[i] - values[i - 1])  # in (0, 1]
            log_budget = np.log(budgets[i - 1]) + fraction * (np.log(budgets[i]) - np.log(budgets[i - 1]))
            return float(np.exp(log_budget))
    return math.inf


def crossing_budget(budgets, accuracy_a, accuracy_b) -> float | None:
    """The budget where curve ``a`` and curve ``b`` first cross (log-scale interpolation), or None.

    A crossing is a change of sign of ``a - b`` between two measured budgets (or an exact tie
    at a budget after a non-zero gap). Returns None when one curve stays above the other at
    every budget: then they do not cross within the measured range.
    """
    func = "crossing_budget"
    budgets, a = _curve(budgets, accuracy_a, "accuracy_a", func)
    _, b = _curve(budgets, accuracy_b, "accuracy_b", func)
    gap = a - b  # (num_budgets,)
    for i in range(1, len(budgets)):
        if gap[i - 1] != 0 and (gap[i] == 0 or np.sign(gap[i]) != np.sign(gap[i - 1])):
            fraction = gap[i - 1] / (gap[i - 1] - gap[i])  # in (0, 1]
            log_budget = np.log(budgets[i - 1]) + fraction * (np.log(budgets[i]) - np.log(budgets[i - 1]))
            return float(np.exp(log_budget))
    return None

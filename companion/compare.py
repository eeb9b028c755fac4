"""Is a difference real? Paired comparisons over seeds, with the test set's own error.

Scope: two strategies trained on the same images with the same seeds and scored on the same
test images differ for three reasons: a real difference, the luck of the seed (which images
were drawn, the initial head, the batch order), and the luck of the test set (which images
happened to be in it). `paired_difference` takes the per-image correctness of both, seed by
seed, and returns the mean difference in accuracy with a 95 % interval that counts both kinds of
luck: the seed-to-seed spread of the paired difference (divided by the number of seeds) plus the
binomial error of a paired difference on ``n`` test images (McNemar's discordant pairs; not
divided by the number of seeds, since every seed is scored on the same images). A Student t
quantile with Welch-Satterthwaite degrees of freedom turns the two into an interval. When the
interval excludes 0 the verdict names the better one; otherwise the two tie. `accuracy_interval`
does the same for one strategy's mean accuracy.

Usage::

    >>> import numpy as np
    >>> a = [np.r_[np.ones(80, bool), np.zeros(20, bool)]] * 3   # 0.80 on 100 images, 3 seeds
    >>> b = [np.r_[np.ones(60, bool), np.zeros(40, bool)]] * 3   # 0.60 on the same images
    >>> result = paired_difference(a, b, names=("A", "B"))
    >>> round(result.mean, 2), result.verdict
    (0.2, 'A beats B')

Taught in ``notebooks/04_feature_extraction_vs_fine_tuning.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from companion.validation import check, invalid

__all__ = ["PairedDifference", "paired_difference", "accuracy_interval"]


@dataclass(frozen=True)
class PairedDifference:
    """Mean accuracy of ``a`` minus that of ``b`` over seeds, and its 95 % interval ``[low, high]``."""

    names: tuple[str, str]
    mean: float
    low: float
    high: float
    num_seeds: int
    num_test: int

    @property
    def verdict(self) -> str:
        """``"<a> beats <b>"``, ``"<b> beats <a>"`` or ``"<a> and <b> tie"``.

        With one seed a win is said of the two trained models on these test images, not of how
        they were trained: ``"<a> beats <b> on these test images (one run each)"``.
        """
        a, b = self.names
        one_run = " on these test images (one run each)" if self.num_seeds == 1 else ""
        if self.low > 0:
            return f"{a} beats {b}{one_run}"
        if self.high < 0:
            return f"{b} beats {a}{one_run}"
        return f"{a} and {b} tie"

    @property
    def winner(self) -> str | None:
        """The name of the better one, or None for a tie."""
        return self.names[0] if self.low > 0 else self.names[1] if self.high < 0 else None

    def __str__(self) -> str:
        seeds = (f"{self.num_seeds} seeds" if self.num_seeds > 1
                 else "1 seed: training randomness not counted")
        return (f"{self.names[0]} - {self.names[1]}: {self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] "
                f"({seeds}, {self.num_test} test images): {self.verdict}")


def _correctness(runs, name: str, func: str) -> np.ndarray:
    """A (num_seeds, num_test) boolean array from a sequence of per-seed correctness vectors."""
    check(isinstance(runs, Sequence) and len(runs) > 0, runs, name, func,
          "a non-empty sequence of per-seed boolean arrays (the 'correct' of evaluate_strategy)")
    arrays = [np.asarray(run) for run in runs]
    allowed = "per-seed boolean arrays of one length (one entry per test image)"
    check(len({run.shape for run in arrays}) == 1, runs, name, func, allowed)  # ragged: numpy cannot stack them
    array = np.asarray(arrays)
    check(array.ndim == 2 and array.shape[1] > 0 and np.isin(array, (0, 1)).all(), runs, name, func, allowed)
    return array.astype(bool)


def _interval(mean: float, seed_variance: float, num_seeds: int, test_variance: float, num_test: int,
              level: float = 0.95) -> tuple[float, float]:
    """``mean`` +- t * SE with SE^2 = seed_variance / k + test_variance, Welch-Satterthwaite df."""
    seed_term = seed_variance / num_seeds if num_seeds > 1 else 0.0
    se2 = seed_term + test_variance
    if se2 <= 0:
        return mean, mean
    denominator = (seed_term ** 2 / (num_seeds - 1) if num_seeds > 1 else 0.0) + test_variance ** 2 / (num_test - 1)
    df = se2 ** 2 / denominator if denominator > 0 else math.inf
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
    return mean - half, mean + half


def paired_difference(correct_a, correct_b, *, names: tuple[str, str] = ("a", "b")) -> PairedDifference:
    """Compare two strategies run with the same seeds on the same test images.

    ``correct_a[i]`` and ``correct_b[i]`` are the per-image correctness (booleans, one per test
    image, in the same order) of seed ``i``'s run of each strategy.
    """
    func = "paired_difference"
    a, b = _correctness(correct_a, "correct_a", func), _correctness(correct_b, "correct_b", func)
    check(a.shape == b.shape, correct_b, "correct_b", func,
          f"the same seeds and test images as correct_a ({a.shape[0]} seeds x {a.shape[1]} images)")
    if not (isinstance(names, tuple) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise invalid(names, "names", func, "a pair of strings")
    num_seeds, num_test = a.shape
    differences = a.mean(axis=1) - b.mean(axis=1)  # (num_seeds,)
    only_a, only_b = (a & ~b).mean(axis=1), (~a & b).mean(axis=1)  # discordant pairs per seed
    test_variance = float(np.mean((only_a + only_b - differences ** 2) / num_test))
    seed_variance = float(differences.var(ddof=1)) if num_seeds > 1 else 0.0
    mean = float(differences.mean())
    low, high = _interval(mean, seed_variance, num_seeds, test_variance, num_test)
    return PairedDifference(names, mean, low, high, num_seeds, num_test)


def accuracy_interval(correct) -> tuple[float, float, float]:
    """Mean accuracy over seeds and its 95 % interval ``(mean, low, high)``, seed and test error counted.

    The interval is clipped to [0, 1].

    >>> mean, low, high = accuracy_interval([np.r_[np.ones(60, bool), np.zeros(40, bool)]] * 3)
    >>> round(mean, 2), round(high - mean, 2)
    (0.6, 0.1)
    """
    runs = _correctness(correct, "correct", "accuracy_interval")
    num_seeds, num_test = runs.shape
    accuracies = runs.mean(axis=1)  # (num_seeds,)
    mean = float(accuracies.mean())
    test_variance = float(np.mean(accuracies * (1 - accuracies))) / num_test
    seed_variance = float(accuracies.var(ddof=1)) if num_seeds > 1 else 0.0
    low, high = _interval(mean, seed_variance, num_seeds, test_variance, num_test)
    return mean, max(low, 0.0), min(high, 1.0)

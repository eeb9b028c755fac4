"""The decision guide: freeze the backbone, fine-tune part of it, or all of it?

Scope: `recommend_strategy` turns two facts a team can measure before any fine-tuning, how many
labels per class it has and how well a linear probe on the frozen backbone already does (the
probe's *lift*, see `lift`), into a recipe of `companion.recipes.RECIPES` and a check to train
beside it, so that the validation split makes the final choice. Each of the `RULES` names
the measurement of the course it comes from: the chapter, the section and the cell, with what
was measured there; what the course did not measure, it says so. Where the measured strategies
tie, a rule names the cheapest of the tied ones. The boundary between the rules (75 labels per
class) lies between budgets the course measured (50 and 100).

Usage::

    >>> from companion import guide
    >>> advice = guide.recommend_strategy(labels_per_class=20, probe_accuracy=0.4, num_classes=6)
    >>> advice.recipe.label, advice.check.label
    ('head only', 'scratch')

Taught in ``notebooks/08_practical_recipe.ipynb``; the measurements are chapter 4's decision
guide and chapter 6's curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from companion.recipes import RECIPES, StrategyConfig
from companion.validation import check_int, invalid

__all__ = ["Rule", "RULES", "Recommendation", "lift", "recommend_strategy"]


@dataclass(frozen=True)
class Rule:
    """One cell of the guide: a range of labels per class and of lift, the recipe, its evidence.

    ``max_labels`` and ``min_lift`` bound the cell (``None``: no bound); ``check`` is the recipe
    to train beside ``recipe`` and compare on validation; ``evidence`` says where the course
    measured it and what the measurement showed, or that it was not measured.
    """

    name: str
    max_labels: int | None
    min_lift: float | None
    recipe: str
    evidence: str
    check: str = "scratch"

    def matches(self, labels_per_class: int, probe_lift: float) -> bool:
        return ((self.max_labels is None or labels_per_class <= self.max_labels)
                and (self.min_lift is None or probe_lift >= self.min_lift))


# First match wins. The evidence sentences summarise committed notebook outputs; tests/test_guide.py
# checks every rule against the cells it cites. Up to 50 labels per class two targets were measured
# (the new camera and the x-ray scanner), and both give the head; beyond that, only the new
# camera, where full fine-tuning and scratch were not ranked over seeds: the cheaper is named
# (the course's rule where a comparison has not separated two strategies), the other trains
# beside it. No rule needs the probe's lift, which is reported with the advice.
RULES: tuple[Rule, ...] = (
    Rule("few or some labels", 75, None, "head_only",
         "chapter 4, 'A decision guide', 5, 20 and 50 labels per class on both targets: the head is the "
         "best mean or tied with it in every cell and trains 7,686 parameters; the probe, as cheap, loses "
         "at 5 on the scanner and at 20 on the new camera; full fine-tuning, run at 20, never beats the "
         "head; chapter 5, 'Fine-tuning everything on a tiny set': full fine-tuning loses to the head on "
         "5 x-ray labels per class. Measured up to 50 labels per class; 51 to 75 is extrapolated"),
    Rule("many labels", None, None, "scratch",
         "chapter 6, 'Against scratch, budget by budget', 100 and 300 labels per class on the new camera, "
         "3 seeds: scratch beats the probe and partial fine-tuning, so frozen features fall behind; "
         "whole-network fine-tuning is not compared with scratch over seeds on a CPU, so the cheaper "
         "scratch is named and full fine-tuning trains beside it: keep the one with the higher "
         "validation accuracy (chapter 8, 'Where does it fail?', does, one seed each)",
         check="full_finetune"),
)


def lift(probe_accuracy: float, num_classes: int) -> float:
    """How far a probe gets from chance towards a perfect score: ``(accuracy - chance) / (1 - chance)``.

    >>> round(lift(0.5, 6), 2)
    0.4
    """
    chance = 1.0 / num_classes
    return (float(probe_accuracy) - chance) / (1.0 - chance)


@dataclass(frozen=True)
class Recommendation:
    """A recipe, the check to train beside it, the rule that chose them and the evidence behind the rule."""

    recipe: StrategyConfig
    check: StrategyConfig
    rule: str
    evidence: str
    lift: float
    labels_per_class: int

    def __str__(self) -> str:
        check = next(key for key, config in RECIPES.items() if config == self.check)
        return (f"recommended: {self.recipe.label} (RECIPES[{self.recipe_key!r}]); "
                f"beside it: {self.check.label} (RECIPES[{check!r}])\n"
                f"rule: {self.rule} ({self.labels_per_class} labels per class, probe lift {self.lift:.2f})\n"
                f"evidence: {self.evidence}")

    @property
    def recipe_key(self) -> str:
        return next(key for key, config in RECIPES.items() if config == self.recipe)


def recommend_strategy(labels_per_class: int, probe_accuracy: float, num_classes: int) -> Recommendation:
    """The guide's recipe for a label budget and a frozen backbone's probe accuracy.

    ``labels_per_class`` counts the labels of the smallest class of the training split;
    ``probe_accuracy`` is a linear probe's validation accuracy on the frozen backbone's final
    features (`companion.strategies.run_strategy` with ``RECIPES["linear_probe"]``).
    """
    func = "recommend_strategy"
    labels_per_class = check_int(labels_per_class, "labels_per_class", func, low=1)
    num_classes = check_int(num_classes, "num_classes", func, low=2)
    if isinstance(probe_accuracy, bool) or not isinstance(probe_accuracy, Real) or not (
            math.isfinite(probe_accuracy) and 0.0 <= probe_accuracy <= 1.0):
        hint = "Give a fraction, not a percentage." if isinstance(probe_accuracy, Real) and \
            1.0 < probe_accuracy <= 100.0 else ""
        raise invalid(probe_accuracy, "probe_accuracy", func, "a float in [0, 1]", hint)
    probe_lift = lift(probe_accuracy, num_classes)
    rule = next(rule for rule in RULES if rule.matches(labels_per_class, probe_lift))
    return Recommendation(RECIPES[rule.recipe], RECIPES[rule.check], rule.name, rule.evidence, probe_lift,
                          labels_per_class)

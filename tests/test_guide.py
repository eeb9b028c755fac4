"""The decision guide: every rule agrees with the committed measurement it cites, and bad input is refused.

The rules of `companion.guide` are typed, but the cells they cite are printed by chapters 4 and 6;
these tests read those notebooks' committed outputs (which nbval checks against a fresh run) and
fail when a rerun changes a verdict a rule rests on.
"""

import json
import re
from pathlib import Path

import pytest

from companion import guide
from companion.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_4 = ROOT / "notebooks" / "04_feature_extraction_vs_fine_tuning.ipynb"
CHAPTER_6 = ROOT / "notebooks" / "06_sample_efficiency.ipynb"
TARGETS = ("new camera", "x-ray")


def outputs(path: Path) -> str:
    chunks = []
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            chunks.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(chunks)


def label(recipe: str) -> str:
    return RECIPES[recipe].label


def rule(name: str) -> guide.Rule:
    return next(rule for rule in guide.RULES if rule.name == name)


def ranked_as_tied(target: str, n_per_class: int, strategy: str) -> bool:
    """Whether chapter 4's ranking of ``target`` at ``n_per_class`` lists ``strategy`` as best or tied."""
    text = outputs(CHAPTER_4)
    block = text[text.index(f"{target}, {n_per_class} labels per class"):].splitlines()[1:]
    line = next(line for line in block if line.strip().startswith(strategy))
    return line.rstrip().endswith(("best", "tied with the best"))


def test_up_to_75_labels_take_the_head_tied_with_the_best_at_5_20_and_50_per_class():
    """Check chapter 4 (the head best or tied in every cell, the probe not) and chapter 5 (full fine-tuning loses)."""
    for target in TARGETS:
        for n in (5, 20, 50):
            assert ranked_as_tied(target, n, label("head_only")), (target, n)
    assert not ranked_as_tied("x-ray", 5, label("linear_probe"))  # why the head, not the probe
    assert not ranked_as_tied("new camera", 20, label("linear_probe"))
    assert not ranked_as_tied("new camera", 20, label("full_finetune"))
    chapter_5 = outputs(ROOT / "notebooks" / "05_troubleshooting_lab.ipynb")
    low, high = map(float, re.search(r"^full fine-tuning - head only: [-+]\d\.\d+ \[([-+]\d\.\d+), ([-+]\d\.\d+)\]$",
                                     chapter_5, re.MULTILINE).groups())
    assert high < 0, (low, high)
    assert rule("few or some labels").recipe == "head_only"
    for n in (1, 5, 20, 50, 75):
        assert guide.recommend_strategy(n, 0.4, 6).recipe == RECIPES["head_only"]


def test_many_labels_name_the_cheaper_scratch_with_full_fine_tuning_beside_it():
    """Check chapter 6 (scratch beats the frozen strategies at 100 and 300) and chapter 8 (one seed each, no verdict)."""
    text = outputs(CHAPTER_6)
    for n in (100, 300):
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{n}/class:"))
        assert "scratch beats linear probe" in line and "scratch beats partial (top 2)" in line, line
    chapter_8 = outputs(ROOT / "notebooks" / "08_practical_recipe.ipynb")
    assert re.search(r"^(full fine-tuning - scratch|scratch - full fine-tuning): "
                     r".*\(1 seed: training randomness not counted, 600 test images\)",
                     chapter_8, re.MULTILINE)  # one seed each: the guide does not rank them
    advice = guide.recommend_strategy(300, 0.5, 6)
    assert (advice.recipe, advice.check) == (RECIPES["scratch"], RECIPES["full_finetune"])
    assert "one seed each" in advice.evidence and "not compared with scratch over seeds" in advice.evidence
    sections = {"chapter 6": "Against scratch, budget by budget", "chapter 8": "Where does it fail?"}
    for chapter, section in sections.items():  # the cited sections exist under these names
        assert f"{chapter}, '{section}'" in advice.evidence
        path = CHAPTER_6 if chapter == "chapter 6" else ROOT / "notebooks" / "08_practical_recipe.ipynb"
        headings = [line.lower() for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "markdown"
                    for line in "".join(cell["source"]).splitlines() if line.startswith("#")]
        assert any(heading.endswith(section.lower()) for heading in headings), (chapter, section)


def test_every_rule_names_a_recipe_and_cites_a_chapter():
    """Check that each rule's recipe exists and its evidence names where it was measured."""
    for each in guide.RULES:
        assert each.recipe in RECIPES and each.check in RECIPES and each.check != each.recipe
        assert re.search(r"chapter \d", each.evidence), each
    assert guide.RULES[-1].max_labels is None and guide.RULES[-1].min_lift is None  # a rule matches every input


def test_a_recommendation_prints_its_rule_and_evidence():
    """Check the printed recommendation names the recipe, the rule, the lift and the evidence."""
    text = str(guide.recommend_strategy(300, 0.5, 6))
    assert text.startswith("recommended: scratch (RECIPES['scratch']); "
                           "beside it: full fine-tuning (RECIPES['full_finetune'])")
    assert "rule: many labels (300 labels per class, probe lift 0.40)" in text and "chapter 6" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"labels_per_class": 0}, "labels_per_class"),
    ({"labels_per_class": 2.5}, "labels_per_class"),
    ({"probe_accuracy": 55.0}, "Give a fraction, not a percentage"),
    ({"probe_accuracy": float("nan")}, "probe_accuracy"),
    ({"probe_accuracy": True}, "probe_accuracy"),
    ({"num_classes": 1}, "num_classes"),
])
def test_bad_input_is_refused_with_the_parameter_named(kwargs, message):
    """Check that each bad argument gets a ValueError naming it (and the percentage hint)."""
    arguments = {"labels_per_class": 20, "probe_accuracy": 0.5, "num_classes": 6, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        guide.recommend_strategy(**arguments)

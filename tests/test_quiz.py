"""Tests for companion.quiz: the question files' schema, rendering, checkers and scoring.

``SCHEMA`` and ``QUESTION_SCHEMAS`` below are the full schema of ``notebooks/quizzes/*.json``
(JSON Schema 2020-12, one schema per question type, for clear messages); ``quiz.validate`` only
checks the structure at run time. Run ``pytest tests/test_quiz.py`` after editing a question file.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import re
from pathlib import Path

import jsonschema
import nbformat
import pytest

from companion import backbones, quiz

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_01 = ROOT / "notebooks" / "01_meet_the_data_and_backbone.ipynb"

TEXT = {"type": "string", "minLength": 1, "pattern": r"^[^`$]*$"}  # no backticks, no maths
CODE = {"type": "string", "minLength": 1}
CHOICE = {"type": "object", "additionalProperties": False,
          "required": ["answer", "correct", "feedback"],
          "properties": {"answer": TEXT, "correct": {"type": "boolean"}, "feedback": TEXT}}
CORRECT = {"properties": {"correct": {"const": True}}}
COMMON = {"id": {"type": "string", "pattern": r"^[a-z0-9]+(-[a-z0-9]+)*$"},
          "concept": {"enum": list(quiz.CONCEPTS)},
          "objectives": {"type": "array", "minItems": 1, "uniqueItems": True,
                         "items": {"enum": list(quiz.OBJECTIVES)}},
          "insights": {"type": "array", "minItems": 1, "uniqueItems": True,
                       "items": {"enum": list(quiz.INSIGHTS)}},
          "section": TEXT, "question": TEXT}


def _question_schema(kind: str, required: list[str], properties: dict) -> dict:
    return {"type": "object", "additionalProperties": False,
            "required": ["type", *COMMON, *required],
            "properties": {"type": {"const": kind}, **COMMON, **properties}}


def _choices(max_correct: int | None) -> dict:
    limit = {"maxContains": max_correct} if max_correct else {}
    return {"type": "array", "minItems": 2, "maxItems": 8, "items": CHOICE,
            "contains": CORRECT, "minContains": 1, **limit}


QUESTION_SCHEMAS = {
    "multiple_choice": _question_schema("multiple_choice", ["answers"], {"answers": _choices(1)}),
    "many_choice": _question_schema("many_choice", ["answers"], {"answers": _choices(None)}),
    "numeric": _question_schema(
        "numeric", ["answer", "tolerance", "feedback_correct", "feedback_wrong"],
        {"answer": {"type": "number"}, "tolerance": {"type": "number", "exclusiveMinimum": 0},
         "precision": {"type": "integer", "minimum": 1},  # "precision": 0 breaks jupyterquiz
         "feedback_correct": TEXT, "feedback_wrong": TEXT,
         "hints": {"type": "array", "items": {
             "type": "object", "additionalProperties": False, "required": ["range", "feedback"],
             "properties": {"range": {"type": "array", "minItems": 2, "maxItems": 2,
                                      "items": {"type": "number"}}, "feedback": TEXT}}}}),
    "code": _question_schema(
        "code", ["function", "checker", "starter", "solution"],
        {"function": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$"},
         "checker": {"enum": sorted(quiz.CHECKERS)}, "starter": CODE, "solution": CODE}),
}
SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
          "additionalProperties": False, "required": ["id", "title", "doc", "questions"],
          "properties": {"id": TEXT, "title": TEXT, "doc": TEXT, "questions": {
              "type": "array", "minItems": 1,
              "items": {"type": "object", "required": ["type"],
                        "properties": {"type": {"enum": list(QUESTION_SCHEMAS)}}}}}}


def _headings(doc: str) -> set[str]:
    """The Markdown headings of a book page (.md) or notebook (.ipynb)."""
    source = next(ROOT.glob(doc + ".*"))
    if source.suffix == ".ipynb":
        text = "\n".join(cell.source for cell in nbformat.read(source, as_version=4).cells
                         if cell.cell_type == "markdown")
    else:
        text = source.read_text(encoding="utf-8")
    return {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}


def schema_problems(data: dict, stem: str = "") -> list[str]:
    """Every way ``data`` breaks the schema or a rule JSON Schema cannot express."""
    def errors(schema: dict, instance: object, where: str) -> list[str]:
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{where}{'/'.join(map(str, error.absolute_path))}: {error.message}"
                for error in validator.iter_errors(instance)]

    found = errors(SCHEMA, data, "")
    if found:
        return found
    if stem and data["id"] != stem:
        found.append(f"id {data['id']!r} is not the file name {stem!r}")
    if not list(ROOT.glob(data["doc"] + ".*")):
        return found + [f"doc {data['doc']!r} names no page of the book"]
    headings = _headings(data["doc"])
    for question in data["questions"]:
        where = f"questions/{question.get('id')}/"
        found += errors(QUESTION_SCHEMAS[question["type"]], question, where)
        if question.get("section") not in headings:
            found.append(f"{where}section {question.get('section')!r} is no heading of "
                         f"{data['doc']}")
        for hint in question.get("hints", []):
            low, high = hint["range"]
            if not low < high or low <= question["answer"] <= high:
                found.append(f"{where}hint range {hint['range']} must have low < high and "
                             "exclude the answer")
    ids = [question.get("id") for question in data["questions"]]
    found += [f"id {qid!r} is used twice" for qid in sorted(set(ids)) if ids.count(qid) > 1]
    return found


def _raw(stem: str) -> dict:
    return json.loads((quiz.quiz_directory() / f"{stem}.json").read_text(encoding="utf-8"))


def _by_id(qid: str) -> dict:
    return next(question for question in quiz.questions() if question["id"] == qid)


def _function(source: str, name: str):
    namespace: dict = {}
    exec(source, namespace)  # test code and the question files' own reference solutions
    return namespace[name]


# ----------------------------------------------------------------------------- schema
@pytest.mark.parametrize("stem", quiz.chapters())
def test_question_file_follows_schema(stem):
    """Check that a question file follows the full schema and loads without error."""
    assert schema_problems(_raw(stem), stem) == []
    assert quiz.load(stem)["id"] == stem


def test_question_ids_are_unique_across_files():
    """Check that no question id is used twice anywhere in the course."""
    ids = [question["id"] for question in quiz.questions()]
    assert len(ids) == len(set(ids)) >= 12


def test_every_concept_and_objective_has_questions():
    """Check that each concept, learning objective and key insight is checked by a question."""
    questions = quiz.questions()
    assert {question["concept"] for question in questions} == set(quiz.CONCEPTS)
    assert set().union(*(question["objectives"] for question in questions)) == set(quiz.OBJECTIVES)
    assert set().union(*(question["insights"] for question in questions)) == set(quiz.INSIGHTS)


@pytest.mark.parametrize("path, value, message", [
    ("questions/0/answers/0/correct", True, "Too many items match"),       # 2 correct, single
    ("questions/0/answers/1/correct", False, "does not contain items"),    # 0 correct
    ("questions/0/answers/0/feedback", "", "should be non-empty"),
    ("questions/0/question", "Run <code>freeze</code> or `freeze`", "does not match"),
    ("questions/0/concept", "transfer", "is not one of"),
    ("questions/0/objectives", [], "should be non-empty"),
    ("questions/0/id", "Intro What", "does not match"),
    ("questions/1/id", "intro-what-is-reused", "is used twice"),
    ("questions/0/section", "No such section", "is no heading"),
])
def test_schema_rejects_a_broken_multiple_choice_file(path, value, message):
    """Check that the schema catches a wrong number of correct answers, missing feedback, ..."""
    data = copy.deepcopy(_raw("intro"))
    *parents, last = [int(part) if part.isdigit() else part for part in path.split("/")]
    target = data
    for part in parents:
        target = target[part]
    target[last] = value
    assert any(message in problem for problem in schema_problems(data, "intro"))


@pytest.mark.parametrize("change, message", [
    (lambda q: q.update(precision=0), "less than the minimum of 1"),
    (lambda q: q.pop("tolerance"), "'tolerance' is a required property"),
    (lambda q: q.update(tolerance=0), "less than or equal to the minimum of 0"),
    (lambda q: q["hints"][0].update(range=[0.3, 0.4]), "exclude the answer"),
    (lambda q: q.pop("feedback_wrong"), "'feedback_wrong' is a required property"),
])
def test_schema_rejects_a_broken_numeric_question(change, message):
    """Check that a numeric question needs a tolerance > 0, feedback and precision != 0."""
    data = copy.deepcopy(_raw("01_meet_the_data_and_backbone"))
    change(next(q for q in data["questions"] if q["id"] == "ch01-crate-fraction"))
    assert any(message in problem for problem in schema_problems(data))


def test_schema_accepts_a_many_choice_question_with_one_correct_answer():
    """Check that many_choice needs at least one correct choice, not several."""
    data = copy.deepcopy(_raw("01_meet_the_data_and_backbone"))
    question = next(q for q in data["questions"] if q["id"] == "ch01-six-classes")
    for choice in question["answers"][1:]:
        choice["correct"] = False
    assert schema_problems(data) == []


# ----------------------------------------------------------------------------- loading errors
def _write(folder: Path, stem: str, text: str) -> Path:
    (folder / f"{stem}.json").write_text(text, encoding="utf-8")
    return folder


def test_load_rejects_an_unknown_chapter():
    """Check that an unknown chapter names the chapters that exist."""
    with pytest.raises(ValueError, match=r"'chapter' parameter must be one of \[.*'intro'.*"
                                         r"Got '99_nothing' instead"):
        quiz.load("99_nothing")


@pytest.mark.parametrize("text, message", [
    ("{not json", r"bad\.json is not valid JSON: Expecting property name"),
    ('["a list"]', r"bad\.json: must be an object with exactly the keys"),
    ('{"id": "other", "title": "t", "doc": "d", "questions": [{"id": "a", "type": "numeric"}]}',
     r"'id' must be the file name 'bad'"),
    ('{"id": "bad", "title": "t", "doc": "d", "questions": [{"id": "a", "type": "essay"}]}',
     r"question 0 must have a slug 'id' .* and a 'type' among"),
    ('{"id": "bad", "title": "t", "doc": "d", "questions": [{"id": "a", "type": "numeric"}]}',
     r"question 0 \('a'\) is a numeric question that lacks the keys \['answer', 'concept'"),
])
def test_load_rejects_a_malformed_file(tmp_path, text, message):
    """Check that a malformed question file raises a ValueError that says where."""
    with pytest.raises(ValueError, match=message):
        quiz.load("bad", _write(tmp_path, "bad", text))


def test_load_rejects_duplicate_ids(tmp_path):
    """Check that two questions with one id in a file are refused."""
    data = _raw("intro")
    data["id"] = "bad"
    data["questions"][1]["id"] = data["questions"][0]["id"]
    with pytest.raises(ValueError, match=r"ids must be unique. Repeated: \['intro-what-is-reused"):
        quiz.load("bad", _write(tmp_path, "bad", json.dumps(data)))


def test_questions_rejects_an_unknown_concept():
    """Check that questions() names the concepts that exist."""
    with pytest.raises(ValueError, match=r"'concept' parameter must be one of .*Got 'transfer'"):
        quiz.questions(concept="transfer")


# ----------------------------------------------------------------------------- rendering
@pytest.fixture
def displayed(monkeypatch):
    """Record what show() displays instead of sending it to a notebook."""
    import IPython.display
    import jupyterquiz.dynamic.display

    outputs = []
    monkeypatch.setattr(jupyterquiz.dynamic.display, "display", outputs.append)
    monkeypatch.setattr(IPython.display, "display", outputs.append)
    return outputs


def _bundles(outputs) -> list[dict]:
    return [output._repr_mimebundle_() if hasattr(output, "_repr_mimebundle_") else
            {"text/html": output._repr_html_()} if hasattr(output, "_repr_html_") else
            {"application/javascript": output._repr_javascript_()} for output in outputs]


def test_show_is_deterministic_and_keeps_the_callers_random_state(displayed):
    """Check that show() gives the same HTML twice and leaves random's state untouched."""
    random.seed(1234)
    before = random.getstate()
    quiz.show("01_meet_the_data_and_backbone")
    first = _bundles(displayed)
    assert random.getstate() == before
    displayed.clear()
    quiz.show("01_meet_the_data_and_backbone")
    assert _bundles(displayed) == first
    assert random.random() == random.Random(1234).random()


def test_show_renders_the_quiz_then_the_code_exercises(displayed):
    """Check that show() displays the quiz (HTML + script) and one block per code exercise."""
    quiz.show("01_meet_the_data_and_backbone")
    kinds = [type(output).__name__ for output in displayed]
    assert kinds == ["HTML", "Javascript", "HTML", "HTML"]
    script = displayed[1].data
    for question in quiz.questions("01_meet_the_data_and_backbone"):
        shown = script if question["type"] != "code" else displayed[2].data + displayed[3].data
        assert question["id"] in shown
    assert "quiz.check_freeze_up_to(freeze_up_to)" in displayed[2].data
    assert '"precision": 0' not in script
    div_id = re.search(r'<div id="(\w+)"', displayed[0].data).group(1)
    displayed.clear()
    quiz.show(concept="practice")
    assert re.search(r'<div id="(\w+)"', displayed[0].data).group(1) != div_id


def test_to_jupyterquiz_appends_the_section_and_keeps_the_tolerance():
    """Check that every feedback names its section and a numeric answer accepts its tolerance."""
    question = _by_id("ch01-crate-fraction")
    item = quiz.to_jupyterquiz(question, 3)
    assert item["question"].startswith("<b>3.</b>") and "precision" not in item
    low, high = item["answers"][0]["range"]
    assert low == pytest.approx(0.345) and 0.355 < high < 0.355 + 1e-9
    assert all("\u201cWhat does ImageNet make of a parcel?\u201d in chapter 1" in answer["feedback"]
               for answer in item["answers"])
    choices = quiz.to_jupyterquiz(_by_id("intro-what-is-reused"), 1)["answers"]
    assert [choice["answer"][:3] for choice in choices] == ["A. ", "B. ", "C. "]
    assert all(choice["feedback"].endswith("in the introduction.)") for choice in choices)


# ----------------------------------------------------------------------------- notebook facts
def _notebook_text() -> str:
    cells = nbformat.read(NOTEBOOK_01, as_version=4).cells
    return "".join(output.get("text", "") for cell in cells if cell.cell_type == "code"
                   for output in cell.outputs)


def test_numeric_answer_matches_the_notebook_output():
    """Check that the crate fraction the question expects is the one notebook 01 prints."""
    printed = re.search(r"most common ImageNet label for a parcel: crate \((\d\.\d+) of parcels",
                        _notebook_text())
    question = _by_id("ch01-crate-fraction")
    assert printed, "notebook 01 no longer prints the crate fraction: update the question"
    assert abs(float(printed.group(1)) - question["answer"]) <= question["tolerance"]


def test_quoted_facts_match_the_notebook_and_the_backbone():
    """Check that the parameter count and normalisation quoted in questions are still true."""
    assert "4,652,008 parameters; mean (0.5, 0.5, 0.5), std (0.5, 0.5, 0.5)" in _notebook_text()
    spec = backbones.get_spec("efficientnet_lite0")
    question = _by_id("ch01-normalisation")
    assert (0.25 - spec.mean[0]) / spec.std[0] == pytest.approx(question["answer"])


def test_notebook_01_ends_with_its_quiz():
    """Check that chapter 1 ends with the "Check yourself" section that shows its questions."""
    cells = nbformat.read(NOTEBOOK_01, as_version=4).cells
    assert cells[-2].source.startswith("## Check yourself")
    assert 'quiz.show("01_meet_the_data_and_backbone")' in cells[-1].source
    assert cells[-1].execution_count is not None


def test_knowledge_check_page_is_up_to_date():
    """Check that book/knowledge_check.ipynb holds the cells generated from the question files."""
    path = ROOT / "book" / "quiz_exercises.py"
    spec = importlib.util.spec_from_file_location("quiz_exercises", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.stale_cells() == [], "run: python book/quiz_exercises.py, then make execute"
    cells = nbformat.read(module.PAGE, as_version=4).cells
    assert all(cell.execution_count is not None for cell in cells if cell.cell_type == "code")
    assert sum(cell.source.count(":::{dropdown}") for cell in cells) == len(quiz.questions())


# ----------------------------------------------------------------------------- checkers
@pytest.mark.parametrize("qid", ["ch01-freeze-up-to", "ch01-param-groups", "ch02-probe-accuracy",
                                 "ch02-extract-features"])
def test_checker_accepts_the_reference_solution_and_refuses_the_starter(qid):
    """Check that each code exercise's checker passes its solution and fails its starter code."""
    question = _by_id(qid)
    checker = quiz.CHECKERS[question["checker"]]
    result = checker(_function(question["solution"], question["function"]))
    assert result.passed and repr(result).startswith("\u2713")
    result = checker(_function(question["starter"], question["function"]))
    assert not result.passed and repr(result).startswith("\u2717")


FREEZE_MISTAKES = {
    "only freezes, never unfreezes": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        if depth < k:\n            module.requires_grad_(False)\n",
        r"after freeze_up_to\(model, 0\), depth 0 \('stem'\) is frozen, but no depth should be"),
    "off by one": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        module.requires_grad_(depth > k)\n",
        r"after freeze_up_to\(model, 3\), depth 3 \('blocks.2'\) is frozen, but only depths 0-2"),
    "freezes the classifier too": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    model.requires_grad_(k == 0)\n",
        r"after freeze_up_to\(model, 3\), depth 3 \('blocks.2'\) is frozen"),
    "skips a depth": (
        "def freeze_up_to(model, k):\n"
        "    if not 0 <= k <= 9:\n        raise ValueError(k)\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        module.requires_grad_(depth >= k or depth == 1)\n",
        r"after freeze_up_to\(model, 3\), depth 1 \('blocks.0'\) is still trainable: only "
        r"depths 0-2 should be frozen, but 6 of its 6 tensors have requires_grad=True"),
    "no validation": (
        "def freeze_up_to(model, k):\n"
        "    for depth, (name, module) in enumerate(backbones.stages(model)):\n"
        "        module.requires_grad_(depth >= k)\n",
        r"freeze_up_to\(model, 10\) returned; it should raise ValueError: there are 9 depths"),
    "crashes": (
        "def freeze_up_to(model, k):\n    model.stages[k].freeze()\n",
        r"freeze_up_to\(model, 3\) raised AttributeError: 'EfficientNet' object has no attribute"),
}


@pytest.mark.parametrize("mistake", sorted(FREEZE_MISTAKES))
def test_check_freeze_up_to_says_what_is_wrong(mistake):
    """Check that check_freeze_up_to names the depth and the call that show the mistake."""
    source, message = FREEZE_MISTAKES[mistake]
    result = quiz.check_freeze_up_to(_function("from companion import backbones\n" + source,
                                               "freeze_up_to"))
    assert not result.passed
    assert re.search(message, repr(result)), repr(result)


def test_check_freeze_up_to_names_a_frozen_classifier():
    """Check that freezing the classifier with the backbone is reported as such."""
    def freeze_up_to(model, k):
        if not 0 <= k <= 9:
            raise ValueError(k)
        for depth, (name, module) in enumerate(backbones.stages(model)):
            module.requires_grad_(depth >= k)
        model.get_classifier().requires_grad_(k < 9)

    assert "after freeze_up_to(model, 9), the classifier is frozen: it is not a depth" in \
        repr(quiz.check_freeze_up_to(freeze_up_to))


GROUP_MISTAKES = {
    "decay the wrong way": (
        "    return [{'params': [p for p in module.parameters() if p.requires_grad],\n"
        "             'lr': lr * decay ** depth} for depth, (name, module) in enumerate(depths)]"
        " + [{'params': list(model.get_classifier().parameters()), 'lr': lr}]\n",
        r"make_param_groups\(model, 0.001, 0.5\): 'conv_stem.weight' \(depth 0, 'stem'\) gets lr "
        r"0.001; expected 3.90625e-06 = 0.001 \* 0.5 \*\* 8\."),
    "keeps frozen parameters": (
        "    return [{'params': list(module.parameters()), 'lr': lr * decay ** (8 - depth)}\n"
        "            for depth, (name, module) in enumerate(depths)]"
        " + [{'params': list(model.get_classifier().parameters()), 'lr': lr}]\n",
        r"\(depths 0-3 frozen\): 'conv_stem.weight' \(depth 0, 'stem'\) is frozen but in a group"),
    "forgets the classifier": (
        "    return [{'params': list(module.parameters()), 'lr': lr * decay ** (8 - depth)}\n"
        "            for depth, (name, module) in enumerate(depths)]\n",
        r"2 trainable tensors are in no group, e.g. 'classifier.weight'"),
    "adds the whole model again": (
        "    return [{'params': list(model.parameters()), 'lr': lr}]"
        " + [{'params': list(model.get_classifier().parameters()), 'lr': lr}]\n",
        r"'classifier.weight' is in 2 groups; an optimizer refuses"),
    "returns the parameters": (
        "    return model.parameters()\n",
        r"returned a generator: return a list of dicts, each with the keys 'params' and 'lr'"),
}


@pytest.mark.parametrize("mistake", sorted(GROUP_MISTAKES))
def test_check_param_groups_says_what_is_wrong(mistake):
    """Check that check_param_groups names the parameter, its depth and the expected rate."""
    body, message = GROUP_MISTAKES[mistake]
    source = ("from companion import backbones\n\n"
              "def make_param_groups(model, lr, decay):\n"
              "    depths = backbones.stages(model)\n" + body)
    result = quiz.check_param_groups(_function(source, "make_param_groups"))
    assert not result.passed
    assert re.search(message, repr(result)), repr(result)


@pytest.mark.parametrize("checker", sorted(quiz.CHECKERS.values(), key=lambda c: c.__name__))
def test_checkers_reject_what_is_not_a_function(checker):
    """Check that a checker given no function raises a TypeError that says so."""
    with pytest.raises(TypeError, match=r"'function' parameter of check_\w+ must be a function. "
                                        r"Got str instead"):
        checker("freeze_up_to")


PROBE = ("from sklearn.linear_model import LogisticRegression\n"
         "from sklearn.pipeline import make_pipeline\n"
         "from sklearn.preprocessing import StandardScaler\n\n"
         "def linear_probe_accuracy(X_train, y_train, X_test, y_test):\n"
         "    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))\n")
PROBE_MISTAKES = {
    "a percentage": (
        "    return 100 * probe.fit(X_train, y_train).score(X_test, y_test)\n",
        r"returned 95, a percentage: return a fraction in \[0, 1\]; expected about 0.950"),
    "the error rate": (
        "    return 1 - probe.fit(X_train, y_train).score(X_test, y_test)\n",
        r"returned 0.050, which looks like the error rate"),
    "fitted on the test rows": (
        "    return probe.fit(X_test, y_test).score(X_test, y_test)\n",
        r"with y_train shuffled the accuracy should fall to about 0.200, but it is 0.983: the "
        r"probe must learn from X_train and y_train only"),
    "fitted on train and test rows": (
        "    import numpy as np\n"
        "    probe.fit(np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test]))\n"
        "    return probe.score(X_test, y_test)\n",
        r"with y_train shuffled the accuracy should fall to about 0.200, but it is 0.933"),
    "scored on the training rows": (
        "    return probe.fit(X_train, y_train).score(X_train, y_train)\n",
        r"with y_test shuffled .* score the probe on X_test and y_test, not on the rows it was"),
    "one value per row": (
        "    return probe.fit(X_train, y_train).predict(X_test) == y_test.numpy()\n",
        r"returned an array of shape \(60,\): return one number"),
    "scales in place": (
        "    X_train -= X_train.mean(0)\n"
        "    return probe.fit(X_train, y_train).score(X_test, y_test)\n",
        r"changed X_train in place: leave the caller's arrays alone"),
    "labels as numpy only": (
        "    return probe.fit(X_train, y_train.numpy()).score(X_test, y_test.astype(int))\n",
        r"raised AttributeError: 'Tensor' object has no attribute 'astype'"),
}


@pytest.mark.parametrize("mistake", sorted(PROBE_MISTAKES))
def test_check_probe_accuracy_says_what_is_wrong(mistake):
    """Check that check_probe_accuracy names a percentage, a test-fitted probe, an array..."""
    body, message = PROBE_MISTAKES[mistake]
    result = quiz.check_probe_accuracy(_function(PROBE + body, "linear_probe_accuracy"))
    assert not result.passed
    assert re.search(message, repr(result)), repr(result)


def test_check_probe_accuracy_accepts_a_probe_without_scaling():
    """Check that an unscaled logistic regression, a reasonable variant, passes too."""
    source = ("from sklearn.linear_model import LogisticRegression\n\n"
              "def linear_probe_accuracy(X_train, y_train, X_test, y_test):\n"
              "    return LogisticRegression(max_iter=5000).fit(X_train, y_train)"
              ".score(X_test, y_test)\n")
    assert quiz.check_probe_accuracy(_function(source, "linear_probe_accuracy")).passed


EXTRACT = "import torch\n\ndef extract_pooled_features(model, x):\n"
EXTRACT_MISTAKES = {
    "train mode": (
        "    with torch.no_grad():\n"
        "        return model.forward_features(x).mean(dim=(2, 3))\n",
        r"after extract_pooled_features\(model, x\) with the model in train mode, 98 BatchNorm "
        r"running statistics changed \(e.g. 'bn1.running_mean'\): .* Call model.eval\(\)"),
    "eval mode for good": (
        "    model.eval()\n"
        "    with torch.no_grad():\n"
        "        return model.forward_features(x).mean(dim=(2, 3))\n",
        r"with the model in train mode, the model is in eval mode: put it back as it was"),
    "always back to train mode": (
        "    model.eval()\n"
        "    with torch.no_grad():\n"
        "        features = model.forward_features(x).mean(dim=(2, 3))\n"
        "    model.train()\n"
        "    return features\n",
        r"with the model in eval mode, the model is in train mode: put it back"),
    "records gradients": (
        "    was_training = model.eval().training\n"
        "    return model.forward_features(x).mean(dim=(2, 3))\n",
        r"returned a tensor that records gradients: compute it under torch.no_grad\(\)"),
    "feature maps": (
        "    with torch.no_grad():\n"
        "        return model.eval().forward_features(x)\n",
        r"returned shape \(4, 1280, 2, 2\), the feature maps: average them over height"),
    "logits": (
        "    with torch.no_grad():\n"
        "        return model.eval()(x)\n",
        r"returned shape \(4, 6\); expected \(4, 1280\)"),
}


@pytest.mark.parametrize("mistake", sorted(EXTRACT_MISTAKES))
def test_check_extract_features_says_what_is_wrong(mistake):
    """Check that check_extract_features names BatchNorm drift, the mode, gradients, shapes."""
    body, message = EXTRACT_MISTAKES[mistake]
    result = quiz.check_extract_features(_function(EXTRACT + body, "extract_pooled_features"))
    assert not result.passed
    assert re.search(message, repr(result)), repr(result)


def test_every_checker_has_a_code_question():
    """Check that each checker of quiz.CHECKERS is used by a code exercise, and there are >= 4."""
    used = {question["checker"] for question in quiz.questions() if question["type"] == "code"}
    assert used == set(quiz.CHECKERS) and len(used) >= 4


# ----------------------------------------------------------------------------- grading
@pytest.mark.parametrize("qid, response, correct, feedback", [
    ("intro-what-is-reused", "B", True, "Right: the value is the representation"),
    ("intro-what-is-reused", "c", False, "Not quite: a training log records"),
    ("ch01-six-classes", "A, C, E", True, "Right: dent is one"),
    ("ch01-six-classes", ["A", "E"], False, "C: Right: water damage"),  # a missed choice
    ("ch01-six-classes", "ABCE", False, "B: Not quite: marker scribbles"),  # a wrong pick
    ("ch01-crate-fraction", 0.352, True, "Right: 84 of 240 parcels"),
    ("ch01-crate-fraction", "84/240", True, "Right: 84 of 240 parcels"),
    ("ch01-crate-fraction", 0.36, False, "read the first line printed"),
    ("ch01-crate-fraction", 35, False, "that looks like a percentage"),
    ("ch01-normalisation", -1.03, False, "ImageNet's usual mean and std"),
])
def test_grade_gives_the_feedback_of_the_answer(qid, response, correct, feedback):
    """Check that grade() accepts letters and numbers within the tolerance, with feedback."""
    result, text = quiz.grade(_by_id(qid), response)
    assert result is correct
    assert feedback in text and text.endswith(".)")


@pytest.mark.parametrize("qid, response, message", [
    ("intro-what-is-reused", "E", r"must be one letter among A, B, C. Got 'E'"),
    ("intro-what-is-reused", "A, B", r"must be one letter among A, B, C"),
    ("ch01-six-classes", "", r"must be letters among A, B, C, D, E"),
    ("ch01-crate-fraction", "a third", r"must be a number. Got 'a third'"),
])
def test_grade_rejects_a_malformed_response(qid, response, message):
    """Check that an answer of the wrong form raises a ValueError saying what is expected."""
    with pytest.raises(ValueError, match=message):
        quiz.grade(_by_id(qid), response)


def test_score_counts_by_concept_and_explains_mistakes():
    """Check that score() adds up right, wrong and unanswered questions per concept."""
    freeze = _by_id("ch01-freeze-up-to")
    report = quiz.score({"intro-what-is-reused": "B", "intro-when-it-helps": "B",
                         "ch01-crate-fraction": 0.35, "ch01-distractors": None,
                         "ch01-freeze-up-to": _function(freeze["solution"], "freeze_up_to")})
    assert report.splitlines()[:5] == [
        "Score: 3 of 5 correct (1 wrong, 1 not answered yet).",
        "  reusable features                    1 of 1",
        "  source-target similarity             1 of 2",
        "  feature extraction vs fine-tuning    1 of 1",
        "  practice                             0 of 1"]
    assert report.splitlines()[5].startswith("\u2717 intro-when-it-helps: Not quite: it is the")


def test_score_rejects_unknown_ids_and_non_dicts():
    """Check that score() names unknown question ids and refuses a list."""
    with pytest.raises(ValueError, match=r"Unknown question ids \['q1'\]. Known ids: \["):
        quiz.score({"q1": "A"})
    with pytest.raises(TypeError, match=r"'answers' parameter of score must be a dict. Got list"):
        quiz.score(["A"])

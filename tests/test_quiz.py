"""Tests for companion.quiz: the question files' schema, rendering and scoring (the checkers: test_exercises.py).

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
from quiz_questions import by_id as _by_id, function_from as _function

from companion import backbones, exercises, guide, quiz
from companion.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]

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


FIXED_ORDER = {"type": "boolean"}  # true: the choices form a scale and keep their order
QUESTION_SCHEMAS = {
    "multiple_choice": _question_schema("multiple_choice", ["answers"],
                                        {"answers": _choices(1), "fixed_order": FIXED_ORDER}),
    "many_choice": _question_schema("many_choice", ["answers"],
                                    {"answers": _choices(None), "fixed_order": FIXED_ORDER}),
    "numeric": _question_schema(
        "numeric", ["kind", "answer", "tolerance", "feedback_correct", "feedback_wrong"],
        {"kind": {"enum": list(quiz.NUMERIC_KINDS)},
         "answer": {"type": "number"}, "tolerance": {"type": "number", "exclusiveMinimum": 0},
         "precision": {"type": "integer", "minimum": 1},  # "precision": 0 breaks jupyterquiz
         "feedback_correct": TEXT, "feedback_wrong": TEXT,
         "hints": {"type": "array", "items": {
             "type": "object", "additionalProperties": False, "required": ["range", "feedback"],
             "properties": {"range": {"type": "array", "minItems": 2, "maxItems": 2,
                                      "items": {"type": "number"}}, "feedback": TEXT}}}}),
    "code": _question_schema(
        "code", ["function", "checker", "starter", "solution"],
        {"function": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$"},
         "checker": {"enum": sorted(exercises.CHECKERS)}, "starter": CODE, "solution": CODE}),
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
    ("questions/0/answers/2/correct", False, "does not contain items"),    # 0 correct
    ("questions/0/answers/0/feedback", "", "should be non-empty"),
    ("questions/0/question", "Run <code>freeze</code> or `freeze`", "does not match"),
    ("questions/0/concept", "transfer", "is not one of"),
    ("questions/0/objectives", [], "should be non-empty"),
    ("questions/0/id", "Intro What", "does not match"),
    ("questions/1/id", "intro-what-is-reused", "is used twice"),
    ("questions/0/section", "No such section", "is no heading"),
    ("questions/0/fixed_order", "yes", "is not of type 'boolean'"),
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
    (lambda q: q["hints"][0].update(range=[-0.7, -0.5]), "exclude the answer"),
    (lambda q: q.pop("feedback_wrong"), "'feedback_wrong' is a required property"),
    (lambda q: q.pop("kind"), "'kind' is a required property"),
    (lambda q: q.update(kind="guess"), "is not one of ['prediction', 'derived', 'lookup']"),
])
def test_schema_rejects_a_broken_numeric_question(change, message):
    """Check that a numeric question needs a kind, a tolerance > 0, feedback and precision != 0."""
    data = copy.deepcopy(_raw("01_meet_the_data_and_backbone"))
    change(next(q for q in data["questions"] if q["id"] == "ch01-normalisation"))
    assert any(message in problem for problem in schema_problems(data))


def test_schema_accepts_a_many_choice_question_with_one_correct_answer():
    """Check that many_choice needs at least one correct choice, not several."""
    data = copy.deepcopy(_raw("01_meet_the_data_and_backbone"))
    question = next(q for q in data["questions"] if q["id"] == "ch01-camera-presets")
    for choice in question["answers"][1:]:
        choice["correct"] = False
    assert schema_problems(data) == []


def test_validate_knows_the_optional_keys():
    """Check that quiz.validate accepts fixed_order on choice questions only, and needs a numeric kind."""
    data = copy.deepcopy(_raw("01_meet_the_data_and_backbone"))
    choice = next(q for q in data["questions"] if q["type"] == "multiple_choice")
    choice["fixed_order"] = True
    assert quiz.validate(copy.deepcopy(data)) == data
    numeric = next(q for q in data["questions"] if q["type"] == "numeric")
    numeric["fixed_order"] = True
    with pytest.raises(ValueError, match=r"unknown keys \['fixed_order'\]"):
        quiz.validate(copy.deepcopy(data))
    del numeric["fixed_order"], numeric["kind"]
    with pytest.raises(ValueError, match=r"lacks the keys \['kind'\]"):
        quiz.validate(data)


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
    quiz.show("02_reusable_features")
    kinds = [type(output).__name__ for output in displayed]
    assert kinds == ["HTML", "Javascript", "HTML"]  # chapter 2 has one code exercise
    script = displayed[1].data
    for question in quiz.questions("02_reusable_features"):
        shown = script if question["type"] != "code" else displayed[2].data
        assert question["id"] in shown
    assert "quiz.check_probe_accuracy(linear_probe_accuracy)" in displayed[2].data
    assert '"precision": 0' not in script
    div_id = re.search(r'<div id="(\w+)"', displayed[0].data).group(1)
    displayed.clear()
    quiz.show(concept="practice")
    assert re.search(r'<div id="(\w+)"', displayed[0].data).group(1) != div_id


def test_show_keeps_the_stored_order_of_the_answers(displayed):
    """Check that show() asks jupyterquiz not to shuffle: the letters A, B, ... that grade() reads stay in order."""
    quiz.show("intro")
    assert 'data-shuffleanswers="False"' in displayed[0].data
    script = displayed[1].data
    letters = re.findall(r'"answer": "([A-H])\. ', script)
    assert letters[:4] == ["A", "B", "C", "D"]


def test_the_call_an_exercise_shows_exists():
    """Check that the checker call each code exercise tells the reader to run is a real function of quiz."""
    for question in (q for q in quiz.questions() if q["type"] == "code"):
        call = f"quiz.{question['checker']}({question['function']})"
        assert call in quiz.exercise_html(question, 1)
        assert getattr(quiz, question["checker"]) is exercises.CHECKERS[question["checker"]]


def test_to_jupyterquiz_appends_the_section_and_keeps_the_tolerance():
    """Check that every feedback names its section and a numeric answer accepts its tolerance."""
    question = _by_id("ch01-normalisation")
    item = quiz.to_jupyterquiz(question, 3)
    assert item["question"].startswith("<b>3.</b>") and "precision" not in item
    low, high = item["answers"][0]["range"]
    assert low == pytest.approx(-0.61) and -0.59 < high < -0.59 + 1e-9
    assert all("\u201cThe pretrained backbone\u201d in chapter 1" in answer["feedback"]
               for answer in item["answers"])
    choices = quiz.to_jupyterquiz(_by_id("intro-what-is-reused"), 1)["answers"]
    assert [choice["answer"][:3] for choice in choices] == ["A. ", "B. ", "C. ", "D. "]
    assert all(choice["feedback"].endswith("in the introduction.)") for choice in choices)


# ----------------------------------------------------------------------------- what the questions ask
SHUFFLED = [question for question in quiz.questions()
            if question["type"] == "multiple_choice" and not question.get("fixed_order")]
MAX_SHARE = 0.4  # of the single-choice keys, at one position or on the longest option


def answer_balance(questions: list[dict]) -> tuple[dict[str, float], float]:
    """The share of correct keys at each letter, and the share whose correct option is the longest.

    An option as long as the correct one counts as longest too, so a tie does not hide a tell.
    """
    letters = {}
    longest = 0
    for question in questions:
        flags = [choice["correct"] for choice in question["answers"]]
        letter = "ABCDEFGH"[flags.index(True)]
        letters[letter] = letters.get(letter, 0) + 1
        lengths = [len(choice["answer"]) for choice in question["answers"]]
        longest += lengths[flags.index(True)] == max(lengths)
    return ({letter: count / len(questions) for letter, count in sorted(letters.items())},
            longest / len(questions))


def test_single_choice_keys_are_spread_over_the_positions():
    """Check that no letter holds more than 40 % of the single-choice keys (fixed_order ones aside)."""
    positions, _ = answer_balance(SHUFFLED)
    assert len(SHUFFLED) >= 10 and max(positions.values()) <= MAX_SHARE, positions


def test_the_correct_option_is_rarely_the_longest():
    """Check that the correct option is the longest in at most 40 % of the single-choice questions."""
    _, longest = answer_balance(SHUFFLED)
    assert longest <= MAX_SHARE, f"the correct option is the longest in {longest:.0%} of them"


def test_answer_balance_catches_a_tell():
    """Check that a quiz whose keys are all first and longest is reported as such."""
    question = {"answers": [{"answer": "a long and correct answer", "correct": True},
                            {"answer": "short", "correct": False}]}
    assert answer_balance([question] * 3) == ({"A": 1.0}, 1.0)
    tie = {"answers": [{"answer": "same", "correct": False}, {"answer": "size", "correct": True}]}
    assert answer_balance([tie]) == ({"B": 1.0}, 1.0)


NUMERIC = [question for question in quiz.questions() if question["type"] == "numeric"]


def test_at_most_a_quarter_of_the_questions_are_look_ups():
    """Check that copying a printed number is the task of at most a quarter of all questions."""
    lookups = [question["id"] for question in NUMERIC if question["kind"] == "lookup"]
    assert len(lookups) <= len(quiz.questions()) / 4, lookups


@pytest.mark.parametrize("question", NUMERIC, ids=lambda q: q["id"])
def test_no_hint_range_overlaps_the_accepted_answers(question):
    """Check that a wrong answer a hint explains is never graded right (the hint must lie outside the key)."""
    low, high = question["answer"] - question["tolerance"], question["answer"] + question["tolerance"]
    for hint in question.get("hints", []):
        start, end = hint["range"]
        assert end < low or start > high, (question["id"], hint["range"], (low, high))
        assert not quiz.grade(question, (start + end) / 2)[0], (question["id"], hint["range"])


@pytest.mark.parametrize("question", NUMERIC, ids=lambda q: q["id"])
def test_numeric_question_states_its_tolerance(question):
    """Check that a numeric question says how close an answer must be (or that it is an exact count)."""
    text = question["question"]
    if question["tolerance"] < 1 and float(question["answer"]).is_integer() and "exact" in text:
        return
    stated = re.escape(f"{question['tolerance']:g}")
    assert re.search(rf"within {stated}\b", text), text


def _outputs(stem: str) -> str:
    """All text outputs (streams and text/plain results) of one committed chapter notebook."""
    cells = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4).cells
    return "\n".join(output.get("text", "") or output.get("data", {}).get("text/plain", "")
                     for cell in cells if cell.cell_type == "code" for output in cell.outputs)


def _all_outputs() -> str:
    return "\n".join(_outputs(path.stem) for path in sorted((ROOT / "notebooks").glob("*.ipynb")))


def _line(stem: str, pattern: str) -> re.Match:
    """The first match of ``pattern`` (one line, MULTILINE) in the committed outputs of ``stem``."""
    found = re.search(pattern, _outputs(stem), re.MULTILINE)
    assert found, f"{stem} no longer prints a line matching {pattern!r}: update the question"
    return found


# Each numeric question: the committed output it comes from, and how its answer follows from it.
# A rerun that moves the number fails here, so the key cannot go stale.
NUMERIC_SOURCES = {
    "ch01-normalisation": lambda: (lambda m: (51 / 255 - float(m[1])) / float(m[2]))(_line(
        "01_meet_the_data_and_backbone",
        r"normalised with mean \((\d\.\d+), \1, \1\), std \((\d\.\d+), \2, \2\)")),
    "ch02-all-shuffled": lambda: float(_line(
        "02_reusable_features", r"^all shuffled\s+(\d\.\d+)\s+[-+]")[1]),
    "ch03-gain-interval": lambda: (lambda m: float(m[2]) - float(m[1]))(_line(
        "03_source_target_similarity",
        r"^new\s+\d\.\d+ \+- \d\.\d+\s+\d\.\d+ \+- \d\.\d+[-+]\d\.\d+ \[([-+]\d\.\d+), ([-+]\d\.\d+)\]")),
    "ch04-head-parameters": lambda: int(_line(
        "04_feature_extraction_vs_fine_tuning",
        r"^head only\s+([\d,]+) trainable parameters")[1].replace(",", "")),
    "ch05-requires-grad": lambda: int(_line(
        "05_troubleshooting_lab",
        r"^after model\.requires_grad = False: \{'trainable': (\d+), 'frozen': 0,")[1]),
    "ch06-labels-saved": lambda: (lambda m: 6 * (int(m[2]) - int(m[1])))(_line(
        "06_sample_efficiency", r"^\s+0\.27\s+(\d+)\s+(\d+)\s+\d+\.\dx$")),
    "ch07-finetune-copied": lambda: (lambda m: 100 * (float(m[2]) - float(m[1])))(_line(
        "07_layer_transfer", r"^\s+6\s+(\d\.\d+) \+- \d\.\d+\s+(\d\.\d+) \+- ")),
    "ch08-lift-four-classes": lambda: guide.lift(float(_line(
        "08_practical_recipe",
        r"^linear probe on the final features: validation accuracy (\d\.\d+), lift")[1]), 4),
    "ch08-ok-precision": lambda: 1 - float(_line(
        "08_practical_recipe", r"^\s+ok\s+(\d\.\d+)\s+\d\.\d+\s+\d\.\d+\s+100$")[1]),
}


def test_every_numeric_question_has_a_source():
    """Check that each numeric question is checked against the output it comes from."""
    assert set(NUMERIC_SOURCES) == {question["id"] for question in NUMERIC}


@pytest.mark.parametrize("qid", sorted(NUMERIC_SOURCES))
def test_numeric_answer_matches_the_notebook_output(qid):
    """Check that a numeric key is the value the committed notebook prints or implies."""
    question = _by_id(qid)
    value = NUMERIC_SOURCES[qid]()
    assert abs(value - question["answer"]) <= question["tolerance"] / 2, (value, question["answer"])


DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")  # as in test_book_numbers.py


def _texts(question: dict) -> list[str]:
    texts = [question["question"], question.get("feedback_correct", ""),
             question.get("feedback_wrong", "")]
    texts += [text for choice in question.get("answers", [])
              for text in (choice["answer"], choice["feedback"])]
    return texts + [hint["feedback"] for hint in question.get("hints", [])]


@pytest.mark.parametrize("question", quiz.questions(), ids=lambda q: q["id"])
def test_every_number_a_question_quotes_is_printed(question):
    """Check that each decimal in a question, its choices and feedback is printed by its notebook.

    Exempt: a numeric question's own key, its tolerance and the ends of its range, which the
    reader computes and the question states.
    """
    stem = Path(question["doc"]).name
    outputs = _outputs(stem) if question["doc"].startswith("notebooks/") else _all_outputs()
    own = set()
    if question["type"] == "numeric":
        answer, tolerance = question["answer"], question["tolerance"]
        own = {abs(answer), tolerance, abs(answer - tolerance), abs(answer + tolerance)}
    missing = [number for text in _texts(question) for number in DECIMAL.findall(text)
               if not any(abs(abs(float(number)) - value) < 1e-9 for value in own)
               and not re.search(rf"(?<![\d.]){re.escape(number.lstrip('-'))}(?![\d])", outputs)]
    assert not missing, f"{question['id']} quotes {missing}, which {stem} does not print"


# ----------------------------------------------------------------------------- notebook facts
def test_the_head_count_is_what_the_question_reasons():
    """Check that the head's parameters are the 1280 x 6 weights and 6 biases the question counts."""
    assert "depth 8 head       1280 channels" in _outputs("01_meet_the_data_and_backbone")
    assert _by_id("ch04-head-parameters")["answer"] == 1280 * 6 + 6


def test_the_guide_picks_what_the_question_says():
    """Check that the decision guide gives the team of ch08-guide-few-labels the recipe its key names."""
    question = _by_id("ch08-guide-few-labels")
    assert "8 labelled photos per class of 4 classes" in question["question"]
    advice = guide.recommend_strategy(8, 0.70, 4)
    key = next(choice for choice in question["answers"] if choice["correct"])
    assert advice.recipe is RECIPES["head_only"] and advice.check is RECIPES["scratch"]
    assert key["answer"].startswith("The head on frozen features, with scratch beside it")
    assert advice.rule == "few or some labels" and guide.RULES[0].max_labels == 75


def test_quoted_facts_match_the_notebook_and_the_backbone():
    """Check that the parameter count and normalisation quoted in questions are still true."""
    assert "4,652,008 parameters; inputs normalised with mean (0.5, 0.5, 0.5), std (0.5, 0.5, " \
           "0.5)" in _outputs("01_meet_the_data_and_backbone")
    spec = backbones.get_spec("efficientnet_lite0")
    assert (51 / 255 - spec.mean[0]) / spec.std[0] == pytest.approx(_by_id("ch01-normalisation")["answer"])


@pytest.mark.parametrize("stem", [stem for stem in quiz.chapters() if stem != "intro"])
def test_each_chapter_ends_with_its_quiz(stem):
    """Check that each chapter ends with a "Check yourself" heading and the cell showing its questions."""
    cells = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4).cells
    assert "## Check yourself" in cells[-2].source.splitlines()
    assert f'quiz.show("{stem}")' in cells[-1].source


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


# ----------------------------------------------------------------------------- grading
@pytest.mark.parametrize("qid, response, correct, feedback", [
    ("intro-what-is-reused", "C", True, "Right: the value is the representation"),
    ("intro-what-is-reused", "b", False, "Not quite: a log records"),
    ("ch01-camera-presets", "A, C, E", True, "Right: the light is cooler"),
    ("ch01-camera-presets", ["A", "E"], False, "C: Right: a lower quality"),  # a missed choice
    ("ch01-camera-presets", "ABCE", False, "B: Not quite: the six classes"),  # a wrong pick
    ("ch01-normalisation", -0.6, True, "Right: 51 of 255 is a fifth"),
    ("ch01-normalisation", "-3/5", True, "Right: 51 of 255 is a fifth"),
    ("ch01-normalisation", -0.3, False, "did not divide by the std"),
    ("ch01-normalisation", 101, False, "divide by 255 first"),
    ("ch01-normalisation", -1.25, False, "ImageNet's usual mean and std"),
    ("ch01-normalisation", 0.5, False, "divide by 255 first, then subtract the mean"),
])
def test_grade_gives_the_feedback_of_the_answer(qid, response, correct, feedback):
    """Check that grade() accepts letters and numbers within the tolerance, with feedback."""
    result, text = quiz.grade(_by_id(qid), response)
    assert result is correct
    assert feedback in text and text.endswith(".)")


@pytest.mark.parametrize("qid, response, message", [
    ("intro-what-is-reused", "E", r"must be one letter among A, B, C, D. Got 'E'"),
    ("intro-what-is-reused", "A, B", r"must be one letter among A, B, C, D"),
    ("ch01-camera-presets", "", r"must be letters among A, B, C, D, E"),
    ("ch01-normalisation", "a third", r"must be a number. Got 'a third'"),
])
def test_grade_rejects_a_malformed_response(qid, response, message):
    """Check that an answer of the wrong form raises a ValueError saying what is expected."""
    with pytest.raises(ValueError, match=message):
        quiz.grade(_by_id(qid), response)


def test_score_counts_by_concept_and_explains_mistakes():
    """Check that score() adds up right, wrong and unanswered questions per concept."""
    probe = _by_id("ch02-probe-accuracy")
    report = quiz.score({"intro-what-is-reused": "C", "intro-when-it-helps": "B",
                         "ch01-normalisation": -0.6, "ch01-distractors": None,
                         "ch02-probe-accuracy": _function(probe["solution"], probe["function"])})
    assert report.splitlines()[:4] == [
        "Score: 3 of 5 correct (1 wrong, 1 not answered yet).",
        "  reusable features                    2 of 2",
        "  source-target similarity             0 of 1",
        "  practice                             1 of 2"]
    assert report.splitlines()[4].startswith("\u2717 intro-when-it-helps: Not quite: cost matters")


def test_score_rejects_unknown_ids_and_non_dicts():
    """Check that score() names unknown question ids and refuses a list."""
    with pytest.raises(ValueError, match=r"Unknown question ids \['q1'\]. Known ids: \["):
        quiz.score({"q1": "A"})
    with pytest.raises(TypeError, match=r"'answers' parameter of score must be a dict. Got list"):
        quiz.score(["A"])


def test_grade_runs_the_checker_of_a_code_question():
    """Check that grading a code question runs its checker on the function and reports what it found."""
    question = _by_id("ch04-freeze-up-to")
    correct, text = quiz.grade(question, _function(question["solution"], question["function"]))
    assert correct and text.startswith("\u2713 freeze_up_to passes")
    correct, text = quiz.grade(question, _function(question["starter"], question["function"]))
    assert not correct and text.startswith("\u2717 freeze_up_to:")

"""Self-grading knowledge checks that work in Jupyter, on Colab and in the HTML book.

Scope: questions are data, one JSON file per chapter in ``notebooks/quizzes/``, read by
``load``. ``show`` renders a chapter's multiple-choice and numeric questions with jupyterquiz
and lists its code exercises, whose checkers run the reader's function on a small model and say
what is wrong; ``score`` grades a dict of answers. Texts use ``<code>``, never backticks or
``$`` (jupyterquiz shows the first as they are and reads the second as maths).

Usage::

    from companion import quiz
    quiz.show("01_meet_the_data_and_backbone")
    print(quiz.score({"intro-what-is-reused": "B"}))
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# The code exercises tell readers to run quiz.check_freeze_up_to(...) etc. (exercise_html): keep those names here.
from companion.exercises import (CHECKERS, CheckResult, check_extract_features, check_freeze_up_to,  # noqa: F401
                                 check_param_groups, check_probe_accuracy)

CONCEPTS = ("reusable features", "source-target similarity", "feature extraction vs fine-tuning",
            "practice")
OBJECTIVES = {  # the lesson's learning objectives, in our words
    "reuse": "Explain what transfer learning reuses: a learned representation, not a weight file.",
    "when": "Judge when transfer is likely to help: source-target similarity, how many labels.",
    "strategies": "Tell feature extraction from fine-tuning and weigh the trade-off between them.",
}
INSIGHTS = {  # the lesson's key insights
    "representation": "A pretrained backbone holds structure that stays useful beyond its labels.",
    "similarity": "Transfer gives most when the pretrained features match what the target needs.",
    "regimes": "Freezing favours safety and low cost; fine-tuning favours adaptation.",
}
NUMERIC_KINDS = {  # what a numeric question asks of the reader ("kind" in the question files)
    "prediction": "a value to predict by reasoning before running; the notebook computes it",
    "derived": "a quantity worked out from printed values: a difference, a ratio, a count",
    "lookup": "a number to copy from an output (at most a quarter of all questions)",
}
_COMMON = {"id", "type", "concept", "objectives", "insights", "section", "question"}
_KEYS = {"multiple_choice": {"answers"}, "many_choice": {"answers"},
         "numeric": {"kind", "answer", "tolerance", "feedback_correct", "feedback_wrong"},
         "code": {"function", "checker", "starter", "solution"}}
# "fixed_order": true marks choices that must stay in their order (a scale); tests/test_quiz.py
# leaves them out of the check that the correct answers are spread over the positions.
_OPTIONAL = {"multiple_choice": {"fixed_order"}, "many_choice": {"fixed_order"},
             "numeric": {"hints", "precision"}}
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


# ----------------------------------------------------------------------------- files
def quiz_directory() -> Path:
    """Return the folder of question files (package data if installed so, else the repo's).

    >>> quiz_directory().name
    'quizzes'
    """
    package = Path(__file__).resolve().parent
    candidates = (package / "quizzes", package.parent / "notebooks" / "quizzes")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"No question files: looked in {[str(c) for c in candidates]}.")


def chapters(directory: str | Path | None = None) -> list[str]:
    """Return the chapters that have a question file in ``directory``, sorted by name.

    >>> chapters()[-1]
    'intro'
    """
    return sorted(path.stem for path in Path(directory or quiz_directory()).glob("*.json"))


def load(chapter: str, directory: str | Path | None = None) -> dict:
    """Read the question file of ``chapter`` (its name without ``.json``) and validate it.

    >>> load("intro")["id"]
    'intro'
    """
    folder = Path(directory or quiz_directory())
    if chapter not in chapters(folder):
        raise ValueError(f"The 'chapter' parameter must be one of {chapters(folder)} (the "
                         f"question files in {folder}). Got {chapter!r} instead.")
    path = folder / f"{chapter}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}.") from None
    return validate(data, source=str(path), chapter=chapter)


# ----------------------------------------------------------------------------- schema
def validate(data: object, source: str = "<data>", chapter: str | None = None) -> dict:
    """Check the structure of a question set; return it, or raise ValueError saying where.

    Keys: ``id`` (the file name), ``title``, ``doc`` (the page that teaches it), ``questions``
    (each with a unique slug ``id``, a ``type`` and that type's keys). The full schema, with
    correct choices, feedback, tolerances and vocabularies, is ``SCHEMA`` in tests/test_quiz.py.
    >>> validate({"id": "x"}, source="my_quiz.json")
    Traceback (most recent call last):
    ...
    ValueError: my_quiz.json: must be an object with exactly the keys ['doc', 'id', 'questions', 'title'], 'questions' a non-empty list. Got "{'id': 'x'}" instead.
    """
    top = {"id", "title", "doc", "questions"}
    if not isinstance(data, dict) or set(data) != top or not isinstance(data["questions"], list) \
            or not data["questions"]:
        raise ValueError(f"{source}: must be an object with exactly the keys {sorted(top)}, "
                         f"'questions' a non-empty list. Got {str(data)[:80]!r} instead.")
    if chapter is not None and data["id"] != chapter:
        raise ValueError(f"{source}: 'id' must be the file name {chapter!r}. Got {data['id']!r}.")
    for index, question in enumerate(data["questions"]):
        kind = question.get("type") if isinstance(question, dict) else None
        if kind not in _KEYS or not _SLUG.fullmatch(str(question.get("id"))):
            raise ValueError(f"{source}: question {index} must have a slug 'id' such as "
                             f"'ch01-six-classes' and a 'type' among {list(_KEYS)}. Got "
                             f"{str(question)[:80]!r} instead.")
        required = _COMMON | _KEYS[kind]
        missing = sorted(required - question.keys())
        unknown = sorted(question.keys() - required - _OPTIONAL.get(kind, set()))
        if missing or unknown:
            raise ValueError(f"{source}: question {index} ({question['id']!r}) is a {kind} "
                             f"question that lacks the keys {missing} and has unknown keys "
                             f"{unknown}.")
    ids = [question["id"] for question in data["questions"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source}: question ids must be unique. Repeated: "
                         f"{sorted({qid for qid in ids if ids.count(qid) > 1})}.")
    return data


def questions(chapter: str | None = None, concept: str | None = None) -> list[dict]:
    """Return the questions of one chapter (or all, by file name), optionally of one concept.

    Each gets the keys ``chapter``, ``chapter_title`` and ``doc`` of its file.
    >>> all(q["concept"] == "practice" for q in questions(concept="practice"))
    True
    """
    if concept is not None and concept not in CONCEPTS:
        raise ValueError(f"The 'concept' parameter must be one of {list(CONCEPTS)} or None. "
                         f"Got {concept!r} instead.")
    selected = []
    for name in [chapter] if chapter is not None else chapters():
        data = load(name)
        selected += [dict(question, chapter=name, chapter_title=data["title"], doc=data["doc"])
                     for question in data["questions"] if concept in (None, question["concept"])]
    return selected


# ----------------------------------------------------------------------------- rendering
def pointer(question: dict) -> str:
    """Return the sentence naming the section that explains ``question`` (ends each feedback)."""
    return f" (See \u201c{question['section']}\u201d in {question['chapter_title']}.)"


def to_jupyterquiz(question: dict, number: int) -> dict:
    """Convert a multiple-choice or numeric question from ``questions()`` to jupyterquiz's dict.

    >>> to_jupyterquiz(questions("intro")[0], 1)["type"]
    'multiple_choice'
    """
    see = pointer(question)
    item = {"question": f"<b>{number}.</b> {question['question']} <small>({question['id']})"
                        "</small>", "type": question["type"]}
    if question["type"] != "numeric":
        item["answers"] = [dict(choice, answer=f"{letter}. {choice['answer']}",  # letters for score
                                feedback=choice["feedback"] + see)
                           for letter, choice in zip("ABCDEFGHIJKL", question["answers"])]
        return item
    answer, tolerance = question["answer"], question["tolerance"]  # jupyterquiz: [low, high)
    item["answers"] = [{"range": [answer - tolerance, answer + tolerance * (1 + 1e-9)],
                        "correct": True, "feedback": question["feedback_correct"] + see}]
    item["answers"] += [{"range": hint["range"], "correct": False,
                         "feedback": hint["feedback"] + see} for hint in question.get("hints", [])]
    item["answers"].append({"type": "default", "feedback": question["feedback_wrong"] + see})
    item.update({"precision": question["precision"]} if "precision" in question else {})
    return item


_TRIED_ON = {"check_probe_accuracy": "a small synthetic data set"}  # default: "a small model"


def exercise_html(question: dict, number: int) -> str:
    """Return the HTML presenting a code exercise: the task, starter code, how to check it.

    >>> code = next(q for q in questions() if q["type"] == "code")
    >>> exercise_html(code, 8).startswith('<div class="companion-exercise"')
    True
    """
    call = html.escape(f"quiz.{question['checker']}({question['function']})")
    return (f'<div class="companion-exercise" style="border-left: 4px solid #392061; padding: '
            f'0 1em; margin: 1em 0; max-width: 600px"><p><b>{number}. Code exercise</b> <small>'
            f"({question['id']})</small>: {question['question']}</p><pre><code>"
            f"{html.escape(question['starter'])}</code></pre><p>Copy this into a new cell, write "
            f"the body and run <code>{call}</code>: it tries your function on "
            f"{_TRIED_ON.get(question['checker'], 'a small model')} and "
            f"says what is wrong, if anything.{html.escape(pointer(question))}</p></div>")


def show(chapter: str | None = None, *, concept: str | None = None) -> None:
    """Display the questions of a chapter and/or a concept (default: all), then the exercises.

    The output is the same on every run (nbval compares it): jupyterquiz's element ids come from
    ``random``, seeded here from the question set; the caller's random state is restored.
    Answers are shown in their stored order, not shuffled: each choice carries the letter that
    ``grade``, ``score`` and the knowledge-check page use, and jupyterquiz would shuffle them in
    the browser, on every load. The question files spread the correct letters instead
    (tests/test_quiz.py checks it).
    In a notebook: ``quiz.show("01_meet_the_data_and_backbone")`` or ``quiz.show(concept="practice")``
    (it displays HTML and JavaScript, so it has no doctest).
    """
    from IPython.display import HTML, display
    from jupyterquiz import display_quiz
    selected = sorted(questions(chapter, concept), key=lambda q: q["type"] == "code")
    numbered = list(enumerate(selected, start=1))  # the quiz first, then the code exercises
    items = [to_jupyterquiz(question, n) for n, question in numbered if question["type"] != "code"]
    if items:
        state = random.getstate()
        random.seed(int(hashlib.sha256(f"{chapter}|{concept}".encode()).hexdigest()[:8], 16))
        try:
            display_quiz(items, shuffle_answers=False)
        finally:
            random.setstate(state)
    for number, question in numbered:
        if question["type"] == "code":
            display(HTML(exercise_html(question, number)))


# ----------------------------------------------------------------------------- score
def grade(question: dict, response: object) -> tuple[bool, str]:
    """Grade one response: a letter ``"B"``, letters ``"A, C"``, a number or a function.

    >>> question = questions("intro")[0]
    >>> right = "ABCDEFGH"[[a["correct"] for a in question["answers"]].index(True)]
    >>> grade(question, right)[0]
    True
    """
    kind, qid, see = question["type"], question["id"], pointer(question)
    if kind == "code":
        from companion.exercises import CHECKERS

        result = CHECKERS[question["checker"]](response)
        return result.passed, str(result)
    if kind == "numeric":
        try:  # "84/240" is accepted, as in jupyterquiz
            value = float(Fraction(response) if isinstance(response, str) else response)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"The answer to {qid!r} must be a number. Got {response!r}.") from None
        if abs(value - question["answer"]) <= question["tolerance"] * (1 + 1e-9):
            return True, question["feedback_correct"] + see
        hints = [hint["feedback"] for hint in question.get("hints", [])
                 if hint["range"][0] <= value < hint["range"][1]]
        return False, (hints or [question["feedback_wrong"]])[0] + see
    letters = "ABCDEFGHIJKL"[: len(question["answers"])]
    chosen = set(re.findall(r"[A-Z]", str(response).upper()))  # "A, C", "ac", ["A", "C"]
    if not chosen or not chosen <= set(letters) or (kind == "multiple_choice" and len(chosen) > 1):
        count = "one letter" if kind == "multiple_choice" else "letters"
        raise ValueError(f"The answer to {qid!r} must be {count} among {', '.join(letters)}. "
                         f"Got {response!r} instead.")
    right = {letter for letter, choice in zip(letters, question["answers"]) if choice["correct"]}
    wrong = sorted(chosen - right) or sorted(right - chosen)  # a wrong pick, else a missed one
    letter = wrong[0] if wrong else min(chosen)
    feedback = question["answers"][letters.index(letter)]["feedback"] + see
    return not wrong, f"{letter}: {feedback}" if kind == "many_choice" else feedback


def score(answers: Mapping[str, object]) -> str:
    """Grade ``{question id: response}`` (``None``: not answered) and summarise by concept.

    >>> score({}).splitlines()[0]
    'Score: 0 of 0 correct (0 wrong, 0 not answered yet).'
    """
    if not isinstance(answers, Mapping):
        raise TypeError(f"The 'answers' parameter of score must be a dict. "
                        f"Got {type(answers).__name__} instead.")
    known = {question["id"]: question for question in questions()}
    if set(answers) - known.keys():
        raise ValueError(f"Unknown question ids {sorted(set(answers) - known.keys())}. "
                         f"Known ids: {sorted(known)}.")
    graded = {qid: (None, "") if response is None else grade(known[qid], response)
              for qid, response in answers.items()}
    statuses = [correct for correct, _ in graded.values()]
    num_right, num_wrong = statuses.count(True), statuses.count(False)
    lines = [f"Score: {num_right} of {len(graded)} correct ({num_wrong} wrong, "
             f"{len(graded) - num_right - num_wrong} not answered yet)."]
    for concept in CONCEPTS:
        rows = [graded[qid][0] is True for qid in graded if known[qid]["concept"] == concept]
        lines += [f"  {concept:<36} {sum(rows)} of {len(rows)}"] if rows else []
    return "\n".join(lines + [f"\u2717 {qid}: {feedback}"
                              for qid, (correct, feedback) in graded.items() if correct is False])

"""Self-grading knowledge checks that work in Jupyter, on Colab and in the HTML book.

Scope: questions are data, one JSON file per chapter in ``notebooks/quizzes/``, read by
``load``. ``show`` renders a chapter's multiple-choice and numeric questions with jupyterquiz
and lists its code exercises, whose checkers run the reader's function on a small model and say
what is wrong; ``score`` grades a dict of answers. Texts use ``<code>``, never backticks or
``$`` (jupyterquiz shows the first as they are and reads the second as maths).

Usage::

    from companion import quiz
    quiz.show("01_meet_the_data_and_backbone")
    quiz.check_freeze_up_to(freeze_up_to)             # after writing freeze_up_to
    quiz.check_probe_accuracy(linear_probe_accuracy)  # the other checkers: see CHECKERS
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
_COMMON = {"id", "type", "concept", "objectives", "insights", "section", "question"}
_KEYS = {"multiple_choice": {"answers"}, "many_choice": {"answers"},
         "numeric": {"answer", "tolerance", "feedback_correct", "feedback_wrong"},
         "code": {"function", "checker", "starter", "solution"}}
_OPTIONAL = {"numeric": {"hints", "precision"}}
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


# ----------------------------------------------------------------------------- files
def quiz_directory() -> Path:
    """Return the folder of question files (package data if installed so, else the repo's).

    Usage: ``sorted(quiz.quiz_directory().glob("*.json"))``
    """
    package = Path(__file__).resolve().parent
    candidates = (package / "quizzes", package.parent / "notebooks" / "quizzes")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"No question files: looked in {[str(c) for c in candidates]}.")


def chapters(directory: str | Path | None = None) -> list[str]:
    """Return the chapters that have a question file in ``directory``, sorted by name.

    Usage: ``quiz.chapters()  # ['01_meet_the_data_and_backbone', 'intro']``
    """
    return sorted(path.stem for path in Path(directory or quiz_directory()).glob("*.json"))


def load(chapter: str, directory: str | Path | None = None) -> dict:
    """Read the question file of ``chapter`` (its name without ``.json``) and validate it.

    Usage: ``quiz.load("01_meet_the_data_and_backbone")["questions"][0]["id"]``
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
    Usage: ``quiz.validate(json.loads(text), source="my_quiz.json")``
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
    Usage: ``[q["id"] for q in quiz.questions(concept="practice")]``
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

    Usage: ``jupyterquiz.display_quiz([quiz.to_jupyterquiz(question, 1)])``
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

    Usage: ``IPython.display.HTML(quiz.exercise_html(question, 8))``
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
    Usage: ``quiz.show("01_meet_the_data_and_backbone")`` or ``quiz.show(concept="practice")``
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


# ----------------------------------------------------------------------------- code exercises
@dataclass(frozen=True, repr=False)
class CheckResult:
    """What a checker found: ``passed``, else the ``problems`` in plain words."""

    name: str
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        problems = "".join(f"\n  - {problem}" for problem in self.problems)
        return f"\u2717 {self.name}:{problems}" if problems else f"\u2713 {self.name} passes."


def _run(function: Callable, caller: str, call: str, *args) -> tuple[object, str | None]:
    if not callable(function):
        raise TypeError(f"The 'function' parameter of {caller} must be a function. "
                        f"Got {type(function).__name__} instead.")
    try:
        return function(*args), None
    except Exception as error:  # the reader's code: an error is a finding, not a crash
        return None, f"{call} raised {type(error).__name__}: {error}"


def _small_model():
    """A random-init EfficientNet-Lite0 with a 6-class head (offline, ~0.1 s) and its depths."""
    from companion import backbones
    model = backbones.load_backbone("efficientnet_lite0", pretrained=False, num_classes=6, seed=0)
    return model, backbones.stages(model)


def _freeze_problem(model, depths, k: int) -> str | None:
    """The first way in which ``model`` is not frozen exactly up to depth ``k``, if any."""
    should = f"only depths 0-{k - 1} should be frozen" if k else "no depth should be frozen"
    for depth, (name, module) in enumerate(depths):
        trainable = [p.requires_grad for p in module.parameters()]
        if depth < k and any(trainable):
            return (f"depth {depth} ({name!r}) is still trainable: {should}, but {sum(trainable)}"
                    f" of its {len(trainable)} tensors have requires_grad=True.")
        if depth >= k and not all(trainable):
            return (f"depth {depth} ({name!r}) is frozen, but {should}: set requires_grad=True "
                    "on every other depth, whatever an earlier call froze.")
    if not all(p.requires_grad for p in model.get_classifier().parameters()):
        return "the classifier is frozen: it is not a depth and must stay trainable."
    return None


def check_freeze_up_to(function: Callable) -> CheckResult:
    """Run the reader's ``freeze_up_to(model, k)`` on a small model and say what is wrong.

    Usage: ``quiz.check_freeze_up_to(freeze_up_to)``
    """
    model, depths = _small_model()
    problems = []
    for k in (3, 9, 0, 5, 10, -1):  # 0 right after 9 catches a function that only freezes
        call = f"freeze_up_to(model, {k})"
        _, error = _run(function, "check_freeze_up_to", call, model, k)
        if k not in range(len(depths) + 1):
            if not (error or "").startswith(f"{call} raised ValueError"):
                problems.append(f"{error or call + ' returned'}; it should raise ValueError: "
                                "there are 9 depths, so k must be in [0, 9].")
        elif error or _freeze_problem(model, depths, k):
            problems.append(error or f"after {call}, {_freeze_problem(model, depths, k)}")
    return CheckResult("freeze_up_to", tuple(problems))


def _group_problems(groups: object, model, depths, lr: float, decay: float) -> list[str]:
    """Compare ``groups`` with the expected lr of every trainable parameter."""
    if not isinstance(groups, (list, tuple)) or not all(
            isinstance(group, dict) and {"params", "lr"} <= group.keys() for group in groups):
        return [f"returned a {type(groups).__name__}: return a list of dicts, each with the "
                "keys 'params' and 'lr'."]
    names, top = {id(p): name for name, p in model.named_parameters()}, len(depths) - 1
    expected = {id(p): (f"depth {d}, {name!r}", lr * decay ** (top - d),
                        f" = {lr} * {decay} ** {top - d}")
                for d, (name, module) in enumerate(depths) for p in module.parameters()}
    expected.update({id(p): ("the classifier", lr, "")
                     for p in model.get_classifier().parameters()})
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    found, seen = {}, {}  # found: one message per (kind of problem, depth)
    for group in groups:
        for p in list(group["params"]):
            seen.setdefault(id(p), []).append(group["lr"])
    for pid, rates in seen.items():
        name, (where, rate, formula) = names.get(pid), expected.get(pid, ("", 0, ""))
        if name is None:
            found.setdefault(("foreign", ""), "a group holds a tensor that is not in the model.")
        elif len(rates) > 1:
            found.setdefault(("twice", where), f"{name!r} is in {len(rates)} groups; an optimizer "
                             "refuses a parameter that appears twice.")
        elif pid not in trainable:
            found.setdefault(("frozen", where), f"{name!r} ({where}) is frozen but in a group: "
                             "leave frozen parameters out.")
        elif isinstance(rates[0], bool) or not isinstance(rates[0], (int, float)) \
                or not math.isclose(rates[0], rate, rel_tol=1e-6):
            found.setdefault(("lr", where), f"{name!r} ({where}) gets lr {rates[0]!r}; expected "
                             f"{rate:.6g}{formula}.")
    missing = [names[pid] for pid in names if pid in trainable and pid not in seen]
    if missing:
        found["missing", ""] = (f"{len(missing)} trainable tensors are in no group, e.g. "
                                f"{missing[0]!r}: the optimizer would never update them.")
    order = ("foreign", "twice", "missing", "frozen", "lr")  # the most serious problem first
    return [found[key] for key in sorted(found, key=lambda key: order.index(key[0]))]


def check_param_groups(function: Callable) -> CheckResult:
    """Run the reader's ``make_param_groups(model, lr, decay)`` and say what is wrong.

    Usage: ``quiz.check_param_groups(make_param_groups)``
    """
    import torch
    problems = []
    for lr, decay, num_frozen in ((1e-3, 0.5, 0), (1e-2, 0.8, 4)):
        model, depths = _small_model()
        for _, module in depths[:num_frozen]:
            module.requires_grad_(False)
        call = f"make_param_groups(model, {lr}, {decay})"
        groups, error = _run(function, "check_param_groups", call, model, lr, decay)
        found = [error] if error else _group_problems(groups, model, depths, lr, decay)
        if not found:
            try:
                torch.optim.AdamW(groups, lr=lr)
            except Exception as optimizer_error:
                found = [f"torch.optim.AdamW rejects the groups: {optimizer_error}"]
        frozen = f" (depths 0-{num_frozen - 1} frozen)" if num_frozen else ""
        problems += [message if error else f"{call}{frozen}: {message}" for message in found[:2]]
    return CheckResult("make_param_groups", tuple(problems))


def _probe_case():
    """Three classes in 8 features of very different scales: 60 training and 60 test rows.

    A standardised logistic regression scores 0.95 on the test rows, and the usual variants
    (another C, no scaling) land within 0.05 of it; the error rate, a percentage, a score with
    shuffled labels all land far from it, so each mistake gives a number of its own.
    """
    import numpy as np
    rng = np.random.default_rng(3)
    means = rng.normal(size=(3, 8)) * 0.8
    y_train, y_test = (rng.permutation(np.arange(60) % 3) for _ in range(2))
    scale = rng.uniform(0.5, 20, size=8)
    X_train = (means[y_train] + rng.normal(size=(60, 8))) * scale
    X_test = (means[y_test] + rng.normal(size=(60, 8))) * scale
    return X_train.astype(np.float32), y_train, X_test.astype(np.float32), y_test


def _reference_probe_accuracy(X_train, y_train, X_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(X_train, y_train).score(X_test, y_test))


def _as_accuracy(value: object, call: str) -> tuple[float | None, str | None]:
    """The reader's return value as a float, or the sentence saying why it is not one."""
    import numpy as np
    shape = tuple(getattr(value, "shape", ()))
    if shape and int(np.prod(shape)) > 1:
        return None, (f"{call} returned an array of shape {shape}: return one number, the "
                      "fraction of test rows predicted right (e.g. probe.score(X_test, y_test)).")
    try:
        if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
            raise TypeError
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None, (f"{call} returned {type(value).__name__} {str(value)[:40]!r}: return the "
                      "accuracy as a float in [0, 1].")
    return number, None


def check_probe_accuracy(function: Callable) -> CheckResult:
    """Run the reader's ``linear_probe_accuracy(X_train, y_train, X_test, y_test)``.

    The function should fit a linear probe (logistic regression, best on standardised features)
    on the training rows only and return its accuracy on the test rows as a float in [0, 1].
    The checker compares it with a reference on a small synthetic case, then calls it again
    with shuffled training labels and with shuffled test labels: a probe fitted on the test rows,
    or scored on the training rows, does not notice. Labels arrive as torch tensors, as
    ``ImageSet.labels`` do.
    Usage: ``quiz.check_probe_accuracy(linear_probe_accuracy)``
    """
    import numpy as np
    import torch
    X_train, y_train, X_test, y_test = _probe_case()
    reference, tolerance = _reference_probe_accuracy(X_train, y_train, X_test, y_test), 0.1
    name, caller = "linear_probe_accuracy", "check_probe_accuracy"

    def call(X_a, y_a, X_b, y_b, what: str) -> tuple[float | None, str | None]:
        inputs = [X_a.copy(), torch.from_numpy(y_a), X_b.copy(), torch.from_numpy(y_b)]
        text = f"{name}(X_train, y_train, X_test, y_test{what})"
        value, error = _run(function, caller, text, *inputs)
        if error:
            return None, error
        for given, original, label in ((inputs[0], X_a, "X_train"), (inputs[2], X_b, "X_test")):
            if not np.array_equal(given, original):
                return None, (f"{text} changed {label} in place: leave the caller's arrays alone "
                              "(a StandardScaler in a pipeline scales a copy).")
        return _as_accuracy(value, text)

    value, problem = call(X_train, y_train, X_test, y_test, "")
    if problem:
        return CheckResult(name, (problem,))
    expected = f"expected about {reference:.3f} (a standardised logistic regression)"
    if 1 < value <= 100 and abs(value / 100 - reference) <= tolerance:
        return CheckResult(name, (f"returned {value:.4g}, a percentage: return a fraction in "
                                  f"[0, 1]; {expected}.",))
    if abs(value - reference) > tolerance:
        if abs(value - (1 - reference)) <= tolerance:
            return CheckResult(name, (f"returned {value:.3f}, which looks like the error rate: "
                                      f"return the fraction predicted right; {expected}.",))
        return CheckResult(name, (f"returned {value:.3f}; {expected}.",))
    problems = []
    rng = np.random.default_rng(0)
    shuffles = ((rng.permutation(y_train), y_test, "y_train", "the probe must learn from X_train "
                 "and y_train only, never from the test rows"),
                (y_train, rng.permutation(y_test), "y_test", "score the probe on X_test and "
                 "y_test, not on the rows it was fitted on"))
    for y_a, y_b, shuffled_name, advice in shuffles:
        shuffled, error = call(X_train, y_a, X_test, y_b, f" with {shuffled_name} shuffled")
        chance = _reference_probe_accuracy(X_train, y_a, X_test, y_b)
        if error:
            problems.append(error)
        elif shuffled == value or shuffled > chance + 0.3:
            problems.append(f"with {shuffled_name} shuffled the accuracy should fall to about "
                            f"{chance:.3f}, but it is {shuffled:.3f}: {advice}.")
    return CheckResult(name, tuple(problems))


def _batchnorm_state(model) -> dict:
    from torch.nn.modules.batchnorm import _BatchNorm
    return {f"{name}.{buffer}": getattr(module, buffer).clone()
            for name, module in model.named_modules() if isinstance(module, _BatchNorm)
            for buffer in ("running_mean", "running_var")}


def check_extract_features(function: Callable) -> CheckResult:
    """Run the reader's ``extract_pooled_features(model, x)`` and say what is wrong.

    The function should return the globally average-pooled final features ``(B, 1280)`` of a
    preprocessed batch ``x`` without changing the model: BatchNorm in eval mode (a train-mode
    forward pass moves every running mean and variance), no gradient graph, and the model's
    train/eval mode as it was. The checker calls it on a small model left in train mode, as it
    is after a training loop, then on one in eval mode.
    Usage: ``quiz.check_extract_features(extract_pooled_features)``
    """
    import copy

    import torch
    name, caller = "extract_pooled_features", "check_extract_features"
    problems, pristine = [], _small_model()[0]
    for was_training in (True, False):
        model = copy.deepcopy(pristine)  # running statistics as loaded, whatever the last call did
        x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
        model.eval()
        with torch.no_grad():
            expected = model.forward_features(x).mean(dim=(2, 3))  # (4, 1280)
        model.train(was_training)
        before = _batchnorm_state(model)
        mode = "train" if was_training else "eval"
        call = f"{name}(model, x) with the model in {mode} mode"
        output, error = _run(function, caller, call, model, x.clone())
        if error:
            problems.append(error)
            continue
        drifted = [key for key, value in _batchnorm_state(model).items()
                   if not torch.equal(value, before[key])]
        if drifted:
            problems.append(f"after {call}, {len(drifted)} BatchNorm running statistics changed "
                            f"(e.g. {drifted[0]!r}): the forward pass ran in train mode. Call "
                            "model.eval() before it.")
        if model.training != was_training:
            problems.append(f"after {call}, the model is in "
                            f"{'train' if model.training else 'eval'} mode: put it back as it was "
                            "(was_training = model.training ... model.train(was_training)).")
        call = f"{name}(model, x)"
        if not isinstance(output, torch.Tensor):
            problems.append(f"{call} returned {type(output).__name__}: return a torch.Tensor.")
            continue
        shape = tuple(output.shape)
        if shape == (4, 1280, 2, 2):
            problems.append(f"{call} returned shape {shape}, the feature maps: average them over "
                            "height and width (dims 2 and 3) to get (4, 1280).")
        elif shape != (4, 1280):
            problems.append(f"{call} returned shape {shape}; expected (4, 1280): the "
                            "forward_features output averaged over height and width.")
        elif output.requires_grad:
            problems.append(f"{call} returned a tensor that records gradients: compute it under "
                            "torch.no_grad() or torch.inference_mode().")
        elif not torch.allclose(output.float(), expected, atol=1e-4, rtol=1e-4):
            difference = (output.float() - expected).abs().max().item()
            problems.append(f"{call} differs from the eval-mode features by up to "
                            f"{difference:.3g}: use model.forward_features(x) in eval mode, then "
                            ".mean(dim=(2, 3)).")
    return CheckResult(name, tuple(dict.fromkeys(problems)))


CHECKERS = {"check_freeze_up_to": check_freeze_up_to, "check_param_groups": check_param_groups,
            "check_probe_accuracy": check_probe_accuracy,
            "check_extract_features": check_extract_features}


# ----------------------------------------------------------------------------- score
def grade(question: dict, response: object) -> tuple[bool, str]:
    """Grade one response: a letter ``"B"``, letters ``"A, C"``, a number or a function.

    Usage: ``correct, feedback = quiz.grade(quiz.questions("intro")[0], "B")``
    """
    kind, qid, see = question["type"], question["id"], pointer(question)
    if kind == "code":
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

    Usage: ``print(quiz.score({"intro-what-is-reused": "B", "ch01-crate-fraction": 0.35}))``
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

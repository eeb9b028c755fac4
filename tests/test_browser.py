"""Browser test: the quizzes of the built HTML book answer a click with the right feedback.

Serves ``_build/html`` (``make book`` first if a quiz page is missing or stale) on 127.0.0.1, opens
each page that holds a quiz in Debian's chromium through Playwright (no browser download: the
test uses /usr/bin/chromium), answers one question right and one wrong, types a numeric answer,
compares the feedback with the question files, and saves a full-page screenshot of each page in
``_build/screenshots/``. On the knowledge-check page it goes through one question of each type:
a single choice, a many-choice question (two right picks, then a wrong one), a numeric answer,
and a code exercise, which is static text there (its checker runs in Jupyter), so the test
checks that the task, the starter code and the call to run are shown. Every other page with a quiz (each notebook that calls ``quiz.show``) is
opened too: it must show one quiz per question, answer a click with feedback, and gets its
screenshot. Skipped, with the reason, when playwright or chromium is missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from book_site import CHROMIUM, browser, loopback_only, serve  # noqa: F401 (fixtures)

from companion import quiz

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright (the test "
    "uses /usr/bin/chromium, so skip 'playwright install')")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium")

# page -> (question answered right, the right choice, a wrong choice, numeric question, a right
# number, a wrong number). Choices are given by letter; the expected feedback comes from the
# question files.
PAGES = {
    "notebooks/01_meet_the_data_and_backbone": (
        "ch01-random-control", "D", "A", "ch01-normalisation", "-3/5", "101"),
    "book/knowledge_check": (
        "intro-what-is-reused", "C", "B", "ch01-normalisation", "-0.6", "-1.25"),
}
# knowledge check: a many-choice question (two right letters, a wrong one) and a code exercise
MANY_CHOICE = ("ch01-camera-presets", ("A", "E"), "B")
CODE_EXERCISE = "ch04-freeze-up-to"


def _quiz_pages() -> list[str]:
    """Every page of the book (_toc.yml) that shows a quiz: the knowledge check and each notebook
    calling quiz.show."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    pages = {"book/knowledge_check"}
    for chapter in quiz.chapters():
        doc = quiz.load(chapter)["doc"]
        source = next(ROOT.glob(doc + ".*"), None)
        if source is not None and source.suffix == ".ipynb" and doc in toc and "quiz.show(" in \
                source.read_text(encoding="utf-8"):
            pages.add(doc)
    return sorted(pages)


QUIZ_PAGES = _quiz_pages()


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """Build the book if a quiz page is missing or older than its source; serve it on 127.0.0.1."""
    sources = [next(ROOT.glob(page + ".*")) for page in sorted(set(PAGES) | set(QUIZ_PAGES))]
    sources += sorted(quiz.quiz_directory().glob("*.json"))
    pages = [HTML / f"{page}.html" for page in sorted(set(PAGES) | set(QUIZ_PAGES))]
    if not all(page.exists() for page in pages) or max(
            path.stat().st_mtime for path in sources) > min(page.stat().st_mtime for page in pages):
        subprocess.run(["make", "book"], cwd=ROOT, check=True, timeout=900)
    with serve(HTML) as url:
        yield url


def _question(qid: str) -> dict:
    return next(question for question in quiz.questions() if question["id"] == qid)


def _choice_feedback(qid: str, letter: str) -> tuple[str, str]:
    question = _question(qid)
    choice = question["answers"]["ABCDEFGH".index(letter)]
    return f"{letter}. {choice['answer']}", choice["feedback"] + quiz.pointer(question)


def _feedback_of(page, text: str):
    """The feedback element of the quiz question that holds ``text``."""
    wrapper = page.locator("div.Quiz", has_text=text).first
    return wrapper, wrapper.locator(".Feedback")


@pytest.mark.parametrize("page_path", sorted(PAGES))
def test_quiz_gives_feedback_in_the_built_book(site, browser, loopback_only, page_path):
    """Check that a page's quiz marks a right and a wrong answer, with their feedback texts."""
    qid, right, wrong, numeric_id, right_number, wrong_number = PAGES[page_path]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site}/{page_path}.html")
    page.wait_for_selector("div.Quiz")
    stem = Path(page_path).name
    shown = [q for q in quiz.questions() if q["type"] != "code"] if stem == "knowledge_check" \
        else [q for q in quiz.questions(stem) if q["type"] != "code"]
    assert page.locator("div.Quiz").count() == len(shown)

    for letter, verdict in ((wrong, "incorrect"), (right, "correct")):
        label, expected = _choice_feedback(qid, letter)
        page.locator("label.MCButton", has_text=label).click()
        _, feedback = _feedback_of(page, label)
        assert feedback.inner_text().strip() == expected
        assert feedback.get_attribute("class").split()[-1] == verdict

    question = _question(numeric_id)
    see = quiz.pointer(question)
    hint = next((hint["feedback"] for hint in question.get("hints", [])
                 if hint["range"][0] <= float(wrong_number) < hint["range"][1]),
                question["feedback_wrong"])
    wrapper, feedback = _feedback_of(page, f"({numeric_id})")
    box = wrapper.locator("input.Input-text")
    right_feedback = question["feedback_correct"] + see
    for number, expected, verdict in ((wrong_number, hint + see, "incorrect"),
                                      (right_number, right_feedback, "correct")):
        box.click()
        box.press_sequentially(number)
        box.press("Enter")
        assert feedback.inner_text().strip() == expected
        assert feedback.get_attribute("class").split()[-1] == verdict

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{stem}.png"), full_page=True)
    # sphinx-thebe declares THEBE_JS_URL twice on every page of the book, quizzes or not
    assert [error for error in errors if "'THEBE_JS_URL' has already been" not in error] == []
    page.close()


@pytest.mark.parametrize("page_path", QUIZ_PAGES)
def test_every_quiz_page_shows_its_questions(site, browser, loopback_only, page_path):
    """Check that each quiz page shows all its questions and exercises, and answers a click."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site}/{page_path}.html")
    stem = Path(page_path).name
    shown = quiz.questions() if stem == "knowledge_check" else quiz.questions(stem)
    choices = [q for q in shown if q["type"] == "multiple_choice"]  # many_choice adds "[1/3]"
    if len(shown) > len([q for q in shown if q["type"] == "code"]):
        page.wait_for_selector("div.Quiz")
    assert page.locator("div.Quiz").count() == len([q for q in shown if q["type"] != "code"])
    exercises = [q["id"] for q in shown if q["type"] == "code"]
    assert page.locator("div.companion-exercise").count() == len(exercises)
    for qid in exercises:
        assert page.locator("div.companion-exercise", has_text=f"({qid})").count() == 1
    if choices:  # the first choice of the first question gets its own feedback
        question = choices[0]
        label, expected = _choice_feedback(question["id"], "A")
        page.locator("label.MCButton", has_text=label).first.click()
        _, feedback = _feedback_of(page, label)
        assert feedback.inner_text().strip() == expected
        verdict = "correct" if question["answers"][0]["correct"] else "incorrect"
        assert feedback.get_attribute("class").split()[-1] == verdict
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{stem}_all.png"), full_page=True)
    assert [error for error in errors if "'THEBE_JS_URL' has already been" not in error] == []
    page.close()


def test_knowledge_check_goes_through_each_type_of_question(site, browser, loopback_only):
    """Check a many-choice question (two right picks, then a wrong one) and a code exercise on the knowledge check.

    The single-choice and numeric questions of the page are answered by
    test_quiz_gives_feedback_in_the_built_book.
    """
    kinds = {question["type"] for question in quiz.questions()}
    assert kinds == {"multiple_choice", "many_choice", "numeric", "code"}, kinds
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site}/book/knowledge_check.html")
    page.wait_for_selector("div.Quiz")

    qid, rights, wrong = MANY_CHOICE
    question = _question(qid)
    assert question["type"] == "many_choice"
    total = sum(choice["correct"] for choice in question["answers"])
    for count, letter in enumerate(rights, start=1):
        label, expected = _choice_feedback(qid, letter)
        page.locator("label.MCButton", has_text=label).click()
        _, feedback = _feedback_of(page, label)
        assert feedback.inner_text().strip() == f"{expected} [{count}/{total}]"
        assert feedback.get_attribute("class").split()[-1] == "correct"
    label, expected = _choice_feedback(qid, wrong)
    page.locator("label.MCButton", has_text=label).click()
    _, feedback = _feedback_of(page, label)
    assert feedback.inner_text().strip() == f"{expected} [0/{total}]"
    assert feedback.get_attribute("class").split()[-1] == "incorrect"

    exercise = _question(CODE_EXERCISE)
    block = page.locator("div.companion-exercise", has_text=f"({CODE_EXERCISE})")
    assert block.count() == 1
    text = block.inner_text()
    assert f"quiz.{exercise['checker']}({exercise['function']})" in text
    assert f"def {exercise['function']}(" in block.locator("pre").inner_text()
    answer = page.locator("details, .dropdown", has_text=f"Answer to").filter(
        has_text=f"({CODE_EXERCISE})")
    assert answer.count() >= 1  # the dropdown with a reference solution
    assert [error for error in errors if "'THEBE_JS_URL' has already been" not in error] == []
    page.close()

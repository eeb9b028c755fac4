"""Build the knowledge-check chapter, book/knowledge_check.ipynb, from the question files.

Scope: the page lists every question of ``notebooks/quizzes/*.json`` grouped by concept: per
concept an interactive quiz (``quiz.show(concept=...)``) and the answers behind MyST dropdowns,
then a table that maps the questions to the lesson's learning objectives and key insights, and a
last cell that scores the reader's answers in Jupyter or on Colab. The markdown and code cells
are generated here, so the page cannot drift from the question files (tests/test_quiz.py checks
that); their outputs come from executing the notebook. Cells whose source did not change keep
their outputs.

Usage (from the repository root)::

    python book/quiz_exercises.py            # rewrite book/knowledge_check.ipynb
    make execute NOTEBOOKS=book/knowledge_check.ipynb
    python book/quiz_exercises.py --check    # exit 1 if the page is out of date
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nbformat

from companion import quiz

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "knowledge_check.ipynb"


def _set_repository():
    """tools/set_repository.py: it derives the badge and the install cell from _config.yml."""
    spec = importlib.util.spec_from_file_location("set_repository",
                                                  ROOT / "tools" / "set_repository.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


repository = _set_repository()
CONCEPT_BLURBS = {
    "reusable features": "What a pretrained backbone has learned that is worth keeping.",
    "source-target similarity": "When the source data are close enough to yours for reuse to pay.",
    "feature extraction vs fine-tuning": "Keep the backbone fixed, or let it learn: how and why.",
    "practice": "The details that decide whether an experiment means what you think.",
}


def _markdown(text: str) -> str:
    """Escape the characters that Markdown would read as emphasis in a question text."""
    return text.replace("*", "\\*").replace("_", "\\_")


def _link(question: dict) -> str:
    """A MyST ``{doc}`` link from book/ to the page that teaches ``question`` (the strict build checks it)."""
    source = next(ROOT.glob(question["doc"] + ".*"))
    target = Path("..", source.relative_to(ROOT)).with_suffix("").as_posix()
    return f"{{doc}}`\u201c{question['section']}\u201d <{target}>`"


def _ordered(concept: str) -> list[dict]:
    """The questions of ``concept`` in the order and numbering that ``quiz.show`` uses."""
    return sorted(quiz.questions(concept=concept), key=lambda question: question["type"] == "code")


def _answer(number: int, question: dict) -> str:
    """The dropdown with the answer to one question and why, for the HTML book."""
    lines = [f":::{{dropdown}} Answer to {number} ({question['id']})",
             f"*{_markdown(question['question'])}*", ""]
    if question["type"] in ("multiple_choice", "many_choice"):
        for letter, choice in zip("ABCDEFGHIJKL", question["answers"]):
            if choice["correct"]:
                lines += [f"- **{letter}. {_markdown(choice['answer'])}** "
                          f"{_markdown(choice['feedback'])}"]
    elif question["type"] == "numeric":
        exact = "exact count" in question["question"].lower()  # as the question says, not guessed
        accepted = "an exact count" if exact else f"answers within {question['tolerance']:g} count"
        answer = f"{int(question['answer']):,}" if exact else f"{question['answer']:g}"
        lines += [f"**{answer}** ({accepted}). "
                  f"{_markdown(question['feedback_correct'])}"]
    else:
        lines += ["One solution (yours may differ and still pass "
                  f"<code>quiz.{question['checker']}</code>):", "",
                  "```python", question["solution"].rstrip(), "```"]
    lines += ["", f"Read more: {_link(question)} in {question['chapter_title']}.", ":::"]
    return "\n".join(lines)


def _mapping_table(vocabulary: dict[str, str], key: str, heading: str) -> str:
    rows = [f"| {heading} | Questions |", "|---|---|"]
    for name, text in vocabulary.items():
        ids = [question["id"] for question in quiz.questions() if name in question[key]]
        rows.append(f"| {text} | {', '.join(f'<code>{qid}</code>' for qid in ids)} |")
    return "\n".join(rows)


def build_cells() -> list[nbformat.NotebookNode]:
    """Return the page's cells, without outputs, with stable cell ids."""
    v4 = nbformat.v4
    setting = repository.read_setting(ROOT)
    install = repository.install_cell_source(setting.url, repository.read_version(ROOT))
    cells = [
        v4.new_markdown_cell(
            "# Knowledge check\n\n"
            + repository.colab_badge(setting, PAGE.relative_to(ROOT).as_posix()) + "\n\n"
            "Every question of the course in one place, grouped by the idea it checks. Click an "
            "answer, or type a number and press Enter, to see at once whether it is right and "
            "why; each feedback names the section to reread. The answers are also written out "
            "under each group, behind a dropdown. Code exercises are checked by running "
            "<code>quiz.check\\_...</code> on your function in Jupyter or on Colab, where the "
            "last cell of this page also adds up your score."),
        v4.new_code_cell(install, metadata={"tags": [repository.INSTALL_TAG]}),
        v4.new_code_cell("from companion import quiz"),
    ]
    order = []
    for concept in quiz.CONCEPTS:
        selected = _ordered(concept)
        order += selected
        cells += [
            v4.new_markdown_cell(f"## {concept[0].upper() + concept[1:]}\n\n"
                                 f"{CONCEPT_BLURBS[concept]}"),
            v4.new_code_cell(f"quiz.show(concept={concept!r})"),
            v4.new_markdown_cell("\n\n".join(_answer(number, question) for number, question
                                             in enumerate(selected, start=1))),
        ]
    cells += [
        v4.new_markdown_cell(
            "## What each question checks\n\n"
            "The course follows three learning objectives and three key insights. Each question "
            "checks at least one of each:\n\n"
            + _mapping_table(quiz.OBJECTIVES, "objectives", "Learning objective") + "\n\n"
            + _mapping_table(quiz.INSIGHTS, "insights", "Key insight")),
        v4.new_markdown_cell(
            "## Your score\n\n"
            "In Jupyter or on Colab, type your answers below and run the cell: a letter "
            "(<code>\"B\"</code>), letters for the questions that ask for every right choice "
            "(<code>\"A, C\"</code>), a number, or your own function for a code exercise. "
            "<code>None</code> means not answered yet. In the book this cell shows the empty "
            "score."),
        v4.new_code_cell("answers = {\n" + "".join(f"    {question['id']!r}: None,\n"
                                                    for question in order)
                         + "}\nprint(quiz.score(answers))"),
    ]
    for index, cell in enumerate(cells):
        cell["id"] = f"knowledge-check-{index:02d}"
    return cells


def write(path: Path = PAGE) -> None:
    """Write the page; cells whose source is unchanged keep their outputs, as does the metadata."""
    metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"}}
    old = {}
    if path.exists():
        previous_notebook = nbformat.read(path, as_version=4)
        metadata = previous_notebook.metadata
        old = {cell["id"]: cell for cell in previous_notebook.cells}
    cells = build_cells()
    for index, cell in enumerate(cells):
        previous = old.get(cell["id"])
        if previous is not None and previous["source"] == cell["source"]:
            previous.metadata.update(cell.metadata)  # the install cell's tag
            cells[index] = previous
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=metadata), path)


def stale_cells(path: Path = PAGE) -> list[str]:
    """Return the ids of the cells whose source differs from the generated one."""
    committed = nbformat.read(path, as_version=4).cells if path.exists() else []
    wanted = build_cells()
    stale = [cell["id"] for cell, old in zip(wanted, committed)
             if (cell["cell_type"], cell["source"]) != (old["cell_type"], old["source"])]
    return stale + [cell["id"] for cell in wanted[len(committed):]] + (
        ["(extra cells)"] if len(committed) > len(wanted) else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report an out-of-date page")
    if parser.parse_args(argv).check:
        stale = stale_cells()
        if stale:
            print(f"{PAGE} is out of date (cells {stale}): run python book/quiz_exercises.py, "
                  "then make execute NOTEBOOKS=book/knowledge_check.ipynb.")
        return 1 if stale else 0
    write()
    print(f"wrote {PAGE}; now run make execute NOTEBOOKS=book/knowledge_check.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())

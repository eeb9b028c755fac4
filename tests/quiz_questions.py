"""Helpers of test_quiz.py and test_exercises.py: a question by its id, and a function from its source."""

from companion import quiz


def by_id(qid: str) -> dict:
    """The question ``qid`` of the course's question files."""
    return next(question for question in quiz.questions() if question["id"] == qid)


def function_from(source: str, name: str):
    """The function ``name`` defined by ``source`` (test code or a question file's own reference solution)."""
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]

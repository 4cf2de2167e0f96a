"""Workshop exercises with instant checks, hints and solutions, one module per lesson.

In a practice notebook::

    from payments_lab.exercises import ____, lesson02 as ex

    plan = ____                      # your answer replaces the blank
    ex.q2.check(plan)                # Correct / Not quite / Not attempted, shown in colour
    ex.q2.hint()                     # a nudge; ex.q2.hint(2) for the next one
    ex.q2.solution()                 # the answer, with the code

A check runs the answer where that is what the exercise is about: on the lab's Temporal
server, and then it reads what Temporal recorded (the history, the attempt log, the
ledger, visibility), not only the value the answer returned. ``check()`` blocks until the
verdict is in, also inside a notebook whose event loop is already running; tests and
async code call ``await ex.q2.check_async(answer, lab=lab)``.

The framework, as learntools lays it out: :mod:`~payments_lab.exercises.problem` (an
exercise and its checking), :mod:`~payments_lab.exercises.view` (what a learner sees),
:mod:`~payments_lab.exercises.errors` (a wrong answer, a wrong definition) and
:mod:`~payments_lab.exercises.blanks` (the ``____`` placeholder). ``lessonNN`` modules hold
the exercises; :mod:`~payments_lab.exercises.checking` the helpers their checkers share.
"""

from __future__ import annotations

import importlib

from payments_lab.exercises.blanks import Blank, ____, contains_blank
from payments_lab.exercises.errors import InvalidExerciseError, Mismatch, NoSuchHintError
from payments_lab.exercises.problem import CHECK_TIMEOUT, MODULE_ALIAS, Checker, Exercise, Verdict
from payments_lab.exercises.view import Feedback, Hint, Solution, Task
from payments_lab.verdicts import CheckOutcome

__all__ = [
    "CHECK_TIMEOUT",
    "LESSONS",
    "MODULE_ALIAS",
    "Blank",
    "Checker",
    "Exercise",
    "Feedback",
    "Hint",
    "InvalidExerciseError",
    "Mismatch",
    "NoSuchHintError",
    "CheckOutcome",
    "Solution",
    "Task",
    "Verdict",
    "all_exercises",
    "contains_blank",
    "____",
]

LESSONS = ("lesson01", "lesson02", "lesson03", "lesson04", "lesson05", "lesson06", "lesson07", "lesson09", "lesson10", "lesson11")
"""The lesson modules that hold exercises, in lesson order."""


def all_exercises() -> list[Exercise]:
    """Every exercise of every lesson, in lesson and question order."""
    found: list[Exercise] = []
    for name in LESSONS:
        module = importlib.import_module(f"payments_lab.exercises.{name}")
        found += list(module.EXERCISES)
    return found

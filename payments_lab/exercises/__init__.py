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
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from payments_lab.lab import Lab

__all__ = [
    "Blank",
    "Exercise",
    "Feedback",
    "Hint",
    "Mismatch",
    "Outcome",
    "Solution",
    "all_exercises",
    "contains_blank",
    "____",
]

MODULE_ALIAS = "ex"
"""The name under which practice notebooks import their lesson's exercises (``lesson02 as ex``)."""

LESSONS = ("lesson01", "lesson02", "lesson03", "lesson04", "lesson05", "lesson06", "lesson07", "lesson09", "lesson10", "lesson11")
"""The lesson modules that hold exercises, in lesson order."""


class Blank:
    """The blank a learner fills in: ``____``. A check given it says "not attempted"."""

    _instance: Blank | None = None

    def __new__(cls) -> Blank:
        # One blank only, so that ``answer is ____`` holds across imports and copies.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"

    def __copy__(self) -> Blank:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Blank:
        return self

    def __reduce__(self) -> str:
        return "____"


____ = Blank()
"""The placeholder of practice notebooks: replace it with your answer."""

_BLANK_NAME = "____"


def _code_uses_blank(code: types.CodeType) -> bool:
    if _BLANK_NAME in code.co_names or _BLANK_NAME in code.co_varnames:
        return True
    return any(isinstance(const, types.CodeType) and _code_uses_blank(const) for const in code.co_consts)


def contains_blank(value: object, _seen: set[int] | None = None) -> bool:
    """Whether ``value`` is the blank, holds it, or is a function whose code still uses it.

    Containers, dataclasses and functions (with their closures' values) are searched;
    a function counts as unanswered as long as its body still names ``____``.
    """
    seen = _seen if _seen is not None else set()
    if value is ____:
        return True
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, (str, bytes, int, float, complex, bool, type(None))):
        return False
    if isinstance(value, dict):
        return any(contains_blank(k, seen) or contains_blank(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_blank(item, seen) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(contains_blank(getattr(value, f.name, None), seen) for f in dataclasses.fields(value))
    function = getattr(value, "__func__", value)  # a bound method's function
    if isinstance(function, types.FunctionType):
        if _code_uses_blank(function.__code__):
            return True
        closure = function.__closure__ or ()
        return any(contains_blank(cell.cell_contents, seen) for cell in closure if _cell_is_set(cell))
    partial_function = getattr(value, "func", None)
    if partial_function is not None and hasattr(value, "args") and hasattr(value, "keywords"):
        return contains_blank(partial_function, seen) or contains_blank(value.args, seen) or contains_blank(value.keywords, seen)
    return False


def _cell_is_set(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


class Outcome(str, Enum):
    """The verdict of a check."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    NOT_ATTEMPTED = "not attempted"

    def __str__(self) -> str:
        return self.value


_HEADINGS = {Outcome.CORRECT: "Correct", Outcome.INCORRECT: "Not quite", Outcome.NOT_ATTEMPTED: "Not attempted"}
_COLOURS = {
    # (border, background, heading) — readable on JupyterLab's light and dark themes.
    Outcome.CORRECT: ("#2e7d32", "rgba(46, 125, 50, 0.10)", "#2e7d32"),
    Outcome.INCORRECT: ("#c62828", "rgba(198, 40, 40, 0.08)", "#c62828"),
    Outcome.NOT_ATTEMPTED: ("#9e9e9e", "rgba(158, 158, 158, 0.12)", "#757575"),
}
_MARKS = {Outcome.CORRECT: "✓", Outcome.INCORRECT: "✗", Outcome.NOT_ATTEMPTED: "○"}


def _inline_html(text: str) -> str:
    """Escape ``text`` and show its `backticked` parts as code."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(part)}</code>" if index % 2 else html.escape(part) for index, part in enumerate(parts)
    )


def _box(border: str, background: str, body: str) -> str:
    return (
        f'<div style="border-left: 6px solid {border}; background: {background}; '
        f'padding: 8px 12px; margin: 4px 0; border-radius: 4px; line-height: 1.5">{body}</div>'
    )


@dataclass(frozen=True)
class Feedback:
    """What a check says about an answer: shown in colour in a notebook, as plain text elsewhere.

    The text holds no run ids, ports or timings, so a notebook's output stays the same from
    one run to the next (nbval compares it).
    """

    exercise: str
    """Which exercise, e.g. ``Lesson 02 · Q2 · A charge that fails twice, then succeeds``."""
    outcome: Outcome
    """Correct, incorrect or not attempted."""
    message: str
    """The verdict in one or two sentences."""
    expected: str | None = None
    """What the check expected to see (incorrect answers)."""
    seen: str | None = None
    """What it saw instead, on the server or in the answer (incorrect answers)."""
    where_to_look: str | None = None
    """Where the fix lies: a parameter, an API, a lesson (incorrect answers)."""
    verified: tuple[str, ...] = ()
    """What the check looked at and found right (correct answers)."""

    @property
    def passed(self) -> bool:
        """Whether the answer is correct."""
        return self.outcome is Outcome.CORRECT

    def __str__(self) -> str:
        lines = [f"{_MARKS[self.outcome]} {_HEADINGS[self.outcome]} · {self.exercise}", self.message]
        lines += [f"  ✓ {item}" for item in self.verified]
        for label, value in (("Expected", self.expected), ("Seen", self.seen), ("Where to look", self.where_to_look)):
            if value:
                lines.append(f"  {label}: {value}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        border, background, heading = _COLOURS[self.outcome]
        body = [
            f'<div style="font-weight: bold; color: {heading}">{_MARKS[self.outcome]} {_HEADINGS[self.outcome]}'
            f' <span style="font-weight: normal; opacity: 0.8">· {html.escape(self.exercise)}</span></div>',
            f"<div>{_inline_html(self.message)}</div>",
        ]
        if self.verified:
            items = "".join(f"<li>{_inline_html(item)}</li>" for item in self.verified)
            body.append(f'<ul style="margin: 4px 0 0 0; padding-left: 20px">{items}</ul>')
        rows = [(label, value) for label, value in (("Expected", self.expected), ("Seen", self.seen), ("Where to look", self.where_to_look)) if value]
        if rows:
            cells = "".join(
                f'<tr><th style="text-align: left; vertical-align: top; padding: 2px 12px 2px 0; white-space: nowrap">{label}</th>'
                f'<td style="text-align: left; padding: 2px 0">{_inline_html(value)}</td></tr>'
                for label, value in rows
            )
            body.append(f'<table style="margin-top: 6px; border-collapse: collapse">{cells}</table>')
        return _box(border, background, "".join(body))


@dataclass(frozen=True)
class Hint:
    """One hint of an exercise."""

    exercise: str
    """Which exercise."""
    text: str
    """The hint; `backticks` mark code."""
    number: int
    """Which hint, from 1."""
    total: int
    """How many hints the exercise has."""
    call: str
    """What to type for the next hint, e.g. ``ex.q2.hint(2)``."""

    def _more(self) -> str:
        return f" Another hint: {self.call}" if self.number < self.total else ""

    def __str__(self) -> str:
        return f"💡 Hint {self.number} of {self.total} · {self.exercise}\n{self.text}{self._more()}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        more = f'<div style="opacity: 0.8">Another hint: <code>{html.escape(self.call)}</code></div>' if self.number < self.total else ""
        body = (
            f'<div style="font-weight: bold">💡 Hint {self.number} of {self.total}'
            f' <span style="font-weight: normal; opacity: 0.8">· {html.escape(self.exercise)}</span></div>'
            f"<div>{_inline_html(self.text)}</div>{more}"
        )
        return _box("#f9a825", "rgba(249, 168, 37, 0.12)", body)


@dataclass(frozen=True)
class Solution:
    """The solution of an exercise: why, and the code."""

    exercise: str
    """Which exercise."""
    explanation: str
    """Why this is the answer; `backticks` mark code."""
    code: str
    """The answer, as code to paste into the answer cell."""

    def __str__(self) -> str:
        return f"Solution · {self.exercise}\n{self.explanation}\n\n{self.code}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        body = (
            f'<div style="font-weight: bold">Solution <span style="font-weight: normal; opacity: 0.8">· '
            f"{html.escape(self.exercise)}</span></div><div>{_inline_html(self.explanation)}</div>"
            f'<pre style="margin: 6px 0 0 0; padding: 6px; background: rgba(127, 127, 127, 0.12)">{html.escape(self.code)}</pre>'
        )
        return _box("#1565c0", "rgba(21, 101, 192, 0.08)", body)


class Mismatch(Exception):
    """Raised by a checker when the answer is wrong: what was expected, seen, and where to look.

    Args:
        message: The verdict in a sentence.
        expected: What the check expected to see.
        seen: What it saw instead.
        where_to_look: Where the fix lies; the exercise adds its lesson and section.
        about_the_lab: The answer looks right and the lab misbehaved: point to no lesson.
    """

    def __init__(self, message: str, *, expected: str, seen: str, where_to_look: str, about_the_lab: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.seen = seen
        self.where_to_look = where_to_look
        self.about_the_lab = about_the_lab


@dataclass(frozen=True)
class Verdict:
    """What a checker returns for a correct answer."""

    message: str
    """The verdict in a sentence."""
    verified: tuple[str, ...] = ()
    """What the check looked at and found right."""


Checker = Callable[[Any, "Lab | None"], Awaitable[Verdict]]
"""An async function that checks an answer, given the lab (None for checks that need none)."""


class Exercise:
    """One exercise: a task, a check, hints and a solution.

    Args:
        lesson: The lesson number (1 to 7).
        number: The question number within the lesson, from 1.
        title: A few words, e.g. "A charge that fails twice, then succeeds".
        task: What to do, in one or two sentences.
        answer: What the answer is, e.g. "a FaultPlan" or "an async function (lab, handle)".
        checker: Checks a non-blank answer; returns a :class:`Verdict` or raises :class:`Mismatch`.
        hints: Hints from gentle to explicit; `backticks` mark code.
        explanation: Why the solution is right.
        solution: Code that defines the answer as ``answer_name``, with its imports; it may
            use ``lab``.
        answer_name: The name the solution code binds the answer to.
        needs_lab: Whether the check runs something on the lab's server.
        section: The section of the lesson notebook that teaches what the exercise
            practises; feedback on a wrong answer points to it.
    """

    def __init__(
        self,
        *,
        lesson: int,
        number: int,
        title: str,
        task: str,
        answer: str,
        checker: Checker,
        hints: Sequence[str],
        explanation: str,
        solution: str,
        answer_name: str,
        needs_lab: bool = True,
        section: str | None = None,
    ) -> None:
        if not 1 <= lesson <= 99 or number < 1:
            raise ValueError(f"lesson must be 1 to 99 and number >= 1, got lesson {lesson}, number {number}")
        if not hints:
            raise ValueError(f"exercise {lesson}.{number} needs at least one hint")
        if not solution.strip() or not answer_name.isidentifier():
            raise ValueError(f"exercise {lesson}.{number} needs solution code and the name of its answer")
        self.lesson = lesson
        self.number = number
        self.title = title
        self.task = task
        self.answer = answer
        self._checker = checker
        self.hints = tuple(hints)
        self.explanation = explanation
        self.solution_code = solution.strip("\n")
        self.answer_name = answer_name
        self.needs_lab = needs_lab
        self.section = section

    @property
    def name(self) -> str:
        """``q1``, ``q2``…: the name of the exercise in its lesson module."""
        return f"q{self.number}"

    @property
    def id(self) -> str:
        """``02.q2``: how check records name the exercise (see :mod:`payments_lab.verdicts`)."""
        return f"{self.lesson:02d}.{self.name}"

    @property
    def typed_name(self) -> str:
        """``ex.q1``: what a learner types, the practice notebooks importing each lesson as ``ex``."""
        return f"{MODULE_ALIAS}.{self.name}"

    @property
    def label(self) -> str:
        """``Lesson 02 · Q2 · <title>``."""
        return f"Lesson {self.lesson:02d} · Q{self.number} · {self.title}"

    def __repr__(self) -> str:
        return f"{self.label}\n{self.task}\nAnswer: {self.answer}. Check it with {self.typed_name}.check(answer)."

    def _repr_html_(self) -> str:
        body = (
            f'<div style="font-weight: bold">{html.escape(self.label)}</div><div>{_inline_html(self.task)}</div>'
            f'<div style="opacity: 0.8">Answer: {_inline_html(self.answer)}. Check it with '
            f"<code>{self.typed_name}.check(answer)</code>.</div>"
        )
        return _box("#1565c0", "rgba(21, 101, 192, 0.05)", body)

    def hint(self, number: int = 1) -> Hint:
        """Hint ``number`` (from 1); the later ones say more.

        Raises:
            ValueError: there is no hint ``number``.
        """
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(self.hints):
            raise ValueError(f"{self.label} has hints 1 to {len(self.hints)}, not {number!r}")
        return Hint(self.label, self.hints[number - 1], number, len(self.hints), f"{self.typed_name}.hint({number + 1})")

    def solution(self) -> Solution:
        """The answer, with why it is right."""
        return Solution(self.label, self.explanation, self.solution_code)

    def check(self, answer: object = ____) -> Feedback:
        """Check ``answer`` and return the verdict (shown in colour in a notebook).

        Works in a notebook, whose event loop is already running, and in plain scripts,
        where a check that needs a lab opens one for its own run and closes it after.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._check_in_own_loop(answer))
        import nest_asyncio

        # The lab's worker runs on this loop: the check must run on it too, nested in the
        # cell that called it, so that the worker keeps serving while the cell waits.
        nest_asyncio.apply(loop)
        return loop.run_until_complete(self.check_async(answer))

    async def _check_in_own_loop(self, answer: object) -> Feedback:
        """Check with a lab of this loop's own: a lab's worker cannot outlive the loop it runs on."""
        if not self.needs_lab or contains_blank(answer):
            return await self.check_async(answer)
        from payments_lab.lab import open_lab

        lab = await open_lab("exercise-check")
        try:
            return await self.check_async(answer, lab=lab)
        finally:
            await lab.close()

    async def check_async(self, answer: object = ____, *, lab: Lab | None = None) -> Feedback:
        """Check ``answer``, running it on ``lab`` (the notebook's lab by default) if need be."""
        if contains_blank(answer):
            return Feedback(
                self.label,
                Outcome.NOT_ATTEMPTED,
                f"Replace `____` with your answer ({self.answer}), then run the check again. "
                f"Stuck? `{self.typed_name}.hint()`",
            )
        if self.needs_lab and lab is None:
            from payments_lab.lab import open_lab

            lab = await open_lab()
        try:
            try:
                verdict = await asyncio.wait_for(self._checker(answer, lab), CHECK_TIMEOUT)
            except TimeoutError:
                _log_stuck_tasks(self.label)
                raise Mismatch(
                    f"The check did not finish within {CHECK_TIMEOUT:g} s: the lab, not your answer, is in trouble.",
                    expected="a verdict within a few seconds",
                    seen="no answer from the server or the worker in time (details in the log)",
                    where_to_look="run `lab = await open_lab()` again (it restarts what stopped), then this check",
                    about_the_lab=True,
                ) from None
        except Mismatch as mismatch:
            where = mismatch.where_to_look
            if not mismatch.about_the_lab:
                where += f" (lesson {self.lesson:02d}" + (f", “{self.section}”)" if self.section else ")")
            feedback = Feedback(
                self.label,
                Outcome.INCORRECT,
                mismatch.message,
                expected=mismatch.expected,
                seen=mismatch.seen,
                where_to_look=where,
            )
        else:
            feedback = Feedback(self.label, Outcome.CORRECT, verdict.message, verified=verdict.verified)
        await _record(self, feedback, lab)
        return feedback


async def _record(exercise: Exercise, feedback: Feedback, lab: Lab | None) -> None:
    """Record the verdict in the learner's namespace, for the room view; never raises."""
    from payments_lab.lab import _LABS
    from payments_lab.verdicts import record_verdict

    # A check that needs no lab records through the notebook's lab, if one is open.
    recorder = lab or next((opened for opened in _LABS.values() if opened.running), None)
    if recorder is not None:
        await record_verdict(recorder.client, recorder.task_queue, exercise.id, feedback.outcome.value, feedback.message)


CHECK_TIMEOUT = 90.0
"""Seconds after which a check gives up with a verdict instead of leaving its cell hanging."""


def _log_stuck_tasks(label: str) -> None:
    """Log where every task of the loop waits, so that a check that hung can be understood."""
    import io
    import logging

    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=stacks)
    logging.getLogger("payments_lab.exercises").warning("%s did not finish; the loop's tasks:\n%s", label, stacks.getvalue())


def all_exercises() -> list[Exercise]:
    """Every exercise of every lesson, in lesson and question order."""
    import importlib

    found: list[Exercise] = []
    for name in LESSONS:
        module = importlib.import_module(f"payments_lab.exercises.{name}")
        found += list(module.EXERCISES)
    return found

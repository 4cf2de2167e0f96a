"""How exercises speak to a learner: a task, a verdict, a hint, a solution, in colour in a notebook and as plain text elsewhere."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from payments_lab.verdicts import CheckOutcome

__all__ = ["Feedback", "Hint", "Solution", "Task"]


_HEADINGS = {CheckOutcome.CORRECT: "Correct", CheckOutcome.INCORRECT: "Not quite", CheckOutcome.NOT_ATTEMPTED: "Not attempted"}
_COLOURS = {
    # (border, background, heading) — readable on JupyterLab's light and dark themes.
    CheckOutcome.CORRECT: ("#2e7d32", "rgba(46, 125, 50, 0.10)", "#2e7d32"),
    CheckOutcome.INCORRECT: ("#c62828", "rgba(198, 40, 40, 0.08)", "#c62828"),
    CheckOutcome.NOT_ATTEMPTED: ("#9e9e9e", "rgba(158, 158, 158, 0.12)", "#757575"),
}
_MARKS = {CheckOutcome.CORRECT: "✓", CheckOutcome.INCORRECT: "✗", CheckOutcome.NOT_ATTEMPTED: "○"}


def inline_html(text: str) -> str:
    """Escape ``text`` and show its `backticked` parts as code and its **starred** parts in bold.

    The marks are markdown's, so that a task reads the same here and in its notebook.
    """
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(part)}</code>" if index % 2 else _BOLD.sub(r"<strong>\1</strong>", html.escape(part))
        for index, part in enumerate(parts)
    )


def plain_text(text: str) -> str:
    """``text`` without its bold marks, for a terminal: `backticks` stay, they tell code apart."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if index % 2 else _BOLD.sub(r"\1", part) for index, part in enumerate(parts))


_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _box(border: str, background: str, body: str) -> str:
    return (
        f'<div style="border-left: 6px solid {border}; background: {background}; '
        f'padding: 8px 12px; margin: 4px 0; border-radius: 4px; line-height: 1.5">{body}</div>'
    )


@dataclass(frozen=True)
class Task:
    """What an exercise asks, shown when a notebook displays the exercise (``ex.q1``)."""

    exercise: str
    """Which exercise, e.g. ``Lesson 02 · Q2 · A charge that fails twice, then succeeds``."""
    task: str
    """What to do; `backticks` mark code and **stars** emphasis, as in markdown."""
    answer: str
    """What kind of value the answer is, e.g. "a `FaultPlan`"."""
    check_call: str
    """What to type to check an answer, e.g. ``ex.q2.check(answer)``."""

    def __str__(self) -> str:
        return f"{self.exercise}\n{plain_text(self.task)}\nAnswer: {self.answer}. Check it with {self.check_call}."

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        body = (
            f'<div style="font-weight: bold">{html.escape(self.exercise)}</div><div>{inline_html(self.task)}</div>'
            f'<div style="opacity: 0.8">Answer: {inline_html(self.answer)}. Check it with '
            f"<code>{html.escape(self.check_call)}</code>.</div>"
        )
        return _box("#1565c0", "rgba(21, 101, 192, 0.05)", body)


@dataclass(frozen=True)
class Feedback:
    """What a check says about an answer: shown in colour in a notebook, as plain text elsewhere.

    The text holds no run ids, ports or timings, so a notebook's output stays the same from
    one run to the next (nbval compares it).
    """

    exercise: str
    """Which exercise, e.g. ``Lesson 02 · Q2 · A charge that fails twice, then succeeds``."""
    outcome: CheckOutcome
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
        return self.outcome is CheckOutcome.CORRECT

    def _rows(self) -> list[tuple[str, str]]:
        labelled = (("Expected", self.expected), ("Seen", self.seen), ("Where to look", self.where_to_look))
        return [(label, value) for label, value in labelled if value]

    def __str__(self) -> str:
        lines = [f"{_MARKS[self.outcome]} {_HEADINGS[self.outcome]} · {self.exercise}", self.message]
        lines += [f"  ✓ {item}" for item in self.verified]
        lines += [f"  {label}: {value}" for label, value in self._rows()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        border, background, heading = _COLOURS[self.outcome]
        body = [
            f'<div style="font-weight: bold; color: {heading}">{_MARKS[self.outcome]} {_HEADINGS[self.outcome]}'
            f' <span style="font-weight: normal; opacity: 0.8">· {html.escape(self.exercise)}</span></div>',
            f"<div>{inline_html(self.message)}</div>",
        ]
        if self.verified:
            items = "".join(f"<li>{inline_html(item)}</li>" for item in self.verified)
            body.append(f'<ul style="margin: 4px 0 0 0; padding-left: 20px">{items}</ul>')
        rows = self._rows()
        if rows:
            cells = "".join(
                f'<tr><th style="text-align: left; vertical-align: top; padding: 2px 12px 2px 0; white-space: nowrap">{label}</th>'
                f'<td style="text-align: left; padding: 2px 0">{inline_html(value)}</td></tr>'
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
            f"<div>{inline_html(self.text)}</div>{more}"
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
            f"{html.escape(self.exercise)}</span></div><div>{inline_html(self.explanation)}</div>"
            f'<pre style="margin: 6px 0 0 0; padding: 6px; background: rgba(127, 127, 127, 0.12)">{html.escape(self.code)}</pre>'
        )
        return _box("#1565c0", "rgba(21, 101, 192, 0.08)", body)

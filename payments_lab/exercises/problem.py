"""One exercise and how it is checked: the answer run, the checker's verdict, the feedback recorded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from payments_lab.exercises.blanks import ____, contains_blank
from payments_lab.exercises.errors import (
    CheckInterruptedError,
    InvalidExerciseError,
    Mismatch,
    NoSuchHintError,
    lab_stopped,
    server_away,
)
from payments_lab.exercises.view import Feedback, Hint, Solution, Task
from payments_lab.outage import OutageWatch
from payments_lab.verdicts import CheckOutcome

if TYPE_CHECKING:
    from payments_lab.lab import Lab

__all__ = ["CHECK_TIMEOUT", "MODULE_ALIAS", "Checker", "Exercise", "Verdict"]

MODULE_ALIAS = "ex"
"""The name under which practice notebooks import their lesson's exercises (``lesson02 as ex``)."""

CHECK_TIMEOUT = 90.0
"""Seconds after which a check gives up with a verdict instead of leaving its cell hanging."""


CHECK_SILENCE = timedelta(seconds=5)
"""A server that leaves a health check unanswered this long during a check was away (frozen, restarting):
longer than a busy room's server takes (checks of 30 learners at once), shorter than any outage that matters."""

LAB_CLOSED_GRACE = 5.0
"""Seconds a check stopped because its lab closed may take to clean up before it is left behind."""


async def _while_open(checking: Awaitable[Verdict], lab: Lab | None) -> Verdict:
    """Await ``checking``, and stop it at once if ``lab`` closes meanwhile (a closed server would be waited for as an outage)."""
    if lab is None:
        return await checking
    if not lab.running:
        if asyncio.iscoroutine(checking):
            checking.close()
        raise lab_stopped(lab, during=False)
    task = asyncio.ensure_future(checking)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and not lab.running:
                task.cancel()
                await asyncio.wait({task}, timeout=LAB_CLOSED_GRACE)
                # Still cleaning up (stopping its payment on a server that is gone waits for it): let it finish
                # in the background, its end read quietly, not logged later as "never retrieved".
                task.add_done_callback(_read_quietly)
                raise lab_stopped(lab, during=True)
    except asyncio.CancelledError:
        # The check's own deadline (CHECK_TIMEOUT) cancels this: the check must stop too, and clean up.
        task.cancel()
        await asyncio.wait({task}, timeout=LAB_CLOSED_GRACE)
        raise
    return task.result()


def _read_quietly(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


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
        lesson: The lesson number (1 to 99).
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

    Raises:
        InvalidExerciseError: the lesson or number is out of range, or a hint, the solution
            code or the answer's name is missing.
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
            raise InvalidExerciseError(f"lesson must be 1 to 99 and number >= 1, got lesson {lesson}, number {number}")
        if not hints:
            raise InvalidExerciseError(f"exercise {lesson}.{number} needs at least one hint")
        if not solution.strip() or not answer_name.isidentifier():
            raise InvalidExerciseError(f"exercise {lesson}.{number} needs solution code and the name of its answer")
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

    def view(self) -> Task:
        """What the exercise asks, as a notebook shows it."""
        return Task(self.label, self.task, self.answer, f"{self.typed_name}.check(answer)")

    def __repr__(self) -> str:
        return str(self.view())

    def _repr_html_(self) -> str:
        return self.view()._repr_html_()

    def hint(self, number: int = 1) -> Hint:
        """Hint ``number`` (from 1); the later ones say more.

        Raises:
            NoSuchHintError: there is no hint ``number``.
        """
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(self.hints):
            raise NoSuchHintError(f"{self.label} has hints 1 to {len(self.hints)}, not {number!r}")
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
        checking = loop.create_task(self.check_async(answer), name=f"check {self.label}")
        try:
            return loop.run_until_complete(checking)
        except KeyboardInterrupt:
            # The cell was interrupted: stop the check too (it stops its payment), or it would run
            # on in the background and judge an answer nobody waits for.
            checking.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.wait({checking}, timeout=LAB_CLOSED_GRACE))
            raise CheckInterruptedError(
                f"{self.label}: the check was interrupted and stopped, with its payment; nothing was judged. "
                f"Run `{self.typed_name}.check(...)` again."
            ) from None

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
                CheckOutcome.NOT_ATTEMPTED,
                f"Replace `____` with your answer ({self.answer}), then run the check again. "
                f"Stuck? `{self.typed_name}.hint()`",
            )
        if self.needs_lab and lab is None:
            from payments_lab.lab import open_lab

            lab = await open_lab()
        from payments_lab.client import NamespaceNotFoundError, SearchAttributesError, TemporalUnavailableError

        watch = OutageWatch(lab.client, silent_after=CHECK_SILENCE) if lab is not None and lab.running else None
        try:
            try:
                if watch is None:
                    verdict = await asyncio.wait_for(_while_open(self._checker(answer, lab), lab), CHECK_TIMEOUT)
                else:
                    async with watch:
                        verdict = await asyncio.wait_for(_while_open(self._checker(answer, lab), lab), CHECK_TIMEOUT)
            except Mismatch as mismatch:
                if watch is None or not watch.saw_outage or not mismatch.judged:
                    raise
                # What the check saw went through an outage (a charge's answer lost, a deadline used up
                # waiting): no verdict on the answer, and none recorded against it.
                if mismatch.about_the_lab:  # it says so already
                    raise Mismatch(mismatch.message, expected=mismatch.expected, seen=mismatch.seen,
                                   where_to_look=mismatch.where_to_look, about_the_lab=True, judged=False) from None
                raise server_away(lab.client.service_client.config.target_host, "it was away during the check") from None  # type: ignore[union-attr]
            except TemporalUnavailableError as err:
                # Its message is about the check's own hidden payments (their ids, how to restart
                # them): the learner only needs to know the server was away and to check again.
                raise _away(err, lab) from None
            except (NamespaceNotFoundError, SearchAttributesError) as err:  # the lab's namespace changed under it
                raise Mismatch(
                    f"The lab's namespace is not ready: {err}",
                    expected="a namespace with the kit's search attributes",
                    seen="the server refused the check's payment: your answer was not judged",
                    where_to_look="once the namespace is back, run this check again",
                    about_the_lab=True,
                    judged=False,
                ) from None
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
                CheckOutcome.INCORRECT,
                mismatch.message,
                expected=mismatch.expected,
                seen=mismatch.seen,
                where_to_look=where,
            )
            if not mismatch.judged:
                return feedback  # no verdict on the answer, and no server to record one on
        else:
            feedback = Feedback(self.label, CheckOutcome.CORRECT, verdict.message, verified=verdict.verified)
        await _record(self, feedback, lab)
        return feedback


def _away(err: BaseException, lab: Lab | None) -> Mismatch:
    """The verdict of a check the lab's server did not answer: where it is, and the transport's word for it."""
    from temporalio.service import RPCError

    cause = err.__cause__
    why = cause.message if isinstance(cause, RPCError) else "unreachable"
    address = lab.client.service_client.config.target_host if lab is not None else "the lab's address"
    return server_away(address, why)


async def _record(exercise: Exercise, feedback: Feedback, lab: Lab | None) -> None:
    """Record the verdict in the learner's namespace, for the room view; never raises."""
    from payments_lab.lab import _LABS

    # A check that needs no lab records through the notebook's lab, if one is open.
    recorder = lab if lab is not None and lab.running else next((opened for opened in _LABS.values() if opened.running), None)
    if recorder is not None:  # a closed lab has no server to record on, and the feedback says so
        await recorder.record_verdict(exercise.id, feedback.outcome.value, feedback.message)


def _log_stuck_tasks(label: str) -> None:
    """Log where every task of the loop waits, so that a check that hung can be understood."""
    import io
    import logging

    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=stacks)
    logging.getLogger("payments_lab.exercises").warning("%s did not finish; the loop's tasks:\n%s", label, stacks.getvalue())

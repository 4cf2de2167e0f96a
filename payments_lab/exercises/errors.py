"""What a checker raises for a wrong answer, and the errors of exercises defined or used wrongly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from payments_lab.errors import PaymentsLabError

if TYPE_CHECKING:
    from payments_lab.lab import Lab

__all__ = ["InvalidExerciseError", "Mismatch", "NoSuchHintError"]


class Mismatch(Exception):
    """Raised by a checker when the answer is wrong: what was expected, seen, and where to look.

    Not a :class:`~payments_lab.errors.PaymentsLabError`: a wrong answer is a verdict, which
    :meth:`Exercise.check_async <payments_lab.exercises.problem.Exercise.check_async>` turns
    into feedback, not an error the kit reports.

    Args:
        message: The verdict in a sentence.
        expected: What the check expected to see.
        seen: What it saw instead.
        where_to_look: Where the fix lies; the exercise adds its lesson and section.
        about_the_lab: The answer looks right and the lab misbehaved: point to no lesson.
        judged: False when the answer could not be judged at all (the server was away): the
            feedback is not recorded for the room view, where it would count as a wrong answer.
    """

    def __init__(
        self, message: str, *, expected: str, seen: str, where_to_look: str, about_the_lab: bool = False, judged: bool = True
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.seen = seen
        self.where_to_look = where_to_look
        self.about_the_lab = about_the_lab
        self.judged = judged


class InvalidExerciseError(PaymentsLabError, ValueError):
    """An exercise is defined without what every exercise needs: a hint, solution code, a valid number."""


class NoSuchHintError(PaymentsLabError, ValueError):
    """A learner asked for a hint the exercise does not have."""


class CheckInterruptedError(PaymentsLabError, KeyboardInterrupt):
    """A check was interrupted (the ■ button): it stopped, with its payment, and judged nothing."""


def lab_closed(*, during: bool) -> Mismatch:
    """The verdict of a check whose lab is closed, or closed while it ran (by the answer, as a rule)."""
    return Mismatch(
        "The lab closed during the check: its server and worker are gone."
        if during
        else "The lab is closed: this check needs its server and worker.",
        expected="an open lab",
        seen="`lab.close()` was called" + (" while the check ran (by your answer?)" if during else ""),
        where_to_look="run `lab = await open_lab()` again, then this check; an answer must not close the lab",
        about_the_lab=True,
    )


def lab_stopped(lab: Lab, *, during: bool) -> Mismatch:
    """The verdict of a check whose lab is not running: closed (:func:`lab_closed`), or open with its
    server or worker stopped (a server that crashed, a worker stopped by hand): then the answer was not judged."""
    if lab.closed:
        return lab_closed(during=during)
    server = lab.connection.server
    if server is not None and not server.running:
        restart = "`lab.connection.server.start()`" if server.db_file is not None else "`lab = await open_lab()` (a new server: the old one's payments are gone)"
        return Mismatch(
            f"The lab's Temporal server stopped{' during the check' if during else ''}: your answer was not judged.",
            expected="the lab's server running",
            seen="its process has exited (it crashed, or was stopped)",
            where_to_look=f"start it again with {restart}, then run this check again",
            about_the_lab=True,
            judged=False,
        )
    return Mismatch(
        f"The lab's worker is stopped{' (it stopped during the check)' if during else ''}: your answer was not judged.",
        expected="the lab's worker running",
        seen="`lab.worker.running` is False",
        where_to_look="start it again with `await lab.worker.start()`, then run this check again",
        about_the_lab=True,
        judged=False,
    )


def server_away(address: str, why: str) -> Mismatch:
    """The verdict of a check during which the lab's Temporal server at ``address`` did not answer
    (``why``: the transport's word for it): the answer was not judged. A room's server being
    restarted is the usual cause; the check's own payments are the kit's business, not the learner's."""
    return Mismatch(
        f"The lab's Temporal server at {address} did not answer during the check: your answer was not judged.",
        expected="a server that answers",
        seen=f"no answer from {address} ({why})",
        where_to_look="run this check again once the server is back (in a room: once your facilitator has started it again)",
        about_the_lab=True,
        judged=False,
    )

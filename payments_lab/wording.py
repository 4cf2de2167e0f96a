"""Words the kit writes in several places, safe to import in Temporal's workflow sandbox (no pandas)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import RetryState


def retry_state_words(state: int) -> str:
    """Why Temporal stopped retrying, in words: ``MAXIMUM_ATTEMPTS_REACHED`` → ``maximum attempts reached``.

    The workflow's failure messages, the history tables and the exercise checks all say it
    this way.

    Args:
        state: A :class:`temporalio.exceptions.RetryState`, or the number a history event
            carries (the two enumerations share their numbers). A number this SDK does not
            know, from a newer server, reads ``retry state <number>``.
    """
    try:
        name = RetryState(state).name
    except ValueError:
        return f"retry state {state}"
    return name.lower().replace("_", " ")


def plural(count: int, noun: str) -> str:
    """``1 charge``, ``2 charges``, ``0 charges``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def seconds_words(span: timedelta) -> str:
    """``1 s``, ``0.5 s``, ``90 s``: a duration in seconds, so that two of them compare at a glance (exercise feedback)."""
    return f"{span.total_seconds():g} s"


def duration_words(span: timedelta) -> str:
    """``5 minutes``, ``1 minute``, ``90 s``, ``0.5 s``: a duration as a message to a person states it."""
    total = span.total_seconds()
    if total >= 60 and total % 60 == 0:
        return plural(int(total // 60), "minute")
    return seconds_words(span)


def rough_duration_words(span: timedelta) -> str:
    """``45 s``, ``12 min``, ``1.5 h``: how long ago, or for how long, to the unit that matters (a dashboard)."""
    total = span.total_seconds()
    if total < 90:
        return f"{total:.0f} s"
    if total < 5400:
        return f"{total / 60:.0f} min"
    return f"{total / 3600:.1f} h"


def sandbox_refusal_words(refused: str) -> str:
    """What to say when Temporal's sandbox refused ``refused`` (``open``, ``time.sleep``…) in workflow code, and the fix."""
    return (
        f"the sandbox refused `{refused.removesuffix('.__call__')}`: workflow code must be deterministic. Do I/O in an "
        "activity; use `workflow.now()` for the time, `workflow.random()` or `workflow.uuid4()` for randomness, "
        "`await workflow.sleep(...)` to wait; a module that workflows use only deterministically can be imported inside "
        "`with workflow.unsafe.imports_passed_through():`"
    )

"""Words the kit writes in several places, safe to import in Temporal's workflow sandbox (no pandas)."""

from __future__ import annotations

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

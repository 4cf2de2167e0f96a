"""Exercise verdicts recorded in the learner's namespace, so a room's progress can be read from Temporal alone.

Each check, once it has its verdict, starts one tiny workflow (:class:`ExerciseCheckWorkflow`)
on the lab's own task queue. The record is in its search attributes, set at start:
``ExerciseId`` (``02.q2``) and ``CheckVerdict`` (``correct`` or ``incorrect``), plus the
verdict's sentence in its memo. Visibility indexes them at once, whether or not a worker
ever runs the workflow, so :mod:`payments_lab.progress` reads a whole room with one
visibility query per namespace. The lab's worker completes the workflow in one workflow
task; it holds no state and calls no activity.

Recording never fails a check: it gives up after :data:`RECORD_TIMEOUT` seconds and logs
one warning (server gone, search attributes missing on an older server).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from temporalio import workflow

from payments_lab.errors import InvalidArgumentError

if TYPE_CHECKING:
    from temporalio.client import Client

WORKFLOW_TYPE = "ExerciseCheck"
"""Workflow type of check records: ``WorkflowType = 'ExerciseCheck'`` finds them."""

class CheckOutcome(StrEnum):
    """How an exercise check ended: the feedback's colour and heading, and a record's verdict."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    NOT_ATTEMPTED = "not attempted"


VERDICTS = (CheckOutcome.CORRECT, CheckOutcome.INCORRECT)
"""The verdicts a record may carry; "not attempted" is not recorded (a practice notebook run top to
bottom checks every blank at once, which says nothing of where the learner is)."""

RECORD_TIMEOUT = 2.0
"""Seconds a check waits at most for its record to be accepted."""

RECORD_COMPLETED_WITHIN = 2.0
"""Seconds a closing lab waits at most for the records it started to complete (its worker completes
them in one workflow task): a record left to its execution timeout shows as Running until then."""

RECORD_EXECUTION_TIMEOUT = timedelta(minutes=5)
"""A record whose worker never comes (it was killed) closes by itself, its search attributes kept."""

logger = logging.getLogger(__name__)


@workflow.defn(name=WORKFLOW_TYPE)
class ExerciseCheckWorkflow:
    """One exercise check's verdict; everything is in its search attributes and memo."""

    @workflow.run
    async def run(self) -> None:
        """Nothing to do: the record is complete once started."""


def record_id(exercise_id: str) -> str:
    """A fresh workflow id for a record: ``check-02.q2-<8 hex digits>``."""
    return f"check-{exercise_id}-{uuid.uuid4().hex[:8]}"


async def record_verdict(
    client: Client,
    task_queue: str,
    exercise_id: str,
    verdict: str,
    message: str = "",
    *,
    timeout: float = RECORD_TIMEOUT,
    workflow_id: str | None = None,
) -> bool:
    """Record one check's verdict in the client's namespace; never raises.

    Args:
        client: Client of the learner's namespace.
        task_queue: A task queue a worker of the learner polls (the lab's), which completes the record.
        exercise_id: Which exercise, e.g. ``02.q2``.
        verdict: ``correct`` or ``incorrect``.
        message: The verdict's sentence, kept in the memo (at most 500 characters).
        timeout: Seconds to wait for the server before giving up.
        workflow_id: The record's workflow id (default: a fresh :func:`record_id`), for a caller
            that waits for the record to complete.

    Returns:
        Whether the record was accepted. A failure is logged as a warning.

    Raises:
        ValueError: ``verdict`` is not one of :data:`VERDICTS` (a bug of the caller, not of the server).
    """
    if verdict not in VERDICTS:
        raise InvalidArgumentError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from payments_lab.search_attributes import CHECK_VERDICT, EXERCISE_ID

    try:
        await asyncio.wait_for(
            client.start_workflow(
                ExerciseCheckWorkflow.run,
                id=workflow_id or record_id(exercise_id),
                task_queue=task_queue,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(EXERCISE_ID, exercise_id), SearchAttributePair(CHECK_VERDICT, verdict)]
                ),
                memo={"message": message[:500]},
                execution_timeout=RECORD_EXECUTION_TIMEOUT,
                rpc_timeout=timedelta(seconds=timeout),
            ),
            timeout,
        )
    except Exception as err:  # noqa: BLE001 - a record must never break the check
        logger.warning(
            "The verdict of exercise %s was not recorded on the Temporal server (%s: %s); the check's feedback "
            "stands, only the room view will miss it.",
            exercise_id, type(err).__name__, str(err).splitlines()[0] if str(err) else "no detail",
        )
        return False
    return True

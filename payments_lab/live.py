"""Watching a payment while it runs: the server's view of a retrying activity, redrawn live."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from matplotlib.figure import Figure

from payments_lab.charts import timeline_chart
from payments_lab.domain import PaymentResult
from payments_lab.history import attempts_frame
from payments_lab.repository import PaymentRepository
from payments_lab.service import PaymentHandle


@dataclass(frozen=True)
class PendingActivity:
    """An activity the server is running or waiting to retry, as ``describe()`` reports it."""

    activity_type: str
    """Which activity."""
    attempt: int
    """The attempt running now, or the next one."""
    last_failure: str | None
    """Why the previous attempt failed, if it did."""
    retry_interval: timedelta | None
    """The wait before the next attempt, when one is due."""
    next_attempt_at: datetime | None
    """When the server will start the next attempt."""

    def describe(self, now: datetime) -> str:
        """One line for humans: which attempt, and when the next one is due."""
        if self.next_attempt_at is None:
            return f"{self.activity_type}: attempt {self.attempt} running"
        wait = max((self.next_attempt_at - now).total_seconds(), 0.0)
        return f"{self.activity_type}: attempt {self.attempt} due in {wait:.1f} s (after: {self.last_failure})"


async def pending_activities(handle: PaymentHandle) -> list[PendingActivity]:
    """What the server knows about the payment's unfinished activities.

    The history says nothing of an activity until its last attempt ends; ``describe()``
    shows the attempt in progress, the last failure and when the next retry is due.
    """
    description = await handle.workflow.describe()
    found = []
    for pending in description.raw_description.pending_activities:
        found.append(
            PendingActivity(
                activity_type=pending.activity_type.name,
                attempt=pending.attempt,
                last_failure=pending.last_failure.message or None,
                retry_interval=pending.current_retry_interval.ToTimedelta()
                if pending.HasField("current_retry_interval")
                else None,
                next_attempt_at=pending.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
                if pending.HasField("next_attempt_schedule_time")
                else None,
            )
        )
    return found


async def draw_now(handle: PaymentHandle, repository: PaymentRepository) -> Figure:
    """The payment's timeline as far as it has got, titled with what the server is waiting for."""
    history = await handle.workflow.fetch_history()
    figure = timeline_chart(history, attempts_frame(repository.attempts(handle.payment_id), history))
    now = datetime.now(UTC)
    waiting = [p.describe(now) for p in await pending_activities(handle)]
    if waiting:
        figure.axes[0].set_title("\n".join([figure.axes[0].get_title(), *waiting]), fontsize=10)
    return figure


async def watch(handle: PaymentHandle, repository: PaymentRepository, *, every: float = 0.5) -> PaymentResult:
    """Redraw the payment's timeline in the notebook until it ends; return its result.

    Outside a notebook it only waits for the result.
    """
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with JupyterLab
        return await handle.result()
    if get_ipython() is None:
        return await handle.result()
    result = asyncio.ensure_future(handle.result())
    shown = display(await draw_now(handle, repository), display_id=True)
    while not result.done():
        await asyncio.wait([result], timeout=every)
        shown.update(await draw_now(handle, repository))
    return result.result()

"""A room's progress read from Temporal alone: per learner, payments, failures, exercises passed, and who is stuck.

Everything comes from visibility, one namespace per learner (``payments-lab room``): the
payments are ``PaymentWorkflow`` executions, and each exercise check left a record
(:mod:`payments_lab.verdicts`) whose search attributes carry the exercise and its verdict.
No learner's kernel is asked anything, so a learner who closed their laptop still shows.

In the facilitator's notebook::

    view = await room_view(client)                # every learner namespace of the server
    view                                          # a table: stuck learners in red, idle ones in amber
    view.chart()
    await watch_room(client, every=5)             # table and chart redrawn every 5 s

A learner alone sees the same of themselves: ``await progress_view(lab.client)``.

The dev server's SQLite visibility rejects ``ORDER BY``: records are sorted here, by start time.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
from matplotlib.figure import Figure
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from payments_lab.arguments import positive_duration, whole_number
from payments_lab.client import SYSTEM_NAMESPACES, namespace_names
from payments_lab.errors import InvalidArgumentError
from payments_lab.gathering import gather_all
from payments_lab.outage import BUSY_SERVER_WINDOWS, answered, ride_out, within_window
from payments_lab.search_attributes import CHECK_VERDICT, EXERCISE_ID
from payments_lab.verdicts import WORKFLOW_TYPE, CheckOutcome
from payments_lab.visibility import PAYMENTS_QUERY
from payments_lab.wording import rough_duration_words

FAILURES_QUERY = (
    f"{PAYMENTS_QUERY} AND (PaymentStatus = 'failed' OR ExecutionStatus IN ('Failed', 'TimedOut', 'Terminated'))"
)
"""Payments that failed, or whose workflow did not complete (terminated, timed out, failed)."""

RECORDS_QUERY = f"WorkflowType = '{WORKFLOW_TYPE}'"
"""Every exercise check record of a namespace."""

MAX_RECORDS = 1000
"""Check records read per learner at most (a learner checks a few dozen times in a workshop)."""

T = TypeVar("T")

def exercise_label(exercise_id: str) -> str:
    """``02.q2`` → ``02·Q2``."""
    lesson, _, question = exercise_id.partition(".")
    return f"{lesson}·{question.upper()}" if question else exercise_id


@dataclass(frozen=True)
class CheckRecord:
    """One exercise check, as its record in the learner's namespace says."""

    exercise: str
    """Which exercise, e.g. ``02.q2``."""
    verdict: str
    """``correct`` or ``incorrect``."""
    at: datetime
    """When the check gave its verdict (the record's start time)."""
    message: str = ""
    """The verdict's sentence."""

    @property
    def passed(self) -> bool:
        """Whether the check was green."""
        return self.verdict == CheckOutcome.CORRECT


@dataclass(frozen=True)
class StuckRules:
    """When a learner stands out."""

    red_streak: int = 3
    """Red checks in a row on one exercise that make a learner stuck."""
    no_green_for: timedelta = timedelta(minutes=10)
    """A learner checking answers without a green one for this long is stuck."""
    idle_for: timedelta = timedelta(minutes=5)
    """A learner with no payment and no check for this long is idle."""

    def __post_init__(self) -> None:
        whole_number("red_streak", self.red_streak, minimum=1)
        positive_duration("no_green_for", self.no_green_for)
        positive_duration("idle_for", self.idle_for)


@dataclass(frozen=True)
class LearnerProgress:
    """What one learner's namespace says of them."""

    learner: str
    """The learner, i.e. their namespace."""
    payments: int
    """Payments run (lessons and checks alike)."""
    failures: int
    """Payments that failed, or whose workflow did not complete."""
    checks: tuple[CheckRecord, ...]
    """Every recorded check, oldest first."""
    last_payment_at: datetime | None = None
    """When a payment last started or ended."""
    course: tuple[str, ...] = field(default=(), repr=False)
    """Exercise ids in course order, to tell which one comes after a green check."""

    @property
    def passed(self) -> tuple[str, ...]:
        """Exercises with at least one green check, in course order."""
        green = {c.exercise for c in self.checks if c.passed}
        return tuple(sorted(green, key=self._position))

    def _position(self, exercise: str) -> tuple[int, str]:
        return (self.course.index(exercise), exercise) if exercise in self.course else (len(self.course), exercise)

    @property
    def current(self) -> str | None:
        """The exercise the learner is on: the last one checked if not passed yet, else the next one not passed.

        None before any check, or once every exercise of the course is passed.
        """
        if not self.checks:
            return None
        last = self.checks[-1].exercise
        passed = set(self.passed)
        if last not in passed:
            return last
        later = [e for e in self.course if self._position(e) > self._position(last) and e not in passed]
        return later[0] if later else None

    @property
    def red_streak(self) -> int:
        """Red checks in a row on the last exercise checked, up to now."""
        streak = 0
        for check in reversed(self.checks):
            if check.passed or check.exercise != self.checks[-1].exercise:
                break
            streak += 1
        return streak

    @property
    def last_green(self) -> datetime | None:
        """When the learner last had a green check."""
        return max((c.at for c in self.checks if c.passed), default=None)

    @property
    def last_activity(self) -> datetime | None:
        """The latest payment or check."""
        times = [t for t in (self.last_payment_at, self.checks[-1].at if self.checks else None) if t is not None]
        return max(times, default=None)

    def flag(self, now: datetime, rules: StuckRules) -> str | None:
        """Why the learner stands out (``stuck: …`` or ``idle: …``), or None. Worded without clock times."""
        if self.red_streak >= rules.red_streak:
            return f"stuck: {self.red_streak} red checks in a row on {exercise_label(self.checks[-1].exercise)}"
        last = self.last_activity
        if last is None:
            return "idle: no activity yet"
        if now - last >= rules.idle_for:
            return f"idle: no activity for over {rough_duration_words(rules.idle_for)}"
        if self.checks:
            since = self.last_green or self.checks[0].at
            if now - since >= rules.no_green_for:
                return f"stuck: no green check for over {rough_duration_words(rules.no_green_for)}"
        return None


@dataclass(frozen=True)
class RoomView:
    """Every learner's progress at one moment, and who stands out."""

    learners: tuple[LearnerProgress, ...]
    """One per learner, by name."""
    at: datetime
    """When it was read."""
    rules: StuckRules = StuckRules()
    """When a learner stands out."""
    left_out: tuple[str, ...] = ()
    """Namespaces asked for that hold no learner's progress, each with why (not found, not prepared by the kit)."""

    def flags(self) -> dict[str, str]:
        """Learners who stand out, with why."""
        found = {p.learner: p.flag(self.at, self.rules) for p in self.learners}
        return {name: reason for name, reason in found.items() if reason}

    def stuck(self) -> dict[str, str]:
        """Learners who are stuck (not the idle ones), with why."""
        return {name: reason for name, reason in self.flags().items() if reason.startswith("stuck")}

    def table(self, *, times: bool = True) -> pd.DataFrame:
        """One row per learner; ``times=False`` leaves out how long ago they were last active."""
        flags = self.flags()
        rows = []
        for p in self.learners:
            row: dict[str, object] = {
                "learner": p.learner,
                "payments": p.payments,
                "failures": p.failures,
                "passed": len(p.passed),
                "exercises passed": " ".join(exercise_label(e) for e in p.passed),
                "on": exercise_label(p.current) if p.current else ("done" if p.checks else ""),
                "red in a row": p.red_streak,
                "stands out": flags.get(p.learner, ""),
            }
            if times:
                last = p.last_activity
                row["last activity"] = f"{rough_duration_words(self.at - last)} ago" if last else "never"
            rows.append(row)
        return pd.DataFrame(rows).set_index("learner") if rows else pd.DataFrame()

    def __repr__(self) -> str:
        left_out = "".join(f"\nleft out: {reason}" for reason in self.left_out)
        return f"RoomView of {len(self.learners)} learners\n{self.table().to_string()}{left_out}"

    def _repr_html_(self) -> str:
        left_out = "".join(f"<p>Left out: {html.escape(reason)}</p>" for reason in self.left_out)
        return self._table_html() + left_out

    def _table_html(self) -> str:
        table = self.table()
        if table.empty:
            return "<p>No learner yet.</p>"
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["learner", *table.columns])
        body = []
        for learner, row in table.iterrows():
            reason = str(row["stands out"])
            colour = "rgba(198, 40, 40, 0.18)" if reason.startswith("stuck") else "rgba(249, 168, 37, 0.22)" if reason else ""
            style = f' style="background: {colour}; font-weight: bold"' if colour else ""
            cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in [learner, *row.tolist()])
            body.append(f"<tr{style}>{cells}</tr>")
        return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'

    def chart(self) -> Figure:
        """Exercises passed and red checks in a row, payments and failures: one bar per learner; who stands out in colour."""
        from payments_lab.charts import STATUS_COLOURS

        flags = self.flags()
        names = [p.learner for p in self.learners]
        figure = Figure(figsize=(10, 1.2 + 0.45 * max(len(names), 1)), layout="constrained")
        left, right = figure.subplots(1, 2, sharey=True, width_ratios=[3, 2])
        rows = range(len(names))
        passed = [len(p.passed) for p in self.learners]
        left.barh(rows, passed, color=STATUS_COLOURS["completed"], label="exercises passed")
        left.barh(rows, [p.red_streak for p in self.learners], left=passed, color=STATUS_COLOURS["failed"], label="red checks in a row")
        for row, p in zip(rows, self.learners):
            note = flags.get(p.learner) or (f"on {exercise_label(p.current)}" if p.current else "")
            left.text(passed[row] + p.red_streak + 0.15, row, note, va="center", fontsize=9,
                      color=STATUS_COLOURS["failed"] if note.startswith("stuck") else "#B26A00" if note.startswith("idle") else "black")
        most = max([a + p.red_streak for a, p in zip(passed, self.learners)], default=0)
        left.set_xlim(0, most + 6)
        left.set_xlabel("exercises")
        left.legend(loc="lower right", fontsize=8)
        right.barh(rows, [p.payments for p in self.learners], color=STATUS_COLOURS["pending"], label="payments")
        right.barh(rows, [p.failures for p in self.learners], color=STATUS_COLOURS["failed"], label="failed")
        right.set_xlabel("payments")
        right.legend(loc="lower right", fontsize=8)
        left.set_yticks(list(rows), names)
        left.invert_yaxis()
        for label, name in zip(left.get_yticklabels(), names):
            reason = flags.get(name, "")
            if reason:
                label.set_color(STATUS_COLOURS["failed"] if reason.startswith("stuck") else "#B26A00")
                label.set_fontweight("bold")
        stuck = len(self.stuck())
        figure.suptitle(f"{len(names)} learners · {stuck} stuck · {len(flags) - stuck} idle")
        return figure


def namespace_client(client: Client, namespace: str) -> Client:
    """A client of ``namespace`` on the same connection (no new connection is opened)."""
    if namespace == client.namespace:
        return client
    return Client(client.service_client, namespace=namespace, data_converter=client.data_converter)


async def check_records(client: Client) -> list[CheckRecord]:
    """Every exercise check recorded in the client's namespace, oldest first.

    Waits through a server outage, a stopped server included (:func:`payments_lab.outage.answered`).
    """
    return await answered(client, lambda window: _check_records(client, window))


async def _check_records(client: Client, window: timedelta) -> list[CheckRecord]:
    found = []
    async for execution in client.list_workflows(RECORDS_QUERY, limit=MAX_RECORDS, rpc_timeout=window):
        attributes = execution.typed_search_attributes
        exercise, verdict = attributes.get(EXERCISE_ID), attributes.get(CHECK_VERDICT)
        if exercise is None or verdict is None:
            continue
        message = await execution.memo_value("message", "")
        found.append(CheckRecord(exercise, verdict, execution.start_time, str(message)))
    return sorted(found, key=lambda c: c.at)


async def _last_payment_at(client: Client, window: timedelta) -> datetime | None:
    # Visibility lists running workflows first, then closed ones by close time, newest first
    # (the SQL stores' default order, and Elasticsearch's): the first page holds the latest.
    times = []
    async for execution in client.list_workflows(PAYMENTS_QUERY, limit=20, page_size=20, rpc_timeout=window):
        times.append(execution.close_time or execution.start_time)
    return max(times, default=None)


async def _count(client: Client, query: str, window: timedelta) -> int:
    return (await client.count_workflows(query, rpc_timeout=window)).count


async def _learner_progress(client: Client, course: Sequence[str]) -> LearnerProgress:
    """One learner's progress, read without riding out an outage: the caller does, once for all."""
    reads: list[Awaitable[Any]] = [
        _windowed(client, lambda window: _count(client, PAYMENTS_QUERY, window)),
        _windowed(client, lambda window: _count(client, FAILURES_QUERY, window)),
        _windowed(client, lambda window: _check_records(client, window)),
        _windowed(client, lambda window: _last_payment_at(client, window)),
    ]
    payments, failures, records, last_payment = await gather_all(reads)
    return LearnerProgress(client.namespace, payments, failures, tuple(records), last_payment, tuple(course))


async def learner_namespaces(client: Client) -> list[str]:
    """The server's namespaces that belong to learners (all but ``default`` and ``temporal-system``), by name."""
    return await answered(client, lambda window: _learner_namespaces(client, window))


async def _learner_namespaces(client: Client, window: timedelta) -> list[str]:
    return sorted(name for name in await namespace_names(client, window) if name not in SYSTEM_NAMESPACES)


async def room_view(
    client: Client,
    namespaces: Sequence[str] | None = None,
    *,
    rules: StuckRules = StuckRules(),
    concurrency: int = 8,
) -> RoomView:
    """Every learner's progress, one namespace each, read from visibility.

    If the server is unreachable, or stopped and silent, this says so once and waits for it
    (:func:`payments_lab.outage.ride_out`), then reads the whole room again.

    Args:
        client: A client of the room's server (any namespace).
        namespaces: The learners' namespaces; by default every namespace but ``default``.
        rules: When a learner stands out.
        concurrency: Learners read at the same time.

    Raises:
        ValueError: ``concurrency`` is below 1.
        payments_lab.client.TemporalUnavailableError: the server stayed unreachable longer than
            the kit waits (``PAYMENTS_LAB_OUTAGE_WAIT``).
    """
    whole_number("concurrency", concurrency, minimum=1)
    from payments_lab.exercises import all_exercises

    course = [e.id for e in all_exercises()]
    return await ride_out(lambda: _room_view(client, namespaces, rules, concurrency, course), address=_address(client))


async def _room_view(
    client: Client, namespaces: Sequence[str] | None, rules: StuckRules, concurrency: int, course: Sequence[str]
) -> RoomView:
    if namespaces is not None:
        names = sorted(namespaces)
    else:
        names = await _windowed(client, lambda window: _learner_namespaces(client, window))
    semaphore = asyncio.Semaphore(concurrency)

    async def read(name: str) -> LearnerProgress | str:
        async with semaphore:
            try:
                return await _learner_progress(namespace_client(client, name), course)
            except RPCError as err:  # one namespace that cannot be read must not blank the whole room
                if err.status is RPCStatusCode.NOT_FOUND:
                    return f"{name}: no such namespace on the server (deleted, or mistyped)"
                if err.status is RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message:
                    return (f"{name}: lacks the kit's search attributes (not a learner's namespace, or they were removed "
                            "by hand): starting the room again on its --db adds them back to each learner's, and so does "
                            "`payments-lab room --names FILE --address HOST:PORT` on a running server")
                raise

    found = await gather_all(read(name) for name in names)
    learners = tuple(f for f in found if isinstance(f, LearnerProgress))
    return RoomView(learners, datetime.now(UTC), rules, tuple(f for f in found if isinstance(f, str)))


def _windowed(client: Client, request: Callable[[timedelta], Awaitable[T]]) -> Awaitable[T]:
    """``request`` in windows (:func:`payments_lab.outage.within_window`): an outage comes out as
    UNAVAILABLE, for one ride-out around the whole view instead of a notice per request."""
    return within_window(request, client, windows=BUSY_SERVER_WINDOWS)


def _address(client: Client) -> str:
    return client.service_client.config.target_host


async def progress_view(client: Client, *, rules: StuckRules = StuckRules()) -> RoomView:
    """The view a learner alone has of themselves: their own namespace's row, as the room view shows it."""
    return await room_view(client, [client.namespace], rules=rules)


WATCH_STOP_GRACE = 15.0
"""Seconds an interrupted :func:`watch_room` gives what it waited for (a simulated room) to stop."""


def _stopped_watching() -> list[str]:
    """What an interrupted :func:`watch_room` shows in a notebook, instead of a page of asyncio's frames."""
    return ["\x1b[31mStopped watching the room\x1b[0m: the table and chart above are the last ones drawn. Run the cell again to watch on."]


async def watch_room(
    client: Client,
    namespaces: Sequence[str] | None = None,
    *,
    every: float = 5.0,
    until: Awaitable[object] | None = None,
    rules: StuckRules = StuckRules(),
) -> RoomView:
    """Redraw the room's table and chart in the notebook every ``every`` seconds; return the last view.

    Args:
        client: A client of the room's server.
        namespaces: The learners' namespaces; by default every namespace but ``default``.
        every: Seconds between redraws.
        until: Stop once this is done (e.g. a task running a simulated room); None redraws
            until the cell is interrupted. Interrupted, the view cancels ``until`` too.
        rules: When a learner stands out.

    Raises:
        ValueError: ``every`` is not positive.
    """
    if not every > 0:
        raise InvalidArgumentError(f"every must be a positive number of seconds, got {every!r}")
    done = asyncio.ensure_future(until) if until is not None else None
    view = await room_view(client, namespaces, rules=rules)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with JupyterLab
        get_ipython = None
    shown = None
    if get_ipython is not None and get_ipython() is not None:
        table, chart = display(view, display_id=True), display(view.chart(), display_id=True)
        shown = (table, chart)
    try:
        while done is None or not done.done():
            if done is None:
                await asyncio.sleep(every)
            else:
                await asyncio.wait([done], timeout=every)
            view = await room_view(client, namespaces, rules=rules)
            if shown is not None:
                shown[0].update(view)
                shown[1].update(view.chart())
    except asyncio.CancelledError as stopped:
        # Interrupting the cell is how a facilitator stops the view: one line, not asyncio's
        # frames; and what the view waited for (a simulated room) stops with it.
        stopped._render_traceback_ = _stopped_watching  # type: ignore[attr-defined]
        if done is not None and not done.done():
            done.cancel()
            await asyncio.wait([done], timeout=WATCH_STOP_GRACE)
        raise
    if done is not None:
        done.result()  # a simulated room that failed says so here
    return view

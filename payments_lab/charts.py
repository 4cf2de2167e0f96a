"""Charts of execution histories: a payment's timeline, retries against their policy, swimlanes, a fleet dashboard.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing shown twice in a notebook), so a learner can restyle it, or draws into the
``ax`` it is given. Times are seconds since a start point, never absolute: the
time-skipping test server's clock means nothing.

In a notebook::

    timeline_chart(histories[0], attempts)
    retry_chart(attempts, payment_id, "charge")
    swimlanes_chart(histories, attempts)
    fleet_dashboard(fleet_summary(histories))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from temporalio.client import WorkflowHistory
from temporalio.common import RetryPolicy

from payments_lab.arguments import whole_number
from payments_lab.domain import Step
from payments_lab.errors import InvalidArgumentError
from payments_lab.history import (
    ATTEMPT_COLUMNS,
    STEP_ORDER,
    FleetSummary,
    activity_spans,
    as_histories,
    fleet_summary,
    outcome,
    outcomes,
    payments_frame,
    workflow_task_spans,
)
from payments_lab.retries import retry_delay
from payments_lab.wording import plural

STEP_COLOURS: dict[str, str] = {
    Step.VALIDATE: "#4C72B0",
    Step.CHARGE: "#DD8452",
    Step.NOTIFY: "#55A868",
    Step.SETTLE: "#8172B3",
}
"""Colour of each payment step."""

OUTCOME_COLOURS: dict[str, str] = {
    "completed": "#2CA02C",
    "failed": "#D62728",
    "cancelled": "#9467BD",
    "timed out": "#FF7F0E",
    "running": "#1F77B4",
    "scheduled": "#1F77B4",
    "lost": "#555555",
}
"""Colour of each way an attempt or an activity ends (``lost``: its worker died during it)."""

STATUS_COLOURS: dict[str, str] = {
    "completed": "#2CA02C",
    "declined": "#7F7F7F",
    "failed": "#D62728",
    "cancelled": "#9467BD",
    "refunded": "#FF7F0E",
    "pending": "#1F77B4",
    "processing": "#17BECF",
    "terminated": "#8C564B",
    "timed out": "#E377C2",
}
"""Colour of each payment status, and of the workflow statuses that can end a payment first."""

_WORKFLOW_TASK_COLOUR = "#9A9A9A"
_WORKFLOW_TASK_COLOURS = {"failed": OUTCOME_COLOURS["failed"], "timed out": OUTCOME_COLOURS["timed out"]}
"""Workflow tasks that did not complete stand out from the grey of those that did."""
_ENVELOPE_COLOUR = "#DCE4EE"
_ENVELOPE_EDGE = "#7F93AB"
_OTHER_COLOUR = "#BCBD22"
_MIN_WIDTH_SHARE = 0.004


def _colour(mapping: dict[str, str], key: object) -> str:
    return mapping.get(str(key), _OTHER_COLOUR)


def _canvas(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.subplots()


def _seconds(times: pd.Series, origin: pd.Timestamp | pd.Series) -> np.ndarray:
    """Seconds from ``origin`` (one time, or one per row) to each of ``times``."""
    return (times - origin).dt.total_seconds().to_numpy()


def _second(time: pd.Timestamp, origin: pd.Timestamp) -> float:
    """Seconds from ``origin`` to ``time``."""
    return float((time - origin).total_seconds())


def _check_attempts(attempts: pd.DataFrame) -> None:
    if not isinstance(attempts, pd.DataFrame):
        raise InvalidArgumentError(f"attempts must be the table of attempts_frame(), not {type(attempts).__name__}")
    missing = set(ATTEMPT_COLUMNS) - set(attempts.columns)
    if missing:
        raise InvalidArgumentError(f"the attempts table lacks {sorted(missing)}: build it with attempts_frame(records, histories)")


def _visible(widths: np.ndarray | float, extent: float) -> np.ndarray:
    """Widths of at least 0.4 % of the axis: an attempt of a millisecond still shows."""
    return np.maximum(widths, extent * _MIN_WIDTH_SHARE)


def timeline_chart(
    history: WorkflowHistory,
    attempts: pd.DataFrame | None = None,
    *,
    ax: Axes | None = None,
) -> Figure:
    """One payment over time: its workflow tasks, each activity, each attempt, how it ended.

    Each activity is a light span from scheduled to closed. On it, each attempt from the
    attempt log is a bar coloured by outcome, a failed attempt marked with a cross.
    Without the attempt log, only the last attempt is known (the history keeps no other)
    and the span says how many came before it.

    Args:
        history: One payment's history, from a real-time server (the attempt log's
            wall-clock times are compared with it).
        attempts: The table of :func:`payments_lab.history.attempts_frame`; the rows of
            this run are used.
        ax: Axes to draw into; a new figure by default.

    Raises:
        TypeError: ``history`` is not one history (a list of them, say).
        ValueError: the history is empty, or the attempts table is not one.
    """
    if not isinstance(history, WorkflowHistory):
        raise InvalidArgumentError(
            f"timeline_chart draws one payment's history, got {type(history).__name__}: pass one "
            "(`histories[0]`), or draw many side by side with swimlanes_chart(histories)"
        )
    if not history.events:
        raise InvalidArgumentError(f"the history of {history.workflow_id!r} holds no events")
    if attempts is not None:
        _check_attempts(attempts)
    spans = activity_spans(history)
    tasks = workflow_task_spans(history)
    payment = payments_frame(history).iloc[0]
    origin = payment["started_at"]
    # A running workflow is drawn up to now: its last event may be seconds old.
    end = payment["closed_at"] if pd.notna(payment["closed_at"]) else pd.Timestamp.now(tz="UTC")
    run_attempts = None
    if attempts is not None:
        run_attempts = attempts[(attempts["workflow_id"] == history.workflow_id) & (attempts["run_id"] == payment["run_id"])]

    labels = ["workflow tasks"]
    seen: dict[str, int] = {}
    for step in spans["step"]:
        seen[step] = seen.get(step, 0) + 1
        labels.append(step if seen[step] == 1 else f"{step} #{seen[step]}")
    figure, ax = _canvas(ax, (11, 1.6 + 0.75 * len(labels)))

    task_closed = tasks["closed_at"].fillna(end)
    bars = ax.barh(
        np.zeros(len(tasks)),
        _seconds(task_closed, origin) - _seconds(tasks["scheduled_at"], origin),
        left=_seconds(tasks["scheduled_at"], origin),
        height=0.5,
        color=[_WORKFLOW_TASK_COLOURS.get(o, _WORKFLOW_TASK_COLOUR) for o in tasks["outcome"]],
        edgecolor=[_WORKFLOW_TASK_COLOURS.get(o, _WORKFLOW_TASK_COLOUR) for o in tasks["outcome"]],
    )
    for bar in bars:
        bar.set_gid("workflow-task")
    # A task whose code failed (lesson 09) or that no worker finished in time: marked as failed attempts are.
    unfinished = tasks["outcome"].isin(["failed", "timed out"]).to_numpy()
    task_failed_x = list(_seconds(task_closed, origin)[unfinished])

    extent = max(_second(end, origin), 1e-3)
    failed_x: list[float] = list(task_failed_x)
    failed_y: list[float] = [0.0] * len(task_failed_x)
    shown_outcomes: set[str] = set()
    ordinal: dict[str, int] = {}
    for row, span in enumerate(spans.itertuples(index=False), start=1):
        ordinal[span.activity_type] = ordinal.get(span.activity_type, 0) + 1
        closed = span.closed_at if pd.notna(span.closed_at) else end
        scheduled = _second(span.scheduled_at, origin)
        envelope = ax.barh(
            row, _second(closed, origin) - scheduled, left=scheduled, height=0.7,
            color=_ENVELOPE_COLOUR, edgecolor=_ENVELOPE_EDGE, linewidth=0.8,
        )
        envelope[0].set_gid("activity")
        logged = None
        if run_attempts is not None:
            logged = run_attempts[
                (run_attempts["activity_type"] == span.activity_type) & (run_attempts["execution"] == ordinal[span.activity_type])
            ]
        if logged is not None and len(logged):
            # An attempt still "running" in the log after a later attempt started, or after its
            # activity closed, was lost with its worker: it ends where its successor begins.
            successor = logged["started_at"].shift(-1)
            lost = (logged["outcome"] == "running") & (successor.notna() | pd.notna(span.closed_at))
            attempt_outcomes = logged["outcome"].mask(lost, "lost")
            ended = logged["ended_at"].fillna(successor).fillna(closed)
            starts = _seconds(logged["started_at"], origin)
            bars = ax.barh(
                np.full(len(logged), row), _visible(_seconds(ended, origin) - starts, extent), left=starts, height=0.38,
                color=[_colour(OUTCOME_COLOURS, o) for o in attempt_outcomes],
            )
            for bar in bars:
                bar.set_gid("attempt")
            if len(logged) > 1:
                for attempt, x in zip(logged["attempt"], starts):
                    ax.text(x, row - 0.4, f"#{attempt}", ha="left", va="bottom", fontsize=8, color="#333")
            failed = attempt_outcomes.isin(["failed", "cancelled", "lost", "timed out"]).to_numpy()
            failed_x += list(_seconds(ended, origin)[failed])
            failed_y += [row] * int(failed.sum())
            shown_outcomes.update(attempt_outcomes)
        elif pd.notna(span.started_at):
            started = _second(span.started_at, origin)
            bar = ax.barh(
                row, _visible(_second(closed, origin) - started, extent), left=started, height=0.38,
                color=_colour(OUTCOME_COLOURS, span.outcome),
            )
            bar[0].set_gid("attempt")
            shown_outcomes.add(span.outcome)
            if span.attempt > 1:
                ax.text(
                    started, row - 0.4, f"attempt {span.attempt}; {plural(span.attempt - 1, 'earlier attempt')} not in the history",
                    ha="right", va="bottom", fontsize=8, color="#333",
                )
    if failed_x:
        ax.plot(failed_x, failed_y, "X", color=OUTCOME_COLOURS["failed"], markersize=10, markeredgecolor="white",
                linestyle="none", gid="failed-attempts")

    payment_status = None if pd.isna(payment["payment_status"]) else payment["payment_status"]
    workflow_status = payment["workflow_status"]
    status = outcome(payment_status, workflow_status)
    closing = _second(end, origin)
    ax.axvline(closing, color=_colour(STATUS_COLOURS, status), linestyle="--", linewidth=1.2, gid="workflow-closed")
    if workflow_status == "running":
        ending = f"still running after {closing:.2f} s"
    elif payment_status is None:  # a workflow that is no payment
        ending = f"workflow {workflow_status} after {closing:.2f} s"
    elif status != payment_status:
        ending = f"workflow {workflow_status} after {closing:.2f} s, the payment left {payment_status}"
    else:
        ending = f"payment {status} (workflow {workflow_status}) after {closing:.2f} s"
    ax.annotate(
        ending, xy=(closing, -0.55), xytext=(-4, 0), textcoords="offset points",
        ha="right", va="center", fontsize=9, fontweight="bold", color=_colour(STATUS_COLOURS, status), gid="outcome",
    )

    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.4, -1.0)
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    ax.set_xlabel("seconds since the workflow started")
    ax.set_ylabel("step")
    ax.set_title(f"Timeline of {history.workflow_id}")
    ax.grid(axis="x", alpha=0.3)
    attempt_kinds = sorted(shown_outcomes or set(spans["outcome"]))
    handles: list[Patch | Line2D] = [
        Patch(facecolor=_WORKFLOW_TASK_COLOUR, label="workflow task"),
        *(Patch(facecolor=_WORKFLOW_TASK_COLOURS[o], label=f"workflow task {o}") for o in _WORKFLOW_TASK_COLOURS if (tasks["outcome"] == o).any()),
        Patch(facecolor=_ENVELOPE_COLOUR, edgecolor=_ENVELOPE_EDGE, label="activity: scheduled → closed"),
        *(Patch(facecolor=_colour(OUTCOME_COLOURS, o), label=f"attempt {o}") for o in attempt_kinds),
    ]
    if failed_x:
        failed = "failed attempt or workflow task" if task_failed_x and len(failed_x) > len(task_failed_x) else (
            "failed workflow task" if task_failed_x else "failed attempt")
        handles.append(Line2D([], [], marker="X", color=OUTCOME_COLOURS["failed"], linestyle="none", markersize=9, label=failed))
    handles.append(Line2D([], [], color=_colour(STATUS_COLOURS, status), linestyle="--", label=f"workflow closed ({status})"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return figure


def retry_chart(
    attempts: pd.DataFrame,
    payment_id: str,
    activity: str = "charge",
    *,
    policy: RetryPolicy | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Each attempt of one activity against time, with when the retry policy made each one due.

    The top row is the attempt log: one bar per attempt, coloured by outcome, each gap
    labelled with how long it was and how long the policy asked for. The bottom row
    places each attempt where the policy puts it: its configured wait after the end of
    the attempt before. The title quotes the history's final ``attempt``.

    Args:
        attempts: The table of :func:`payments_lab.history.attempts_frame`, built with
            the histories (for their retry policies), or with ``policy`` given.
        payment_id: The payment (its workflow id works too).
        activity: The step (``"charge"``) or activity type (``"charge_payment"``).
        policy: The retry policy to draw; by default each activity's own, from its history.
        ax: Axes to draw into; a new figure by default.

    Raises:
        ValueError: no attempt of that activity for that payment, or no retry policy known.
    """
    _check_attempts(attempts)
    mine = attempts[
        ((attempts["payment_id"] == payment_id) | (attempts["workflow_id"] == payment_id))
        & ((attempts["step"] == activity) | (attempts["activity_type"] == activity))
    ]
    if mine.empty:
        payments = sorted(set(attempts["payment_id"]))
        steps = sorted(set(attempts.loc[attempts["payment_id"] == payment_id, "step"]))
        raise InvalidArgumentError(
            f"no {activity!r} attempt of payment {payment_id!r} in the attempts table, which holds "
            + (f"that payment's steps {steps}" if steps else f"other payments, e.g. {payments[:3]}" if payments else "no attempt")
            + ": build it with attempts_frame(lab.repository.attempts(), histories) once the payment has run"
        )
    mine = mine[mine["execution"] == mine["execution"].min()].sort_values("attempt")
    if policy is not None:
        configured = [pd.Timedelta(retry_delay(policy, int(n))) for n in mine["attempt"]]
    elif mine["configured_gap"].notna().all():
        configured = list(mine["configured_gap"])
    else:
        raise InvalidArgumentError(
            "the attempts table does not know the retry policy: build it with "
            "attempts_frame(records, histories) or pass policy="
        )
    step = mine["step"].iloc[0]
    payment = mine["payment_id"].iloc[0]
    figure, ax = _canvas(ax, (11, 3.8))
    origin = mine["started_at"].iloc[0]
    starts = _seconds(mine["started_at"], origin)
    ends = _seconds(mine["ended_at"].fillna(mine["started_at"]), origin)
    observed_row, policy_row = 1.0, 0.0
    due = np.array([starts[0]] + [ends[i - 1] + configured[i].total_seconds() for i in range(1, len(mine))])
    extent = max(float(ends.max()), float(due.max()), 1e-3)
    colours = [_colour(OUTCOME_COLOURS, o) for o in mine["outcome"]]

    bars = ax.barh(
        np.full(len(mine), observed_row), _visible(ends - starts, extent), left=starts, height=0.3, color=colours
    )
    for bar in bars:
        bar.set_gid("attempt")
    ax.scatter(starts, np.full(len(starts), observed_row), c=colours, marker="o", s=50, edgecolors="black",
               zorder=3, gid="observed-attempts")

    ax.plot(due, np.full(len(due), policy_row), "D", color="#444", markerfacecolor="white", markersize=7,
            linestyle="none", gid="configured-attempts")
    for attempt, x_due, x_start in zip(mine["attempt"], due, starts):
        ax.plot([x_due, x_start], [policy_row, observed_row], color="#999", linestyle=":", linewidth=1)
        ax.text(x_start, observed_row + 0.22, f"#{attempt}", ha="center", va="bottom", fontsize=9)
    for i in range(1, len(mine)):
        waited = starts[i] - ends[i - 1]
        ax.annotate(
            "", xy=(starts[i], observed_row - 0.3), xytext=(ends[i - 1], observed_row - 0.3),
            arrowprops={"arrowstyle": "<->", "color": "#555", "linewidth": 0.8},
        )
        ax.text(
            (starts[i] + ends[i - 1]) / 2, observed_row - 0.36,
            f"waited {waited:.2f} s\npolicy {configured[i].total_seconds():.2f} s",
            ha="center", va="top", fontsize=8, color="#333", gid="gap-label",
        )

    final = mine["final_attempt"].dropna()
    history_note = f"; the history's final attempt: {int(final.iloc[0])}" if len(final) else ""
    ax.set_title(f"{step} of payment {payment}: {plural(len(mine), 'attempt')} in the attempt log{history_note}")
    ax.set_yticks([policy_row, observed_row], ["due by the retry policy", "attempt log"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlim(-0.04 * extent, 1.06 * extent)
    ax.set_xlabel("seconds since the first attempt started")
    ax.set_ylabel("attempts")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        *(
            Line2D([], [], marker="o", color="none", markerfacecolor=_colour(OUTCOME_COLOURS, o), markeredgecolor="black",
                   markersize=8, label=f"attempt {o}")
            for o in sorted(set(mine["outcome"]))
        ),
        Line2D([], [], marker="D", color="#444", markerfacecolor="white", linestyle="none",
               label="due: previous end + configured wait"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return figure


def swimlanes_chart(
    histories: WorkflowHistory | Iterable[WorkflowHistory],
    attempts: pd.DataFrame | None = None,
    *,
    align: Literal["start", "clock"] = "start",
    limit: int = 40,
    ax: Axes | None = None,
) -> Figure:
    """Many payments side by side, one lane each: their activities coloured by step, how each ended.

    Args:
        histories: The payments' histories; the first ``limit`` are drawn.
        attempts: The table of :func:`payments_lab.history.attempts_frame`, to mark every
            failed attempt; without it, an activity that needed retries is marked once.
        align: ``"start"`` lines the lanes up at each payment's start; ``"clock"`` keeps
            them on one clock, to show how they overlapped.
        limit: At most this many lanes.
        ax: Axes to draw into; a new figure by default.

    Raises:
        ValueError: no history, ``limit`` below 1, or an unknown ``align``.
    """
    if align not in ("start", "clock"):
        raise InvalidArgumentError(f"align must be 'start' or 'clock', got {align!r}")
    whole_number("limit", limit, minimum=1)
    every = [h for h in as_histories(histories) if h.events]
    if not every:
        raise InvalidArgumentError(
            "no history to draw: pass the histories of payments that ran, e.g. `await fetch_histories(lab.client, query=lab.service.visibility_query())`"
        )
    if attempts is not None:
        _check_attempts(attempts)
    shown = every[:limit]
    payments = payments_frame(shown)
    spans = activity_spans(shown)
    lane_of = {(w, r): i for i, (w, r) in enumerate(zip(payments["workflow_id"], payments["run_id"]))}
    last_event = {
        (h.workflow_id, r): pd.Timestamp(h.events[-1].event_time.ToNanoseconds(), unit="ns", tz="UTC")
        for h, r in zip(shown, payments["run_id"])
    }
    first = payments["started_at"].min()
    origins = {key: (start if align == "start" else first) for key, start in zip(lane_of, payments["started_at"])}
    figure, ax = _canvas(ax, (11, max(3.5, 1.8 + 0.22 * len(shown))))

    keys = list(zip(spans["workflow_id"], spans["run_id"]))
    lanes = np.array([lane_of[k] for k in keys])
    origin = pd.Series([origins[k] for k in keys], index=spans.index)
    closed = spans["closed_at"].fillna(pd.Series([last_event[k] for k in keys], index=spans.index))
    left = _seconds(spans["scheduled_at"], origin) if len(spans) else np.array([])
    width = _seconds(closed, origin) - left if len(spans) else np.array([])
    width = _visible(width, float(np.max(left + width, initial=1e-3)))
    bars = ax.barh(lanes, width, left=left, height=0.6, color=[_colour(STEP_COLOURS, s) for s in spans["step"]])
    for bar in bars:
        bar.set_gid("activity")

    marker_label = None
    if attempts is not None:
        lost = attempts[attempts["outcome"].isin(["failed", "cancelled", "timed out"])]
        lost = lost[[(w, r) in lane_of for w, r in zip(lost["workflow_id"], lost["run_id"])]]
        if len(lost):
            lost_keys = list(zip(lost["workflow_id"], lost["run_id"]))
            x = _seconds(lost["ended_at"].fillna(lost["started_at"]), pd.Series([origins[k] for k in lost_keys], index=lost.index))
            ax.plot(x, [lane_of[k] for k in lost_keys], "x", color="black", markersize=6, linestyle="none",
                    gid="failed-attempts")
            marker_label = ("x", "failed attempt (attempt log)")
    else:
        retried = spans["attempt"].to_numpy() > 1
        if retried.any():
            x = _seconds(spans["started_at"][retried], origin[retried])
            ax.plot(x, lanes[retried], "v", color="black", markersize=5, linestyle="none", gid="retried-activities")
            marker_label = ("v", "last attempt of a retried activity")

    statuses = outcomes(payments)
    ends = [
        _second(c if pd.notna(c) else last_event[k], origins[k])
        for c, k in zip(payments["closed_at"], lane_of)
    ]
    ax.scatter(ends, range(len(payments)), c=[_colour(STATUS_COLOURS, s) for s in statuses], s=36,
               edgecolors="black", linewidths=0.5, zorder=3, gid="outcomes")

    ax.set_yticks(range(len(payments)), list(payments["payment_id"]), fontsize=max(5, min(9, 320 / len(payments))))
    ax.set_ylim(len(payments) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since each payment started" if align == "start" else "seconds since the first payment started")
    ax.set_ylabel("payment")
    note = f" (the first {len(shown)} of {len(every)})" if len(every) > len(shown) else ""
    ax.set_title(f"{plural(len(shown), 'payment')} side by side{note}")
    ax.grid(axis="x", alpha=0.3)
    steps = [s for s in STEP_ORDER if s in set(spans["step"])] + sorted(set(spans["step"]) - set(STEP_ORDER))
    handles: list[Patch | Line2D] = [Patch(facecolor=_colour(STEP_COLOURS, s), label=s) for s in steps]
    handles += [
        Line2D([], [], marker="o", color="none", markerfacecolor=_colour(STATUS_COLOURS, s), markeredgecolor="black",
               label=f"ended {s}")
        for s in sorted(set(statuses))
    ]
    if marker_label:
        handles.append(Line2D([], [], marker=marker_label[0], color="black", linestyle="none", label=marker_label[1]))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return figure


def fleet_dashboard(summary: FleetSummary | WorkflowHistory | Iterable[WorkflowHistory]) -> Figure:
    """Many payments at a glance: outcomes, end-to-end latency, attempts per step.

    Args:
        summary: A :class:`payments_lab.history.FleetSummary`, or the histories to summarise.

    Raises:
        ValueError: there is no payment to show.
    """
    if not isinstance(summary, FleetSummary):
        summary = fleet_summary(as_histories(summary))
    if summary.total == 0:
        raise InvalidArgumentError(
            "no payment to show: pass the histories of payments that ran, e.g. `await fetch_histories(lab.client, query=lab.service.visibility_query())`"
        )
    figure = Figure(figsize=(15, 4.8), layout="constrained")
    outcomes_ax, latency_ax, attempts_ax = figure.subplots(1, 3)

    counts = summary.status_counts
    bars = outcomes_ax.bar(
        [str(s) for s in counts.index], counts.to_numpy(), color=[_colour(STATUS_COLOURS, s) for s in counts.index]
    )
    outcomes_ax.bar_label(bars, padding=2)
    outcomes_ax.set_title("Outcomes")
    outcomes_ax.set_xlabel("payment status")
    outcomes_ax.set_ylabel("payments")
    outcomes_ax.margins(y=0.15)

    seconds = summary.payments["latency"].dropna().dt.total_seconds()
    if len(seconds):
        latency_ax.hist(seconds, bins=max(5, min(40, len(seconds) // 5)), color="#8DA0CB", edgecolor="white")
        for name, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            value = summary.latency[name]
            latency_ax.axvline(value, color="#333", linestyle=style, linewidth=1.3, label=f"{name} {value:.2f} s",
                               gid="percentile")
        latency_ax.legend(fontsize=9)
    else:
        latency_ax.text(0.5, 0.5, "no payment has ended yet", ha="center", va="center", transform=latency_ax.transAxes)
    latency_ax.set_title("End-to-end latency")
    latency_ax.set_xlabel("seconds from start to end")
    latency_ax.set_ylabel("payments")

    table = summary.attempts_per_step
    if len(table.columns):
        colours = _attempt_colours(len(table.columns))
        bottom = np.zeros(len(table))
        for colour, attempts in zip(colours, table.columns):
            values = table[attempts].to_numpy()
            attempts_ax.bar(list(table.index), values, bottom=bottom, color=colour, edgecolor="white",
                            label=plural(int(attempts), "attempt"))
            bottom += values
        attempts_ax.legend(title="the step took", fontsize=9)
        attempts_ax.margins(y=0.3)
    attempts_ax.set_title("Attempts per step")
    attempts_ax.set_xlabel("step")
    attempts_ax.set_ylabel("payments")

    described = ", ".join(f"{n} {s}" for s, n in counts.items())
    figure.suptitle(f"{plural(summary.total, 'payment')}: {described}", fontsize=13)
    return figure


def _attempt_colours(count: int) -> Sequence[str]:
    """Green for one attempt, then warmer and warmer for each retry."""
    palette = ["#66C2A5", "#FDD867", "#FC8D62", "#E34A33", "#B30000", "#7F0000"]
    return [palette[min(i, len(palette) - 1)] for i in range(count)]

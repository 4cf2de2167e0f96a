"""Many payments at a glance: status counts, latency percentiles, attempts per step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from temporalio.client import WorkflowHistory

from payments_lab.domain import PaymentStatus
from payments_lab.errors import InvalidArgumentError
from payments_lab.history.payments import PAYMENT_COLUMNS, STEP_ORDER, outcomes, payments_frame

LATENCY_PERCENTILES = (0.5, 0.9, 0.95, 0.99)
"""Percentiles of :attr:`FleetSummary.latency`."""


@dataclass(frozen=True)
class FleetSummary:
    """Many payments at a glance: how they ended, how long they took, how often steps retried."""

    payments: pd.DataFrame
    """One row per payment, see :func:`payments_frame`."""
    status_counts: pd.Series
    """Payments per payment status, most frequent first (the workflow status where no payment status was set)."""
    latency: pd.Series
    """End-to-end seconds of the payments that ended: ``p50``, ``p90``, ``p95``, ``p99``, ``max``, ``mean``."""
    attempts_per_step: pd.DataFrame
    """Payments per step (rows) and number of attempts that step took (columns 1, 2, 3…)."""

    @property
    def total(self) -> int:
        """Number of payments."""
        return len(self.payments)

    @property
    def retried(self) -> pd.Series:
        """Per step, the payments whose step needed more than one attempt."""
        return self.attempts_per_step.loc[:, self.attempts_per_step.columns > 1].sum(axis=1)

    def __str__(self) -> str:
        statuses = ", ".join(f"{count} {status}" for status, count in self.status_counts.items())
        lines = [f"{self.total} payments: {statuses or 'none'}"]
        if len(self.latency.dropna()):
            lines.append(
                "latency: " + ", ".join(f"{name} {value:.2f} s" for name, value in self.latency.items())
            )
        for step, row in self.attempts_per_step.iterrows():
            counts = ", ".join(f"{n} × {attempts}" for attempts, n in row.items() if n)
            lines.append(f"{step}: {counts} (payments × attempts)")
        return "\n".join(lines)


def fleet_summary(histories: WorkflowHistory | Iterable[WorkflowHistory] | pd.DataFrame) -> FleetSummary:
    """Status counts, latency percentiles and attempts per step over many payments.

    Args:
        histories: The payments' histories, or a table from :func:`payments_frame`.
    """
    payments = histories if isinstance(histories, pd.DataFrame) else payments_frame(histories)
    missing = set(PAYMENT_COLUMNS) - set(payments.columns)
    if missing:
        raise InvalidArgumentError(f"the payments table lacks {sorted(missing)}: build it with payments_frame(histories)")
    counts = outcomes(payments).value_counts()
    # Ties in the order of the payment life-cycle, so the same fleet always reads the same.
    known = [s.value for s in PaymentStatus]
    order = sorted(counts.index, key=lambda s: (-counts[s], known.index(s) if s in known else len(known), s))
    status_counts = counts.reindex(order).rename("payments")
    status_counts.index.name = "status"

    seconds = payments["latency"].dropna().dt.total_seconds()
    names = [f"p{round(q * 100)}" for q in LATENCY_PERCENTILES] + ["max", "mean"]
    if len(seconds):
        values = [*seconds.quantile(list(LATENCY_PERCENTILES)).tolist(), seconds.max(), seconds.mean()]
    else:
        values = [np.nan] * len(names)
    latency = pd.Series(values, index=names, name="latency_s", dtype=float)

    per_step = {}
    for step in STEP_ORDER:
        counts = payments[f"{step}_attempts"].dropna()
        counts = counts[counts > 0].astype(np.int64)
        if len(counts):
            per_step[step] = counts.value_counts()
    attempts = pd.DataFrame(per_step).T.fillna(0).astype(np.int64) if per_step else pd.DataFrame(dtype=np.int64)
    attempts = attempts.reindex(columns=sorted(attempts.columns))
    attempts.index.name = "step"
    attempts.columns.name = "attempts"
    return FleetSummary(payments=payments, status_counts=status_counts, latency=latency, attempts_per_step=attempts)

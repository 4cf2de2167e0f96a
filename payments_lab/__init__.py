"""payments-lab: a Jupyter teaching kit for Temporal durable workflows, built around a payment.

The names below are imported lazily: importing the package costs nothing, which keeps
Temporal's workflow sandbox (it re-imports the package of every workflow) and the command
line quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "open_lab": "payments_lab.lab",
    "Lab": "payments_lab.lab",
    "PaymentRequest": "payments_lab.domain",
    "PaymentResult": "payments_lab.domain",
    "PaymentStatus": "payments_lab.domain",
    "Payment": "payments_lab.domain",
    "FaultPlan": "payments_lab.faults",
    "FaultProfile": "payments_lab.faults",
    "StepFaults": "payments_lab.faults",
    "SEED_CHAPTER": "payments_lab.faults",
    "NO_FAULTS": "payments_lab.faults",
    "PaymentOptions": "payments_lab.messages",
    "PaymentWorkflow": "payments_lab.workflows",
    "PaymentService": "payments_lab.service",
    "PaymentRepository": "payments_lab.repository",
    "EmbeddedServer": "payments_lab.server",
    "connect": "payments_lab.client",
    "FleetPlan": "payments_lab.fleet",
    "run_fleet": "payments_lab.fleet",
    "fetch_histories": "payments_lab.history",
    "events_frame": "payments_lab.history",
    "activity_spans": "payments_lab.history",
    "attempts_frame": "payments_lab.history",
    "fleet_summary": "payments_lab.history",
    "timeline_chart": "payments_lab.charts",
    "retry_chart": "payments_lab.charts",
    "swimlanes_chart": "payments_lab.charts",
    "fleet_dashboard": "payments_lab.charts",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from payments_lab.charts import fleet_dashboard, retry_chart, swimlanes_chart, timeline_chart
    from payments_lab.client import connect
    from payments_lab.domain import Payment, PaymentRequest, PaymentResult, PaymentStatus
    from payments_lab.faults import NO_FAULTS, SEED_CHAPTER, FaultPlan, FaultProfile, StepFaults
    from payments_lab.fleet import FleetPlan, run_fleet
    from payments_lab.history import activity_spans, attempts_frame, events_frame, fetch_histories, fleet_summary
    from payments_lab.lab import Lab, open_lab
    from payments_lab.messages import PaymentOptions
    from payments_lab.repository import PaymentRepository
    from payments_lab.server import EmbeddedServer
    from payments_lab.service import PaymentService
    from payments_lab.workflows import PaymentWorkflow


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'payments_lab' has no attribute {name!r}")

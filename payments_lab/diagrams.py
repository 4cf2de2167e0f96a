"""Drawings of how the kit fits together, for the lessons (matplotlib, so GitHub shows them too)."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# Boxes on a 12 x 8 canvas: (left, bottom, width, height, label, colour).
_BOXES: dict[str, tuple[float, float, float, float, str, str]] = {
    "client": (0.3, 6.2, 3.4, 1.3, "Client: notebook or CLI\nPaymentRequest\n(amount as Decimal)", "#dbe9f6"),
    "server": (7.0, 6.2, 4.7, 1.3, "Temporal server\nevent history · timers · retries\nvisibility (search attributes)", "#fde2c8"),
    "worker": (7.0, 4.2, 4.7, 1.1, "Worker: PaymentWorkflow\n(deterministic orchestration)", "#e3f1dc"),
    "validate": (0.3, 2.2, 3.4, 1.1, "1 · validate_payment\nrules, known organization", "#f3f3f3"),
    "charge": (4.3, 2.2, 3.4, 1.1, "2 · charge_payment\nidempotent by payment id", "#f3f3f3"),
    "notify": (8.3, 2.2, 3.4, 1.1, "3 · send_notification\nemail + webhook", "#f3f3f3"),
    "repository": (0.3, 0.3, 11.4, 1.1, "PaymentRepository: payments · processor ledger · notifications · every attempt", "#efe3f6"),
}


def _box(ax: Axes, left: float, bottom: float, width: float, height: float, label: str, colour: str) -> None:
    ax.add_patch(FancyBboxPatch((left, bottom), width, height, boxstyle="round,pad=0.04", facecolor=colour, edgecolor="#555"))
    ax.text(left + width / 2, bottom + height / 2, label, ha="center", va="center", fontsize=10)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str = "") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#333", linewidth=1.2))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, label, ha="center", fontsize=9, color="#333")


def draw_payment_flow() -> Figure:
    """The seed's flow: a request becomes a workflow that runs validate, charge and notify."""
    figure = Figure(figsize=(11, 7.2))
    ax = figure.subplots()
    for box in _BOXES.values():
        _box(ax, *box)
    _arrow(ax, (3.75, 6.85), (6.95, 6.85), "start workflow payment-<id>")
    _arrow(ax, (6.95, 6.5), (3.75, 6.5), "result, query, describe")
    _arrow(ax, (9.35, 6.15), (9.35, 5.35), "")
    ax.text(9.5, 5.7, "workflow and activity tasks", fontsize=9, color="#333")
    for name in ("validate", "charge", "notify"):
        left, bottom, width, height, _, _ = _BOXES[name]
        _arrow(ax, (9.35, 4.15), (left + width / 2, bottom + height + 0.05))
        _arrow(ax, (left + width / 2, bottom - 0.05), (left + width / 2, 1.45))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 7.8)
    ax.axis("off")
    ax.set_title("A payment in payments-lab: the workflow orchestrates, the activities do the work", fontsize=12)
    return figure

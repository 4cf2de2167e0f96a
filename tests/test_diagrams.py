"""Tests of the lesson drawings."""

from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from payments_lab.diagrams import draw_payment_flow


def test_the_payment_flow_shows_every_part_and_step() -> None:
    figure = draw_payment_flow()
    ax = figure.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert len(boxes) == 7 and len(arrows) == 9
    for part in ("Temporal server", "Worker", "validate_payment", "charge_payment", "send_notification", "PaymentRepository"):
        assert part in texts
    assert "workflow orchestrates" in ax.get_title()

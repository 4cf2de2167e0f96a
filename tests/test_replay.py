"""Histories recorded with earlier workflow code replay with today's: running payments survive a deploy.

The histories in ``tests/histories/`` were recorded once (``tests/histories/record.py``), one
per path through :class:`PaymentWorkflow` and :class:`ConfirmedPaymentWorkflow`. A change
that issues other commands, or the same ones in another order, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from payments_lab.confirmation import ConfirmedPaymentWorkflow
from payments_lab.evolution import replay
from payments_lab.history import load_histories
from payments_lab.workflows import PaymentWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"


@pytest.mark.parametrize(("folder", "workflow_class"), [("payment", PaymentWorkflow), ("confirmed", ConfirmedPaymentWorkflow)])
async def test_recorded_histories_replay_with_todays_code(folder: str, workflow_class: type) -> None:
    histories = load_histories(HISTORIES / folder)
    assert len(histories) >= 10, "every recorded path is there"
    outcomes = await replay(histories, workflow_class)
    assert [(o.workflow_id, o.error) for o in outcomes if not o.ok] == []

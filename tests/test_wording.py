"""The words the kit writes in several places: one wording each, the same in workflows and tables."""

from __future__ import annotations

import subprocess
import sys

from temporalio.api.enums.v1 import RetryState as HistoryRetryState
from temporalio.exceptions import RetryState

from payments_lab.wording import plural, retry_state_words


def test_retry_states_read_the_same_from_the_sdk_and_from_a_history() -> None:
    assert retry_state_words(RetryState.MAXIMUM_ATTEMPTS_REACHED) == "maximum attempts reached"
    assert retry_state_words(HistoryRetryState.RETRY_STATE_NON_RETRYABLE_FAILURE) == "non retryable failure"
    assert retry_state_words(99) == "retry state 99", "a state from a newer server is still shown"


def test_plurals() -> None:
    assert [plural(n, "charge") for n in (0, 1, 2)] == ["0 charges", "1 charge", "2 charges"]


def test_the_workflow_sandbox_can_import_it_without_pandas() -> None:
    probe = "import sys, payments_lab.wording; print('pandas' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

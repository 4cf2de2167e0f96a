"""Test-wide set-up for pytest (tests/) and nbval (notebooks/): isolation, and a clean exit."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

# Never pick up a developer's own lab session or Temporal configuration.
os.environ["PAYMENTS_LAB_STATE_DIR"] = tempfile.mkdtemp(prefix="payments-lab-test-state-")
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="payments-lab-test-config-")
for _name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"):
    os.environ.pop(_name, None)


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without the interpreter's teardown, once pytest has reported everything.

    Temporal's Rust core threads can abort CPython's finalization at random
    (temporalio/sdk-python#300), which would turn a green run into exit code 134.
    """
    if _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])

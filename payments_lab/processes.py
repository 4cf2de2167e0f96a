"""Child processes that die with their parent: no orphan server or worker, even after ``kill -9``."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil

from payments_lab.errors import PaymentsLabError

T = TypeVar("T")


class ProcessError(PaymentsLabError, RuntimeError):
    """A process the kit started (a server, a worker, simulated learners) did not start or failed; its log is quoted."""


# Linux: the child asks the kernel to SIGKILL it when its parent dies, then becomes the real
# program (the request survives exec). Done in a tiny Python launcher rather than in
# preexec_fn, which is unsafe in a multi-threaded parent such as a Jupyter kernel.
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the parent is already gone
os.execv(sys.argv[2], sys.argv[2:])
"""

# Elsewhere (macOS, Windows) no kernel does that: a Python watchdog stays between the parent and
# the program, kills the program once the parent is gone (psutil tells a dead parent from a new
# process that reused its pid), and passes a stop request on.
_WATCHDOG = """
import os, signal, subprocess, sys
import psutil
try:
    parent = psutil.Process(int(sys.argv[1]))
except psutil.NoSuchProcess:
    sys.exit(0)  # the parent is already gone
program = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=sys.stdout, stderr=sys.stderr)
def pass_on(signum, frame):
    if program.poll() is None:
        program.send_signal(signum)
if sys.platform == "win32":
    signal.signal(signal.SIGBREAK, lambda signum, frame: None)  # the program got the same Ctrl-Break
else:
    signal.signal(signal.SIGINT, pass_on)
    signal.signal(signal.SIGTERM, pass_on)
def parent_gone():
    # A parent killed and not yet reaped (its own parent, e.g. Jupyter's kernel manager, waits
    # later) is a zombie, which psutil still calls running.
    try:
        return not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
while program.poll() is None:
    if parent_gone():
        program.kill()
        break
    try:
        program.wait(0.2)
    except subprocess.TimeoutExpired:
        pass
code = program.wait()
if code < 0:  # ended by a signal: end the same way, so that the parent reads the same exit code
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""

WATCHDOG_ENV = "PAYMENTS_LAB_CHILD_WATCHDOG"
"""Set to ``1`` to tie children to their parent with the watchdog on Linux too (the tests do, to run
the way macOS and Windows run)."""


def _uses_watchdog() -> bool:
    return not sys.platform.startswith("linux") or os.environ.get(WATCHDOG_ENV) == "1"


def spawn(
    args: Sequence[str | os.PathLike[str]],
    *,
    log: IO[bytes] | int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` as a child that is killed when this process dies, however it dies.

    On Linux the child is the program itself, which the kernel kills with its parent
    (``PR_SET_PDEATHSIG``). Elsewhere a small watchdog process runs the program, kills it once
    the parent is gone and passes :func:`stop` on; :func:`kill` ends both.

    The child gets its own session (a process group of its own on Windows), so a Ctrl-C or a
    kernel interrupt aimed at this process does not reach it; stop it with :func:`stop`. Its
    output goes to ``log``, never to this process's own stdout and stderr (a notebook would
    show it anywhere).
    """
    argv = [os.fspath(a) for a in args]
    watchdog = _uses_watchdog()
    argv = [sys.executable, "-c", _WATCHDOG if watchdog else _LAUNCHER, str(os.getpid()), *argv]
    own_group = 0  # POSIX: start_new_session below
    if sys.platform == "win32":
        own_group = subprocess.CREATE_NEW_PROCESS_GROUP  # Windows ignores start_new_session

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            creationflags=own_group,
        )

    return start() if watchdog else _in_a_lasting_thread(start)


_spawning: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _in_a_lasting_thread(call: Callable[[], T]) -> T:
    """``call()`` in a thread that lasts as long as this process: the main thread, or one kept for it.

    ``PR_SET_PDEATHSIG`` kills a child when the *thread* that started it ends, not its process
    (prctl(2)): a server or worker started from a pool's thread (``asyncio.to_thread``, a
    ``ThreadPoolExecutor``) was killed as soon as that thread ended, its process running on.
    """
    if threading.current_thread() is threading.main_thread():
        return call()
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            # A daemon thread: never joined at exit, it ends with the process, as the children then should.
            _spawner = threading.Thread(target=_spawn_for_others, name="payments-lab child launcher", daemon=True)
            _spawner.start()
    done: Future[T] = Future()
    _spawning.put((call, done))
    return done.result()


def _spawn_for_others() -> None:
    while True:
        call, done = _spawning.get()
        try:
            done.set_result(call())
        except BaseException as error:  # noqa: BLE001 - handed back to the thread that asked
            done.set_exception(error)


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` and what it started at once, as a crash would (``kill -9``)."""
    if process.poll() is not None:
        return
    if sys.platform == "win32":
        try:
            for descendant in psutil.Process(process.pid).children(recursive=True):
                descendant.kill()
        except psutil.Error:
            pass  # ended meanwhile
        process.kill()
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the watchdog and its program
        except ProcessLookupError:
            pass
    process.wait()


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0, sig: int = signal.SIGINT) -> int | None:
    """Ask ``process`` to stop with ``sig``, kill it after ``grace`` seconds; return its exit code.

    On Windows, where only a console's Ctrl-C and Ctrl-Break can be sent, a stop is Ctrl-Break to
    the child's process group (the Temporal CLI takes it as an interrupt); without a console to
    send it through, the child is killed.
    """
    if process.poll() is None:
        try:
            if sys.platform == "win32":
                process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                process.send_signal(sig)
            process.wait(timeout=grace)
        except (subprocess.TimeoutExpired, OSError):
            kill(process)
    return process.returncode


def stop_signals() -> tuple[int, ...]:
    """The signals that ask a kit process to stop here: SIGINT and SIGTERM, and on Windows SIGBREAK
    (the Ctrl-Break that :func:`stop` sends there)."""
    if sys.platform == "win32":
        return (signal.SIGINT, signal.SIGTERM, signal.SIGBREAK)
    return (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Stop signals (:func:`stop_signals`) turned into a request that a command's main loop looks at.

    A signal handler runs between two bytecodes of the main thread, wherever it is. One that
    raised ``KeyboardInterrupt`` inside ``Popen.poll()`` left the process's wait lock taken, and
    stopping that process then waited for the lock for ever (a room that never ended after
    Ctrl-C); one that set a ``threading.Event`` deadlocked on the event's own lock when the main
    thread was inside ``Event.wait()``. Here the handler only sets an attribute, which takes no
    lock. Used as a context manager: the handlers in place before are put back on exit.
    """

    CHECK_EVERY = 0.05
    """Seconds between two looks at the request while :meth:`wait` waits."""

    def __init__(self) -> None:
        self.received = False
        """Whether a stop signal arrived."""
        self._before: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        for sig in stop_signals():
            self._before[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        self._before.clear()

    def _request(self, *_: object) -> None:
        self.received = True

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a stop signal; return whether one arrived."""
        deadline = time.monotonic() + seconds
        while not self.received and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.CHECK_EVERY))
        return self.received


def call_on_stop_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Have ``loop`` run ``callback`` when a stop signal (:func:`stop_signals`) arrives.

    Windows' event loop has no ``add_signal_handler``: there a plain signal handler hands the
    callback over to the loop.
    """
    for sig in stop_signals():
        try:
            loop.add_signal_handler(sig, callback)
        except NotImplementedError:
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(callback))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid``, or a process it started, listens on TCP ``port``; None where the system does not say.

    A port that accepts connections may belong to anything: a port found free can be taken
    before the process meant for it binds it, and then that process exits while something
    else answers (CI saw a lab connect to an HTTP server this way). Its children count
    because a watchdog (see :func:`spawn`) runs the program as its child outside Linux.
    """
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return None
    for member in family:
        try:
            sockets = member.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue  # ended meanwhile
        except psutil.AccessDenied:
            return None
        if any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets):
            return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and is not a zombie (killed, not yet reaped by its parent).

    Asked without signalling it: on Windows ``os.kill(pid, 0)`` kills.
    """
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_marked(marker: str) -> list[int]:
    """Pids of live processes (zombies aside) whose environment holds ``marker`` (Linux).

    Give a program and its children a variable no one else has (the tests and benchmarks
    use ``PAYMENTS_LAB_MARK=<random>``) to find, afterwards, any of them left running.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if marker.encode() not in Path(f"/proc/{entry}/environ").read_bytes():
                continue
            if Path(f"/proc/{entry}/stat").read_text().split(")")[-1].split()[0] == "Z":
                continue  # a zombie is already dead, only not yet reaped
        except OSError:
            continue
        found.append(int(entry))
    return found


def leftovers(marker: str, patience: float = 5.0) -> list[int]:
    """Processes still carrying ``marker`` after up to ``patience`` seconds (they may be exiting)."""
    deadline = time.monotonic() + patience
    while (found := processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


class ChildProcess:
    """A program run by the kit (a server, a worker): tied to this process, its output in a log file.

    Args:
        what: What it is, for messages ("The Temporal dev server").
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ended_by_kit = False

    @property
    def pid(self) -> int | None:
        """Process id, while it runs."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code_on_its_own(self) -> int | None:
        """The exit code of a process that ended without :meth:`kill` or :meth:`terminate` (it crashed, or was
        killed from outside the kit: negative, the signal's number); None while it runs, or once the kit ended it."""
        if self._process is None or self._ended_by_kit:
            return None
        return self._process.poll()

    def launch(self, command: Sequence[str | os.PathLike[str]], ready: Callable[[], bool], timeout: float) -> None:
        """Start ``command`` and return once ``ready()`` says so.

        Raises:
            ProcessError: the process exited or was not ready in time; its log is quoted.
        """
        self._drop_log()
        self._ended_by_kit = False
        fd, name = tempfile.mkstemp(prefix="payments-lab-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self._process = spawn(command, log=log)
        deadline = time.monotonic() + timeout
        while not ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                timed_out = self._process.poll() is None
                self.kill()
                why = (
                    f"was not ready within {timeout:g} s (a machine too busy, or the process stopped with Ctrl-Z or SIGSTOP?)"
                    if timed_out
                    else f"exited with code {self._process.returncode}"
                )
                raise ProcessError(
                    f"{self.what} did not start: it {why}. "
                    + (f"Its log ends with:\n{tail}" if tail.strip() else "It wrote nothing. Try again: the kit starts a new one.")
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the process at once, as a crash would (``kill -9``); its log is kept for reading."""
        if self._process is not None:
            self._ended_by_kit = True
            kill(self._process)

    def terminate(self, grace: float = 10.0) -> None:
        """Stop the process (SIGINT, then SIGKILL after ``grace`` seconds) and remove its log.

        Subclasses expose it as their ``stop``: a server's is synchronous, a worker's is
        awaited like the worker that runs in the kernel's own loop.
        """
        if self._process is not None:
            self._ended_by_kit = True
            stop(self._process, grace=grace)
        self._drop_log()

    def _drop_log(self) -> None:
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None


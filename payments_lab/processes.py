"""Child processes that die with their parent: no orphan server or worker, even after ``kill -9``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from payments_lab.errors import PaymentsLabError


class ProcessError(PaymentsLabError, RuntimeError):
    """A process the kit started (a server, a worker, simulated learners) did not start or failed; its log is quoted."""


# Linux only: the child asks the kernel to SIGKILL it when its parent dies, then becomes
# the real program (the request survives exec). Done in a tiny Python launcher rather
# than in preexec_fn, which is unsafe in a multi-threaded parent such as a Jupyter kernel.
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the parent is already gone
os.execv(sys.argv[2], sys.argv[2:])
"""


def tied_to_parent_supported() -> bool:
    """Whether children can be tied to their parent's life (Linux)."""
    return sys.platform.startswith("linux")


def spawn(
    args: Sequence[str | os.PathLike[str]],
    *,
    log: IO[bytes] | int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` as a child that is killed when this process dies, however it dies.

    The child gets its own session, so a Ctrl-C or a kernel interrupt aimed at this
    process does not reach it; stop it with :func:`stop`. Its output goes to ``log``,
    never to this process's own stdout and stderr (a notebook would show it anywhere).
    """
    argv = [os.fspath(a) for a in args]
    if tied_to_parent_supported():
        argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0, sig: int = signal.SIGINT) -> int | None:
    """Ask ``process`` to stop with ``sig``, kill it after ``grace`` seconds; return its exit code."""
    if process.poll() is None:
        try:
            process.send_signal(sig)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except ProcessLookupError:
            pass
    return process.returncode


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
    """Whether process ``pid`` itself listens on TCP ``port``; None where this cannot be told (not Linux).

    A port that accepts connections may belong to anything: a port found free can be taken
    before the process meant for it binds it, and then that process exits while something
    else answers (CI saw a lab connect to an HTTP server this way).
    """
    listening: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as rows:
                next(rows)  # header
                for row in rows:
                    fields = row.split()
                    # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
                    if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                        listening.add(fields[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in listening:
            return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    @property
    def pid(self) -> int | None:
        """Process id, while it runs."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def launch(self, command: Sequence[str | os.PathLike[str]], ready: Callable[[], bool], timeout: float) -> None:
        """Start ``command`` and return once ``ready()`` says so.

        Raises:
            ProcessError: the process exited or was not ready in time; its log is quoted.
        """
        self._drop_log()
        fd, name = tempfile.mkstemp(prefix="payments-lab-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self._process = spawn(command, log=log)
        deadline = time.monotonic() + timeout
        while not ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.kill()
                raise ProcessError(
                    f"{self.what} did not start (exit code {self._process.returncode}). Its log ends with:\n{tail}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the process at once, as a crash would (``kill -9``); its log is kept for reading."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def terminate(self, grace: float = 10.0) -> None:
        """Stop the process (SIGINT, then SIGKILL after ``grace`` seconds) and remove its log.

        Subclasses expose it as their ``stop``: a server's is synchronous, a worker's is
        awaited like the worker that runs in the kernel's own loop.
        """
        if self._process is not None:
            stop(self._process, grace=grace)
        self._drop_log()

    def _drop_log(self) -> None:
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None


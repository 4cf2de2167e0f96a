"""Child processes that die with their parent: no orphan server or worker, even after ``kill -9``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

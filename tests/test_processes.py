"""Tests of child processes: tied to their parent, stopped gracefully, killed with what they started."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from payments_lab import processes
from payments_lab.processes import WATCHDOG_ENV

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

# A program that says it is ready, then reports the signal that stopped it and exits with code 3.
_PROGRAM = textwrap.dedent(
    """
    import signal, sys, time
    def stopped(signum, frame):
        print("stopped by", signal.Signals(signum).name, flush=True)
        sys.exit(3)
    signal.signal(signal.SIGINT, stopped)
    signal.signal(signal.SIGTERM, stopped)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tie: str) -> tuple[subprocess.Popen[bytes], object]:
    monkeypatch.setenv(WATCHDOG_ENV, "1" if tie == "watchdog" else "0")
    log = (tmp_path / "log").open("wb")
    child = processes.spawn([sys.executable, "-c", _PROGRAM], log=log)
    deadline = time.monotonic() + 20
    while b"ready" not in (tmp_path / "log").read_bytes():
        assert time.monotonic() < deadline and child.poll() is None, (tmp_path / "log").read_text()
        time.sleep(0.05)
    return child, log


@posix_only
@pytest.mark.parametrize("tie", ["kernel", "watchdog"])
def test_a_stop_reaches_the_program_and_its_exit_code_comes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tie: str) -> None:
    child, log = _start(tmp_path, monkeypatch, tie)
    family = [child.pid, *(c.pid for c in psutil.Process(child.pid).children(recursive=True))]
    assert len(family) == (2 if tie == "watchdog" else 1)
    assert processes.stop(child, grace=10, sig=signal.SIGTERM) == 3
    log.close()  # type: ignore[attr-defined]
    assert "stopped by SIGTERM" in (tmp_path / "log").read_text(), "the watchdog passes the stop on"
    assert not any(processes.pid_alive(pid) for pid in family)


@posix_only
@pytest.mark.parametrize("tie", ["kernel", "watchdog"])
def test_kill_ends_the_program_and_its_watchdog_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tie: str) -> None:
    child, log = _start(tmp_path, monkeypatch, tie)
    family = [child.pid, *(c.pid for c in psutil.Process(child.pid).children(recursive=True))]
    processes.kill(child)
    log.close()  # type: ignore[attr-defined]
    assert child.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while any(processes.pid_alive(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in family):
        assert time.monotonic() < deadline, "a killed child left its program running"
        time.sleep(0.05)
    assert "stopped by" not in (tmp_path / "log").read_text(), "a kill gives no chance to stop cleanly"


@posix_only
@pytest.mark.parametrize("tie", ["kernel", "watchdog"])
def test_a_child_started_from_a_thread_that_ends_lives_on_with_its_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tie: str) -> None:
    """Off the script: a worker process or server started from a pool's thread (to keep an event loop free) was killed
    as soon as that thread ended: PR_SET_PDEATHSIG follows the thread that started a child, not its process."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        child, log = pool.submit(_start, tmp_path, monkeypatch, tie).result()
    time.sleep(0.5)  # the pool's thread has ended
    assert child.poll() is None, "the child died with the thread that started it"
    assert processes.stop(child, grace=10, sig=signal.SIGTERM) == 3
    log.close()  # type: ignore[attr-defined]


def test_a_stop_signal_reaches_an_event_loop_without_add_signal_handler() -> None:
    """Windows' event loop cannot add signal handlers: the plain handler must hand the callback to the loop."""
    script = textwrap.dedent(
        """
        import asyncio, os, signal
        from payments_lab import processes

        class WindowsLikeLoop(asyncio.SelectorEventLoop):
            def add_signal_handler(self, sig, callback, *args):
                raise NotImplementedError

        async def main():
            stopped = asyncio.Event()
            processes.call_on_stop_signals(asyncio.get_running_loop(), stopped.set)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), 5)
            print("stopped through the loop")

        loop = WindowsLikeLoop()
        loop.run_until_complete(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped through the loop"


def test_pid_alive_tells_a_running_process_from_an_ended_one() -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert processes.pid_alive(psutil.Process().pid)
    assert not processes.pid_alive(int(ended.stdout))
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    deadline = time.monotonic() + 10
    while psutil.Process(killed.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.pid_alive(killed.pid), "killed and not yet reaped (a zombie) is not running"
    killed.wait()


def test_a_child_that_does_not_start_says_why_and_what_to_do() -> None:
    silent = processes.ChildProcess("The silent program")
    with pytest.raises(processes.ProcessError, match="The silent program did not start: it exited with code 0. It wrote nothing. Try again"):
        silent.launch([sys.executable, "-c", "pass"], ready=lambda: False, timeout=10)
    talking = processes.ChildProcess("The failing program")
    with pytest.raises(processes.ProcessError, match="it exited with code 3. Its log ends with:\nno port for you"):
        talking.launch([sys.executable, "-c", "print('no port for you'); raise SystemExit(3)"], ready=lambda: False, timeout=10)
    stuck = processes.ChildProcess("The stuck program")
    with pytest.raises(processes.ProcessError, match="it was not ready within 0.5 s .*SIGSTOP"):
        stuck.launch([sys.executable, "-c", "import time; time.sleep(30)"], ready=lambda: False, timeout=0.5)
    assert not stuck.running


@posix_only
def test_a_stop_signal_is_a_request_never_an_exception_raised_mid_call() -> None:
    """A KeyboardInterrupt raised inside ``Popen.poll()`` left its wait lock taken: stopping that process then hung."""
    before = signal.getsignal(signal.SIGINT)
    with processes.StopRequests() as stop_requests:
        assert not stop_requests.received
        signal.raise_signal(signal.SIGINT)  # would be a KeyboardInterrupt here with Python's own handler
        signal.raise_signal(signal.SIGTERM)
        assert stop_requests.received
        assert stop_requests.wait(0)
    assert signal.getsignal(signal.SIGINT) is before, "the handler in place before is put back"
    assert not processes.StopRequests().wait(0.01), "a request is not remembered beyond its own block"


@posix_only
def test_stop_requests_survive_a_storm_of_signals_while_waiting() -> None:
    """A handler that set a threading.Event deadlocked when the signal came while the main thread was in Event.wait()."""
    script = textwrap.dedent(
        """
        import signal
        from payments_lab import processes
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # put back after the block: the signals still coming do nothing
        with processes.StopRequests() as stop_requests:
            print("ready", flush=True)
            waits = 0
            while waits < 4000:
                stop_requests.wait(0.0002)
                stop_requests.received = False
                waits += 1
        print("still running", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            child.send_signal(signal.SIGINT)
            time.sleep(0.0005)
        assert child.poll() is not None, "the waits stopped: a stop signal deadlocked the main thread"
        assert child.stdout.read() == "still running\n", child.stderr.read()  # type: ignore[union-attr]
        assert child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

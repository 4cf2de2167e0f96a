"""Code from a cell that may never return: run in a thread of its own, waited for with a deadline, stopped if it can be.

A learner's function, or the top level of a module written in a cell, runs in the kernel's
own thread by default: ``while True: ...`` there blocks the cell, and the event loop with it,
until the learner interrupts the kernel. Run in a :class:`GuardedCall`, the caller stops
waiting at the deadline, learns which line was running, and stops a Python loop with an
asynchronous exception. A wait inside C code (``time.sleep(3600)``) cannot be stopped: it
runs on in the background, and the caller says so.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from payments_lab.errors import PaymentsLabError


class _Stopped(BaseException):
    """Raised inside a call that ran past its deadline, to stop a Python loop at its next bytecode."""


def was_stopped(error: BaseException) -> bool:
    """Whether ``error`` is the stop a :class:`LoopGuard` sent into a learner's coroutine that never let the loop turn."""
    return isinstance(error, _Stopped)


class GuardedCall:
    """``function(*args)`` running in a daemon thread of its own.

    Args:
        function: What to call.
        args: Its positional arguments.
        name: The thread's name, for logs and debuggers.
    """

    def __init__(self, function: Callable[..., Any], *args: Any, name: str) -> None:
        self._outcome: dict[str, Any] = {}
        self._done = threading.Event()
        self._function, self._args = function, args
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome["value"] = self._function(*self._args)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread as it is
            self._outcome["error"] = error
        finally:
            self._done.set()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; whether the call has returned or raised."""
        return self._done.wait(timeout)

    async def wait_async(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds without blocking the event loop; whether the call has ended."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._done.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.01))
        return True

    def running_line(self, path: Path | None = None) -> int | None:
        """The line the call is running, in the file ``path`` if given (the innermost frame there)."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        while frame is not None:
            if path is None or Path(frame.f_code.co_filename) == path:
                return frame.f_lineno
            frame = frame.f_back
        return None

    def stop(self, grace: float = 1.0) -> bool:
        """Interrupt a call that is still running; whether it stopped within ``grace`` seconds."""
        if self._done.is_set() or self._thread.ident is None:
            return True
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread.ident), ctypes.py_object(_Stopped))
        return self._done.wait(grace)

    def result(self) -> Any:
        """What the call returned; raises what it raised. Only once it has ended."""
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


class LoopGuard:
    """Watches the event loop while a learner's coroutine runs on it: who blocks it, and for how long.

    An ``async def`` of the learner's runs in the kernel's event loop, and so does the lab's
    worker. A blocking call in it (``time.sleep(1)`` for ``await asyncio.sleep(1)``) stops
    both, and a loop without ``await`` stops them for ever: no timeout of asyncio's can fire
    while the loop does not turn. A thread of this guard looks at the loop's thread whenever
    the loop has not turned for a moment; time spent there inside ``code`` (the learner's
    function) is counted as the learner's, with the line it was on, and a block of the
    learner's past ``stop_after`` seconds is stopped with an asynchronous exception, as a
    :class:`GuardedCall` stops a plain function.

    Args:
        code: The learner's function's code: frames of it on the loop's thread are the learner's.
        stop_after: Seconds the learner's code may keep the loop from turning before it is stopped.
    """

    TURN = 0.02
    """Seconds between two beats of the loop: a beat that does not come means the loop is blocked."""

    STOP_AGAIN_AFTER = 0.2
    """Seconds after a stop before another is sent, if the learner's code still runs (the first was lost)."""

    def __init__(self, code: Any, stop_after: float) -> None:
        self._code = code
        self._stop_after = stop_after
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._done = threading.Event()
        self.blocked_seconds = 0.0
        """Time the learner's code kept the loop from turning, in all."""
        self.blocked_line: int | None = None
        """The line of the learner's function that blocked the loop longest."""
        self.stopped = False
        """Whether the learner's code was stopped for keeping the loop blocked past ``stop_after``."""
        self._longest = 0.0
        self._stop_sent = float("-inf")
        self._beating: asyncio.TimerHandle | None = None
        self._watcher = threading.Thread(target=self._watch, name="learner's event-loop guard", daemon=True)

    def __enter__(self) -> LoopGuard:
        self._beating = self._loop.call_later(self.TURN, self._on_beat)
        self._hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._beating is not None:
            self._beating.cancel()
        self._watcher.join()
        sys.unraisablehook = self._hook

    def _unraisable(self, unraisable: Any) -> None:
        # A stop that landed in a finalizer (a coroutine dropped unawaited) is swallowed there ("Exception ignored
        # in …"): no message; the watcher sends the next one at its next turn.
        if isinstance(unraisable.exc_value, _Stopped):
            self._stop_sent = float("-inf")
        else:
            self._hook(unraisable)

    def _on_beat(self) -> None:
        self._beat = time.monotonic()
        self._beating = self._loop.call_later(self.TURN, self._on_beat)

    def _learner_line(self) -> int | None:
        frame = sys._current_frames().get(self._loop_thread)
        while frame is not None:
            if frame.f_code is self._code:
                return frame.f_lineno
            frame = frame.f_back
        return None

    def _watch(self) -> None:
        blocked_since: float | None = None
        while not self._done.wait(self.TURN):
            now = time.monotonic()
            line = self._learner_line() if now - self._beat > 5 * self.TURN else None
            if line is None:
                if blocked_since is not None:
                    self._count(blocked_since, now, None)
                blocked_since = None
                continue
            if blocked_since is None:
                blocked_since = max(self._beat, now - 5 * self.TURN)
            self._count(blocked_since, now, line, ongoing=True)
            if now - blocked_since > self._stop_after and now - self._stop_sent >= self.STOP_AGAIN_AFTER:
                # Again while the learner's code still runs: a stop that lands in a finalizer (a coroutine
                # dropped unawaited, in a loop that forgot `await`) or in a bare `except:` is lost.
                self.stopped = True
                self._stop_sent = now
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._loop_thread), ctypes.py_object(_Stopped))
        if blocked_since is not None:
            self._count(blocked_since, time.monotonic(), None)

    def _count(self, since: float, now: float, line: int | None, *, ongoing: bool = False) -> None:
        """Keep the block under way (``ongoing``) or add a block that ended to the total."""
        span = now - since
        if span > self._longest and line is not None:
            self._longest, self.blocked_line = span, line
        if not ongoing:
            self.blocked_seconds += span


class IgnoredCancellationError(PaymentsLabError, RuntimeError):
    """A learner's coroutine caught the cancellation meant to end it and waited on: it was closed and dropped."""


class Droppable:
    """``await Droppable(coroutine)`` awaits the coroutine as ``await coroutine`` would, with one difference.

    A coroutine that catches the cancellation thrown into it (a bare ``except:`` around an
    ``await`` catches ``CancelledError``) and waits on would keep running in the background of
    the notebook, past any timeout. Here it has :attr:`GRACE` seconds after the cancellation to
    end (a clean-up awaited before it raises again is fine); still waiting then, it is closed,
    what it waited for is cancelled, and the await raises :class:`IgnoredCancellationError`.
    """

    GRACE = 1.0
    """Seconds a cancelled coroutine may go on waiting (its clean-up) before it is dropped."""

    def __init__(self, coroutine: Any) -> None:
        self._coroutine = coroutine

    def __await__(self) -> Any:
        # The coroutine is reached through self alone, never a local of this frame: a traceback that keeps
        # this frame must not keep the coroutine (see _drop).
        thrown: BaseException | None = None
        drop_at: float | None = None  # set once a cancellation was thrown in
        while True:
            try:
                waited = self._coroutine.send(None) if thrown is None else self._coroutine.throw(thrown)
            except StopIteration as done:
                return done.value
            if isinstance(thrown, asyncio.CancelledError) and drop_at is None:
                drop_at = time.monotonic() + self.GRACE
            try:
                came = True
                if drop_at is None:
                    yield waited
                else:
                    came = yield from self._within_grace(waited, drop_at)
                thrown = None
            except BaseException as error:  # noqa: BLE001 - what the task throws in, the coroutine gets
                thrown = error
                continue
            if not came:
                self._drop(waited)

    @staticmethod
    def _within_grace(waited: Any, drop_at: float) -> Any:
        """Wait for what the cancelled coroutine waits for, until ``drop_at``; return whether it came in time."""
        if not isinstance(waited, asyncio.Future) or waited.done():
            yield waited
            return time.monotonic() < drop_at
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        waited.add_done_callback(wake)
        timer = loop.call_later(max(drop_at - time.monotonic(), 0), wake)
        woken._asyncio_future_blocking = True  # what `await future` sets: the task waits on it
        try:
            yield woken
        finally:
            timer.cancel()
            waited.remove_done_callback(wake)
        return waited.done()

    def _drop(self, waited: Any) -> None:
        if isinstance(waited, asyncio.Future):
            waited.cancel()
        coroutine, self._coroutine = self._coroutine, None
        try:
            coroutine.close()
        except RuntimeError:  # it caught GeneratorExit too, and awaited again: it is still suspended
            pass
        # Freed here and now, in the event loop's thread while the loop runs, not whenever a garbage
        # collection finds it (kept alive by the traceback of the error below). Freeing a suspended coroutine
        # closes it once more: one that swallows everything (`except BaseException: pass` in a `while True`)
        # awaits again, which ends the close here; in a thread with no running loop, `asyncio.sleep` raises
        # instead, it swallows that too, and the thread spins for ever (a worker's thread, or the kernel's
        # exit). Python reports that second refusal as "Exception ignored": already judged, it is not shown.
        freed = id(coroutine)
        hook = sys.unraisablehook

        def quiet(unraisable: Any) -> None:
            if id(unraisable.object) != freed or not isinstance(unraisable.exc_value, RuntimeError):
                hook(unraisable)

        sys.unraisablehook = quiet
        try:
            del coroutine
        finally:
            sys.unraisablehook = hook
        raise IgnoredCancellationError("the coroutine caught its cancellation and waited on past its grace")

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
from collections.abc import Callable
from pathlib import Path
from typing import Any


class _Stopped(BaseException):
    """Raised inside a call that ran past its deadline, to stop a Python loop at its next bytecode."""


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

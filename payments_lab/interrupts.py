"""A kernel interrupt (■) that stops an awaiting cell at once, not when the event loop next wakes up."""

from __future__ import annotations

import asyncio
import shlex
import sys
import weakref

WAKE_EVERY = 0.2
"""Seconds between the wake-ups of a kernel's event loop once the kit has connected from it: how late ■ may act."""

_paced: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def keep_interrupts_prompt(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Wake ``loop`` (by default the running one) every :data:`WAKE_EVERY` seconds for as long as it runs.

    ipykernel turns ■ into a cancellation of the cell's task, scheduled from its SIGINT handler
    with a callback that does not wake the event loop (ipython/ipykernel#881, open): a cell
    that awaits something the loop has no timer for stops only when the loop wakes up for
    another reason. A cell waiting on a call the Temporal server holds open (the first answer
    of a payment no worker takes, a long poll) went on for 20 s or more after ■. A loop that
    wakes up every 0.2 s runs the cancellation within that; each wake-up costs microseconds.
    Calling this again on the same loop does nothing.
    """
    loop = loop or asyncio.get_running_loop()
    if loop in _paced:
        return
    _paced.add(loop)

    def wake() -> None:
        loop.call_later(WAKE_EVERY, wake)

    loop.call_later(WAKE_EVERY, wake)


def in_a_kernel() -> bool:
    """Whether this process is an IPython kernel (a notebook's), where ■ cancels the cell's task."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it long before; anything else need not pay for it
    return ipython is not None and getattr(ipython.get_ipython(), "kernel", None) is not None


def stop_waiting_words() -> str:
    """How the learner stops a wait where they are: "interrupt the kernel" in a notebook, "press Ctrl-C" in a terminal."""
    return "interrupt the kernel" if in_a_kernel() else "press Ctrl-C"


def cancel_words(payment_id: str) -> str:
    """How the learner cancels ``payment_id`` where they are: the service's call in a notebook, the command in a terminal."""
    if in_a_kernel():
        return f"`await lab.service.cancel({payment_id!r})`"
    return f"`payments-lab cancel {shlex.quote(payment_id)}`"

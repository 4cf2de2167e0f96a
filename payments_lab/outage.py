"""Riding out a Temporal server that is briefly unreachable: wait, say so once, carry on.

A workflow does not mind its server going away: its state is on the server's disk and it
carries on when the server is back. A client call does mind: after about 5 s of outage the
SDK gives up with ``RPCError('tcp connect error')``. The calls that wait for a payment go
through :func:`ride_out`, which waits for the server instead, within a bound.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from payments_lab.client import TemporalUnavailableError
from payments_lab.errors import InvalidArgumentError
from payments_lab.server import EmbeddedServer, ended_on_its_own
from payments_lab.wording import duration_words

T = TypeVar("T")

DEFAULT_OUTAGE_WAIT = timedelta(minutes=2)
"""How long a waiting call waits for an unreachable server (``PAYMENTS_LAB_OUTAGE_WAIT`` in
seconds overrides it)."""

RECOVERY_ALLOWANCE = timedelta(seconds=10)
"""Time given to workers to poll again once a server is back: the SDK's pollers back off
while it is away (measured here: a retried activity started ~4 s after the restart)."""

_RETRY_EVERY = 1.0
"""Seconds between two tries while the server is unreachable (each try itself takes a few)."""


async def knock(address: str, timeout: float = 5.0) -> bool | None:
    """Whether something accepts TCP connections at ``address`` (``host:port``): True, False when
    refused or unroutable, None when nothing answered within ``timeout`` (a busy machine, or a
    route where packets vanish)."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout)
    except TimeoutError:
        return None
    except OSError:
        return False
    writer.close()
    return True


class OutageWatch:
    """Whether the server of ``client`` was away while a block ran: gone, or there and silent.

    A deadline given to a payment (an exercise check's) is no verdict on the payment if
    the server was away meanwhile: the SDK's own retries can hide a short outage from
    every call, so the watch asks the server itself, twice a second: a refused port, or
    a health check unanswered within ``silent_after`` (a server stopped with Ctrl-Z still
    has its port accept connections), is an outage::

        async with OutageWatch(client) as watch:
            ...
        if watch.saw_outage: ...
    """

    def __init__(self, client: Client, every: float = 0.5, silent_after: timedelta = timedelta(seconds=2)) -> None:
        self.client = client
        self.address = client.service_client.config.target_host
        self.every = every
        self.silent_after = silent_after
        self.saw_outage = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def _knock(self) -> None:
        while not self._stopped:
            if await knock(self.address) is False or not await answers(self.client, self.silent_after):
                self.saw_outage = True
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> OutageWatch:
        self._task = asyncio.ensure_future(self._knock())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._stopped = True
            self._task.cancel()
            # Python 3.11's wait_for can swallow a cancellation that lands as the connection
            # opens (seen under a room's load: a check then hung for ever here). The flag ends
            # the loop anyway; never wait for the knocking task without a bound.
            await asyncio.wait([self._task], timeout=2.0)


def outage_wait() -> timedelta:
    """The configured bound: ``PAYMENTS_LAB_OUTAGE_WAIT`` seconds, else :data:`DEFAULT_OUTAGE_WAIT`.

    Raises:
        ValueError: the variable is set but is not a number of seconds >= 0.
    """
    text = os.environ.get("PAYMENTS_LAB_OUTAGE_WAIT")
    if not text:
        return DEFAULT_OUTAGE_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN
        raise InvalidArgumentError(f"PAYMENTS_LAB_OUTAGE_WAIT must be a number of seconds >= 0, got {text!r}")
    return timedelta(seconds=seconds)


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the server could not be reached (rather than that it said no)."""
    return isinstance(err, RPCError) and err.status is RPCStatusCode.UNAVAILABLE


NOT_ANSWERING = "accepts connections but does not answer"
"""What an outage error says of a server that is there and silent: stopped (Ctrl-Z), or starved."""


def deadline_expired(err: BaseException) -> bool:
    """Whether ``err`` is a request's deadline expiring: ``CANCELLED`` ("Timeout expired") when the
    client gave up first, ``DEADLINE_EXCEEDED`` when the server did."""
    return isinstance(err, RPCError) and err.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)


HEALTH_CHECK_WINDOW = timedelta(seconds=5)
"""How long a server gets to answer a health check, the cheapest request there is, before it
counts as not answering (whatever the window of the request that expired: that one may be tiny)."""


async def silence_as_outage(client: Client, within: timedelta = HEALTH_CHECK_WINDOW) -> RPCError | None:
    """After a request's deadline expired: the outage it means, or None if the server still answers.

    A deadline expires on a busy server too, so the server is asked the cheapest thing it
    answers, a health check, with ``within`` to reply. A server stopped with Ctrl-Z (SIGSTOP)
    still has its port accept connections (the kernel does that) and answers nothing; a
    route where packets vanish answers nothing either.

    Returns:
        An ``UNAVAILABLE`` error, what :func:`ride_out` waits through and bounds, when nothing
        listens at the server's address or when it does not answer the health check.
    """
    address = client.service_client.config.target_host
    if await knock(address) is False:
        return RPCError(f"nothing accepts connections at {address}", RPCStatusCode.UNAVAILABLE, b"")
    if not await answers(client, within):
        return RPCError(f"it {NOT_ANSWERING} within {duration_words(within)}", RPCStatusCode.UNAVAILABLE, b"")
    return None


async def answers(client: Client, within: timedelta) -> bool:
    """Whether the server of ``client`` answers a health check within ``within``."""
    try:
        await client.service_client.check_health(timeout=within)
    except RPCError:
        return False
    return True


CALL_WINDOW = timedelta(seconds=10)
"""How long a start, cancel, describe, query, history, search, count or listing request may go
unanswered before the kit asks whether the server answers at all (a server stopped with Ctrl-Z
answers nothing, for ever)."""

BUSY_SERVER_WINDOWS = 3
"""Windows a request safe to repeat (all of them but a start and a query) gets from a server that
answers health checks but not it: with :data:`CALL_WINDOW`, the 30 s the SDK gives a request of
its own accord."""


async def within_window(
    call: Callable[[timedelta], Awaitable[T]], client: Client, window: timedelta = CALL_WINDOW, *, windows: int | None = 1
) -> T:
    """``call(window)``: a request given ``window`` to be answered, and up to ``windows`` windows
    in all (None: no limit) while the server answers a health check but not the request (it is busy).

    Raises:
        RPCError: UNAVAILABLE if a window expired on a server that is gone or does not answer
            (:func:`ride_out` waits through it); any other error, the last expiry on a server
            that answers included, as the request raised it. An expiry is CANCELLED ("Timeout
            expired") when the client gave up, DEADLINE_EXCEEDED when the server did.
    """
    made = 0
    while True:
        try:
            return await call(window)
        except RPCError as err:
            if not deadline_expired(err):
                raise
            outage = await silence_as_outage(client)
            if outage is not None:
                raise outage from err
            made += 1
            if windows is not None and made >= windows:
                raise


async def answered(
    client: Client,
    call: Callable[[timedelta], Awaitable[T]],
    *,
    window: timedelta = CALL_WINDOW,
    windows: int = BUSY_SERVER_WINDOWS,
    wait: timedelta | None = None,
) -> T:
    """``call(window)``, a read safe to make again, in windows (:func:`within_window`) and waiting
    through an outage of the server of ``client``, a stopped server included (:func:`ride_out`).

    Args:
        client: The client ``call`` uses.
        call: Makes the request, given how long it may wait for the answer.
        window: How long one request may go unanswered.
        windows: Windows in all while the server answers health checks but not the request.
        wait: How long to wait for an unreachable server; None reads :func:`outage_wait`.

    Raises:
        TemporalUnavailableError: the server stayed unreachable, or silent, for longer than ``wait``.
        RPCError: any other error of the request, as it raised it.
    """
    away = False

    async def attempt() -> T:
        nonlocal away
        try:
            # Once the server was away, the window open when it came back is no verdict (a query waits for
            # workers that poll again only seconds later): one more, with time for them to come back.
            if away:
                return await within_window(call, client, window + RECOVERY_ALLOWANCE, windows=windows + 1)
            return await within_window(call, client, window, windows=windows)
        except RPCError as err:
            away = away or is_unreachable(err)
            raise

    return await ride_out(attempt, address=client.service_client.config.target_host, wait=wait)


async def ride_out(
    call: Callable[[], Awaitable[T]],
    *,
    address: str,
    wait: timedelta | None = None,
    say: Callable[[str], None] | None = None,
) -> T:
    """Await ``call()``, calling it again while the server at ``address`` is unreachable.

    ``call`` must be safe to repeat (waiting for a result, describing, querying, fetching
    a history). The first time the server is unreachable, one line says so; once it
    answers again, one line says that too.

    Args:
        call: Makes the request.
        address: ``host:port`` of the server, for the messages.
        wait: How long to wait from the first failure; None reads :func:`outage_wait`.
        say: Where the two lines go (default: standard error).

    Raises:
        TemporalUnavailableError: the server stayed unreachable for longer than ``wait``.
    """
    bound = outage_wait() if wait is None else wait
    tell = say or _say
    deadline: float | None = None
    while True:
        # No one will start it again while this call waits: say so now, not in minutes (nor after the
        # seconds the SDK's own connection retries take).
        if (gone := own_server_ended(address)) is not None:
            raise gone
        try:
            result = await call()
        except RPCError as err:
            if not is_unreachable(err):
                raise
            if (gone := own_server_ended(address)) is not None:
                raise gone from err
            silent = NOT_ANSWERING in err.message
            now = time.monotonic()
            if deadline is None:
                deadline = now + bound.total_seconds()
                if bound > timedelta(0):
                    tell(
                        f"Temporal server at {address} unreachable ({err.message}); waiting up to "
                        f"{duration_words(bound)} for it to come back…"
                    )
            if now >= deadline:
                raise TemporalUnavailableError(
                    f"The Temporal server at {address} has been unreachable for {duration_words(bound)}. "
                    + (_RESUME if silent else _RESTART)
                    + " Wait longer with PAYMENTS_LAB_OUTAGE_WAIT=<seconds>."
                ) from err
            await asyncio.sleep(min(_RETRY_EVERY, deadline - now))
            continue
        if deadline is not None:
            tell(f"Temporal server at {address} is back.")
        return result


_RESTART = (
    "Start it again (`payments-lab server`; a room's with the same `payments-lab room` command; a "
    "server of the notebook's own: re-run the cell that starts it), then run this again: a server that "
    "keeps its state in a file (`--db`) still has every payment."
)
_RESUME = (
    f"It {NOT_ANSWERING}: if it was stopped with Ctrl-Z, `fg` in its terminal resumes it and every "
    "payment carries on; otherwise its machine may be out of CPU or memory. Then run this again."
)


def own_server_ended(address: str, *, what: str = "") -> TemporalUnavailableError | None:
    """The error to raise at once when the server this process started at ``address`` has ended by itself (it
    crashed, or was killed from outside the kit); None while it runs, when the kit stopped it, or when this process
    did not start it. ``what`` opens the message (e.g. ``"Payment 'p-1' was not started: "``)."""
    ended = ended_on_its_own(address)
    return None if ended is None else TemporalUnavailableError(what + _ended_words(address, ended))


def _ended_words(address: str, server: EmbeddedServer) -> str:
    """Why nothing will answer at ``address`` again: the server this process started there ended by itself."""
    code = server.exit_code_on_its_own
    how = f"exited with code {code}"
    if code is not None and code < 0:
        try:
            how = f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            how = f"was killed (signal {-code})"
    then = (
        f"It kept its state in {server.db_file}: `server.start()` starts it again on that file and every payment "
        "carries on; then run this again."
        if server.db_file is not None
        else "Its payments were in its memory and went with it. Open the lab again (re-run the cell with "
        "`open_lab()`), or run the command again: either starts a new server."
    )
    tail = server.log_tail(10).strip()
    return (
        f"The Temporal server at {address}, which this Python process started, {how}: nothing answers there "
        f"any more, and nothing will until it is started again. {then}" + (f" Its log ends with:\n{tail}" if tail else "")
    )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

"""Tests of clients that ride out a server outage: the payment waits on the server's disk, the caller waits too."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST
from payments_lab.client import TemporalUnavailableError, connect
from payments_lab.domain import PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.history import fetch_histories
from payments_lab.lab import Lab, open_lab
from payments_lab.outage import NOT_ANSWERING, outage_wait
from payments_lab.progress import progress_view
from payments_lab.server import EmbeddedServer
from payments_lab.service import DuplicatePaymentError, PaymentHandle

OUTAGE = 14.0
"""Seconds the server stays down: longer than the 10 s that a client call's own retries can cover
(sdk-core's default retry options: 100 ms × 1.7 up to 5 s, 10 s in all), so that every waiting
call sees the outage. With 8 s, a loaded machine sometimes had all five calls retry through it
unaware, and none said so."""

RESULT_WINDOW = timedelta(seconds=1)
"""The result windows of the tests of a stopped server (the kit's: 5 s)."""

CALL_WINDOW = timedelta(seconds=4)
"""Their describe and query windows (the kit's: 10 s): a query needs a worker, which takes a
moment to poll again once the server is back."""

FREEZE = 12.0
"""Seconds a server stays stopped: more than a call's window and the 5 s health check after it."""

LONG_FREEZE = 17.0
"""Seconds a server stays stopped for the reads that take the kit's own 10 s window, and 5 s more
for the health check after it."""

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="Ctrl-Z (SIGSTOP) stops a process on Linux and macOS only")


def stop(server: EmbeddedServer) -> Callable[[], None]:
    """Stop the server as Ctrl-Z stops it in a terminal; return what resumes it, as ``fg`` does."""
    assert server.pid is not None
    pid = server.pid
    os.kill(pid, signal.SIGSTOP)  # type: ignore[attr-defined,unused-ignore]
    _until_stopped(pid)
    return lambda: os.kill(pid, signal.SIGCONT)  # type: ignore[attr-defined,unused-ignore]


def _until_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until every thread of ``pid`` is stopped: ``kill`` returns before they all are, and a
    call sent meanwhile could still be answered. Linux only (/proc); elsewhere, a short pause."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()[0] for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:  # no /proc (macOS), or a thread ended meanwhile
            if not Path("/proc/self").exists():
                time.sleep(0.2)
                return
            continue
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"the server (pid {pid}) did not stop within {timeout} s of SIGSTOP")


def _which_ended(calls: Mapping[str, asyncio.Future[Any]]) -> str:
    """The calls already ended, and how: a result or an exception."""
    ended = []
    for name, call in calls.items():
        if call.cancelled():
            ended.append(f"{name}: cancelled")
        elif call.done():
            how = repr(call.exception()) if call.exception() is not None else f"returned {call.result()!r}"
            ended.append(f"{name}: {how}"[:300])
    return "; ".join(ended)


@contextmanager
def stopped(server: EmbeddedServer) -> Iterator[None]:
    """The server stopped for the block, then resumed."""
    resume = stop(server)
    try:
        yield
    finally:
        resume()


@asynccontextmanager
async def charged_payment(name: str, *, answer_after: float) -> AsyncIterator[tuple[EmbeddedServer, Lab, PaymentHandle]]:
    """A lab on a server of its own, with the test windows, and a payment whose money is taken
    and whose charge answers ``answer_after`` s later."""
    server = EmbeddedServer(ui=False).start()
    lab = await open_lab(name, server=server, options=FAST)
    lab.service.result_poll_window, lab.service.call_window = RESULT_WINDOW, CALL_WINDOW
    try:
        charge = StepFaults(delay=answer_after)
        handle = await lab.start(lab.request("5.00"), faults=FaultPlan(charge=charge), show_link=False)
        await lab.wait_until_charged(handle.payment_id)
        yield server, lab, handle
    finally:
        await lab.close()


async def test_waiting_payments_ride_out_a_server_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(db_file=tmp_path / "temporal.sqlite", ui=False).start()
    lab = await open_lab("outage", server=server, options=FAST)
    try:
        requests = [lab.request("5.00") for _ in range(5)]
        handles = [
            await lab.start(r, faults=FaultPlan(charge=StepFaults(delay=2)), show_link=False) for r in requests
        ]
        waiting = [asyncio.ensure_future(h.result()) for h in handles]
        await lab.wait_until_charged(requests[0].payment_id)
        said = io.StringIO()
        with redirect_stderr(said):
            server.kill()
            await asyncio.sleep(OUTAGE)
            assert not any(w.done() for w in waiting), "no caller gave up during the outage"
            server.start()
            results = await asyncio.wait_for(asyncio.gather(*waiting), 120)
    finally:
        await lab.close()
    assert [r.status for r in results] == [PaymentStatus.COMPLETED] * 5
    assert all(lab.repository.charge_count(r.payment_id) == 1 for r in requests)
    lines = said.getvalue().splitlines()
    # A call whose own retries outlasted the outage never noticed it; the others say so once.
    unreachable = sum("unreachable" in line for line in lines)
    assert 1 <= unreachable <= 5
    assert sum("is back" in line for line in lines) == unreachable


async def test_an_outage_longer_than_the_bound_is_one_clear_error(tmp_path: Path) -> None:
    server = EmbeddedServer(db_file=tmp_path / "temporal.sqlite", ui=False).start()
    lab = await open_lab("outage-bound", server=server, options=FAST)
    lab.service.outage_wait = timedelta(seconds=2)
    try:
        handle = await lab.start(lab.request("5.00"), faults=FaultPlan(charge=StepFaults(delay=30)), show_link=False)
        server.kill()
        with redirect_stderr(io.StringIO()), pytest.raises(TemporalUnavailableError) as raised:
            await handle.result()
    finally:
        await lab.close()
    message = str(raised.value)
    assert "unreachable for 2 s" in message and "payments-lab server" in message
    assert "PAYMENTS_LAB_OUTAGE_WAIT" in message


@posix_only
async def test_a_server_this_process_started_that_is_killed_from_outside_is_said_at_once() -> None:
    """Off the script: the lab's own server killed from a terminal (`kill -9`), or crashed: a waiting cell waited out
    the outage bound (2 minutes) for a server nothing would start again, then said to start it again."""
    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("killed-outside", server=server, options=FAST)
    lab.service.outage_wait = timedelta(minutes=10)
    try:
        handle = await lab.start(lab.request("5.00"), faults=FaultPlan(charge=StepFaults(delay=30)), show_link=False)
        await lab.wait_until_charged(handle.payment_id)
        os.kill(server.pid or 0, signal.SIGKILL)
        with redirect_stderr(io.StringIO()), pytest.raises(TemporalUnavailableError) as raised:
            async with asyncio.timeout(60):  # far below the bound: the wait ended because the server is gone
                await handle.result()
    finally:
        closing, said = time.monotonic(), io.StringIO()
        with redirect_stdout(said):
            await lab.close()
        closed_in = time.monotonic() - closing
    message = str(raised.value)
    assert f"The Temporal server at {server.address}, which this Python process started, was killed (SIGKILL)" in message, message
    assert "went with it" in message and "open_lab()" in message, "the fix, for a server that kept its state in memory"
    # Closing asks nothing of a server gone and waits for none of the worker's last calls (it took 11–18 s), and says
    # what the ledger kept.
    assert closed_in < 2, f"closing took {closed_in:.1f} s"
    assert f"Charged and never settled: {handle.payment_id} (5.00 EUR taken)" in said.getvalue(), said.getvalue()


@posix_only
async def test_a_start_or_a_status_on_a_server_killed_under_the_lab_is_refused_at_once() -> None:
    """Off the script: with the lab's own server killed from a terminal, ``lab.start`` spent the SDK's connection
    retries, then said the server "did not confirm" a start that could not have happened; ``status`` spent them too."""
    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("killed-then-start", server=server, options=FAST)
    try:
        os.kill(server.pid or 0, signal.SIGKILL)
        async with asyncio.timeout(10):
            while server.exit_code_on_its_own is None:
                await asyncio.sleep(0.01)
        request = lab.request("5.00")
        started = time.monotonic()
        with pytest.raises(TemporalUnavailableError) as refused_start:
            await lab.start(request, show_link=False)
        with pytest.raises(TemporalUnavailableError) as refused_status:
            await lab.service.status(request.payment_id)
        took = time.monotonic() - started
    finally:
        closing = time.monotonic()
        await lab.close()  # its worker had not polled yet: closing raised its "Worker validation failed", 15 s later
        closed_in = time.monotonic() - closing
    assert closed_in < 2, f"closing took {closed_in:.1f} s"
    start_message, status_message = str(refused_start.value), str(refused_status.value)
    assert start_message.startswith(f"Payment {request.payment_id!r} was not started. "), start_message
    assert "which this Python process started, was killed (SIGKILL)" in start_message, start_message
    assert "did not confirm" not in start_message
    assert f"The Temporal server at {server.address}, which this Python process started" in status_message, status_message
    assert took < 2, f"refused after {took:.1f} s: the connection was retried first"


@posix_only
async def test_a_worker_stopped_with_its_server_killed_starts_again_once_the_server_is_back_on_its_file(tmp_path: Path) -> None:
    """The worker stopped with its server gone ends out of sight; started again on the same client and queue before
    it has ended, the core would refuse it (a registration of two workers on one queue): it waits for the first."""
    server = EmbeddedServer(db_file=tmp_path / "temporal.sqlite", ui=False).start()
    lab = await open_lab("killed-restarted", server=server, options=FAST)
    try:
        handle = await lab.start(lab.request("5.00"), faults=FaultPlan(charge=StepFaults(delay=2)), show_link=False)
        await lab.wait_until_charged(handle.payment_id)
        os.kill(server.pid or 0, signal.SIGKILL)
        async with asyncio.timeout(10):
            while server.exit_code_on_its_own is None:
                await asyncio.sleep(0.01)
        stopping = time.monotonic()
        await lab.worker.stop()
        assert time.monotonic() - stopping < 2, "a worker whose server is gone is not waited for"
        server.start()
        await lab.worker.start()
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        await lab.close()
    assert result.status is PaymentStatus.COMPLETED and lab.repository.charge_count(handle.payment_id) == 1


def test_the_bound_is_configurable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYMENTS_LAB_OUTAGE_WAIT", raising=False)
    assert outage_wait() == timedelta(minutes=2)
    monkeypatch.setenv("PAYMENTS_LAB_OUTAGE_WAIT", "30")
    assert outage_wait() == timedelta(seconds=30)
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("PAYMENTS_LAB_OUTAGE_WAIT", bad)
        with pytest.raises(ValueError, match="PAYMENTS_LAB_OUTAGE_WAIT must be a number of seconds"):
            outage_wait()


async def test_an_exercise_check_does_not_blame_the_payment_for_an_outage(tmp_path: Path) -> None:
    from payments_lab.exercises.checking import await_result

    server = EmbeddedServer(db_file=tmp_path / "temporal.sqlite", ui=False).start()
    lab = await open_lab("outage-check", server=server, options=FAST)
    try:
        handle = await lab.start(lab.request("5.00"), faults=FaultPlan(charge=StepFaults(delay=1)), show_link=False)
        await lab.wait_until_charged(handle.payment_id)
        server.kill()

        async def restart_later() -> None:
            await asyncio.sleep(OUTAGE)
            server.start()

        restarting = asyncio.ensure_future(restart_later())
        with redirect_stderr(io.StringIO()):
            # The check gives the payment 3 s; the outage alone lasts longer.
            result = await await_result(handle, 3.0)
        await restarting
    finally:
        await lab.close()
    assert result is not None and result.status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(handle.payment_id) == 1


@posix_only
async def test_waiting_calls_ride_out_a_server_stopped_with_ctrl_z() -> None:
    # A stopped server keeps its port: the kernel accepts connections for it, nothing answers.
    said = io.StringIO()
    async with charged_payment("stopped", answer_after=2) as (server, lab, handle):
        with redirect_stderr(said):
            with stopped(server):
                calls = {
                    "result": handle.result(),
                    "status": handle.status(),
                    "progress": handle.progress(),
                    "count": lab.service.count(),
                    "search": lab.service.search(),
                }
                started = {name: asyncio.ensure_future(call) for name, call in calls.items()}
                await asyncio.sleep(FREEZE)
                assert not _which_ended(started), f"no call may end while the server is stopped: {_which_ended(started)}"
            result, report, progress, count, found = await asyncio.wait_for(asyncio.gather(*started.values()), 60)
    assert result.status is PaymentStatus.COMPLETED
    assert report.payment_id == progress.payment_id == handle.payment_id
    assert count == 1 and [r.payment_id for r in found] == [handle.payment_id]
    assert lab.repository.charge_count(handle.payment_id) == 1
    lines = said.getvalue().splitlines()
    # Each of the five calls says once that the server does not answer, and once that it is back.
    assert sum(NOT_ANSWERING in line for line in lines) == 5, lines
    assert sum("is back" in line for line in lines) == 5, lines


@posix_only
async def test_a_server_stopped_past_the_bound_is_one_clear_error_and_fg_carries_on() -> None:
    async with charged_payment("stopped-bound", answer_after=2) as (server, lab, handle):
        lab.service.outage_wait = timedelta(seconds=2)
        with stopped(server), redirect_stderr(io.StringIO()), pytest.raises(TemporalUnavailableError) as raised:
            await asyncio.wait_for(handle.result(), 60)
        with redirect_stderr(io.StringIO()):
            result = await asyncio.wait_for(handle.result(), 60)
    message = str(raised.value)
    assert NOT_ANSWERING in message and "`fg`" in message and "PAYMENTS_LAB_OUTAGE_WAIT" in message
    assert result.status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(handle.payment_id) == 1


@posix_only
async def test_a_start_a_stopped_server_leaves_unconfirmed_is_a_clear_error_and_safe_to_repeat() -> None:
    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-start", server=server, options=FAST)
    lab.service.call_window = CALL_WINDOW
    try:
        await lab.service.process(lab.request("1.00"))  # a server that has finished starting
        request = lab.request("5.00")
        with stopped(server), pytest.raises(TemporalUnavailableError) as raised:
            await lab.service.start(request)
        try:
            handle = await lab.service.start(request)
        except DuplicatePaymentError:  # the first start reached the server after all
            handle = lab.service.handle(request.payment_id)
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        await lab.close()
    message = str(raised.value)
    assert "did not confirm the start" in message and NOT_ANSWERING in message
    assert "DuplicatePaymentError" in message and "status(" in message
    assert result.status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(request.payment_id) == 1


@posix_only
async def test_an_exercise_check_does_not_blame_the_payment_for_a_stopped_server() -> None:
    from payments_lab.exercises.checking import await_result

    async with charged_payment("stopped-check", answer_after=1) as (server, lab, handle):
        resume = stop(server)
        resuming = asyncio.get_running_loop().call_later(OUTAGE, resume)
        try:
            with redirect_stderr(io.StringIO()):
                # The check gives the payment 3 s; the stop alone lasts longer.
                result = await await_result(handle, 3.0)
        finally:
            resuming.cancel()
            resume()  # a second SIGCONT changes nothing
    assert result is not None and result.status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(handle.payment_id) == 1


@posix_only
async def test_a_cancel_sent_to_a_stopped_server_reaches_the_payment_once_it_is_resumed() -> None:
    said = io.StringIO()
    async with charged_payment("stopped-cancel", answer_after=4) as (server, lab, handle):
        with redirect_stderr(said):
            with stopped(server):
                cancelling = asyncio.ensure_future(handle.cancel())
                await asyncio.sleep(FREEZE)
                assert not cancelling.done(), "the cancel waits for the server"
            await asyncio.wait_for(cancelling, 60)
            result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is PaymentStatus.REFUNDED
    assert lab.repository.charge_count(handle.payment_id) == 1
    assert lab.repository.balance(handle.payment_id) == 0
    # Told, not left to the SDK's silent 30 s and its bare "Timeout expired".
    assert sum(NOT_ANSWERING in line for line in said.getvalue().splitlines()) == 1


@posix_only
async def test_connecting_to_a_stopped_server_says_to_resume_it() -> None:
    # Nothing to ride out yet: connecting is the first call, and the SDK gives it 30 s.
    with EmbeddedServer(ui=False) as server:
        await (await connect(address=server.address)).close()  # a server that has finished starting
        with stopped(server), pytest.raises(TemporalUnavailableError) as raised:
            await connect(address=server.address)
    message = str(raised.value)
    assert NOT_ANSWERING in message and "`fg`" in message


@posix_only
async def test_the_room_view_and_history_fetches_ride_out_a_server_stopped_with_ctrl_z() -> None:
    # These reads take the kit's own window (10 s), then 5 s for the health check: the stop
    # must outlast both for them to notice it.
    said = io.StringIO()
    async with charged_payment("stopped-reads", answer_after=0) as (server, lab, handle):
        await asyncio.wait_for(handle.result(), 60)
        query = lab.service.visibility_query()
        with redirect_stderr(said):
            with stopped(server):
                reads = {"room view": progress_view(lab.client), "fetch": fetch_histories(lab.client, query=query, progress=False)}
                started = {name: asyncio.ensure_future(read) for name, read in reads.items()}
                await asyncio.sleep(LONG_FREEZE)
                assert not _which_ended(started), f"no read may end while the server is stopped: {_which_ended(started)}"
            view, histories = await asyncio.wait_for(asyncio.gather(*started.values()), 60)
    assert [(row.learner, row.payments) for row in view.learners] == [(lab.client.namespace, 1)]
    assert [h.workflow_id for h in histories] == [handle.workflow_id]
    lines = said.getvalue().splitlines()
    # Each read says once that the server does not answer, and once that it is back: the room
    # view's four requests and the listing before the fetches share one notice each.
    assert sum(NOT_ANSWERING in line for line in lines) == 2, lines
    assert sum("is back" in line for line in lines) == 2, lines


@posix_only
async def test_an_early_start_a_stopped_server_leaves_unconfirmed_is_a_clear_error_and_safe_to_repeat() -> None:
    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-early", server=server, options=FAST)
    try:
        await lab.service.process(lab.request("1.00"))  # a server that has finished starting
        request = lab.request("5.00")
        said = io.StringIO()
        with stopped(server), redirect_stderr(said), pytest.raises(TemporalUnavailableError) as raised:
            await lab.service.start_early(request, rpc_timeout=timedelta(seconds=2))
        try:
            handle = (await lab.service.start_early(request)).handle
        except DuplicatePaymentError:  # the first start reached the server after all
            handle = lab.service.handle(request.payment_id)
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        await lab.close()
    message = str(raised.value)
    assert ("did not confirm the start" in message or "started, but" in message) and NOT_ANSWERING in message
    assert "DuplicatePaymentError" in message or "It runs on" in message
    # The SDK's own record of the failed call was read, not left for asyncio to report.
    assert "never retrieved" not in said.getvalue()
    assert result.status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(request.payment_id) == 1


@posix_only
async def test_a_wait_for_a_first_answer_on_a_stopped_server_says_so() -> None:
    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-first-answer", server=server, options=FAST)
    try:
        said = io.StringIO()
        with stopped(server), redirect_stderr(said):
            await lab.service._say_what_a_first_answer_waits_for("pay-x", after=0)
    finally:
        await lab.close()
    assert f"Payment 'pay-x' has no first answer after 0 s: the Temporal server at {server.address} is silent" in said.getvalue()


@posix_only
async def test_an_answer_held_up_by_a_stopped_server_is_not_called_wrong() -> None:
    """Practice 05 Q1's right answer, the lab's server stopped (Ctrl-Z) as it runs: a verdict about the lab, not the answer."""
    from payments_lab.exercises import CheckOutcome, lesson05

    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-answer", server=server, options=FAST)
    resumes: list[Callable[[], None]] = []
    try:

        async def right_answer(lab: Lab, handle: PaymentHandle) -> None:
            resumes.append(stop(server))
            asyncio.get_running_loop().call_later(FREEZE / 2, resumes[-1])
            await lab.wait_until_charged(handle.payment_id)
            await handle.cancel()

        with redirect_stderr(io.StringIO()):
            feedback = await lesson05.q1.check_async(right_answer, lab=lab)
    finally:
        for resume in resumes:
            resume()
        await lab.close()
    assert feedback.outcome is CheckOutcome.INCORRECT
    assert "The lab's server did not answer for a while as your function ran" in str(feedback), str(feedback)
    assert "a loop that never ends" not in str(feedback)


async def test_a_check_run_while_the_rooms_server_restarts_says_so_and_records_nothing(tmp_path: Path) -> None:
    from payments_lab.exercises import lesson02
    from payments_lab.progress import check_records
    from payments_lab.simulated_room import answer, open_learner_lab
    from payments_lab.verdicts import CheckOutcome

    db = tmp_path / "room.sqlite"
    server = EmbeddedServer(ui=False, db_file=db, namespaces=["ana"]).start()
    lab = await open_learner_lab(server.address, "ana")
    try:
        server.stop()  # the facilitator's Ctrl-C on `payments-lab room`
        with redirect_stderr(io.StringIO()):
            away = await lesson02.q2.check_async(answer(lesson02.q2, lab), lab=lab)
        assert away.outcome is CheckOutcome.INCORRECT
        assert away.message == f"The lab's Temporal server at {server.address} did not answer during the check: your answer was not judged."
        assert "run this check again once the server is back" in away.where_to_look and "lesson" not in away.where_to_look
        said = repr(away)
        assert "ex-" not in said and "DuplicatePaymentError" not in said and "status(" not in said

        port = int(server.address.rpartition(":")[2])
        server = EmbeddedServer(ui=False, db_file=db, namespaces=["ana"], port=port).start()  # the room, back
        with redirect_stderr(io.StringIO()):
            again = await lesson02.q2.check_async(answer(lesson02.q2, lab), lab=lab)
        assert again.outcome is CheckOutcome.CORRECT, again.message
        # Only the judged check counts in the room view: the one the server missed is no wrong answer.
        for _ in range(100):  # visibility lists a record a moment after its start
            if records := await check_records(lab.client):
                break
            await asyncio.sleep(0.1)
        assert [record.verdict for record in records] == ["correct"]
    finally:
        await lab.close()
        server.stop()


@posix_only
async def test_checkout_rides_out_a_stopped_server_and_a_start_it_leaves_unconfirmed_is_one_clear_error() -> None:
    """Off the script: lesson 11's checkout called the SDK bare, so Ctrl-Z on the server gave `RPCError: tcp connect
    error` (or nothing for 40 s) where the kit's other calls wait, and say so."""
    from payments_lab.checkout import Checkout

    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-checkout", server=server, options=FAST)
    lab.service.call_window = CALL_WINDOW
    checkout = Checkout(lab.service)
    try:
        waiting = lab.request("3.00")
        await checkout.start(waiting)
        await checkout.wait_until_waiting(waiting.payment_id)
        request = lab.request("5.00")
        said = io.StringIO()
        with redirect_stderr(said):
            with stopped(server), pytest.raises(TemporalUnavailableError, match="did not confirm the start"):
                await checkout.start(request)
            resume = stop(server)
            asyncio.get_running_loop().call_later(OUTAGE, resume)
            receipt = await asyncio.wait_for(checkout.confirm(waiting.payment_id), 90)
        assert receipt.approved and NOT_ANSWERING in said.getvalue(), "the confirmation waited through the outage, and said so"
        assert (await asyncio.wait_for(lab.service.handle(waiting.payment_id).result(), 60)).status is PaymentStatus.COMPLETED
    finally:
        await lab.close()
    assert lab.repository.charge_count(waiting.payment_id) == 1


@posix_only
async def test_a_right_answer_whose_wait_a_stopped_server_used_up_is_not_judged_nor_recorded() -> None:
    """Off the script: 10 Q2's right answer, the server stopped (Ctrl-Z) while it awaited the result: "did not return
    within 5 s ... a loop that never ends", and the red verdict went to the room view."""
    from payments_lab.exercises import lesson10
    from payments_lab.search_attributes import EXERCISE_ID

    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-10q2", server=server, options=FAST)
    resumes: list[Callable[[], None]] = []
    try:

        async def final_status(started):  # noqa: ANN001, ANN202 - the solution's, with a Ctrl-Z on the server
            resumes.append(stop(server))
            asyncio.get_running_loop().call_later(8, resumes[-1])
            return (await started.handle.result()).status

        with redirect_stderr(io.StringIO()):
            feedback = await lesson10.q2.check_async(final_status, lab=lab)
        records = [e async for e in lab.client.list_workflows(f"{EXERCISE_ID.name} = '10.q2'")]
    finally:
        for resume in resumes:
            resume()
        await lab.close()
    assert "your answer was not judged" in str(feedback) and "a loop that never ends" not in str(feedback), str(feedback)
    assert records == [], "no verdict recorded for the room view"


@posix_only
async def test_a_progress_query_begun_while_the_server_is_stopped_is_answered_once_it_is_back() -> None:
    """Off the script: `handle.progress()` sent during a Ctrl-Z of the server said "no worker answered ... start one"
    the moment the server came back, the worker polling all along; asked again, it answered at once."""
    async with charged_payment("stopped-progress", answer_after=30) as (server, lab, handle):
        with redirect_stderr(io.StringIO()):
            resume = stop(server)
            # Resumed just before a window ends: the worker polls again only seconds later.
            asyncio.get_running_loop().call_later(CALL_WINDOW.total_seconds() * 3 - 0.3, resume)
            try:
                progress = await handle.progress()
            finally:
                resume()
        assert progress.step == "charge"
        await handle.cancel()


@posix_only
async def test_a_server_that_dies_during_a_check_is_not_called_a_closed_lab() -> None:
    """Off the script: the lab's server crashed as a check ran: "`lab.close()` was called while the check ran (by your
    answer?)", though nobody had closed the lab."""
    from payments_lab.exercises import lesson01

    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("crashed-check", server=server, options=FAST)
    try:

        async def answer(handle):  # noqa: ANN001, ANN202 - any answer: the server dies under it
            server.kill()
            await asyncio.sleep(30)

        feedback = await lesson01.q2.check_async(answer, lab=lab)
        assert not lab.closed
    finally:
        await lab.close()
    assert "The lab's Temporal server stopped during the check: your answer was not judged" in str(feedback), str(feedback)
    assert "lab.close()" not in str(feedback)



@posix_only
async def test_a_worker_started_on_a_stopped_server_starts_after_the_ledger_check_window() -> None:
    """Off the script: `await lab.worker.start()` on a server stopped with Ctrl-Z waited 10 s (two reads of the
    queue's pollers, 5 s each) before it started anyway; the check now waits one window for both."""
    from payments_lab.worker import LEDGER_CHECK_WINDOW

    server = EmbeddedServer(ui=False).start()
    lab = await open_lab("stopped-worker-start", server=server, options=FAST)
    try:
        await lab.worker.stop()
        with stopped(server):
            began = time.monotonic()
            await lab.worker.start()
            waited = time.monotonic() - began
            assert lab.worker.running
        # A bound of no cell that hangs, not a speed target: the window and a loaded machine's slack, well under 10 s.
        assert waited < LEDGER_CHECK_WINDOW.total_seconds() + 2.5, waited
        result = await asyncio.wait_for(lab.service.process(lab.request("1.00")), 60)
        assert result.status is PaymentStatus.COMPLETED
    finally:
        await lab.close()
        server.stop()

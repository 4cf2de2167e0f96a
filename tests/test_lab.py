"""Tests of the notebook lab: one per name, payments with links, live fault profiles."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import psutil
import pytest

from conftest import OpenLab
from payments_lab.domain import PaymentStatus, Step
from payments_lab.errors import PaymentsLabError
from payments_lab.faults import FaultPlan, FaultProfile, StepFaults
from payments_lab.lab import LabClosedError, Link, open_lab
from payments_lab.messages import PaymentOptions
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentNotFoundError


async def test_opening_twice_returns_the_same_lab(open_test_lab: OpenLab) -> None:
    lab = await open_test_lab("twice", ui_url="http://ui")
    again = await open_test_lab("twice", ui_url="http://ui")
    other = await open_test_lab("other", ui_url="http://ui")
    try:
        assert again is lab and other is not lab
        assert lab.task_queue != other.task_queue
        assert lab.running and "twice" in repr(lab)
    finally:
        await lab.close()
        await other.close()
    assert not lab.running
    reopened = await open_lab("twice")
    assert reopened is not lab
    await reopened.close()


async def test_pay_and_change_faults_on_the_fly(open_test_lab: OpenLab) -> None:
    lab = await open_test_lab("faults", ui_url="http://ui")
    first = await lab.pay("19.99", "EUR", faults=FaultPlan.failing(charge=1))
    assert first.status is PaymentStatus.COMPLETED and str(first.amount) == "19.99"
    lab.fault_profile = FaultProfile(charge_failure_rate=1.0, charge_latency=0.0)
    request = lab.request("5", "EUR")
    handle = await lab.start(request, options=PaymentOptions(maximum_attempts=1))
    failed = await handle.result()
    assert failed.status is PaymentStatus.FAILED and "simulated processor failure" in failed.message
    assert lab.repository.charge_count(request.payment_id) == 0
    assert lab.new_payment_id() != lab.new_payment_id()


async def test_pay_refuses_a_currency_or_organization_that_a_request_would_ignore(open_test_lab: OpenLab) -> None:
    lab = await open_test_lab("pay-request", ui_url="http://ui")
    request = lab.request("10.00", "EUR")
    with pytest.raises(ValueError, match=r"currency='USD' \(the request says 'EUR'\) would be ignored: build the request"):
        await lab.pay(request, "USD", show_link=False)
    with pytest.raises(ValueError, match=r"organization_id='org-b' \(the request says 'org-acme'\)"):
        await lab.pay(request, organization_id="org-b", show_link=False)
    with pytest.raises(PaymentNotFoundError):
        await lab.service.status(request.payment_id)  # nothing was started
    same = await lab.pay(request, "EUR", organization_id="org-acme", show_link=False)  # saying what it says is fine
    assert same.status is PaymentStatus.COMPLETED and same.currency == "EUR"
    usd = await lab.pay("3.00", "USD", organization_id="org-b", show_link=False)
    assert usd.currency == "USD" and (await lab.service.status(usd.payment_id)).organization_id == "org-b"


async def test_a_link_refuses_an_id_no_payment_could_have_and_quotes_the_rest(open_test_lab: OpenLab) -> None:
    lab = await open_test_lab("links", ui_url="http://ui")
    with pytest.raises(ValueError, match=r"payment_id is not valid text: character 4 is .+, a lone surrogate"):
        lab.link("caf\udce9")
    with pytest.raises(ValueError, match="payment_id must be a string, not bytes"):
        lab.link(b"abc")  # type: ignore[arg-type]
    assert lab.link("a b/c?d#e").url == "http://ui/namespaces/default/workflows/payment-a%20b%2Fc%3Fd%23e"


async def test_waiting_for_a_charge_that_never_comes_says_where_to_look(open_test_lab: OpenLab) -> None:
    lab = await open_test_lab("never-charged", ui_url="http://ui")
    declined = await lab.pay("-5", show_link=False)
    with pytest.raises(TimeoutError, match=f"payment '{declined.payment_id}' was not charged within 0.2 s: .*service.status"):
        await lab.wait_until_charged(declined.payment_id, timeout=0.2)
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0, got '1'"):
        await lab.wait_until_charged(declined.payment_id, timeout="1")  # type: ignore[arg-type]


def test_links_render_as_text_and_html() -> None:
    link = Link("payment-p-1", "http://ui/namespaces/default/workflows/payment-p-1")
    assert str(link) == "payment-p-1: http://ui/namespaces/default/workflows/payment-p-1"
    assert 'href="http://ui/namespaces/default/workflows/payment-p-1"' in link._repr_html_()
    assert str(Link("payment-p-1", None)) == "payment-p-1"


async def test_a_lab_with_a_worker_process_survives_its_crash(open_test_lab: OpenLab, tmp_path) -> None:  # noqa: ANN001
    import pytest


    with pytest.raises(ValueError, match="needs a db_file"):
        await open_lab("crash", worker_process=True)
    lab = await open_test_lab("crash", db_file=tmp_path / "payments.sqlite", worker_process=True)
    try:
        fast = PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=2))
        handle = await lab.start(lab.request("8.00"), faults=FaultPlan(charge=StepFaults(delay=2)), options=fast)
        await lab.wait_until_charged(handle.payment_id)
        lab.worker.kill()  # type: ignore[union-attr]
        lab.worker.start()  # type: ignore[union-attr]
        result = await handle.result()
        assert result.status is PaymentStatus.COMPLETED
        assert lab.repository.charge_count(handle.payment_id) == 1
        with pytest.raises(RuntimeError, match="runs in its own process"):
            lab.fault_profile = FaultProfile()
    finally:
        await lab.close()
    assert not lab.worker.running
    with pytest.raises(LabClosedError) as closed:  # not a process that cannot reach the closed lab's server
        lab.worker.start()  # type: ignore[union-attr]
    # The line that opens it again keeps its settings: the name alone opened a lab with its worker in the kernel.
    assert f"open it again, `lab = await open_lab('crash', db_file={str(tmp_path / 'payments.sqlite')!r}, worker_process=True)`" in str(closed.value)
    assert not lab.worker.running


async def test_a_refused_option_starts_nothing(tmp_path) -> None:  # noqa: ANN001
    """A refusal in open_lab's cell must not leave a server or worker behind: the cell is run again, fixed."""
    server = EmbeddedServer(ui=False)
    with pytest.raises(ValueError, match="options must be PaymentOptions"):
        await open_lab("refused", options={"maximum_attempts": 5}, server=server)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fault_profile must be a FaultProfile"):
        await open_lab("refused", fault_profile=FaultPlan(), server=server)  # type: ignore[arg-type]
    # Off the script: a lab whose name makes a task queue no server takes opened, and every payment then failed.
    with pytest.raises(ValueError, match="the lab's name is 2,000 bytes long; a Temporal server takes at most 991"):
        await open_lab("x" * 2000, server=server)
    with pytest.raises(ValueError, match="the lab's name must be a name such as 'payments', got NoneType None"):
        await open_lab(None, server=server)  # type: ignore[arg-type]
    assert not server.running and server.pid is None, "refused before the server started"
    (tmp_path / "ledger").mkdir()
    with pytest.raises(PaymentsLabError):
        await open_lab("refused", db_file=tmp_path / "ledger", server=server)  # a folder, not a file: refused after connecting
    assert not server.running, "what had started was stopped"


@pytest.mark.parametrize("after", [0.05, 0.6, 1.5])
async def test_an_interrupted_open_lab_shows_one_line_and_leaves_nothing_running(after: float) -> None:
    """Off the script: the set-up cell interrupted while the lab opened showed 13 frames of asyncio and temporalio
    ending in a bare ``CancelledError:``. Interrupted at any moment, it leaves no server behind, and runs again."""
    server = EmbeddedServer(ui=False)
    opening = asyncio.ensure_future(open_lab(f"interrupted-{int(after * 100)}", server=server))
    await asyncio.sleep(after)
    opening.cancel()
    stopped_at_once = False
    try:
        lab = await opening
    except asyncio.CancelledError as stopped:
        stopped_at_once = True
        said = "".join(stopped._render_traceback_())  # type: ignore[attr-defined]
        assert "Stopped opening" in said and "run the cell again to open it" in said, said
        assert not server.running, "the server the interrupted opening had started is stopped"
        lab = await open_lab(f"interrupted-{int(after * 100)}", server=server)
    assert stopped_at_once or after > 0.05, "the server alone takes longer to start"
    try:
        assert lab.running and (await lab.pay("1.00", show_link=False)).status is PaymentStatus.COMPLETED
    finally:
        await lab.close()
    assert not server.running


async def test_a_lab_replaced_that_does_not_close_in_time_is_named_with_what_it_waited(caplog: pytest.LogCaptureFixture) -> None:
    from payments_lab.lab import _close_quietly

    class Stuck:
        name = "stuck"

        async def close(self) -> None:
            await asyncio.sleep(10)

    await _close_quietly(Stuck(), patience=0.05)  # type: ignore[arg-type]
    assert "The lab 'stuck' did not close within 0.05 s: what it still ran is left to end by itself." in caplog.text, caplog.text


async def test_a_private_lab_that_fails_to_open_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from payments_lab import privacy
    from payments_lab.codec import KEY_ENV, new_key

    monkeypatch.setenv(KEY_ENV, new_key())
    before = {child.pid for child in psutil.Process().children(recursive=True)}

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PaymentsLabError("refused after the worker started")

    monkeypatch.setattr(privacy, "PaymentService", refuse)
    with pytest.raises(PaymentsLabError, match="after the worker started"):
        await privacy.open_private_lab()
    after = [child for child in psutil.Process().children(recursive=True) if child.pid not in before and child.is_running()]
    assert [child.name() for child in after if child.status() != psutil.STATUS_ZOMBIE] == []
    assert privacy._OPEN == []


async def test_opening_a_lab_whose_server_died_closes_the_old_one_first(caplog: pytest.LogCaptureFixture) -> None:
    """The first cell run again after the lab's server died: the old worker must not poll a dead address for ever."""
    old = await open_lab("server-died", server=EmbeddedServer(ui=False))
    assert old.connection.server is not None
    await old.pay("1.00", show_link=False)  # its worker polls
    charging = await old.start(old.request("2.00"), faults=FaultPlan(charge=StepFaults(delay=30)), show_link=False)
    await old.wait_until_charged(charging.payment_id)
    old.connection.server.kill()
    assert not old.running
    opening = time.monotonic()
    with caplog.at_level(logging.WARNING):
        new = await open_lab("server-died", server=EmbeddedServer(ui=False))
    took = time.monotonic() - opening
    try:
        # Closing the old lab waited 11–18 s for its worker's last calls (a charge in flight), gave up after 10 s and
        # warned; the old worker now ends out of sight.
        assert took < 8 and "could not be closed" not in caplog.text and "did not close" not in caplog.text, (took, caplog.text)
        assert new is not old and new.running
        assert not old.worker.running, "the old lab's worker was stopped"
        assert (await new.pay("2.00", show_link=False)).status is PaymentStatus.COMPLETED
    finally:
        await new.close()


async def test_wait_until_step_returns_once_the_step_began_and_says_when_it_never_does(open_test_lab: OpenLab) -> None:
    lab = await open_test_lab("until-step", ui_url="http://ui")
    slow = await lab.start(lab.request("6.00"), faults=FaultPlan(validate=StepFaults(delay=30)), show_link=False)
    await lab.wait_until_step(slow.payment_id, "validate", timeout=10)
    assert [a.activity for a in lab.repository.attempts(slow.payment_id)] == ["validate_payment"]
    with pytest.raises(TimeoutError, match=f"no charge attempt of payment '{slow.payment_id}' began within 0.2 s: .*service.status"):
        await lab.wait_until_step(slow.payment_id, Step.CHARGE, timeout=0.2)
    await slow.cancel()
    assert (await slow.result()).status is PaymentStatus.CANCELLED
    with pytest.raises(ValueError, match="step must be one of 'validate', 'charge', 'notify', 'settle', got 'done'"):
        await lab.wait_until_step(slow.payment_id, "done")
    with pytest.raises(ValueError, match="payment_id must be"):
        await lab.wait_until_step(slow, "validate")  # type: ignore[arg-type]


async def test_a_closed_lab_says_so_and_how_to_open_it_again(open_test_lab: OpenLab) -> None:
    """Lesson 04 ends with ``await lab.close()``: a cell run after it used to wait 10 s and blame the server."""
    lab = await open_test_lab("closed")
    paid = await lab.pay("2.00", show_link=False)
    await lab.close()
    # `lab.worker.start()` too (lesson 04's crash cells, run again after its closing cell): it started a worker that
    # could never reach the lab's server, or polled on without a word.
    calls = (lambda: lab.pay("3.00", show_link=False), lambda: lab.wait_until_charged(paid.payment_id), lambda: lab.load_module("m", ""), lab.worker.start)
    for call in calls:
        with pytest.raises(LabClosedError, match="the lab 'closed' was closed .*: open it again, `lab = await open_lab\\('closed'\\)`"):
            await call()
    assert lab.closed and lab.repository.charge_count(paid.payment_id) == 1, "what it ran can still be read"


async def test_a_side_worker_finishes_its_payment_when_the_wait_is_interrupted_and_stops_with_the_lab(open_test_lab: OpenLab) -> None:
    """Lesson 07 ran its v2 worker in ``async with``: an interrupted wait stopped it and left the payment running."""
    import asyncio

    from payments_lab.evolution import PaymentWorkflowWithPatchedFraudScreen, screen_for_fraud
    from payments_lab.service import PaymentService

    lab = await open_test_lab("side")
    options = {"workflows": [PaymentWorkflowWithPatchedFraudScreen], "extra_activities": [screen_for_fraud]}
    first = await lab.side_worker("v2", **options)
    v2 = await lab.side_worker("v2", **options)  # the cell run again
    assert not first.running and v2.running and v2.task_queue == f"{lab.task_queue}-v2"
    screened = await PaymentService(lab.client, v2.task_queue).start(
        lab.request("30.00"), faults=FaultPlan(charge=StepFaults(delay=1.0))
    )
    waiting = asyncio.ensure_future(screened.result())
    await lab.wait_until_step(screened.payment_id, Step.CHARGE, timeout=20)
    waiting.cancel()  # the learner interrupts the cell
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await screened.result()).status is PaymentStatus.COMPLETED, "the side worker ran on"
    history = await screened.workflow.fetch_history()
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events]
    assert "screen_for_fraud" in scheduled, "run by the v2 code"
    assert lab.repository.charge_count(screened.payment_id) == 1
    with pytest.raises(ValueError, match="side worker name must be letters, digits"):
        await lab.side_worker("v2 beta", **options)
    await lab.close()
    assert not v2.running, "the lab stops its side workers"


async def test_a_closed_labs_service_handles_and_checkout_say_so_at_once() -> None:
    """A private lab's checkout used after close waited 10 s, then showed a 100-line tcp connect error."""
    import time

    from payments_lab.checkout import Checkout

    lab = await open_lab("closed-service", server=EmbeddedServer(ui=False))
    paid = await lab.pay("2.00", show_link=False)
    checkout = Checkout(lab.service)
    handle = lab.service.handle(paid.payment_id)
    await lab.close()
    started = time.monotonic()
    for call in (
        lambda: lab.service.status(paid.payment_id),
        lambda: handle.result(),
        lambda: lab.service.start(lab.request("3.00")),
        lambda: checkout.state(paid.payment_id),
        lambda: checkout.start(lab.request("4.00")),
        # Off the script: the bare temporalio objects lessons use waited 6-10 s, then showed a page of RPCError.
        lambda: handle.workflow.fetch_history(),
        lambda: lab.client.count_workflows(),
        lambda: lab.client.get_workflow_handle(handle.workflow_id).describe(),
    ):
        with pytest.raises(LabClosedError, match="open it again, `lab = await open_lab\\('closed-service'\\)`"):
            await call()
    await lab.close()  # off the script: the closing cell run again took 10 s, asking the stopped server what still ran
    assert time.monotonic() - started < 1, "at once, not after a call window"


async def test_closing_a_lab_on_its_own_server_says_which_payments_end_unfinished_and_the_money_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Off the script: a charged payment stuck before its notification (or waiting for its customer) went with the lab's
    own in-memory server in silence, its money taken and never settled."""
    lab = await open_lab("own-server-close", server=EmbeddedServer(ui=False))
    try:
        handle = await lab.start(lab.request("42.00"), faults=FaultPlan(charge=StepFaults(delay=30)), show_link=False)
        await lab.wait_until_charged(handle.payment_id)
        capsys.readouterr()
    finally:
        await lab.close()
    said = capsys.readouterr().out
    assert f"1 payment still ran on this lab's own server (payment-{handle.payment_id}), which stops with the lab" in said
    assert f"Charged and never settled: {handle.payment_id} (42.00 EUR taken)" in said and "lab.service.cancel" in said

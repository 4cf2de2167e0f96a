"""Early return on the real dev server: the first answer through Update-with-Start, the charge after it."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client

from conftest import FAST, interrupted, new_id
from payments_lab.activities import PaymentActivities
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.exercises.checking import events_of, first_index
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.latency import answer_times
from payments_lab.messages import TUNED, PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.service import DuplicatePaymentError, PaymentService
from payments_lab.worker import BackgroundWorker


@pytest.fixture
async def service(client: Client, task_queue: str, activities: PaymentActivities) -> AsyncIterator[PaymentService]:
    """A payment service whose worker runs on the session's dev server."""
    async with BackgroundWorker(client, task_queue, activities):
        yield PaymentService(client, task_queue, options=FAST)


def _request(amount: str = "25.00", organization_id: str = "org-acme") -> PaymentRequest:
    return PaymentRequest(new_id("e"), organization_id, "u-1", amount, "EUR", "early return test")  # type: ignore[arg-type]


def _names(history) -> list[str]:  # noqa: ANN001
    return [event.name for event in events_of(history)]


@pytest.mark.parametrize("options", [FAST, TUNED], ids=["regular-validation", "local-validation"])
async def test_the_answer_comes_before_the_charge_and_the_payment_completes(
    service: PaymentService, repository: PaymentRepository, options: PaymentOptions
) -> None:
    request = _request()
    started = await service.start_early(request, options=options)
    assert started.answer.accepted and started.answer.status is PaymentStatus.PROCESSING
    assert started.answer.payment_id == request.payment_id
    result = await started.handle.result()
    assert result.status is PaymentStatus.COMPLETED and repository.charge_count(request.payment_id) == 1
    events = events_of(await started.handle.history())
    completed = first_index(events, "WorkflowExecutionUpdateCompleted")
    charge = first_index(events, "ActivityTaskScheduled", "charge_payment")
    assert first_index(events, "WorkflowExecutionUpdateAccepted") is not None
    assert completed is not None and charge is not None
    # The answer and the charge's scheduling are written by the same workflow task: the
    # charge is only *scheduled* when the caller hears "accepted"; it starts after.
    assert completed < first_index(events, "ActivityTaskStarted", "charge_payment")  # type: ignore[operator]
    times = answer_times(await started.handle.history())
    assert 0 <= times["first answer"] <= times["end"]


async def test_a_declined_payment_answers_declined_and_starts_nothing_else(service: PaymentService, repository: PaymentRepository) -> None:
    request = _request(organization_id="org-unknown")
    started = await service.start_early(request, options=TUNED)
    assert not started.answer.accepted
    assert started.answer.status is PaymentStatus.DECLINED and "org-unknown" in started.answer.message
    assert (await started.handle.result()).status is PaymentStatus.DECLINED
    names = _names(await started.handle.history())
    assert "WorkflowExecutionUpdateCompleted" in names and "ActivityTaskScheduled" not in names
    assert repository.charge_count(request.payment_id) == 0


async def test_a_charge_that_fails_after_the_answer_is_settled(service: PaymentService, repository: PaymentRepository) -> None:
    request = _request("31.00")
    started = await service.start_early(request, options=TUNED, faults=FaultPlan(charge=StepFaults(fail_first=5)))
    assert started.answer.accepted, "the caller was told 'accepted'"
    result = await started.handle.result()
    assert result.status is PaymentStatus.FAILED and "charge gave up" in result.message
    names = _names(await started.handle.history())
    assert names.index("WorkflowExecutionUpdateCompleted") < names.index("ActivityTaskFailed")
    assert repository.charge_count(request.payment_id) == 0
    assert repository.notifications(request.payment_id) == [], "the kit notifies only completed payments"


async def test_a_payment_declined_by_the_processor_after_the_answer_is_refunded_nothing(
    service: PaymentService, repository: PaymentRepository
) -> None:
    request = _request("32.00")
    started = await service.start_early(request, options=TUNED, faults=FaultPlan(charge=StepFaults(decline=True)))
    assert started.answer.accepted
    result = await started.handle.result()
    assert result.status is PaymentStatus.FAILED
    assert [e.activity_type for e in events_of(await started.handle.history()) if e.name == "ActivityTaskScheduled"] == [
        "charge_payment",
        "settle_unfinished_payment",
    ]


async def test_the_same_payment_id_twice_is_refused_and_charged_once(service: PaymentService, repository: PaymentRepository) -> None:
    request = _request()
    started = await service.start_early(request, options=TUNED)
    await started.handle.result()
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    try:
        with pytest.raises(DuplicatePaymentError, match="already submitted") as refused:
            await service.start_early(request, options=TUNED)
        del refused  # its traceback holds the operation, whose handle holds the same failure
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert not [m for m in reported if "never retrieved" in m], "nothing printed later, into another cell"
    assert repository.charge_count(request.payment_id) == 1


async def test_an_interrupted_wait_for_the_first_answer_shows_one_line(client: Client, task_queue: str) -> None:
    """The ■ button during ``start_early``: one line on what it means, as for ``result()``, not asyncio's frames."""
    request = _request()
    started = time.monotonic()
    (line,) = await interrupted(PaymentService(client, task_queue).start_early(request), after=0.5)  # no worker: no answer
    assert time.monotonic() - started < 2, "the cell stops at once, not when Temporal's long poll ends"
    assert f"for payment {request.payment_id!r} (its first answer): the payment may have started and runs on" in line
    assert f"`await lab.service.cancel({request.payment_id!r})` cancels it" in line
    await client.get_workflow_handle(request.workflow_id).terminate("no worker in this test")


async def test_an_ordinary_start_runs_the_same_workflow_without_the_update(
    service: PaymentService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="temporalio.workflow")
    handle = await service.start(_request(), options=TUNED)
    assert (await handle.result()).status is PaymentStatus.COMPLETED
    assert not any(name.startswith("WorkflowExecutionUpdate") for name in _names(await handle.history()))
    assert "unfinished" not in caplog.text.lower()


async def test_a_payment_cancelled_before_its_answer_answers_cancelled(service: PaymentService, repository: PaymentRepository) -> None:
    import asyncio

    request = _request("33.00")
    slow_validation = FaultPlan(validate=StepFaults(delay=1.0))
    starting = asyncio.create_task(service.start_early(request, faults=slow_validation))  # validation: a regular activity
    while not repository.attempts(request.payment_id):  # validation is under way
        await asyncio.sleep(0.02)
    await service.cancel(request.payment_id)
    started = await starting
    assert not started.answer.accepted and started.answer.status is PaymentStatus.CANCELLED
    assert (await started.handle.result()).status is PaymentStatus.CANCELLED
    assert repository.charge_count(request.payment_id) == 0


async def test_a_first_answer_that_does_not_come_says_what_it_waits_for(client: Client, task_queue: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A cell waiting in start_early used to say nothing until its call gave up (30 s or more)."""
    service = PaymentService(client, task_queue)
    await service._say_what_a_first_answer_waits_for("pay-x", after=0)
    said = capsys.readouterr().err
    assert f"Payment 'pay-x' has no first answer after 0 s: no worker polls task queue {task_queue!r}" in said


async def test_a_worker_stopped_by_hand_counts_as_none_and_the_note_says_how_to_start_it(
    client: Client, task_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off the script: `await lab.worker.stop()`, then a payment. The server lists a stopped worker 5 minutes more, so the
    first answer's note blamed a slow validation and the result's wait said nothing."""
    worker = await BackgroundWorker(client, task_queue, PaymentActivities(PaymentRepository())).start()
    service = PaymentService(client, task_queue)
    await service.process(_request("1.00"))  # the server has seen this process poll the queue
    await worker.stop()
    await service._say_what_a_first_answer_waits_for("pay-x", after=0)
    said = capsys.readouterr().err
    assert f"no worker polls task queue {task_queue!r} (this kernel stopped its worker" in said
    assert "`await lab.worker.start()` starts it again" in said
    handle = await service.start(_request("2.00"))
    await handle._say_what_a_long_wait_waits_for(after=0)
    assert "`await lab.worker.start()` starts it again" in capsys.readouterr().err
    await worker.start()
    assert (await asyncio.wait_for(handle.result(), 20)).status is PaymentStatus.COMPLETED
    await service._say_what_a_first_answer_waits_for("pay-y", after=0)
    assert "no worker polls" not in capsys.readouterr().err, "started again, it polls"
    await worker.stop()


async def test_a_first_answer_past_its_rpc_timeout_says_the_payment_started_and_why(client: Client, task_queue: str) -> None:
    """Off the script: `start_early(..., rpc_timeout=3 s)` with no worker gave Temporal's bare "Timeout or cancellation
    waiting for update", though the payment had started and ran on."""
    from datetime import timedelta

    from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

    from payments_lab.service import FirstAnswerNotInTimeError

    request = _request("11.00")
    with pytest.raises(FirstAnswerNotInTimeError) as raised:
        await PaymentService(client, task_queue).start_early(request, options=TUNED, rpc_timeout=timedelta(seconds=2))
    said = str(raised.value)
    assert f"Payment {request.payment_id!r} started and runs on, but its first answer did not come within 2 s" in said
    assert f"no worker polls task queue {task_queue!r}" in said and f"lab.service.handle({request.payment_id!r}).result()" in said
    assert isinstance(raised.value, WorkflowUpdateRPCTimeoutOrCancelledError), "still the SDK's error for code that catches it"
    await client.get_workflow_handle(request.workflow_id).terminate("no worker in this test")


NO_ANSWER_UPDATE = '''from __future__ import annotations
from temporalio import workflow
from payments_lab.workflows import PaymentInput, PaymentResult
from payments_lab.domain import PaymentStatus

@workflow.defn(name="PaymentWorkflow")
class Plain:
    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentResult:
        request = input.request
        return PaymentResult(request.payment_id, PaymentStatus.COMPLETED, "ok", request.amount, request.currency)
'''


async def test_workflow_code_without_the_answer_update_says_what_early_return_needs(open_test_lab) -> None:  # noqa: ANN001
    """Off the script: a version loaded with lab.load_module that does not extend PaymentWorkflow gave Temporal's bare
    "Workflow update failed" to `start_early`."""
    from payments_lab.service import FirstAnswerRefusedError

    lab = await open_test_lab(f"no-answer-{new_id()}")
    await lab.load_module("plain", NO_ANSWER_UPDATE)
    request = lab.request("12.00")
    with pytest.raises(FirstAnswerRefusedError, match=r"started and runs on, but its workflow code could not give a first answer: no `answer` update") as raised:
        await lab.service.start_early(request, options=TUNED)
    assert "extending PaymentWorkflow" in str(raised.value)
    assert (await asyncio.wait_for(lab.service.handle(request.payment_id).result(), 30)).status is PaymentStatus.COMPLETED

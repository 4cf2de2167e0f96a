"""Tests of the payment service: status, cancel, visibility searches, counts and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from conftest import FAST, interrupted, new_id
from payments_lab.activities import PaymentActivities
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.errors import InvalidArgumentError
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.outage import within_window
from payments_lab.service import PaymentNotFoundError, PaymentService, QueryUnansweredError
from payments_lab.visibility import VisibilityQueryError, quoted
from payments_lab.worker import BackgroundWorker


def request(org: str = "org-acme", amount: str = "10.00") -> PaymentRequest:
    return PaymentRequest(new_id(), org, "u-1", amount, "EUR")


async def test_status_reports_a_running_then_completed_payment(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    service = PaymentService(client, task_queue, options=FAST, ui_url="http://ui")
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=0.5)))
        running = await service.status(paid.payment_id)
        assert running.is_running and running.workflow_status == "running"
        assert running.execution_time is None
        await handle.result()
        done = await service.status(paid.payment_id)
    assert (done.workflow_status, done.payment_status) == ("completed", PaymentStatus.COMPLETED)
    assert done.is_completed and not done.is_failed and not done.is_running
    assert done.organization_id == "org-acme" and done.task_queue == task_queue
    assert done.execution_time is not None and done.execution_time.total_seconds() > 0.4
    assert done.ui_url == f"http://ui/namespaces/default/workflows/payment-{paid.payment_id}"
    assert handle.ui_url == done.ui_url


async def test_unknown_payments_are_reported_as_such(client: Client, task_queue: str) -> None:
    service = PaymentService(client, task_queue)
    with pytest.raises(PaymentNotFoundError, match="no payment 'nope'"):
        await service.status("nope")
    with pytest.raises(PaymentNotFoundError):
        await service.cancel("nope")
    typo = service.handle("pay-typo")  # a handle is made without asking the server: its calls say it
    for call in (typo.result, typo.status, typo.progress, typo.history, typo.cancel):
        with pytest.raises(PaymentNotFoundError, match="no payment 'pay-typo' .*check the id"):
            await call()


async def test_search_count_and_metrics_through_visibility(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        outcomes = await asyncio.gather(
            service.process(request()),
            service.process(request()),
            service.process(request(org="org-globex")),
            service.process(request(amount="-1")),
            service.process(request(), faults=FaultPlan.failing(charge=9)),
        )
        running = await service.start(request(org="org-initech"), faults=FaultPlan(charge=StepFaults(delay=30)))
        assert [o.status.value for o in outcomes] == ["completed", "completed", "completed", "declined", "failed"]
        while (await running.progress()).step != "charge":
            await asyncio.sleep(0.05)

        acme = await service.find_by_organization("org-acme")
        assert len(acme) == 4 and all(r.organization_id == "org-acme" for r in acme)
        assert [r.started_at for r in acme] == sorted((r.started_at for r in acme), reverse=True)
        assert await service.count() == 6
        assert await service.count(organization_id="org-acme", status=PaymentStatus.COMPLETED) == 2
        assert await service.count(status="declined") == 1
        failed = await service.search(status=PaymentStatus.FAILED)
        assert len(failed) == 1 and failed[0].is_failed

        metrics = await service.metrics()
        assert metrics.running == 1
        assert metrics.by_status == {"pending": 1, "completed": 3, "declined": 1, "failed": 1}
        assert (metrics.completed, metrics.failed, metrics.total) == (3, 1, 6)
        assert metrics.mean_execution_time is not None and metrics.mean_execution_time.total_seconds() > 0
        await running.cancel()
        await running.result()


async def test_unscoped_service_sees_other_task_queues(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    paid = request(org="org-gyroscops")
    async with BackgroundWorker(client, task_queue, activities):
        await PaymentService(client, task_queue, options=FAST).process(paid)
    elsewhere = PaymentService(client, "another-queue")
    assert await elsewhere.count(organization_id="org-gyroscops", query=f"WorkflowId = 'payment-{paid.payment_id}'") == 0
    everywhere = PaymentService(client, "another-queue", scoped=False)
    assert await everywhere.count(query=f"WorkflowId = 'payment-{paid.payment_id}'") == 1


async def test_queries_quote_what_they_are_given(client: Client, task_queue: str) -> None:
    assert quoted("it's") == "'it\\'s'"
    service = PaymentService(client, task_queue)
    assert await service.count(organization_id="org' OR '1'='1") == 0


@pytest.mark.parametrize(
    ("query", "server_says"),
    [
        ("Nope = 1", "invalid search attribute: Nope"),
        ("PaymentStatus = completed", 'did you forget to quote "completed"'),
        ("PaymentStatus == 'x'", "syntax error"),
    ],
)
async def test_a_query_the_server_refuses_is_said_with_the_whole_query_and_what_it_may_say(
    client: Client, task_queue: str, query: str, server_says: str
) -> None:
    service = PaymentService(client, task_queue)
    for ask in (service.search, service.count):
        with pytest.raises(VisibilityQueryError) as refused:
            await ask(query=query)
        message = str(refused.value)
        assert server_says in message
        assert f"TaskQueue = '{task_queue}' AND ({query})" in message  # the query as sent, the kit's conditions included
        assert "PaymentStatus = 'completed'" in message  # how a value is quoted


async def test_search_refuses_arguments_of_the_wrong_kind_before_asking_the_server(client: Client, task_queue: str) -> None:
    service = PaymentService(client, task_queue)
    with pytest.raises(ValueError, match="limit must be a whole number >= 0, got -1"):
        await service.search(limit=-1)
    with pytest.raises(ValueError, match="limit must be a whole number >= 0, got '3'"):
        await service.search(limit="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="organization_id must be a string such as 'org-acme', not int 5"):
        await service.search(organization_id=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be a visibility query as a string"):
        await service.count(query=5)  # type: ignore[arg-type]
    # What no server takes is refused at once (a NUL used to be read as an outage and waited for 2 minutes).
    with pytest.raises(ValueError, match=r"organization_id contains a control character \('\\x00'\)"):
        await service.count(organization_id="a\x00b")
    for ask in (service.count(organization_id="caf\udce9"), service.search(organization_id="caf\udce9"), service.find_by_organization("caf\udce9")):
        with pytest.raises(ValueError, match="organization_id is not valid text: character 4 is .*a lone surrogate"):
            await ask
    with pytest.raises(ValueError, match="query contains a NUL character at position 18"):
        await service.search(query="OrganizationId = \x00")
    with pytest.raises(ValueError, match="query is not valid text: character 22 is"):
        await service.search(query="OrganizationId = 'caf\udce9'")
    assert await service.search(limit=0) == []


async def test_a_result_is_asked_for_again_each_window_and_still_arrives(
    client: Client, task_queue: str, activities: PaymentActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server may drop the notice that a workflow closed and hold a result request for
    # its full 20 s; asking again every window bounds that wait. Count the real requests.
    service = PaymentService(client, task_queue, options=FAST, result_poll_window=timedelta(seconds=1))
    history_calls = 0
    fetch = client.workflow_service.get_workflow_execution_history

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal history_calls
        history_calls += 1
        return await fetch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client.workflow_service, "get_workflow_execution_history", counted)
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(request(), faults=FaultPlan(charge=StepFaults(delay=2.5)))
        started = time.monotonic()
        result = await handle.result()
    assert result.status is PaymentStatus.COMPLETED
    assert 2.0 < time.monotonic() - started < 10
    assert history_calls >= 2  # one window could not have covered 2.5 s


async def test_a_window_too_short_for_the_server_still_gives_the_result(
    client: Client, task_queue: str, activities: PaymentActivities
) -> None:
    # 10 ms leaves the server no time to answer within the window: each request ends in
    # DEADLINE_EXCEEDED and is made again, until the workflow has closed.
    service = PaymentService(client, task_queue, options=FAST, result_poll_window=timedelta(milliseconds=10))
    async with BackgroundWorker(client, task_queue, activities):
        result = await service.process(request(), faults=FaultPlan(charge=StepFaults(delay=0.5)))
    assert result.status is PaymentStatus.COMPLETED


def test_the_windows_and_timeouts_must_be_durations_in_range(client: Client) -> None:
    with pytest.raises(ValueError, match="result_poll_window must be a positive timedelta, got datetime.timedelta"):
        PaymentService(client, "q", result_poll_window=timedelta(0))
    with pytest.raises(ValueError, match="call_window must be a positive timedelta, got datetime.timedelta"):
        PaymentService(client, "q", call_window=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="call_window must be a positive timedelta, got 5"):
        PaymentService(client, "q", call_window=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="execution_timeout must be a positive timedelta or None, got 60"):
        PaymentService(client, "q", execution_timeout=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outage_wait must be a timedelta >= 0 or None, got 120"):
        PaymentService(client, "q", outage_wait=120)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task_queue must be the name of the workers' task queue, got 7"):
        PaymentService(client, 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task_queue must be the name"):
        PaymentService(client, "")
    assert PaymentService(client, "", scoped=False).task_queue == ""  # finds payments, starts none
    assert PaymentService(client, "q", outage_wait=timedelta(0)).outage_wait == timedelta(0)


async def test_a_request_a_live_server_leaves_unanswered_gets_its_windows_then_raises_as_it_did(client: Client) -> None:
    # The server answers its health check, so an expired window means busy, not gone: the
    # request is made again, up to its windows, and its own error is raised, not an outage.
    windows: list[timedelta] = []

    async def never_answered(window: timedelta) -> None:
        windows.append(window)
        raise RPCError("Timeout expired", RPCStatusCode.CANCELLED, b"")

    with pytest.raises(RPCError) as raised:
        await within_window(never_answered, client, timedelta(seconds=1), windows=3)
    assert windows == [timedelta(seconds=1)] * 3
    assert raised.value.status is RPCStatusCode.CANCELLED


async def test_a_query_no_worker_answers_is_a_clear_error_and_the_server_still_describes(client: Client, task_queue: str) -> None:
    # No worker polls this task queue: the query waits for one until its window ends.
    service = PaymentService(client, task_queue, options=FAST, call_window=timedelta(seconds=1))
    handle = await service.start(request())
    with pytest.raises(QueryUnansweredError) as raised:
        await handle.progress()
    assert repr(task_queue) in str(raised.value) and "handle.status()" in str(raised.value)
    assert f"payments-lab worker --task-queue {task_queue}" in str(raised.value)
    assert (await handle.status()).workflow_status == "running"
    # A service that only finds payments (the command line's) names the workflow's own task queue.
    finder = PaymentService(client, "", scoped=False, call_window=timedelta(seconds=1))
    with pytest.raises(QueryUnansweredError, match=f"task queue {task_queue!r}: none polls it"):
        await finder.handle(handle.payment_id).progress()
    await handle.workflow.terminate("test over")


@pytest.mark.parametrize(
    ("start_options", "message"),
    [
        ({"faults": StepFaults(fail_first=1)}, r"faults must be a FaultPlan, got the faults of one step: say which"),
        ({"faults": {"charge": {"fail_first": 1}}}, r"faults must be a FaultPlan"),
        ({"options": {"charge_timeout": 5}}, r"options must be PaymentOptions"),
        ({"execution_timeout": 60}, r"execution_timeout must be a positive timedelta or None, got 60"),
        ({"execution_timeout": timedelta(0)}, r"execution_timeout must be a positive timedelta or None"),
    ],
)
async def test_a_start_with_faults_options_or_timeouts_of_the_wrong_kind_is_refused_and_starts_nothing(
    client: Client, task_queue: str, start_options: dict[str, object], message: str
) -> None:
    # Before, the workflow read a StepFaults as a plan without faults: the learner's failure never happened.
    service = PaymentService(client, task_queue)
    refused = request()
    with pytest.raises(ValueError, match=message):
        await service.start(refused, **start_options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        await service.start_early(refused, **start_options)  # type: ignore[arg-type]
    with pytest.raises(PaymentNotFoundError):
        await service.status(refused.payment_id)


@pytest.mark.parametrize("not_a_request", ["10.00", {"amount": "10"}, None])
async def test_a_start_from_anything_but_a_request_says_how_to_build_one(client: Client, task_queue: str, not_a_request: object) -> None:
    """Off the script: `lab.start("10.00")`, as `lab.pay` takes it, failed with an AttributeError from inside the kit."""
    service = PaymentService(client, task_queue)
    for start in (service.start, service.start_early, service.process):
        with pytest.raises(InvalidArgumentError, match=r"a payment starts from a PaymentRequest, not .*`lab.request\('10.00'\)`"):
            await start(not_a_request)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task_queue", "message"),
    [
        ("x" * 2000, "task_queue is 2,000 bytes long; a Temporal server takes at most 1,000"),
        ("pay\tments", r"task_queue 'pay\\tments' holds a control character"),
        ("pay\u200bments", "holds an invisible character"),
        ("pay\udcffments", "task_queue is not valid text"),
    ],
)
async def test_a_task_queue_no_server_or_terminal_takes_is_refused_at_the_door(client: Client, task_queue: str, message: str) -> None:
    """Off the script: a 2,000-character queue failed every payment with the server's RPCError; a tab started one that
    stayed pending, and the hint's `payments-lab worker --task-queue` command did not reach its queue."""
    with pytest.raises(InvalidArgumentError, match=message):
        PaymentService(client, task_queue)


def test_a_query_whose_parentheses_do_not_pair_up_is_refused_before_it_escapes_the_labs_scope(client: Client) -> None:
    """Off the script: `count(query="A = 'x') OR (A = 'x'")` closed the kit's parentheses and counted every lab's payments."""
    service = PaymentService(client, "payments")
    with pytest.raises(InvalidArgumentError, match=r"query's parentheses do not pair up \(the '\)' at position 28\)"):
        service.visibility_query(extra="PaymentStatus = 'completed') OR (PaymentStatus = 'completed'")
    assert service.visibility_query(extra="Description = 'a (b' AND (PaymentStatus = 'failed')").endswith("(PaymentStatus = 'failed'))")


async def test_a_start_with_a_task_timeout_in_seconds_is_refused(client: Client, task_queue: str) -> None:
    with pytest.raises(ValueError, match="task_timeout must be a positive timedelta or None, got 10"):
        await PaymentService(client, task_queue).start(request(), task_timeout=10)  # type: ignore[arg-type]


def test_a_service_refuses_default_options_of_the_wrong_kind(client: Client) -> None:
    with pytest.raises(ValueError, match="options must be PaymentOptions"):
        PaymentService(client, "payments", options={"charge_timeout": 5})  # type: ignore[arg-type]


def test_a_workflow_status_reads_the_same_from_visibility_and_from_a_history() -> None:
    """describe() and a history's closing event must name an ending with the same word (tables, charts, checks mix them)."""
    from payments_lab.history.decoding import WORKFLOW_CLOSED
    from payments_lab.service import _WORKFLOW_STATUS_NAMES

    assert set(WORKFLOW_CLOSED.values()) == set(_WORKFLOW_STATUS_NAMES.values()) - {"running"}


async def test_a_long_wait_on_a_step_retried_without_limit_says_what_it_waits_for(
    client: Client, task_queue: str, activities: PaymentActivities, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = PaymentService(client, task_queue, options=replace(FAST, maximum_attempts=0))
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(PaymentRequest(new_id(), "org-acme", "u", "25.00", "EUR"), faults=FaultPlan.failing(charge=1000))
        while (await handle.progress()).step != "charge" or len(activities.repository.attempts(handle.payment_id)) < 3:
            await asyncio.sleep(0.1)
        await handle._say_what_a_long_wait_waits_for(after=0)
        said = capsys.readouterr().err
        assert f"Payment {handle.payment_id!r} is still running: its charge step failed" in said
        assert "(last: simulated processor outage" in said and "is retried (no limit, the next one in" in said
        assert f"press Ctrl-C to stop waiting (the payment runs on), or cancel it: `payments-lab cancel {handle.payment_id}`" in said, (
            "off the script: `payments-lab pay` in a terminal said to interrupt a kernel and await a lab's service"
        )
        monkeypatch.setattr("payments_lab.interrupts.in_a_kernel", lambda: True)  # the same wait in a notebook
        await handle._say_what_a_long_wait_waits_for(after=0)
        said = capsys.readouterr().err
        assert f"interrupt the kernel to stop waiting (the payment runs on), or cancel it: `await lab.service.cancel({handle.payment_id!r})`" in said
        await handle.cancel()
        assert (await handle.result()).status is PaymentStatus.CANCELLED
        slow = await service.start(PaymentRequest(new_id(), "org-acme", "u", "7.00", "EUR"), faults=FaultPlan(charge=StepFaults(delay=3)))
        while not activities.repository.ledger(slow.payment_id):
            await asyncio.sleep(0.1)
        await slow._say_what_a_long_wait_waits_for(after=0)
        assert f"Payment {slow.payment_id!r} is still running: its charge step has been running for" in capsys.readouterr().err
        assert (await slow.result(say_after=None)).status is PaymentStatus.COMPLETED
    quiet = await service.start(PaymentRequest(new_id(), "org-acme", "u", "5.00", "EUR"))
    await quiet._say_what_a_long_wait_waits_for(after=0)  # nothing retried: nothing to say
    assert capsys.readouterr().err == ""
    await quiet.workflow.terminate("no worker in this test")


async def test_an_interrupted_wait_shows_one_line_on_what_it_means(client: Client, task_queue: str) -> None:
    """The ■ button cancels the cell's await: IPython shows ``_render_traceback_`` instead of asyncio's frames."""
    service = PaymentService(client, task_queue)
    handle = await service.start(PaymentRequest(new_id(), "org-acme", "u", "5.00", "EUR"))  # no worker: it waits
    (line,) = await interrupted(handle.result())
    assert f"for payment {handle.payment_id!r} (its result): the payment runs on" in line
    assert f"`await lab.service.cancel({handle.payment_id!r})` cancels it" in line
    await handle.workflow.terminate("no worker in this test")


async def test_an_interrupted_start_shows_one_line_on_whether_the_payment_started(client: Client, task_queue: str) -> None:
    """Off the script: ■ right after a lesson's start cell showed an 11-frame CancelledError through the kit and temporalio."""
    service = PaymentService(client, task_queue)
    request = PaymentRequest(new_id(), "org-acme", "u", "5.00", "EUR")
    (line,) = await interrupted(service.start(request), after=0)
    assert f"the start of payment {request.payment_id!r}: it may have started" in line
    assert f"`await lab.service.status({request.payment_id!r})` tells; starting it again is safe" in line
    with contextlib.suppress(RPCError):  # it may have reached the server (nothing polls its queue), or not
        await service.handle(request.payment_id).workflow.terminate("no worker in this test")


async def test_a_long_wait_on_a_queue_no_worker_polls_says_so_and_what_to_start(
    client: Client, task_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A payment on a queue nothing polls (a typo, a lab's queue after its kernel ended) used to wait in silence."""
    handle = await PaymentService(client, task_queue).start(PaymentRequest(new_id(), "org-acme", "u", "5.00", "EUR"))
    await handle._say_what_a_long_wait_waits_for(after=0)
    said = capsys.readouterr().err
    assert f"{handle.workflow_id} is waiting for its next workflow task, and no worker polls its task queue {task_queue!r}" in said
    assert f"`payments-lab worker --task-queue {task_queue}`" in said
    await handle.workflow.terminate("no worker in this test")


async def test_a_namespace_changed_under_the_lab_is_repaired_or_named_not_a_raw_rpc_error() -> None:
    """Off the script (rooms round): search attributes removed by hand, or the namespace deleted, while a learner's lab was
    open: `lab.pay()` and every check ended in a raw RPCError, and opening the lab again returned the same lab."""
    from temporalio.api.operatorservice.v1 import DeleteNamespaceRequest, RemoveSearchAttributesRequest

    from payments_lab.client import NamespaceNotFoundError, connect
    from payments_lab.repository import PaymentRepository
    from payments_lab.search_attributes import ALL
    from payments_lab.server import EmbeddedServer

    with EmbeddedServer(ui=False, namespaces=["ana"]) as server:
        client = (await connect(address=server.address, namespace="ana")).client
        queue = f"ns-{new_id()}"
        async with BackgroundWorker(client, queue, PaymentActivities(PaymentRepository())):
            service = PaymentService(client, queue, options=FAST)
            await client.operator_service.remove_search_attributes(
                RemoveSearchAttributesRequest(namespace="ana", search_attributes=[key.name for key in ALL])
            )
            result = await service.process(PaymentRequest(new_id("p"), "org-acme", "u", "1.00", "EUR"))
            assert result.status is PaymentStatus.COMPLETED, "the attributes were added back, as connecting adds them"
            await client.operator_service.delete_namespace(DeleteNamespaceRequest(namespace="ana"))
            with pytest.raises(NamespaceNotFoundError, match=r"the namespace 'ana' is gone from the Temporal server .*nothing started"):
                await service.start(PaymentRequest(new_id("p"), "org-acme", "u", "1.00", "EUR"))


async def test_an_early_start_in_a_namespace_changed_under_the_lab_is_repaired_or_named_not_a_raw_rpc_error() -> None:
    """`start_early` (Update-with-Start) did not go through the repair `start` has: search attributes removed by hand gave
    a raw RPCError ("no mapping defined for search attribute"), and a deleted namespace another ("Namespace … is not
    found"), from `lab.service.start_early` and from lesson 10's checks. The refused attempt's failure is read: asyncio
    must not print "never retrieved" later, into another cell."""
    import gc

    from temporalio.api.operatorservice.v1 import DeleteNamespaceRequest, RemoveSearchAttributesRequest

    from payments_lab.client import NamespaceNotFoundError, connect
    from payments_lab.messages import TUNED
    from payments_lab.repository import PaymentRepository
    from payments_lab.search_attributes import ALL
    from payments_lab.server import EmbeddedServer

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    try:
        with EmbeddedServer(ui=False, namespaces=["ana"]) as server:
            client = (await connect(address=server.address, namespace="ana")).client
            queue = f"ns-{new_id()}"
            async with BackgroundWorker(client, queue, PaymentActivities(PaymentRepository())):
                service = PaymentService(client, queue, options=FAST)
                await client.operator_service.remove_search_attributes(
                    RemoveSearchAttributesRequest(namespace="ana", search_attributes=[key.name for key in ALL])
                )
                started = await service.start_early(PaymentRequest(new_id("p"), "org-acme", "u", "1.00", "EUR"), options=TUNED)
                assert started.answer.accepted, "the attributes were added back, as connecting adds them"
                assert (await started.handle.result()).status is PaymentStatus.COMPLETED
                await client.operator_service.delete_namespace(DeleteNamespaceRequest(namespace="ana"))
                with pytest.raises(NamespaceNotFoundError, match=r"the namespace 'ana' is gone from the Temporal server .*nothing started"):
                    await service.start_early(PaymentRequest(new_id("p"), "org-acme", "u", "1.00", "EUR"), options=TUNED)
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert not [m for m in reported if "never retrieved" in m], "nothing printed later, into another cell"

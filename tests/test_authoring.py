"""Tests of workflow code written in a cell: loaded with the sandbox intact, replaced, refused with one message."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from conftest import OpenLab
from payments_lab.authoring import LoadedModule, WorkflowModuleError, WorkflowModules, deploy
from payments_lab.domain import PaymentStatus
from payments_lab.evolution import replay
from payments_lab.exercises.checking import events_of, scheduled_activities
from payments_lab.exercises.lesson09 import VERSION_2_HEAD
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import Lab
from payments_lab.workflow_tasks import (
    NoTaskFailureError,
    WorkerLog,
    WorkflowTaskFailingError,
    pending_task,
    task_failures,
    until_task_fails,
    wait_for_task_failure,
)
from payments_lab.workflows import PaymentWorkflow

HEAD = VERSION_2_HEAD + "    def notification_message(self, request, charge):\n"
"""Lesson 09's version 2 of the payment workflow, up to the body of its notification message."""

BUGGY = HEAD + '''        receipt = {"charge_id": charge.charge_id}
        return f"receipt {receipt['receipt_id']}"
'''
"""A version whose notification step raises KeyError on line 14, after the charge."""
FIXED = BUGGY.replace("['receipt_id']", "['charge_id']")
SHORT_TASK = timedelta(seconds=1)
"""Workflow task timeout of the payments here: a failed task is retried within a second."""


def after_future(lines: str) -> str:
    """A module that runs ``lines`` right after its ``__future__`` import, and notifies with ''."""
    first, rest = HEAD.split("\n", 1)
    return f"{first}\n{lines}{rest}        return ''\n"


def notification_text(history: object) -> bytes:
    """The encoded input of the history's ``send_notification`` activity."""
    for event in history.events:  # type: ignore[attr-defined]
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "send_notification":
                return attributes.input.payloads[0].data
    raise AssertionError("no send_notification in the history")


@pytest.fixture
async def lab(open_test_lab: OpenLab) -> Lab:
    return await open_test_lab("authoring")


async def test_a_payment_stuck_on_a_bug_carries_on_with_the_fix_charged_once(lab: Lab) -> None:
    log = WorkerLog().start()
    loaded = await lab.load_module("payment_v2", BUGGY)
    assert loaded.module_name.startswith("payment_v2_") and list(loaded.workflows) == ["PaymentWorkflow"]
    request = lab.request("42.00")
    handle = await lab.start(request, task_timeout=SHORT_TASK, show_link=False)
    failure = await wait_for_task_failure(handle.workflow)

    assert (failure.cause, failure.error_type, failure.message) == ("workflow worker unhandled failure", "KeyError", "'receipt_id'")
    assert failure.where is not None
    assert (failure.where.file_name, failure.where.line, failure.where.function) == (loaded.path.name, 14, "notification_message")
    assert "receipt_id" in failure.where.code
    status = await handle.status()
    assert status.workflow_status == "running" and lab.repository.charge_count(request.payment_id) == 1
    pending = await pending_task(handle.workflow)
    assert pending is not None and pending.attempt >= 1

    log.stop()
    assert (request.workflow_id, "KeyError: 'receipt_id'") in log.failures
    assert logging.getLogger(WorkerLog.LOGGER).propagate and not logging.getLogger(WorkerLog.LOGGER).handlers

    stuck = await handle.history()
    fixed = await lab.load_module("payment_v2", FIXED, restart_worker=False)
    (outcome,) = await replay([stuck], fixed.workflows["PaymentWorkflow"])
    assert outcome.ok, outcome.error

    await lab.load_module("payment_v2", FIXED)
    result = await handle.result()
    history = await handle.history()
    assert result.status is PaymentStatus.COMPLETED
    # The same run, carried on: what was recorded while it waited is the start of its history.
    # (Up to its last written failure: the server adds the pending attempt's events to a fetched history until
    # the attempt ends.)
    written = max(f.event_id for f in task_failures(stuck))
    assert list(history.events)[:written] == list(stuck.events)[:written]
    assert scheduled_activities(history) == ["validate_payment", "charge_payment", "send_notification"]
    assert lab.repository.charge_count(request.payment_id) == 1
    # Lesson 09's chart of that history shows the failed tasks (they were drawn grey, like completed ones).
    from matplotlib.colors import to_hex

    from payments_lab.charts import OUTCOME_COLOURS, timeline_chart

    (ax,) = timeline_chart(history).axes
    task_colours = [to_hex(p.get_facecolor()) for p in ax.patches if p.get_gid() == "workflow-task"]
    assert task_colours.count(OUTCOME_COLOURS["failed"].lower()) == len(task_failures(history)) >= 1
    assert "workflow task failed" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert result.charge_id is not None and result.charge_id.encode() in notification_text(history)
    names = [e.name for e in events_of(history)]
    assert names.index("WorkflowTaskFailed") < names.index("ActivityTaskScheduled", names.index("WorkflowTaskFailed"))
    assert task_failures(history)[0].event_id == failure.event_id


async def test_the_same_name_loaded_again_runs_the_new_source(lab: Lab) -> None:
    """Two sources of the same length, written in the same second: no stale module nor bytecode may run."""
    texts = []
    for version in ("version-one", "version-two"):
        source = HEAD + f'        return "{version}"\n'
        loaded = await lab.load_module("same_name", source)
        assert loaded.path.read_text() == source
        result = await lab.pay("3.00", show_link=False)
        texts.append(notification_text(await lab.service.handle(result.payment_id).history()))
    assert b"version-one" in texts[0] and b"version-two" in texts[1]
    assert lab.modules is not None and lab.modules.current["same_name"].revision == 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (HEAD + "        return charge.message +\n", "same_name, line 13: invalid syntax"),
        (after_future("import not_a_module_of_anyone\n"), "cannot import 'not_a_module_of_anyone'"),
        (
            after_future("import datetime\nSTARTED = datetime.datetime.now()\n"),
            "same_name, line 3: the sandbox refused `datetime.datetime.now`",
        ),
        ("X = 1\n", "defines no workflow and no activity"),
        ("X = {}['missing']\n", "same_name, line 1: importing the module raised KeyError"),
        ("import sys\nsys.exit(3)\n", "same_name, line 2: importing the module raised SystemExit: 3"),
        (HEAD + "        return 'caf\udce9'\n", "same_name, line 13: '\\udce9' is not valid text (a lone surrogate"),
        (HEAD + "        return ''\n\x00", "same_name: source code string cannot contain null bytes"),
        (
            HEAD.replace("async def run", "def run").replace("return await super().run(input)", "return None") + "        return ''\n",
            ": Temporal refused a definition (ValueError: Workflow run method must be an async function)",  # the line differs between Python versions
        ),
        (
            HEAD + "        return ''\n" + HEAD.split("\n\n\n", 1)[1].replace("PaymentWorkflowV2", "PaymentWorkflowV3") + "        return ''\n",
            "PaymentWorkflowV2 and PaymentWorkflowV3 both define workflow 'PaymentWorkflow'",
        ),
    ],
    ids=["syntax", "import", "sandbox", "no-workflow", "raises-at-import", "sys-exit", "surrogate", "nul", "sync-run", "same-workflow-twice"],
)
async def test_a_module_that_cannot_run_is_one_message_and_the_worker_keeps_its_code(lab: Lab, source: str, message: str) -> None:
    await lab.load_module("same_name", HEAD + '        return "kept"\n')
    before = lab.worker.workflows  # type: ignore[union-attr]
    with pytest.raises(WorkflowModuleError) as raised:
        await lab.load_module("same_name", source)
    assert message in str(raised.value), str(raised.value)
    assert "previous version" in str(raised.value) or "no workflow" in str(raised.value)
    assert raised.value._render_traceback_() == [f"\x1b[31mWorkflowModuleError\x1b[0m: {raised.value}"]
    assert lab.worker.running and lab.worker.workflows == before  # type: ignore[union-attr]
    assert (await lab.pay("1.00", show_link=False)).status is PaymentStatus.COMPLETED


@pytest.mark.parametrize("name", ["", "1st", "with-dash", "class", "_private", 3])
def test_a_module_name_must_be_an_identifier(name: object, tmp_path: object) -> None:
    modules = WorkflowModules(tmp_path)  # type: ignore[arg-type]
    try:
        with pytest.raises(ValueError, match="a module name is a Python identifier") as refused:
            modules.load(name, "X = 1")  # type: ignore[arg-type]
        assert len(refused.value._render_traceback_()) == 1, "one red line in a notebook"  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match=r"must be text, got bytes: decode it \(source.decode\('utf-8'\)\)"):
            modules.load("payment_v2", b"X = 1")  # type: ignore[arg-type]
    finally:
        modules.close()


@pytest.mark.parametrize(
    ("top_level", "line", "stopped"),
    [("n = 0\nwhile True: n += 1\n", 2, True), ("import time\ntime.sleep(2)\n", 2, False)],
    ids=["python-loop", "wait-in-c"],
)
def test_a_module_whose_top_level_runs_on_is_reported_instead_of_hanging_the_cell(top_level: str, line: int, stopped: bool) -> None:
    modules = WorkflowModules(import_deadline=0.3)
    try:
        with pytest.raises(WorkflowModuleError) as raised:
            modules.load("runs_on", top_level)
        message = str(raised.value)
        assert f"runs_on, line {line}: importing the module did not finish within 0.3 s" in message, message
        assert ("restart the kernel" in message) is not stopped, message
        assert not [m for m in sys.modules if m.startswith("runs_on_")]
        # The cell can be corrected and run again at once.
        assert modules.load("runs_on", HEAD + '        return "fixed"\n').revision == 2
    finally:
        modules.close()


async def _longest_stall_of_the_loop_during(work: Any) -> float:
    """Await ``work`` with a task ticking beside it; the longest the event loop went without a tick, in seconds."""
    ticks = [time.monotonic()]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.02)
            ticks.append(time.monotonic())

    ticking = asyncio.create_task(tick())
    try:
        await work
    finally:
        ticking.cancel()
        ticks.append(time.monotonic())
    return max(later - earlier for earlier, later in zip(ticks, ticks[1:]))


@pytest.mark.parametrize(
    ("top_level", "loads"),
    [
        # Slow outside the sandbox only: the sandbox's own imports of the module (validation) are not what is measured.
        ("from temporalio import workflow as _w\nimport time\nif not _w.unsafe.in_sandbox(): time.sleep(1.5)\n", True),
        ("n = 0\nwhile True: n += 1\n", False),
    ],
    ids=["slow-then-done", "past-the-deadline"],
)
async def test_a_slow_module_top_level_keeps_the_event_loop_turning(top_level: str, loads: bool) -> None:
    """Off the script: the import was waited for in the loop's own thread, so a slow top level stopped the lab's
    worker in the same kernel (no polling, no heartbeats) for up to the import deadline."""
    modules = WorkflowModules(import_deadline=1.0 if not loads else 10.0)
    outcome: list[object] = []

    async def load() -> None:
        try:
            outcome.append(await deploy(None, modules, "slow_top", after_future(top_level)))
        except WorkflowModuleError as error:
            outcome.append(error)

    try:
        stall = await _longest_stall_of_the_loop_during(load())
        assert stall < 0.5, f"the event loop stood still {stall:.2f} s during the import"
        (loaded,) = outcome
        if loads:
            assert isinstance(loaded, LoadedModule) and "PaymentWorkflow" in loaded.workflows
        else:  # the same deadline, and the same message, as before
            assert isinstance(loaded, WorkflowModuleError)
            assert "slow_top, line 3: importing the module did not finish within 1 s" in str(loaded), loaded
            assert not [m for m in sys.modules if m.startswith("slow_top_")]
    finally:
        modules.close()


async def test_a_load_interrupted_during_its_import_says_so_and_the_import_still_meets_its_deadline() -> None:
    """The import now waits on the event loop, where an interrupted cell's cancellation can reach it: the load
    goes on to its end like the rest of the deployment, and a top level that runs on is stopped at the deadline."""
    modules = WorkflowModules(import_deadline=0.5)
    try:
        cell = asyncio.create_task(deploy(None, modules, "stopped_top", after_future("n = 0\nwhile True: n += 1\n")))
        await asyncio.sleep(0.2)
        cell.cancel()
        with pytest.raises(asyncio.CancelledError) as stopped:
            await cell
        (line,) = stopped.value._render_traceback_()  # type: ignore[attr-defined]
        assert "Stopped waiting" in line and "module 'stopped_top'" in line, line
        async with asyncio.timeout(5):
            while [t for t in threading.enumerate() if t.name.startswith("import stopped_top_")]:
                await asyncio.sleep(0.05)
        assert not [m for m in sys.modules if m.startswith("stopped_top_")] and not modules.current
        assert (await deploy(None, modules, "stopped_top", HEAD + "        return ''\n")).revision == 2
    finally:
        modules.close()


def test_two_folders_in_one_process_never_share_a_module_name() -> None:
    """Every folder is on sys.path and sys.modules is one: the same name in two labs must import two files."""
    first, second = WorkflowModules(), WorkflowModules()
    try:
        one = first.load("shared", HEAD + '        return "from-first"\n')
        two = second.load("shared", HEAD + '        return "from-second"\n')
        assert one.module_name != two.module_name and (one.revision, two.revision) == (1, 1)
        assert one.module.__file__ == str(one.path) and two.module.__file__ == str(two.path)
    finally:
        first.close()
        second.close()


def test_closing_forgets_the_modules_and_removes_the_folder() -> None:
    modules = WorkflowModules()
    loaded = modules.load("closing", HEAD + "        return ''\n")
    modules.commit(loaded)
    assert loaded.module_name in sys.modules and str(modules.folder) in sys.path
    modules.close()
    assert loaded.module_name not in sys.modules and str(modules.folder) not in sys.path
    assert not modules.folder.exists() and not modules.current


async def test_the_kits_workflow_still_replays_histories_of_the_seam(lab: Lab) -> None:
    """The seam `notification_message` changed no command: today's histories replay with PaymentWorkflow."""
    result = await lab.pay("8.00", show_link=False)
    (outcome,) = await replay([await lab.service.handle(result.payment_id).history()], PaymentWorkflow)
    assert outcome.ok, outcome.error


async def test_the_module_loaded_last_runs_even_under_a_name_loaded_before(lab: Lab) -> None:
    """payment_v2, then payment_v3 (same workflow), then payment_v2 again: the last one loaded must run, not v3."""
    await lab.load_module("payment_v2", HEAD + '        return "v2, first"\n')
    await lab.load_module("payment_v3", HEAD + '        return "v3"\n')
    await lab.load_module("payment_v2", HEAD + '        return "v2, again"\n')
    result = await lab.pay("3.00", show_link=False)
    assert b"v2, again" in notification_text(await lab.service.handle(result.payment_id).history())


async def test_an_interrupted_load_module_leaves_the_lab_with_a_worker(lab: Lab) -> None:
    """The stop button cancels the cell's task mid-restart: the worker must still end up running, payments completing."""
    slow = await lab.start(lab.request("9.00"), faults=FaultPlan(charge=StepFaults(delay=2)), show_link=False)
    while not lab.repository.attempts(slow.payment_id):
        await asyncio.sleep(0.02)
    cell = asyncio.create_task(lab.load_module("payment_v2", FIXED))
    await asyncio.sleep(0)  # the cell runs to its first wait, inside the deployment, whatever the machine's speed
    cell.cancel()  # what Jupyter's interrupt does to a cell's top-level await
    with pytest.raises(asyncio.CancelledError):
        await cell
    async with asyncio.timeout(20):
        while not lab.worker.running:
            await asyncio.sleep(0.05)
    assert (await asyncio.wait_for(lab.pay("5.00", show_link=False), 20)).status is PaymentStatus.COMPLETED
    assert (await asyncio.wait_for(slow.result(), 30)).status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(slow.payment_id) == 1
    await lab.load_module("payment_v2", FIXED)  # and the next load is not refused


async def _load_interrupted_mid_charge(lab: Lab) -> str:
    """A payment mid-charge, and a ``load_module`` cell interrupted at once: its deployment goes on. Returns the payment's id."""
    slow = await lab.start(lab.request("9.00"), faults=FaultPlan(charge=StepFaults(delay=2)), show_link=False)
    while not lab.repository.attempts(slow.payment_id):
        await asyncio.sleep(0.02)
    cell = asyncio.create_task(lab.load_module("payment_v2", FIXED))
    await asyncio.sleep(0)
    cell.cancel()
    with pytest.raises(asyncio.CancelledError) as stopped:
        await cell
    (line,) = stopped.value._render_traceback_()  # type: ignore[attr-defined]  # what the notebook shows: was a bare "CancelledError:"
    assert "Stopped waiting" in line and "module 'payment_v2'" in line and "goes on to its end" in line
    return slow.payment_id


async def test_loads_run_again_at_once_or_together_wait_their_turn(lab: Lab) -> None:
    """Off the script: the interrupted cell run again while its deployment went on, or two loads in one `gather`: the
    second restart shut the same worker down and waited for ever on the new worker's task (the cell hung)."""
    slow = await _load_interrupted_mid_charge(lab)
    async with asyncio.timeout(30):
        await lab.load_module("payment_v2", FIXED)  # at once: the first deployment is still under way
        await asyncio.gather(lab.load_module("payment_v3", HEAD + '        return "v3"\n'),
                             lab.load_module("payment_v4", HEAD + '        return "v4"\n'))
    assert lab.worker.running
    result = await asyncio.wait_for(lab.pay("3.00", show_link=False), 20)
    assert b"v4" in notification_text(await lab.service.handle(result.payment_id).history()), "the one loaded last runs"
    assert (await asyncio.wait_for(lab.service.handle(slow).result(), 30)).status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(slow) == 1


async def test_closing_the_lab_during_a_deployment_waits_for_it(open_test_lab: OpenLab) -> None:
    """`await lab.close()` after an interrupted load hung on the same race, and interrupted, left the lab's server running."""
    lab = await open_test_lab("authoring-close")
    await _load_interrupted_mid_charge(lab)
    async with asyncio.timeout(30):
        await lab.close()
    assert not lab.worker.running


async def test_waiting_for_a_failure_that_does_not_come_says_why_in_one_line(lab: Lab) -> None:
    """Lesson 09's wait run again after the fix, or on a payment that has not reached the bug: never a bare TimeoutError."""
    await lab.load_module("payment_v2", FIXED)
    done = await lab.start(lab.request("4.00"), show_link=False)
    with pytest.raises(NoTaskFailureError, match="the workflow ended completed"):
        await wait_for_task_failure(done.workflow)
    slow = await lab.start(lab.request("5.00"), faults=FaultPlan(charge=StepFaults(delay=3)), show_link=False)
    with pytest.raises(NoTaskFailureError, match="within 0.5 s; it is still running, waiting on an activity") as waited:
        await wait_for_task_failure(slow.workflow, timeout=0.5)
    assert isinstance(waited.value, TimeoutError) and len(waited.value._render_traceback_()) == 1
    assert (await slow.result()).status is PaymentStatus.COMPLETED


async def test_awaiting_a_payment_whose_code_fails_its_task_says_so_instead_of_hanging(lab: Lab) -> None:
    """The "hung cell": Temporal's result() waits while the task keeps failing; the kit's stops, with the error and its line."""
    loaded = await lab.load_module("payment_v2", BUGGY)
    request = lab.request("42.00")
    handle = await lab.start(request, task_timeout=SHORT_TASK, show_link=False)
    with pytest.raises(WorkflowTaskFailingError, match=rf"KeyError: 'receipt_id' \({loaded.path.name}, line 14") as failing:
        await asyncio.wait_for(handle.result(), 20)
    assert "still running and nothing was lost" in str(failing.value) and len(failing.value._render_traceback_()) == 1
    assert (await handle.status()).workflow_status == "running" and lab.repository.charge_count(request.payment_id) == 1
    await lab.load_module("payment_v2", FIXED)
    assert (await asyncio.wait_for(handle.result(), 30)).status is PaymentStatus.COMPLETED
    assert lab.repository.charge_count(request.payment_id) == 1


async def test_a_worker_elsewhere_failing_the_task_is_seen_through_describe(lab: Lab) -> None:
    """No log to read when the worker runs in another process: the pending task's attempts tell."""
    await lab.load_module("payment_v2", BUGGY)
    handle = await lab.start(lab.request("43.00"), task_timeout=SHORT_TASK, show_link=False)
    worker_logger = logging.getLogger(WorkerLog.LOGGER)
    level = worker_logger.level
    worker_logger.setLevel(logging.ERROR)  # as if the worker's warnings were written in another process
    try:
        error = await asyncio.wait_for(until_task_fails(handle.workflow, every=0.5), 30)
    finally:
        worker_logger.setLevel(level)
    assert "keeps failing (attempt" in str(error) and "KeyError: 'receipt_id'" in str(error) and "line 14" in str(error)
    await lab.load_module("payment_v2", FIXED)
    assert (await asyncio.wait_for(handle.result(), 30)).status is PaymentStatus.COMPLETED


async def test_a_long_wait_on_a_failing_task_says_what_it_waits_for(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run late, a cell awaiting a task retried minutes apart must not sit silent: it says once what it waits for."""
    import payments_lab.workflow_tasks as workflow_tasks

    monkeypatch.setattr(workflow_tasks, "WAITING_SAID_AFTER", 1.0)
    await lab.load_module("payment_v2", BUGGY)
    handle = await lab.start(lab.request("44.00"), task_timeout=timedelta(seconds=20), show_link=False)
    await wait_for_task_failure(handle.workflow)
    # Wait past the second attempt, which fails at once and then holds the task for 20 s: the
    # wait below starts, as a cell run late does, after the last failure it could have seen.
    async with asyncio.timeout(20):
        while (pending := await pending_task(handle.workflow)) is None or pending.attempt < 2 or pending.state != "started":
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    lines: list[str] = []
    waiting = asyncio.ensure_future(until_task_fails(handle.workflow, every=0.3, say=lines.append))
    async with asyncio.timeout(10):
        while not lines:
            await asyncio.sleep(0.1)
    assert not waiting.done(), "no attempt failed during the wait: it goes on, having said why"
    waiting.cancel()
    assert len(lines) == 1 and "which failed before (attempt" in lines[0] and "press Ctrl-C to stop waiting" in lines[0], "not in a kernel here"
    await lab.load_module("payment_v2", FIXED)
    assert (await asyncio.wait_for(handle.result(), 60)).status is PaymentStatus.COMPLETED


@pytest.mark.parametrize(("call", "refused"), [("open('/dev/null').read()", "__builtins__.open"), ("time.sleep(0.01)", "time.sleep")])
async def test_a_call_the_sandbox_refuses_at_run_time_names_the_learners_line_and_the_fix(lab: Lab, call: str, refused: str) -> None:
    """Temporal's message names its own file and says "mark the import as pass through", the wrong fix for a call."""
    source = HEAD.replace("        return await super().run(input)\n", f"        import time\n        {call}\n        return await super().run(input)\n")
    loaded = await lab.load_module("payment_v2", source + "        return ''\n")
    handle = await lab.start(lab.request("3.00"), task_timeout=SHORT_TASK, show_link=False)
    with pytest.raises(WorkflowTaskFailingError) as failing:
        await asyncio.wait_for(handle.result(), 20)
    said = str(failing.value)
    assert f"the sandbox refused `{refused}`: workflow code must be deterministic" in said
    assert "`await workflow.sleep(...)` to wait" in said and "mark the import as pass through" not in said
    assert f"({loaded.path.name}, line 11, in run)" in said, "the learner's line, not temporalio's"
    # The worker's log is read at once; the server writes WorkflowTaskFailed a moment later.
    recorded = await wait_for_task_failure(handle.workflow)
    assert recorded.where is not None and (recorded.where.file_name, recorded.where.line) == (loaded.path.name, 11)
    await lab.load_module("payment_v2", FIXED)
    assert (await asyncio.wait_for(handle.result(), 30)).status is PaymentStatus.COMPLETED


async def test_a_subclass_written_without_the_future_import_is_told_to_add_it(lab: Lab) -> None:
    """Temporal compares @workflow.init's and @workflow.run's signatures as written: text in the kit's, a class in the learner's."""
    plain = FIXED.replace("from __future__ import annotations\n", "")
    with pytest.raises(WorkflowModuleError, match="put `from __future__ import annotations` as the first line of this code"):
        await lab.load_module("payment_v2", plain)
    loaded = await lab.load_module("payment_v2", FIXED)
    assert loaded.workflows["PaymentWorkflow"].__name__ == "PaymentWorkflowV2"


async def test_a_first_answer_that_workflow_code_keeps_from_coming_says_so_at_once(lab: Lab) -> None:
    """Off the script: a bug before validation, then lesson 10's start_early. Its note blamed a slow validation and,
    20 s on, a raw RPCError ("Workflow Task in failed state") came back with no line and no fix."""
    await lab.load_module("payment_v2", HEAD.replace(
        "        return await super().run(input)\n",
        "        limits = {'EUR': 1000}\n        if input.request.amount > limits[input.request.currency]:\n"
        "            raise ValueError('too much')\n        return await super().run(input)\n",
    ) + "        return ''\n")
    request = lab.request("10.00", "USD")
    started = time.monotonic()
    with pytest.raises(WorkflowTaskFailingError, match=r"KeyError: 'USD' \(payment_v2.*line 11") as failing:
        await asyncio.wait_for(lab.service.start_early(request), 20)
    assert time.monotonic() - started < 10, "from the first attempt that fails, not after the update gave up"
    assert "nothing was lost" in str(failing.value) and "lab.load_module" in str(failing.value)
    assert (await lab.service.status(request.payment_id)).workflow_status == "running"
    await lab.load_module("payment_v2", FIXED)
    assert (await asyncio.wait_for(lab.service.handle(request.payment_id).result(), 30)).status is PaymentStatus.COMPLETED


async def test_a_kit_workflow_extended_under_a_name_of_its_own_gets_a_note_naming_the_fix(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off the script: lesson 09's class retyped with a bare `@workflow.defn`: loaded in silence, never run (the bug never showed)."""
    loaded = await lab.load_module("payment_v2", BUGGY.replace('@workflow.defn(name="PaymentWorkflow")', "@workflow.defn"))
    assert loaded.notes and "under a workflow name of its own ('PaymentWorkflowV2')" in loaded.notes[0]
    assert "Note: " in capsys.readouterr().out
    assert "`@workflow.defn(name='PaymentWorkflow')`" in loaded.notes[0]
    assert (await lab.load_module("payment_v2", FIXED)).notes == (), "the lesson's own version replaces the kit's: no note"


CONFIRMED_V2 = '''from __future__ import annotations
from temporalio import workflow
from payments_lab.confirmation import ConfirmedPaymentWorkflow
from payments_lab.confirmation_messages import ConfirmationInput
from payments_lab.domain import PaymentResult

@workflow.defn(name="{name}")
class ConfirmedV2(ConfirmedPaymentWorkflow):
    @workflow.run
    async def run(self, input: ConfirmationInput) -> PaymentResult:
        return await super().run(input)
'''


async def test_a_version_of_the_confirmed_payment_gets_no_advice_to_become_a_plain_payment(lab: Lab) -> None:
    """Off the script: a cell version of ConfirmedPaymentWorkflow under its kit name replaced it, and the note said it
    replaced nothing and to rename it PaymentWorkflow (which would have broken every payment)."""
    loaded = await lab.load_module("confirm_v2", CONFIRMED_V2.format(name="ConfirmedPaymentWorkflow"))
    assert loaded.notes == ()
    assert "ConfirmedV2" in [cls.__name__ for cls in lab.worker.workflows]
    loaded = await lab.load_module("confirm_v3", CONFIRMED_V2.format(name="ConfirmedV3"))
    assert len(loaded.notes) == 1 and "extends ConfirmedPaymentWorkflow under a workflow name of its own ('ConfirmedV3')" in loaded.notes[0]
    assert "`@workflow.defn(name='ConfirmedPaymentWorkflow')`" in loaded.notes[0]


def test_a_coding_line_that_is_not_utf8_is_refused_instead_of_changing_the_text(tmp_path: object) -> None:
    """A module pasted with `# -*- coding: latin-1 -*-`: written as UTF-8, read back as Latin-1, '€' became 'â\\x82¬'."""
    modules = WorkflowModules(tmp_path)  # type: ignore[arg-type]
    try:
        with pytest.raises(WorkflowModuleError, match=r"payment_v2, line 1: declares `coding: latin-1`.*Remove that line"):
            modules.load("payment_v2", "# -*- coding: latin-1 -*-\n" + FIXED.replace("receipt {", "reçu € {"))
        assert modules.load("payment_v2", "# -*- coding: utf-8 -*-\n" + FIXED).workflows, "UTF-8 says what is true"
    finally:
        modules.close()


async def test_an_activity_written_with_a_plain_def_is_refused_with_the_async_def_to_write(lab: Lab) -> None:
    """Off the script: the refusal spoke of an `activity_executor` a learner cannot give the lab's worker, and said only
    "Correct the module"."""
    source = (
        "from __future__ import annotations\nimport time\nfrom datetime import timedelta\nfrom temporalio import activity, workflow\n\n"
        "@activity.defn\ndef fraud_check(amount: str) -> bool:\n    time.sleep(1)\n    return True\n\n"
        "@workflow.defn\nclass FraudFlow:\n    @workflow.run\n    async def run(self, amount: str) -> bool:\n"
        "        return await workflow.execute_activity(fraud_check, amount, start_to_close_timeout=timedelta(seconds=3))\n"
    )
    with pytest.raises(WorkflowModuleError, match=r"Write it `async def fraud_check\(\.\.\.\)`, and inside it `await asyncio\.sleep") as refused:
        await lab.load_module("fraud", source)
    assert "The worker still runs the previous version" in str(refused.value)

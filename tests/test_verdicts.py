"""Tests of exercise verdicts recorded in the learner's namespace: a real check leaves a real record, a lost server loses only the record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from payments_lab.client import connect
from payments_lab.exercises import lesson01, lesson04
from payments_lab.lab import Lab
from payments_lab.progress import CheckRecord, check_records
from payments_lab.server import EmbeddedServer
from payments_lab.simulated_room import answer, open_learner_lab
from payments_lab.verdicts import WORKFLOW_TYPE, CheckOutcome, record_verdict


@pytest.fixture(scope="module")
def room_server() -> Iterator[EmbeddedServer]:
    """A server with one learner namespace, ``ana``, so that records are counted without other tests' noise."""
    server = EmbeddedServer(ui=False, namespaces=["ana"]).start()
    yield server
    server.stop()


@pytest.fixture
async def ana(room_server: EmbeddedServer) -> AsyncIterator[Lab]:
    lab = await open_learner_lab(room_server.address, "ana")
    yield lab
    await lab.close()


async def _records_when_indexed(lab: Lab, count: int, within: float = 10.0) -> list[CheckRecord]:
    """The namespace's check records once ``count`` are listed: visibility indexes a start a moment after it."""
    deadline = asyncio.get_running_loop().time() + within
    while len(records := await check_records(lab.client)) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return records


async def test_a_check_records_its_verdict_in_the_learners_namespace(ana: Lab) -> None:
    before = len(await check_records(ana.client))
    red = await lesson01.q1.check_async(answer(lesson01.q1, ana, wrong=True), lab=ana)
    green = await lesson01.q1.check_async(answer(lesson01.q1, ana), lab=ana)
    assert (red.outcome, green.outcome) == (CheckOutcome.INCORRECT, CheckOutcome.CORRECT)

    records = (await _records_when_indexed(ana, before + 2))[before:]
    assert [(r.exercise, r.verdict) for r in records] == [("01.q1", "incorrect"), ("01.q1", "correct")]
    assert records[0].message == red.message and records[1].message == green.message
    assert records[0].at <= records[1].at


async def test_the_labs_worker_completes_each_record(ana: Lab) -> None:
    await lesson01.q1.check_async(answer(lesson01.q1, ana), lab=ana)
    statuses: list[WorkflowExecutionStatus | None] = []
    for _ in range(100):
        statuses = [e.status async for e in ana.client.list_workflows(f"WorkflowType = '{WORKFLOW_TYPE}' AND TaskQueue = '{ana.task_queue}'")]
        if statuses and all(s is WorkflowExecutionStatus.COMPLETED for s in statuses):
            break
        await asyncio.sleep(0.1)
    assert statuses and set(statuses) == {WorkflowExecutionStatus.COMPLETED}


async def test_a_lab_closed_right_after_a_check_lets_its_record_complete_first(room_server: EmbeddedServer) -> None:
    lab = await open_learner_lab(room_server.address, "ana")
    try:
        await lesson01.q1.check_async(answer(lesson01.q1, lab), lab=lab)
    finally:
        await lab.close()  # at once, as a learner's script ends
    reader = (await connect(address=room_server.address, namespace="ana")).client
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND TaskQueue = '{lab.task_queue}'"
    listed: list[str] = []
    for _ in range(100):  # visibility lists a start a moment after it
        if listed := [e.id async for e in reader.list_workflows(query)]:
            break
        await asyncio.sleep(0.1)
    (record_id,) = listed
    # Visibility may lag a moment behind; the record's own description does not.
    assert (await reader.get_workflow_handle(record_id).describe()).status is WorkflowExecutionStatus.COMPLETED


async def test_a_blank_is_not_recorded(ana: Lab) -> None:
    before = len(await check_records(ana.client))
    blank = await lesson01.q1.check_async(lab=ana)
    assert blank.outcome is CheckOutcome.NOT_ATTEMPTED
    assert len(await check_records(ana.client)) == before


@dataclass(frozen=True)
class StandIn:
    """What recording needs of a lab, a client and a task queue, and whether it is open (checks stop at once when it closes)."""

    client: Client
    task_queue: str
    running: bool = True

    async def record_verdict(self, exercise_id: str, verdict: str, message: str = "") -> bool:
        return await record_verdict(self.client, self.task_queue, exercise_id, verdict, message)


async def test_with_the_server_gone_a_check_still_gives_its_feedback(caplog: pytest.LogCaptureFixture) -> None:
    server = EmbeddedServer(ui=False).start()
    client = (await connect(address=server.address)).client
    server.stop()
    with caplog.at_level(logging.WARNING, logger="payments_lab.verdicts"):
        feedback = await lesson04.q1.check_async(2, lab=StandIn(client, "gone"))  # type: ignore[arg-type]
    assert feedback.outcome is CheckOutcome.CORRECT
    (warning,) = [r for r in caplog.records if r.name == "payments_lab.verdicts"]
    assert "04.q1 was not recorded" in warning.getMessage() and "feedback stands" in warning.getMessage()


async def test_record_verdict_refuses_an_unknown_verdict(client: Client) -> None:
    with pytest.raises(ValueError, match="verdict must be one of correct, incorrect, got 'not attempted'"):
        await record_verdict(client, "q", "01.q1", "not attempted")

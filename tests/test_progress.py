"""Tests of the room view: who passed what, who is stuck or idle, read from the learners' namespaces alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from matplotlib.figure import Figure

from payments_lab.client import NamespaceNotFoundError, connect
from payments_lab.progress import (
    CheckRecord,
    LearnerProgress,
    RoomView,
    StuckRules,
    learner_namespaces,
    progress_view,
    room_view,
    watch_room,
)
from payments_lab.server import EmbeddedServer
from payments_lab.simulated_room import SimulatedLearner, SimulatedRoomProcess, demo_room_server, run_room

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
COURSE = ("01.q1", "01.q2", "01.q3", "02.q1", "02.q2")


def learner(*checks: tuple[str, str, int], payments_at: int | None = None) -> LearnerProgress:
    """A learner whose checks are (exercise, verdict, seconds after T0)."""
    records = tuple(CheckRecord(e, v, T0 + timedelta(seconds=s)) for e, v, s in checks)
    last_payment = T0 + timedelta(seconds=payments_at) if payments_at is not None else None
    return LearnerProgress("ana", 3, 1, records, last_payment, COURSE)


def test_passed_exercises_come_in_course_order_and_the_next_one_is_current() -> None:
    ana = learner(("01.q2", "correct", 10), ("01.q1", "incorrect", 20), ("01.q1", "correct", 30))
    assert ana.passed == ("01.q1", "01.q2")
    assert ana.current == "01.q3", "after a green check, the next exercise not yet passed"
    assert ana.red_streak == 0 and ana.last_green == T0 + timedelta(seconds=30)


def test_red_checks_in_a_row_on_one_exercise_make_a_learner_stuck() -> None:
    rules = StuckRules(red_streak=3)
    ana = learner(("01.q1", "correct", 0), *(("02.q2", "incorrect", 10 + s) for s in range(3)))
    assert ana.current == "02.q2" and ana.red_streak == 3
    assert ana.flag(T0 + timedelta(seconds=20), rules) == "stuck: 3 red checks in a row on 02·Q2"
    switched = learner(("02.q1", "incorrect", 0), ("02.q1", "incorrect", 1), ("02.q2", "incorrect", 2))
    assert switched.red_streak == 1 and switched.flag(T0 + timedelta(seconds=3), rules) is None


def test_no_green_check_for_a_while_makes_a_learner_stuck() -> None:
    rules = StuckRules(no_green_for=timedelta(minutes=10), idle_for=timedelta(minutes=5))
    ana = learner(("01.q1", "correct", 0), ("01.q2", "incorrect", 300), ("01.q3", "incorrect", 580))
    assert ana.flag(T0 + timedelta(seconds=599), rules) is None
    assert ana.flag(T0 + timedelta(seconds=600), rules) == "stuck: no green check for over 10 min"


def test_a_learner_with_nothing_recent_is_idle() -> None:
    rules = StuckRules(idle_for=timedelta(minutes=5))
    ana = learner(payments_at=0)
    assert ana.current is None and ana.passed == ()
    assert ana.flag(T0 + timedelta(minutes=4), rules) is None
    assert ana.flag(T0 + timedelta(minutes=5), rules) == "idle: no activity for over 5 min"
    assert LearnerProgress("bo", 0, 0, ()).flag(T0, rules) == "idle: no activity yet"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"red_streak": 0}, "red_streak must be a whole number >= 1, got 0"),
        ({"idle_for": timedelta(0)}, "idle_for must be a positive timedelta"),
        ({"no_green_for": 600}, "no_green_for must be a positive timedelta, got 600"),
    ],
)
def test_stuck_rules_refuse_what_cannot_work(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StuckRules(**fields)  # type: ignore[arg-type]


def test_the_view_shows_stuck_learners_in_red_and_draws_a_chart() -> None:
    stuck = learner(*(("02.q2", "incorrect", s) for s in range(3)))
    view = RoomView((stuck, LearnerProgress("bo", 0, 0, ())), T0 + timedelta(seconds=5))
    assert view.stuck() == {"ana": "stuck: 3 red checks in a row on 02·Q2"}
    assert view.flags()["bo"] == "idle: no activity yet"
    assert "rgba(198, 40, 40" in view._repr_html_() and "rgba(249, 168, 37" in view._repr_html_()
    assert list(view.table(times=False).columns) == ["payments", "failures", "passed", "exercises passed", "on", "red in a row", "stands out"]
    figure = view.chart()
    assert isinstance(figure, Figure) and figure.get_suptitle() == "2 learners · 1 stuck · 1 idle"


@pytest.fixture(scope="module")
def small_room() -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(ui=False, namespaces=["ana", "bo", "chloe"]).start()
    yield server
    server.stop()


async def test_a_simulated_room_is_read_from_temporal_alone(small_room: EmbeddedServer) -> None:
    learners = (
        SimulatedLearner("ana", "passing", ("01.q1", "02.q2"), red_first=("02.q2",), think=0),
        SimulatedLearner("bo", "stuck", ("01.q1",), attempts=3, think=0),
        SimulatedLearner("chloe", "idle", think=0),
    )
    feedback = await run_room(small_room.address, learners)
    assert [f.outcome.value for f in feedback["ana"]] == ["correct", "incorrect", "correct"]

    client = (await connect(address=small_room.address)).client
    assert await learner_namespaces(client) == ["ana", "bo", "chloe"]
    view = await room_view(client)  # the simulation has stopped: nothing but the server answers
    table = view.table(times=False)
    assert table.loc["ana", "exercises passed"] == "01·Q1 02·Q2" and table.loc["ana", "on"] == "02·Q3"
    assert table.loc["bo", "passed"] == 0 and table.loc["bo", "red in a row"] == 3
    assert table.loc["chloe", "payments"] == 1 and table.loc["ana", "payments"] > 3
    assert view.stuck() == {"bo": "stuck: 3 red checks in a row on 01·Q1"}
    later = RoomView(view.learners, view.at + timedelta(minutes=6), view.rules)
    assert later.flags() == {
        "ana": "idle: no activity for over 5 min",
        "bo": "stuck: 3 red checks in a row on 01·Q1",
        "chloe": "idle: no activity for over 5 min",
    }

    alone = await progress_view((await connect(address=small_room.address, namespace="ana")).client)
    assert [p.learner for p in alone.learners] == ["ana"] and alone.learners[0].passed == ("01.q1", "02.q2")


async def test_learners_on_later_pages_of_the_servers_namespaces_are_found(small_room: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A room larger than one page of namespaces (100): the learners listed on later pages count too, and the
    one who forgot TEMPORAL_NAMESPACE is told even when the first page holds only the server's own."""
    import payments_lab.client

    client = (await connect(address=small_room.address)).client
    monkeypatch.setattr(payments_lab.client, "NAMESPACES_PER_PAGE", 1)  # five namespaces: five pages
    assert await learner_namespaces(client) == ["ana", "bo", "chloe"]
    with pytest.raises(NamespaceNotFoundError, match="TEMPORAL_NAMESPACE is not set"):
        await payments_lab.client._refuse_default_in_a_room(client, small_room.address)


async def test_the_live_view_interrupted_stops_in_one_line_and_stops_the_simulated_learners(small_room: EmbeddedServer) -> None:
    client = (await connect(address=small_room.address)).client
    learners = (SimulatedLearner("ana", "passing", ("01.q1", "02.q2", "02.q3"), think=1.0),)
    room = SimulatedRoomProcess(small_room.address, learners).start()
    watching = asyncio.ensure_future(watch_room(client, ["ana"], every=0.5, until=room.finished()))
    try:
        await asyncio.sleep(2)
        assert room.running, "the learner is still at work when the cell is interrupted"
        watching.cancel()  # what interrupting the cell (■) does to an awaited coroutine
        with pytest.raises(asyncio.CancelledError) as stopped:
            await watching
        assert not room.running, "the simulated learners stop with the view"
    finally:
        room.stop()  # only if the view left it running
    (line,) = stopped.value._render_traceback_()  # type: ignore[attr-defined]
    assert "Stopped watching the room" in line and "Run the cell again" in line


def test_the_demo_rooms_server_cell_run_twice_leaves_one_server() -> None:
    first = demo_room_server(["ana"])
    second = demo_room_server(["ana", "bo"])
    try:
        assert not first.running and second.running
    finally:
        second.stop()


async def test_a_namespace_the_room_cannot_read_is_left_out_with_why_and_the_rest_is_shown() -> None:
    """Off the script: a namespace made by hand on the room's server (no kit search attributes), or one deleted or mistyped
    in the list a facilitator gave, ended the whole view with a raw RPCError."""
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest

    with EmbeddedServer(ui=False, namespaces=["ana"]) as server:
        client = (await connect(address=server.address)).client
        # What `temporal operator namespace create -n scratch` does.
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(namespace="scratch", workflow_execution_retention_period=Duration(seconds=86400))
        )
        view = await room_view(client)
        assert [p.learner for p in view.learners] == ["ana"]
        (left_out,) = view.left_out
        assert left_out.startswith("scratch: lacks the kit's search attributes (not a learner's namespace, or they were removed by hand)")
        assert "`payments-lab room --names FILE --address HOST:PORT`" in left_out
        listed = await room_view(client, ["ana", "learner-2"])
        assert [p.learner for p in listed.learners] == ["ana"]
        assert listed.left_out == ("learner-2: no such namespace on the server (deleted, or mistyped)",)
        assert "left out: learner-2: no such namespace" in repr(listed) and "Left out: learner-2" in listed._repr_html_()


async def test_a_learners_search_attributes_removed_by_hand_come_back_when_the_room_starts_again() -> None:
    """Off the script (rooms round): the view said a learner whose attributes were removed was "not a learner's
    namespace" and pointed at `payments-lab room`, whose restart on its --db did not add them back."""
    from temporalio.api.operatorservice.v1 import RemoveSearchAttributesRequest

    from payments_lab.cli import _prepare_namespaces_of
    from payments_lab.search_attributes import ALL

    with EmbeddedServer(ui=False, namespaces=["ana", "bob"]) as server:
        client = (await connect(address=server.address)).client
        await client.operator_service.remove_search_attributes(
            RemoveSearchAttributesRequest(namespace="bob", search_attributes=[key.name for key in ALL])
        )
        assert [p.learner for p in (await room_view(client)).learners] == ["ana"]
        await _prepare_namespaces_of(server.address, ["ana", "bob"])  # what `payments-lab room` does once its server is up
        view = await room_view(client)
        assert [p.learner for p in view.learners] == ["ana", "bob"] and view.left_out == ()


async def test_a_room_started_on_an_earlier_rooms_file_names_the_earlier_learners() -> None:
    """Off the script (rooms round): a room of 2 on a --db a morning room used showed 4 learners in the view, without a word
    at start (the default --db is always the same file)."""
    from payments_lab.cli import _prepare_namespaces_of

    with EmbeddedServer(ui=False, namespaces=["ana", "bob", "carl"]) as server:
        assert await _prepare_namespaces_of(server.address, ["ana", "dave"]) == ["bob", "carl"]
        assert await _prepare_namespaces_of(server.address, ["ana", "bob", "carl", "dave"]) == []

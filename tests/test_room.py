"""Tests of `payments-lab room`: one server for a whole room, a namespace per learner, learners kept apart."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from payments_lab import advertise
from payments_lab.advertise import advertised_host, is_loopback
from payments_lab.client import TemporalUnavailableError, connect
from payments_lab.errors import InvalidArgumentError
from payments_lab.processes import free_port, processes_marked
from payments_lab.room import NAME_RULE, learner_names, prepare_namespaces
from payments_lab.search_attributes import ORGANIZATION_ID, PAYMENT_CURRENCY, PAYMENT_STATUS
from payments_lab.server import EmbeddedServer


def kit(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "payments_lab", *args], capture_output=True, text=True, env=env, timeout=timeout)


def learner_environment(base: dict[str, str], line: str) -> dict[str, str]:
    """A learner's machine: the room's line, as the learner pastes it into their shell."""
    variables = dict(item.split("=", 1) for item in line.split(": ", 1)[1].split())
    return {**base, **variables}


def test_a_room_gives_each_learner_a_namespace_of_their_own(isolated: dict[str, str], tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    room = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "room", "--learners", "3", "--port", str(port), "--ui-port", str(ui_port),
         "--out", str(tmp_path / "env")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated,
    )
    try:
        banner = room.stdout.readline()  # type: ignore[union-attr]
        assert banner.startswith("Room of 3 learners on one Temporal server at 127.0.0.1:")
        lines = [room.stdout.readline().strip() for _ in range(3)]  # type: ignore[union-attr]
        assert [line.split(":")[0] for line in lines] == ["learner-01", "learner-02", "learner-03"]
        assert f"TEMPORAL_ADDRESS=127.0.0.1:{port} TEMPORAL_NAMESPACE=learner-02 PAYMENTS_LAB_UI_URL=http://127.0.0.1:{ui_port}" in lines[1]
        assert (tmp_path / "env" / "learner-03.env").read_text().startswith(f"export TEMPORAL_ADDRESS=127.0.0.1:{port}\n")

        second = learner_environment(isolated, lines[1])
        paid = kit("pay", "--org", "org-acme", "--amount", "4.20", "--currency", "EUR", env=second)
        assert paid.returncode == 0, paid.stderr
        payment = json.loads(paid.stdout)
        assert payment["ui_url"].startswith(f"http://127.0.0.1:{ui_port}/namespaces/learner-02/workflows/")

        def listed(line: str) -> list[str]:
            shown = kit("list", env=learner_environment(isolated, line))
            assert shown.returncode == 0, shown.stderr
            return [p["payment_id"] for p in json.loads(shown.stdout)]

        assert listed(lines[1]) == [payment["payment_id"]]
        assert listed(lines[0]) == [] and listed(lines[2]) == [], "a learner never sees another's payments"
    finally:
        room.send_signal(signal.SIGINT)
        room.wait(timeout=30)
    assert room.returncode == 0
    assert processes_marked(isolated["PAYMENTS_LAB_MARK"]) == []


def test_a_room_prepares_an_existing_cluster(isolated: dict[str, str]) -> None:
    """A separately started server stands in for a cluster: namespaces and search attributes are added there.

    It caches search attributes as a production cluster does, so the learner's payment right
    after the room is prepared would be refused if the room returned before they were usable."""
    cluster = EmbeddedServer(ui=False, cache_search_attributes=True).start()
    try:
        names = Path(isolated["PAYMENTS_LAB_STATE_DIR"]).parent / "names.txt"
        names.write_text("ana\nbo\n\n")
        prepared = kit("room", "--names", str(names), "--address", cluster.address, env=isolated)
        assert prepared.returncode == 0, prepared.stderr
        assert "2 namespaces created, 0 already there" in prepared.stdout
        assert prepared.stderr.startswith(f"Preparing 2 learners' namespaces on {cluster.address}...")
        again = kit("room", "--names", str(names), "--address", cluster.address, env=isolated)
        assert "0 namespaces created, 2 already there" in again.stdout
        line = next(line for line in prepared.stdout.splitlines() if line.startswith("bo: "))
        paid = kit("pay", "--org", "org-globex", "--amount", "1.00", "--currency", "USD", env=learner_environment(isolated, line))
        assert paid.returncode == 0, paid.stderr
        assert json.loads(paid.stdout)["status"] == "completed"
    finally:
        cluster.stop()


def _start_room(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "room", "--learners", "2", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _first_learner_line(room: subprocess.Popen[str]) -> str | None:
    """The room's line for learner-01, or None if the room ended first (its reason is on its standard error)."""
    for line in room.stdout:  # type: ignore[union-attr]
        if line.startswith("learner-01:"):
            return line.strip()
    return None


def _stop_room(room: subprocess.Popen[str]) -> None:
    room.send_signal(signal.SIGINT)
    try:
        room.wait(timeout=30)
    except subprocess.TimeoutExpired:
        room.kill()  # a room that hangs must not outlive the test (its server dies with it)
        room.wait()
        raise


def test_a_room_on_every_interface_hands_out_an_address_other_machines_reach(isolated: dict[str, str]) -> None:
    """Not socket.getfqdn(): on Debian and Ubuntu it is 'localhost', and each learner would look on their own laptop."""
    for _ in range(2):  # a free port can be taken by another program before the room binds it: once more then
        port, ui_port = free_port(), free_port()
        room = _start_room(isolated, "--ip", "0.0.0.0", "--port", str(port), "--ui-port", str(ui_port))
        line = _first_learner_line(room)
        if line is not None:
            break
        room.wait(timeout=30)
    assert line is not None, f"the room ended before handing out its lines: {room.stderr.read()}"  # type: ignore[union-attr]
    try:
        variables = learner_environment({}, line)
        host = variables["TEMPORAL_ADDRESS"].rpartition(":")[0]
        assert not is_loopback(host) and host in advertised_host("0.0.0.0"), line
        assert variables["PAYMENTS_LAB_UI_URL"] == f"http://{host}:{ui_port}"
        paid = kit("pay", "--org", "org-acme", "--amount", "1.00", "--currency", "EUR", env=learner_environment(isolated, line))
        assert paid.returncode == 0, paid.stderr
    finally:
        _stop_room(room)
    assert "no authentication" in room.stderr.read()  # type: ignore[union-attr]
    assert processes_marked(isolated["PAYMENTS_LAB_MARK"]) == []


def test_the_advertised_host_can_be_set_and_a_machine_without_a_network_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert advertised_host("0.0.0.0", "room.example.org") == "room.example.org"
    assert advertised_host("10.1.2.3") == "10.1.2.3"
    # A machine with loopback only (a laptop offline): nothing to hand out, so the facilitator is told what to pass.
    monkeypatch.setattr(advertise, "_default_route_address", lambda: None)
    monkeypatch.setattr(advertise, "_interface_addresses", list)
    with pytest.raises(InvalidArgumentError, match=r"pass --ip <this machine's address on the room's network>"):
        advertised_host("0.0.0.0")


def test_an_advertised_host_the_server_does_not_listen_on_is_warned_of(isolated: dict[str, str]) -> None:
    """Off the script: `--advertise HOST` without `--ip`: every line named HOST, the server listened on 127.0.0.1 only,
    and each learner was told the room "is not up (yet)" while it ran."""
    room = _start_room(isolated, "--advertise", "192.0.2.2", "--port", str(free_port()), "--ui-port", str(free_port()))
    try:
        line = _first_learner_line(room)
        assert line is not None and "TEMPORAL_ADDRESS=192.0.2.2:" in line
    finally:
        _stop_room(room)
    warning = room.stderr.read()  # type: ignore[union-attr]
    assert "the lines hand out 192.0.2.2, but the server listens on 127.0.0.1 only" in warning and "Add --ip 0.0.0.0" in warning
    assert processes_marked(isolated["PAYMENTS_LAB_MARK"]) == []


def test_a_second_room_on_the_same_database_is_refused(isolated: dict[str, str], tmp_path: Path) -> None:
    """Two dev servers on one SQLite file would share its shard: each room's learners would see the other's payments."""
    port = free_port()
    first = _start_room(isolated, "--port", str(port), "--ui-port", str(free_port()))
    try:
        assert first.stdout.readline().startswith("Room of 2 learners")  # type: ignore[union-attr]
        second = kit("room", "--learners", "2", "--port", str(free_port()), "--ui-port", str(free_port()), env=isolated)
        assert second.returncode == 2
        db_file = Path(isolated["PAYMENTS_LAB_STATE_DIR"]).resolve() / "room.sqlite"
        held_by = next(pid for pid in processes_marked(isolated["PAYMENTS_LAB_MARK"]) if Path(psutil.Process(pid).cmdline()[0]).name.startswith("temporal"))
        assert second.stderr.strip() == (
            f"payments-lab room: error: {db_file} is in use by the room on port {port} (pid {held_by}): pass --db OTHER.sqlite"
        )
        other = _start_room(isolated, "--port", str(free_port()), "--ui-port", str(free_port()), "--db", str(tmp_path / "other.sqlite"))
        try:
            assert other.stdout.readline().startswith("Room of 2 learners"), other.stderr.read()  # type: ignore[union-attr]
        finally:
            _stop_room(other)
    finally:
        _stop_room(first)
    assert processes_marked(isolated["PAYMENTS_LAB_MARK"]) == []


@pytest.mark.parametrize(
    ("names", "expected"),
    [("ana\nana\n", "learners named twice: ana"), ("Ana\nana\n", "learners whose names differ only in case: Ana, ana; give each another name"), ("good\nbad name\n", "'bad name' cannot be a learner's namespace"), ("\n", "names no learner")],
)
def test_a_bad_names_file_is_one_clear_line(isolated: dict[str, str], tmp_path: Path, names: str, expected: str) -> None:
    path = tmp_path / "names.txt"
    path.write_text(names)
    done = kit("room", "--names", str(path), env=isolated)
    assert done.returncode == 2 and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_learner_names_default_to_numbered_learners() -> None:
    assert learner_names(3) == ["learner-01", "learner-02", "learner-03"]
    with pytest.raises(ValueError, match="between 1 and 500"):
        learner_names(0)


def test_a_names_file_from_a_windows_editor_or_in_latin_1(tmp_path: Path) -> None:
    saved_by_notepad = tmp_path / "names.txt"
    saved_by_notepad.write_bytes("\ufeffana\r\nbo\r\n\r\n".encode())  # a byte-order mark and CRLF
    assert learner_names(names_file=saved_by_notepad) == ["ana", "bo"]
    latin_1 = tmp_path / "latin-1.txt"
    latin_1.write_bytes("ana\nzoé\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin-1.txt, line 2: not UTF-8 text; save the file as UTF-8"):
        learner_names(names_file=latin_1)


async def test_a_learner_can_pay_as_soon_as_the_room_has_prepared_a_caching_cluster() -> None:
    # A production cluster caches a namespace's search attributes: for about 2 s after they are
    # added, a workflow started with them is refused. A room on an existing cluster adds them
    # (ensure_search_attributes), and a learner starts a payment right after: it must be accepted.
    with EmbeddedServer(ui=False, cache_search_attributes=True) as cluster:
        namespace = f"ns-{uuid.uuid4().hex[:8]}"
        admin = (await connect(address=cluster.address)).client
        assert await prepare_namespaces(admin, [namespace]) == [namespace]
        learner = (await connect(address=cluster.address, namespace=namespace)).client
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(ORGANIZATION_ID, "org-acme"),
                SearchAttributePair(PAYMENT_CURRENCY, "EUR"),
                SearchAttributePair(PAYMENT_STATUS, "pending"),
            ]
        )
        handle = await learner.start_workflow(
            "NoWorkerHere", id=f"sa-{uuid.uuid4().hex[:8]}", task_queue="nobody", search_attributes=attributes
        )
        assert (await handle.describe()).typed_search_attributes.get(ORGANIZATION_ID) == "org-acme"
        await handle.terminate()


async def test_a_room_larger_than_the_cluster_lets_namespaces_be_created_at_once_is_prepared() -> None:
    # A frontend creates at most 20 namespaces a second (frontend.rps.namespaceReplicationInducingAPIs)
    # and refuses the rest with RESOURCE_EXHAUSTED: a room of 60 learners ran into it at the 45th.
    with EmbeddedServer(ui=False, cache_search_attributes=True) as cluster:
        admin = (await connect(address=cluster.address)).client
        names = [f"ns-{n:02d}-{uuid.uuid4().hex[:6]}" for n in range(60)]
        assert await prepare_namespaces(admin, names) == names
        last = (await connect(address=cluster.address, namespace=names[-1])).client
        assert (await last.count_workflows(f"{PAYMENT_STATUS.name} = 'pending'")).count == 0


async def test_a_cluster_gone_during_the_room_s_preparation_is_one_clear_error_and_running_it_again_finishes(tmp_path: Path) -> None:
    cluster = EmbeddedServer(ui=False, db_file=tmp_path / "cluster.sqlite").start()
    try:
        admin = (await connect(address=cluster.address)).client
        names = [f"ns-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
        cluster.stop()
        with pytest.raises(TemporalUnavailableError, match=r"stopped answering while the room was being prepared .*: 0 of 3 .* Run the same command again"):
            await prepare_namespaces(admin, names)
        cluster.start()
        assert await prepare_namespaces(admin, names) == names
        assert await prepare_namespaces(admin, names) == [], "prepared already: nothing created twice"
    finally:
        cluster.stop()


@pytest.mark.parametrize("name", ["default", "temporal-system"])
def test_the_servers_own_namespaces_are_no_learners_name(name: str, tmp_path: Path) -> None:
    """Off the script: a learner named temporal-system ran every lesson in Temporal's own namespace, unseen by the room view."""
    names = tmp_path / "names.txt"
    names.write_text(f"ana\n{name}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"'{name}' cannot be a learner's namespace.*not 'default' or 'temporal-system'"):
        learner_names(names_file=names)
    assert not re.fullmatch(NAME_RULE, name) and re.fullmatch(NAME_RULE, f"{name}-2"), "the hub's login rule refuses it too"


def test_a_room_of_a_hundred_or_more_numbers_its_learners_so_that_they_sort_as_numbers() -> None:
    """Off the script (rooms round): learner-100 … learner-109 sorted between learner-10 and learner-11 in the view."""
    names = learner_names(120, None)
    assert names[0] == "learner-001" and names[-1] == "learner-120" and names == sorted(names)
    assert learner_names(12, None)[:2] == ["learner-01", "learner-02"], "a room under 100 keeps its two digits"


def test_a_room_stopped_right_after_its_lines_stops_its_server_and_exits_cleanly(isolated: dict[str, str], tmp_path: Path) -> None:
    """Ctrl-C just as the lines appear once ended in exit 130 with the server left to die with its parent, and
    could hang for ever (a KeyboardInterrupt raised inside ``Popen.poll()`` kept its wait lock)."""
    for attempt in range(6):
        room = _start_room(isolated, "--port", str(free_port()), "--ui-port", str(free_port()), "--db", str(tmp_path / f"{attempt}.sqlite"))
        assert room.stdout.readline().startswith("Room of 2 learners"), room.stderr.read()  # type: ignore[union-attr]
        _stop_room(room)
        assert room.returncode == 0, room.stderr.read()  # type: ignore[union-attr]
        assert room.stderr.read().endswith("Stopping the room...\n")  # type: ignore[union-attr]
        assert processes_marked(isolated["PAYMENTS_LAB_MARK"]) == []

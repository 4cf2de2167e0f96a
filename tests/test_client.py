"""Tests of how the kit finds its server: address, environment configuration, lab session, embedded."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.client import Client

from conftest import published_session
from payments_lab.client import (
    NamespaceNotFoundError,
    TemporalUnavailableError,
    connect,
    default_config_file,
    environment_configured,
    web_ui_url,
    workflow_url,
    workflows_url,
)
from payments_lab.processes import free_port, port_open
from payments_lab.server import EmbeddedServer


async def test_an_explicit_address_wins(dev_server: EmbeddedServer) -> None:
    connection = await connect(address=dev_server.address)
    assert connection.address == dev_server.address
    assert connection.source == f"address {dev_server.address}"
    assert connection.server is None


async def test_temporal_address_from_the_environment(dev_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    assert environment_configured()
    connection = await connect()
    assert connection.source.startswith("Temporal environment configuration")
    assert connection.address == dev_server.address and connection.server is None
    await connection.client.count_workflows("OrganizationId = 'x'")  # the search attributes exist


async def test_a_namespace_mistyped_in_the_environment_is_named_with_the_nearest_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedServer(ui=False, namespaces=["learner-07", "learner-08", "learner-17"]) as room:
        monkeypatch.setenv("TEMPORAL_ADDRESS", room.address)
        monkeypatch.setenv("TEMPORAL_NAMESPACE", "learner-O7")  # a letter O for the zero
        with pytest.raises(NamespaceNotFoundError, match=r"has no namespace 'learner-O7', which TEMPORAL_NAMESPACE .* did you mean .*'learner-07'.*\?$"):
            await connect()
        monkeypatch.setenv("TEMPORAL_NAMESPACE", "workshop")
        with pytest.raises(NamespaceNotFoundError, match=r"this server has 'default', 'learner-07', 'learner-08', 'learner-17'\.$"):
            await connect()


async def test_an_api_key_spoken_to_a_server_without_tls_names_the_fix(dev_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.address)
    monkeypatch.setenv("TEMPORAL_API_KEY", "a-cloud-key")  # an API key turns TLS on; the dev server has none
    with pytest.raises(TemporalUnavailableError, match=r"does not use TLS, and this client did: TEMPORAL_API_KEY .* TEMPORAL_TLS=false"):
        await connect()


async def test_a_profile_that_does_not_exist_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.lab]\naddress = "127.0.0.1:7233"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "workshop")
    with pytest.raises(
        TemporalUnavailableError,
        match=r"could not be read \(Profile 'workshop' not found\)\. .*temporal\.toml is read with profile 'workshop' \(its profiles are 'lab'; "
        r"set TEMPORAL_PROFILE=lab .*\)\. Check TEMPORAL_PROFILE and TEMPORAL_CONFIG_FILE \(.*temporal\.toml\)\.$",
    ):
        await connect()


async def test_a_namespace_without_an_address_says_the_address_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    if port_open("127.0.0.1", 7233):
        pytest.skip("a Temporal server listens on localhost:7233 here")
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "learner-07")  # half of a room's line pasted
    with pytest.raises(TemporalUnavailableError, match=r"\(TEMPORAL_NAMESPACE\) names no server address, so the kit tried localhost:7233.* Set TEMPORAL_ADDRESS too"):
        await connect()


async def test_an_address_without_a_namespace_on_a_rooms_server_is_refused_before_any_work_lands_in_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Off the script: the other half of a room's line. The learner's payments and green checks went to 'default', and the
    facilitator's view showed them idle; before the room was up, they were told to unset TEMPORAL_ADDRESS."""
    monkeypatch.delenv("TEMPORAL_NAMESPACE", raising=False)
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    with pytest.raises(TemporalUnavailableError, match=r"If it is your workshop room's, run this cell again once it is up, "
                       r"with TEMPORAL_NAMESPACE from your line set too"):
        await connect()
    with EmbeddedServer(ui=False, namespaces=["learner-01", "learner-02"]) as room:
        monkeypatch.setenv("TEMPORAL_ADDRESS", room.address)
        with pytest.raises(NamespaceNotFoundError, match=r"holds a room's namespaces \('learner-01', 'learner-02'\), and "
                           r"TEMPORAL_NAMESPACE is not set: your payments and checks would land in 'default'"):
            await connect()
        monkeypatch.setenv("TEMPORAL_NAMESPACE", "learner-01")
        assert (await connect()).client.namespace == "learner-01"


async def test_a_profile_from_a_config_file(dev_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(f'[profile.lab]\naddress = "{dev_server.address}"\nnamespace = "default"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "lab")
    connection = await connect()
    assert connection.address == dev_server.address


async def test_the_lab_session_is_reused(dev_server: EmbeddedServer) -> None:
    with published_session(dev_server, "http://ui"):
        connection = await connect()
    assert connection.source == f"lab session of process {os.getpid()}"
    assert connection.ui_url == "http://ui" and connection.server is None


async def test_an_embedded_server_is_started_when_nothing_is_configured() -> None:
    connection = await connect()
    try:
        assert connection.source == "embedded dev server"
        assert connection.server is not None and connection.server.running
        assert connection.workflow_url("payment-x") == f"{connection.ui_url}/namespaces/default/workflows/payment-x"
    finally:
        await connection.close()
    assert connection.server is None


async def test_without_a_server_the_message_names_the_fixes() -> None:
    with pytest.raises(TemporalUnavailableError, match="payments-lab lab.*TEMPORAL_ADDRESS"):
        await connect(start_server=False)
    with pytest.raises(TemporalUnavailableError, match="Could not reach a Temporal server at 127.0.0.1:1") as caught:
        await connect(address="127.0.0.1:1")
    assert "(connection refused)" in str(caught.value) and "tonic" not in str(caught.value)


async def test_a_learner_whose_room_is_not_up_yet_is_told_to_wait_for_it_not_to_leave_it(monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"  # the room's line, handed out before the room started
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "learner-01")
    with pytest.raises(TemporalUnavailableError) as caught:
        await connect()
    message = str(caught.value)
    assert message == (
        f"The room's Temporal server at {address} is not up (yet): connection refused. Run this cell again once "
        "your facilitator has started it; keep TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE as they are."
    )


@pytest.mark.parametrize(("address", "why"), [("exa mple:7233", "invalid international domain name"), ("127.0.0.1:99999", "invalid port number")])
async def test_an_address_no_client_can_use_is_one_clear_error(address: str, why: str) -> None:
    with pytest.raises(TemporalUnavailableError, match=rf"'{address}' is not an address a Temporal client can use \(.*{why}\)\. Give host:port"):
        await connect(address=address)


async def test_an_address_without_a_port_says_which_port_temporal_uses() -> None:
    if port_open("127.0.0.1", 80):
        pytest.skip("something listens on port 80 here: the address without a port would reach it")
    with pytest.raises(TemporalUnavailableError, match="No port was given: a Temporal server usually listens on 7233"):
        await connect(address="127.0.0.1")


def test_web_ui_guesses(monkeypatch: pytest.MonkeyPatch) -> None:
    assert web_ui_url("localhost:7233", "default") == "http://localhost:8233"
    assert web_ui_url("my-ns.a1b2c.tmprl.cloud:7233", "my-ns.a1b2c") == "https://cloud.temporal.io"
    assert web_ui_url("temporal.internal:7233", "default") is None
    monkeypatch.setenv("PAYMENTS_LAB_UI_URL", "https://ui.example/")
    assert web_ui_url("temporal.internal:7233", "default") == "https://ui.example"
    assert default_config_file().name == "temporal.toml"


async def test_a_server_given_by_the_caller_wins_over_the_lab_session(dev_server: EmbeddedServer) -> None:
    own = EmbeddedServer(ui=False)
    with published_session(dev_server, "http://ui"):
        connection = await connect(server=own)
    try:
        assert connection.server is own and own.running
        assert connection.address == own.address != dev_server.address
        assert connection.source == "embedded dev server of the caller"
    finally:
        await connection.close()
    assert not own.running


def test_behind_jupyter_a_server_started_by_hand_gets_no_link_to_a_blank_page_and_one_line_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off the script: `temporal server start-dev` in a Jupyter terminal, found through TEMPORAL_ADDRESS. Its UI serves at
    `/`, so through Jupyter's proxy its page loaded and its scripts did not: every link opened a blank page."""
    from payments_lab.links import UiRoute

    monkeypatch.delenv("PAYMENTS_LAB_UI_URL", raising=False)
    monkeypatch.delenv("CODESPACE_NAME", raising=False)
    monkeypatch.delenv("PAYMENTS_LAB_JUPYTER_BASE_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ana/")
    def ports() -> tuple[int, int]:  # the dev server's own layout: the UI at port + 1000
        while (port := free_port()) + 1000 > 65535 or port_open("127.0.0.1", port + 1000):
            pass
        return port, port + 1000

    port, ui_port = ports()
    with EmbeddedServer(port=port, ui_port=ui_port, route=UiRoute("local", "")) as by_hand:  # its UI at /
        assert web_ui_url(by_hand.address, "default") is None
    said = capsys.readouterr().err
    assert f"serves its pages at /, not under /user/ana/proxy/absolute/{ui_port}" in said and "--ui-public-path" in said
    port, ui_port = ports()
    with EmbeddedServer(port=port, ui_port=ui_port, route=UiRoute("jupyter", "/user/ana/")) as kits:
        assert web_ui_url(kits.address, "default") == f"/user/ana/proxy/absolute/{ui_port}"


def test_web_ui_links_keep_each_id_in_one_path_segment() -> None:
    assert workflow_url(None, "default", "payment-x") is None
    assert (
        workflow_url("http://ui", "team/a", "payment-x/y?z", "run/1")
        == "http://ui/namespaces/team%2Fa/workflows/payment-x%2Fy%3Fz/run%2F1/history"
    )


async def test_a_search_link_opens_the_services_own_namespace_or_is_none_without_a_web_ui(client: Client) -> None:
    """Off the script: lesson 06's link to a search named namespace `default`: in a room it opened an empty one, and
    where no link can open it read `None/namespaces/...`."""
    from payments_lab.service import PaymentService

    assert workflows_url(None, "learner-01", "PaymentStatus = 'failed'") is None
    learners_client = Client(client.service_client, namespace="learner-01", data_converter=client.data_converter)
    in_a_room = PaymentService(learners_client, "payments", ui_url="http://ui")
    query = in_a_room.visibility_query(status="failed")
    assert in_a_room.search_url(query) == f"http://ui/namespaces/learner-01/workflows?query={quote(query, safe='')}"
    assert workflows_url("http://ui", "team/a", "A = 'b/c'") == "http://ui/namespaces/team%2Fa/workflows?query=A%20%3D%20%27b%2Fc%27"
    assert PaymentService(client, "payments").search_url(query) is None
    with pytest.raises(ValueError, match="query must be a visibility query as a string"):
        in_a_room.search_url(None)  # type: ignore[arg-type]


def test_a_worker_that_cannot_reach_its_server_says_so_once_not_thirty_times_a_minute() -> None:
    """The core logs each poll retried past the 15th; a notebook got ~30 such lines a minute under any cell."""
    from types import SimpleNamespace

    from payments_lab.client import CORE_LOGGER, _UnreachableServerRetries

    def core_log(target: str, message: str, error: str) -> logging.LogRecord:
        entry = SimpleNamespace(target=target, message=message, fields={"error": error})
        return logging.getLogger(CORE_LOGGER).makeRecord(
            CORE_LOGGER, logging.ERROR, "(sdk-core)", 0, message, (), None, extra={"temporal_log": entry}
        )

    unreachable = 'Status { code: Unavailable, message: "tcp connect error" }'
    quiet = _UnreachableServerRetries()
    first = core_log("temporalio_client::retry", "gRPC call poll_workflow_task_queue retried 16 times", unreachable)
    assert quiet.filter(first) and first.levelno == logging.WARNING
    assert "cannot reach its server and keeps trying" in first.getMessage()
    assert not quiet.filter(core_log("temporalio_client::retry", "gRPC call poll_activity_task_queue retried 17 times", unreachable))
    other = core_log("temporalio_sdk_core::worker", "something else went wrong", "")
    assert quiet.filter(other) and other.levelno == logging.ERROR, "any other error of the core still shows"
    refused = core_log("temporalio_client::retry", "gRPC call start_workflow retried 3 times", "Status { code: PermissionDenied }")
    assert quiet.filter(refused), "only an unreachable server is said once"



@pytest.mark.parametrize("pasted", ["{address} ", "{address}\n", " {address}\t"])
async def test_an_address_pasted_with_spaces_or_a_line_end_is_the_same_server_and_session(
    dev_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch, pasted: str
) -> None:
    """Off the script: `TEMPORAL_ADDRESS='127.0.0.1:P '` reached the session's server under another spelling, so the lab
    took the machine's ledger instead of the session's; a payment it took over from a killed kernel was charged in both."""
    from payments_lab.ledger import session_of

    monkeypatch.setenv("TEMPORAL_ADDRESS", pasted.format(address=dev_server.address))
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    connection = await connect()
    assert connection.address == dev_server.address
    with published_session(dev_server):
        assert session_of(connection.address) is not None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8233", "https://localhost:7233/", "grpc://127.0.0.1:7233"])
async def test_an_address_given_as_a_url_is_refused_with_host_and_port_to_give(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The SDK took `http://…` with a warning, as another spelling of the server (see above); a Web UI's URL is the
    likeliest paste."""
    host_port = url.split("://")[1].rstrip("/")
    monkeypatch.setenv("TEMPORAL_ADDRESS", url)
    with pytest.raises(TemporalUnavailableError, match=rf"is '{url}', a URL: give the server's gRPC address as host:port.*\(e\.g\. {host_port}\).*7233"):
        await connect()
    with pytest.raises(TemporalUnavailableError, match="a URL"):
        await connect(address=url)


async def test_an_address_of_a_server_started_by_hand_gets_the_kits_search_attributes(tmp_path: Path) -> None:
    """Off the script: `payments-lab pay --address` on `temporal server start-dev` died with 49 lines of RPCError ("no
    mapping defined for search attribute OrganizationId"), and `list --org` blamed the query's quoting."""
    import subprocess

    from payments_lab import processes
    from payments_lab.server import find_temporal_cli

    port, http_port, metrics_port = free_port(), free_port(), free_port()
    by_hand = processes.spawn(
        [str(find_temporal_cli()), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless", "--log-level", "error",
         "--http-port", str(http_port), "--metrics-port", str(metrics_port)],
        log=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        connection = await connect(address=f"127.0.0.1:{port}", start_server=False)
        assert await connection.client.count_workflows("OrganizationId = 'org-acme'") is not None
    finally:
        processes.stop(by_hand)


async def test_something_that_answers_but_is_not_temporal_is_named_as_such() -> None:
    """Off the script: the dev server's Web UI port (or `python -m http.server`) in TEMPORAL_ADDRESS was called
    unreachable ("Is it running?"), though the server ran one port away; in a notebook the SDK's frames came first."""
    web = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TemporalUnavailableError, match=r"Something answers at 127\.0\.0\.1:\d+, but not a Temporal server's gRPC frontend.*7233.*8233") as raised:
            await connect(address=f"127.0.0.1:{web.server_address[1]}")
    finally:
        web.shutdown()
        web.server_close()
    assert raised.value.__suppress_context__, "one message: the SDK's dump is kept as the context, not shown as the cause"


async def test_config_file_mistakes_are_named_with_their_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Off the script: a mistyped TEMPORAL_CONFIG_FILE and a file without a `default` profile both said "names no server
    address … unset <file>"; a file saved in Latin-1 got a message that named neither the file nor the fix."""
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "tempral.toml"))
    with pytest.raises(TemporalUnavailableError, match=r"TEMPORAL_CONFIG_FILE names .*tempral\.toml, and there is no such file"):
        await connect()
    monkeypatch.delenv("TEMPORAL_CONFIG_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)
    default = tmp_path / "temporalio" / "temporal.toml"
    default.parent.mkdir()
    default.write_text(f'[profile.room]\naddress = "127.0.0.1:{free_port()}"\n', encoding="utf-8")
    if not port_open("127.0.0.1", 7233):  # with a server on the SDK's default, the file's lack of address goes unseen
        with pytest.raises(TemporalUnavailableError, match=r"profile 'default' \(its profiles are 'room'; set TEMPORAL_PROFILE=room .*move .*temporal\.toml aside"):
            await connect()
    default.write_bytes('# Café\n[profile.default]\naddress = "127.0.0.1:7233"\n'.encode("latin-1"))
    with pytest.raises(TemporalUnavailableError, match=r"temporal\.toml is not UTF-8 text .*save it as UTF-8"):
        await connect()


async def test_a_namespace_set_but_empty_is_one_clear_error(dev_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the script: `export TEMPORAL_NAMESPACE=$NS` with NS unset gave `RPCError: Namespace is not set on request.`
    and 50 lines of traceback from every entry point."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", " ")
    with pytest.raises(TemporalUnavailableError, match=r"TEMPORAL_NAMESPACE .* is set but empty: set it to your namespace .* or unset it"):
        await connect()

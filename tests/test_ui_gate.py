"""Tests of payments_lab.ui_gate's rules (the gate itself runs in tests/test_jupyterhub.py, in a real hub)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from tornado import web
from tornado.httpserver import HTTPServer

from payments_lab.processes import free_port
from payments_lab.ui_gate import (
    GateHandler,
    allowed,
    application,
    namespace_of,
    opening_own_namespace,
    own_namespaces_only,
    plain_path,
)

COACHES = frozenset({"coach"})


@pytest.mark.parametrize(
    ("path", "namespace"),
    [
        ("namespaces/ana/workflows", "ana"),
        ("namespaces/ana", "ana"),
        ("api/v1/namespaces/ana/workflows/payment-1/history", "ana"),
        ("api/v1/namespaces/learner%2D01/workflows", "learner-01"),
        ("api/v1/namespaces", None),
        ("namespaces", None),
        ("_app/immutable/start.js", None),
        ("api/v1/settings", None),
        ("", None),
    ],
)
def test_the_namespace_a_path_is_about(path: str, namespace: str | None) -> None:
    assert namespace_of(path) == namespace


@pytest.mark.parametrize(
    ("user", "method", "path", "verdict"),
    [
        ("ana", "GET", "namespaces/ana/workflows", True),
        ("ana", "POST", "api/v1/namespaces/ana/workflows/payment-1/cancel", True),
        ("ana", "GET", "namespaces/bo/workflows", False),
        ("ana", "GET", "api/v1/namespaces/bo/workflows", False),
        ("ana", "POST", "api/v1/namespaces/bo/workflows/payment-1/terminate", False),
        ("ana", "GET", "api/v1/namespaces", True),
        ("ana", "GET", "_app/immutable/start.js", True),
        ("ana", "POST", "api/v1/nexus/endpoints", False),
        ("coach", "GET", "api/v1/namespaces/bo/workflows", True),
        ("coach", "POST", "api/v1/namespaces/bo/workflows/payment-1/terminate", True),
        ("coach", "POST", "api/v1/nexus/endpoints", True),
    ],
)
def test_a_learner_reaches_their_own_namespace_only_and_a_facilitator_every_one(user: str, method: str, path: str, verdict: bool) -> None:
    assert allowed(user, COACHES, method, path) is verdict


def test_the_namespace_list_and_the_default_namespace_a_learner_is_shown_are_their_own() -> None:
    listing = {"namespaces": [{"namespaceInfo": {"name": name}} for name in ("default", "ana", "bo")], "nextPageToken": None}
    assert json.loads(own_namespaces_only(json.dumps(listing).encode(), "ana")) == {
        "namespaces": [{"namespaceInfo": {"name": "ana"}}],
        "nextPageToken": None,
    }
    settings = {"DefaultNamespace": "default", "Auth": {"Enabled": False}}
    assert json.loads(opening_own_namespace(json.dumps(settings).encode(), "ana")) == {"DefaultNamespace": "ana", "Auth": {"Enabled": False}}


@pytest.mark.parametrize(
    ("raw_path", "plain"),
    [
        ("/services/temporal/namespaces/ana/workflows", True),
        ("/services/temporal/api/v1/namespaces/ana/workflows/payment-1%20a", True),
        ("/services/temporal/api/v1/namespaces/ana/../bo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana/%2e%2e/bo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana%2F..%2Fbo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana/./workflows", False),
        ("/services/temporal/api/v1/namespaces/ana%5C..%5Cbo/workflows", False),
        ("/services/temporal/api/v1/namespaces/ana%2Fbo/workflows", False),
        ("/services/temporal/api%2Fv1%2Fnamespaces/bo/workflows", False),
        # A payment id with '/' (the kit accepts `invoice/2026/001`): its link and the UI's calls encode it in one segment.
        ("/services/temporal/namespaces/ana/workflows/payment-invoice%2F2026%2F001", True),
        ("/services/temporal/api/v1/namespaces/ana/workflows/payment-invoice%252F2026%252F001", True),
        ("/services/temporal/api/v1/namespaces/ana/workflows/payment-a%2F..%2F..%2F..%2Fbo", False),
        ("/services/temporal/api/v1/namespaces/ana/workflows/payment-a%5C..%5C..%5Cbo", False),
    ],
)
def test_a_path_with_dot_segments_or_an_encoded_slash_up_to_its_namespace_is_not_plain(raw_path: str, plain: bool) -> None:
    """Such a path would pass the namespace rule as one namespace's and reach another once the UI's server cleans it.
    Off the script: the gate refused every encoded slash, so the kit's own link to payment `invoice/2026/001` got a 400."""
    assert plain_path(raw_path, "/services/temporal/") is plain


class _AsAna(GateHandler):
    """The gate, its user known without a hub (the hub's login itself runs in tests/test_jupyterhub.py)."""

    def get_current_user(self) -> dict[str, str]:
        return {"name": "ana"}


class _AsCoach(GateHandler):
    """The gate, its user a facilitator."""

    def get_current_user(self) -> dict[str, str]:
        return {"name": "coach"}


class _RoomUI(web.RequestHandler):
    """A stand-in for the Web UI's settings and namespace list."""

    def get(self, path: str) -> None:
        if path.endswith("settings"):
            self.write({"DefaultNamespace": "default"})
        else:
            self.write({"namespaces": [{"namespaceInfo": {"name": name}} for name in ("default", "ana", "coach")]})


class _SlowUI(web.RequestHandler):
    """A stand-in for the Web UI: a running workflow's history waits, as the UI's 20-second long poll does."""

    async def get(self, path: str) -> None:
        if "history" in path:
            await asyncio.sleep(3)
        self.add_header("Set-Cookie", "_csrf=one; Path=/")
        self.add_header("Set-Cookie", "other=two; Path=/")
        self.write({"namespaces": [{"namespaceInfo": {"name": "ana"}}, {"namespaceInfo": {"name": "bo"}}]})


async def _serve(app: web.Application) -> tuple[HTTPServer, int]:
    port = free_port()
    server = HTTPServer(app)
    server.listen(port, "127.0.0.1")
    return server, port


def _fetch(url: str) -> tuple[int, float, str, list[str]]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, time.monotonic() - started, reply.read().decode(), reply.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as refused:
        return refused.code, time.monotonic() - started, refused.read().decode(), []


async def test_pages_that_wait_on_the_ui_do_not_hold_up_the_rest_of_the_room() -> None:
    """Each open page of a running workflow holds a call to the UI; with tornado's default pool of 10, ten made everyone wait."""
    ui, ui_port = await _serve(web.Application([(r"/services/temporal/(.*)", _SlowUI)]))
    gate, gate_port = await _serve(application(f"http://127.0.0.1:{ui_port}", [], gate=_AsAna))
    base = f"http://127.0.0.1:{gate_port}/services/temporal"
    loop = asyncio.get_running_loop()
    browsers = ThreadPoolExecutor(max_workers=16)  # 15 pages that wait, and one more learner
    try:
        waiting = [loop.run_in_executor(browsers, _fetch, f"{base}/api/v1/namespaces/ana/workflows/p/history?n={n}") for n in range(15)]
        await asyncio.sleep(0.5)
        status, seconds, body, cookies = await loop.run_in_executor(browsers, _fetch, f"{base}/api/v1/namespaces")
        assert (status, seconds < 1.5) == (200, True), f"the namespace list waited {seconds:.1f} s behind the long polls"
        assert json.loads(body)["namespaces"] == [{"namespaceInfo": {"name": "ana"}}]
        assert cookies == ["_csrf=one; Path=/", "other=two; Path=/"], "every cookie of the UI's comes back"
        assert [reply[0] for reply in await asyncio.gather(*waiting)] == [200] * 15
    finally:
        browsers.shutdown(wait=False)
        gate.stop()
        ui.stop()


async def test_a_ui_that_does_not_answer_gets_a_502_that_says_what_to_do() -> None:
    """The room's server restarting (refused): tornado raises despite raise_error=False; it was a 500 and a traceback."""
    gate, gate_port = await _serve(application(f"http://127.0.0.1:{free_port()}", [], gate=_AsAna))
    try:
        status, _, body, _ = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{gate_port}/services/temporal/namespaces/ana/workflows")
    finally:
        gate.stop()
    assert status == 502
    assert "did not answer" in body and "Reload this page in a few seconds" in body


@pytest.mark.parametrize(("gate", "opens_on", "listed"), [(_AsAna, "ana", ["ana"]), (_AsCoach, "coach", ["default", "ana", "coach"])])
async def test_everyone_opens_the_ui_on_their_own_namespace_and_a_facilitator_lists_every_one(
    gate: type[GateHandler], opens_on: str, listed: list[str]
) -> None:
    """The room server's `default` namespace holds nothing of the room's: a facilitator landed on an empty page."""
    ui, ui_port = await _serve(web.Application([(r"/services/temporal/(.*)", _RoomUI)]))
    gate_server, gate_port = await _serve(application(f"http://127.0.0.1:{ui_port}", ["coach"], gate=gate))
    base = f"http://127.0.0.1:{gate_port}/services/temporal/api/v1"
    try:
        (_, _, settings, _), (_, _, listing, _) = [await asyncio.to_thread(_fetch, f"{base}/{what}") for what in ("settings", "namespaces")]
    finally:
        gate_server.stop()
        ui.stop()
    assert json.loads(settings)["DefaultNamespace"] == opens_on
    assert [n["namespaceInfo"]["name"] for n in json.loads(listing)["namespaces"]] == listed

"""A real JupyterHub room (docs/jupyterhub_config.py): three learners, one Temporal server as a hub service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import runpy
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import requests
from traitlets.config import Config

from conftest import CHROMIUM, CHROMIUM_ARGS
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest
from payments_lab.processes import free_port, leftovers
from payments_lab.service import PaymentService

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "jupyterhub_config.py"
LEARNERS = ["learner-01", "learner-02", "learner-03"]

if shutil.which("configurable-http-proxy") is None and os.environ.get("CI"):
    raise RuntimeError("CI needs configurable-http-proxy for the JupyterHub test: `npm install -g configurable-http-proxy`")
pytestmark = pytest.mark.skipif(
    shutil.which("configurable-http-proxy") is None, reason="JupyterHub's proxy is missing: npm install -g configurable-http-proxy"
)

LESSON_01 = """
from payments_lab import open_lab
from payments_lab.exercises import lesson01
lab = await open_lab()
paid = await lab.pay("12.50", "EUR", show_link=False)
outcomes = []
for exercise in lesson01.EXERCISES:
    namespace = {"lab": lab}
    exec(exercise.solution_code, namespace)
    outcomes.append((await exercise.check_async(namespace[exercise.answer_name], lab=lab)).outcome.name)
seen = (await lab.client.count_workflows("WorkflowType = 'PaymentWorkflow'")).count
print(json.dumps({"namespace": lab.client.namespace, "status": paid.status.value, "checks": outcomes,
                  "mine": lab.service.scoped and await lab.service.count(), "seen": seen, "link": lab.link(paid.payment_id).url}))
await lab.close()
"""


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """GET ``url`` as a browser would (redirects followed), as the hub user of ``token`` or as nobody: status, final URL, body."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.url, reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.url, refused.read().decode()


def _logged_in_browser(hub: str, user: str) -> requests.Session:
    """A browser's session, logged in to the hub as ``user`` through its login form (the dummy authenticator)."""
    browser = requests.Session()
    form = browser.get(f"{hub}/hub/login", timeout=60).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form)
    assert xsrf, "the hub's login form carries its _xsrf token"
    browser.post(f"{hub}/hub/login", data={"username": user, "password": "any", "_xsrf": xsrf.group(1)}, timeout=60).raise_for_status()
    return browser


async def _cancel_through_the_web_ui(hub: str, temporal_port: int) -> None:
    """In a real browser, a learner logs in, opens a running payment of theirs in the Web UI and cancels it.

    The UI's own calls go through the gate as fetches (``Sec-Fetch-Mode: cors``), the cancellation as a POST
    with the UI's CSRF token: what JupyterHub's own check of such requests would refuse.
    """
    from playwright.async_api import async_playwright

    client = (await connect(address=f"127.0.0.1:{temporal_port}", namespace="learner-02")).client
    service = PaymentService(client, f"nobody-polls-{uuid.uuid4().hex[:6]}")
    handle = await service.start(PaymentRequest(f"ui-{uuid.uuid4().hex[:8]}", "org-acme", "u", "5.00", "EUR"))
    refused: list[tuple[int, str]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("response", lambda reply: refused.append((reply.status, reply.url)) if reply.status >= 400 else None)
            await page.goto(f"{hub}/services/temporal/namespaces/learner-02/workflows/{handle.workflow_id}")
            await page.fill("input[name=username]", "learner-02")
            await page.fill("input[name=password]", "any")
            await page.click("[type=submit]")
            await page.get_by_role("button", name="Request Cancellation").click()
            await page.locator("dialog[open] button:has-text('Confirm')").first.click()
            for _ in range(100):
                history = await handle.workflow.fetch_history()
                if any(event.HasField("workflow_execution_cancel_requested_event_attributes") for event in history.events):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the Web UI's cancellation did not reach the workflow; refused: {refused}")
        finally:
            await browser.close()
            await handle.workflow.terminate("test over")
    assert refused == []


def _api(hub: str, token: str, method: str, path: str, body: object | None = None) -> object:
    request = urllib.request.Request(
        f"{hub}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        text = reply.read()
    return json.loads(text) if text else None


async def _execute(hub: str, user: str, token: str, code: str, timeout: float = 240) -> str:
    """Run ``code`` in a new kernel of ``user``'s server, through Jupyter's REST and websocket APIs."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    kernel = _api(hub, token, "POST", f"/user/{user}/api/kernels", {"name": "python3"})
    url = f"{hub.replace('http', 'ws', 1)}/user/{user}/api/kernels/{kernel['id']}/channels"  # type: ignore[index]
    connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    connection.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": "import json\n" + code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
    }))
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(connection.read_message(), max(1.0, deadline - time.monotonic()))
        assert message is not None, "the kernel's websocket closed"
        reply = json.loads(message)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = reply["msg_type"]
        if kind == "stream" and reply["content"]["name"] == "stdout":
            output.append(reply["content"]["text"])
        elif kind == "error":
            raise AssertionError(f"{user}'s kernel raised {reply['content']['ename']}: {reply['content']['evalue']}")
        elif kind == "execute_reply":
            connection.close()
            return "".join(output)


async def test_three_learners_on_one_hub_each_in_their_own_namespace(tmp_path: Path) -> None:
    hub_port, temporal_port, ui_port, proxy_api_port, internal_port, gate_port = (free_port() for _ in range(6))
    token = secrets.token_hex(16)
    mark = uuid.uuid4().hex
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PAYMENTS_LAB_HUB_PORT": str(hub_port),
        "PAYMENTS_LAB_HUB_TEMPORAL_PORT": str(temporal_port),
        "PAYMENTS_LAB_HUB_UI_PORT": str(ui_port),
        "PAYMENTS_LAB_HUB_UI_GATE_PORT": str(gate_port),
        "PAYMENTS_LAB_HUB_FACILITATORS": "Coach",
        # Not JupyterHub's fixed 8001 and 8081: another hub on the machine (CI saw one) must not break this one.
        "PAYMENTS_LAB_HUB_PROXY_API_PORT": str(proxy_api_port),
        "PAYMENTS_LAB_HUB_INTERNAL_PORT": str(internal_port),
        "PAYMENTS_LAB_HUB_HOMES": str(tmp_path / "homes" / "{username}"),
        "PAYMENTS_LAB_HUB_ADMIN_TOKEN": token,
        "PAYMENTS_LAB_MARK": mark,
        # As a facilitator writes them: the hub lower-cases logins, so the config must too.
        "PAYMENTS_LAB_HUB_LEARNERS": "Learner-01, learner-02,LEARNER-03",
    }
    workdir = tmp_path / "hub"
    workdir.mkdir()
    log = open(tmp_path / "hub.log", "wb")  # noqa: SIM115 - closed in finally
    hub_process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    hub = f"http://127.0.0.1:{hub_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _api(hub, token, "GET", "/hub/api/users")
                break
            except OSError:
                assert hub_process.poll() is None, (tmp_path / "hub.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the hub did not start"
                await asyncio.sleep(0.5)
        for user in LEARNERS:
            _api(hub, token, "POST", f"/hub/api/users/{user}/server")
        for user in LEARNERS:
            deadline = time.monotonic() + 120
            while not (_api(hub, token, "GET", f"/hub/api/users/{user}") or {}).get("servers", {}).get("", {}).get("ready"):  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"{user}'s server did not start"
                await asyncio.sleep(0.5)
        reports = await asyncio.gather(*(_execute(hub, user, token, LESSON_01) for user in LEARNERS))
        results = {user: json.loads(report.strip().splitlines()[-1]) for user, report in zip(LEARNERS, reports)}
        for user, result in results.items():
            assert result["namespace"] == user
            assert result["status"] == "completed"
            assert set(result["checks"]) == {"CORRECT"}, result["checks"]
            assert result["seen"] == result["mine"], "a learner's namespace holds only their own payments"
            assert result["link"].startswith(f"/services/temporal/namespaces/{user}/workflows/payment-")
        link = f"{hub}{results['learner-02']['link']}"
        # Nobody logged in: the hub's login page, not the Web UI.
        status, landed, page = _get(link)
        assert "/hub/login" in landed and "/services/temporal/_app/" not in page, (status, landed)
        # Logged in through the hub's form, as a learner's browser is: the link opens the Web UI (OAuth through the hub).
        page = _logged_in_browser(hub, "learner-02").get(link, timeout=60)
        assert page.status_code == 200 and "/services/temporal/_app/" in page.text, (page.status_code, page.url)
        # A learner sees their own namespace only; a facilitator sees every learner's.
        mine = {user: _api(hub, token, "POST", f"/hub/api/users/{user}/tokens", {"expires_in": 600})["token"] for user in ("learner-02", "coach")}  # type: ignore[index]
        gate = f"{hub}/services/temporal"
        status, _, listing = _get(f"{gate}/api/v1/namespaces", mine["learner-02"])
        assert status == 200 and [n["namespaceInfo"]["name"] for n in json.loads(listing)["namespaces"]] == ["learner-02"]
        status, _, payments = _get(f"{gate}/api/v1/namespaces/learner-02/workflows", mine["learner-02"])
        assert status == 200 and results["learner-02"]["link"].split("/workflows/")[1].split("/")[0] in payments
        assert _get(f"{gate}/api/v1/namespaces/learner-01/workflows", mine["learner-02"])[0] == 403
        for sneaked in ("learner-02/../learner-01", "learner-02%2F..%2Flearner-01"):  # by hand: a browser cleans the first
            assert _get(f"{gate}/api/v1/namespaces/{sneaked}/workflows", mine["learner-02"])[0] in (400, 403), sneaked
        status, landed, _ = _get(f"{gate}/namespaces/learner-01/workflows", mine["learner-02"])
        assert status == 200 and landed.endswith("/services/temporal/namespaces/learner-02/workflows")
        status, _, listing = _get(f"{gate}/api/v1/namespaces", mine["coach"])
        assert status == 200 and set(LEARNERS) <= {n["namespaceInfo"]["name"] for n in json.loads(listing)["namespaces"]}
        assert _get(f"{gate}/api/v1/namespaces/learner-01/workflows", mine["coach"])[0] == 200
        if CHROMIUM is not None:
            await _cancel_through_the_web_ui(hub, temporal_port)
        # Behind the hub's login, the Web UI is no longer the room's open door: no warning of one.
        assert "Warning: the dev server has no authentication" not in (tmp_path / "hub.log").read_text()
    finally:
        hub_process.send_signal(2)
        try:
            hub_process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            hub_process.kill()
        log.close()
        left = await asyncio.to_thread(leftovers, mark, 20)
        for pid in left:  # a hub that failed to start leaves its proxy running: never leave it to the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == [], "the hub left a server, a kernel, its proxy or the room behind"


def _load_config(tmp_path: Path, learners: str) -> Config:
    """docs/jupyterhub_config.py as JupyterHub loads it (its code runs; no hub starts)."""
    config = Config()
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PAYMENTS_LAB_HUB_LEARNERS", learners)
            runpy.run_path(str(CONFIG), init_globals={"get_config": lambda: config})
    finally:
        os.chdir(previous)
    return config


def test_the_hub_config_lower_cases_learners_as_the_hub_does(tmp_path: Path) -> None:
    config = _load_config(tmp_path, " Ana,bo ,")
    assert config.Authenticator.allowed_users == {"ana", "bo"}
    assert (tmp_path / "learners.txt").read_text() == "ana\nbo\n", "the room's namespaces are the hub's user names"
    assert re.match(config.Authenticator.username_pattern, "ana") and not re.match(config.Authenticator.username_pattern, "jörg")


def test_the_hub_s_kernels_get_the_kit_s_start_up_file(tmp_path: Path) -> None:
    from payments_lab import kernel_startup

    config = _load_config(tmp_path, "ana")
    assert config.Spawner.environment["PYTHONSTARTUP"] == kernel_startup.__file__, "a NameError says to run the cells above"


def test_facilitators_are_the_hub_s_admins_with_a_namespace_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_LAB_HUB_FACILITATORS", " Coach, ana")
    config = _load_config(tmp_path, "ana,bo")
    assert config.Authenticator.admin_users == {"coach", "ana"}
    assert config.Authenticator.allowed_users == {"ana", "bo", "coach"}
    assert (tmp_path / "learners.txt").read_text() == "ana\nbo\ncoach\n", "a facilitator's notebooks run the lessons too"
    (gate,) = [service for service in config.JupyterHub.services if service["name"] == "temporal"]
    assert gate["command"][-2:] == ["--facilitators", "coach,ana"]


@pytest.mark.parametrize("learners", ["ana,jörg", "ana,ana maria", "o'neil", "Ana,ana"])
def test_the_hub_config_refuses_a_name_that_cannot_be_a_namespace_at_load(tmp_path: Path, learners: str) -> None:
    """Refused by the room service, such a name would stop it, and no learner would have a server."""
    with pytest.raises(SystemExit) as refused:
        _load_config(tmp_path, learners)
    message = str(refused.value.code)
    assert message.startswith("jupyterhub_config.py: ") and "\n" not in message
    assert ("cannot be a learner's namespace" in message or "learners named twice: ana" in message)
    assert "give PAYMENTS_LAB_HUB_LEARNERS (or LEARNERS) such names" in message

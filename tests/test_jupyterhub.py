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
import urllib.request
import uuid
from pathlib import Path

import pytest
from traitlets.config import Config

from payments_lab.processes import free_port, leftovers

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
    hub_port, temporal_port, ui_port, proxy_api_port, internal_port = (free_port() for _ in range(5))
    token = secrets.token_hex(16)
    mark = uuid.uuid4().hex
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PAYMENTS_LAB_HUB_PORT": str(hub_port),
        "PAYMENTS_LAB_HUB_TEMPORAL_PORT": str(temporal_port),
        "PAYMENTS_LAB_HUB_UI_PORT": str(ui_port),
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
        # The link opens the Web UI through the hub (the UI serves its page for that path).
        with urllib.request.urlopen(f"{hub}{results['learner-02']['link']}") as page:
            assert "/services/temporal/_app/" in page.read().decode()
        # That Web UI has no login in front of it (see the config): the room says so where the facilitator looks.
        assert "Warning: the dev server has no authentication" in (tmp_path / "hub.log").read_text()
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


@pytest.mark.parametrize("learners", ["ana,jörg", "ana,ana maria", "o'neil", "Ana,ana"])
def test_the_hub_config_refuses_a_name_that_cannot_be_a_namespace_at_load(tmp_path: Path, learners: str) -> None:
    """Refused by the room service, such a name would stop it, and no learner would have a server."""
    with pytest.raises(SystemExit) as refused:
        _load_config(tmp_path, learners)
    message = str(refused.value.code)
    assert message.startswith("jupyterhub_config.py: ") and "\n" not in message
    assert ("cannot be a learner's namespace" in message or "learners named twice: ana" in message)
    assert "give PAYMENTS_LAB_HUB_LEARNERS (or LEARNERS) such names" in message

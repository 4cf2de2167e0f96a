"""Tests of Web UI links that open where the learner's browser is: this machine, Jupyter's proxy, a Codespace."""

from __future__ import annotations

import json
import urllib.request

import pytest

from conftest import JupyterUnderBaseUrl
from payments_lab.client import web_ui_url
from payments_lab.links import ui_route
from payments_lab.server import EmbeddedServer

CODESPACE = {"CODESPACE_NAME": "fuzzy-space-7x9", "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev"}
HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/learner-01/"}


def test_a_laptop_links_to_this_machine() -> None:
    route = ui_route({})
    assert route.kind == "local"
    assert route.url(8233) == "http://127.0.0.1:8233" and route.public_path(8233) == "/"


def test_a_codespace_links_to_the_forwarded_port() -> None:
    route = ui_route(CODESPACE)
    assert route.url(8233) == "https://fuzzy-space-7x9-8233.app.github.dev"
    assert route.public_path(8233) == "/"


def test_behind_jupyter_the_ui_is_served_under_the_proxy_path() -> None:
    route = ui_route(HUB)
    assert route.url(8233) == "/user/learner-01/proxy/absolute/8233"
    assert route.public_path(8233) == route.url(8233)
    assert ui_route({"PAYMENTS_LAB_JUPYTER_BASE_URL": "/lab-server"}).url(9000) == "/lab-server/proxy/absolute/9000"
    server = EmbeddedServer(route=route)
    server.port, server.ui_port = 7233, 8233
    command = server.command()
    assert command[command.index("--ui-public-path") + 1] == "/user/learner-01/proxy/absolute/8233"
    assert server.ui_url == "/user/learner-01/proxy/absolute/8233"


def test_an_explicit_url_wins_everywhere() -> None:
    route = ui_route({"PAYMENTS_LAB_UI_URL": "https://temporal.example/ui/", **CODESPACE, **HUB})
    assert route.kind == "configured" and route.url(8233) == "https://temporal.example/ui"


def test_a_configured_local_server_is_reached_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAYMENTS_LAB_UI_URL", "JUPYTERHUB_SERVICE_PREFIX", "PAYMENTS_LAB_JUPYTER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CODESPACE.items():
        monkeypatch.setenv(name, value)
    assert web_ui_url("localhost:7233", "default") == "https://fuzzy-space-7x9-8233.app.github.dev"
    assert web_ui_url("temporal.internal:7233", "default") is None


def test_a_workflow_link_opens_through_jupyter_server_proxy(jupyter_under_base_url: JupyterUnderBaseUrl) -> None:
    """A JupyterLab under a hub-like base URL, with jupyter-server-proxy: the link reaches the Web UI and its API."""
    jupyter = jupyter_under_base_url
    origin, token = jupyter.origin, jupyter.token
    link = jupyter.server.ui_url
    assert link is not None and link.startswith(jupyter.base)
    with urllib.request.urlopen(f"{origin}{link}/namespaces/default/workflows?token={token}") as page:
        html = page.read().decode()
    assert f"{link}/_app/" in html, "the page loads its assets through the proxy"
    with urllib.request.urlopen(f"{origin}{link}/api/v1/namespaces?token={token}") as api:
        assert "default" in [n["namespaceInfo"]["name"] for n in json.load(api)["namespaces"]]
    with urllib.request.urlopen(f"{origin}{link}/namespaces/default/workflows") as anonymous:
        assert "/login" in anonymous.url, "without Jupyter's login the Web UI stays closed"

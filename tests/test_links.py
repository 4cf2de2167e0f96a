"""Tests of Web UI links that open where the learner's browser is: this machine, Jupyter's proxy, a Codespace."""

from __future__ import annotations

import importlib.util
import json
import urllib.request

import pytest

from conftest import JupyterUnderBaseUrl
from payments_lab.client import web_ui_url
from payments_lab.errors import InvalidArgumentError
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


def test_a_base_url_given_as_a_full_url_is_reached_by_its_path() -> None:
    route = ui_route({"PAYMENTS_LAB_JUPYTER_BASE_URL": " https://jupyter.example.org/lab-base/ "})
    assert route.url(8233) == route.public_path(8233) == "/lab-base/proxy/absolute/8233"
    with pytest.raises(InvalidArgumentError, match=r"PAYMENTS_LAB_JUPYTER_BASE_URL='jupyter.example.org/x' cannot be Jupyter's base URL"):
        ui_route({"PAYMENTS_LAB_JUPYTER_BASE_URL": "jupyter.example.org/x"})


@pytest.mark.parametrize(
    ("copied", "base"),
    [
        ("http://127.0.0.1:8888/user/ana@example.org/lab", "/user/ana@example.org/"),
        ("https://jupyter.example.org/lab-base/lab/tree/notebooks/00-welcome.ipynb", "/lab-base/"),
        ("/lab-base/tree/notebooks", "/lab-base/"),
        ("https://hub.example.org/user/lab/lab/workspaces/auto-x", "/user/lab/"),
        ("https://hub.example.org/user/lab/", "/user/lab/"),
        ("/lab", "/"),
    ],
)
def test_a_base_url_copied_from_the_address_bar_is_cut_where_jupyters_pages_begin(copied: str, base: str) -> None:
    """Off the script: `…/lab` pasted as PAYMENTS_LAB_JUPYTER_BASE_URL made every Web UI link open JupyterLab again."""
    assert ui_route({"PAYMENTS_LAB_JUPYTER_BASE_URL": copied}).url(8233) == f"{base}proxy/absolute/8233"


@pytest.mark.parametrize("value", ["/", "http://", "host:8233", "http://host:8233/a b", "ftp://host/"])
def test_a_ui_url_that_cannot_be_one_is_refused(value: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"cannot be the Web UI's address: set it to a URL such as http://host:8233"):
        ui_route({"PAYMENTS_LAB_UI_URL": value})


def test_a_ui_url_pasted_with_spaces_is_trimmed() -> None:
    assert ui_route({"PAYMENTS_LAB_UI_URL": " http://host:8233/ \n"}).url(8233) == "http://host:8233"
    assert ui_route({"PAYMENTS_LAB_UI_URL": "/services/temporal/"}).url(8233) == "/services/temporal"
    assert ui_route({"PAYMENTS_LAB_UI_URL": "  "}).kind == "local", "only spaces is unset"


def test_without_jupyter_server_proxy_there_is_no_link_and_one_line_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jupyter_server_proxy" else real_find_spec(name, *a))
    route = ui_route(HUB)
    assert route.kind == "none" and route.url(8233) is None
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "`pip install jupyter-server-proxy`" in said
    ui_route(HUB)
    assert capsys.readouterr().err == "", "said once per process"
    server = EmbeddedServer(route=route)
    server.port, server.ui_port = 7233, 8233
    assert server.ui_url is None and "--ui-public-path" not in server.command()


@pytest.mark.parametrize("prefix", ["/user/j%C3%B6rg/", "/user/ana%20maria/"])
def test_a_user_name_the_hub_escapes_gets_no_dead_link_but_one_line(prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    """jupyter-server-proxy escapes the hub's escaped prefix again (%25C3): the Web UI under any public path
    either redirects for ever or loads a page whose scripts 404 (tried for real: escaped, unescaped, escaped twice)."""
    route = ui_route({"JUPYTERHUB_SERVICE_PREFIX": prefix})
    assert route.kind == "none" and route.url(8233) is None
    said = capsys.readouterr().err.strip()
    assert said.startswith(f"No Web UI links: Jupyter's URL holds an escaped user name ({prefix})") and "\n" not in said
    assert "PAYMENTS_LAB_UI_URL" in said


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

"""How the learner's browser reaches the Temporal Web UI: on this machine, through Jupyter, or a Codespace.

The embedded server's Web UI listens on ``127.0.0.1``. A link to that address opens only
where the browser runs on the same machine as the server. Elsewhere the link must go the
way the browser goes:

* ``PAYMENTS_LAB_UI_URL`` set: that base URL, whatever else holds;
* GitHub Codespaces (``CODESPACE_NAME`` and ``GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN``): the
  Web UI's forwarded port, ``https://<codespace>-<port>.<domain>``;
* behind a Jupyter server that the browser reaches from elsewhere — JupyterHub and Binder set
  ``JUPYTERHUB_SERVICE_PREFIX``; any other remote JupyterLab can set
  ``PAYMENTS_LAB_JUPYTER_BASE_URL`` to its base URL: through ``jupyter-server-proxy`` at
  ``<base url>proxy/absolute/<port>``, behind Jupyter's own login. The Web UI is then served
  under that same path (``temporal server start-dev --ui-public-path``), because it builds
  every link and asset path from it;
* otherwise this machine: ``http://127.0.0.1:<port>``.

Where no link can open, there is none, and one line says why and what to do: behind Jupyter
without ``jupyter-server-proxy`` installed, or for a user name the hub escapes in its URL
(``/user/j%C3%B6rg/``: jupyter-server-proxy escapes that path once more, ``%25C3``, before the
Web UI sees it, so the UI's own path never matches and it redirects for ever, or its pages
load without their scripts; measured with jupyter-server-proxy 4.6 and Temporal
CLI 1.9.1, UI 2.54.1). A value in the environment that cannot be a URL is refused.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from payments_lab.errors import InvalidArgumentError

LOCAL_HOST = "127.0.0.1"
"""Where the embedded server's Web UI listens."""


@dataclass(frozen=True)
class UiRoute:
    """The way from the learner's browser to a Web UI listening on this machine."""

    kind: str
    """``local``, ``codespaces``, ``jupyter``, ``configured``, or ``none`` (no link can open)."""
    base: str
    """What the link is built from: a URL, a URL prefix, or a path prefix, by ``kind``; for
    ``none``, why no link can open and what to do."""

    def public_path(self, ui_port: int) -> str:
        """The path the Web UI must be served under (``/`` unless it is behind Jupyter's proxy)."""
        if self.kind == "jupyter":
            return f"{self.base}proxy/absolute/{ui_port}"
        return "/"

    def url(self, ui_port: int) -> str | None:
        """Base URL of the Web UI listening on ``ui_port``, as the learner's browser reaches it.

        Behind Jupyter this is a path on the Jupyter server (the notebook's own origin), so
        a link in a notebook opens it with the learner's Jupyter login. None where no link
        can open (``none``).
        """
        if self.kind == "none":
            return None
        if self.kind == "configured":
            return self.base
        if self.kind == "codespaces":
            return self.base.format(port=ui_port)
        if self.kind == "jupyter":
            return self.public_path(ui_port)
        return f"http://{LOCAL_HOST}:{ui_port}"

    def describe(self) -> str:
        """One line for the learner: how links will open."""
        return {
            "local": "Web UI links open on this machine",
            "codespaces": "Web UI links open through this codespace's forwarded port",
            "jupyter": "Web UI links open through Jupyter (jupyter-server-proxy), behind its login",
            "configured": "Web UI links use PAYMENTS_LAB_UI_URL",
            "none": f"No Web UI links: {self.base}",
        }[self.kind]


def ui_route(environ: Mapping[str, str] | None = None) -> UiRoute:
    """How the browser reaches a Web UI of this machine, read from the environment (see the module).

    Where no link can open, the route is ``none`` and its one line is written to stderr, once
    per process: every link would otherwise be dead without a word.

    Raises:
        InvalidArgumentError: ``PAYMENTS_LAB_UI_URL`` or ``PAYMENTS_LAB_JUPYTER_BASE_URL`` cannot be a URL.
    """
    env = os.environ if environ is None else environ
    configured = env.get("PAYMENTS_LAB_UI_URL", "").strip()  # a stray space from a copy-paste
    if configured:
        return UiRoute("configured", _web_ui_url(configured))
    codespace, domain = env.get("CODESPACE_NAME"), env.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
    if codespace and domain:
        return UiRoute("codespaces", f"https://{codespace}-{{port}}.{domain}")
    base_url = env.get("PAYMENTS_LAB_JUPYTER_BASE_URL", "").strip()
    prefix = _base_path(base_url) if base_url else env.get("JUPYTERHUB_SERVICE_PREFIX", "")
    if prefix:
        route = UiRoute("jupyter", "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/")
        problem = _jupyter_route_problem(route.base)
        if problem is not None:
            route = UiRoute("none", problem)
            if problem not in _said:
                _said.add(problem)
                print(route.describe(), file=sys.stderr, flush=True)
        return route
    return UiRoute("local", "")


_said: set[str] = set()
"""The reasons for no Web UI link already written by this process."""


def _web_ui_url(value: str) -> str:
    """``PAYMENTS_LAB_UI_URL`` checked: an http(s) URL with a host, or a path below ``/``; no trailing slash."""
    parts = urlsplit(value)
    is_url = parts.scheme in ("http", "https") and bool(parts.netloc)
    is_path = not parts.scheme and not parts.netloc and value.startswith("/") and value.strip("/") != ""
    if not (is_url or is_path) or any(c.isspace() for c in value):
        raise InvalidArgumentError(
            f"PAYMENTS_LAB_UI_URL={value!r} cannot be the Web UI's address: set it to a URL such as "
            "http://host:8233 or a path on this site such as /services/temporal, or unset it"
        )
    return value.rstrip("/")


JUPYTER_PAGES = frozenset({"lab", "tree", "notebooks", "doc", "edit", "view", "terminals", "consoles"})
"""The first path segment of Jupyter's own pages: an address copied from the browser ends there, its base URL before."""


def _base_path(value: str) -> str:
    """The path of ``PAYMENTS_LAB_JUPYTER_BASE_URL``, given as a path (``/lab-base/``) or a full URL.

    An address copied from the browser's address bar (``…/lab-base/lab/tree/01.ipynb``) is cut where
    Jupyter's own pages begin: a link below ``/lab`` opens JupyterLab again, not the Web UI.
    """
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        path = parts.path or "/"  # the link is a path on the notebook's own origin
    elif parts.scheme or parts.netloc or not value.startswith("/") or any(c.isspace() for c in value):
        raise InvalidArgumentError(
            f"PAYMENTS_LAB_JUPYTER_BASE_URL={value!r} cannot be Jupyter's base URL: set it to the address in your "
            "browser up to, not including, /lab: e.g. https://jupyter.example.org/lab-base/ or /lab-base/"
        )
    else:
        path = value
    segments = path.split("/")
    # A hub's /user/<name>/ is the base whatever the name (a user called "lab").
    first = 3 if len(segments) > 2 and segments[1] == "user" else 1
    cut = next((i for i in range(first, len(segments)) if segments[i] in JUPYTER_PAGES), None)
    return path if cut is None else "/".join(segments[:cut]) + "/"


def _jupyter_route_problem(base: str) -> str | None:
    """Why a link through Jupyter's proxy at ``base`` cannot open, if it cannot."""
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return (
            "they go through Jupyter's proxy, and jupyter-server-proxy is not installed: "
            "`pip install jupyter-server-proxy`, then restart the Jupyter server"
        )
    if "%" in base:
        return (
            f"Jupyter's URL holds an escaped user name ({base}), which jupyter-server-proxy escapes again, so the "
            "Web UI never opens there; log in with a name of letters, digits, '-', '.' and '_', or set "
            "PAYMENTS_LAB_UI_URL to a Web UI your browser reaches"
        )
    return None

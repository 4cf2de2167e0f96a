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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

LOCAL_HOST = "127.0.0.1"
"""Where the embedded server's Web UI listens."""


@dataclass(frozen=True)
class UiRoute:
    """The way from the learner's browser to a Web UI listening on this machine."""

    kind: str
    """``local``, ``codespaces``, ``jupyter`` or ``configured``."""
    base: str
    """What the link is built from: a URL, a URL prefix, or a path prefix, by ``kind``."""

    def public_path(self, ui_port: int) -> str:
        """The path the Web UI must be served under (``/`` unless it is behind Jupyter's proxy)."""
        if self.kind == "jupyter":
            return f"{self.base}proxy/absolute/{ui_port}"
        return "/"

    def url(self, ui_port: int) -> str:
        """Base URL of the Web UI listening on ``ui_port``, as the learner's browser reaches it.

        Behind Jupyter this is a path on the Jupyter server (the notebook's own origin), so
        a link in a notebook opens it with the learner's Jupyter login.
        """
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
        }[self.kind]


def ui_route(environ: Mapping[str, str] | None = None) -> UiRoute:
    """How the browser reaches a Web UI of this machine, read from the environment (see the module)."""
    env = os.environ if environ is None else environ
    if env.get("PAYMENTS_LAB_UI_URL"):
        return UiRoute("configured", env["PAYMENTS_LAB_UI_URL"].rstrip("/"))
    codespace, domain = env.get("CODESPACE_NAME"), env.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
    if codespace and domain:
        return UiRoute("codespaces", f"https://{codespace}-{{port}}.{domain}")
    prefix = env.get("PAYMENTS_LAB_JUPYTER_BASE_URL") or env.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return UiRoute("jupyter", "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/")
    return UiRoute("local", "")

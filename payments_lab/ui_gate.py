"""The room's Web UI behind the hub's login: a JupyterHub service that shows each learner their own namespace only.

The Temporal Web UI has no login, and a hub service with a ``url`` is routed by the hub's
proxy without asking who is there. This service stands in front of the UI: a visitor who has
not logged in to the hub is sent to its login page, a learner sees and acts on their own
namespace (their hub user name) only, and a facilitator sees every namespace. Requests from
another site are refused (the browser's ``Sec-Fetch-Site``); the UI's own CSRF token still
guards what changes a workflow. ``docs/jupyterhub_config.py`` runs it as the ``temporal``
service::

    python -m payments_lab.ui_gate --upstream http://127.0.0.1:8233 --facilitators ana

The learners' kernels reach the room's Temporal server and its Web UI directly (127.0.0.1:7233
and :8233, no authentication there): the gate guards the Web UI against whoever reaches only the
hub's port, not a learner's code against another learner's namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import weakref
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpclient, web
from tornado.httpserver import HTTPServer

NAMESPACE_IN_PATH = re.compile(r"^(?:api/v1/)?namespaces/([^/]+)(?:/|$)")
"""A path (below the service's prefix) about one namespace: a page of the UI, or a call to its API."""

NAMESPACE_LIST = "api/v1/namespaces"
"""The UI's call that lists the namespaces (its namespace picker)."""

SETTINGS = "api/v1/settings"
"""The UI's call for its settings, among them the namespace it opens by default."""

READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})

UPSTREAM_TIMEOUT = 60.0
"""Seconds a call to the UI may take: its longest, a running workflow's history, waits 20 s for new events."""

UPSTREAM_CONNECTIONS = 500
"""Calls to the UI at once, for the whole room. Each open page of a running workflow holds one (that
20-second wait) at all times: tornado's default of 10 let ten such pages make every other learner wait."""

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
)
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
_NOT_RETURNED = _HOP_BY_HOP | {"content-length", "content-encoding"}


NAMESPACE_HEAD = re.compile(r"^(?:api/v1/)?namespaces/[^/]*(?:/|$)")
"""The part of a raw path (below the prefix) up to and including its namespace segment."""


def plain_path(raw_path: str, prefix: str) -> bool:
    """Whether a request's path (as sent, percent-encoded) has no ``.`` or ``..`` segment, and no encoded slash up to its namespace.

    A browser never sends such a path; a hand-made one (``namespaces/ana/../bo``) would pass the
    namespace rule as ``ana``'s and reach ``bo``'s once the UI's server cleans it. An encoded slash
    after the namespace is a workflow id's own (``payment-invoice%2F2026``: the kit's links and the
    UI's pages encode an id as one segment); the dot rule is checked with it decoded.
    """
    if any(segment in (".", "..") for segment in unquote(raw_path).replace("\\", "/").split("/")):
        return False
    below = raw_path[len(prefix):] if raw_path.startswith(prefix) else raw_path
    head = NAMESPACE_HEAD.match(below)
    return not re.search(r"%(?:2f|5c)", head.group(0) if head else below, re.IGNORECASE)


def namespace_of(path: str) -> str | None:
    """The namespace a path below the prefix is about (``namespaces/ana/workflows`` → ``ana``), or None."""
    found = NAMESPACE_IN_PATH.match(path)
    return unquote(found.group(1)) if found else None


def allowed(user: str, facilitators: Iterable[str], method: str, path: str) -> bool:
    """Whether ``user`` may send ``method`` to the UI's ``path`` (below the prefix).

    A facilitator may do anything. A learner may read what is about no namespace (the UI's
    page, its scripts, its settings, the namespace list, filtered) and anything about their
    own namespace, and nothing about another's; they change nothing outside their own.
    """
    if user in facilitators:
        return True
    namespace = namespace_of(path)
    if namespace is not None:
        return namespace == user
    return method in READ_ONLY


def own_namespaces_only(body: bytes, user: str) -> bytes:
    """The namespace list of the UI's API with the learner's own namespace only."""
    listing = json.loads(body)
    listing["namespaces"] = [n for n in listing.get("namespaces", []) if n.get("namespaceInfo", {}).get("name") == user]
    return json.dumps(listing).encode()


def opening_own_namespace(body: bytes, user: str) -> bytes:
    """The UI's settings with the user's own namespace as the one the UI opens by default."""
    settings = json.loads(body)
    if "DefaultNamespace" in settings:
        settings["DefaultNamespace"] = user
    return json.dumps(settings).encode()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpclient.AsyncHTTPClient] = weakref.WeakKeyDictionary()


def _upstream_client() -> httpclient.AsyncHTTPClient:
    """The gate's client of the UI on this event loop, with room for :data:`UPSTREAM_CONNECTIONS` calls at once.

    Not tornado's shared ``AsyncHTTPClient()``: created before, elsewhere in the process, it keeps its 10.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpclient.AsyncHTTPClient(force_instance=True, max_clients=UPSTREAM_CONNECTIONS)
    return client


class GateHandler(HubOAuthenticated, web.RequestHandler):
    """Every request below the prefix: logged in and allowed, it goes to the UI; its answer comes back."""

    def initialize(self, upstream: str, prefix: str, facilitators: frozenset[str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.prefix = prefix
        self.facilitators = facilitators

    def check_xsrf_cookie(self) -> None:
        # JupyterHub's own check wants its token in every fetch, which the Temporal UI does not send.
        # What it guards against is another site's page using the learner's cookie: the browser says so.
        if self.request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise web.HTTPError(403, "a request from another site")

    @web.authenticated  # not logged in: a page goes to the hub's login, any other request gets 403
    async def get(self, path: str) -> None:
        await self._forward(path)

    head = post = put = patch = delete = get

    async def _forward(self, path: str) -> None:
        user: str = self.current_user["name"]
        method = self.request.method or "GET"
        raw_path = self.request.path  # as sent: tornado hands ``path`` decoded
        if not plain_path(raw_path, self.prefix):
            raise web.HTTPError(400, "a path with a '.' or '..' segment, or an encoded slash up to its namespace")
        if not allowed(user, self.facilitators, method, path):
            if method == "GET" and not path.startswith("api/"):  # a page of another namespace: open one's own
                self.redirect(url_path_join(self.prefix, "namespaces", user, "workflows"))
                return
            raise web.HTTPError(403, f"{user} may see namespace {user!r} only")
        query = urlsplit(self.request.uri).query
        url = f"{self.upstream}{raw_path}" + (f"?{query}" if query else "")
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in _NOT_FORWARDED}
        try:
            reply = await _upstream_client().fetch(
                url,
                method=method,
                headers=headers,
                body=self.request.body if method not in READ_ONLY else None,
                allow_nonstandard_methods=True,
                follow_redirects=False,
                raise_error=False,  # an HTTP error of the UI's goes back as it is; no answer at all still raises
                decompress_response=True,
                request_timeout=UPSTREAM_TIMEOUT,
            )
        except (httpclient.HTTPClientError, OSError) as silent:  # refused (the room restarts), or no answer in time
            self.set_status(502)
            self.finish(f"The Temporal Web UI at {self.upstream} did not answer ({silent}): the room's server may be "
                        "restarting (the hub starts it again by itself). Reload this page in a few seconds.")
            return
        body = reply.body or b""
        if reply.code == 200 and method == "GET":
            if path == SETTINGS:  # a facilitator too: the server's `default` holds nothing of the room's
                body = opening_own_namespace(body, user)
            elif path == NAMESPACE_LIST and user not in self.facilitators:
                body = own_namespaces_only(body, user)
        self.set_status(reply.code, reply.reason)
        for name, value in reply.headers.get_all():
            if name.lower() == "set-cookie":  # the one header that comes several times (the UI's CSRF cookie among them)
                self.add_header(name, value)
            elif name.lower() not in _NOT_RETURNED:
                self.set_header(name, value)
        if body and method != "HEAD" and reply.code not in (204, 304):  # tornado refuses a body on these
            self.write(body)


def application(upstream: str, facilitators: Iterable[str], *, gate: type[GateHandler] = GateHandler) -> web.Application:
    """The gate's tornado application, configured from the hub's environment (``JUPYTERHUB_SERVICE_PREFIX`` and co.).

    Args:
        upstream: The Temporal Web UI, e.g. ``http://127.0.0.1:8233``.
        facilitators: Hub users who see every namespace.
        gate: The handler of the requests below the prefix (a test's, that knows its user without a hub).
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/temporal/")
    options: dict[str, Any] = {"upstream": upstream, "prefix": prefix, "facilitators": frozenset(facilitators)}
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (re.escape(prefix) + "(.*)", gate, options),
        ],
        cookie_secret=os.urandom(32),
    )


async def serve(upstream: str, facilitators: Iterable[str]) -> None:
    """Serve the gate where the hub expects it (``JUPYTERHUB_SERVICE_URL``) until the process is stopped."""
    address = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8234"))
    server = HTTPServer(application(upstream, facilitators), xheaders=True)
    server.listen(address.port or 80, address.hostname or "127.0.0.1")
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m payments_lab.ui_gate --upstream URL [--facilitators a,b]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the Temporal Web UI, e.g. http://127.0.0.1:8233")
    parser.add_argument("--facilitators", default="", help="hub users who see every namespace, comma-separated")
    args = parser.parse_args(argv)
    facilitators = [name.strip().lower() for name in args.facilitators.split(",") if name.strip()]
    asyncio.run(serve(args.upstream, facilitators))


if __name__ == "__main__":
    main()

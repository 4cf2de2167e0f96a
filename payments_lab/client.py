"""Where the kit's Temporal client comes from: your configuration, a lab session, or its own server.

:func:`connect` looks, in this order, for

1. an explicit ``address``;
2. Temporal's standard environment configuration (``temporalio.envconfig``):
   ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_PROFILE``,
   ``TEMPORAL_CONFIG_FILE`` or the default ``temporal.toml``, for an existing cluster or
   Temporal Cloud;
3. a running lab session (``payments-lab lab`` or ``payments-lab server``);
4. otherwise it starts an embedded dev server that lives as long as this process.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import os
import re
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode

from payments_lab.converter import DATA_CONVERTER
from payments_lab.errors import PaymentsLabError
from payments_lab.interrupts import in_a_kernel, keep_interrupts_prompt
from payments_lab.ledger import announced_servers
from payments_lab.links import ui_route
from payments_lab.search_attributes import ALL as SEARCH_ATTRIBUTES
from payments_lab.server import EmbeddedServer, read_session

SYSTEM_NAMESPACES = frozenset({"default", "temporal-system"})
"""Namespaces of a server that belong to no learner: Temporal's own, and the one a client uses when none is named."""

_ENV_VARS = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE")


CORE_LOGGER = "temporalio.core"
"""The Python logger the SDK's core (its Rust part) logs to. Left to itself the core writes to the
process's standard output, which a notebook shows under whichever cell runs."""

UNREACHABLE_SAID_EVERY = 300.0
"""Seconds between two lines saying that a worker cannot reach its server."""


@functools.cache
def quiet_runtime() -> Runtime:
    """A Temporal runtime that logs only errors, through Python logging, so notebooks are not flooded.

    A worker whose server went away retries its polls for ever, and the core logs an error for
    each retry past the 15th (about 30 lines a minute): those become one line every
    :data:`UNREACHABLE_SAID_EVERY` seconds; a call that waits for the server says so itself
    (:mod:`payments_lab.outage`).
    """
    logger = logging.getLogger(CORE_LOGGER)
    logger.addFilter(_UnreachableServerRetries())
    forwarding = LogForwardingConfig(logger=logger, append_target_to_name=False)
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"), forwarding=forwarding)
        )
    )


class _UnreachableServerRetries(logging.Filter):
    """Turns the core's errors for calls retried against an unreachable server into one line now and then."""

    def __init__(self) -> None:
        super().__init__()
        self._said_at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        log = getattr(record, "temporal_log", None)
        if log is None or log.target != "temporalio_client::retry" or "Unavailable" not in str(log.fields):
            return True
        now = time.monotonic()
        if self._said_at is not None and now - self._said_at < UNREACHABLE_SAID_EVERY:
            return False
        self._said_at = now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = (
            "A Temporal worker of this process cannot reach its server and keeps trying "
            f"({log.message}); this is said again in {UNREACHABLE_SAID_EVERY / 60:g} minutes if it lasts.",
            (),
        )
        return True


def default_config_file() -> Path:
    """Where ``temporalio.envconfig`` looks for ``temporal.toml`` when nothing says otherwise."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home()))
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "temporalio" / "temporal.toml"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def checked_address(address: str, source: str) -> str:
    """``address`` as a Temporal client takes it: ``host:port``, without the spaces or line end a paste leaves.

    One spelling matters: the lab session and its shared ledger are found by the address, and a
    ``'127.0.0.1:7233 '`` that reached the server anyway charged into another ledger.

    Args:
        address: The address given.
        source: Where it was given, for the message (``TEMPORAL_ADDRESS``, ``--address``).

    Raises:
        TemporalUnavailableError: ``address`` is a URL (``http://…``): a Web UI's, most often.
    """
    address = address.strip()
    if _SCHEME.match(address):
        host_port = _SCHEME.sub("", address).split("/", 1)[0]
        raise TemporalUnavailableError(
            f"{source} is {address!r}, a URL: give the server's gRPC address as host:port, without {address.split('://')[0]}:// "
            f"(e.g. {host_port}). A Web UI's address (the dev server's is port 8233) is not it: the dev server's gRPC port "
            "is 7233, and `payments-lab server` prints both."
        )
    return address


def environment_configured() -> bool:
    """Whether Temporal's environment configuration names a server to use."""
    return any(os.environ.get(name) for name in _ENV_VARS) or default_config_file().is_file()


def web_ui_url(address: str, namespace: str) -> str | None:
    """Guess the Web UI of ``address`` (``PAYMENTS_LAB_UI_URL`` overrides the guess).

    A server on this machine is taken to serve its UI at its port + 1000, the dev server's
    default, reached the way :func:`payments_lab.links.ui_route` says.
    """
    route = ui_route()
    if route.kind == "configured":
        return route.base
    host, _, port = address.rpartition(":")
    if host.endswith(".tmprl.cloud"):
        return "https://cloud.temporal.io"
    if host in ("localhost", "127.0.0.1") and port.isdigit():
        ui_port = int(port) + 1000
        if route.kind == "local":
            return f"http://{host}:{ui_port}"
        if route.kind == "jupyter" and not _ui_served_under(ui_port, route.public_path(ui_port)):
            return None
        return route.url(ui_port)
    return None


def _ui_served_under(ui_port: int, path: str) -> bool:
    """Whether the Web UI on ``ui_port`` of this machine serves its pages under ``path``, the one Jupyter's proxy forwards.

    A server the kit did not start (``temporal server start-dev`` in a terminal) serves its UI at
    ``/``: through the proxy its page loads and its scripts do not (a blank page). Says once why
    there is no link, and what to do, when it does not.
    """
    page: str | None = None
    deadline = time.monotonic() + 1.0  # a server started a moment ago opens its UI port after its gRPC port
    while page is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}{quote(path)}/", timeout=2) as answer:
                page = answer.read(1 << 16).decode("utf-8", "replace")
        except (OSError, ValueError) as err:
            if not _refused(err) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    if page is None:
        why = f"no Web UI answers at 127.0.0.1:{ui_port}"
    else:
        if f"{path}/_app/" in page or f"{quote(path)}/_app/" in page:
            return True
        why = f"the Web UI at 127.0.0.1:{ui_port} serves its pages at /, not under {path}, the path Jupyter's proxy forwards"
    print(
        f"No Web UI links: {why}. Start that server with `temporal server start-dev --ui-public-path {path}` (the kit's "
        "`payments-lab server` does), or set PAYMENTS_LAB_UI_URL to where your browser reaches its Web UI.",
        file=sys.stderr,
        flush=True,
    )
    return False


def _refused(err: BaseException) -> bool:
    """Whether ``err`` is a refused connection, as urllib raises it (wrapped in a URLError) or bare."""
    return isinstance(getattr(err, "reason", err), ConnectionRefusedError)


class TemporalUnavailableError(PaymentsLabError, RuntimeError):
    """No Temporal server could be found or reached."""


class NamespaceNotFoundError(PaymentsLabError, LookupError):
    """The namespace the environment configuration names does not exist on its server."""


class SearchAttributesError(PaymentsLabError, RuntimeError):
    """The namespace lacks the kit's search attributes and they could not be added, or the server does not take them yet."""


def workflow_url(ui_url: str | None, namespace: str, workflow_id: str, run_id: str | None = None) -> str | None:
    """Link to one workflow in the Web UI at ``ui_url`` (None without a Web UI)."""
    if not ui_url:
        return None
    # Each part is one path segment, a "/" in an id included: the Web UI decodes its route
    # parameters with decodeURIComponent (temporalio/ui, utilities/encode-uri.ts).
    url = f"{ui_url}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{quote(run_id, safe='')}/history" if run_id else url


def workflows_url(ui_url: str | None, namespace: str, query: str) -> str | None:
    """Link to the Web UI's list of the workflows a visibility ``query`` selects, in ``namespace`` (None without a Web UI)."""
    if not ui_url:
        return None
    return f"{ui_url}/namespaces/{quote(namespace, safe='')}/workflows?query={quote(query, safe='')}"


@dataclass
class Connection:
    """A connected client, where it points, and the server the kit started for it, if any."""

    client: Client
    """The Temporal client, with the kit's data converter."""
    source: str
    """How the server was found, in plain words."""
    ui_url: str | None = None
    """Base URL of the Web UI."""
    server: EmbeddedServer | None = field(default=None, repr=False)
    """The embedded server this connection owns (stopped by :meth:`close`)."""

    @property
    def address(self) -> str:
        """``host:port`` of the server."""
        return self.client.service_client.config.target_host

    @property
    def namespace(self) -> str:
        """The namespace in use."""
        return self.client.namespace

    def workflow_url(self, workflow_id: str, run_id: str | None = None) -> str | None:
        """Link to one workflow in the Web UI."""
        return workflow_url(self.ui_url, self.namespace, workflow_id, run_id)

    async def close(self) -> None:
        """Stop the embedded server if this connection started it."""
        if self.server is not None:
            self.server.stop()
            self.server = None


async def _client(
    target_host: str, namespace: str = "default", *, ready_within: float = 15.0, starting: bool = False, **kwargs: object
) -> Client:
    """Connect, waiting up to ``ready_within`` seconds for a server that is still starting.

    ``starting``: the server was started a moment ago (the kit's own): a connection it does not answer
    yet as gRPC is tried again, where elsewhere it means a port that is not Temporal's.
    """
    deadline = time.monotonic() + ready_within
    while True:
        try:
            return await Client.connect(
                target_host, namespace=namespace, data_converter=DATA_CONVERTER, runtime=quiet_runtime(), **kwargs  # type: ignore[arg-type]
            )
        except RuntimeError as err:
            # A dev server accepts connections a moment before its frontend is healthy.
            if "not healthy yet" in str(err) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                continue
            if "Timeout expired" in str(err):
                # Connected, and no answer in the SDK's 30 s: the port is there, the server silent.
                raise TemporalUnavailableError(
                    f"The Temporal server at {target_host} accepts connections but does not answer ({err}). "
                    "If it was stopped with Ctrl-Z, `fg` in its terminal resumes it; otherwise its "
                    "machine may be out of CPU or memory."
                ) from None
            if "InvalidContentType" in str(err):  # TLS spoken to a server without it (rustls)
                raise TemporalUnavailableError(
                    f"The Temporal server at {target_host} does not use TLS, and this client did: TEMPORAL_API_KEY "
                    "(or TEMPORAL_TLS, or a profile's api_key or tls) turns TLS on. For a local or room server, unset them; "
                    "to keep an API key without TLS, set TEMPORAL_TLS=false."
                ) from None
            gist = transport_gist(err)
            not_grpc = gist == "transport error" or gist.startswith("h2 protocol error")
            if not_grpc and starting and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                continue
            if not_grpc:
                # The connection was made, and what answered does not speak Temporal's gRPC.
                raise TemporalUnavailableError(
                    f"Something answers at {target_host}, but not a Temporal server's gRPC frontend ({gist}): a Web UI's "
                    "or an HTTP port, most often. The dev server listens for clients on 7233 and serves its Web UI on 8233; "
                    "`payments-lab server` prints both. Give the gRPC one in TEMPORAL_ADDRESS (or --address)."
                ) from None
            if in_a_room(target_host, namespace):
                # Unsetting TEMPORAL_ADDRESS would move the learner to a server of their own,
                # out of the room and of the facilitator's view: wait for the room instead.
                raise TemporalUnavailableError(
                    f"The room's Temporal server at {target_host} is not up (yet): {gist}. Run this cell again once "
                    "your facilitator has started it; keep TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE as they are."
                ) from None
            no_port = "" if target_host.rpartition(":")[2].isdigit() else " No port was given: a Temporal server usually listens on 7233."
            if os.environ.get("TEMPORAL_ADDRESS", "").strip() == target_host and not os.environ.get("TEMPORAL_NAMESPACE", "").strip():
                advice = ("If it is your workshop room's, run this cell again once it is up, with TEMPORAL_NAMESPACE from "
                          "your line set too; otherwise unset TEMPORAL_ADDRESS to let the kit start its own.")
            else:
                advice = "Unset TEMPORAL_ADDRESS to let the kit start its own."
            raise TemporalUnavailableError(
                f"Could not reach a Temporal server at {target_host} ({gist}).{no_port} Is it running? {advice}"
            ) from None
        except ValueError as err:
            if "invalid target URL" not in str(err):  # the SDK refusing the address before trying it
                raise
            raise TemporalUnavailableError(
                f"{target_host!r} is not an address a Temporal client can use ({err}). Give host:port, such as "
                "127.0.0.1:7233 or <namespace>.<account>.tmprl.cloud:7233, in TEMPORAL_ADDRESS (or --address)."
            ) from None


_OS_MESSAGE = re.compile(r'message: "([^"]+)"')
_CONNECT_ERROR = re.compile(r'ConnectError\("([^"]+)"')


def transport_gist(err: BaseException) -> str:
    """What a failed connection comes down to, such as ``connection refused``, without the
    transport's debug dump (``tonic::transport::Error(Transport, ConnectError(...))``)."""
    text = str(err)
    for pattern in (_OS_MESSAGE, _CONNECT_ERROR):
        found = pattern.search(text)
        if found:
            return found.group(1).lower()
    return text


def in_a_room(target_host: str, namespace: str) -> bool:
    """Whether this connection is a room's line: ``TEMPORAL_ADDRESS`` names ``target_host`` and
    ``TEMPORAL_NAMESPACE`` names ``namespace``, as ``payments-lab room`` hands them out."""
    return os.environ.get("TEMPORAL_ADDRESS", "").strip() == target_host and os.environ.get("TEMPORAL_NAMESPACE", "").strip() == namespace != ""


SEARCH_ATTRIBUTES_USABLE_WITHIN = 15.0
"""Seconds a search attribute just added may take to be usable. A cluster caches a namespace's
search attributes: until its cache refreshes (2 s by default), a workflow started with the new
one is refused (see :data:`payments_lab.server.SEARCH_ATTRIBUTE_CACHE_SETTING`)."""


async def ensure_search_attributes(client: Client) -> None:
    """Register the kit's search attributes on the client's namespace if they are missing, and
    return once the server accepts them.

    Raises:
        SearchAttributesError: they are missing and this client may not add them (Temporal
            Cloud), or they were added but the server did not accept them in time.
    """
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), retry=True
        )
        existing = set(listed.custom_attributes)
    except RPCError as err:
        # The time-skipping test server can add search attributes but not list them.
        if err.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES if key.name not in existing
    }
    if not missing:
        return
    try:
        # retry=True: adding them changes the namespace, which a cluster rate-limits (a room
        # prepares many at once); an attribute that already exists is skipped, so a retry is safe.
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing), retry=True
        )
    except RPCError as err:
        names = ", ".join(f"{name} (Keyword)" for name in missing)
        raise SearchAttributesError(
            f"The namespace {client.namespace!r} lacks the search attributes {names} and they could "
            f"not be added ({err.message}). Add them once with `temporal operator search-attribute "
            "create --name NAME --type Keyword` (or in Temporal Cloud's namespace settings)."
        ) from err
    await _until_usable(client, sorted(missing))


async def _until_usable(client: Client, names: list[str], timeout: float = SEARCH_ATTRIBUTES_USABLE_WITHIN) -> None:
    """Wait until a visibility query naming ``names`` is accepted: the server knows them then."""
    query = " AND ".join(f"{name} = ''" for name in names)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.count_workflows(query)
            return
        except RPCError as err:
            if err.status is RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server has no visibility queries
                return
            if err.status is not RPCStatusCode.INVALID_ARGUMENT:
                raise
            if time.monotonic() > deadline:
                raise SearchAttributesError(
                    f"The search attributes {', '.join(names)} were added to the namespace {client.namespace!r} "
                    f"but the server still refuses them after {timeout:.0f} s ({err.message}). Run this again in a "
                    "minute; if it persists, check them with `temporal operator search-attribute list`."
                ) from err
        await asyncio.sleep(0.2)


async def connect(
    *,
    address: str | None = None,
    namespace: str | None = None,
    start_server: bool = True,
    server: EmbeddedServer | None = None,
) -> Connection:
    """Connect to the server the kit should use (see the module docstring for the order).

    Args:
        address: ``host:port`` to use, skipping the search.
        namespace: Namespace, when ``address`` is given (default ``"default"``).
        start_server: Start an embedded server when nothing else is found.
        server: An embedded server of the caller's (for instance one on a SQLite file that
            a lesson restarts): started if needed and used, skipping the search.

    Raises:
        TemporalUnavailableError: nothing was found and ``start_server`` is false, or the
            server found does not answer.
        NamespaceNotFoundError: the environment configuration names a namespace its server
            does not have; the message names the nearest ones it has.
    """
    if in_a_kernel():  # a notebook's: ■ must stop a cell that waits on the server at once
        keep_interrupts_prompt()
    if address:
        address = checked_address(address, "the address")
        client = await _client(address, (namespace or "").strip() or "default")
        # As for an address from the environment: a server started by hand lacks the kit's search attributes.
        await _with_search_attributes(client, address)
        return Connection(client, f"address {address}", web_ui_url(address, client.namespace))
    if server is not None:
        return await _connect_embedded(server, "embedded dev server of the caller")
    if environment_configured():
        config_file = _config_file()
        try:
            config = ClientConfig.load_client_connect_config()
        except RuntimeError as err:  # the SDK's ConfigError: a profile or a file it cannot read
            raise TemporalUnavailableError(_unreadable_config_message(err, config_file)) from None
        if "target_host" in config:
            config["target_host"] = checked_address(config["target_host"], "Temporal's address (TEMPORAL_ADDRESS or the profile's)")
        if "namespace" in config:
            config["namespace"] = config["namespace"].strip()
            if not config["namespace"]:
                raise TemporalUnavailableError(
                    "TEMPORAL_NAMESPACE (or the profile's namespace) is set but empty: set it to your namespace (a room's "
                    "line has it), or unset it to use 'default'."
                )
        no_address = "target_host" not in config
        config.setdefault("target_host", "localhost:7233")
        target = config["target_host"]
        try:
            client = await _client(**config)
        except TemporalUnavailableError:
            if not no_address:
                raise
            raise TemporalUnavailableError(_no_address_message(target, config_file)) from None
        if "namespace" not in config:
            await _refuse_default_in_a_room(client, target)
        await _with_search_attributes(client, target)
        return Connection(client, f"Temporal environment configuration ({target})", web_ui_url(target, client.namespace))
    session = read_session()
    if session is not None:
        client = await _client(session.address, session.namespace)
        return Connection(client, f"lab session of process {session.pid}", session.ui_url)
    if not start_server:
        raise TemporalUnavailableError(
            "No Temporal server found. Start the lab with `payments-lab lab` (or just a server with "
            "`payments-lab server`), or point TEMPORAL_ADDRESS at an existing one." + notebook_servers_words()
        )
    return await _connect_embedded(EmbeddedServer(), "embedded dev server")


def notebook_servers_words() -> str:
    """What to add to "no server found" where notebook labs run servers of their own, which no command finds by itself
    (a lab session's server is found; theirs live and die with their kernels, on ports of their own)."""
    servers = announced_servers()
    if not servers:
        return ""
    address, pid = servers[0]
    others = f" ({len(servers) - 1} more: " + ", ".join(a for a, _ in servers[1:]) + ")" if len(servers) > 1 else ""
    return (
        f" A notebook's lab runs a server of its own at {address} (process {pid}){others}: add `--address {address}` to "
        "reach it, and for a worker that takes the lab's payments `--task-queue` with the lab's queue "
        "(`lab.task_queue` in the notebook)."
    )


async def _with_search_attributes(client: Client, target: str) -> None:
    """Make sure the client's namespace has the kit's search attributes; a namespace the server lacks is named."""
    try:
        await ensure_search_attributes(client)
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise NamespaceNotFoundError(await _missing_namespace_message(client, target)) from None


def _config_file() -> Path | None:
    """The ``temporal.toml`` Temporal's environment configuration reads, or None when there is none.

    Raises:
        TemporalUnavailableError: ``TEMPORAL_CONFIG_FILE`` names a file that is not there.
    """
    named = os.environ.get("TEMPORAL_CONFIG_FILE", "").strip()
    if named:
        if not Path(named).is_file():
            raise TemporalUnavailableError(
                f"TEMPORAL_CONFIG_FILE names {named}, and there is no such file: correct the path, or unset TEMPORAL_CONFIG_FILE."
            )
        return Path(named)
    default = default_config_file()
    return default if default.is_file() else None


def _profiles(config_file: Path | None) -> list[str]:
    """The profiles ``config_file`` holds, or [] when it cannot be read."""
    if config_file is None:
        return []
    try:
        profiles = tomllib.loads(config_file.read_text(encoding="utf-8")).get("profile", {})
    except (OSError, ValueError):  # UnicodeDecodeError and TOMLDecodeError are ValueErrors
        return []
    return sorted(profiles) if isinstance(profiles, dict) else []


def _profile_words(config_file: Path | None) -> str:
    """Which profiles ``config_file`` has and which one is used, as a sentence ('' without a file)."""
    if config_file is None:
        return ""
    used = os.environ.get("TEMPORAL_PROFILE") or "default"
    profiles = _profiles(config_file)
    others = [name for name in profiles if name != used]
    has = f"its profiles are {', '.join(repr(p) for p in profiles)}" if profiles else "it has no profile"
    choose = f"; set TEMPORAL_PROFILE={others[0]} to use {others[0]!r}" if others and used not in profiles else ""
    return f" {config_file} is read with profile {used!r} ({has}{choose})."


def _unreadable_config_message(err: RuntimeError, config_file: Path | None) -> str:
    """What to say of a configuration the SDK could not read: a profile it lacks, a file it cannot parse."""
    where = str(config_file) if config_file is not None else f"TEMPORAL_CONFIG_FILE (by default {default_config_file()})"
    if "utf-8" in str(err).lower():
        return f"Temporal's configuration file {where} is not UTF-8 text ({err}): save it as UTF-8 (an editor's \"Save with encoding\")."
    if os.environ.get("TEMPORAL_CONFIG_FILE", "").strip():
        where = f"TEMPORAL_CONFIG_FILE ({where})"
    return f"Temporal's environment configuration could not be read ({err}).{_profile_words(config_file)} Check TEMPORAL_PROFILE and {where}."


def _no_address_message(target: str, config_file: Path | None) -> str:
    """What to say when the configuration names no address and nothing answers at the SDK's default."""
    variables = [name for name in _ENV_VARS if os.environ.get(name)]
    given = ", ".join(variables + ([str(config_file)] if config_file is not None and "TEMPORAL_CONFIG_FILE" not in variables else []))
    leave = f"unset {', '.join(variables)}" if variables else ""
    if config_file is not None and "TEMPORAL_CONFIG_FILE" not in variables:
        leave = f"{leave + ', and ' if leave else ''}move {config_file} aside"
    return (
        f"Temporal's environment configuration ({given}) names no server address, so the kit tried {target}, where no "
        f"Temporal server answers.{_profile_words(config_file)} Set TEMPORAL_ADDRESS too (a room's line has it), or "
        f"{leave} to let the kit start its own server."
    )


NAMESPACES_PER_PAGE = 100
"""Namespaces asked for in one call: a room's server lists them a page at a time."""


async def namespace_names(client: Client, timeout: timedelta) -> list[str]:
    """The names of every namespace of ``client``'s server, page after page, each call bounded by ``timeout``."""
    names: list[str] = []
    token = b""
    while True:
        listed = await client.workflow_service.list_namespaces(
            ListNamespacesRequest(page_size=NAMESPACES_PER_PAGE, next_page_token=token), timeout=timeout
        )
        names += [entry.namespace_info.name for entry in listed.namespaces]
        token = listed.next_page_token
        if not token:
            return names


async def _refuse_default_in_a_room(client: Client, target: str) -> None:
    """Refuse ``default`` on a room's server (it has learners' namespaces): half a room's line, address without namespace.

    Raises:
        NamespaceNotFoundError: the server holds namespaces other than its own.
    """
    try:
        names = await namespace_names(client, timedelta(seconds=5))
    except RPCError:  # a cluster may not let this client list them (Temporal Cloud): nothing to tell
        return
    learners = sorted(name for name in names if name not in SYSTEM_NAMESPACES)
    if learners:
        shown = ", ".join(repr(name) for name in learners[:3]) + (", …" if len(learners) > 3 else "")
        raise NamespaceNotFoundError(
            f"TEMPORAL_ADDRESS names the server at {target}, which holds a room's namespaces ({shown}), and "
            "TEMPORAL_NAMESPACE is not set: your payments and checks would land in 'default', where your facilitator "
            "does not see them. Set TEMPORAL_NAMESPACE from the line your facilitator handed out, then run this cell again."
        )


async def _missing_namespace_message(client: Client, target: str) -> str:
    """What to say of a configured namespace the server does not have, with the nearest ones it has."""
    message = (
        f"The Temporal server at {target} has no namespace {client.namespace!r}, which TEMPORAL_NAMESPACE (or your "
        "Temporal profile) names. Check it against the line your facilitator handed out"
    )
    try:
        names = [name for name in await namespace_names(client, timedelta(seconds=5)) if name != "temporal-system"]
    except RPCError:  # a cluster may not let this client list them (Temporal Cloud)
        return message + "."
    near = difflib.get_close_matches(client.namespace, names, n=3, cutoff=0.6)
    if near:
        quoted = [repr(name) for name in near]
        return message + ": did you mean " + (", ".join(quoted[:-1]) + " or " if len(quoted) > 1 else "") + quoted[-1] + "?"
    return message + "; this server has " + ", ".join(repr(name) for name in sorted(names)[:10]) + ("…" if len(names) > 10 else "") + "."


async def _connect_embedded(server: EmbeddedServer, source: str) -> Connection:
    server.start()
    try:
        client = await _client(server.address, server.namespace, starting=True)
    except BaseException:
        server.stop()
        raise
    return Connection(client, source, server.ui_url, server=server)

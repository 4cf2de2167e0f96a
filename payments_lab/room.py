"""A whole room on one Temporal server: one namespace per learner, and each learner's connection lines.

``payments-lab room`` starts the server (or prepares an existing cluster) and prints, for
each learner, what their notebooks need: Temporal's standard environment variables
(``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``), which the kit reads first, and the Web UI
address for their links (``PAYMENTS_LAB_UI_URL``). Namespaces keep the learners apart: each
sees, counts and searches only their own payments.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from payments_lab.client import TemporalUnavailableError, _client, ensure_search_attributes
from payments_lab.errors import InvalidArgumentError, PaymentsLabError
from payments_lab.outage import is_unreachable

NAME_RULE = r"^(?!(?:default|temporal-system)$)[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
"""A learner's name, which is their namespace, never one of :data:`payments_lab.client.SYSTEM_NAMESPACES`. Temporal's server
limits only a namespace's length (``limit.maxIDLength``, 1000); the kit keeps names to what a shell line
(``export TEMPORAL_NAMESPACE=…``), a file name (``--out``) and a URL segment hold as written."""

_NAME = re.compile(NAME_RULE)

RETENTION = timedelta(days=3)
"""How long a prepared cluster keeps a learner's closed workflows (a workshop and its follow-up)."""


@dataclass(frozen=True)
class Learner:
    """One learner of the room and how their notebooks reach the server."""

    name: str
    """The learner's name, which is also their namespace."""
    address: str
    """``host:port`` of the server, as the learner's machine reaches it."""
    ui_url: str | None
    """Base URL of the Web UI, as the learner's browser reaches it."""

    @property
    def environment(self) -> dict[str, str]:
        """The environment variables that point the learner's notebooks at their namespace."""
        variables = {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_NAMESPACE": self.name}
        if self.ui_url:
            variables["PAYMENTS_LAB_UI_URL"] = self.ui_url
        return variables

    def line(self) -> str:
        """``name: TEMPORAL_ADDRESS=… TEMPORAL_NAMESPACE=… PAYMENTS_LAB_UI_URL=…``"""
        return f"{self.name}: " + " ".join(f"{key}={value}" for key, value in self.environment.items())


def learner_names(count: int | None = None, names_file: str | Path | None = None) -> list[str]:
    """The room's learners: the lines of ``names_file``, or ``learner-01`` … ``learner-<count>``.

    Raises:
        ValueError: no learner, a name that cannot be a namespace, or a name twice.
    """
    if names_file is not None:
        try:
            # utf-8-sig: Windows editors often start a UTF-8 file with a byte-order mark.
            text = Path(names_file).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            line = Path(names_file).read_bytes()[: err.start].count(b"\n") + 1
            raise InvalidArgumentError(f"{names_file}, line {line}: not UTF-8 text; save the file as UTF-8") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        if count is None or isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 500:
            raise InvalidArgumentError(f"the room needs between 1 and 500 learners, got {count!r}")
        digits = max(2, len(str(count)))  # learner-001 … learner-120: the names sort as the numbers do
        names = [f"learner-{n:0{digits}d}" for n in range(1, count + 1)]
    if not names:
        raise InvalidArgumentError(f"{names_file} names no learner (one name per line)")
    for name in names:
        if not _NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"{name!r} cannot be a learner's namespace: use letters, digits, '.', '_' and '-' "
                "(at most 63 characters, starting with a letter or digit; not 'default' or 'temporal-system', "
                "which are the server's own)"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgumentError(f"learners named twice: {', '.join(repeated)}")
    folded = sorted({n for n in names if [m.lower() for m in names].count(n.lower()) > 1})
    if folded:
        # Namespaces are case-sensitive, but a hub (and a learner reading their line) folds them into one.
        raise InvalidArgumentError(f"learners whose names differ only in case: {', '.join(folded)}; give each another name")
    return names


def learners(names: Sequence[str], address: str, ui_url: str | None) -> list[Learner]:
    """Each learner's connection, for a server at ``address`` with its Web UI at ``ui_url``."""
    return [Learner(name, address, ui_url) for name in names]


class RoomPreparationError(PaymentsLabError, RuntimeError):
    """A learner's namespace could not be created on the cluster, or never became usable."""


PREPARED_AT_ONCE = 10
"""Namespaces whose search attributes are added and awaited at the same time."""

_REFUSED_TO_CLIENTS = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.UNIMPLEMENTED)
"""How a cluster that keeps namespace creation to its operators (Temporal Cloud) says no."""


async def prepare_namespaces(client: Client, names: Sequence[str], on_ready: Callable[[str], None] | None = None) -> list[str]:
    """Register each learner's namespace on an existing cluster, and the kit's search attributes in it.

    Running it again is safe: what is ready is kept, what is missing is added.

    Args:
        client: A client of the cluster.
        names: The learners' namespaces.
        on_ready: Called with each namespace once it is ready (a progress bar's update).

    Returns:
        The namespaces that were created (the others existed already).

    Raises:
        RoomPreparationError: a namespace or the search attributes could not be added (Temporal
            Cloud: create them in the Cloud console, then run the room with ``--address`` again).
        TemporalUnavailableError: the server stopped answering; the message says how far it got.
    """
    created: list[str] = []
    ready: list[str] = []
    try:
        for name in names:
            if await _register(client, name):
                created.append(name)
        # On a production cluster a namespace's new search attributes are refused for ~2 s
        # (its cache): the namespaces wait for theirs side by side, not one after another.
        at_once = asyncio.Semaphore(PREPARED_AT_ONCE)

        async def make_usable(name: str) -> None:
            async with at_once:
                await _make_usable(client, name)
                ready.append(name)
                if on_ready is not None:
                    on_ready(name)

        await asyncio.gather(*(make_usable(name) for name in names))
    except RPCError as err:
        if not is_unreachable(err):
            raise
        raise TemporalUnavailableError(
            f"The Temporal server at {client.service_client.config.target_host} stopped answering while the room was "
            f"being prepared ({err.message}): {len(ready)} of {len(names)} learners' namespaces are ready. Run the same "
            "command again once it answers: what is ready is kept."
        ) from err
    return created


async def _register(client: Client, name: str) -> bool:
    """Create the namespace ``name``; False if it existed already."""
    try:
        # retry=True: a cluster limits namespace creation (frontend.rps.namespaceReplicationInducingAPIs,
        # 20 per second per frontend by default) and refuses the rest with RESOURCE_EXHAUSTED; Temporal's client
        # waits and tries again, as for an outage of a few seconds.
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=name,
                workflow_execution_retention_period=Duration(seconds=int(RETENTION.total_seconds())),
            ),
            retry=True,
        )
        return True
    except RPCError as err:
        if err.status is RPCStatusCode.ALREADY_EXISTS:
            return False
        if is_unreachable(err):
            raise
        cloud = (
            " On Temporal Cloud, which keeps namespace creation to its console, create the learners' namespaces there "
            "(or with tcld) first."
            if err.status in _REFUSED_TO_CLIENTS
            else ""
        )
        raise RoomPreparationError(
            f"could not create the namespace {name!r} ({err.message}). Run this again: the namespaces already "
            f"prepared are kept.{cloud}"
        ) from err


async def _make_usable(client: Client, name: str) -> None:
    """Register the kit's search attributes in the namespace ``name``, once it reaches every service."""
    learner_client = await _client(client.service_client.config.target_host, name)
    for _ in range(60):  # a namespace just created takes a moment to reach every service
        try:
            await ensure_search_attributes(learner_client)
            return
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.5)
    raise RoomPreparationError(f"the namespace {name!r} was created but did not become usable within 30 s: run this again")

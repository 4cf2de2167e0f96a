"""A lab whose payments the server only ever sees encrypted, with a codec server for the Web UI and the CLI.

:func:`open_private_lab` starts, in order: a codec server (for the Web UI's origin), an
embedded dev server whose Web UI decodes through it (``--ui-codec-endpoint``), and a lab
whose client and worker use the kit's data converter followed by the AES-GCM codec of
``PAYMENTS_LAB_CODEC_KEY``. :func:`stored_payloads` and :func:`cli_show` show a history as
the server keeps it, and as those who hold the key see it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory

from payments_lab.activities import PaymentActivities
from payments_lab.checkout import Checkout
from payments_lab.client import Connection, connect
from payments_lab.codec import ENCODING, EncryptionCodec, encrypted_converter
from payments_lab.codec_server import CodecServer
from payments_lab.converter import DATA_CONVERTER
from payments_lab.errors import PaymentsLabError
from payments_lab.lab import ClosedGate, Lab, quiet_logs
from payments_lab.ledger import open_repository
from payments_lab.processes import free_port
from payments_lab.repository import PaymentRepository
from payments_lab.server import HOST, EmbeddedServer, find_temporal_cli
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker, new_task_queue


class CliShowError(PaymentsLabError, RuntimeError):
    """The ``temporal`` CLI could not show a workflow (a closed lab's server, a wrong id): its own message says why."""


@dataclass
class PrivateLab:
    """A lab on a server of its own that stores only ciphertext, and the codec server that reads it."""

    lab: Lab
    """The lab: its client and worker encrypt and decrypt with :attr:`codec`."""
    codec: EncryptionCodec
    """The codec of ``PAYMENTS_LAB_CODEC_KEY``."""
    codec_server: CodecServer
    """The codec server the Web UI decodes through."""
    plain_client: Client
    """A client of the same server without the codec: it sees what the server stores."""
    checkout: Checkout
    """Payments that wait for the customer, on this lab."""
    server: EmbeddedServer
    """The lab's own dev server, whose Web UI decodes through :attr:`codec_server`."""

    async def close(self) -> None:
        """Stop the worker, the server and the codec server."""
        if self in _OPEN:
            _OPEN.remove(self)
        await self.lab.close()
        self.codec_server.stop()


_OPEN: list[PrivateLab] = []
"""The private labs this process opened and has not closed: a cell run again closes the one it opened before."""


async def open_private_lab(codec: EncryptionCodec | None = None, *, quiet: bool = True) -> PrivateLab:
    """Start a codec server, a dev server whose Web UI uses it, and a lab that encrypts every payload.

    Args:
        codec: The codec; by default the one of ``PAYMENTS_LAB_CODEC_KEY``.
        quiet: Hide the tracebacks of activity attempts that fail on purpose.

    A private lab opened earlier in this process and not closed is closed first (the cell
    that opens one was run again): one private lab at a time.

    Raises:
        CodecKeyError: no codec given and ``PAYMENTS_LAB_CODEC_KEY`` is missing or malformed.
    """
    codec = codec or EncryptionCodec.from_env()
    for earlier in list(_OPEN):
        # The cell that opened it ran again: its server, codec server and worker would run on, unreachable.
        await earlier.close()
        print(f"Closed the private lab opened earlier in this kernel (server {earlier.lab.connection.address}).")
    if quiet:
        quiet_logs()
    ui_port = free_port()
    codec_server = CodecServer(codec, allowed_origins=[f"http://{HOST}:{ui_port}", f"http://localhost:{ui_port}"]).start()
    server = EmbeddedServer(ui_port=ui_port, ui_codec_endpoint=codec_server.url)
    plain: Connection | None = None
    gate = ClosedGate()
    worker: BackgroundWorker | None = None
    repository: PaymentRepository | None = None
    try:
        plain = await connect(server=server)
        plain.client = gate.on(plain.client)  # both clients say so once the lab has closed
        config = plain.client.config()  # a copy: the plain client keeps its converter
        config["data_converter"] = encrypted_converter(codec)
        private_client = Client(**config)
        connection = Connection(private_client, "embedded dev server with a codec server", plain.ui_url, server=server)
        repository = open_repository(connection.address, own_server=True)
        activities = PaymentActivities(repository)
        task_queue = new_task_queue("private")
        worker = await BackgroundWorker(private_client, task_queue, activities).start()
        service = PaymentService(private_client, task_queue, ui_url=connection.ui_url)
        lab = Lab("private", connection, repository, activities, worker, service)
        lab._gate = gate
        lab.reopen_with = "private = await open_private_lab()"
    except BaseException:
        # Whatever had started stops: a cell run again would otherwise find them running on, unreachable.
        if worker is not None:
            await worker.stop()
        if plain is not None:
            await plain.close()  # stops the server it started
        server.stop()
        codec_server.stop()
        if repository is not None:
            repository.close()
        raise
    private = PrivateLab(lab, codec, codec_server, plain.client, Checkout(service), server)
    _OPEN.append(private)
    return private


def describe_payload(payload: Payload) -> str:
    """A payload in one line: its JSON if it is readable, else its encoding and size."""
    encoding = payload.metadata.get("encoding", b"").decode()
    if encoding.startswith("json/"):
        return payload.data.decode()
    if payload.metadata.get("encoding") == ENCODING:
        return f"{encoding}, {len(payload.data)} bytes: {payload.data[:24].hex(' ')} …"
    return f"{encoding}, {len(payload.data)} bytes"


def stored_bytes(history: WorkflowHistory) -> bytes:
    """The history as the server stores it: protobuf bytes, every payload's data verbatim.

    Search these for plaintext, not ``history.to_json()``: JSON writes payload data in
    base64 (plaintext would not show), and its timestamps and ids are full of digits that
    a short needle such as a card's last four can match by chance.
    """
    return History(events=history.events).SerializeToString()


def stored_payloads(history: WorkflowHistory) -> list[tuple[str, Payload]]:
    """Every payload a history holds, with the event it is in, as the server stores them."""
    found = []
    for event in history.events:
        kind = event.WhichOneof("attributes")
        if kind is None:
            continue
        name = kind.removesuffix("_event_attributes")
        for field in ("input", "result", "details"):
            attributes = getattr(event, kind)
            if attributes.DESCRIPTOR.fields_by_name.get(field) is None or not attributes.HasField(field):
                continue
            for payload in getattr(attributes, field).payloads:
                found.append((name, payload))
        if kind == "workflow_execution_update_accepted_event_attributes":
            for payload in event.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads:
                found.append((name, payload))
        if kind == "workflow_execution_update_completed_event_attributes":
            outcome = event.workflow_execution_update_completed_event_attributes.outcome
            for payload in outcome.success.payloads:
                found.append((name, payload))
    return found


async def decrypted(payload: Payload, codec: EncryptionCodec) -> object:
    """What a payload holds once decrypted with ``codec``: the kit's JSON as Python values (``Decimal`` as a string)."""
    (plain,) = await codec.decode([payload])
    return DATA_CONVERTER.payload_converter.from_payloads([plain])[0]


def cli_show(address: str, workflow_id: str, *, codec_endpoint: str | None = None, lines: int = 12) -> str:
    """``temporal workflow show --detailed`` of one workflow, first ``lines`` lines with a payload.

    Args:
        address: The server's ``host:port``.
        workflow_id: The workflow.
        codec_endpoint: A codec server for the CLI to decode through (``--codec-endpoint``).
        lines: How many lines holding payload data to keep.
    """
    command = [str(find_temporal_cli()), "workflow", "show", "--address", address, "--workflow-id", workflow_id, "--detailed"]
    if codec_endpoint:
        command += ["--codec-endpoint", codec_endpoint]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if shown.returncode != 0:
        said = (shown.stderr.strip().splitlines() or ["no message"])[-1]
        raise CliShowError(f"`temporal workflow show` of {workflow_id!r} at {address} failed: {said}")
    output = shown.stdout
    kept = [line.rstrip() for line in output.splitlines() if any(k in line for k in ("Input", "Result", "Payloads"))]
    return "\n".join(kept[:lines])

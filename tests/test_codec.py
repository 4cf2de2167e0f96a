"""Payments kept private: the AES-GCM codec, its key, the codec server, and a lab whose server sees only ciphertext."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from temporalio.api.common.v1 import Payload

from payments_lab.codec import (
    KEY_ENV,
    CodecKeyError,
    EncryptionCodec,
    PayloadDecryptionError,
    encrypted_converter,
    new_key,
    parse_key,
)
from payments_lab.codec_server import CodecServer
from payments_lab.confirmation_messages import AUTHENTICATED, ProcessorEvent
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.lab import LabClosedError
from payments_lab.privacy import CliShowError, cli_show, decrypted, open_private_lab, stored_bytes, stored_payloads
from payments_lab.processes import port_open
from payments_lab.search_attributes import ORGANIZATION_ID, PAYMENT_STATUS

UI = "http://127.0.0.1:8233"


def _codec() -> EncryptionCodec:
    return EncryptionCodec(parse_key(new_key()))


async def test_decimal_money_survives_the_encrypted_converter() -> None:
    converter = encrypted_converter(_codec())
    request = PaymentRequest("p-1", "org-acme", "u", Decimal("0.10"), "EUR", "")
    (payload,) = await converter.encode([request])
    assert payload.metadata["encoding"] == b"binary/encrypted" and b"0.10" not in payload.data
    (back,) = await converter.decode([payload], [PaymentRequest])
    assert back == request and back.amount == Decimal("0.10")


async def test_a_payload_it_did_not_encrypt_passes_through() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    assert await _codec().decode([plain]) == [plain]


async def test_another_key_or_altered_bytes_are_refused_with_a_reason() -> None:
    codec, other = _codec(), _codec()
    (sealed,) = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"secret"')])
    with pytest.raises(PayloadDecryptionError, match=f"{KEY_ENV} differs"):
        await other.decode([sealed])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadDecryptionError, match="altered"):
        await codec.decode([tampered])
    cut_short = Payload(metadata=dict(sealed.metadata), data=sealed.data[:5])
    with pytest.raises(PayloadDecryptionError, match="altered"):
        await codec.decode([cut_short])


@pytest.mark.parametrize(
    ("environ", "clue"),
    [
        ({}, "is not set"),
        ({KEY_ENV: "  "}, "is not set"),
        ({KEY_ENV: "not base64!"}, "not valid base64"),
        ({KEY_ENV: base64.b64encode(b"short").decode()}, "holds 5 bytes"),
    ],
)
def test_a_missing_or_malformed_key_names_the_variable_and_the_fix(environ: dict[str, str], clue: str) -> None:
    with pytest.raises(CodecKeyError, match=clue) as raised:
        EncryptionCodec.from_env(environ)
    assert KEY_ENV in str(raised.value) and "new_key()" in str(raised.value)


def test_a_key_from_the_environment_is_used() -> None:
    key = new_key()
    assert EncryptionCodec.from_env({KEY_ENV: key}).key_id == EncryptionCodec(base64.b64decode(key)).key_id


def _post(url: str, body: bytes, origin: str | None = None, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-Namespace": "default"}
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_the_codec_server_encodes_and_decodes_and_answers_only_the_web_ui_origin() -> None:
    with CodecServer(_codec(), allowed_origins=[UI]) as server:
        plain = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": base64.b64encode(b'"49.90"').decode()}]}
        status, headers, body = _post(server.url + "/encode", json.dumps(plain).encode(), origin=UI)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == UI
        encoded = json.loads(body)
        assert base64.b64decode(encoded["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"
        status, _, body = _post(server.url + "/default/decode", json.dumps(encoded).encode())
        assert status == 200 and json.loads(body) == plain
        status, headers, _ = _post(server.url + "/decode", b"", origin=UI, method="OPTIONS")
        assert status == 204 and "X-Namespace" in headers["Access-Control-Allow-Headers"]
        assert "POST" in headers["Access-Control-Allow-Methods"]
        status, headers, _ = _post(server.url + "/decode", b"", origin="http://evil.example", method="OPTIONS")
        assert "Access-Control-Allow-Origin" not in headers
        assert _post(server.url + "/decode", b"not json")[0] == 400
        assert _post(server.url + "/other", b"{}")[0] == 404
        assert server.requests == 2
        port = server.port
    assert not server.running and not port_open("127.0.0.1", port or 0)


async def test_a_private_lab_stores_only_ciphertext_and_its_codec_server_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, new_key())
    private = await open_private_lab()
    try:
        assert private.server.ui_codec_endpoint == private.codec_server.url
        assert "--ui-codec-endpoint" in private.server.command()
        with urllib.request.urlopen(f"{private.server.ui_url}/api/v1/settings", timeout=5) as response:
            assert json.loads(response.read())["Codec"]["Endpoint"] == private.codec_server.url

        checkout = private.checkout
        request = private.lab.request("49.90", "EUR", description="card ending 4242")
        handle = await checkout.start(request)
        async with asyncio.timeout(10):
            while (await checkout.state(request.payment_id)).step != "confirm":
                await asyncio.sleep(0.02)
        await checkout.deliver_webhook(request.payment_id, ProcessorEvent("evt_9", AUTHENTICATED))
        result = await handle.result()
        assert result.status is PaymentStatus.COMPLETED and result.amount == Decimal("49.90")

        history = await private.plain_client.get_workflow_handle(handle.workflow_id).fetch_history()
        stored = stored_payloads(history)
        assert stored and all(p.metadata["encoding"] == b"binary/encrypted" for _, p in stored)
        raw = stored_bytes(history)
        assert b"card ending 4242" not in raw and b"49.90" not in raw
        deadline = next(e for e in history.events if e.HasField("timer_started_event_attributes"))
        assert deadline.user_metadata.summary.metadata["encoding"] == b"binary/encrypted", "a summary is a payload: encrypted"
        assert b"confirmation deadline" not in raw
        started = await decrypted(stored[0][1], private.codec)
        assert started["request"]["amount"] == "49.90" and started["request"]["description"] == "card ending 4242"  # type: ignore[index]

        described = await private.plain_client.get_workflow_handle(handle.workflow_id).describe()
        attributes = described.typed_search_attributes
        assert attributes.get(ORGANIZATION_ID) == "org-acme" and attributes.get(PAYMENT_STATUS) == "completed"

        address = private.lab.connection.address
        assert "binary/encrypted" in cli_show(address, handle.workflow_id)
        assert '"amount":"49.90"' in cli_show(address, handle.workflow_id, codec_endpoint=private.codec_server.url)
    finally:
        await private.close()
    assert not private.codec_server.running and not private.server.running
    assert not port_open("127.0.0.1", private.codec_server.port or 0)
    # Off the script: lesson 11's plain client used after the lesson closed waited 6 s, then showed a page of RPCError.
    with pytest.raises(LabClosedError, match="open it again, `private = await open_private_lab\\(\\)`"):
        await private.plain_client.get_workflow_handle(handle.workflow_id).describe()


async def test_opening_a_private_lab_again_closes_the_one_opened_before(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Lesson 11's cell run twice: the first lab's server, codec server and worker must not run on, unreachable."""
    monkeypatch.setenv(KEY_ENV, new_key())
    first = await open_private_lab()
    try:
        monkeypatch.setenv(KEY_ENV, new_key())
        second = await open_private_lab()
    finally:
        await first.close()  # a second close is harmless
    try:
        assert not first.server.running and not first.codec_server.running and not first.lab.worker.running
        assert f"Closed the private lab opened earlier in this kernel (server {first.lab.connection.address})" in capsys.readouterr().out
        assert second.server.running and second.codec_server.running
        assert (await second.lab.pay("2.00", show_link=False)).status is PaymentStatus.COMPLETED
        # The first one's objects, used by an earlier cell run again: at once, with the line that opens one.
        with pytest.raises(LabClosedError, match="open it again, `private = await open_private_lab\\(\\)`"):
            await first.checkout.start(first.lab.request("5.00"))
        with pytest.raises(CliShowError, match="`temporal workflow show` of 'payment-x' at .* failed: "):
            cli_show(first.lab.connection.address, "payment-x")
    finally:
        await second.close()
    assert not second.server.running


async def test_a_private_lab_without_a_key_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(CodecKeyError, match=KEY_ENV):
        await open_private_lab()
    assert os.environ.get(KEY_ENV) is None


def test_plaintext_is_searched_in_the_stored_bytes_where_json_would_hide_it() -> None:
    """Lesson 11 looks for the card digits in ``stored_bytes``: there a plaintext payload shows, in JSON it is base64."""
    from temporalio.api.common.v1 import Payload, Payloads
    from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionStartedEventAttributes
    from temporalio.client import WorkflowHistory

    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"description": "card ending 4242"}')
    started = WorkflowExecutionStartedEventAttributes(input=Payloads(payloads=[plain]))
    history = WorkflowHistory("w", [HistoryEvent(event_id=1, workflow_execution_started_event_attributes=started)])
    assert b"card ending 4242" in stored_bytes(history)
    assert "card ending 4242" not in history.to_json()

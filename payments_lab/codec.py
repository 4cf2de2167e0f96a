"""Payments kept private: an AES-GCM payload codec, composed with the kit's data converter.

A payload codec turns the bytes the data converter produced into other bytes before they
leave the process, and back when they return: with this one the Temporal server stores
only ciphertext (workflow inputs and results, activity inputs and results, signal, update
and query arguments). The key never reaches the server: it comes from the environment
variable ``PAYMENTS_LAB_CODEC_KEY`` (32 random bytes, base64), which every client, worker
and codec server of a lab must share.

What a codec never touches: search attributes (the server must read them to index them),
workflow ids and types, task queues, the names of activities, signals and updates. None of
those may hold personal data. Summaries (a timer's) are payloads, so encrypted; failure
messages and stack traces are not payloads, and are encrypted only because this lab's
failure converter encodes them too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from payments_lab.converter import DATA_CONVERTER
from payments_lab.errors import PaymentsLabError

KEY_ENV = "PAYMENTS_LAB_CODEC_KEY"
"""The environment variable that holds the key, base64 of 32 random bytes."""

ENCODING = b"binary/encrypted"
"""The ``encoding`` metadata of a payload this codec encrypted."""

KEY_ID = "encryption-key-id"
"""Metadata naming the key a payload was encrypted with (a fingerprint, never the key)."""

_NONCE_BYTES = 12
_KEY_BYTES = 32


class CodecKeyError(PaymentsLabError, RuntimeError):
    """The codec key is missing or malformed; the message says how to set one."""


class PayloadDecryptionError(PaymentsLabError, ValueError):
    """A payload could not be decrypted: another key, or altered bytes."""


def new_key() -> str:
    """A fresh random key, as ``PAYMENTS_LAB_CODEC_KEY`` holds it (base64 of 32 bytes)."""
    return base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def _fix() -> str:
    return (
        f"Set {KEY_ENV} to 32 random bytes in base64, the same for every client, worker and codec "
        f"server of the lab, e.g. `export {KEY_ENV}=$(python -c \"import payments_lab.codec as c; "
        "print(c.new_key())\")` (in a notebook: `os.environ['"
        f"{KEY_ENV}'] = new_key()`)."
    )


def parse_key(text: str | None) -> bytes:
    """The 32-byte key that ``text`` (base64) holds.

    Raises:
        CodecKeyError: ``text`` is empty, not base64, or not 32 bytes long.
    """
    if not text or not text.strip():
        raise CodecKeyError(f"No encryption key: {KEY_ENV} is not set. {_fix()}")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CodecKeyError(f"{KEY_ENV} is not valid base64. {_fix()}") from None
    if len(key) != _KEY_BYTES:
        raise CodecKeyError(f"{KEY_ENV} holds {len(key)} bytes; AES-256-GCM needs {_KEY_BYTES}. {_fix()}")
    return key


class EncryptionCodec(PayloadCodec):
    """Encrypt every payload with AES-256-GCM; leave payloads it did not encrypt as they are.

    Each payload is serialized whole (its metadata included) and encrypted with a fresh
    12-byte nonce; the result is a payload whose ``encoding`` is ``binary/encrypted`` and
    whose data is the nonce followed by the ciphertext and tag.

    Args:
        key: The 32-byte key.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise CodecKeyError(f"the key must be {_KEY_BYTES} bytes, got {len(key)}. {_fix()}")
        self._aes = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"EncryptionCodec(key_id={self.key_id!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EncryptionCodec:
        """The codec of the key in ``PAYMENTS_LAB_CODEC_KEY``.

        Raises:
            CodecKeyError: the variable is missing or malformed, with how to set it.
        """
        env = os.environ if environ is None else environ
        return cls(parse_key(env.get(KEY_ENV)))

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aes.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload, decrypted if this codec encrypted it, else unchanged.

        Raises:
            PayloadDecryptionError: it was encrypted with another key, or altered.
        """
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        if key_id != self.key_id:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id or '?'}, this codec has key {self.key_id}: "
                f"{KEY_ENV} differs between the process that wrote it and this one"
            )
        data = payload.data
        try:
            plain = self._aes.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], None)
        except (InvalidTag, ValueError) as err:  # a wrong tag (altered), or too few bytes left for a nonce (cut short)
            raise PayloadDecryptionError("payload could not be decrypted: its bytes were altered") from err
        return Payload.FromString(plain)

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        """See :py:meth:`temporalio.converter.PayloadCodec.encode`."""
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        """See :py:meth:`temporalio.converter.PayloadCodec.decode`."""
        return [self.decrypt(p) for p in payloads]


def encrypted_converter(codec: PayloadCodec) -> DataConverter:
    """The kit's data converter (``Decimal`` money) followed by ``codec``.

    Failure messages and stack traces are moved into an encoded payload too (Temporal
    leaves them in plaintext by default), since a payment's failure can name its amount.
    """
    return dataclasses.replace(
        DATA_CONVERTER, payload_codec=codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
    )

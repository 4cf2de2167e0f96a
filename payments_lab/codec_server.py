"""A codec server: the HTTP endpoint through which the Web UI and the CLI decrypt what the server stores.

It follows Temporal's codec server contract: ``POST /encode`` and ``POST /decode`` take
and return JSON ``{"payloads": [...]}`` (protobuf JSON: bytes in base64), also under a
namespace prefix (``/default/decode``); a browser's preflight ``OPTIONS`` is answered
with CORS headers for the allowed origins only (the Web UI's). It listens on 127.0.0.1
only, on a free port, in a thread of this process: it ends with the kernel, or with
:meth:`CodecServer.stop`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from payments_lab.processes import free_port

HOST = "127.0.0.1"
"""The codec server listens on loopback only: it hands out plaintext to whoever asks."""

_ROUTES = ("encode", "decode")


class CodecServer:
    """A codec server for ``codec``, answering browsers from ``allowed_origins`` only.

    Args:
        codec: The payload codec (the same key as the workers').
        allowed_origins: Origins whose browser pages may call it, e.g. the Web UI's
            ``http://127.0.0.1:8233``; other origins get no CORS headers, so the browser
            refuses them the answer.
        port: Port to listen on; None picks a free one.
    """

    def __init__(self, codec: PayloadCodec, *, allowed_origins: Iterable[str] = (), port: int | None = None) -> None:
        self.codec = codec
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.port = port
        self.requests = 0
        """Encode and decode requests answered, for lessons that show the Web UI calling it."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"CodecServer({'running at ' + self.url if self.running else 'stopped'})"

    @property
    def url(self) -> str:
        """The endpoint to give ``--ui-codec-endpoint`` or ``temporal --codec-endpoint``."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it is listening."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CodecServer:
        """Listen in a background thread and return at once (does nothing if running)."""
        if self.running:
            return self
        self.port = self.port or free_port()
        self._httpd = ThreadingHTTPServer((HOST, self.port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"codec server {self.port}", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop listening, close the socket and wait for the thread."""
        atexit.unregister(self.stop)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CodecServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def convert(self, route: str, body: bytes) -> bytes:
        """Run a request body through the codec: ``route`` is ``encode`` or ``decode``.

        Raises:
            ValueError: the body is not ``{"payloads": [...]}`` or a payload cannot be converted.
        """
        payloads = Payloads()
        json_format.Parse(body or b"{}", payloads)
        method = self.codec.encode if route == "encode" else self.codec.decode
        converted = asyncio.run(method(list(payloads.payloads)))
        self.requests += 1
        return json_format.MessageToJson(Payloads(payloads=converted), indent=None).encode()


def _handler_for(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Silent: a notebook must not fill with access logs."""

        def _cors(self) -> None:
            origin = (self.headers.get("Origin") or "").rstrip("/")
            if origin and origin in server.allowed_origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "X-Namespace, Content-Type")
                self.send_header("Vary", "Origin")

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self._cors()
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> str | None:
            last = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            return last if last in _ROUTES else None

        def do_OPTIONS(self) -> None:
            self._reply(204 if self._route() else 404, b"")

        def do_POST(self) -> None:
            route = self._route()
            if route is None:
                self._reply(404, json.dumps({"error": "POST /encode or /decode"}).encode())
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                answer = server.convert(route, body)
            except Exception as err:  # noqa: BLE001 - any bad request is the caller's, answered as 400
                self._reply(400, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
                return
            self._reply(200, answer)

    return Handler

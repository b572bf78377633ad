"""``squall server``: the Lambda API handler behind a local HTTP server, plus the tick loop.

Theory of operation
-------------------
Each HTTP request becomes the API Gateway HTTP API (payload 2.0) event AWS would send for it
(lowercase headers with repeats comma-joined, ``cookies`` split out, comma-joined
``queryStringParameters``, ``rawPath``/``rawQueryString``, a ``requestContext`` with
``http.method``/``sourceIp``, non-text bodies base64-encoded) and goes to the *same*
:func:`control_plane.handlers.api.handler` that runs in Lambda; its response dict becomes
the HTTP response. What a user sees locally is what the cloud does.

The tick thread calls :func:`~control_plane.handlers.tick.run_tick` every ``tick_interval``
seconds, the job EventBridge's rate rule does in the cloud: timers, job polls, schedules.
Nothing pushes job events locally, so unless ``reconcile_after`` was set explicitly the
server polls every active job on every tick (``reconcile_after=0``).

The service is not thread-safe: request threads and the tick thread take one lock around
every call into it, like a Lambda container handles one event at a time. A body larger than
``max_body_bytes`` is refused (413) from its Content-Length, before it is read.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from msgspec import Struct

from control_plane.handlers.runtime import Runtime, Settings, install, open_runtime

__all__ = ["Server"]

_log = logging.getLogger("squall.server")

_TEXT_TYPES = (
    "application/json",
    "application/x-yaml",
    "application/yaml",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def _is_text(content_type: str) -> bool:
    """Whether API Gateway would pass the body as text rather than base64 (its text media types)."""
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith("+json") or kind.endswith("+xml")


class _Context(Struct):
    """The attributes of a Lambda context that handlers and powertools read."""

    aws_request_id: str
    function_name: str = "squall-server"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:squall-server"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # the handler logs each request itself
        _log.debug(format, *args)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            # Say so: a client that is not told reuses the connection for its next request,
            # which then meets a closed socket ("Server disconnected without a response").
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        owner = self.server.owner
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._json(411, '{"message":"send a Content-Length: chunked request bodies are not supported"}')
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._json(400, '{"message":"invalid Content-Length header"}')
            return
        if length > owner.settings.max_body_bytes:
            self.close_connection = True  # the unread body must not be taken for the next request
            limit = owner.settings.max_body_bytes
            self._json(
                413, f'{{"message":"request body too large: {length} bytes, at most {limit} accepted"}}'
            )
            return
        body = self.rfile.read(length) if length else b""
        event = self._event(body)
        with owner.lock:
            from control_plane.handlers import api

            response = api.handler(event, _Context(event["requestContext"]["requestId"]))
        self._respond(response)

    def _json(self, status: int, text: str) -> None:
        self._reply(status, [("Content-Type", "application/json")], text.encode())

    def _event(self, body: bytes) -> dict[str, Any]:
        parts = urlsplit(self.path)
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in self.headers.items():
            key = name.lower()
            if key == "cookie":
                cookies += [c.strip() for c in value.split(";") if c.strip()]
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        now = datetime.now(UTC)
        request_id = base64.b64encode(uuid.uuid4().bytes[:12]).decode()
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": parts.path or "/",
            "rawQueryString": parts.query,
            "headers": headers,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "squall-local",
                "domainName": headers.get("host", "localhost"),
                "domainPrefix": "squall-local",
                "http": {
                    "method": self.command,
                    "path": parts.path or "/",
                    "protocol": self.request_version,
                    "sourceIp": self.client_address[0],
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": request_id,
                "routeKey": "$default",
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if parts.query:
            joined: dict[str, str] = {}
            for key, value in parse_qsl(parts.query, keep_blank_values=True):
                joined[key] = f"{joined[key]},{value}" if key in joined else value
            event["queryStringParameters"] = joined
        if body:
            text: str | None = None
            if _is_text(headers.get("content-type", "")):
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is None:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
            else:
                event["body"] = text
        return event

    def _respond(self, response: dict[str, Any]) -> None:
        headers: list[tuple[str, str]] = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers += [(name, str(v)) for v in values]
        headers += [("Set-Cookie", str(c)) for c in response.get("cookies") or []]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        raw = response.get("body") or ""
        body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        self._reply(int(response.get("statusCode", 200)), headers, body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: Server) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class Server:
    """The API and the tick loop in this process; ``with Server(settings, port=0) as srv: srv.url``.

    ``runtime`` replaces the one built from ``settings`` (tests inject a clock or runners).
    The runtime is installed as the process's runtime for the handler, and closed on exit.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        tick_interval: float = 1.0,
        runtime: Runtime | None = None,
    ) -> None:
        if "reconcile_after" not in settings.model_fields_set:
            settings = settings.model_copy(update={"reconcile_after": 0.0})
        self.settings = settings
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self.lock = threading.Lock()
        self.ticks = 0
        self._given = runtime
        self._runtime: Runtime | None = None
        self._httpd: _HTTPServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the server is not started"
        return self._runtime

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"

    def start(self) -> Server:
        rt = self._given
        if rt is None:
            rt = open_runtime(self.settings)
        elif rt.settings != self.settings:
            rt = Runtime(self.settings, rt.store, rt.service)
        self._runtime = rt
        install(rt)
        try:
            self._httpd = _HTTPServer((self.host, self.port), self)
        except OSError:
            self._close_runtime()
            raise
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, name="squall-http", daemon=True),
            threading.Thread(target=self._tick_loop, name="squall-tick", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _tick_loop(self) -> None:
        from control_plane.handlers.tick import run_tick

        while not self._stop.is_set():
            started = time.monotonic()
            with self.lock:
                try:
                    run_tick(self.runtime)
                except Exception:  # one bad tick must not stop the loop; the next one retries
                    _log.exception("tick failed")
            self.ticks += 1
            self._stop.wait(max(0.0, self.tick_interval - (time.monotonic() - started)))

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler or another thread)."""
        self._stop.wait()

    def stop(self) -> None:
        """Stop accepting requests, let the current tick finish, close the store."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=30)
        self._threads = []
        self._httpd = None
        self._close_runtime()

    def _close_runtime(self) -> None:
        if self._runtime is not None:
            with self.lock:
                install(None)
                if self._given is None:
                    self._runtime.close()
            self._runtime = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

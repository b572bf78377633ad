"""``squall server``: the Lambda API handler behind a local HTTP server, plus the tick loop.

Theory of operation
-------------------
Each HTTP request becomes the API Gateway HTTP API (payload 2.0) event AWS would send for it
(lowercase headers with repeats comma-joined, ``cookies`` split out, comma-joined
``queryStringParameters``, ``rawPath``/``rawQueryString``, a ``requestContext`` with
``http.method``/``sourceIp``, non-text bodies base64-encoded) and goes to the *same*
:class:`control_plane.api.app.Api` that the ``api`` Lambda runs, built here over the server's
own runtime; its response dict becomes the HTTP response. What a user sees locally is what
the cloud does.

The tick thread calls :func:`~control_plane.handlers.tick.run_tick` every ``tick_interval``
seconds, the job EventBridge's rate rule does in the cloud: timers, job polls, schedules.
Nothing pushes job events locally, so unless ``reconcile_after`` was set explicitly the
server polls every active job on every tick (``reconcile_after=0``).

The service is not thread-safe: requests that write and the tick thread take one lock around
every call into it, like a Lambda container handles one event at a time. Requests that only
read (:func:`~control_plane.api.app.read_only`: GET, HEAD and OPTIONS except webhooks)
skip it: they use the store, which is thread-safe, and never the service, so a slow write
(an expensive expression, a wide fan-out) does not hold them up. A body larger than
``max_body_bytes`` is refused (413) from its Content-Length, before it is read.

What a client can hold, and for how long (every figure a constructor argument):

1. **Connections.** At most ``max_connections`` are served at once, each on its own thread.
   When all are taken, a connection that waits idle between requests is closed to make room;
   when none is idle, the newcomer gets ``503`` and is closed. Idle clients cannot lock others
   out, and threads and file descriptors stay bounded.
2. **Time.** A kept-alive connection may wait ``idle_timeout`` seconds for its next request.
   From a request's first byte, its line, headers and body must arrive within
   ``request_timeout`` seconds however slowly they trickle (a deadline, not a per-read
   timeout), and a response must be taken by the client within as long.
3. **Framing.** Content-Length is ASCII digits only, and repeated only with the same value;
   any Transfer-Encoding is refused (411). A request whose length is ambiguous could smuggle a
   second request in its body. Every error, protocol errors included, is JSON
   ``{"message": ...}`` like the API's own.
4. **Stopping.** :meth:`Server.stop` returns within ``stop_grace`` seconds (plus the listener's
   half-second poll) even while a request or a tick holds the service lock: it closes the
   store without it. The store finishes or rolls back what the abandoned call was writing
   (SQLite closes a borrowed connection when it is given back), and the call's thread is a
   daemon that dies with the process.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from msgspec import Struct

from control_plane.runtime import Runtime, Settings, open_runtime

if TYPE_CHECKING:
    from control_plane.api.app import Api

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "REQUEST_TIMEOUT",
    "STOP_GRACE",
    "LocalContext",
    "Server",
    "api_event",
]

_log = logging.getLogger("squall.server")

IDLE_TIMEOUT = 15.0  # seconds a kept-alive connection may wait for its next request
REQUEST_TIMEOUT = 30.0  # seconds from a request's first byte to its last, and to send a response
MAX_CONNECTIONS = 64  # connections served at once (one thread each)
STOP_GRACE = 3.0  # seconds stop() waits for the tick or a request holding the service lock

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


def api_event(
    method: str,
    target: str,
    header_items: Iterable[tuple[str, str]],
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The API Gateway (HTTP API, payload 2.0) event of one request, as the Lambda gets it:
    how ``squall server`` hands a request to the API, and how a caller inside the process
    (``squall conformance``'s webhook deliveries) makes a request the same way."""
    parts = urlsplit(target)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in header_items:
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
                "method": method,
                "path": parts.path or "/",
                "protocol": protocol,
                "sourceIp": source_ip,
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


class LocalContext(Struct):
    """The attributes of a Lambda context that handlers and powertools read."""

    aws_request_id: str
    function_name: str = "squall-server"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:squall-server"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class _Reader(socket.SocketIO):
    """A connection's reads, on two clocks (theory of operation, point 2).

    Before a request's first byte the wait is the idle timeout, and the connection is marked
    idle so that a newcomer may take its place; from that byte on, each read may only take
    what is left until the request's deadline.
    """

    def __init__(self, sock: socket.socket, server: _HTTPServer) -> None:
        super().__init__(sock, "rb")
        self._server = server
        self.deadline: float | None = None  # None: between requests

    def readinto(self, buffer: Any) -> int | None:
        sock = self._sock  # type: ignore[attr-defined]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive within the request timeout")
            sock.settimeout(left)
            return super().readinto(buffer)
        sock.settimeout(self._server.idle_timeout)
        self._server.idle(sock, True)
        try:
            count = super().readinto(buffer)
        finally:
            self._server.idle(sock, False)
        if count:
            self.deadline = time.monotonic() + self._server.request_timeout
        return count


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    error_content_type = "application/json"
    # The status line and headers go out in one write and the body in another: with Nagle's
    # algorithm on, a keep-alive client's delayed ACK holds the body for 40 ms, on every response.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = _Reader(self.connection, self.server)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # the next request's clock starts with its first byte
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # no status line, no headers: nothing to say errors with
            self.send_error(400, "HTTP/0.9 is not supported: send HTTP/1.1 or HTTP/1.0")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error is JSON like the API's, protocol errors included (the base class writes HTML)."""
        short = self.responses.get(code, ("error", ""))[0]
        text = message or short
        self.log_error("code %d, message %s", code, text)
        if self.request_version in ("HTTP/0.9", ""):  # not parsed yet: answer with a status line anyway
            self.request_version = self.protocol_version
        self.close_connection = True  # after a protocol error nothing says where the next request starts
        self._json(code, json.dumps({"message": text}, separators=(",", ":")))

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # the handler logs each request itself
        _log.debug(format, *args)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.connection.settimeout(self.server.request_timeout)  # a client that never reads is dropped
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

    def _content_length(self) -> int | None:
        """The body's length; None when Content-Length is not one plain number (RFC 9110 8.6)."""
        values = [
            part.strip()
            for value in self.headers.get_all("Content-Length") or []
            for part in value.split(",")
        ]
        if not values:
            return 0
        if not all(v.isascii() and v.isdigit() for v in values):  # int() takes "+10", "1_0", Arabic digits
            return None
        lengths = {int(v) for v in values}
        return lengths.pop() if len(lengths) == 1 else None

    def _dispatch(self) -> None:
        owner = self.server.owner
        if self.headers.get_all("Transfer-Encoding"):
            self.close_connection = True
            self._json(411, '{"message":"send a Content-Length: chunked request bodies are not supported"}')
            return
        length = self._content_length()
        if length is None:
            self.close_connection = True  # where this body ends is ambiguous: so is the next request
            self._json(
                400,
                '{"message":"invalid Content-Length header: one decimal number expected,'
                ' repeated only with the same value"}',
            )
            return
        if length > owner.settings.max_body_bytes:
            self.close_connection = True  # the unread body must not be taken for the next request
            limit = owner.settings.max_body_bytes
            self._json(
                413, f'{{"message":"request body too large: {length} bytes, at most {limit} accepted"}}'
            )
            return
        try:
            body = self.rfile.read(length) if length else b""
        except TimeoutError:
            self.close_connection = True
            self._json(408, '{"message":"the request body did not arrive within the request timeout"}')
            return
        if len(body) < length:  # the client closed its side before sending the whole body
            self.close_connection = True
            return
        event = self._event(body)
        api = owner.api
        if api is None:  # stopped while this request was read
            self.close_connection = True
            self._json(503, '{"message":"the server is stopping"}')
            return
        from control_plane.api.app import read_only

        context = LocalContext(event["requestContext"]["requestId"])
        if read_only(event):  # the store and the resolver are thread-safe: no slow write delays a read
            response = api.handle(event, context)
        else:
            with owner.lock:
                response = api.handle(event, context)
        self._respond(response)

    def _json(self, status: int, text: str) -> None:
        self._reply(status, [("Content-Type", "application/json")], text.encode())

    def _event(self, body: bytes) -> dict[str, Any]:
        return api_event(
            self.command,
            self.path,
            self.headers.items(),
            body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )

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
    request_queue_size = 128  # the listen backlog: a burst of connects waits instead of being dropped

    def __init__(self, address: tuple[str, int], owner: Server) -> None:
        self.owner = owner
        self.idle_timeout = owner.idle_timeout
        self.request_timeout = owner.request_timeout
        self._slots = threading.BoundedSemaphore(owner.max_connections)
        self._idle: dict[socket.socket, float] = {}  # connections waiting for their next request
        self._idle_lock = threading.Lock()
        super().__init__(address, _Handler)

    def idle(self, sock: socket.socket, waiting: bool) -> None:
        with self._idle_lock:
            if waiting:
                self._idle[sock] = time.monotonic()
            else:
                self._idle.pop(sock, None)

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest (its thread sees end of file and ends)."""
        with self._idle_lock:
            if not self._idle:
                return False
            sock = min(self._idle, key=self._idle.__getitem__)
            del self._idle[sock]
        with contextlib.suppress(OSError):  # closed meanwhile: its slot is being given back anyway
            sock.shutdown(socket.SHUT_RDWR)
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        taken = self._slots.acquire(blocking=False)
        if not taken and self._evict_idle():
            taken = self._slots.acquire(timeout=1.0)  # the evicted thread only has to return
        if not taken:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: it would never give the slot back
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """503 without blocking the accept loop on this client, then close."""
        body = b'{"message":"server busy: too many connections, retry shortly"}'
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(head.encode() + body)
            request.recv(65536)  # unread request bytes would turn the close into a reset
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away mid-response: nothing to tell anyone
            _log.debug("connection from %s ended: %r", client_address, exc)
            return
        _log.exception("error serving %s", client_address)


class Server:
    """The API and the tick loop in this process; ``with Server(settings, port=0) as srv: srv.url``.

    ``runtime`` replaces the one built from ``settings`` (tests inject a clock or runners).
    The API (:attr:`api`) is built over that runtime at :meth:`start`, dropped at :meth:`stop`,
    and a runtime the server built is closed then.
    The limits (module docstring) default to ``IDLE_TIMEOUT``, ``REQUEST_TIMEOUT``,
    ``MAX_CONNECTIONS`` and ``STOP_GRACE``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        tick_interval: float = 1.0,
        runtime: Runtime | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        if "reconcile_after" not in settings.model_fields_set:
            settings = settings.model_copy(update={"reconcile_after": 0.0})
        if min(idle_timeout, request_timeout, max_connections) <= 0 or stop_grace < 0:
            raise ValueError("timeouts and max_connections must be positive, stop_grace not negative")
        self.settings = settings
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.stop_grace = stop_grace
        self.lock = threading.Lock()
        self.ticks = 0
        self._given = runtime
        self._runtime: Runtime | None = None
        self.api: Api | None = None
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
            rt = Runtime(self.settings, rt.store, rt.service, secrets=rt.secrets)
        from control_plane.api.app import Api  # powertools: not for the CLI's other commands
        from control_plane.handlers.tick import run_tick

        self._runtime = rt
        self.api = Api(rt)
        # Everything the threads import, imported here, before they start: two threads importing
        # the same modules at once can meet a module half-initialized (an import cycle between
        # them) and fail with ImportError; the first deploy and the first tick did, now and then.
        self._run_tick = run_tick
        try:
            rt.service  # noqa: B018  (built now: its imports, and a bad setting surfaces at start)
        except BaseException:
            self._close_runtime()
            raise
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
        run_tick = self._run_tick
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
        """Stop accepting requests, give the current tick or write ``stop_grace`` seconds, close the store."""
        deadline = time.monotonic() + self.stop_grace
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []
        self._httpd = None
        self._close_runtime(deadline)

    def _close_runtime(self, deadline: float | None = None) -> None:
        if self._runtime is None:
            return
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        locked = self.lock.acquire(timeout=wait)
        if not locked:
            _log.warning(
                "a request or tick still holds the service after %.1fs: closing without it", self.stop_grace
            )
        try:
            self.api = None  # a call still running keeps the API it has; a new request gets 503
            if self._given is None:
                self._runtime.close()
        finally:
            if locked:
                self.lock.release()
        self._runtime = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""A fault-injecting HTTP proxy in front of an emulator: throttling, 5xx, resets, lost responses, latency.

Emulators answer every call at once and never fail; clouds do both. The proxy is a real TCP
server (127.0.0.1, a free port, its own threads) that a client is pointed at instead of the
emulator; requests no rule matches pass through unchanged, so a test can break exactly the
calls it wants and count what the client really sent::

    with FaultProxy(moto_endpoint) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.endpoint, ...)
        throttled = proxy.fail_before("PUT", r"^/bucket/key", status=503, times=2)
        s3.put_object(Bucket="bucket", Key="key", Body=b"x")  # botocore retries twice
        assert (throttled.applied, proxy.count("PUT", r"^/bucket/key")) == (2, 3)

Faults, each applied to the first ``times`` matching requests (``None``: to all of them), or
with ``every=N`` to every Nth matching request only (a steady rate of throttling):

- ``fail_before``: answer with ``status`` and ``body`` without forwarding (429, 500, 503...);
- ``reset_before``: reset the TCP connection (RST) without forwarding;
- ``drop_after``: forward, let the upstream do the work, then close the client's connection
  without a byte of response: the lost response, after which a retry meets a done deed;
- ``slow``: wait ``seconds``, then forward.

A rule matches on the method (``"*"``: any), a regex searched in the request target (path and
query string) and optionally a substring of the body. The first matching rule that has faults
left applies; every matching rule counts the request in ``seen``.

Passing through keeps the request as sent: method, target, every header in order (``Host``
too, so botocore's SigV4 signatures still verify upstream) and the body's bytes (chunked
request bodies stay chunked). Responses keep their status, reason and end-to-end headers; a
chunked response is relayed chunk by chunk. Each forwarded request uses a fresh upstream
connection, closed after the response, so the upstream's ``Connection``/``Keep-Alive`` headers
(hop-by-hop, RFC 9110 7.6.1) are not relayed: the client's connection stays open between
requests (HTTP/1.1 keep-alive) unless the client asks otherwise, a fault closes it, or a
response without a length must be delimited by closing.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from runners.testing import CallCounter

__all__ = ["DropResponse", "Fault", "FaultProxy", "ProxiedCalls", "Reset", "Respond", "Rule", "Slow"]


_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection"})


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer ``status`` with ``body`` instead of forwarding."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reset:
    """Reset the client's connection instead of forwarding."""


@dataclass(frozen=True, slots=True)
class DropResponse:
    """Forward, then close the client's connection without answering."""


@dataclass(frozen=True, slots=True)
class Slow:
    """Wait ``seconds`` before forwarding."""

    seconds: float


Fault = Respond | Reset | DropResponse | Slow


@dataclass(eq=False)
class Rule:
    """A fault for the requests it matches; ``seen`` and ``applied`` count them (under the proxy's lock)."""

    method: str
    path: re.Pattern[str]
    fault: Fault
    times: int | None = 1
    body_contains: bytes | None = None
    every: int = 1
    seen: int = 0
    applied: int = 0

    def matches(self, method: str, target: str, body: bytes) -> bool:
        return (
            self.method in ("*", method.upper())
            and self.path.search(target) is not None
            and (self.body_contains is None or self.body_contains in body)
        )


@dataclass(frozen=True, slots=True)
class Call:
    """A request the proxy received, and the fault it got (``None``: passed through untouched)."""

    method: str
    target: str
    fault: Fault | None


class FaultProxy:
    """Listens on ``endpoint``, forwards to ``upstream`` (``http://host:port``); see the module docstring."""

    def __init__(self, upstream: str, *, timeout: float = 120.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.timeout = timeout
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.connections = 0  # TCP connections accepted from clients
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._open: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> int:
        """Requests received in total, faulted or not."""
        with self._lock:
            return len(self.calls)

    def count(self, method: str = "*", path: str = "") -> int:
        """Requests received whose method (``"*"``: any) and target (a regex, searched) match."""
        pattern = re.compile(path)
        with self._lock:
            calls = list(self.calls)
        return sum(1 for c in calls if method in ("*", c.method) and pattern.search(c.target))

    # -- rules

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule (the counters of ``calls`` stay)."""
        with self._lock:
            self.rules.clear()

    def fail_before(
        self,
        method: str,
        path: str,
        status: int = 503,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        body_contains: bytes | str | None = None,
        every: int = 1,
    ) -> Rule:
        fault = Respond(status, body, dict(headers or {}))
        return self._rule(method, path, fault, times, body_contains, every)

    def reset_before(
        self,
        method: str,
        path: str,
        *,
        times: int | None = 1,
        body_contains: bytes | str | None = None,
        every: int = 1,
    ) -> Rule:
        return self._rule(method, path, Reset(), times, body_contains, every)

    def drop_after(
        self, method: str, path: str, *, times: int | None = 1, body_contains: bytes | str | None = None
    ) -> Rule:
        return self._rule(method, path, DropResponse(), times, body_contains)

    def slow(
        self,
        method: str,
        path: str,
        seconds: float,
        *,
        times: int | None = 1,
        body_contains: bytes | str | None = None,
    ) -> Rule:
        return self._rule(method, path, Slow(seconds), times, body_contains)

    def _rule(
        self,
        method: str,
        path: str,
        fault: Fault,
        times: int | None,
        body_contains: bytes | str | None,
        every: int = 1,
    ) -> Rule:
        if every < 1:
            raise ValueError("every must be >= 1")
        needle = body_contains.encode() if isinstance(body_contains, str) else body_contains
        return self.add(Rule(method.upper(), re.compile(path), fault, times, needle, every))

    def _choose(self, method: str, target: str, body: bytes) -> Fault | None:
        chosen: Fault | None = None
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target, body):
                    rule.seen += 1
                    due = rule.seen % rule.every == 0
                    if chosen is None and due and (rule.times is None or rule.applied < rule.times):
                        rule.applied += 1
                        chosen = rule.fault
            self.calls.append(Call(method, target, chosen))
        return chosen

    # -- lifecycle

    def start(self) -> FaultProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the clients' open connections, wait for the server's thread."""
        self._closing.set()
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:  # wakes the handler threads blocked on a keep-alive read
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one client connection serves many requests
    # Headers and body go out in two writes: with Nagle on, the client's delayed ACK holds the
    # second for 40 ms, a wait per call no real server has (the tests' time went there).
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        proxy = self.server.proxy
        with proxy._lock:
            proxy.connections += 1
            proxy._open.add(self.connection)

    def finish(self) -> None:
        proxy = self.server.proxy
        with proxy._lock:
            proxy._open.discard(self.connection)
        with contextlib.suppress(OSError):  # a reset connection cannot be flushed
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is not the place for an access log."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):  # the client went away mid-request
            self.close_connection = True

    # BaseHTTPRequestHandler calls do_<METHOD>; every method is forwarded alike.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _handle(self) -> None:
        proxy = self.server.proxy
        raw, body = self._read_body()
        match proxy._choose(self.command, self.path, body):
            case Respond(status, payload, headers):
                self.send_response_only(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            case Reset():
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # linger 0: the kernel sends RST, not FIN
            case DropResponse():
                self.close_connection = True
                self._forward(raw, relay=False)
            case Slow(seconds):
                if not proxy._closing.wait(seconds):
                    self._forward(raw, relay=True)
                else:
                    self.close_connection = True
            case None:
                self._forward(raw, relay=True)

    def _read_body(self) -> tuple[bytes, bytes]:
        """``(bytes as sent, body)``: they differ only for a chunked request body."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw, body = bytearray(), bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    break
                chunk = self.rfile.read(size + 2)
                raw += chunk
                body += chunk[:-2]
            while True:  # trailers, up to the blank line
                line = self.rfile.readline(65537)
                raw += line
                if line in (b"\r\n", b"\n", b""):
                    break
            return bytes(raw), bytes(body)
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        return data, data

    def _forward(self, raw: bytes, *, relay: bool) -> None:
        host, port = self.server.proxy.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=self.server.proxy.timeout)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                upstream.putheader(name, value)
            upstream.endheaders(raw or None)
            response = upstream.getresponse()
        except OSError as exc:
            upstream.close()
            if relay:
                self._bad_gateway(exc)
            return
        try:
            if relay:
                self._relay(response)
            else:
                response.read()  # the upstream did the work; the client never hears of it
        finally:
            response.close()
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in response.msg.items():
            # Hop-by-hop: they speak of our upstream connection, closed after each request
            # (werkzeug, hence moto, says "Connection: close" every time); the client's
            # connection stays open as its own request asked.
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.end_headers()
        if response.chunked:
            while chunk := response.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            if response.length is None and self.command != "HEAD" and response.status not in (204, 304):
                self.close_connection = True  # delimited by close: the client reads to the end
            self.wfile.write(response.read())

    def _bad_gateway(self, exc: OSError) -> None:
        payload = f"fault proxy: upstream unreachable: {exc!r}".encode()
        self.send_response_only(502)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class ProxiedCalls(CallCounter):
    """The contract's call counter for a runner behind fault proxies: what reached the
    backends, every request through ``proxies`` (the runner's own count is not needed)."""

    def __init__(self, *proxies: FaultProxy) -> None:
        super().__init__()
        self._proxies = proxies

    @property  # type: ignore[override]
    def calls(self) -> int:
        return sum(proxy.requests for proxy in self._proxies)

    @calls.setter
    def calls(self, _value: int) -> None:
        pass

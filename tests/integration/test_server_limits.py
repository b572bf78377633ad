"""``squall server`` against hostile clients, over raw sockets: framing, timeouts, connection caps, stop.

Each test starts a real server (in this process, or the ``squall server`` command in a
subprocess where the process itself is measured: its file descriptors, its exit on SIGTERM)
and talks to it with plain sockets, so what is checked is what goes over the wire. Waits are
conditions with deadlines; the few short pauses pace a deliberately slow client.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from control_plane.server import Server
from tests.integration.service_helpers import server_settings, wait_for
from tests.servers import ServerProcess, squall_server

TOKEN = "limits-test-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "fd").is_dir(), reason="needs /proc")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(
        server_settings(tmp_path, TOKEN), port=0, tick_interval=0.1, idle_timeout=5, request_timeout=5
    ) as srv:
        yield srv


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


class _Stream:
    """One buffered reader for every response on a connection: pipelined bytes are not lost."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def makefile(self, *args: Any, **kwargs: Any) -> _Stream:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:  # HTTPResponse closes its file after the body: keep ours for the next one
        pass


def _read_response(sock: socket.socket | _Stream, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _exchange(port: int, raw: bytes, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    with _connect(port) as sock:
        sock.sendall(raw)
        return _read_response(sock, method)


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed the connection (end of file, or a reset)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, (status, body)
    assert headers["content-type"] == "application/json", headers
    message = json.loads(body)
    assert isinstance(message["message"], str) and message["message"], message
    return dict(message)


# ====================================================================== framing


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ("Content-Length: 5\r\nContent-Length: 40\r\n", "two different lengths"),
        ("Content-Length: 5, 40\r\n", "a list of different lengths"),
        ("Content-Length: 1_0\r\n", "an underscore int() accepts"),
        ("Content-Length: +10\r\n", "a sign int() accepts"),
        ("Content-Length: -1\r\n", "a negative length"),
        ("Content-Length: 0x10\r\n", "hexadecimal"),
        ("Content-Length: \xb2\r\n", "a superscript digit str.isdigit() accepts"),
    ],
)
def test_an_ambiguous_content_length_is_400_and_ends_the_connection(
    server: Server, headers: str, why: str
) -> None:
    smuggled = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    head = f"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: application/x-yaml\r\n"
    head += f"{headers}\r\n"
    with _connect(_port(server)) as sock:
        sock.sendall(head.encode("latin-1") + b"id: x" + smuggled)
        status, response_headers, body = _read_response(sock)
        message = _assert_json_error(status, response_headers, body, 400)
        assert "Content-Length" in message["message"], why
        assert response_headers["connection"] == "close"
        assert _closed_by_peer(sock), f"{why}: the rest of the body was read as a second request"


def test_repeating_the_same_content_length_is_accepted(server: Server) -> None:
    body = b"{}"
    raw = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n" + body
    status, _, response = _exchange(_port(server), raw)
    assert status == 200 and json.loads(response)["info"]["title"] == "Squall"


@pytest.mark.parametrize("coding", ["chunked", "gzip", "gzip, chunked", "identity"])
def test_any_transfer_encoding_is_refused(server: Server, coding: str) -> None:
    raw = f"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n{AUTH}Transfer-Encoding: {coding}\r\n"
    raw += "Content-Length: 3\r\n\r\nabc"
    status, headers, body = _exchange(_port(server), raw.encode())
    _assert_json_error(status, headers, body, 411)


# ====================================================================== protocol errors are JSON


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # bad request line
        (b"GET / HTTP/1.x\r\n\r\n", 400),  # bad version
        (b"GET / FTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),  # HTTP/0.9: no status line or headers to say anything with
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501),  # unsupported method
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),  # request line too long
        (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),  # header line too long
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    ],
)
def test_protocol_errors_answer_json_with_a_status_line(server: Server, raw: bytes, expected: int) -> None:
    status, headers, body = _exchange(_port(server), raw)
    _assert_json_error(status, headers, body, expected)
    assert headers["connection"] == "close"


def test_head_is_get_without_the_body(server: Server) -> None:
    port = _port(server)
    _, got_headers, document = _exchange(port, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    with _connect(port) as sock:
        sock.sendall(
            b"HEAD /openapi.json HTTP/1.1\r\nHost: x\r\n\r\nGET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        stream = _Stream(sock)
        status, headers, body = _read_response(stream, "HEAD")
        assert status == 200 and body == b"" and headers["content-type"] == got_headers["content-type"]
        assert int(headers["content-length"]) == len(document)
        again, _, second = _read_response(stream)  # no body bytes were sent: the next response parses
        assert again == 200 and second == document
    status, headers, body = _exchange(
        port, b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"\r\n", "HEAD"
    )
    assert status == 404 and headers["content-type"] == "application/json" and body == b""


def test_head_of_a_webhook_starts_nothing(server: Server) -> None:
    """A webhook's GET starts its flow: HEAD, which link checkers send freely, must not."""
    port = _port(server)
    assert _call(port, "POST", "/api/v1/main/flows", HOOKED)[0] == 200
    status, _ = _call(port, "HEAD", "/webhooks/squall.limits/hooked/a-long-secret-key-1234")
    assert status == 404
    assert _call(port, "GET", "/api/v1/main/executions/search")[1]["results"] == []


# ====================================================================== timeouts


def test_an_idle_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with (
        Server(server_settings(tmp_path, TOKEN), port=0, idle_timeout=0.5, request_timeout=30) as srv,
        _connect(_port(srv)) as sock,
    ):
        started = time.monotonic()
        sock.settimeout(10)
        assert _closed_by_peer(sock)
        assert time.monotonic() - started < 5


def test_a_kept_alive_connection_is_closed_when_idle_after_its_request(tmp_path: Path) -> None:
    with (
        Server(server_settings(tmp_path, TOKEN), port=0, idle_timeout=0.5, request_timeout=30) as srv,
        _connect(_port(srv)) as sock,
    ):
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = _read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        assert _closed_by_peer(sock)


def test_headers_trickled_byte_by_byte_are_cut_at_the_request_deadline(tmp_path: Path) -> None:
    """Each byte arrives well within the idle timeout: only a deadline on the whole request stops it."""
    with (
        Server(server_settings(tmp_path, TOKEN), port=0, idle_timeout=5, request_timeout=1) as srv,
        _connect(_port(srv)) as sock,
    ):
        started = time.monotonic()
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\n")
        cut = False
        for byte in b"X-Slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            time.sleep(0.05)  # a slow client's pace, not a wait for the server
            if time.monotonic() - started > 8:
                break
        sock.settimeout(10)
        assert cut or _closed_by_peer(sock)
        assert time.monotonic() - started < 5


def test_a_body_that_stops_arriving_is_408(tmp_path: Path) -> None:
    with (
        Server(server_settings(tmp_path, TOKEN), port=0, idle_timeout=5, request_timeout=1) as srv,
        _connect(_port(srv)) as sock,
    ):
        head = f"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: application/x-yaml\r\n"
        head += "Content-Length: 100\r\n\r\n"
        sock.sendall(head.encode() + b"id: half")
        started = time.monotonic()
        status, headers, body = _read_response(sock)
        _assert_json_error(status, headers, body, 408)
        assert time.monotonic() - started < 5
        assert _closed_by_peer(sock)


# ====================================================================== connection cap


def test_idle_connections_give_way_to_a_new_client(tmp_path: Path) -> None:
    with Server(server_settings(tmp_path, TOKEN), port=0, max_connections=4, idle_timeout=60) as srv:
        port = _port(srv)
        base = threading.active_count()
        idle = [_connect(port) for _ in range(12)]  # three times the cap, never sending a byte
        try:
            started = time.monotonic()
            status, _, body = _exchange(
                port, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 200 and json.loads(body)["info"]["title"] == "Squall"
            assert time.monotonic() - started < 5
            # no thread per idle socket: at most one per slot
            wait_for(lambda: threading.active_count() <= base + 4, 10, "threads within the cap")
        finally:
            for sock in idle:
                sock.close()


def test_over_the_cap_with_no_idle_connection_a_newcomer_gets_503(tmp_path: Path) -> None:
    with Server(server_settings(tmp_path, TOKEN), port=0, max_connections=2, request_timeout=30) as srv:
        port = _port(srv)
        httpd: Any = srv._httpd
        busy = [_connect(port) for _ in range(2)]
        try:
            wait_for(lambda: len(httpd._idle) == 2, 10, "both connections waiting for a request")
            for sock in busy:  # each starts a request and sends part of its body: no longer idle
                sock.sendall(b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nid")
            wait_for(lambda: not httpd._idle, 10, "both requests under way")
            status, headers, body = _exchange(port, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            message = _assert_json_error(status, headers, body, 503)
            assert "busy" in message["message"] and headers["retry-after"] == "1"
        finally:
            for sock in busy:
                sock.close()
        # once they are gone, the server serves again
        wait_for(
            lambda: _exchange(port, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200,
            10,
            "a free slot",
        )


# ====================================================================== the squall server process


def _open_fds(pid: int) -> int:
    return len(os.listdir(PROC / str(pid) / "fd"))


def _cpu_seconds(pid: int) -> float:
    fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _process(tmp_path: Path, *, fd_limit: int | None = None) -> AbstractContextManager[ServerProcess]:
    """``squall server`` in a subprocess, optionally with a file-descriptor limit."""
    options = ("--db", str(tmp_path / "cli.db"), "--token", TOKEN, "--tick-interval", "0.2")
    return squall_server(tmp_path, *options, fd_limit=fd_limit)


def _request(port: int, raw: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    with _connect(port, timeout) as sock:
        sock.sendall(raw)
        return _read_response(sock)


@needs_proc
def test_a_flood_of_idle_connections_does_not_exhaust_the_server_process(tmp_path: Path) -> None:
    """With 256 file descriptors the server stayed reachable: 400 idle sockets used to take them all."""
    idle: list[socket.socket] = []
    with _process(tmp_path, fd_limit=256) as server:
        try:
            base = _open_fds(server.pid)
            for _ in range(400):
                try:
                    idle.append(_connect(server.port, timeout=5))
                except OSError:  # refused or reset: the server is shedding them, as it should
                    continue
            status, _, body = _request(
                server.port, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 200 and json.loads(body)["info"]["title"] == "Squall"
            listing = f"GET /api/v1/main/flows/search HTTP/1.1\r\nHost: x\r\n{AUTH}Connection: close\r\n\r\n"
            assert _request(server.port, listing.encode())[0] == 200  # the store still opens its files
            assert _open_fds(server.pid) <= base + 64 + 16  # MAX_CONNECTIONS, and the store's own
        finally:
            for sock in idle:
                sock.close()
    assert server.returncode == 0, server.stdout() + server.stderr()
    assert "Traceback" not in server.stderr()


SLOW_START = """
id: slow
namespace: squall.limits
tasks:
  - id: outer
    type: io.kestra.plugin.core.flow.ForEach
    values: "{{ range(1, 300) }}"
    tasks:
      - id: inner
        type: io.kestra.plugin.core.flow.ForEach
        values: "{{ range(1, 300) }}"
        tasks:
          - id: r
            type: io.kestra.plugin.core.debug.Return
            format: "{{ taskrun.value }}"
"""


@needs_proc
def test_sigterm_stops_the_server_within_5_seconds_while_a_request_holds_the_service(tmp_path: Path) -> None:
    """Starting 90,000 inline task runs keeps the service busy for about ten seconds: no single
    expression is slow, so a render deadline does not end it."""
    with _process(tmp_path) as server:
        deploy = (
            f"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: application/x-yaml\r\n"
            f"Content-Length: {len(SLOW_START)}\r\nConnection: close\r\n\r\n{SLOW_START}"
        )
        status, _, body = _request(server.port, deploy.encode())
        assert status == 200, (body, server.stderr()[-2000:])
        slow = _connect(server.port)
        cpu = _cpu_seconds(server.pid)
        start = f"POST /api/v1/main/executions/squall.limits/slow HTTP/1.1\r\nHost: x\r\n{AUTH}"
        slow.sendall(f"{start}Content-Length: 0\r\n\r\n".encode())
        wait_for(lambda: _cpu_seconds(server.pid) > cpu + 0.5, 30, "the slow start to be under way")
        assert server.proc.poll() is None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("squall server was still running 5 s after SIGTERM")
        stopped_in = time.monotonic() - started
        slow.close()
    assert server.returncode == 0, server.stdout() + server.stderr()
    assert "stopped" in server.stdout() and stopped_in < 5


# ====================================================================== reads do not wait for writes


def _flow(i: int) -> str:
    return f"""
id: f{i}
namespace: squall.c{i}
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "from {i}"
"""


def _call(
    port: int, method: str, path: str, body: str = "", kind: str = "application/x-yaml"
) -> tuple[int, Any]:
    with _connect(port, timeout=30) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: {kind}\r\n"
        sock.sendall(
            f"{head}Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n".encode()
            + body.encode()
        )
        status, _, raw = _read_response(sock, method)
        return status, json.loads(raw) if raw else None


def _deploy_and_start(port: int, i: int) -> str:
    assert _call(port, "POST", "/api/v1/main/flows", _flow(i))[0] == 200
    status, execution = _call(
        port, "POST", f"/api/v1/main/executions/squall.c{i}/f{i}", "{}", "application/json"
    )
    assert status == 200 and execution["state"]["current"] == "SUCCESS", execution
    return str(execution["id"])


def test_a_held_service_lock_delays_writes_but_not_reads(server: Server) -> None:
    """What a slow write (a long render, a wide fan-out) does to the others, with the lock held here."""
    port = _port(server)
    execution_id = _deploy_and_start(port, 0)
    reads = [
        "/openapi.json",
        "/api/v1/main/flows/search",
        "/api/v1/main/flows/squall.c0/f0",
        "/api/v1/main/executions/search",
        f"/api/v1/main/executions/{execution_id}",
        f"/api/v1/main/executions/{execution_id}/taskruns",
        f"/api/v1/main/logs/{execution_id}",
        f"/api/v1/main/executions/{execution_id}/logs",
    ]
    written: list[int] = []
    with server.lock:
        writer = threading.Thread(
            target=lambda: written.append(_call(port, "POST", "/api/v1/main/flows", _flow(1))[0])
        )
        writer.start()
        started = time.monotonic()
        for path in reads:
            for method in ("GET", "HEAD"):
                assert _call(port, method, path)[0] == 200, (method, path)
        assert time.monotonic() - started < 10
        assert writer.is_alive() and not written  # the write waits for the lock
    writer.join(timeout=30)
    assert written == [200]


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Switch threads every few microseconds, so that a race shows in a few hundred requests."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_switches")
def test_concurrent_reads_each_get_their_own_answer(server: Server) -> None:
    """powertools keeps the request being resolved in shared attributes: each thread must see its own."""
    port = _port(server)
    ids = [_deploy_and_start(port, i) for i in range(6)]
    problems: list[str] = []
    start = threading.Barrier(len(ids))

    def reader(i: int) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(15):
                status, flow = _call(port, "GET", f"/api/v1/main/flows/squall.c{i}/f{i}")
                if status != 200 or flow["id"] != f"f{i}":
                    problems.append(f"flow {i}: {status} {flow}")
                status, execution = _call(port, "GET", f"/api/v1/main/executions/{ids[i]}")
                if status != 200 or execution["id"] != ids[i] or execution["flowId"] != f"f{i}":
                    problems.append(f"execution {i}: {status} {execution}")
                status, page = _call(
                    port, "GET", f"/api/v1/main/flows/search?filters[namespace][EQUALS]=squall.c{i}"
                )
                if status != 200 or [f["id"] for f in page["results"]] != [f"f{i}"]:
                    problems.append(f"listing {i}: {status} {page}")
                status, logs = _call(port, "GET", f"/api/v1/main/executions/{ids[i]}/logs?limit=10")
                if status != 200 or f"from {i}" not in [line["message"] for line in logs["results"]]:
                    problems.append(f"logs {i}: {status} {logs}")
        except Exception as exc:  # reported below, with the others
            problems.append(f"reader {i}: {exc!r}")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not problems, problems[:5]


# ====================================================================== bodies that cannot be stored

HOOKED = """
id: hooked
namespace: squall.limits
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: a-long-secret-key-1234
tasks:
  - id: body
    type: io.kestra.plugin.core.debug.Return
    format: "{{ trigger.body }}"
"""


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/webhooks/squall.limits/hooked/a-long-secret-key-1234", "[" * 900 + "]" * 900),
        ("/webhooks/squall.limits/hooked/a-long-secret-key-1234", '{"t": "\\ud800"}'),
        ("/api/v1/main/executions/squall.limits/hooked", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"),
        ("/api/v1/main/executions/squall.limits/hooked", '{"a": "\\udfff"}'),
    ],
)
def test_bodies_too_deep_or_not_text_are_400_json_and_store_nothing(
    server: Server, path: str, body: str
) -> None:
    port = _port(server)
    assert _call(port, "POST", "/api/v1/main/flows", HOOKED)[0] == 200
    status, message = _call(port, "POST", path, body, "application/json")
    assert status == 400 and ("deeper than" in message["message"] or "surrogate" in message["message"]), (
        message
    )
    status, listing = _call(port, "GET", "/api/v1/main/executions/search")
    assert status == 200 and listing["results"] == []


# ====================================================================== a big execution over the wire


def test_a_100k_task_run_execution_reads_in_bounded_pages(server: Server) -> None:
    """Written straight through the store; the engine would take minutes to make as many."""
    from tests.store_contract import make_execution, make_taskrun

    count = 100_000
    taskruns = [make_taskrun(f"tr{i:07d}", i, outputs={"value": f"v{i}"}) for i in range(count)]
    server.runtime.store.create_execution(make_execution("wide", taskruns=taskruns))
    port = _port(server)
    limit = server.settings.max_response_bytes
    with _connect(port, timeout=60) as sock:
        sock.sendall(f"GET /api/v1/main/executions/wide HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n".encode())
        status, _, body = _read_response(sock)
    assert status == 200 and len(body) <= limit
    execution = json.loads(body)
    seen = [tr["id"] for tr in execution["taskRunList"]]
    cursor = execution["taskRunCursor"]
    with _connect(port, timeout=60) as sock:  # one kept-alive connection for every page
        stream = _Stream(sock)
        while cursor is not None:
            path = f"/api/v1/main/executions/wide/taskruns?limit=1000&cursor={cursor}"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n".encode())
            status, _, body = _read_response(stream)
            assert status == 200 and len(body) <= limit
            page = json.loads(body)
            seen += [tr["id"] for tr in page["results"]]
            cursor = page["cursor"]
    assert len(seen) == count and len(set(seen)) == count

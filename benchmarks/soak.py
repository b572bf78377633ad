"""Soak ``squall server``: thousands of mixed requests, and what the process holds before and after.

A real ``squall server`` process (SQLite store, token auth) gets ``--requests`` requests from
``--concurrency`` client threads, in a fixed rotation of kinds:

* reads: ``GET /openapi.json``, ``GET`` of an execution, a listing of executions;
* writes: updating one of ``FLOWS`` flows again (``PUT``, Kestra's update: unchanged, no new revision),
  starting an execution of an inline flow (it ends within the request);
* bad requests: malformed JSON, a conflicting Content-Length, a garbage request line, an
  unknown route, a missing token;
* idle connections: opened, sometimes with half a request line, and dropped.

After a warm-up (one request of each kind, so that imports and caches are in place) it reads
the server's open file descriptors (``/proc/<pid>/fd``) and resident memory (``VmRSS`` in
``/proc/<pid>/status``), runs the requests, waits for the server to close the connections it
still holds, and reads them again. A server that leaks holds more of either at the end;
``squall server`` used to keep one SQLite connection (two descriptors) per connection thread
for ever.

``--new-revisions`` makes every deploy a new revision of a flow instead. Memory then grows by
about 3.5 KiB a revision, and not in the server: the service parses each revision the tick's
schedule check or a start asks for, and keeps every one for the life of the process
(``Service._flows``, unbounded), plus the expression engine's compiled templates (an LRU of
4,096). A long-lived ``squall server`` redeployed often should bound that cache.

The last line is stable for tracking:

    soak: <n> requests, fds <start> -> <end>, rss <start> -> <end> MiB, 5xx <count>

Usage: python benchmarks/soak.py [--requests 5000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root

from tests.servers import squall_server

TOKEN = "soak-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLOWS = 20  # distinct flows the deploy requests cycle through
YAML = "application/x-yaml"

HELLO = """
id: hello
namespace: squall.soak
inputs:
  - id: name
    type: STRING
    defaults: soak
tasks:
  - id: greet
    type: io.kestra.plugin.core.log.Log
    message: "Hello, {{ inputs.name }}!"
  - id: out
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.name }}"
"""


@dataclass
class Sample:
    fds: int
    rss_kib: int
    threads: int


@dataclass
class SoakResult:
    requests: int
    seconds: float
    start: Sample
    end: Sample
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for counts in self.statuses.values() for status, n in counts.items() if status >= 500)

    def lines(self) -> list[str]:
        out = [
            f"{kind:>16}: {dict(sorted(counts.items()))}" for kind, counts in sorted(self.statuses.items())
        ]
        out.append(
            f"{self.requests} requests in {self.seconds:.1f} s ({self.requests / self.seconds:.0f}/s);"
            f" threads {self.start.threads} -> {self.end.threads}"
        )
        out += [f"unexpected: {line}" for line in self.unexpected[:10]]
        rss = f"{self.start.rss_kib / 1024:.1f} -> {self.end.rss_kib / 1024:.1f} MiB"
        out.append(
            f"soak: {self.requests} requests, fds {self.start.fds} -> {self.end.fds}, rss {rss},"
            f" 5xx {self.server_errors}"
        )
        return out


def sample(pid: int) -> Sample:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Sample(fds, int(fields["VmRSS"].split()[0]), int(fields["Threads"]))


def settle(pid: int, threads: int, timeout: float = 60) -> None:
    """Wait until the server is back to ``threads`` threads: every connection it served has ended.

    Clients that drop a socket end its thread at once; one left open is closed by the server
    after its idle timeout (15 s).
    """
    deadline = time.monotonic() + timeout
    while sample(pid).threads > threads and time.monotonic() < deadline:
        time.sleep(0.1)


class Client:
    """One client thread's keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()  # the server dropped an idle keep-alive connection: open another once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def raw(self, data: bytes, *, read: bool = True) -> int | None:
        """Send bytes on a connection of their own; the status of the answer, if one is read."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.sendall(data)
            if not read:
                return None
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status


class Soak:
    def __init__(self, port: int, *, new_revisions: bool = False) -> None:
        self.port = port
        self.new_revisions = new_revisions
        self.executions: list[str] = []
        self.revision = itertools.count()
        self.lock = threading.Lock()

    def latest(self) -> str:
        with self.lock:
            return self.executions[-1]

    # Each kind: (name, expected statuses, one request). None: no answer is read (idle sockets).
    def kinds(self) -> list[tuple[str, set[int | None], Callable[[Client], int | None]]]:
        def openapi(c: Client) -> int:
            return c.request("GET", "/openapi.json")[0]

        def deploy(c: Client) -> int:
            n = next(self.revision)
            if self.new_revisions:  # each deploy a new revision (module doc: the service keeps them all)
                source = HELLO.replace("id: hello", "id: deployed").replace("Hello,", f"Hello {n},")
            else:  # the same FLOWS flows again and again, as a CI job redeploys them (created in the warm-up)
                source = HELLO.replace("id: hello", f"id: deployed{n % FLOWS}")
            flow_id = source.split("id: ", 1)[1].split("\n", 1)[0]
            return c.request(
                "PUT", f"/api/v1/main/flows/squall.soak/{flow_id}", source.encode(), {"Content-Type": YAML}
            )[0]

        def start(c: Client) -> int:
            status, body = c.request(
                "POST",
                "/api/v1/main/executions/squall.soak/hello",
                b'{"name": "Ada"}',
                {"Content-Type": "application/json"},
            )
            if status == 200:
                with self.lock:
                    self.executions.append(json.loads(body)["id"])
                    del self.executions[:-100]
            return status

        def get(c: Client) -> int:
            return c.request("GET", f"/api/v1/main/executions/{self.latest()}")[0]

        def listing(c: Client) -> int:
            return c.request(
                "GET", "/api/v1/main/executions/search?filters[namespace][EQUALS]=squall.soak&size=20"
            )[0]

        def malformed_json(c: Client) -> int:
            return c.request(
                "POST",
                "/api/v1/main/executions/squall.soak/hello",
                b'{"name": ',
                {"Content-Type": "application/json"},
            )[0]

        def conflicting_length(c: Client) -> int | None:
            head = (
                b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n"
            )
            return c.raw(head + b"\r\nid: x")

        def garbage(c: Client) -> int | None:
            return c.raw(b"\x16\x03\x01 not http at all\r\n\r\n")

        def unknown_route(c: Client) -> int:
            return c.request("GET", "/api/v1/nowhere")[0]

        def no_token(c: Client) -> int | None:
            return c.raw(b"GET /api/v1/main/flows/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

        def idle(c: Client) -> int | None:
            return c.raw(b"", read=False)

        def half_request(c: Client) -> int | None:
            return c.raw(b"GET /openapi.json HTT", read=False)

        return [
            ("openapi", {200}, openapi),
            ("deploy", {200}, deploy),
            ("start", {200}, start),
            ("get", {200}, get),
            ("list", {200}, listing),
            ("malformed-json", {400}, malformed_json),
            ("content-length", {400}, conflicting_length),
            ("garbage", {400}, garbage),
            ("unknown-route", {404}, unknown_route),
            ("no-token", {401}, no_token),
            ("idle", {None}, idle),
            ("half-request", {None}, half_request),
        ]


def run(
    requests: int = 5000,
    concurrency: int = 8,
    *,
    new_revisions: bool = False,
    log: Callable[[str], None] = print,
) -> SoakResult:
    with (
        tempfile.TemporaryDirectory(prefix="squall-soak-") as tmp,
        squall_server(
            Path(tmp), "--db", f"{tmp}/soak.db", "--token", TOKEN, "--tick-interval", "0.5"
        ) as server,
    ):
        port, pid = server.port, server.pid
        baseline = sample(pid).threads  # before any connection: main, listener, tick
        soak = Soak(port, new_revisions=new_revisions)
        kinds = soak.kinds()
        warm = Client(port)
        created = [HELLO] + [HELLO.replace("id: hello", f"id: deployed{i}") for i in range(FLOWS)]
        created.append(HELLO.replace("id: hello", "id: deployed"))  # the --new-revisions flow
        for source in created:  # Kestra's create; the deploy kind then updates them (PUT)
            warm.request("POST", "/api/v1/main/flows", source.encode(), {"Content-Type": YAML})
        for name, _, send in kinds:  # warm-up: every kind once, so the figures start from a steady state
            try:
                send(warm)
            except Exception as exc:  # counted in the run proper
                log(f"warm-up {name}: {exc!r}")
                warm.close()
        warm.close()
        settle(pid, baseline)
        start = sample(pid)
        log(f"server pid {pid}: {start.fds} fds, {start.rss_kib / 1024:.1f} MiB, {start.threads} threads")
        statuses: dict[str, Counter[int]] = {name: Counter() for name, _, _ in kinds}
        unexpected: list[str] = []
        order = itertools.count()
        guard = threading.Lock()

        def worker() -> None:
            client = Client(port)
            try:
                while (n := next(order)) < requests:
                    name, expected, send = kinds[n % len(kinds)]
                    try:
                        status = send(client)
                    except Exception as exc:  # a refused or reset connection is a finding, not a crash
                        with guard:
                            unexpected.append(f"{name}: {exc!r}")
                        client.close()
                        continue
                    with guard:
                        statuses[name][status if status is not None else 0] += 1
                        if status not in expected:
                            unexpected.append(f"{name}: {status}")
            finally:
                client.close()

        began = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - began
        settle(pid, baseline)
        end = sample(pid)
        return SoakResult(requests, seconds, start, end, statuses, unexpected)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--new-revisions", action="store_true", help="every deploy makes a new revision (see the module doc)"
    )
    args = parser.parse_args()
    result = run(args.requests, args.concurrency, new_revisions=args.new_revisions)
    for line in result.lines():
        print(line)


if __name__ == "__main__":
    main()

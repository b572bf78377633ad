"""The HTTP part of the bad-input campaign: a real ``squall server`` process, raw sockets and httpx.

The server runs as users run it (``python -m control_plane.cli server``), with a secret in
Kestra's ``SECRET_<NAME>`` variable and the campaign's canary in its environment. Every answer
must be a JSON object (with a ``message`` when it is an error), never a 5xx, never hold the
secret or the canary; after each bad input a fresh connection must get ``/openapi.json``.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

from tests.security.campaign import CANARY, SLOW, Tally, explore
from tests.servers import squall_server

__all__ = ["http_campaign"]

TOKEN = "campaign-token"
SECRET = "campaign-secret-value-8d1c"
INPUT_SECRET = "campaign-input-secret-0b7e"

FLOW = """
id: target
namespace: campaign
inputs:
  - {id: name, type: STRING, required: false, defaults: x, validator: '^(a+)+$|^x$|^[a-z]{1,20}$'}
  - {id: n, type: INT, required: false}
  - {id: when, type: DATETIME, required: false}
  - {id: data, type: JSON, required: false}
  - {id: password, type: SECRET, required: false}
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.name }} {{ secret('CAMPAIGN') | length }} {{ inputs.password ?? '' }}"
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "{{ secret('CAMPAIGN') }}"
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: campaign-webhook-key
"""


@contextmanager
def _server(tmp: Path) -> Iterator[str]:
    env = {
        "SECRET_CAMPAIGN": base64.b64encode(SECRET.encode()).decode(),
        "SQUALL_CAMPAIGN_CANARY": CANARY,
        "SQUALL_EXPRESSION_TIMEOUT": "0.5",
    }
    options = ("--token", TOKEN, "--db", str(tmp / "http-campaign.db"), "--tick-interval", "0.2")
    with squall_server(tmp, *options, env=env) as server:
        yield server.url


def _raw(base: str, payload: bytes, timeout: float = SLOW) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it closes or goes quiet."""
    host, port = base.removeprefix("http://").split(":")
    chunks: list[bytes] = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first on a request it refuses
        sock.settimeout(timeout)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()
DEEP = b"[" * 5000 + b"]" * 5000

RAW_REQUESTS: list[bytes] = [
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n"
    + AUTH
    + b"Content-Length: 5\r\nContent-Length: 50\r\n\r\nhello",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 1_0\r\n\r\n0123456789",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: +10\r\n\r\n0123456789",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: -1\r\n\r\n",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n"
    + AUTH
    + b"Content-Length: 99999999999999999999\r\n\r\n",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: \xd9\xa1\r\n\r\n0",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n"
    + AUTH
    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n"
    + AUTH
    + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /api/v1/main/flows HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 100\r\n\r\nshort",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET /openapi.json HTTP/9.9\r\n\r\n",
    b"GET /openapi.json\r\n\r\n",
    b"BREW /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n",
    b"G\x00T /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 100_000 + b"\r\n\r\n",
    b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 500 + b"\r\n",
    b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nheader without colon\r\n\r\n",
    b"HEAD /api/v1/nope HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /api/v1/main/flows/search HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
    b"GET /api/v1/main/flows/..%2f..%2f..%2fetc/passwd HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
    b"GET /api/v1/main/executions/%00 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
    b"GET /api/v1/main/executions/\xff\xfe HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
    b"GET /api/v1/main/executions/search?size=99999999999999999999&page=%ff HTTP/1.1\r\nHost: x\r\n"
    + AUTH
    + b"\r\n",
    b"GET /api/v1/main/executions/search?"
    + b"&".join([b"filters[state][IN]=RUNNING"] * 2000)
    + b" HTTP/1.1\r\nHost: x\r\n"
    + AUTH
    + b"\r\n",
    b"GET /api/v1/main/flows/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n",
    b"GET /api/v1/main/flows/search HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
    + base64.b64encode(b"a:b")
    + b"\r\n\r\n",
    b"GET /api/v1/main/flows/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + b"t" * 10_000
    + b"\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on a plain port
    b"\r\n\r\n\r\n",
    b"",
]


def _json_body(
    payload: bytes, method: str = "POST", path: str = "/api/v1/main/executions/campaign/target"
) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode()
        + AUTH
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + payload
    )


RAW_REQUESTS += [
    _json_body(DEEP),
    _json_body(b'{"name": "\\ud800"}'),
    _json_body(b'{"name": "\xff\xfe"}'),
    _json_body(b'{"name": '),
    _json_body(b'{"name": "x", "name": "y"}'),
    _json_body(b"[1, 2, 3]"),
    _json_body(b'"just a string"'),
    _json_body(b'{"n": 1e999999}'),
    _json_body(b'{"n": 99999999999999999999999999999}'),
    _json_body(b'{"name": "' + b"a" * 40 + b'!"}'),
    _json_body(DEEP, path="/webhooks/campaign/target/campaign-webhook-key"),
    _json_body(b'{"a": "\\ud800"}', path="/webhooks/campaign/target/campaign-webhook-key"),
    _json_body(b"{}", path="/webhooks/campaign/target/wrong-key"),
    _json_body(b"id: x\nnamespace: [", path="/api/v1/main/flows"),
    _json_body(b"!!python/object/apply:os.system ['echo pwned']", path="/api/v1/main/flows"),
    _json_body(b"{}", method="DELETE", path="/api/v1/main/executions/nope"),
    _json_body(b"{}", method="DELETE", path="/api/v1/main/executions/nope/actions/kill"),
    _json_body(b"{}", path="/api/v1/main/executions/nope/actions/resume"),
]


class _Judge:
    def __init__(self, tally: Tally, base: str) -> None:
        self.tally = tally
        self.base = base
        self.secrets = (SECRET, INPUT_SECRET)

    def alive(self, after: str) -> None:
        started = time.monotonic()
        try:
            response = httpx.get(f"{self.base}/openapi.json", timeout=SLOW)
            ok = response.status_code == 200
        except httpx.HTTPError as exc:
            ok, response = False, exc  # type: ignore[assignment]
        if not ok or time.monotonic() - started > SLOW:
            self.tally.unavailable.append(f"after {after}: {response!r}")

    def raw(self, payload: bytes) -> None:
        self.tally.bad_inputs += 1
        label = repr(payload[:70])
        started = time.monotonic()
        try:
            answer = _raw(self.base, payload)
        except OSError as exc:
            answer = b""
            self.tally.unhandled.append(f"{label}: connection failed: {exc}")
        if time.monotonic() - started > SLOW + 1:
            self.tally.hangs.append(f"{label}: {time.monotonic() - started:.1f} s")
        if answer:
            self._judge_raw(label, answer)
        self.alive(label)

    def _judge_raw(self, label: str, answer: bytes) -> None:
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status in (0, 500, 502) or status > 505:  # 501, 503, 505: protocol answers, not failures
            self.tally.unhandled.append(f"{label}: {status_line!r}")
        text = body.decode("utf-8", "replace")
        if b"HEAD " not in label.encode() and status >= 400 and body:
            try:
                decoded = json.loads(text.split("\r\n\r\n")[0] if "HTTP/1.1" in text else text)
                if not isinstance(decoded, dict) or "message" not in decoded:
                    raise ValueError
            except ValueError:
                if not text.lstrip().startswith("{"):
                    self.tally.unhandled.append(f"{label}: {status} error body is not JSON: {text[:80]!r}")
        if self.tally.leaked(text, self.secrets, rendered=False):
            self.tally.escapes.append(f"{label}: {text[:120]!r}")

    def request(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        self.tally.bad_inputs += 1
        label = f"{method} {path[:60]} {str(kwargs)[:60]}"
        started = time.monotonic()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.unhandled.append(f"{label}: {type(exc).__name__}: {exc}")
            self.alive(label)
            return None
        took = time.monotonic() - started
        if took > SLOW:
            self.tally.hangs.append(f"{label}: {took:.1f} s")
        if response.status_code in (500, 502) or response.status_code > 505:
            self.tally.unhandled.append(f"{label}: {response.status_code} {response.text[:100]}")
        try:
            body = response.json()
            if response.status_code >= 400 and not (isinstance(body, dict) and "message" in body):
                self.tally.unhandled.append(f"{label}: error without a message: {response.text[:80]}")
        except ValueError:
            self.tally.unhandled.append(f"{label}: not JSON: {response.text[:80]!r}")
        if self.tally.leaked(response.text, self.secrets, rendered=False):
            self.tally.escapes.append(f"{label}: {response.text[:120]!r}")
        return response


_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["\ud800", "a" * 40 + "!", "{{ secret('CAMPAIGN') }}", "{{ 7 * 7 }}", "../..", "%00", "x" * 10_000]
    ),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=15,
)
_INPUTS = st.dictionaries(
    st.sampled_from(["name", "n", "when", "data", "password", "other"]), _JSON, max_size=5
)
_SEGMENT = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    st.sampled_from(["..", ".", "%2e%2e", "campaign", "target", "x" * 500]),
)
_QUERY = st.dictionaries(
    st.sampled_from(
        ["limit", "cursor", "page", "size", "state", "namespace", "flowId", "startDate", "taskRunId"]
    ),
    st.one_of(
        st.text(max_size=20), st.integers().map(str), st.sampled_from(["-1", "0", "1e9", "RUNNING", "%ff"])
    ),
    max_size=4,
)


def _generated(judge: _Judge, client: httpx.Client, examples: int) -> None:
    def post(path: str, body: bytes, content_type: str = "application/json") -> httpx.Response | None:
        return judge.request(client, "POST", path, content=body, headers={"Content-Type": content_type})

    def start_with(inputs: Any) -> None:
        # json.dumps is ASCII: a lone surrogate travels as its \u escape
        response = post("/api/v1/main/executions/campaign/target", json.dumps(inputs).encode())
        if response is not None and response.status_code == 200:
            judge.request(client, "GET", f"/api/v1/main/executions/{response.json()['id']}")

    def read(where: tuple[list[str], dict[str, str]]) -> None:
        from urllib.parse import quote

        segments, query = where
        judge.request(client, "GET", "/api/v1/" + "/".join(quote(s, safe="") for s in segments), params=query)
        judge.request(client, "GET", "/api/v1/main/executions/search", params=query)
        judge.request(client, "GET", "/api/v1/main/flows/search", params=query)

    inputs = st.one_of(_INPUTS.map(lambda d: {**d, "password": INPUT_SECRET}), _JSON)
    explore(inputs, examples, start_with)
    explore(st.tuples(st.lists(_SEGMENT, min_size=1, max_size=4), _QUERY), examples, read)
    bodies = st.binary(max_size=2000) | _JSON.map(lambda v: json.dumps(v).encode())
    explore(bodies, examples, lambda body: post("/webhooks/campaign/target/campaign-webhook-key", body))
    sources = st.text(max_size=400).map(lambda text: text.encode("utf-8", "surrogatepass"))
    explore(
        sources,
        max(examples // 2, 1),
        lambda source: post("/api/v1/main/flows", source, "application/x-yaml"),
    )


def http_campaign(tally: Tally, tmp: Path, examples: int = 120) -> None:
    with _server(tmp) as base:
        judge = _Judge(tally, base)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=headers, timeout=SLOW * 2) as client:
            deployed = client.post(
                "/api/v1/main/flows", content=FLOW, headers={"Content-Type": "application/x-yaml"}
            )
            assert deployed.status_code == 200, deployed.text
            for payload in RAW_REQUESTS:
                judge.raw(payload)
            _generated(judge, client, examples)
            # the executions started above ran on the server: their records must hold no secret
            listing = judge.request(
                client,
                "GET",
                "/api/v1/main/executions/search",
                params={"filters[namespace][EQUALS]": "campaign", "size": 50},
            )
            for item in (listing.json().get("results", []) if listing is not None else [])[:20]:
                judge.request(client, "GET", f"/api/v1/main/executions/{item['id']}")
                judge.request(client, "GET", f"/api/v1/main/executions/{item['id']}/taskruns")
                judge.request(client, "GET", f"/api/v1/main/executions/{item['id']}/logs")
                judge.request(client, "GET", f"/api/v1/main/logs/{item['id']}")

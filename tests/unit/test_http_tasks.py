"""core.http Request and Download against a real HTTP server started by the test.

The handlers run as the driver runs them (``run_effect`` with an EffectContext on a storage
directory); one flow goes through ``squall run`` end to end. Slowness is a handler that
waits on an event released at teardown, never a sleep in the test itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.engine.states import State
from control_plane.errors import FlowValidationError
from control_plane.flows.loader import parse_flow
from control_plane.store.sqlite import SqliteStore
from control_plane.tasks import EffectContext
from tests.unit.effect_helpers import effect_context, run_family

RELEASE = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/json":
            self._send(200, b'{"hello": "world"}', {"Content-Type": "application/json", "X-Multi": "a"})
        elif self.path == "/slow":
            RELEASE.wait(10)
            self._send(200, b"late")
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/files/report.csv":
            self._send(200, b"a,b\n1,2\n", {"Content-Disposition": 'attachment; filename="../../evil.csv"'})
        elif self.path == "/empty":
            self._send(200, b"")
        else:
            self._send(404, b"no such thing")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode()
        echo = {"body": received, "type": self.headers.get("Content-Type"), "x": self.headers.get("X-Token")}
        self._send(201, json.dumps(echo).encode(), {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        RELEASE.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def ctx(tmp_path: Path) -> EffectContext:
    return effect_context(tmp_path, "t.http")


def _run(kind: str, ctx: EffectContext, **props: Any) -> tuple[Any, str | None]:
    return run_family("http", kind, ctx, **props)


def test_request_get_outputs_code_headers_body_uri(server: str, ctx: EffectContext) -> None:
    outputs, error = _run("Request", ctx, uri=f"{server}/json")
    assert error is None
    assert outputs["code"] == 200
    assert json.loads(outputs["body"]) == {"hello": "world"}
    assert outputs["headers"]["X-Multi"] == ["a"]
    assert outputs["uri"] == f"{server}/json"


def test_request_post_sends_body_content_type_and_headers(server: str, ctx: EffectContext) -> None:
    outputs, error = _run(
        "Request",
        ctx,
        uri=f"{server}/echo",
        method="POST",
        body='{"a": 1}',
        contentType="application/json",
        headers={"X-Token": "t0k"},
    )
    assert error is None and outputs["code"] == 201
    assert json.loads(outputs["body"]) == {"body": '{"a": 1}', "type": "application/json", "x": "t0k"}
    outputs, error = _run(
        "Request", ctx, uri=f"{server}/echo", method="POST", formData={"n": "1", "m": "x y"}
    )
    assert error is None
    assert json.loads(outputs["body"])["body"] == "n=1&m=x+y"
    assert json.loads(outputs["body"])["type"] == "application/x-www-form-urlencoded"


def test_a_404_fails_unless_allow_failed(server: str, ctx: EffectContext) -> None:
    outputs, error = _run("Request", ctx, uri=f"{server}/missing")
    assert outputs is None and error is not None and error.startswith("Not Found (404)")
    outputs, error = _run("Request", ctx, uri=f"{server}/missing", allowFailed=True)
    assert error is None and outputs["code"] == 404 and outputs["body"] == "no such thing"


def test_read_timeout_fails_the_attempt(server: str, ctx: EffectContext) -> None:
    outputs, error = _run("Request", ctx, uri=f"{server}/slow", options={"readTimeout": "PT0.3S"})
    assert outputs is None and error is not None and "Read Timeout" in error


def test_the_task_budget_bounds_the_call(server: str, ctx: EffectContext) -> None:
    import time

    ctx.deadline = time.monotonic() + 0.3  # the task's timeout, shorter than readTimeout
    outputs, error = _run("Request", ctx, uri=f"{server}/slow")
    assert outputs is None and error is not None and "Read Timeout" in error


def test_max_content_length_bounds_a_response(server: str, ctx: EffectContext) -> None:
    _, error = _run("Request", ctx, uri=f"{server}/big", options={"maxContentLength": 1000})
    assert error is not None and "exceeds the maximum allowed content length [1000]" in error


def test_a_refused_connection_and_a_bad_uri_fail_with_reasons(ctx: EffectContext) -> None:
    _, error = _run("Request", ctx, uri="http://127.0.0.1:9/nothing")
    assert error is not None and "Request to http://127.0.0.1:9/nothing failed" in error
    _, error = _run("Request", ctx, uri="ftp://example.com/x")
    assert error == "property 'uri': 'ftp://example.com/x' is not an http:// or https:// URL"


def test_download_stores_the_file_with_a_safe_name(server: str, ctx: EffectContext) -> None:
    outputs, error = _run("Download", ctx, uri=f"{server}/files/report.csv")
    assert error is None
    assert outputs["code"] == 200 and outputs["length"] == 8
    assert outputs["uri"].endswith("/t.http/f/ex1/tr1/1/evil.csv")  # the header's last segment only
    assert ctx.storage.read(outputs["uri"]) == b"a,b\n1,2\n"


def test_download_refuses_too_large_empty_and_404(server: str, ctx: EffectContext) -> None:
    _, error = _run("Download", ctx, uri=f"{server}/big", options={"maxContentLength": 100})
    assert error is not None and "exceeds the maximum allowed content length [100]" in error
    _, error = _run("Download", ctx, uri=f"{server}/empty")
    assert error == "No response from server"
    outputs, error = _run("Download", ctx, uri=f"{server}/empty", failOnEmptyResponse=False)
    assert error is None and outputs["length"] == 0
    _, error = _run("Download", ctx, uri=f"{server}/nope")
    assert error is not None and error.startswith("Not Found (404)")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("encryptBody: true", "encryptBody"),
        ("options: {logLevel: TRACE}", "logLevel"),
        ("options: {proxyType: SOCKS}", "proxyType"),
        ("options: {readTimeout: soon}", "readTimeout"),
        ("method: FETCH", "method"),
        ("unknown: 1", "unknown"),
    ],
)
def test_what_squall_cannot_honour_is_a_validation_error(extra: str, field: str) -> None:
    source = f"""
id: h
namespace: t.http
tasks:
  - id: call
    type: io.kestra.plugin.core.http.Request
    uri: http://example.com
    {extra}
"""
    with pytest.raises(FlowValidationError, match=field):
        parse_flow(source, "h.yaml")


def test_a_flow_downloads_then_requests_through_squall_run(server: str, tmp_path: Path) -> None:
    flow = tmp_path / "http.yaml"
    flow.write_text(
        f"""
id: http
namespace: t.http
tasks:
  - id: get
    type: io.kestra.plugin.fs.http.Request
    uri: {server}/json
  - id: fetch
    type: io.kestra.plugin.core.http.Download
    uri: {server}/files/report.csv
  - id: show
    type: io.kestra.plugin.core.log.Log
    message: "said {{{{ (outputs.get.body | fromJson).hello }}}} and {{{{ outputs.fetch.length }}}} bytes"
  - id: missing
    type: io.kestra.plugin.core.http.Request
    uri: {server}/missing
    retry: {{type: constant, interval: PT0.1S, maxAttempt: 2}}
"""
    )
    result = CliRunner().invoke(
        app, ["run", str(flow), "--db", str(tmp_path / "db.sqlite"), "--virtual-time"]
    )
    assert result.exit_code == 1, result.output
    assert "said world and 8 bytes" in result.output
    store = SqliteStore(tmp_path / "db.sqlite")
    try:
        (summary,) = store.list_executions().items
        (missing,) = [
            tr for tr in store.get_execution(summary.id).taskruns.values() if tr.task_id == "missing"
        ]
    finally:
        store.close()
    assert [a.state for a in missing.attempts] == [State.FAILED, State.FAILED]  # retried once, as asked
    assert missing.error is not None and "Not Found (404)" in missing.error


def test_multipart_form_data_sends_storage_files_and_fields(server: str, ctx: EffectContext) -> None:
    uri = ctx.storage.uri("t.http/f/ex0/tr0/1/report.csv")
    ctx.storage.write(uri, b"a,b\n1,2\n")
    outputs, error = _run(
        "Request",
        ctx,
        uri=f"{server}/echo",
        method="POST",
        contentType="multipart/form-data",
        formData={"note": "hi", "file": {"name": "data.csv", "content": uri}, "n": 3},
    )
    assert error is None
    echoed = json.loads(outputs["body"])
    assert echoed["type"].startswith("multipart/form-data; boundary=")
    body = echoed["body"]
    assert 'name="note"' in body and "hi" in body
    assert 'filename="data.csv"' in body and "a,b\n1,2\n" in body
    assert 'name="n"' in body


def test_an_http_proxy_without_an_address_is_a_validation_error() -> None:
    source = """
id: h
namespace: t.http
tasks:
  - id: call
    type: io.kestra.plugin.core.http.Request
    uri: http://example.com
    options: {proxyType: HTTP}
"""
    with pytest.raises(FlowValidationError, match="proxyAddress"):
        parse_flow(source, "h.yaml")

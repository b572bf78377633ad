"""``squall server`` over real HTTP: the Lambda handler behind ThreadingHTTPServer, and the tick loop.

Jobs run as real local processes (the process runner); nothing but the server's own tick
loop moves them along, so an execution reaching SUCCESS proves the loop polls and
completes jobs. Waits poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.server import Server
from tests.integration.api_events import multipart_body
from tests.integration.service_helpers import server_settings, wait_for
from tests.servers import squall_server

TOKEN = "server-test-token"

MARKER = """
id: marker
namespace: squall.server
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo "working on it"
      - echo '::{"outputs":{"x":1}}::'
"""

LONG = """
id: long
namespace: squall.server
tasks:
  - id: nap
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - sleep 30
"""

UPLOAD = """
id: upload
namespace: squall.server
inputs:
  - id: data
    type: FILE
tasks:
  - id: count
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    inputFiles:
      data.bin: "{{ inputs.data }}"
    commands:
      - echo "::{\\"outputs\\":{\\"size\\":$(wc -c < data.bin)}}::"
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(server_settings(tmp_path, TOKEN), host="127.0.0.1", port=0, tick_interval=0.1) as srv:
        yield srv


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def _deploy(http: httpx.Client, source: str) -> None:
    response = http.post("/api/v1/main/flows", content=source, headers={"Content-Type": "application/x-yaml"})
    assert response.status_code == 200, response.text


def _until(http: httpx.Client, execution_id: str, states: set[str], deadline_s: float = 60) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def ended() -> bool:
        response = http.get(f"/api/v1/main/executions/{execution_id}")
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return seen["state"]["current"] in states

    wait_for(ended, deadline_s, f"execution {execution_id} to reach {states}")
    return seen


def test_shell_flow_runs_to_success_through_the_tick_loop(http: httpx.Client, server: Server) -> None:
    _deploy(http, MARKER)
    started = http.post("/api/v1/main/executions/squall.server/marker", json={})
    assert started.status_code == 200, started.text
    execution_id = started.json()["id"]
    final = _until(http, execution_id, {"SUCCESS", "FAILED", "KILLED", "WARNING"})
    assert final["state"]["current"] == "SUCCESS", final
    (work,) = final["taskRunList"]
    assert work["outputs"]["vars"] == {"x": 1} and work["outputs"]["exitCode"] == 0
    logs = http.get(f"/api/v1/main/logs/{execution_id}").json()
    assert "working on it" in [entry["message"] for entry in logs]
    assert all("::{" not in entry["message"] for entry in logs)  # the marker is data, not a log line
    assert server.ticks > 0


def test_keep_alive_connections_send_without_nagles_delay(http: httpx.Client, server: Server) -> None:
    """Headers and body leave in two writes; with Nagle on, a keep-alive client's delayed ACK held
    every body 40 ms (44 ms a GET, 1.4 ms without). The connection the client keeps open is idle
    on the server now: its socket must have TCP_NODELAY."""
    import socket

    for _ in range(2):
        assert http.get("/api/v1/main/flows/search").status_code == 200
    httpd = server._httpd
    assert httpd is not None
    wait_for(lambda: bool(httpd._idle), 10, "the kept connection to wait for its next request")
    idle = list(httpd._idle)
    assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in idle), idle


def test_kill_a_long_running_execution(http: httpx.Client) -> None:
    _deploy(http, LONG)
    execution_id = http.post("/api/v1/main/executions/squall.server/long").json()["id"]
    _until(http, execution_id, {"RUNNING"})
    killed = http.delete(f"/api/v1/main/executions/{execution_id}/actions/kill")
    assert killed.status_code == 202, killed.text
    final = _until(http, execution_id, {"KILLED", "SUCCESS", "FAILED"}, deadline_s=20)
    assert final["state"]["current"] == "KILLED"
    assert http.delete(f"/api/v1/main/executions/{execution_id}/actions/kill").status_code == 409


def test_binary_upload_survives_the_http_to_event_translation(http: httpx.Client) -> None:
    _deploy(http, UPLOAD)
    content = bytes(range(256)) * 8
    body, content_type = multipart_body({}, {"data": ("blob.bin", content)})
    started = http.post(
        "/api/v1/main/executions/squall.server/upload", content=body, headers={"Content-Type": content_type}
    )
    assert started.status_code == 200, started.text
    final = _until(http, started.json()["id"], {"SUCCESS", "FAILED", "KILLED"})
    assert final["taskRunList"][0]["outputs"]["vars"] == {"size": len(content)}, final


def test_http_level_errors(server: Server, http: httpx.Client) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        refused = anonymous.get("/api/v1/main/flows/search")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "Squall"
    too_big = http.post(
        "/api/v1/main/flows",
        content=b"#" * (server.settings.max_body_bytes + 1),
        headers={"Content-Type": "application/x-yaml"},
    )
    assert too_big.status_code == 413 and "too large" in too_big.json()["message"]
    # the unread body ends the connection, and the client is told, so it does not reuse it
    assert too_big.headers["connection"] == "close"
    _deploy(http, MARKER)
    malformed = http.post(
        "/api/v1/main/executions/squall.server/marker",
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400 and malformed.json()["line"] == 1
    listing = http.get("/api/v1/main/executions/search", params={"filters[state][IN]": "SUCCESS,FAILED"})
    assert listing.status_code == 200 and listing.json() == {"results": [], "total": 0}
    assert http.get("/api/v1/main/flows/search", params={"size": "x"}).status_code == 422


def test_server_defaults_to_polling_every_tick_unless_told_otherwise(tmp_path: Path) -> None:
    assert Server(server_settings(tmp_path, TOKEN)).settings.reconcile_after == 0
    assert Server(server_settings(tmp_path, TOKEN, reconcile_after=30)).settings.reconcile_after == 30


def test_squall_server_command_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    options = ("--db", str(tmp_path / "cli.db"), "--token", TOKEN, "--tick-interval", "0.2")
    with squall_server(tmp_path, *options) as server:
        response = httpx.get(
            f"{server.url}/api/v1/main/flows/search", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert response.status_code == 200 and response.json() == {"results": [], "total": 0}
    out, errors = server.stdout(), server.stderr()
    assert server.returncode == 0, out + errors
    assert server.url in out and "stopped" in out
    assert "Traceback" not in errors
    assert (tmp_path / "cli.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-auth", "--token", "t"], "contradict"),
        (["--store", "postgres"], "sqlite or dynamodb"),
        (["--store", "dynamodb", "--no-auth"], "SQUALL_TABLE is required"),
    ],
)
def test_squall_server_refuses_contradictory_options(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from control_plane.cli import app

    result = CliRunner().invoke(app, ["server", *args], env={"SQUALL_API_TOKEN": "", "SQUALL_TABLE": ""})
    assert result.exit_code in (1, 2) and message in result.output, result.output


def test_the_server_runs_on_dynamodb_local(
    tmp_path: Path, dynamodb_table: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``squall server --store dynamodb --endpoint-url ...``: the Lambda code path on DynamoDB Local."""
    client, table = dynamodb_table
    endpoint = client.meta.endpoint_url
    settings = server_settings(
        tmp_path, TOKEN, store="dynamodb", table=table, dynamodb_endpoint=endpoint, region="us-east-1"
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")  # DynamoDB Local accepts any credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with (
        Server(settings, host="127.0.0.1", port=0, tick_interval=0.1) as srv,
        httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http,
    ):
        _deploy(http, MARKER)
        started = http.post("/api/v1/main/executions/squall.server/marker", json={})
        assert started.status_code == 200, started.text
        final = _until(http, started.json()["id"], {"SUCCESS", "FAILED", "KILLED", "WARNING"})
        assert final["state"]["current"] == "SUCCESS", final
        listed = http.get(
            "/api/v1/main/executions/search", params={"filters[namespace][EQUALS]": "squall.server"}
        ).json()["results"]
        assert [e["id"] for e in listed] == [final["id"]]
    items = client.scan(TableName=table, Select="COUNT")["Count"]
    assert items > 0  # the state went to the table, not to a SQLite file
    assert not (tmp_path / "squall.db").exists()

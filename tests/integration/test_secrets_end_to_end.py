"""Secrets as deployed: `squall run` and `squall server` processes, values masked in all they keep.

A flow reads one secret from a file, one from Kestra's ``SECRET_<NAME>`` variable and one SECRET
input, prints them from a shell script, returns them, puts them in a label and fails with
them. The script must receive the real values (it checks them itself); nothing stored, printed
or served may hold them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from control_plane.masking import MASK
from control_plane.store.sqlite import SqliteStore
from tests.integration.service_helpers import wait_for
from tests.servers import ROOT, squall_server

FILE_SECRET = "file-s3cr3t-91ab"
ENV_SECRET = "env-s3cr3t-77cd"
INPUT_SECRET = "input-s3cr3t-42ef"
TOKEN = "secrets-test-token"
RUN = [sys.executable, "-m", "control_plane.cli", "run"]

FLOW = """
id: secrets
namespace: test.secrets
inputs:
  - id: password
    type: SECRET
tasks:
  - id: script
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - test "{{ secret('FROM_FILE') }}" = "file-s3cr3t-91ab"
      - test "{{ secret('FROM_ENV') }}" = "env-s3cr3t-77cd"
      - test "{{ inputs.password }}" = "input-s3cr3t-42ef"
      - echo "file={{ secret('FROM_FILE') }} env={{ secret('FROM_ENV') }} input={{ inputs.password }}"
      - echo "stderr {{ secret('FROM_FILE') }}" >&2
      - 'echo "::{\\"outputs\\":{\\"leak\\":\\"{{ secret(''FROM_ENV'') }}\\"}}::"'
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "log {{ secret('FROM_FILE') }} {{ inputs.password }}"
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "{{ secret('FROM_ENV') }}"
  - id: label
    type: io.kestra.plugin.core.execution.Labels
    labels:
      leak: "{{ secret('FROM_FILE') }}"
  - id: fail
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: "failing with {{ secret('FROM_ENV') }} and {{ inputs.password }}"
"""


def _setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    flow = tmp_path / "secrets.yaml"
    flow.write_text(FLOW)
    secrets = tmp_path / "secrets.yaml.private"
    secrets.write_text(f"FROM_FILE: {FILE_SECRET}\n")
    secrets.chmod(0o600)
    env = {
        **os.environ,
        "SECRET_FROM_ENV": base64.b64encode(ENV_SECRET.encode()).decode(),
        "SQUALL_API_TOKEN": "",
        "PYTHONUNBUFFERED": "1",
    }
    return flow, secrets, env


def _assert_hidden(text: str, where: str) -> None:
    for value in (FILE_SECRET, ENV_SECRET, INPUT_SECRET):
        assert value not in text, f"{value} in {where}"


def _stored(db: Path) -> tuple[Any, str]:
    store = SqliteStore(db)
    try:
        (summary,) = store.list_executions().items
        execution = store.get_execution(summary.id)
        logs = store.read_logs(summary.id, limit=10_000).items
    finally:
        store.close()
    # inputs keep the SECRET input's value for tasks still to run: shown masked, checked below
    return execution, repr((execution.evolve(inputs={}), logs))


def test_squall_run_masks_secrets_everywhere_it_keeps_them(tmp_path: Path) -> None:
    flow, secrets, env = _setup(tmp_path)
    db = tmp_path / "run.db"
    result = subprocess.run(
        [*RUN, str(flow), "--db", str(db), "--secrets", str(secrets), "-i", f"password={INPUT_SECRET}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the Fail task, on purpose
    _assert_hidden(result.stdout + result.stderr, "squall run's output")
    assert f"file={MASK} env={MASK} input={MASK}" in result.stdout
    execution, everything = _stored(db)
    _assert_hidden(everything, "the store")
    runs = {tr.task_id: tr for tr in execution.taskruns.values()}
    assert str(runs["script"].state) == "SUCCESS"  # the script saw the real values
    assert runs["script"].outputs["vars"] == {"leak": MASK}
    assert runs["ret"].outputs == {"value": MASK}
    assert execution.labels["leak"] == MASK
    assert runs["fail"].error == f"failing with {MASK} and {MASK}"
    assert execution.inputs["password"] == INPUT_SECRET  # kept for later tasks, masked when shown
    assert execution.secret_inputs == ("password",)


def test_squall_run_refuses_a_secrets_file_others_can_read(tmp_path: Path) -> None:
    flow, secrets, env = _setup(tmp_path)
    secrets.chmod(0o644)
    result = subprocess.run(
        [*RUN, str(flow), "--db", str(tmp_path / "x.db"), "--secrets", str(secrets)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "chmod 600" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_squall_server_serves_no_secret(tmp_path: Path) -> None:
    _, secrets, env = _setup(tmp_path)
    options = ("--db", str(tmp_path / "srv.db"), "--token", TOKEN, "--tick-interval", "0.1")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        squall_server(tmp_path, *options, "--secrets", str(secrets), env=env) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as http,
    ):
        deployed = http.post(
            "/api/v1/main/flows", content=FLOW, headers={"Content-Type": "application/x-yaml"}
        )
        assert deployed.status_code == 200, deployed.text
        started = http.post("/api/v1/main/executions/test.secrets/secrets", json={"password": INPUT_SECRET})
        assert started.status_code == 200, started.text
        execution_id = started.json()["id"]

        def ended() -> bool:
            state = http.get(f"/api/v1/main/executions/{execution_id}").json()["state"]["current"]
            return state in ("FAILED", "SUCCESS", "KILLED")

        wait_for(ended, 90, "the execution to end")
        served = [
            started.text,
            http.get(f"/api/v1/main/executions/{execution_id}").text,
            http.get(f"/api/v1/main/executions/{execution_id}/logs").text,
            http.get(f"/api/v1/main/logs/{execution_id}").text,
            http.get(f"/api/v1/main/logs/{execution_id}/download").text,
            http.get(
                "/api/v1/main/executions/search", params={"filters[namespace][EQUALS]": "test.secrets"}
            ).text,
        ]
        body = json.loads(served[1])
        assert body["inputs"]["password"] == MASK
        assert body["state"]["current"] == "FAILED"
        runs = {tr["taskId"]: tr for tr in body["taskRunList"]}
        assert runs["script"]["state"]["current"] == "SUCCESS"
        assert MASK in served[2]
        for text in served:
            _assert_hidden(text, "an API response")
    _assert_hidden(server.stdout() + server.stderr(), "the server's output")

"""``squall run`` of a flow fires the Flow triggers of deployed flows and drives what they start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from control_plane.engine.states import State
from control_plane.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def squall(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "control_plane.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_run_drives_the_execution_its_end_triggered_through_a_script_job(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    (tmp_path / "up.yaml").write_text(
        "id: up\nnamespace: t\ntasks:\n  - id: fail\n    type: io.kestra.plugin.core.execution.Fail\n"
    )
    (tmp_path / "down.yaml").write_text(
        "id: down\nnamespace: t\ninputs:\n  - id: from\n    type: STRING\ntasks:\n"
        "  - id: echo\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n      type: io.kestra.plugin.core.runner.Process\n"
        '    commands: [\'echo "{{ inputs.from }}" > ' + str(tmp_path / "seen") + "']\n"
        "triggers:\n  - id: on_fail\n    type: io.kestra.plugin.core.trigger.Flow\n"
        "    states: [FAILED]\n    inputs:\n      from: '{{ trigger.flowId }} {{ trigger.state }}'\n"
    )
    assert squall("flows", "deploy", str(tmp_path / "down.yaml"), "--db", db).returncode == 0
    done = squall("run", str(tmp_path / "up.yaml"), "--db", db, "-q")
    assert done.returncode == 1, done.stdout + done.stderr  # the run's own execution FAILED
    assert "triggered: execution" in done.stdout and "t.down SUCCESS" in done.stdout
    assert (tmp_path / "seen").read_text() == "up FAILED\n"
    again = squall("run", str(tmp_path / "up.yaml"), "--db", db, "-q")  # another end: another start
    assert again.returncode == 1 and "t.down SUCCESS" in again.stdout
    store = SqliteStore(tmp_path / "s.db")
    try:
        downs = [s for s in store.list_executions().items if s.flow_id == "down"]
        assert len(downs) == 2 and all(s.state is State.SUCCESS for s in downs)
    finally:
        store.close()

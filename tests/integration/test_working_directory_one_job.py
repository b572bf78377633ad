"""A one-job WorkingDirectory (ADR 0016) through ``squall run`` on the process runner.

Run as a user runs it, in another process: the children share one job (one process tree),
each child's log goes to its own task run, and a kill stops the one job while a later child
runs (its process dies; the child before it keeps its success).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.store.sqlite import SqliteStore
from tests.integration.service_helpers import as_in_a_terminal, pid_alive, wait_for

cli = CliRunner()

FLOW = """
id: wd
namespace: t
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: first
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - echo "first pid $PPID" > first.txt
          - echo "first done"
      - id: second
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - cat first.txt
          - {second}
      - id: third
        type: io.kestra.plugin.scripts.shell.Commands
        commands:
          - echo "third ran"
"""


def stored(db: Path) -> tuple[object, list[tuple[str | None, str]], set[str]]:
    """(the only execution, its log lines as (task id, message), the job names of its attempts)."""
    store = SqliteStore(db)
    try:
        (summary,) = store.list_executions().items
        execution = store.get_execution(summary.id)
        logs = [(line.task_id, line.message) for line in store.read_logs(execution.id, limit=1000).items]
    finally:
        store.close()
    jobs = {a.job for tr in execution.taskruns.values() for a in tr.attempts if a.job}
    return execution, logs, jobs


def test_squall_run_gives_each_child_its_own_log_from_one_job(tmp_path: Path) -> None:
    flow = tmp_path / "wd.yaml"
    flow.write_text(FLOW.format(second='echo "second done"'))
    db = tmp_path / "run.db"
    result = cli.invoke(app, ["run", str(flow), "--db", str(db)])
    assert result.exit_code == 0, result.output
    execution, logs, jobs = stored(db)
    assert len(jobs) == 1
    assert {tr.task_id: str(tr.state) for tr in execution.taskruns.values()} == {
        "worker": "SUCCESS", "first": "SUCCESS", "second": "SUCCESS", "third": "SUCCESS"
    }  # fmt: skip
    assert ("first", "first done") in logs and ("third", "third ran") in logs
    assert [m for t, m in logs if t == "second"][-1] == "second done"
    assert not any("squall-child" in m for _, m in logs)


@pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc")
def test_a_kill_stops_the_one_job_during_a_later_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    flow = tmp_path / "wd.yaml"
    flow.write_text(FLOW.format(second=f"echo $$ > {pidfile}; sleep 60"))
    db = tmp_path / "bg.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane.cli", "run", str(flow), "-q"],
        env={**os.environ, "SQUALL_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_in_a_terminal,
    )
    try:
        started = lambda: pidfile.exists() and pidfile.read_text().strip() != ""  # noqa: E731
        wait_for(started, 30, "the second child to start")
        pid = int(pidfile.read_text())
        store = SqliteStore(db)
        try:
            (summary,) = store.list_executions().items
        finally:
            store.close()
        killed = cli.invoke(app, ["executions", "kill", summary.id, "--db", str(db)])
        assert killed.exit_code == 0, killed.output
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and "KILLED" in out, out
    wait_for(lambda: not pid_alive(pid), 10, "the second child's process to die")
    execution, logs, jobs = stored(db)
    assert len(jobs) == 1
    assert {tr.task_id: str(tr.state) for tr in execution.taskruns.values()} == {
        "worker": "KILLED", "first": "SUCCESS", "second": "KILLED"
    }  # fmt: skip
    assert ("first", "first done") in logs
    assert any(t == "second" and m.startswith("first pid") for t, m in logs)

"""The ``squall`` command against the local store: run, executions, flows, and every sample."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.store.base import ExecutionSummary
from control_plane.store.sqlite import SqliteStore
from tests.integration.service_helpers import as_in_a_terminal, pid_alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
cli = CliRunner()


def execution_id(output: str) -> str:
    match = re.search(r"Execution (\w+) ", output)
    assert match, output
    return match.group(1)


def test_sample_hello() -> None:
    result = cli.invoke(app, ["run", str(SAMPLES / "hello.yaml"), "-i", "name=Ada"])
    assert result.exit_code == 0, result.output
    assert "Hello, Ada!" in result.output and "Ada visited 3 planets, last EARTH" in result.output


def test_sample_etl_passes_outputs_and_files_through_a_foreach() -> None:
    result = cli.invoke(app, ["run", str(SAMPLES / "etl.yaml")])
    assert result.exit_code == 0, result.output
    assert "north: 150" in result.output and "south: 100" in result.output and "east: 60" in result.output
    assert '"grand_total": 310' in result.output


def test_sample_resilience_retries_allows_failure_and_runs_errors(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    result = cli.invoke(app, ["run", str(SAMPLES / "resilience.yaml"), "--db", str(db)])
    assert result.exit_code == 1, result.output  # `deploy` fails for good, by design
    store = SqliteStore(db)
    try:
        (summary,) = store.list_executions().items
        execution = store.get_execution(summary.id)
    finally:
        store.close()
    states = {tr.task_id: tr for tr in execution.taskruns.values()}
    assert len(states["flaky"].attempts) == 3 and str(states["flaky"].state) == "SUCCESS"
    assert str(states["optional"].state) == "WARNING"
    assert str(states["deploy"].state) == "FAILED"
    assert str(states["alert"].state) == "SUCCESS"
    assert "deploy failed:" in result.output


def test_sample_dag() -> None:
    result = cli.invoke(app, ["run", str(SAMPLES / "dag.yaml")])
    assert result.exit_code == 0, result.output
    assert "joining 7 rows" in result.output and '"rows": 7' in result.output


def test_executions_and_flows_commands(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "id: f\nnamespace: t\ntasks:\n  - id: say\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    commands: ['echo hello-cli']\n  - id: gate\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        f"    commands: ['test -f {tmp_path / 'gate'}']\n"
    )
    first = cli.invoke(app, ["run", str(flow), "-q"])
    assert first.exit_code == 1
    ex = execution_id(first.output)

    listed = cli.invoke(app, ["executions", "list"])
    assert listed.exit_code == 0 and ex in listed.output and "FAILED" in listed.output
    assert ex not in cli.invoke(app, ["executions", "list", "--state", "SUCCESS"]).output
    assert cli.invoke(app, ["executions", "list", "--state", "NOPE"]).exit_code == 1

    shown = cli.invoke(app, ["executions", "show", ex])
    assert shown.exit_code == 0 and "gate" in shown.output and "exit code 1" in shown.output

    logs = cli.invoke(app, ["executions", "logs", ex, "--task", "say"])
    assert logs.exit_code == 0 and "hello-cli" in logs.output

    (tmp_path / "gate").write_text("")
    restarted = cli.invoke(app, ["executions", "restart", ex, "-q"])
    assert restarted.exit_code == 0, restarted.output
    assert f"Execution {ex} SUCCESS" in restarted.output

    replayed = cli.invoke(app, ["executions", "replay", ex, "-q"])
    assert replayed.exit_code == 0 and execution_id(replayed.output) != ex
    from_gate = cli.invoke(app, ["executions", "replay", ex, "--task", "gate", "-q"])
    assert from_gate.exit_code == 0, from_gate.output
    assert "2 task runs" in from_gate.output
    assert cli.invoke(app, ["executions", "replay", ex, "--task", "nope"]).exit_code == 1

    deployed = cli.invoke(app, ["flows", "deploy", str(flow)])
    assert deployed.exit_code == 0 and "t.f revision 1" in deployed.output  # unchanged: same revision
    flows = cli.invoke(app, ["flows", "list"])
    assert flows.exit_code == 0 and flows.output.split("\t")[:3] == ["t", "f", "1"]  # piped: tab-separated


def test_unknown_ids_and_bad_files_give_clear_errors(tmp_path: Path) -> None:
    nowhere = tmp_path / "new" / "x.db"
    for command in (["show"], ["logs"], ["kill"], ["restart"], ["resume"], ["replay"]):
        result = cli.invoke(app, ["executions", *command, "nope123", "--db", str(nowhere)])
        assert result.exit_code == 1 and f"no Squall database at {nowhere}" in result.output, command
    assert cli.invoke(app, ["flows", "list", "--db", str(nowhere)]).exit_code == 1
    assert not nowhere.parent.exists()  # asked to read, nothing was created
    assert cli.invoke(app, ["run", str(ROOT / "samples" / "hello.yaml"), "-q"]).exit_code == 0
    for command in (["show"], ["logs"], ["kill"], ["restart"], ["resume"], ["replay"]):
        result = cli.invoke(app, ["executions", *command, "nope123"])
        assert result.exit_code == 1, command
        assert "execution 'nope123' not found" in result.output and "Traceback" not in result.output
    missing = cli.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert missing.exit_code == 1 and "cannot read the flow" in missing.output
    (tmp_path / "bad.yaml").write_text("id: [unclosed\n")
    bad = cli.invoke(app, ["run", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 1 and "bad.yaml:" in bad.output and "Traceback" not in bad.output
    (tmp_path / "latin1.yaml").write_bytes(b"id: caf\xe9\n")
    latin = cli.invoke(app, ["flows", "deploy", str(tmp_path / "latin1.yaml")])
    assert latin.exit_code == 1 and "latin1.yaml" in latin.output
    notdb = tmp_path / "not.db"
    notdb.write_text("this is not sqlite" * 100)
    broken = cli.invoke(app, ["executions", "list", "--db", str(notdb)])
    assert broken.exit_code == 1 and str(notdb) in broken.output


def test_resume_from_the_cli(tmp_path: Path) -> None:
    flow = tmp_path / "p.yaml"
    flow.write_text(
        "id: p\nnamespace: t\ntasks:\n  - id: ask\n    type: io.kestra.plugin.core.flow.Pause\n"
        "    onResume:\n      - id: answer\n        type: STRING\n"
        "  - id: echo\n    type: io.kestra.plugin.core.debug.Return\n"
        "    format: '{{ outputs.ask.onResume.answer }}'\n"
    )
    paused = cli.invoke(app, ["run", str(flow), "-q"])
    assert "PAUSED" in paused.output
    ex = execution_id(paused.output)
    resumed = cli.invoke(app, ["executions", "resume", ex, "-i", "answer=yes"])
    assert resumed.exit_code == 0, resumed.output
    assert "SUCCESS" in resumed.output


@contextlib.contextmanager
def squall_run_in_background(
    tmp_path: Path, preexec: Callable[[], None] = as_in_a_terminal
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """``squall run`` of a flow with one long shell job, in another process (``preexec``: its signals).

    Yields (the process, the job's pid once it runs, the database); kills it if still alive.
    """
    pidfile = tmp_path / "pid"
    flow = tmp_path / "long.yaml"
    flow.write_text(
        "id: long\nnamespace: t\ntasks:\n  - id: sleepy\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        f"    commands: ['echo $$ > {pidfile}; sleep 60']\n"
    )
    db = tmp_path / "bg.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane.cli", "run", str(flow), "-q"],
        env={**os.environ, "SQUALL_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30, "the job to start")
        yield proc, int(pidfile.read_text()), db
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def only_execution(db: Path) -> ExecutionSummary:
    store = SqliteStore(db)
    try:
        (summary,) = store.list_executions().items
        assert store.active_jobs() == [] or not summary.state.terminal
        return summary
    finally:
        store.close()


@pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc")
def test_ctrl_c_kills_the_execution_and_its_processes(tmp_path: Path) -> None:
    with squall_run_in_background(tmp_path) as (proc, job_pid, db):
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "KILLED" in out
    wait_for(lambda: not pid_alive(job_pid), 10, "the job process to die")
    assert str(only_execution(db).state) == "KILLED"


@pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc")
def test_kill_from_another_process_stops_the_running_one(tmp_path: Path) -> None:
    with squall_run_in_background(tmp_path) as (proc, job_pid, db):
        killed = cli.invoke(app, ["executions", "kill", only_execution(db).id, "--db", str(db)])
        assert killed.exit_code == 0, killed.output
        assert "KILLED" in killed.output
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "KILLED" in out, out
    assert not pid_alive(job_pid)
    assert str(only_execution(db).state) == "KILLED"


WITHOUT_BOTO3 = (
    "import sys; sys.modules['boto3'] = sys.modules['botocore'] = None; sys.argv[0] = 'squall';"
    " from control_plane.cli import main; main()"
)
"""The CLI as a base install (no ``[aws]`` extra) runs it: importing boto3 fails."""


def squall_without_boto3(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_BOTO3, *args, "--db", str(db)],
        env={**os.environ, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_runner_without_its_extra_fails_cleanly_and_wedges_nothing(tmp_path: Path) -> None:
    from control_plane.runtime import local_settings, open_local

    db = tmp_path / "base.db"
    needs = (
        "task runner 'io.kestra.plugin.ee.aws.runner.Batch' needs the aws extra: pip install 'squall[aws]'"
    )
    # what a crash (or an older Squall) may leave behind: an AWS Batch job never submitted
    with open_local(local_settings(db), submit_budget=0) as rt:
        record = rt.service.deploy((SAMPLES / "aws-batch.yaml").read_text(), "aws-batch.yaml")
        stuck = rt.service.start(record.namespace, record.id).id
        assert [job.phase.value for job in rt.store.active_jobs()] == ["SUBMITTING"]

    killed = squall_without_boto3(db, "executions", "kill", stuck)
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert f"Execution {stuck} KILLED" in killed.stdout
    assert f"was not cancelled: {needs}" in killed.stderr and "Traceback" not in killed.stderr

    aws = squall_without_boto3(db, "run", str(SAMPLES / "aws-batch.yaml"))
    assert aws.returncode == 1
    assert needs in aws.stdout and "FAILED" in aws.stdout
    assert "Traceback" not in aws.stdout + aws.stderr

    hello = squall_without_boto3(db, "run", str(SAMPLES / "hello.yaml"), "-q")
    assert hello.returncode == 0, hello.stdout + hello.stderr
    assert "SUCCESS" in hello.stdout

    store = SqliteStore(db)
    try:
        assert store.active_jobs() == []
        states = sorted(str(s.state) for s in store.list_executions().items)
    finally:
        store.close()
    assert states == ["FAILED", "KILLED", "SUCCESS"]


def test_the_outputs_limit_is_a_setting_of_local_runs_too(tmp_path: Path) -> None:
    flow = tmp_path / "o.yaml"
    flow.write_text(
        "id: o\nnamespace: t\ntasks:\n  - id: say\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        """    commands: ['printf ''::{"outputs":{"v":"%03000d"}}::\\n'' 0']\n"""
    )
    db = str(tmp_path / "o.db")
    assert cli.invoke(app, ["run", str(flow), "--db", db, "-q"]).exit_code == 0  # 3 KB: under 1 MiB
    small = cli.invoke(app, ["run", str(flow), "--db", db], env={"SQUALL_MAX_OUTPUTS_BYTES": "2048"})
    assert small.exit_code == 1
    said = " ".join(small.output.split())  # the console wraps long lines
    assert "over the limit of 2,048 bytes on a task's outputs (SQUALL_MAX_OUTPUTS_BYTES)" in said
    bad = cli.invoke(app, ["run", str(flow), "--db", db], env={"SQUALL_MAX_OUTPUTS_BYTES": "lots"})
    assert bad.exit_code == 1 and "SQUALL_MAX_OUTPUTS_BYTES" in bad.output


def test_squall_run_collects_as_usual_once_started(tmp_path: Path) -> None:
    # Start-up runs with a large first threshold (imports and validation make no garbage); the
    # execution itself must not: the default thresholds are back and start-up's objects frozen.
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: gc\nnamespace: test.gc\ntasks:\n"
        "  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
    )
    script = (
        "import gc, sys\n"
        "from control_plane import cli\n"
        "default = gc.get_threshold()\n"
        f"sys.argv = ['squall', 'run', {str(flow)!r}, '--db', {str(tmp_path / 'g.db')!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(gc.get_threshold() == default, gc.get_freeze_count() > 1000)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True True"


def test_a_command_run_inside_another_program_leaves_its_collector_alone(tmp_path: Path) -> None:
    # The start-up freeze is for the `squall` process alone (cli.main); run through the app
    # object, as tests and embeddings do, the host's collector keeps its thresholds and freezes.
    import gc

    before = (gc.get_threshold(), gc.get_freeze_count())
    result = cli.invoke(
        app, ["run", str(SAMPLES / "hello.yaml"), "-i", "name=Ada", "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code == 0, result.output
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_the_squall_process_ends_without_teardown_but_as_the_interpreter_would(tmp_path: Path) -> None:
    """``squall`` (here ``python -m control_plane.cli``) leaves with ``os._exit`` once the command
    is done: the same status, every line written, the ``atexit`` functions run, and what it
    committed readable by the next process. A program calling ``main()`` still gets SystemExit
    (test_squall_run_collects_as_usual_once_started)."""
    flows = {
        "ok.yaml": "  - id: a\n    type: io.kestra.plugin.core.debug.Return\n    format: done\n",
        "bad.yaml": "  - id: a\n    type: io.kestra.plugin.core.execution.Fail\n",
    }
    # sitecustomize registers an atexit function, as a library would: its line must be printed.
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, sys\natexit.register(lambda: sys.stderr.write('atexit ran\\n'))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    db = str(tmp_path / "x.db")
    for name, body in flows.items():
        (tmp_path / name).write_text(f"id: {name[:-5]}\nnamespace: test.exit\ntasks:\n{body}")
        done = subprocess.run(
            [sys.executable, "-m", "control_plane.cli", "run", str(tmp_path / name), "--db", db],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == (0 if name == "ok.yaml" else 1), done.stderr
        assert done.stdout.splitlines()[-1].startswith("Execution ")
        assert done.stderr.splitlines()[-1] == "atexit ran"
    listed = cli.invoke(app, ["executions", "list", "--db", db, "--output", "tsv"])
    assert sorted(line.split("\t")[2] for line in listed.output.splitlines()) == ["FAILED", "SUCCESS"]

"""Local runs own their executions (issue 18, point 4): leases, take-over, signals.

Each test runs ``squall`` as separate processes on one SQLite file, as a user would, and
kills them for real; nothing here fakes the liveness of a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from control_plane.engine.states import State
from control_plane.service.clock import VirtualClock
from control_plane.service.ownership import LEASE, Ownership, identity, owner_alive
from control_plane.store.base import LeaseRecord
from control_plane.store.sqlite import SqliteStore
from tests.integration.service_helpers import as_in_a_terminal, pid_alive, run_of, runtime, wait_for
from tests.integration.test_cli_local import only_execution, squall_run_in_background

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc")


def squall(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane.cli", *args, "--db", str(db)],
        env={**os.environ, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not this one: the owner of leases in the tests below."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_lease_held_by_a_live_process_is_refused_and_taken_once_it_dies(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    store = SqliteStore(tmp_path / "x.db")
    clock = VirtualClock()
    other = Ownership(store, clock)
    other.me = identity(sleeper.pid)
    assert other.claim("ex1")
    mine = Ownership(store, clock, recheck=0)
    assert not mine.owns("ex1") and not mine.claim("ex1")
    holder = mine.holder("ex1")
    assert holder is not None and holder.owner == other.me
    clock.sleep_until(clock.now() + LEASE * 10)  # liveness here is exact: time alone never frees it
    assert not mine.owns("ex1")
    sleeper.kill()
    sleeper.wait()
    assert mine.owns("ex1")  # the owner is gone: taken over
    assert store.get_lease("ex1") == LeaseRecord("ex1", mine.me, clock.now())
    mine.release("ex1")
    assert store.get_lease("ex1") is None
    store.close()


def test_an_owner_on_another_host_is_trusted_while_it_renews() -> None:
    lease = LeaseRecord("ex", "elsewhere/boot/42/123", VirtualClock().now())
    assert owner_alive(lease, lease.renewed + LEASE - timedelta(seconds=1))
    assert not owner_alive(lease, lease.renewed + LEASE)
    reused = identity(os.getpid()).rsplit("/", 1)[0] + "/1"  # this pid, another start time
    assert not owner_alive(LeaseRecord("ex", reused, lease.renewed), lease.renewed)  # not the owner
    assert owner_alive(LeaseRecord("ex", identity(), lease.renewed), lease.renewed + LEASE * 100)


def test_renewal_moves_every_lease_of_the_owner(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    clock = VirtualClock()
    ownership = Ownership(store, clock)
    ownership.claim("a")
    ownership.claim("b")
    clock.sleep_until(clock.now() + timedelta(seconds=20))
    ownership._renewed -= LEASE.total_seconds()
    ownership.renew()
    assert {store.get_lease(x).renewed for x in ("a", "b")} == {clock.now()}  # type: ignore[union-attr]
    store.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does(tmp_path: Path, sig: signal.Signals) -> None:
    with squall_run_in_background(tmp_path) as (proc, job_pid, db):
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "KILLED" in out
    wait_for(lambda: not pid_alive(job_pid), 10, "the job process to die")
    assert str(only_execution(db).state) == "KILLED"


GATED = """id: gated
namespace: t
tasks:
  - id: first
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo $$ > {pid}
      - while [ ! -f {go} ]; do sleep 0.05; done
      - echo first >> {ledger}
      - echo '::{{"outputs":{{"n":7}}}}::'
  - id: second
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo "second {{{{ outputs.first.vars.n }}}}" >> {ledger}
"""


def gated_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path, Path, Path]:
    """``squall run`` of GATED in another process, once its first task runs: (run, pid, go, ledger, db)."""
    pid, go, ledger, db = tmp_path / "pid", tmp_path / "go", tmp_path / "ledger", tmp_path / "x.db"
    flow = tmp_path / "gated.yaml"
    flow.write_text(GATED.format(pid=pid, go=go, ledger=ledger))
    run = subprocess.Popen(
        [sys.executable, "-m", "control_plane.cli", "run", str(flow), "-q", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: pid.exists() and pid.read_text().strip() != "", 30, "the first task to start")
    return run, pid, go, ledger, db


def test_a_live_run_keeps_its_execution_and_a_killed_ones_is_driven_on_without_running_twice(
    tmp_path: Path,
) -> None:
    run, pid, go, ledger, db = gated_run(tmp_path)
    try:
        job_pid = int(pid.read_text())
        execution = only_execution(db)
        store = SqliteStore(db)
        wait_for(lambda: store.active_jobs()[0].handle is not None, 30, "the run to store the job's handle")
        (job,) = store.active_jobs()

        # While its run lives, another command neither takes the execution nor touches its job.
        refused = squall("executions", "resume", execution.id, db=db)
        assert refused.returncode == 1
        assert f"driven by process {run.pid} on" in refused.stderr + refused.stdout
        assert squall("executions", "show", execution.id, db=db).returncode == 0
        assert store.get_job(job.name) == job
        lease = store.get_lease(execution.id)
        assert lease is not None and f"/{run.pid}/" in lease.owner

        run.kill()  # kill -9: no handler runs
        run.communicate()
        assert pid_alive(job_pid)  # the job outlives the process that submitted it
        go.touch()  # ... and ends while nobody watches
        wait_for(lambda: not pid_alive(job_pid), 30, "the orphaned job to end")

        resumed = squall("executions", "resume", execution.id, "-q", db=db)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "SUCCESS" in resumed.stdout
        assert ledger.read_text().splitlines() == ["first", "second 7"]  # each task ran once
        assert store.get_lease(execution.id) is None  # ended: nobody drives it
        assert store.active_jobs() == []
        store.close()
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        go.touch()


def test_any_command_moves_on_an_orphaned_execution(tmp_path: Path) -> None:
    run, _, go, ledger, db = gated_run(tmp_path)
    run.kill()
    run.communicate()
    go.touch()
    wait_for(lambda: ledger.exists(), 30, "the orphaned job to end")
    execution = only_execution(db)

    def second_done() -> bool:
        squall("executions", "list", db=db)  # each command records what ended and submits what is next
        return ledger.read_text().splitlines() == ["first", "second 7"]

    wait_for(second_done, 60, "list commands to drive the execution on")
    wait_for(lambda: str(squall("executions", "show", execution.id, db=db).stdout).count("SUCCESS") >= 3, 60)
    assert str(only_execution(db).state) == "SUCCESS"


PARENT = """id: parent
namespace: t
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: t
    flowId: child
    inputs: {n: 5}
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.call.outputs.doubled }}"
"""
CHILD = """id: child
namespace: t
inputs:
  - {id: n, type: INT}
tasks:
  - id: double
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.n * 2 }}"
outputs:
  - {id: doubled, type: STRING, value: "{{ outputs.double.value }}"}
"""


class Crash(BaseException):
    """The process dies here (a BaseException: nothing in the service catches it)."""


@pytest.mark.parametrize("crash_in", ["_start_subflow", "_finished"])
def test_a_subflow_start_or_end_lost_in_a_crash_is_done_by_the_process_that_takes_over(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], crash_in: str
) -> None:
    """Starting a child and telling a parent it ended have no outbox record: ``Recover`` redoes them."""
    with runtime(tmp_path) as dying:
        service = dying.service
        assert service.driver.ownership is not None
        service.driver.ownership.me = identity(sleeper.pid)  # its owner: a process about to die

        def crash(*args: object) -> None:
            raise Crash

        setattr(service.driver, crash_in, crash)
        service.deploy(CHILD)
        record = service.deploy(PARENT)
        with pytest.raises(Crash):
            service.run(service.start(record.namespace, record.id).id)
        (parent,) = [e for e in dying.store.list_executions().items if e.flow_id == "parent"]
    sleeper.kill()
    sleeper.wait()

    with runtime(tmp_path) as survivor:
        survivor.service.catch_up()  # what any squall command does first
        final = survivor.service.run(parent.id, deadline=time.monotonic() + 60)
        assert final.state is State.SUCCESS, final
        assert run_of(final, "after").outputs == {"value": "10"}
        children = [e for e in survivor.store.list_executions().items if e.flow_id == "child"]
        assert len(children) == 1 and children[0].state is State.SUCCESS  # started once
        assert survivor.store.list_leases() == []  # both ended: nobody drives them


def test_a_run_started_under_nohup_keeps_running_on_sighup(tmp_path: Path) -> None:
    """``nohup squall run`` ignores SIGHUP (the terminal closing); squall keeps what it inherits."""

    def nohup() -> None:
        as_in_a_terminal()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with squall_run_in_background(tmp_path, preexec=nohup) as (run, _, _):
        run.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            run.wait(timeout=1.0)  # it runs on (a stop would take well under a second here)
        run.send_signal(signal.SIGTERM)  # still stoppable as Ctrl-C stops it
        out, _ = run.communicate(timeout=60)
    assert run.returncode == 130 and "KILLED" in out, out


def test_an_execution_waiting_for_a_person_holds_no_lease(tmp_path: Path) -> None:
    """A paused run exits: the next process need not take anything over (no write per command)."""
    source = (
        "id: waits\nnamespace: t\ntasks:\n  - id: ask\n    type: io.kestra.plugin.core.flow.Pause\n"
        "  - id: done\n    type: io.kestra.plugin.core.debug.Return\n    format: ok\n"
    )
    with runtime(tmp_path) as first:
        record = first.service.deploy(source)
        paused = first.service.run(first.service.start(record.namespace, record.id).id)
        assert paused.state is State.PAUSED
        assert first.store.get_lease(paused.id) is None  # type: ignore[attr-defined]
    with runtime(tmp_path) as second:
        second.service.resume(paused.id)
        final = second.service.run(paused.id, deadline=time.monotonic() + 60)
        assert final.state is State.SUCCESS
        assert second.store.list_leases() == []  # type: ignore[attr-defined]


def test_the_servers_tick_leaves_a_live_runs_jobs_alone_and_takes_over_a_dead_ones(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """``squall server`` beside a ``squall run`` on one database: its tick is a loop like any other."""
    from datetime import timedelta

    go = tmp_path / "go"
    source = (
        "id: gated\nnamespace: t\ntasks:\n  - id: wait\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        f"    commands: ['while [ ! -f {go} ]; do sleep 0.05; done']\n"
    )
    with runtime(tmp_path) as run, runtime(tmp_path) as server:
        assert run.service.driver.ownership is not None
        run.service.driver.ownership.me = identity(sleeper.pid)  # the run: another live process
        record = run.service.deploy(source)
        execution = run.service.start(record.namespace, record.id)
        run.service.flush()
        (job,) = run.store.active_jobs()
        report = server.service.tick(reconcile_after=timedelta(0), submit_grace=timedelta(0))
        assert (report.recovered, report.polled) == (0, 0)
        assert server.store.get_job(job.name) == job
        sleeper.kill()
        sleeper.wait()
        go.touch()
        wait_for(
            lambda: server.service.tick(reconcile_after=timedelta(0), submit_grace=timedelta(0)).ended == 1,
            30,
            "the server to take the run's execution over and see its job end",
        )
        assert server.store.get_execution(execution.id).state is State.SUCCESS

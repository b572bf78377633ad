"""The process runner after its owner's death: a job outlives the squall process that submitted it.

Each case submits a job from a separate Python process (the "owner"), kills that process with
SIGKILL, and follows the job from this process with a fresh ``ProcessRunner`` on the same
``base_dir``: the job's shim (not the owner) supervises it, so nothing of its status, logs or
outputs is lost. Jobs that must not end before the kill wait for a ``go`` file in their
working directory; every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runners.base import Failure, JobHandle, JobSpec, JobState
from runners.process import ProcessRunner, path_from_file_uri
from runners.process.procs import alive, proc_stat
from runners.retry import RetryPolicy
from runners.testing import count_local_processes, read_logs, sh, wait_terminal, wait_until

ROOT = Path(__file__).resolve().parents[2]
GRACE = timedelta(seconds=0.5)
LOOP = 'i=0; while [ "$i" -lt 120 ]; do sleep 1; i=$((i+1)); done'
WAIT_FOR_GO = 'while [ ! -e "$WORKING_DIR/go" ]; do sleep 0.02; done'

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

OWNER = textwrap.dedent(
    """
    import json, os, signal, sys
    from datetime import timedelta
    from pathlib import Path
    from runners.base import JobSpec
    from runners.process import ProcessRunner, supervisor

    base, name, script, timeout, hook = sys.argv[1:6]
    if hook == "die-before-exit":
        # Crash exactly between the shim's result and the exit file: where the watcher would
        # copy the outputs and write `exit`.
        def crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        supervisor.finalize = crash
    runner = ProcessRunner(Path(base), grace=timedelta(seconds=0.5))
    spec = JobSpec(
        name=name,
        command=("sh", "-c", script),
        output_files=("*.txt",),
        timeout=timedelta(seconds=float(timeout)) if timeout else None,
    )
    handle = runner.submit(spec)
    print(json.dumps({"id": handle.id, "pid": os.getpid()}), flush=True)
    while True:  # until killed: waits on its runner as a squall process does (its job's end is
        runner.wait(60.0)  # finalized by the thread that waits)
    """
)


def make_runner(base: Path) -> ProcessRunner:
    return ProcessRunner(base, policy=RetryPolicy(attempts=2, initial_delay=0.0, jitter=0.0), grace=GRACE)


class Owner:
    """A squall-like process that submitted one job and is then killed (SIGKILL: no cleanup)."""

    def __init__(
        self, base: Path, name: str, script: str, *, timeout: float | None = None, hook: str = ""
    ) -> None:
        argv = [sys.executable, "-c", OWNER, str(base), name, script, str(timeout or ""), hook]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once submit returned
        assert line, f"the owner process failed (exit {self.proc.wait()})"
        answer = json.loads(line)
        self.id: str = answer["id"]
        self.pid: int = answer["pid"]
        self.job_dir = base / name

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait_dead()

    def wait_dead(self) -> None:
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def pid_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.job_dir / "pid").read_text())
        return doc

    def go(self) -> None:
        (self.job_dir / "work" / "go").touch()


def find(runner: ProcessRunner, owner: Owner) -> JobHandle:
    handle = runner.find(JobSpec(name=owner.job_dir.name, command=("true",)))
    assert handle is not None and handle.id == owner.id
    return handle


def parent_of(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rindex(b")") + 2 :].split()[1])


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def owners() -> Any:
    started: list[Owner] = []
    yield started
    for owner in started:  # whatever a failing test left: the owner, then its job
        if owner.proc.poll() is None:
            owner.kill()
        with_job = make_runner(owner.job_dir.parent)
        handle = with_job.find(JobSpec(name=owner.job_dir.name, command=("true",)))
        if handle is not None:
            with_job.cancel(handle)


def test_a_job_finishing_after_its_owner_was_killed_succeeds_with_its_logs_and_outputs(
    base: Path, owners: list[Owner]
) -> None:
    token = f"squall-survivor-{uuid.uuid4().hex}"
    script = (
        f"echo started  # {token}\n"
        f"{WAIT_FOR_GO}\n"
        'echo warn >&2; echo csv > report.txt; echo o > "$OUTPUT_DIR/o.json"\n'
        'printf \'::{"outputs":{"answer":42}}::\''  # the last line, without a newline
    )
    owner = Owner(base, "survivor", script)
    owners.append(owner)
    doc = owner.pid_doc()
    assert doc["shim"] is True and doc["owner_pid"] != owner.pid
    assert parent_of(doc["pid"]) == doc["owner_pid"]  # the job is the shim's child, not the owner's
    server = parent_of(doc["owner_pid"])  # the shim is forked by the owner's fork server
    assert server != owner.pid and parent_of(server) == owner.pid
    wait_until(lambda: (owner.job_dir / "log.jsonl").stat().st_size > 0, 10.0, "no first line")
    owner.kill()
    # The job survived its owner. Counted by its pid, not by its command line: the shell's wait
    # loop forks before it execs `sleep`, and for that instant the child carries the same line.
    assert alive(doc["pid"], None, None) and count_local_processes(token) >= 1
    assert parent_of(doc["pid"]) == doc["owner_pid"]
    # The fork server saw end of file on its socket and exited; the shim, its child, carries on.
    wait_until(lambda: not alive(server, None, None), 10.0, "the fork server outlived its owner")

    fresh = make_runner(base)
    handle = find(fresh, owner)
    status = fresh.poll([handle])["survivor"]
    assert status.state is JobState.RUNNING, status  # the shim lives: RUNNING for every poller
    assert [r.text for r in fresh.logs(handle, None).lines] == ["started"]
    owner.go()
    status = wait_terminal(fresh, handle, 30.0)
    assert (status.state, status.failure, status.exit_code) == (JobState.SUCCEEDED, None, 0), status
    records = read_logs(fresh, handle)
    assert [(r.stream, r.text) for r in records] == [
        ("stdout", "started"),
        ("stderr", "warn"),
        ("stdout", '::{"outputs":{"answer":42}}::'),
    ]
    assert set(status.output_files) == {"report.txt", "o.json"}
    assert path_from_file_uri(status.output_files["report.txt"]).read_text() == "csv\n"
    assert path_from_file_uri(status.output_files["o.json"]).read_text() == "o\n"
    assert fresh.poll([handle])["survivor"] == status  # recorded once, stable
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the job's processes are still there")


def test_a_job_that_ended_before_its_dead_owner_recorded_it_reports_its_real_status(
    base: Path, owners: list[Owner]
) -> None:
    owner = Owner(
        base, "ended", f"{WAIT_FOR_GO}; echo fine; echo kept > kept.txt; exit 0", hook="die-before-exit"
    )
    owners.append(owner)
    owner.go()
    owner.wait_dead()  # it killed itself where it would have written `exit`
    assert owner.proc.returncode == -signal.SIGKILL
    assert (owner.job_dir / "result").exists() and not (owner.job_dir / "exit").exists()

    fresh = make_runner(base)
    handle = find(fresh, owner)
    status = fresh.poll([handle])["ended"]
    assert (status.state, status.failure, status.exit_code) == (JobState.SUCCEEDED, None, 0), status
    assert path_from_file_uri(status.output_files["kept.txt"]).read_text() == "kept\n"
    assert [r.text for r in read_logs(fresh, handle)] == ["fine"]
    assert (owner.job_dir / "exit").exists()


def test_a_failed_exit_code_survives_the_owner(base: Path, owners: list[Owner]) -> None:
    owner = Owner(base, "failing", f"{WAIT_FOR_GO}; echo bad >&2; exit 3")
    owners.append(owner)
    owner.kill()
    fresh = make_runner(base)
    handle = find(fresh, owner)
    assert fresh.poll([handle])["failing"].state is JobState.RUNNING
    owner.go()
    status = wait_terminal(fresh, handle, 30.0)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.USER, 3), status
    assert status.reason == "exit code 3"
    assert [(r.stream, r.text) for r in read_logs(fresh, handle)] == [("stderr", "bad")]


def test_the_timeout_is_enforced_after_the_owner_died(base: Path, owners: list[Owner]) -> None:
    token = f"squall-late-{uuid.uuid4().hex}"
    owner = Owner(base, "late", f"trap '' TERM; {LOOP} # {token}", timeout=3.0)
    owners.append(owner)
    owner.kill()
    fresh = make_runner(base)
    handle = find(fresh, owner)
    assert fresh.poll([handle])["late"].state is JobState.RUNNING  # the timeout has not fired yet
    status = wait_terminal(fresh, handle, 30.0)
    assert (status.state, status.failure) == (JobState.FAILED, Failure.TIMEOUT), status
    assert status.reason == "timed out after 3s"
    assert status.exit_code == 128 + signal.SIGKILL  # TERM ignored: KILL after the grace period
    assert count_local_processes(token) == 0


def test_cancel_from_a_new_process_after_the_owner_died(base: Path, owners: list[Owner]) -> None:
    token = f"squall-cancelled-{uuid.uuid4().hex}"
    owner = Owner(base, "stopped", f"sh -c '{LOOP} # {token}' & {LOOP} # {token}")
    owners.append(owner)
    owner.kill()  # (its command line held the token too)
    wait_until(lambda: count_local_processes(token) == 2, 10.0, "the job and its grandchild never ran")
    fresh = make_runner(base)
    handle = find(fresh, owner)
    fresh.cancel(handle)
    assert count_local_processes(token) == 0  # the whole group, grandchild included
    status = fresh.poll([handle])["stopped"]
    assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED), status
    assert json.loads((owner.job_dir / "result").read_text())["cancelled"] is True  # the shim says so too


def test_a_killed_shim_makes_the_job_lost_and_stopped(base: Path, owners: list[Owner]) -> None:
    token = f"squall-shimless-{uuid.uuid4().hex}"
    owner = Owner(base, "shimless", f"{LOOP} # {token}")
    owners.append(owner)
    owner.kill()
    doc = owner.pid_doc()
    os.kill(doc["owner_pid"], signal.SIGKILL)
    wait_until(
        lambda: not alive(doc["owner_pid"], doc["owner_start"], doc["boot"]),
        10.0,
        "the shim survived SIGKILL",
    )
    fresh = make_runner(base)
    handle = find(fresh, owner)
    status = fresh.poll([handle])["shimless"]
    assert (status.state, status.failure) == (JobState.LOST, Failure.LOST), status
    assert status.reason is not None and "orphaned process was stopped" in status.reason
    assert count_local_processes(token) == 0  # it must not run beside the retry
    assert fresh.poll([handle])["shimless"] == status  # recorded, stable
    assert fresh.logs(handle, None).complete


def test_a_shim_killed_under_a_live_owner_makes_the_job_lost(base: Path) -> None:
    token = f"squall-watched-{uuid.uuid4().hex}"
    runner = make_runner(base)
    handle = runner.submit(JobSpec(name="watched", command=sh(f"{LOOP} # {token}")))
    shim = json.loads((base / "watched" / "pid").read_text())["owner_pid"]
    os.kill(shim, signal.SIGKILL)
    status = wait_terminal(runner, handle, 30.0)  # the watcher sees the shim die without a result
    assert (status.state, status.failure) == (JobState.LOST, Failure.LOST), status
    assert count_local_processes(token) == 0
    assert proc_stat(shim) is None  # reaped by its parent (this process): not even a zombie


def test_env_values_never_stay_in_a_file(base: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    runner = make_runner(base)
    script = f'{WAIT_FOR_GO}; echo "${{TOKEN%%-*}} ${{#TOKEN}}"'  # proof it got the value, without it
    handle = runner.submit(JobSpec(name="secretive", command=sh(script), env={"TOKEN": secret}))
    leaked = [p for p in base.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    (base / "secretive" / "work" / "go").touch()
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == [f"s3cr3t {len(secret)}"]
    leaked = [p for p in base.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []

"""Readied starts (``ProcessRunner.prepare``): nothing runs before the submit says go.

The control plane readies a job's start before the store write that records it, so the
shim's preparation overlaps that write; the job itself may start only on the submit. Every
job here is a real ``sh`` whose command line carries a unique token, and each one appends a
line to a ledger file: "it never ran" is an empty ledger and no process in /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from runners.base import JobHandle, JobSpec, JobState, Preparable
from runners.process import ProcessRunner
from runners.testing import count_local_processes, read_logs, sh, wait_terminal, wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def ledger_job(name: str, ledger: Path, word: str) -> JobSpec:
    token = f"squall-prepare-{uuid.uuid4().hex}"
    return JobSpec(name=name, command=sh(f"echo {word} >> {ledger}; echo {word} # {token}"))


def shims_of(base: Path) -> int:
    """Processes whose working directory is under ``base`` (a ready shim sits in its job's)."""
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(base)):
            found += 1
    return found


def runner_process(script: str, spec: JobSpec) -> subprocess.Popen[str]:
    """Another squall process: ``script`` run with the spec's command as its arguments."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *spec.command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def assert_ran(runner: ProcessRunner, handle: JobHandle, ledger: Path, word: str) -> None:
    """The job succeeded, and it is the only one that ran: the ledger holds its word alone."""
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert ledger.read_text() == f"{word}\n"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


def test_the_process_runner_declares_that_it_can_ready_a_start(base: Path) -> None:
    assert isinstance(ProcessRunner(base), Preparable)


def test_a_readied_start_runs_the_job_once_on_its_submit(base: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    runner = ProcessRunner(base)
    spec = ledger_job("ready-then-go", ledger, "ran")
    runner.prepare(spec)
    wait_until(lambda: shims_of(base) == 1, 10.0, "no shim waits for the go")
    assert not ledger.exists(), "the job ran before its submit"
    assert runner.find(spec) is None, "a readied job is not a started one"  # and find() does not wait on it
    handle = runner.submit(spec)
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == ["ran"]
    assert ledger.read_text() == "ran\n"
    assert runner.submit(spec).id == handle.id  # idempotent on the name, as ever


def test_a_start_called_off_runs_nothing_and_a_later_submit_starts_the_job(
    base: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    runner = ProcessRunner(base)
    spec = ledger_job("called-off", ledger, "first")
    runner.prepare(spec)
    runner.unprepare()
    assert shims_of(base) == 0, "the shim of a start called off is gone when unprepare returns"
    assert not ledger.exists()
    assert runner.find(spec) is None
    handle = runner.submit(ledger_job("called-off", ledger, "second"))
    assert_ran(runner, handle, ledger, "second")


def test_a_submit_of_another_spec_under_the_name_calls_the_readied_start_off(
    base: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    runner = ProcessRunner(base)
    runner.prepare(ledger_job("changed", ledger, "readied"))
    handle = runner.submit(ledger_job("changed", ledger, "submitted"))
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == ["submitted"]
    wait_until(lambda: shims_of(base) == 0, 10.0, "the readied shim outlived its start")
    assert ledger.read_text() == "submitted\n"


def test_the_claim_keeps_another_submitter_out_until_the_readied_start_goes(
    base: Path, tmp_path: Path
) -> None:
    # Another runner (another process, in the control plane) submitting the same name while a
    # start is readied waits for the claim, then finds the started job: one job, not two.
    ledger = tmp_path / "ledger"
    first, second = ProcessRunner(base), ProcessRunner(base)
    spec = ledger_job("contended", ledger, "once")
    first.prepare(spec)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from runners.base import JobSpec
        from runners.process import ProcessRunner
        runner = ProcessRunner(Path({str(base)!r}))
        handle = runner.submit(JobSpec(name="contended", command=tuple(sys.argv[1:])))
        print(handle.id, flush=True)
        """
    )
    other = runner_process(script, spec)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            other.wait(timeout=0.5)  # blocked on the claim: the readied start holds it
        handle = first.submit(spec)
        out, _ = other.communicate(timeout=30.0)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert out.strip() == handle.id
    assert_ran(second, handle, ledger, "once")


def test_a_readied_start_dies_with_the_process_that_readied_it(base: Path, tmp_path: Path) -> None:
    # kill -9 of the squall process between prepare and submit (its store write may be lost):
    # the shim reads end of file where the go byte would be and exits; nothing ran, and a
    # fresh runner (the process that recovers) starts the job under the same name.
    ledger = tmp_path / "ledger"
    spec = ledger_job("orphaned-ready", ledger, "after")
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from runners.base import JobSpec
        from runners.process import ProcessRunner
        runner = ProcessRunner(Path({str(base)!r}))
        runner.prepare(JobSpec(name="orphaned-ready", command=tuple(sys.argv[1:])))
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    owner = runner_process(script, spec)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        wait_until(lambda: shims_of(base) == 1, 10.0, "no shim waits for the go")
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    wait_until(lambda: shims_of(base) == 0, 10.0, "the readied shim outlived its owner")
    assert not ledger.exists()
    token = spec.command[-1].rsplit("# ", 1)[1]
    assert count_local_processes(token) == 0
    runner = ProcessRunner(base)
    assert runner.find(spec) is None
    handle = runner.submit(spec)
    assert_ran(runner, handle, ledger, "after")


def test_go_calls_meanwhile_while_the_job_starts_and_raises_its_error_once_the_job_is_watched(
    base: Path, tmp_path: Path
) -> None:
    # The control plane syncs its write in ``meanwhile``: the job may already run then (the go
    # byte was written), and a failing sync must not leave the started job unwatched.
    ledger = tmp_path / "ledger"
    runner = ProcessRunner(base)
    spec = ledger_job("meanwhile", ledger, "went")
    runner.prepare(spec)
    calls: list[str] = []

    def meanwhile() -> None:
        wait_until(ledger.exists, 10.0, "the job did not start before the answer was awaited")
        calls.append("synced")
        raise RuntimeError("the sync failed")

    with pytest.raises(RuntimeError, match="the sync failed"):
        runner.go(spec, meanwhile)
    assert calls == ["synced"]
    handle = runner.find(spec)
    assert handle is not None
    assert_ran(runner, handle, ledger, "went")
    # a start that was not readied: meanwhile first, then a plain submit
    order: list[str] = []
    other = ledger_job("not-readied", tmp_path / "other", "plain")
    started = runner.go(other, lambda: order.append("meanwhile"))
    assert order == ["meanwhile"]
    assert wait_terminal(runner, started, 30.0).state is JobState.SUCCEEDED

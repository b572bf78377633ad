"""The process runner: the whole runner contract, then what only a local subprocess can show.

Every job is a real ``sh`` process; "really gone" is checked in /proc, through a unique token
in each job's command line. Retry tests inject a ``spawn`` that fails with EAGAIN and a
no-op ``sleep``, so nothing waits for a backoff.
"""

from __future__ import annotations

import errno
import functools
import importlib
import json
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runners.base import (
    Evented,
    Failure,
    JobHandle,
    JobSpec,
    JobState,
    Runner,
    RunnerError,
    RunnerOptionsError,
    Waitable,
    runner_classes,
    validate_options,
)
from runners.process import (
    MAX_LINE_BYTES,
    ProcessOptions,
    ProcessRunner,
    default_base_dir,
    path_from_file_uri,
)
from runners.process.procs import alive
from runners.retry import RetryPolicy
from runners.testing import (
    CallCounter,
    RunnerContract,
    count_local_processes,
    iter_logs,
    read_logs,
    sh,
    wait_state,
    wait_terminal,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
FAST_POLICY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
GRACE = timedelta(seconds=0.5)
LOOP = 'i=0; while [ "$i" -lt 120 ]; do sleep 1; i=$((i+1)); done'

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def no_sleep(_seconds: float) -> None:
    """The retry loop's sleep: tests never wait for a backoff."""


def make_runner(base_dir: Path, **kwargs: Any) -> ProcessRunner:
    kwargs.setdefault("policy", FAST_POLICY)
    kwargs.setdefault("sleep", no_sleep)
    kwargs.setdefault("grace", GRACE)
    return ProcessRunner(base_dir, **kwargs)


def flaky_spawn(failures: int, counter: CallCounter) -> Callable[..., subprocess.Popen[bytes]]:
    """``subprocess.Popen`` that fails like fork(2) under pressure (EAGAIN) ``failures`` times."""

    def spawn(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        if counter.hit() <= failures:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return subprocess.Popen(*args, **kwargs)

    return spawn


class TestProcessRunnerContract(RunnerContract):
    deadline_s = 30.0

    @pytest.fixture
    def base_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "jobs"

    @pytest.fixture
    def runner(self, base_dir: Path) -> Runner:
        return make_runner(base_dir)

    @pytest.fixture
    def second_runner(self, base_dir: Path) -> Runner:
        return make_runner(base_dir)

    @pytest.fixture
    def faulty_runner(self, base_dir: Path) -> Callable[[int], tuple[Runner, CallCounter]]:
        def make(failures: int) -> tuple[Runner, CallCounter]:
            counter = CallCounter()
            return make_runner(base_dir, spawn=flaky_spawn(failures, counter)), counter

        return make

    @pytest.fixture
    def output_prefix(self, tmp_path: Path) -> str:
        return (tmp_path / "store").as_uri() + "/"

    @pytest.fixture
    def read_uri(self) -> Callable[[str], bytes]:
        return lambda uri: path_from_file_uri(uri).read_bytes()

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, base_dir: Path) -> Callable[[], Runner]:
        return functools.partial(ProcessRunner, base_dir, grace=GRACE)  # picklable: runs in other processes

    @pytest.fixture
    def failure_cases(self, base_dir: Path) -> dict[Failure, Callable[..., JobHandle]]:
        def config(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            spec = make_spec("unused")
            return submit(runner, msgspec.structs.replace(spec, command=("squall-no-such-command", "x")))

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            handle = submit(runner, make_spec("echo x"))
            wait_terminal(runner, handle, 30.0)
            shutil.rmtree(base_dir / handle.name)  # evidence: the job's directory is gone
            return handle

        return {Failure.CONFIG: config, Failure.LOST: lost}

    @pytest.fixture
    def unwritable_output_prefix(self, tmp_path: Path) -> str:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the prefix needs a directory")
        return (blocker / "outputs").as_uri() + "/"


# ------------------------------------------------------------------ process-specific cases


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def runner(base: Path) -> Iterator[ProcessRunner]:
    runner = make_runner(base)
    yield runner
    # Whatever a failing test left running is stopped (cancel of a finished job is a no-op).
    if base.is_dir():
        for job_dir in base.iterdir():
            if job_dir.name.startswith("."):  # a disposed directory being deleted: no job
                continue
            found = runner.find(JobSpec(name=job_dir.name, command=("true",)))
            if found is not None:
                runner.cancel(found)


def run(runner: ProcessRunner, script: str, **fields: Any) -> tuple[JobHandle, Any]:
    fields.setdefault("name", f"job-{uuid.uuid4().hex[:10]}")
    handle = runner.submit(JobSpec(command=sh(script), **fields))
    return handle, wait_terminal(runner, handle, 30.0)


def test_entry_point_is_discoverable_and_implements_the_protocols(runner: ProcessRunner) -> None:
    assert runner_classes()["process"] is ProcessRunner
    assert isinstance(runner, Runner) and isinstance(runner, Waitable)
    assert not isinstance(runner, Evented) and runner.option_defaults == {}
    assert Failure.CONFIG in ProcessRunner.failures


def test_default_base_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_base_dir() in {tmp_path / "xdg" / "squall" / "jobs", _platformdirs_default()}
    assert ProcessRunner(grace=GRACE).base_dir.is_dir()


def _platformdirs_default() -> Path:
    try:
        platformdirs = importlib.import_module("platformdirs")
    except ImportError:
        return Path("/nonexistent")
    return Path(platformdirs.user_data_dir("squall")) / "jobs"


def test_options_are_validated_with_field_names() -> None:
    options = validate_options(ProcessRunner, {"gracePeriod": "PT2S"})
    assert isinstance(options, ProcessOptions) and options.grace_period == timedelta(seconds=2)
    with pytest.raises(RunnerOptionsError) as unknown:
        validate_options(ProcessRunner, {"containerImage": "ubuntu"})
    assert "taskRunner.containerImage" in str(unknown.value)
    with pytest.raises(RunnerOptionsError) as bad:
        validate_options(ProcessRunner, {"gracePeriod": "soon"})
    assert "taskRunner.gracePeriod" in str(bad.value)


def test_submit_rejects_bad_options_and_specs_before_touching_disk(runner: ProcessRunner, base: Path) -> None:
    bad: list[JobSpec] = [
        JobSpec(name="opts", command=("true",), options={"nope": 1}),
        JobSpec(name="escape", command=("true",), input_files={"../evil": b"x"}),
        JobSpec(name="absolute", command=("true",), input_files={"/etc/evil": b"x"}),
        JobSpec(name="glob", command=("true",), output_files=("../*.txt",)),
        JobSpec(name="s3", command=("true",), output_prefix="s3://bucket/prefix/"),
        JobSpec(name="empty", command=()),
        JobSpec(name="a/b", command=("true",)),
    ]
    for spec in bad:
        with pytest.raises(RunnerError):
            runner.submit(spec)
    assert sorted(p.name for p in base.iterdir()) == []


def test_non_utf8_bytes_and_crlf_are_decoded_safely(runner: ProcessRunner) -> None:
    handle, status = run(runner, r"printf 'caf\351 ok\r\n'; printf 'plain\r\n' >&2")
    assert status.state is JobState.SUCCEEDED, status
    records = read_logs(runner, handle)
    assert [(r.stream, r.text) for r in records] == [("stdout", "caf\ufffd ok"), ("stderr", "plain")]


def test_command_not_found_is_a_config_failure(runner: ProcessRunner) -> None:
    handle = runner.submit(JobSpec(name="missing", command=("squall-no-such-command-xyz", "arg")))
    status = wait_terminal(runner, handle, 10.0)
    assert status.state is JobState.FAILED
    assert status.failure is Failure.CONFIG
    assert status.exit_code == 127
    assert status.reason == "command not found: squall-no-such-command-xyz"
    assert read_logs(runner, handle) == []


def test_command_not_executable_is_a_config_failure(runner: ProcessRunner) -> None:
    spec = JobSpec(name="noexec", command=("./tool.sh",), input_files={"tool.sh": b"#!/bin/sh\necho hi\n"})
    status = wait_terminal(runner, runner.submit(spec), 10.0)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.CONFIG, 126)
    assert status.reason is not None and "./tool.sh" in status.reason


def test_lines_longer_than_1_mib_are_split_at_utf8_boundaries(runner: ProcessRunner) -> None:
    # 'a' then 2-byte characters: the 1 MiB cut falls inside a character and must back off.
    line = "a" + "é" * 600_000
    handle, status = run(
        runner,
        "head -c 2500000 /dev/zero | tr '\\0' y; echo; cat wide.txt; echo after",
        input_files={"wide.txt": (line + "\n").encode()},
    )
    assert status.state is JobState.SUCCEEDED, status
    records = read_logs(runner, handle)
    texts = [r.text for r in records]
    assert [len(t) for t in texts[:3]] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 2_500_000 - 2 * MAX_LINE_BYTES]
    assert set("".join(texts[:3])) == {"y"}
    wide = texts[3:-1]
    assert len(wide) == 2 and all(len(t.encode()) <= MAX_LINE_BYTES for t in wide)
    assert "".join(wide) == line  # no character was cut in half (no U+FFFD)
    assert texts[-1] == "after"
    # every piece but the last of a line says the next record continues it
    assert [r.partial for r in records] == [True, True, False, True, False, False]


def test_a_long_line_cut_mid_stream_is_rejoined_per_stream(runner: ProcessRunner) -> None:
    # stdout's long line is cut while it is still being written (no newline yet) and stderr
    # writes in between: the pieces are flagged, and joining them per stream gives the line back.
    handle, status = run(
        runner,
        "head -c 1500000 /dev/zero | tr '\\0' z; echo between >&2; printf 'end\\n'; printf 'last'",
    )
    assert status.state is JobState.SUCCEEDED, status
    records = read_logs(runner, handle)
    joined: dict[str, list[str]] = {}
    lines: list[tuple[str, str]] = []
    for r in records:
        joined.setdefault(r.stream, []).append(r.text)
        if not r.partial:
            lines.append((r.stream, "".join(joined.pop(r.stream))))
    assert lines[0] == ("stderr", "between") or lines[1] == ("stderr", "between")
    assert [text for stream, text in lines if stream == "stdout"] == ["z" * 1_500_000 + "end", "last"]
    assert not joined  # nothing left open


def test_100_mb_of_stdout_streams_in_bounded_chunks(runner: ProcessRunner, base: Path) -> None:
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    script = "head -c 100000000 /dev/zero | tr '\\0' x | fold -w 1000"
    handle, status = run(runner, script, name="big")
    assert status.state is JobState.SUCCEEDED, status
    lines = chunks = 0
    for chunk in iter_logs(runner, handle, 60.0):  # one chunk in memory at a time
        chunks += 1
        lines += len(chunk)
        assert chunk[0].text == "x" * 1000 and chunk[-1].text == "x" * 1000
    assert lines == 100_000
    assert chunks >= 5
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kib) / 1024
    assert growth_mib < 80, f"peak memory grew by {growth_mib:.0f} MiB while streaming 100 MB"
    shutil.rmtree(base / "big")  # 100 MB of log: don't keep it in pytest's tmp dirs


def test_leftover_background_processes_are_stopped_when_the_main_one_exits(runner: ProcessRunner) -> None:
    token = f"squall-leftover-{uuid.uuid4().hex}"
    started = time.monotonic()
    handle, status = run(runner, f"sh -c '{LOOP} # {token}' & echo main-done")
    assert status.state is JobState.SUCCEEDED, status
    assert time.monotonic() - started < 10
    assert [r.text for r in read_logs(runner, handle)] == ["main-done"]
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the background process survived its job")


def test_grace_period_option_escalates_to_sigkill(runner: ProcessRunner) -> None:
    token = f"squall-stubborn-{uuid.uuid4().hex}"
    spec = JobSpec(
        name="stubborn",
        command=sh(f"trap '' TERM; echo ready; {LOOP} # {token}"),
        options={"gracePeriod": "PT0.3S"},
    )
    handle = runner.submit(spec)
    wait_until(lambda: any(r.text == "ready" for r in runner.logs(handle, None).lines), 10.0, "no 'ready'")
    began = time.monotonic()
    runner.cancel(handle)
    took = time.monotonic() - began
    assert 0.3 <= took < 5, took  # TERM was ignored: KILL came after the grace period
    status = runner.poll([handle])["stubborn"]
    assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED)
    assert count_local_processes(token) == 0


def test_timeout_reason_and_kill_of_a_term_ignoring_job(runner: ProcessRunner) -> None:
    token = f"squall-deaf-{uuid.uuid4().hex}"
    _, status = run(runner, f"trap '' TERM; {LOOP} # {token}", timeout=timedelta(seconds=1))
    assert (status.state, status.failure) == (JobState.FAILED, Failure.TIMEOUT)
    assert status.reason == "timed out after 1s"
    assert status.exit_code == 128 + signal.SIGKILL
    assert count_local_processes(token) == 0


def test_terminal_status_has_times_resources_and_default_output_location(
    runner: ProcessRunner, base: Path
) -> None:
    _, status = run(runner, 'echo data > "$OUTPUT_DIR/report.csv"; exit 3', name="timed")
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.USER, 3)
    assert status.started is not None and status.ended is not None and status.ended >= status.started
    assert status.resources is not None
    assert status.resources.vcpu_seconds == pytest.approx((status.ended - status.started).total_seconds())
    assert status.output_files == {"report.csv": (base / "timed" / "outputs" / "report.csv").as_uri()}
    assert path_from_file_uri(status.output_files["report.csv"]).read_text() == "data\n"


def test_cleanup_removes_work_but_keeps_logs_and_outputs(runner: ProcessRunner, base: Path) -> None:
    handle, _ = run(runner, 'echo kept; echo x > "$OUTPUT_DIR/o.txt"; echo y > scratch', name="tidy")
    runner.cleanup(handle)
    # deleted in the background: off the path from one task to the next
    wait_until(lambda: not (base / "tidy" / "work").exists(), 10.0, "the work directory stays")
    assert (base / "tidy" / "outputs" / "o.txt").read_text() == "x\n"
    assert [r.text for r in read_logs(runner, handle)] == ["kept"]


def test_cleanup_of_a_running_job_is_refused(runner: ProcessRunner) -> None:
    handle = runner.submit(JobSpec(name="busy", command=sh(LOOP)))
    with pytest.raises(RunnerError, match="cancel it"):
        runner.cleanup(handle)
    runner.cancel(handle)


def test_bad_log_cursor(runner: ProcessRunner) -> None:
    handle, _ = run(runner, "echo x")
    with pytest.raises(RunnerError, match="cursor"):
        runner.logs(handle, "not-a-number")


def test_handle_whose_directory_vanished_is_lost(runner: ProcessRunner, base: Path) -> None:
    handle, _ = run(runner, "echo x", name="gone")
    shutil.rmtree(base / "gone")
    status = runner.poll([handle])["gone"]
    assert (status.state, status.failure) == (JobState.LOST, Failure.LOST)


def test_dead_process_without_exit_file_is_lost(runner: ProcessRunner, base: Path) -> None:
    # A job whose process died while nobody recorded its exit (the shim's result and the
    # exit file are removed after the fact, as if the shim had died before writing them).
    handle, status = run(runner, "echo x", name="vanished")
    assert status.state is JobState.SUCCEEDED
    # The end is recorded as soon as the shim wrote `result`; the shim exits right after.
    shim = json.loads((base / "vanished" / "pid").read_text())
    wait_until(lambda: not alive(shim["owner_pid"], shim["owner_start"], None), 10.0, "the shim lives on")
    (base / "vanished" / "exit").unlink()
    (base / "vanished" / "result").unlink()
    fresh = make_runner(base)
    status = fresh.poll([handle])["vanished"]
    assert (status.state, status.failure) == (JobState.LOST, Failure.LOST), status
    assert status.reason is not None and "vanished" in status.reason
    assert fresh.logs(handle, None).complete


def test_jobs_outlive_their_runner_process_when_it_exits_normally(base: Path) -> None:
    # No atexit kill any more: the job runs on under its shim, and any process can follow it
    # (the owner-crash cases are in test_process_reattach.py).
    token = f"squall-atexit-{uuid.uuid4().hex}"
    exiting_owner = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from runners.base import JobSpec
        from runners.process import ProcessRunner
        ProcessRunner(Path(sys.argv[1])).submit(JobSpec(name="left", command=("sh", "-c", sys.argv[2])))
        raise SystemExit(0)  # e.g. an unhandled Ctrl-C in a CLI: the interpreter exits
        """
    )
    script = f'while [ ! -e "$WORKING_DIR/go" ]; do sleep 0.05; done; echo done # {token}'
    argv = [sys.executable, "-c", exiting_owner, str(base), script]
    subprocess.run(argv, check=True, cwd=ROOT, timeout=60)
    assert count_local_processes(token) == 1  # the job outlived its runner process
    fresh = make_runner(base)
    handle = fresh.find(JobSpec(name="left", command=("true",)))
    assert handle is not None
    assert fresh.poll([handle])["left"].state is JobState.RUNNING
    (base / "left" / "work" / "go").touch()
    status = wait_terminal(fresh, handle, 30.0)
    assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0), status
    assert [r.text for r in read_logs(fresh, handle)] == ["done"]
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the job's processes are still there")


def test_failed_spawns_leave_a_directory_the_next_submit_takes_over(base: Path) -> None:
    counter = CallCounter()
    flaky = make_runner(base, spawn=flaky_spawn(10, counter))
    spec = JobSpec(name="retry-later", command=sh("echo finally"))
    with pytest.raises(RunnerError, match="still failing after 4"):
        flaky.submit(spec)
    assert counter.calls == FAST_POLICY.attempts
    healthy = make_runner(base)
    assert healthy.find(spec) is None  # never started: the control plane will submit it
    assert healthy.poll([JobHandle("retry-later", "process", "")])["retry-later"].state is JobState.LOST
    handle = healthy.submit(spec)
    assert wait_terminal(healthy, handle, 10.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(healthy, handle)] == ["finally"]


def test_a_supervision_that_fails_to_start_surfaces_its_real_error(base: Path) -> None:
    # The spawn seam starts something that exits without ever answering like a shim: the
    # failure is reported as such (its cleanup once raised a KeyError that hid it), and the
    # directory is left unstarted for the next submit.
    def not_a_shim(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sh", "-c", "cat >/dev/null; echo 'X the shim broke' ; exit 2"], **kwargs)

    broken = make_runner(base, spawn=not_a_shim)
    spec = JobSpec(name="unsupervised", command=sh("echo fine"))
    with pytest.raises(RunnerError, match="the job's supervisor failed: the shim broke"):
        broken.submit(spec)
    healthy = make_runner(base)
    assert healthy.find(spec) is None
    handle = healthy.submit(spec)
    assert wait_terminal(healthy, handle, 10.0).state is JobState.SUCCEEDED


def test_a_shim_that_dies_before_answering_is_a_runner_error(base: Path) -> None:
    def silent(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["true"], **kwargs)

    with pytest.raises(RunnerError, match="exited before starting the job"):
        make_runner(base, spawn=silent).submit(JobSpec(name="silent", command=sh("echo x")))


def test_an_interrupted_submit_leaves_no_job_running(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C at the worst moment: the job runs (its shim answered) but submit has not
    # returned. The job is stopped and the directory left unstarted, for the next submit.
    from runners.process import launch

    token = f"squall-interrupted-{uuid.uuid4().hex}"
    real = launch._handshake

    def interrupted(shim: subprocess.Popen[bytes], config: bytes) -> str:
        answer = real(shim, config)
        assert answer.startswith("S ")
        wait_until(lambda: count_local_processes(token) == 1, 10.0, "the job never ran")
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "_handshake", interrupted)
    runner = make_runner(base)
    spec = JobSpec(name="interrupted", command=sh(f"{LOOP} # {token}"))
    with pytest.raises(KeyboardInterrupt):
        runner.submit(spec)
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the job outlived the interrupted submit")
    assert runner.find(spec) is None
    monkeypatch.undo()
    handle = runner.submit(JobSpec(name="interrupted", command=sh("echo again")))
    assert wait_terminal(runner, handle, 10.0).state is JobState.SUCCEEDED


def test_wait_does_not_miss_a_change_that_happened_before_it(runner: ProcessRunner) -> None:
    handle = runner.submit(JobSpec(name="quick", command=sh("true")))
    wait_until(lambda: runner.poll([handle])["quick"].terminal, 10.0, "job never ended")
    began = time.monotonic()
    assert runner.wait(10.0) is True
    assert time.monotonic() - began < 1.0


def test_a_thread_already_waiting_follows_a_job_another_thread_submits(
    runner: ProcessRunner, base: Path
) -> None:
    # The waiting thread polls the shims it knew of when it started waiting; a submit from
    # another thread wakes it to poll the new one too, and the job's end (finalized by that
    # waiting thread) is what makes it return: not its timeout, not the start.
    waited: list[tuple[bool, float]] = []
    ready = threading.Event()

    def waiter() -> None:
        ready.set()
        began = time.monotonic()
        waited.append((runner.wait(30.0), time.monotonic() - began))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert ready.wait(10.0)
    script = 'while [ ! -e "$WORKING_DIR/go" ]; do sleep 0.02; done; echo done'
    handle = runner.submit(JobSpec(name="followed", command=sh(script)))
    thread.join(0.3)
    assert thread.is_alive() and not waited, waited  # the start is not a change
    (base / "followed" / "work" / "go").touch()
    thread.join(20.0)
    assert waited and waited[0][0] is True and waited[0][1] < 20.0, waited
    assert (base / "followed" / "exit").exists()  # finalized by the waiting thread before it returned
    assert runner.poll([handle])["followed"].state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == ["done"]


def test_poll_and_logs_from_several_threads(runner: ProcessRunner) -> None:
    script = 'i=0; while [ "$i" -lt 20000 ]; do echo "$i"; i=$((i+1)); done'
    handle = runner.submit(JobSpec(name="shared", command=sh(script)))
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            results.append([r.text for chunk in iter_logs(runner, handle, 30.0) for r in chunk])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_terminal(runner, handle, 30.0)
    for thread in threads:
        thread.join(timeout=30.0)
    assert not errors, errors
    expected = [str(i) for i in range(20000)]
    assert results == [expected] * 3


def test_cancel_through_another_instance_in_this_process(runner: ProcessRunner, base: Path) -> None:
    token = f"squall-other-{uuid.uuid4().hex}"
    handle = runner.submit(JobSpec(name="other", command=sh(f"{LOOP} # {token}")))
    wait_state(runner, handle, {JobState.RUNNING}, 10.0)
    other = make_runner(base)
    other.cancel(handle)
    status = other.poll([handle])["other"]
    assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED), status
    assert count_local_processes(token) == 0


def test_cancel_of_a_job_removed_while_cancelling_is_a_no_op(
    runner: ProcessRunner, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``squall executions kill`` in another process stops the job and removes its directory;
    the running ``squall run`` then cancels it too. The directory can go between its check and
    its write: that is the job already stopped, not a FileNotFoundError (it was, in CI)."""
    import os

    handle, _ = run(runner, "echo x", name="vanished")
    runner.cleanup(handle)
    runner.dispose(handle)
    assert not (base / "vanished").exists()
    real_isdir, calls = os.path.isdir, [0]

    def isdir_then_gone(path: Any) -> bool:
        calls[0] += 1
        return True if calls[0] == 1 else real_isdir(path)  # there at the check, gone at the write

    monkeypatch.setattr(os.path, "isdir", isdir_then_gone)
    runner.cancel(handle)
    assert calls[0] >= 2 and not (base / "vanished").exists()


def test_dispose_removes_the_job_directory_unless_kept(runner: ProcessRunner, base: Path) -> None:
    handle, _ = run(runner, 'echo x > "$OUTPUT_DIR/o.txt"', name="gone")
    runner.cleanup(handle)
    runner.dispose(handle)
    runner.dispose(handle)  # idempotent
    assert not (base / "gone").exists()
    keeper = ProcessRunner(base_dir=base, keep_jobs=True)
    kept, _ = run(keeper, "echo y", name="kept")
    keeper.dispose(kept)
    assert (base / "kept").is_dir()
    busy = runner.submit(JobSpec(name="busy-dispose", command=sh(LOOP)))
    runner.dispose(busy)  # a running job is never removed from under its process
    assert (base / "busy-dispose").is_dir()
    runner.cancel(busy)

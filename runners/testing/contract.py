"""The contract every runner passes: subclass :class:`RunnerContract` and provide fixtures.

Like Kestra's ``AbstractTaskRunnerTest``, one suite is shipped where plugins can import it,
and each backend runs it in a few lines against its emulator::

    from runners.testing import RunnerContract

    class TestMyRunner(RunnerContract):
        @pytest.fixture
        def runner(self, backend): return MyRunner(endpoint=backend.url)

        @pytest.fixture
        def second_runner(self, backend): return MyRunner(endpoint=backend.url)   # same backend

        @pytest.fixture
        def faulty_runner(self, backend):
            def make(failures: int) -> tuple[Runner, CallCounter]:
                counter = CallCounter()
                return MyRunner(endpoint=backend.url, transport=flaky(failures, counter)), counter
            return make

        @pytest.fixture
        def output_prefix(self, bucket): return f"s3://{bucket}/outputs/"

        @pytest.fixture
        def read_uri(self, s3): return lambda uri: s3.read(uri)

Fixtures a subclass must provide:

- ``runner``: a fresh runner on the backend under test.
- ``second_runner``: a *new* instance on the same backend (reattach after a crash).
- ``faulty_runner``: ``make(failures) -> (runner, CallCounter)``: a runner on the same backend
  whose API calls fail transiently ``failures`` times, then work; the counter counts every
  backend call (failed or not). Its retry policy must not really sleep.
- ``output_prefix``: where output files go (a URI); ``read_uri(uri) -> bytes`` reads one back.

Optional fixtures (the defaults turn the corresponding checks off):

- ``image``: the container image for backends that need one (it must have a POSIX ``sh``).
- ``process_count(token) -> int``: how many live processes have ``token`` in their command
  line. Backends whose jobs run on this machine (the process runner, emulators that run jobs
  as local subprocesses, local containers) pass :func:`count_local_processes`; it lets the
  suite check that timeout and cancel really stop the job and its grandchildren.
- ``host_dir``: a directory on this machine that jobs can append to (proves "one process").
- ``runner_factory``: a picklable ``() -> Runner`` building a fresh runner on the same backend
  in another OS process (submit races between processes, as between two Lambdas).
- ``lost_response_runner``: ``() -> Runner`` whose next ``submit`` call reaches the backend,
  which does the work, and then loses the response (the fault proxy's ``drop_after``).
- ``queued_options``: ``taskRunner`` options under which a job stays queued (cancel before start).
- ``failure_cases``: ``{Failure: make(runner, make_spec, submit) -> JobHandle}``, one way to end a
  job with each failure class the runner declares besides USER, TIMEOUT and CANCELLED (which
  the suite provokes itself); a declared class without a case fails the suite.
- ``unwritable_output_prefix``: an output prefix the job's files cannot be copied under.
- ``lagging_runner``: a runner on a backend whose log lines arrive after the job ended.
- ``push_event``: ``(runner, handle) -> PushEvent``, the event the backend would push now about
  the job (Evented runners).

Contract v2 is :mod:`runners.base`'s module docstring; docs/runners/README.md says it for
authors of third-party runners.

Every command is a POSIX ``sh -c`` script, so container runners run the same cases. Tests
never sleep to wait for a state: :func:`wait_terminal` and :func:`wait_until` wait on a
condition with a deadline and fail with a clear message when it passes.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from runners import markers
from runners.base import (
    Evented,
    Failure,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogRecord,
    PushEvent,
    Runner,
    TransientRunnerError,
    Waitable,
)

__all__ = [
    "CallCounter",
    "RunnerContract",
    "count_local_processes",
    "iter_logs",
    "poll_one",
    "read_logs",
    "sh",
    "wait_state",
    "wait_terminal",
    "wait_until",
]

_INTERVAL = 0.02
_LOOP = 'i=0; while [ "$i" -lt 120 ]; do sleep 1; i=$((i+1)); done'
"""Runs for up to two minutes: long enough to be cancelled, bounded if a test breaks."""


@dataclass
class CallCounter:
    """Counts backend calls made by a ``faulty_runner`` (thread-safe)."""

    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def hit(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls


def sh(script: str) -> tuple[str, ...]:
    """The argv running ``script`` with the POSIX shell."""
    return ("sh", "-c", script)


def wait_until(predicate: Callable[[], bool], deadline_s: float, message: str) -> None:
    """Check ``predicate`` every few milliseconds until it holds; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"{message} (still false after {deadline_s:g}s)", pytrace=False)
        time.sleep(_INTERVAL)


def poll_one(runner: Runner, handle: JobHandle) -> JobStatus | None:
    """The job's status, or None when the runner has no news of it yet (eventual consistency)."""
    return runner.poll([handle]).get(handle.name)


def wait_terminal(runner: Runner, handle: JobHandle, deadline_s: float = 60.0) -> JobStatus:
    """Poll ``handle`` until terminal, blocking on ``Waitable.wait`` between polls when the runner has it."""
    deadline = time.monotonic() + deadline_s
    status = poll_one(runner, handle)
    while status is None or not status.terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            shown = "unknown to the backend" if status is None else f"still {status.state.value}"
            pytest.fail(f"job {handle.name} {shown} after {deadline_s:g}s: {status}", pytrace=False)
        if isinstance(runner, Waitable):
            runner.wait(min(remaining, 0.5))  # bounded: a wakeup may belong to another process
        else:
            time.sleep(min(remaining, 0.05))
        status = poll_one(runner, handle)
    return status


def wait_state(runner: Runner, handle: JobHandle, states: set[JobState], deadline_s: float) -> JobStatus:
    """Poll until the job is in one of ``states`` (or terminal, which fails unless listed)."""
    found: list[JobStatus] = []

    def reached() -> bool:
        status = poll_one(runner, handle)
        if status is None:
            return False
        found[:] = [status]
        if status.terminal and status.state not in states:
            pytest.fail(f"job {handle.name} ended before reaching {states}: {status}", pytrace=False)
        return status.state in states

    wait_until(reached, deadline_s, f"job {handle.name} never reached {sorted(states)}")
    return found[0]


def iter_logs(runner: Runner, handle: JobHandle, deadline_s: float = 60.0) -> Iterator[list[LogRecord]]:
    """Every chunk of the job's log until ``complete`` (one chunk at a time: bounded memory)."""
    deadline = time.monotonic() + deadline_s
    cursor: str | None = None
    while True:
        chunk = runner.logs(handle, cursor)
        if chunk.lines:
            yield list(chunk.lines)
        if chunk.complete:
            return
        if cursor == chunk.cursor and not chunk.lines:
            if time.monotonic() >= deadline:
                pytest.fail(f"logs of {handle.name} never became complete within {deadline_s:g}s")
            time.sleep(_INTERVAL)
        cursor = chunk.cursor


def complete_in_rounds(
    fresh: Callable[[], Runner], handles: Sequence[JobHandle], deadline_s: float = 300.0, pause_s: float = 0.2
) -> int:
    """Drive ``handles`` to their end as the control plane does; the number of rounds.

    Each round a fresh runner (a new warm container: nothing cached) polls every live job at
    once, reads each ended job's log to its end and cleans it up. The call-count benchmarks
    use it, so what they count is the control plane's pattern, not a test's.
    """
    deadline = time.monotonic() + deadline_s
    pending = list(handles)
    rounds = 0
    while pending:
        runner = fresh()
        statuses = runner.poll(pending)
        rounds += 1
        for handle in [h for h in pending if statuses[h.name].terminal]:
            cursor = None
            while not (chunk := runner.logs(handle, cursor)).complete:
                cursor = chunk.cursor
            runner.cleanup(handle)
        pending = [h for h in pending if not statuses[h.name].terminal]
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} jobs never ended")
        if pending:
            time.sleep(pause_s)  # the pace of the control plane's ticks, not a wait for a state
    return rounds


def read_logs(runner: Runner, handle: JobHandle, deadline_s: float = 60.0) -> list[LogRecord]:
    """The job's whole log (for small logs; use :func:`iter_logs` for large ones)."""
    return [record for chunk in iter_logs(runner, handle, deadline_s) for record in chunk]


def count_local_processes(token: str) -> int:
    """Live (non-zombie) processes of this machine whose command line contains ``token`` (Linux)."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        pytest.skip("count_local_processes needs /proc")
    needle = token.encode()
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_bytes()
        except OSError:  # exited while we looked
            continue
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        if needle in cmdline and state not in (b"Z", b"X"):
            count += 1
    return count


def _texts(records: list[LogRecord], stream: str | None = None) -> list[str]:
    return [r.text for r in records if stream is None or r.stream == stream]


def _joined(records: list[LogRecord]) -> list[tuple[str, str]]:
    """(stream, line) with the ``partial`` pieces of each stream joined, as the control plane does."""
    open_: dict[str, list[str]] = {}
    lines: list[tuple[str, str]] = []
    for r in records:
        open_.setdefault(r.stream, []).append(r.text)
        if not r.partial:
            lines.append((r.stream, "".join(open_.pop(r.stream))))
    assert not open_, f"a log ends inside a line (partial pieces left on {sorted(open_)})"
    return lines


class RunnerContract:
    """Cases every runner passes. Subclass it as ``Test<Something>`` and provide the fixtures."""

    deadline_s: ClassVar[float] = 60.0
    """How long any single wait may take (raise it for slow emulators)."""
    counts_calls: ClassVar[bool] = True
    """False in a subclass that reruns the whole contract through a throttling proxy: the poll of
    50 handles is counted through ``faulty_runner(0)`` in both classes, so the rerun would
    count the very same calls again (the most expensive case of the suite, for nothing)."""

    def skip_recount(self) -> None:
        """Skip a call-counting case in a class that does not count (:attr:`counts_calls`)."""
        if not self.counts_calls:
            pytest.skip("counted once, without the throttling proxy: the count is the same here")

    # -- fixtures a subclass provides

    @pytest.fixture
    def runner(self) -> Runner:
        raise NotImplementedError("the contract subclass must provide a `runner` fixture")

    @pytest.fixture
    def second_runner(self) -> Runner:
        raise NotImplementedError("the contract subclass must provide a `second_runner` fixture")

    @pytest.fixture
    def faulty_runner(self) -> Callable[[int], tuple[Runner, CallCounter]]:
        raise NotImplementedError("the contract subclass must provide a `faulty_runner` fixture")

    @pytest.fixture
    def output_prefix(self) -> str:
        raise NotImplementedError("the contract subclass must provide an `output_prefix` fixture")

    @pytest.fixture
    def read_uri(self) -> Callable[[str], bytes]:
        raise NotImplementedError("the contract subclass must provide a `read_uri` fixture")

    @pytest.fixture
    def image(self) -> str | None:
        return None

    @pytest.fixture
    def process_count(self) -> Callable[[str], int] | None:
        return None

    @pytest.fixture
    def host_dir(self) -> Path | None:
        return None

    @pytest.fixture
    def runner_factory(self) -> Callable[[], Runner] | None:
        return None

    @pytest.fixture
    def lost_response_runner(self) -> Callable[[], Runner] | None:
        return None

    @pytest.fixture
    def queued_options(self) -> Mapping[str, Any] | None:
        return None

    @pytest.fixture
    def failure_cases(self) -> Mapping[Failure, Callable[..., JobHandle]]:
        return {}

    @pytest.fixture
    def unwritable_output_prefix(self) -> str | None:
        return None

    @pytest.fixture
    def lagging_runner(self) -> Runner | None:
        return None

    @pytest.fixture
    def push_event(self) -> Callable[[Runner, JobHandle], PushEvent] | None:
        return None

    # -- helpers as fixtures

    @pytest.fixture
    def make_spec(self, image: str | None, output_prefix: str) -> Callable[..., JobSpec]:
        """``make_spec(script, **fields)``: a JobSpec with a unique name running ``sh -c script``."""

        def make(script: str, **fields: Any) -> JobSpec:
            fields.setdefault("name", f"contract-{uuid.uuid4().hex[:12]}")
            fields.setdefault("image", image)
            fields.setdefault("output_prefix", output_prefix)
            return JobSpec(command=sh(script), **fields)

        return make

    @pytest.fixture
    def submit(self) -> Iterator[Callable[[Runner, JobSpec], JobHandle]]:
        """``submit(runner, spec)``; every job still running when the test ends is cancelled."""
        submitted: list[tuple[Runner, JobHandle]] = []

        def do(runner: Runner, spec: JobSpec) -> JobHandle:
            handle = runner.submit(spec)
            submitted.append((runner, handle))
            return handle

        yield do
        for runner, handle in submitted:
            try:
                status = poll_one(runner, handle)
                if status is None or not status.terminal:
                    runner.cancel(handle)
            except Exception:  # teardown must not hide the test's own failure
                pass

    # -- cases

    def test_echo(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        handle = submit(runner, make_spec("echo one; echo two; echo three"))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert status.exit_code == 0
        assert status.failure is None
        records = read_logs(runner, handle, self.deadline_s)
        assert _texts(records, "stdout") == ["one", "two", "three"]
        # Reading again from the end yields nothing new and stays complete.
        end = runner.logs(handle, None)
        while not end.complete:
            end = runner.logs(handle, end.cursor)
        again = runner.logs(handle, end.cursor)
        assert again.lines == () and again.complete

    def test_exit_1_keeps_outputs_marker(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        script = """echo '::{"outputs":{"answer":42,"who":"first"}}::'; echo 'boom' >&2; exit 1"""
        handle = submit(runner, make_spec(script))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.FAILED, status
        assert status.failure is Failure.USER
        assert status.exit_code == 1
        records = read_logs(runner, handle, self.deadline_s)
        assert '::{"outputs":{"answer":42,"who":"first"}}::' in _texts(records)
        assert "boom" in _texts(records, "stderr")
        assert markers.collect(_texts(records)).outputs == {"answer": 42, "who": "first"}

    def test_marker_on_last_line_without_newline(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        marker = '::{"outputs":{"k":"v"},"metrics":[{"name":"rows","type":"counter","value":3}]}::'
        handle = submit(runner, make_spec(f"echo before; printf '%s' '{marker}'"))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        records = read_logs(runner, handle, self.deadline_s)
        assert _texts(records, "stdout") == ["before", marker]
        found = markers.collect(_texts(records))
        assert found.outputs == {"k": "v"}
        assert found.metrics == [{"name": "rows", "type": "counter", "value": 3}]

    def test_a_long_marker_line_arrives_whole_or_in_flagged_pieces(
        self, runner: Runner, make_spec: Any, submit: Any
    ) -> None:
        """A line longer than the backend carries in one record may be cut, but every piece but
        the last says ``partial``: joined per stream, the outputs marker is whole again."""
        n = 1_200_000  # past the process runner's 1 MiB records (and CloudWatch's 256 KiB events)
        script = (
            f"""printf '::{{"outputs":{{"big":"'; head -c {n} /dev/zero | tr '\\0' x; printf '"}}}}::\\n';"""
            " echo after"
        )
        handle = submit(runner, make_spec(script))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        lines = _joined(read_logs(runner, handle, self.deadline_s))
        assert [len(text) for _, text in lines] == [n + 26, 5]
        assert markers.collect(text for _, text in lines).outputs == {"big": "x" * n}

    def test_many_lines_on_both_streams(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        n = 2500
        script = f'i=0; while [ "$i" -lt {n} ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done'
        handle = submit(runner, make_spec(script))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        records = read_logs(runner, handle, self.deadline_s)
        assert len(records) == 2 * n
        assert _texts(records, "stdout") == [f"out {i}" for i in range(n)]
        assert _texts(records, "stderr") == [f"err {i}" for i in range(n)]

    def test_input_and_output_files(
        self,
        runner: Runner,
        make_spec: Any,
        submit: Any,
        output_prefix: str,
        read_uri: Callable[[str], bytes],
    ) -> None:
        script = (
            "cat in.txt data/nested/in2.txt > result.txt && mkdir -p sub/deeper && "
            'printf gamma > sub/deeper/g.txt && printf delta > "$OUTPUT_DIR/d.txt" && printf no > skip.log'
        )
        spec = make_spec(
            script,
            input_files={"in.txt": b"alpha\n", "data/nested/in2.txt": b"beta"},
            output_files=("result.txt", "sub/**/*.txt"),
        )
        handle = submit(runner, spec)
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, (status, read_logs(runner, handle, self.deadline_s))
        assert set(status.output_files) == {"result.txt", "sub/deeper/g.txt", "d.txt"}
        assert read_uri(status.output_files["result.txt"]) == b"alpha\nbeta"
        assert read_uri(status.output_files["sub/deeper/g.txt"]) == b"gamma"
        assert read_uri(status.output_files["d.txt"]) == b"delta"
        for uri in status.output_files.values():
            assert uri.startswith(output_prefix.rstrip("/")), (uri, output_prefix)

    def test_env_and_directories(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        script = (
            'echo "greeting=$SQUALL_GREETING"; '
            '[ -n "$WORKING_DIR" ] && [ "$(pwd -P)" = "$(cd "$WORKING_DIR" && pwd -P)" ] && echo wd-ok; '
            '[ -n "$OUTPUT_DIR" ] && [ -d "$OUTPUT_DIR" ] && touch "$OUTPUT_DIR/probe" && echo od-ok'
        )
        handle = submit(runner, make_spec(script, env={"SQUALL_GREETING": "hello world"}))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert _texts(read_logs(runner, handle, self.deadline_s), "stdout") == [
            "greeting=hello world",
            "wd-ok",
            "od-ok",
        ]

    def test_timeout_stops_the_job(
        self, runner: Runner, make_spec: Any, submit: Any, process_count: Callable[[str], int] | None
    ) -> None:
        token = f"squall-timeout-{uuid.uuid4().hex}"
        handle = submit(runner, make_spec(f"echo started; {_LOOP} # {token}", timeout=timedelta(seconds=1)))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.FAILED, status
        assert status.failure is Failure.TIMEOUT
        assert status.reason and "timed out" in status.reason
        if process_count is not None:
            wait_until(lambda: process_count(token) == 0, 10.0, "the timed-out job's processes still run")

    def test_cancel_stops_job_and_grandchildren(
        self, runner: Runner, make_spec: Any, submit: Any, process_count: Callable[[str], int] | None
    ) -> None:
        token = f"squall-cancel-{uuid.uuid4().hex}"
        script = f"sh -c '{_LOOP} # {token}-child' &\necho started\n{_LOOP} # {token}"
        handle = submit(runner, make_spec(script))
        wait_state(runner, handle, {JobState.RUNNING}, self.deadline_s)
        if process_count is not None:  # the job and its grandchild both run
            wait_until(lambda: process_count(token) >= 2, self.deadline_s, "the grandchild never started")
        runner.cancel(handle)
        runner.cancel(handle)  # idempotent
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.CANCELLED, status
        assert status.failure is Failure.CANCELLED
        if process_count is not None:
            wait_until(lambda: process_count(token) == 0, 10.0, "the cancelled job's processes still run")
        runner.cancel(handle)  # after the end: still fine, still CANCELLED
        assert runner.poll([handle])[handle.name].state is JobState.CANCELLED

    def test_cancel_after_success_is_a_noop(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        handle = submit(runner, make_spec("echo done"))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        runner.cancel(handle)
        status = runner.poll([handle])[handle.name]
        assert status.state is JobState.SUCCEEDED, status
        assert status.failure is None

    def test_reattach_from_a_new_runner(
        self, runner: Runner, second_runner: Runner, make_spec: Any, submit: Any
    ) -> None:
        spec = make_spec("echo one; sleep 1; echo two")
        handle = submit(runner, spec)
        assert JobHandle.from_dict(handle.to_dict()) == handle
        found = second_runner.find(spec)
        assert found is not None
        assert (found.name, found.id) == (handle.name, handle.id)
        seen = poll_one(second_runner, found)
        assert seen is None or seen.state in {
            JobState.QUEUED,
            JobState.STARTING,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        }
        status = wait_terminal(second_runner, found, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert _texts(read_logs(second_runner, found, self.deadline_s), "stdout") == ["one", "two"]
        assert second_runner.find(spec) == found  # still the same job once it has ended

    def test_submit_twice_runs_once(
        self,
        runner: Runner,
        second_runner: Runner,
        make_spec: Any,
        submit: Any,
        host_dir: Path | None,
    ) -> None:
        ledger = host_dir / f"ledger-{uuid.uuid4().hex}" if host_dir is not None else None
        script = f"echo ran >> '{ledger}'; echo ran" if ledger is not None else "echo ran"
        spec = make_spec(script)
        first = submit(runner, spec)
        assert submit(runner, spec).id == first.id
        assert submit(second_runner, spec).id == first.id
        status = wait_terminal(runner, first, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert submit(runner, spec).id == first.id  # even after the end
        assert _texts(read_logs(runner, first, self.deadline_s)) == ["ran"]
        if ledger is not None:
            assert ledger.read_text().splitlines() == ["ran"]

    def test_concurrent_submits_start_one_job(
        self,
        runner: Runner,
        second_runner: Runner,
        make_spec: Any,
        submit: Any,
        host_dir: Path | None,
    ) -> None:
        ledger = host_dir / f"ledger-{uuid.uuid4().hex}" if host_dir is not None else None
        spec = make_spec(f"echo ran >> '{ledger}'" if ledger is not None else "echo ran")
        barrier = threading.Barrier(6)
        ids: list[str] = []
        errors: list[BaseException] = []

        def race(which: Runner) -> None:
            try:
                barrier.wait(timeout=10)
                ids.append(submit(which, spec).id)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(r,)) for r in [runner, second_runner] * 3]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.deadline_s)
        assert not errors, errors
        assert len(ids) == 6 and len(set(ids)) == 1, ids
        handle = runner.find(spec)
        assert handle is not None
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        if ledger is not None:
            assert ledger.read_text().splitlines() == ["ran"]

    def test_find_never_submitted(self, runner: Runner, make_spec: Any) -> None:
        assert runner.find(make_spec("echo never")) is None

    def test_unknown_handle(self, runner: Runner) -> None:
        """A handle the backend does not know: no news, or LOST where the runner has evidence."""
        ghost = JobHandle(name=f"contract-ghost-{uuid.uuid4().hex[:8]}", runner=runner.name, id="no-such-job")
        status = runner.poll([ghost]).get(ghost.name)
        assert status is None or (status.state is JobState.LOST and status.failure is Failure.LOST), status
        with pytest.raises(JobNotFoundError):
            runner.logs(ghost, None)

    def test_poll_is_batched(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        handles = [submit(runner, make_spec(f"exit {code}")) for code in (0, 3)]
        for handle in handles:
            wait_terminal(runner, handle, self.deadline_s)
        statuses = runner.poll(handles)
        assert set(statuses) == {h.name for h in handles}
        assert [statuses[h.name].exit_code for h in handles] == [0, 3]
        assert statuses[handles[1].name].failure is Failure.USER

    def test_cleanup_is_idempotent_and_keeps_logs(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        handle = submit(runner, make_spec("echo kept"))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        runner.cleanup(handle)
        runner.cleanup(handle)
        assert _texts(read_logs(runner, handle, self.deadline_s)) == ["kept"]
        assert runner.poll([handle])[handle.name].state is JobState.SUCCEEDED

    def test_transient_errors_are_retried(
        self, faulty_runner: Callable[[int], tuple[Runner, CallCounter]], make_spec: Any, submit: Any
    ) -> None:
        flaky, counter = faulty_runner(2)
        handle = submit(flaky, make_spec("echo survived"))
        status = wait_terminal(flaky, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert counter.calls > 2, "the two failed calls should have been retried"
        assert _texts(read_logs(flaky, handle, self.deadline_s)) == ["survived"]

    def test_transient_errors_beyond_the_policy(
        self,
        faulty_runner: Callable[[int], tuple[Runner, CallCounter]],
        runner: Runner,
        make_spec: Any,
        submit: Any,
    ) -> None:
        flaky, counter = faulty_runner(1_000_000)
        spec = make_spec("echo second-try")
        with pytest.raises(TransientRunnerError):
            flaky.submit(spec)
        assert counter.calls >= 2, "the policy should have retried before giving up"
        # Nothing half-made blocks the same job later, once the backend works again.
        handle = submit(runner, spec)
        status = wait_terminal(runner, handle, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert _texts(read_logs(runner, handle, self.deadline_s)) == ["second-try"]

    # -- contract v2: exactly once across processes, failures as declared, logs, files, events

    def test_declares_its_capabilities(self, runner: Runner) -> None:
        """What the control plane relies on is declared on the class, never probed for."""
        cls = type(runner)
        assert isinstance(runner, Runner)
        assert isinstance(cls.failures, frozenset) and Failure.USER in cls.failures
        assert all(isinstance(f, Failure) for f in cls.failures)
        assert isinstance(cls.storage_schemes, frozenset)
        assert all(s in {"file", "s3", "gs", "az"} for s in cls.storage_schemes), cls.storage_schemes
        assert isinstance(cls.poll_batch, int) and cls.poll_batch >= 1
        assert isinstance(runner.option_defaults, Mapping)
        if isinstance(runner, Evented):
            assert runner.event_keys and isinstance(runner.carries_handles, bool)

    def test_submit_races_between_processes_run_the_command_once(
        self,
        runner: Runner,
        runner_factory: Callable[[], Runner] | None,
        make_spec: Any,
        submit: Any,
        host_dir: Path | None,
    ) -> None:
        """Three OS processes (three Lambdas: no shared lock) submit one spec at the same moment."""
        if runner_factory is None or host_dir is None:
            pytest.skip("needs the runner_factory and host_dir fixtures")
        ledger = host_dir / f"ledger-{uuid.uuid4().hex}"
        spec = make_spec(f"echo ran >> '{ledger}'")
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(3)
        results = context.Queue()
        procs = [
            context.Process(target=_submit_in_process, args=(runner_factory, spec, barrier, results))
            for _ in range(3)
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=self.deadline_s) for _ in procs]
        for proc in procs:
            proc.join(timeout=self.deadline_s)
        assert all(kind == "ok" for kind, _ in outcomes), outcomes
        assert len({job_id for _, job_id in outcomes}) == 1, outcomes
        handle = runner.find(spec)
        assert handle is not None and handle.id == outcomes[0][1]
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert ledger.read_text().splitlines() == ["ran"]

    def test_a_lost_submit_response_runs_the_command_once(
        self,
        runner: Runner,
        lost_response_runner: Callable[[], Runner] | None,
        make_spec: Any,
        submit: Any,
        host_dir: Path | None,
    ) -> None:
        """The backend created the job, the caller never heard: submitting again finds it."""
        if lost_response_runner is None or host_dir is None:
            pytest.skip("needs the lost_response_runner and host_dir fixtures")
        ledger = host_dir / f"ledger-{uuid.uuid4().hex}"
        spec = make_spec(f"echo ran >> '{ledger}'; echo done")
        lossy = lost_response_runner()
        try:
            first: JobHandle | None = lossy.submit(spec)
        except (TransientRunnerError, ConnectionError):
            first = None  # the caller saw an error: it will try again under the same name
        again = submit(runner, spec)
        assert first is None or first.id == again.id
        status = wait_terminal(runner, again, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        assert runner.find(spec) == again
        assert ledger.read_text().splitlines() == ["ran"]

    def test_cancel_of_a_queued_job_is_seen_by_a_fresh_runner(
        self,
        runner: Runner,
        second_runner: Runner,
        queued_options: Mapping[str, Any] | None,
        make_spec: Any,
        submit: Any,
    ) -> None:
        if queued_options is None:
            pytest.skip("needs the queued_options fixture")
        handle = submit(runner, make_spec("echo never", options=dict(queued_options)))
        wait_state(runner, handle, {JobState.QUEUED}, self.deadline_s)
        runner.cancel(handle)
        status = wait_terminal(runner, handle, self.deadline_s)
        assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED), status
        fresh = second_runner.poll([handle])[handle.name]  # the tombstone outlives this instance
        assert (fresh.state, fresh.failure) == (JobState.CANCELLED, Failure.CANCELLED), fresh
        runner.cancel(handle)  # and cancelling again changes nothing
        assert second_runner.poll([handle])[handle.name].state is JobState.CANCELLED

    def test_every_declared_failure_class_is_reported_as_declared(
        self,
        runner: Runner,
        failure_cases: Mapping[Failure, Callable[..., JobHandle]],
        make_spec: Any,
        submit: Any,
    ) -> None:
        provoked_by_the_suite = {Failure.USER, Failure.TIMEOUT, Failure.CANCELLED}
        declared = set(type(runner).failures) - provoked_by_the_suite
        missing = declared - set(failure_cases)
        assert not missing, f"{type(runner).__name__} declares {sorted(missing)} but gives no failure_cases"
        undeclared = set(failure_cases) - set(type(runner).failures)
        assert not undeclared, f"failure_cases for undeclared classes {sorted(undeclared)}"
        for failure, make in failure_cases.items():
            status = wait_terminal(runner, make(runner, make_spec, submit), self.deadline_s)
            expected = JobState.LOST if failure is Failure.LOST else JobState.FAILED
            assert (status.state, status.failure) == (expected, failure), (failure, status)
            assert status.reason, f"a {failure} failure must say why"

    def test_a_cursor_is_resumed_by_another_runner_instance(
        self, runner: Runner, second_runner: Runner, make_spec: Any, submit: Any
    ) -> None:
        n = 25_000  # over CloudWatch's and the process runner's 10,000 records a page
        handle = submit(
            runner, make_spec(f'i=0; while [ "$i" -lt {n} ]; do echo "line $i"; i=$((i+1)); done')
        )
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        first = runner.logs(handle, None)
        while not first.lines and not first.complete:
            first = runner.logs(handle, first.cursor)
        assert 0 < len(first.lines) < n, "the log should come in several pages"
        rest = [
            r.text
            for chunk in _chunks_from(second_runner, handle, first.cursor, self.deadline_s)
            for r in chunk
        ]
        assert [r.text for r in first.lines] + rest == [f"line {i}" for i in range(n)]

    def test_a_10_mb_log_arrives_whole(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        lines, width = 100_000, 99  # 100,000 lines of 100 bytes with their newline
        script = f"head -c {lines * width} /dev/zero | tr '\\0' y | fold -w {width}"
        handle = submit(runner, make_spec(script))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        count = total = 0
        for chunk in iter_logs(runner, handle, self.deadline_s):
            count += len(chunk)
            total += sum(len(r.text) for r in chunk if r.text == "y" * width)
        assert (count, total) == (lines, lines * width)

    def test_a_300_kb_line_arrives_whole(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        n = 300_000
        handle = submit(runner, make_spec(f"head -c {n} /dev/zero | tr '\\0' z; echo; echo after"))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert _joined(read_logs(runner, handle, self.deadline_s)) == [
            ("stdout", "z" * n),
            ("stdout", "after"),
        ]

    def test_late_log_lines_still_arrive_before_complete(
        self, lagging_runner: Runner | None, make_spec: Any, submit: Any
    ) -> None:
        if lagging_runner is None:
            pytest.skip("needs the lagging_runner fixture")
        marker = '::{"outputs":{"late":true}}::'
        handle = submit(lagging_runner, make_spec(f"echo first; printf '%s' '{marker}'"))
        assert wait_terminal(lagging_runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        records = read_logs(lagging_runner, handle, self.deadline_s)
        assert _texts(records, "stdout") == ["first", marker]

    def test_an_output_file_is_a_later_jobs_input(
        self, runner: Runner, make_spec: Any, submit: Any, read_uri: Callable[[str], bytes]
    ) -> None:
        """Job A's 1 MiB random file, by its output URI, is job B's input, byte for byte."""
        a = submit(runner, make_spec("head -c 1048576 /dev/urandom > out.bin", output_files=("out.bin",)))
        status = wait_terminal(runner, a, self.deadline_s)
        assert status.state is JobState.SUCCEEDED, status
        uri = status.output_files["out.bin"]
        expected = hashlib.sha256(read_uri(uri)).hexdigest()
        b = submit(runner, make_spec("sha256sum in/data.bin", input_uris={"in/data.bin": uri}))
        done = wait_terminal(runner, b, self.deadline_s)
        assert done.state is JobState.SUCCEEDED, (done, read_logs(runner, b, self.deadline_s))
        assert _texts(read_logs(runner, b, self.deadline_s), "stdout") == [f"{expected}  in/data.bin"]

    def test_an_input_that_cannot_be_staged_fails_the_job_as_config(
        self, runner: Runner, make_spec: Any, submit: Any, output_prefix: str
    ) -> None:
        missing = output_prefix.rstrip("/") + f"/no-such-{uuid.uuid4().hex}/gone.txt"
        handle = submit(runner, make_spec("echo should-not-run", input_uris={"gone.txt": missing}))
        status = wait_terminal(runner, handle, self.deadline_s)
        assert (status.state, status.failure) == (JobState.FAILED, Failure.CONFIG), status
        assert status.reason is not None and "gone.txt" in status.reason
        assert "should-not-run" not in _texts(read_logs(runner, handle, self.deadline_s))

    def test_an_output_upload_failure_fails_the_job_as_config(
        self, runner: Runner, make_spec: Any, submit: Any, unwritable_output_prefix: str | None
    ) -> None:
        if unwritable_output_prefix is None:
            pytest.skip("needs the unwritable_output_prefix fixture")
        spec = make_spec(
            "printf x > result.txt", output_files=("result.txt",), output_prefix=unwritable_output_prefix
        )
        status = wait_terminal(runner, submit(runner, spec), self.deadline_s)
        assert (status.state, status.failure) == (JobState.FAILED, Failure.CONFIG), status
        assert status.reason is not None and "result.txt" in status.reason

    @pytest.mark.parametrize(("script", "code"), [("kill -9 $$", 137), ("exit 300", 300 % 256)])
    def test_signals_and_large_exit_codes(
        self, runner: Runner, make_spec: Any, submit: Any, script: str, code: int
    ) -> None:
        """POSIX keeps 8 bits of an exit status; a job killed by signal N exits 128 + N."""
        status = wait_terminal(runner, submit(runner, make_spec(script)), self.deadline_s)
        assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.USER, code)

    def test_env_values_with_quotes_dollars_newlines_and_unicode(
        self, runner: Runner, make_spec: Any, submit: Any
    ) -> None:
        env = {
            "QUOTED": """it's "double" and `back` \\ slash""",
            "DOLLAR": "$HOME ${PATH} $(echo no) $$",
            "LINES": "one\ntwo",
            "UNICODE": "héllo ✓ 日本",
        }
        script = 'printf "%s|" "$QUOTED" "$DOLLAR" "$UNICODE"; echo; printf "%s\\n" "$LINES"'
        handle = submit(runner, make_spec(script, env=env))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert _texts(read_logs(runner, handle, self.deadline_s), "stdout") == [
            f"{env['QUOTED']}|{env['DOLLAR']}|{env['UNICODE']}|",
            "one",
            "two",
        ]

    def test_a_64_kib_script(self, runner: Runner, make_spec: Any, submit: Any) -> None:
        body = "".join(f"echo {i}\n" for i in range(200))
        padding = "# " + "p" * 98 + "\n"
        script = body + padding * ((65_536 - len(body)) // len(padding) + 1) + "echo last\n"
        assert len(script.encode()) >= 65_536
        handle = submit(runner, make_spec(script))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert _texts(read_logs(runner, handle, self.deadline_s), "stdout") == [*map(str, range(200)), "last"]

    def test_polling_50_handles_costs_the_declared_calls(
        self,
        runner: Runner,
        faulty_runner: Callable[[int], tuple[Runner, CallCounter]],
        make_spec: Any,
        submit: Any,
    ) -> None:
        self.skip_recount()
        handles = [submit(runner, make_spec(f"exit {i % 2}", output_prefix=None)) for i in range(50)]
        for handle in handles:
            wait_terminal(runner, handle, self.deadline_s)
        counted, counter = faulty_runner(0)  # a fresh instance: nothing cached
        statuses = counted.poll(handles)
        assert [statuses[h.name].exit_code for h in handles] == [i % 2 for i in range(50)]
        allowed = math.ceil(50 / type(runner).poll_batch)
        assert counter.calls <= allowed, (
            f"{counter.calls} backend calls to poll 50 jobs (declared: {allowed})"
        )

    def test_events_duplicated_reordered_or_about_another_job(
        self,
        runner: Runner,
        push_event: Callable[[Runner, JobHandle], PushEvent] | None,
        make_spec: Any,
        submit: Any,
    ) -> None:
        if not isinstance(runner, Evented):
            pytest.skip("the runner has no push events")
        if push_event is None:
            pytest.fail("an Evented runner's contract must provide the push_event fixture")
        a = submit(runner, make_spec("echo a"))
        early = push_event(runner, a)  # taken while the job is not terminal (or just ended)
        assert wait_terminal(runner, a, self.deadline_s).state is JobState.SUCCEEDED
        final = push_event(runner, a)
        once, twice = runner.parse_event(final), runner.parse_event(final)
        assert once is not None and once == twice  # a duplicate says the same
        assert (once.name, once.job_id, once.status.state) == (a.name, a.id, JobState.SUCCEEDED)
        late = runner.parse_event(early)  # delivered after the end: it names the same job
        assert late is not None and (late.name, late.job_id) == (a.name, a.id)
        b = submit(runner, make_spec("echo b"))
        wait_terminal(runner, b, self.deadline_s)
        other = runner.parse_event(push_event(runner, b))
        assert other is not None and other.job_id == b.id != a.id  # the control plane tells them apart
        if type(runner).carries_handles:
            assert once.handle is not None and once.handle.id == a.id
        assert runner.parse_event(PushEvent(next(iter(type(runner).event_keys)), {"unrelated": True})) is None


def _chunks_from(
    runner: Runner, handle: JobHandle, cursor: str | None, deadline_s: float
) -> Iterator[list[LogRecord]]:
    """Every chunk after ``cursor`` until ``complete``."""
    deadline = time.monotonic() + deadline_s
    while True:
        chunk = runner.logs(handle, cursor)
        if chunk.lines:
            yield list(chunk.lines)
        if chunk.complete:
            return
        if not chunk.lines:
            if time.monotonic() >= deadline:
                pytest.fail(f"logs of {handle.name} never became complete within {deadline_s:g}s")
            time.sleep(_INTERVAL)
        cursor = chunk.cursor


def _submit_in_process(factory: Callable[[], Runner], spec: JobSpec, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: build a runner, wait for the others, submit, report the job id."""
    try:
        runner = factory()
        barrier.wait(timeout=60)
        results.put(("ok", runner.submit(spec).id))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put(("error", f"{type(exc).__name__} in pid {os.getpid()}: {exc}"))

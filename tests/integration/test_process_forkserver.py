"""The process runner's fast path: shims forked by one server per process, directories removed
in the background. Every job is a real ``sh``; processes are checked in /proc.

What must hold whatever the speed-ups: outputs and the last log line arrive, a cancel stops
the job's whole process group, a job outlives its squall process (tests/integration/
test_process_reattach.py), and a removed directory is gone by its name at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from runners.base import JobSpec, JobState
from runners.process import ProcessRunner, disposal, forkserver
from runners.process.disposal import TRASH_PREFIX
from runners.process.files import read_json
from runners.process.procs import alive, proc_stat
from runners.testing import count_local_processes, read_logs, sh, wait_terminal, wait_until

ROOT = Path(__file__).resolve().parents[2]
LOOP = 'i=0; while [ "$i" -lt 120 ]; do sleep 1; i=$((i+1)); done'

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists() or not forkserver.available(), reason="needs Linux /proc"
)


def parent_of(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rindex(b")") + 2 :].split()[1])


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def runner(base: Path) -> ProcessRunner:
    return ProcessRunner(base, grace=timedelta(seconds=0.5))


def trash(base: Path) -> list[str]:
    return [p.name for p in base.iterdir() if p.name.startswith(TRASH_PREFIX)] if base.is_dir() else []


def test_every_shim_is_forked_by_one_server_and_delivers_outputs_and_the_last_line(
    runner: ProcessRunner, base: Path
) -> None:
    servers = set()
    for i in range(3):
        script = f'echo first {i}; echo err >&2; printf \'::{{"outputs":{{"i":{i}}}}}::\''
        handle = runner.submit(JobSpec(name=f"forked-{i}", command=sh(script)))
        doc = read_json(str(base / f"forked-{i}" / "pid"))
        assert doc is not None and doc["shim"] is True
        status = wait_terminal(runner, handle, 30.0)
        assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0), status
        records = read_logs(runner, handle)
        assert [r.text for r in records if r.stream == "stdout"] == [
            f"first {i}",
            f'::{{"outputs":{{"i":{i}}}}}::',
        ]
        assert [r.text for r in records if r.stream == "stderr"] == ["err"]
        servers.add(forkserver._server.process.pid if forkserver._server else None)
    assert len(servers) == 1 and None not in servers
    (server,) = servers
    assert parent_of(server) == os.getpid()  # the server is this process's child; each shim is its


def test_a_dead_fork_server_is_replaced_by_the_next_submit(runner: ProcessRunner) -> None:
    first = runner.submit(JobSpec(name="before", command=sh("echo one")))
    assert wait_terminal(runner, first, 30.0).state is JobState.SUCCEEDED
    assert forkserver._server is not None
    dead = forkserver._server.process
    dead.kill()
    dead.wait(timeout=10)
    second = runner.submit(JobSpec(name="after", command=sh("echo two")))
    assert wait_terminal(runner, second, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, second)] == ["two"]
    assert forkserver._server is not None and forkserver._server.process.pid != dead.pid


def test_a_cancel_kills_the_whole_process_group_of_a_forked_shims_job(runner: ProcessRunner) -> None:
    token = f"squall-group-{uuid.uuid4().hex}"
    script = f"sh -c '{LOOP} # {token}' & sh -c '{LOOP} # {token}' & wait"
    handle = runner.submit(JobSpec(name="group", command=sh(script)))
    # the job's sh and its two children, each with the token in its command line
    wait_until(lambda: count_local_processes(token) == 3, 10.0, "the job's children never started")
    runner.cancel(handle)
    status = wait_terminal(runner, handle, 30.0)
    assert status.state is JobState.CANCELLED, status
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "a child of the job survived the cancel")


def test_a_timeout_kills_the_whole_process_group(runner: ProcessRunner) -> None:
    token = f"squall-timeout-{uuid.uuid4().hex}"
    script = f"sh -c '{LOOP} # {token}' & wait"
    spec = JobSpec(name="late", command=sh(script), timeout=timedelta(seconds=0.5))
    status = wait_terminal(runner, runner.submit(spec), 30.0)
    assert status.reason is not None and "timed out" in status.reason, status
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "a child of the job survived its timeout")


@pytest.mark.parametrize("size", [200_000, 1_500_000], ids=["grown-pipe", "written-after-the-request"])
def test_a_configuration_larger_than_a_pipe_still_reaches_the_job(runner: ProcessRunner, size: int) -> None:
    # The environment travels in the configuration: 200 KB needs a bigger pipe, 1.5 MB more
    # than a pipe may hold (then the handshake writes it while the shim reads).
    chunk = 100_000  # under the kernel's limit for one environment string
    env = {f"BIG{i}": chr(ord("a") + i % 26) * chunk for i in range(size // chunk)}
    handle = runner.submit(JobSpec(name="big-env", command=sh('echo "${#BIG0} ${#BIG1}"'), env=env))
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == [f"{chunk} {chunk}"]


def test_dispose_removes_the_directory_by_name_at_once_and_its_files_soon(
    runner: ProcessRunner, base: Path
) -> None:
    handle = runner.submit(JobSpec(name="tidy", command=sh('echo x > w.txt; echo o > "$OUTPUT_DIR/o"')))
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    runner.cleanup(handle)
    wait_until(lambda: not (base / "tidy" / "work").exists(), 10.0, "the work directory stays")
    assert (base / "tidy" / "log.jsonl").exists()
    runner.dispose(handle)
    assert not (base / "tidy").exists()
    assert runner.poll([handle])["tidy"].state is JobState.LOST  # nobody finds it any more
    wait_until(lambda: trash(base) == [], 10.0, "the disposed files were never deleted")


def test_files_are_deleted_by_a_deleter_process_and_by_pool_threads_once_it_died(
    runner: ProcessRunner, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disposal, "_no_deleter", False)  # and back after: later tests get a deleter
    first = runner.submit(JobSpec(name="first", command=sh("echo x > w.txt")))
    assert wait_terminal(runner, first, 30.0).state is JobState.SUCCEEDED
    runner.dispose(first)
    deleter = disposal._deleter
    assert deleter is not None and deleter.pid == os.getpid()
    assert parent_of(deleter.process.pid) == os.getpid()  # its own process: not this one's GIL
    wait_until(lambda: trash(base) == [], 10.0, "the deleter never deleted the disposed files")
    deleter.process.kill()
    deleter.process.wait(10.0)
    second = runner.submit(JobSpec(name="second", command=sh("echo x > w.txt")))
    assert wait_terminal(runner, second, 30.0).state is JobState.SUCCEEDED
    runner.dispose(second)  # the pipe is broken: a pool thread deletes instead
    assert not (base / "second").exists()
    wait_until(lambda: trash(base) == [], 10.0, "the disposed files of a job were never deleted")


def test_files_a_killed_process_left_to_delete_are_deleted_by_the_next_runner(base: Path) -> None:
    left = base / f"{TRASH_PREFIX}job-1-0123456789ab"
    (left / "out").mkdir(parents=True)
    (left / "log.jsonl").write_text("{}\n")
    ProcessRunner(base)
    wait_until(lambda: not left.exists(), 10.0, "leftovers were never swept")


def test_deletions_pending_at_exit_are_done_before_the_process_ends(base: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from runners.base import JobSpec
        from runners.process import ProcessRunner
        from runners.testing import sh, wait_terminal
        runner = ProcessRunner(Path(sys.argv[1]))
        for i in range(5):
            handle = runner.submit(JobSpec(name=f"j{i}", command=sh("echo x > f; echo y")))
            wait_terminal(runner, handle, 30.0)
            runner.cleanup(handle)
            runner.dispose(handle)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(base)], cwd=ROOT, timeout=60, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in base.iterdir()) == []


def test_the_fork_server_exits_with_its_process_and_leaves_running_jobs_alone(base: Path) -> None:
    token = f"squall-orphan-{uuid.uuid4().hex}"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from runners.base import JobSpec
        from runners.process import ProcessRunner, disposal, forkserver
        from runners.testing import sh
        runner = ProcessRunner(Path(sys.argv[1]))
        script = 'while [ ! -e "$WORKING_DIR/go" ]; do sleep 0.02; done # {token}'
        runner.submit(JobSpec(name="stays", command=sh(script)))
        print(forkserver._server.process.pid, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(base)], cwd=ROOT, timeout=60, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    server = int(done.stdout.split()[-1])
    wait_until(lambda: not alive(server, None, None), 10.0, "the fork server outlived its process")
    assert count_local_processes(token) == 1  # the job runs on under its shim
    fresh = ProcessRunner(base)
    handle = fresh.find(JobSpec(name="stays", command=("true",)))
    assert handle is not None and fresh.poll([handle])["stays"].state is JobState.RUNNING
    (base / "stays" / "work" / "go").touch()
    assert wait_terminal(fresh, handle, 30.0).state is JobState.SUCCEEDED
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the job's process is still there")


def test_a_forked_shim_killed_before_its_result_makes_the_job_lost_and_stops_it(
    runner: ProcessRunner, base: Path
) -> None:
    token = f"squall-lost-{uuid.uuid4().hex}"
    handle = runner.submit(JobSpec(name="lost", command=sh(f"{LOOP} # {token}")))
    doc = read_json(str(base / "lost" / "pid"))
    assert doc is not None
    os.kill(doc["owner_pid"], signal.SIGKILL)
    status = wait_terminal(runner, handle, 30.0)
    assert status.state is JobState.LOST, status
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the orphaned job was not stopped")
    stat = proc_stat(doc["owner_pid"])
    assert stat is None or stat.state in ("Z", "X") or stat.start != doc["owner_start"]


def test_a_job_whose_shim_dies_before_its_exec_never_runs_and_leaves_no_record(tmp_path: Path) -> None:
    # The job's process writes its own record, then execs only if its shim still lives: here
    # the "shim" is killed while the record is written (as a launcher giving up on the start
    # would kill it), so the command never runs and the record is taken back.
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        sys.path.append(sys.argv[1])
        import shim
        where = sys.argv[2]

        def record(pid, start):
            open(f"{where}/pid", "w").write(str(pid))
            os.kill(os.getppid(), signal.SIGKILL)  # the shim dies now
            while os.getppid() == shim_pid:
                time.sleep(0.001)

        def unrecord():
            os.rename(f"{where}/pid", f"{where}/unrecorded")

        shim_pid = os.getpid()
        shim._spawn(["sh", "-c", f"touch {where}/ran"], where, dict(os.environb), 1, 2, record, unrecord)
        """
    )
    shim_dir = str(Path(forkserver.__file__).parent)
    done = subprocess.run([sys.executable, "-I", "-c", script, shim_dir, str(tmp_path)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    wait_until(lambda: (tmp_path / "unrecorded").exists(), 10.0, "the orphaned child kept its record")
    assert not (tmp_path / "pid").exists() and not (tmp_path / "ran").exists()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent_of(int(entry.name)) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def test_a_fork_server_killed_with_its_spare_is_replaced_by_the_next_submit(runner: ProcessRunner) -> None:
    first = runner.submit(JobSpec(name="first", command=sh("echo one")))
    assert wait_terminal(runner, first, 30.0).state is JobState.SUCCEEDED
    assert forkserver._server is not None
    dead = forkserver._server.process
    wait_until(lambda: len(children_of(dead.pid)) == 1, 10.0, "the server has no spare shim waiting")
    (spare,) = children_of(dead.pid)
    os.kill(spare, signal.SIGKILL)
    dead.kill()
    dead.wait(timeout=10)
    wait_until(lambda: not alive(spare, None, None), 10.0, "the spare survived SIGKILL")
    second = runner.submit(JobSpec(name="second", command=sh("echo two")))
    assert wait_terminal(runner, second, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, second)] == ["two"]


def test_a_request_the_server_dropped_unanswered_is_retried(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that dies with a request queued drops its descriptors: the answer pipe ends
    # without a pid. Nothing started, so the launcher's retry policy tries again.
    real, calls = forkserver.spawn_shim, [0]

    def dropping(job_dir: str, config: bytes) -> forkserver.ForkedShim:
        calls[0] += 1
        if calls[0] > 1:
            return real(job_dir, config)
        read, write = os.pipe()
        os.close(write)  # the end the dead server held
        return forkserver.ForkedShim(os.dup(read), os.fdopen(read, "rb", buffering=0))

    monkeypatch.setattr(forkserver, "spawn_shim", dropping)
    runner = ProcessRunner(base, sleep=lambda _seconds: None)
    handle = runner.submit(JobSpec(name="dropped", command=sh("echo again")))
    assert calls[0] == 2
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == ["again"]


def test_a_job_of_a_forked_shim_can_wait_for_its_own_children(runner: ProcessRunner) -> None:
    # The fork server ignores SIGCHLD (the kernel reaps its shims); an ignored SIGCHLD would
    # be inherited through exec, and the job's own waits would find no child (exit 127).
    script = 'sh -c "exit 3" & wait $!; echo "waited $?"; grep SigIgn /proc/self/status'
    handle = runner.submit(JobSpec(name="waits", command=sh(script)))
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    lines = [r.text for r in read_logs(runner, handle)]
    assert lines[0] == "waited 3", lines
    ignored = int(lines[1].split()[1], 16)
    assert not ignored & (1 << (signal.SIGCHLD - 1)), lines

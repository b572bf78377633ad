"""A job's status: from this process's watcher, else the job directory; finalization; the ``exit`` file.

Theory of operation
-------------------
``poll`` answers from memory for a job watched by this process (RUNNING until ``exit`` is
written, then the watcher wakes :meth:`ProcessRunner.wait` at once). Otherwise it reads
``exit`` when it exists (one small read; the parsed status is cached by content). Otherwise,
when the shim's ``result`` exists, the job ended and whoever watched it died before
recording it: this poll finalizes it (:func:`finalize`: outputs copied, ``exit`` written,
under the directory's flock) and reports the true status. Otherwise the job is RUNNING while
its owner (its shim; for a job started by an earlier version, the runner process that read
its pipes) is alive, whichever process asks. An owner gone without a ``result`` means the
job's output and exit status are lost for good: the job is LOST, and what is left of its
process group is stopped so it does not run alongside the retry the control plane will
submit. Polling a running job costs a few small reads (no subprocess). A handle names the
job it was given for (its id, also in ``pid``, ``result`` and ``exit``): a directory that
now holds another job answers LOST for the old handle.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runners.base import Failure, JobHandle, JobState, JobStatus, Resources, RunnerError
from runners.process import registry
from runners.process.files import dumps, parse_json, read_bytes, read_json, write_atomic
from runners.process.layout import (
    CANCELLED,
    EXIT,
    JOB,
    PID,
    RESULT,
    Claim,
    claim_busy,
    copy_outputs,
    path_from_file_uri,
)
from runners.process.procs import PidInfo, alive, group_alive, terminate

if TYPE_CHECKING:
    from runners.process.supervisor import Watcher

__all__ = [
    "describe_exit",
    "exit_doc",
    "finalize",
    "job_id",
    "legacy_id",
    "owner_alive",
    "record_cancelled_before_start",
    "recorded_grace",
    "status",
    "status_from_exit",
    "token_of",
    "write_exit",
]


# -------------------------------------------------------------------------------- the exit file


def exit_doc(
    state: JobState,
    failure: Failure | None,
    exit_code: int | None,
    reason: str | None,
    started: datetime | None,
    ended: datetime | None,
    output_files: Mapping[str, str] | None = None,
    *,
    token: str | None,
) -> dict[str, Any]:
    return {
        "id": token,
        "state": state.value,
        "failure": failure.value if failure else None,
        "exit_code": exit_code,
        "reason": reason,
        "started": started.isoformat() if started else None,
        "ended": ended.isoformat() if ended else None,
        "output_files": dict(output_files or {}),
    }


def status_from_exit(doc: Mapping[str, Any]) -> JobStatus:
    started = datetime.fromisoformat(doc["started"]) if doc.get("started") else None
    ended = datetime.fromisoformat(doc["ended"]) if doc.get("ended") else None
    wall = max((ended - started).total_seconds(), 0.0) if started and ended else 0.0
    return JobStatus(
        state=JobState(doc["state"]),
        failure=Failure(doc["failure"]) if doc.get("failure") else None,
        exit_code=doc.get("exit_code"),
        reason=doc.get("reason"),
        output_files=dict(doc.get("output_files") or {}),
        resources=Resources(vcpu_seconds=wall),
        started=started,
        ended=ended,
    )


def write_exit(job_dir: str, doc: Mapping[str, Any]) -> JobStatus:
    """Record a terminal status (atomically) and remember it parsed; returns it."""
    raw = dumps(doc)
    write_atomic(f"{job_dir}/{EXIT}", raw)
    written = status_from_exit(doc)
    registry.cache_exit(job_dir, raw, written, doc.get("id"))
    return written


def describe_exit(code: int) -> tuple[int, str]:
    """Popen's returncode as a shell would report it: -9 becomes 137 "killed by signal SIGKILL"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return 128 - code, f"killed by signal {name}"
    return code, f"exit code {code}"


def record_cancelled_before_start(
    job_dir: str, clock: Callable[[], datetime], token: str | None = None
) -> None:
    now = clock()
    token = token or legacy_id(job_dir) or os.urandom(16).hex()
    doc = exit_doc(
        JobState.CANCELLED, Failure.CANCELLED, None, "cancelled before start", now, now, token=token
    )
    write_exit(job_dir, doc)
    registry.notify()


# -------------------------------------------------------------------------------- which job


def job_id(job_dir: str) -> str:
    """The id of the job that was started in ``job_dir`` ("" if none)."""
    watcher = registry.active_watcher(job_dir)
    if watcher is not None:
        return watcher.token
    for name in (PID, EXIT):
        doc = read_json(f"{job_dir}/{name}")
        if doc is not None and doc.get("id"):
            return str(doc["id"])
    return legacy_id(job_dir) or ""


def legacy_id(job_dir: str) -> str | None:
    """The id recorded by earlier versions, in ``job.json`` rather than in ``pid`` and ``exit``."""
    job = read_json(f"{job_dir}/{JOB}")
    return str(job["id"]) if job and job.get("id") else None


def token_of(job_dir: str, doc: Mapping[str, Any]) -> str | None:
    token = doc.get("id")
    return str(token) if token else legacy_id(job_dir)


def recorded_grace(job_dir: str, pid_doc: Mapping[str, Any], default: float) -> float:
    """The grace period the job was submitted with (``default`` if none is recorded)."""
    grace = pid_doc.get("grace")
    if not isinstance(grace, int | float):
        grace = (read_json(f"{job_dir}/{JOB}") or {}).get("grace")  # written by earlier versions
    return float(grace) if isinstance(grace, int | float) else default


# -------------------------------------------------------------------------------- the status


def _another_job(job_dir: str) -> JobStatus:
    return JobStatus(JobState.LOST, Failure.LOST, reason=f"job directory {job_dir} now holds another job")


def _from_watcher(watcher: Watcher, handle: JobHandle) -> JobStatus | None:
    """RUNNING from memory; None once the job is finalized (its shim exited: finalized here,
    now), then its ``exit`` file tells."""
    if handle.id and handle.id != watcher.token:
        return _another_job(watcher.job_dir)
    if watcher.finish_if_ended():
        return None
    return watcher.running


def _from_exit(job_dir: str, raw: bytes, handle: JobHandle) -> JobStatus | None:
    """The status an ``exit`` file holds (parsed once per content), or None if unreadable."""
    cached = registry.cached_exit(job_dir)
    if cached is not None and cached[0] == raw:
        parsed, token = cached[1], cached[2]
    else:
        doc = parse_json(raw)
        if doc is None:
            return None
        parsed = status_from_exit(doc)
        token = token_of(job_dir, doc)
        registry.cache_exit(job_dir, raw, parsed, token)
    if handle.id and token and token != handle.id:
        return _another_job(job_dir)
    return parsed


def status(job_dir: str, handle: JobHandle, clock: Callable[[], datetime]) -> JobStatus:
    watcher = registry.active_watcher(job_dir)
    if watcher is not None and (found := _from_watcher(watcher, handle)) is not None:
        return found  # watched here: answered from memory
    exit_path = f"{job_dir}/{EXIT}"
    if (raw := read_bytes(exit_path)) is not None and (found := _from_exit(job_dir, raw, handle)):
        return found
    if not os.path.isdir(job_dir):
        return JobStatus(JobState.LOST, Failure.LOST, reason=f"job directory {job_dir} not found")
    doc = read_json(f"{job_dir}/{PID}")
    if doc is None:
        if claim_busy(job_dir):
            return JobStatus(JobState.STARTING)
        if (raw := read_bytes(exit_path)) is not None and (found := _from_exit(job_dir, raw, handle)):
            return found
        return JobStatus(
            JobState.LOST, Failure.LOST, reason="the job never started (its submit did not complete)"
        )
    # Look again: a watcher of this process unregisters after writing `exit`, and `exit` may
    # have been written since the first look.
    watcher = registry.active_watcher(job_dir)
    if watcher is not None and (found := _from_watcher(watcher, handle)) is not None:
        return found
    if (raw := read_bytes(exit_path)) is not None and (found := _from_exit(job_dir, raw, handle)):
        return found
    token = token_of(job_dir, doc)
    if handle.id and token and token != handle.id:
        return _another_job(job_dir)
    if os.path.exists(f"{job_dir}/{RESULT}"):  # the job ended; whoever watched it did not finalize
        return finalize(job_dir, doc, clock)
    info = PidInfo.from_json(doc)
    if owner_alive(info):
        return JobStatus(JobState.RUNNING, started=info.started)
    return finalize(job_dir, doc, clock)


def owner_alive(info: PidInfo) -> bool:
    """Whether the job's owner lives: its shim (or, for a job started by an earlier version, the
    runner process whose pump read its pipes; never this process, which would have it registered)."""
    if info.owner_pid == os.getpid():
        return False
    return alive(info.owner_pid, info.owner_start, info.boot)


def finalize(job_dir: str, pid_doc: Mapping[str, Any], clock: Callable[[], datetime]) -> JobStatus:
    """Record the terminal status of a job whose owner is gone (or about to be), under the claim.

    With the shim's ``result``: copy the outputs and record what it says (SUCCEEDED, FAILED
    with the real exit code, TIMEOUT, CANCELLED). Without one, the shim died first: whatever is
    left of the job's group is stopped (it must not run beside the retry the control plane will
    submit) and the job is LOST (CANCELLED when a cancel was asked). Idempotent: an ``exit``
    already written (by another process, or the watcher) is returned as is.
    """
    with Claim(job_dir):
        if (raw := read_bytes(f"{job_dir}/{EXIT}")) is not None and (doc := parse_json(raw)) is not None:
            return status_from_exit(doc)
        info = PidInfo.from_json(pid_doc)
        token = token_of(job_dir, pid_doc)
        result = read_json(f"{job_dir}/{RESULT}")
        if result is not None and (not token or result.get("id") in (None, token)):
            doc = _exit_from_result(job_dir, pid_doc, info, token, result, clock)
        else:
            doc = _exit_of_orphan(job_dir, info, token, clock)
        found = write_exit(job_dir, doc)
    registry.notify()
    return found


def _exit_from_result(
    job_dir: str,
    pid_doc: Mapping[str, Any],
    info: PidInfo,
    token: str | None,
    result: Mapping[str, Any],
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    returncode = result.get("returncode")
    ended = _when(result.get("ended")) or clock()
    if not isinstance(returncode, int):
        lost = str(result.get("error") or "the job's supervisor recorded no exit status")
        return exit_doc(JobState.LOST, Failure.LOST, None, lost, info.started, ended, token=token)
    exit_code, why = describe_exit(returncode)
    failure: Failure | None
    reason: str | None
    if result.get("cancelled"):
        state, failure, reason = JobState.CANCELLED, Failure.CANCELLED, "cancelled"
    elif result.get("timed_out"):
        state, failure = JobState.FAILED, Failure.TIMEOUT
        timeout = pid_doc.get("timeout")
        took = f"{timeout:g}s" if isinstance(timeout, int | float) else "its timeout"
        reason = f"timed out after {took}"
    elif returncode == 0:
        state, failure, reason = JobState.SUCCEEDED, None, None
    else:
        state, failure, reason = JobState.FAILED, Failure.USER, why
    if result.get("error"):
        reason = f"{reason + '; ' if reason else ''}{result['error']}"
    prefix = pid_doc.get("output_prefix")
    patterns = pid_doc.get("output_files") or []
    try:
        prefix_dir = path_from_file_uri(prefix) if isinstance(prefix, str) else None
        outputs = copy_outputs(job_dir, [str(p) for p in patterns], prefix_dir)
    except (OSError, RunnerError) as exc:
        outputs = {}
        if state is JobState.SUCCEEDED:  # a staging error: the job cannot deliver what it was asked to
            state, failure = JobState.FAILED, Failure.CONFIG
        reason = f"{reason + '; ' if reason else ''}could not copy output files: {exc}"
    return exit_doc(state, failure, exit_code, reason, info.started, ended, outputs, token=token)


def _exit_of_orphan(
    job_dir: str, info: PidInfo, token: str | None, clock: Callable[[], datetime]
) -> dict[str, Any]:
    still_running = alive(info.pid, info.start, info.boot) or group_alive(info.pid)
    if still_running:
        terminate(info, 0.0)
    now = clock()
    if os.path.exists(f"{job_dir}/{CANCELLED}"):
        reason = "cancelled"
        return exit_doc(JobState.CANCELLED, Failure.CANCELLED, None, reason, info.started, now, token=token)
    if still_running:
        reason = (
            f"the process (pid {info.owner_pid}) supervising this job is gone, so its output can "
            "no longer be captured; the orphaned process was stopped"
        )
    else:
        reason = (
            f"the job's process vanished without an exit status (its supervising process, "
            f"pid {info.owner_pid}, is gone)"
        )
    return exit_doc(JobState.LOST, Failure.LOST, None, reason, info.started, now, token=token)


def _when(raw: object) -> datetime | None:
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None

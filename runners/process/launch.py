"""Launching: a spec checked before anything touches the disk, then prepared, spawned and handed over.

Theory of operation
-------------------
``submit`` creates the job directory (``os.mkdir``) and flocks it; whoever holds the lock
while neither ``pid`` nor ``exit`` exists prepares the directory and spawns
(:meth:`Launcher.start`). So two submits of one name (threads, instances or processes) start
one process, and a submit that failed half-way (fork kept failing with EAGAIN, or the runner
crashed) leaves a directory that the next submit takes over. ``pid`` is written (atomically)
before the lock is released and before ``submit`` returns: nobody can observe a running job
without it. A command that cannot start (not found, not executable) is data, a START_FAILED
``exit``; only transient spawn errors are retried, under the runner's retry policy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from msgspec import Struct

from runners import retry
from runners.base import Failure, JobHandle, JobSpec, JobState, Runner, RunnerError, validate_options
from runners.process import pool, registry
from runners.process.files import dumps, file_uri, mkdir_fresh, write_atomic
from runners.process.layout import (
    CANCELLED,
    OUT,
    OUTPUTS,
    PID,
    WORK,
    check_name,
    path_from_file_uri,
    relative,
)
from runners.process.options import ProcessOptions
from runners.process.procs import PidInfo, boot_id, proc_stat, self_start
from runners.process.status import exit_doc, record_cancelled_before_start, write_exit
from runners.process.supervisor import Pump

__all__ = ["Launcher", "Plan", "make_handle"]


class Plan(Struct, frozen=True):
    """A validated spec and what follows from it, before anything touches the disk."""

    spec: JobSpec
    job_dir: str
    grace: float
    prefix_dir: Path | None  # None: <job_dir>/outputs
    inputs: tuple[tuple[PurePosixPath, bytes], ...]


class _StartFailure(Struct, frozen=True):
    exit_code: int
    reason: str


def make_handle(runner: str, job_dir: str, token: str) -> JobHandle:
    return JobHandle(name=os.path.basename(job_dir), runner=runner, id=token, data={"dir": job_dir})


def _child_env(extra: Mapping[str, str], work: str, out: str) -> dict[bytes, bytes]:
    """This process's environment plus the job's, as bytes: what Popen hands to exec anyway
    (it encodes every str variable of a str environment on each spawn)."""
    # os.environb's own dict when it has one (CPython: a plain C-level copy, where copying
    # the mapping goes through Python methods per variable); equal content either way.
    data = getattr(os.environb, "_data", None)
    env = data.copy() if isinstance(data, dict) else os.environb.copy()
    for key, value in extra.items():
        env[os.fsencode(key)] = os.fsencode(str(value))
    env[b"WORKING_DIR"] = os.fsencode(work)
    env[b"OUTPUT_DIR"] = os.fsencode(out)
    return env


class Launcher:
    """Plans and starts jobs for one runner: its ``base_dir``, spawn seam, retry policy and defaults."""

    def __init__(
        self,
        runner_cls: type[Runner],
        base: str,
        *,
        spawn: Callable[..., subprocess.Popen[bytes]],
        policy: retry.RetryPolicy,
        sleep: Callable[[float], None],
        grace: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._runner_cls = runner_cls
        self.name = runner_cls.name
        self._base = base
        self._spawn = spawn
        self._policy = policy
        self._sleep = sleep
        self._grace = grace
        self._clock = clock
        self._defaults = validate_options(runner_cls, {})

    def plan(self, spec: JobSpec) -> Plan:
        check_name(spec.name)
        options = validate_options(self._runner_cls, spec.options) if spec.options else self._defaults
        assert isinstance(options, ProcessOptions)
        if not spec.command or not all(isinstance(a, str) and "\0" not in a for a in spec.command):
            raise RunnerError("command must be a non-empty argv of strings without NUL", runner=self.name)
        for key, value in spec.env.items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                raise RunnerError(f"invalid environment variable {key!r}", runner=self.name)
        inputs = tuple((relative(name, "input file"), data) for name, data in spec.input_files.items())
        for name, data in spec.input_files.items():
            if not isinstance(data, bytes | bytearray):
                kind = type(data).__name__
                raise RunnerError(f"input file {name!r} must be bytes, not {kind}", runner=self.name)
        for pattern in spec.output_files:
            relative(pattern, "output file pattern")
        if spec.timeout is not None and spec.timeout <= timedelta(0):
            raise RunnerError(f"timeout must be positive, got {spec.timeout}", runner=self.name)
        job_dir = f"{self._base}/{spec.name}"
        prefix_dir = path_from_file_uri(spec.output_prefix) if spec.output_prefix is not None else None
        grace = options.grace_period if options.grace_period is not None else self._grace
        return Plan(spec, job_dir, grace.total_seconds(), prefix_dir, inputs)

    def start(self, plan: Plan, dir_stat: os.stat_result) -> JobHandle:
        """Prepare the (claimed, unstarted) job directory and spawn; called under the claim."""
        spec, job_dir = plan.spec, plan.job_dir
        submitted = self._clock()
        token = os.urandom(16).hex()
        handle = make_handle(self.name, job_dir, token)
        if os.path.exists(f"{job_dir}/{CANCELLED}"):  # cancelled while a previous submit was failing
            record_cancelled_before_start(job_dir, self._clock, token)
            return handle
        work, out = f"{job_dir}/{WORK}", f"{job_dir}/{OUT}"
        mkdir_fresh(work)
        mkdir_fresh(out)
        try:
            for rel, data in plan.inputs:
                target = f"{work}/{rel}"
                if len(rel.parts) > 1:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)
        except OSError as exc:
            raise RunnerError(f"cannot write input files: {exc}", runner=self.name) from exc
        env = _child_env(spec.env, work, out)
        result = self._spawn_retrying(spec.command, work, env)
        started = self._clock()
        if isinstance(result, _StartFailure):
            doc = exit_doc(
                JobState.FAILED,
                Failure.START_FAILED,
                result.exit_code,
                result.reason,
                started,
                started,
                token=token,
            )
            write_exit(job_dir, doc)
        else:
            summary = self._summary(plan, token, submitted)
            self._supervise(plan, result, started, summary, (dir_stat.st_dev, dir_stat.st_ino))
        registry.notify()
        return handle

    def _summary(self, plan: Plan, token: str, submitted: datetime) -> dict[str, Any]:
        """What ``pid`` records about the job besides its processes (no env values: secrets)."""
        spec = plan.spec
        return {
            "id": token,
            "name": spec.name,
            "command": list(spec.command),
            "image": spec.image,
            "env_keys": sorted(spec.env),
            "input_files": sorted(spec.input_files),
            "output_files": list(spec.output_files),
            "output_prefix": file_uri(plan.prefix_dir or f"{plan.job_dir}/{OUTPUTS}") + "/",
            "timeout": spec.timeout.total_seconds() if spec.timeout is not None else None,
            "grace": plan.grace,
            "labels": dict(spec.labels),
            "submitted": submitted.isoformat(),
        }

    def _supervise(
        self,
        plan: Plan,
        proc: subprocess.Popen[bytes],
        started: datetime,
        summary: dict[str, Any],
        dir_id: tuple[int, int],
    ) -> None:
        """Record the pid and hand the child to a pump (which creates its files while the job runs)."""
        job_dir = plan.job_dir
        pump: Pump | None = None
        try:
            stat = proc_stat(proc.pid)
            info = PidInfo(
                pid=proc.pid,
                start=stat.start if stat else None,
                boot=boot_id(),
                owner_pid=os.getpid(),
                owner_start=self_start(),
                started=started,
            )
            pump = Pump(
                job_dir=job_dir,
                proc=proc,
                info=info,
                token=summary["id"],
                spec=plan.spec,
                grace=plan.grace,
                prefix_dir=plan.prefix_dir,
                clock=self._clock,
                dir_id=dir_id,
            )
            # Registered before the pid file exists, unregistered after the exit file exists: a
            # poll in this process never sees a pid file without a live pump or an exit file.
            registry.register(job_dir, pump)
            write_atomic(f"{job_dir}/{PID}", dumps({**summary, **info.to_json()}))
            pool.dispatch(pump.run)
            pump.dispatched = True
        except BaseException as exc:
            # Even a KeyboardInterrupt here must not leave an unsupervised child behind: stop it
            # and leave the directory as "never started", for a later submit to take over.
            if pump is None or not pump.dispatched:
                registry.unregister(job_dir, pump)
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the pid is still ours
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{job_dir}/{PID}")
            if isinstance(exc, Exception) and not isinstance(exc, RunnerError):
                raise RunnerError(f"cannot start supervising the job: {exc}", runner=self.name) from exc
            raise

    def _spawn_retrying(
        self, command: Sequence[str], cwd: str, env: Mapping[bytes, bytes]
    ) -> subprocess.Popen[bytes] | _StartFailure:
        """:meth:`_spawn_once` under the retry policy; the first attempt skips the retry machinery."""
        try:
            return self._spawn_once(command, cwd, env)
        except Exception as exc:
            first: Exception | None = exc

        def attempt(*args: Any) -> subprocess.Popen[bytes] | _StartFailure:
            nonlocal first
            if first is not None:  # the attempt above, replayed: same count, same messages
                failed, first = first, None
                raise failed
            return self._spawn_once(*args)

        return retry.call(
            attempt,
            command,
            cwd,
            env,
            policy=self._policy,
            sleep=self._sleep,
            runner=self.name,
            what=f"spawning {command[0]!r}",
        )

    def _spawn_once(
        self, command: Sequence[str], cwd: str, env: Mapping[bytes, bytes]
    ) -> subprocess.Popen[bytes] | _StartFailure:
        """One spawn attempt. A job that cannot start is data (START_FAILED), not an exception;
        transient errors (EAGAIN from fork...) propagate to the retry loop."""
        try:
            return self._spawn(
                list(command),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            return _StartFailure(127, f"command not found: {command[0]}")
        except PermissionError as exc:
            return _StartFailure(126, f"command not executable: {command[0]} ({exc.strerror})")
        except OSError as exc:
            if retry.is_transient(exc):
                raise
            return _StartFailure(126, f"cannot execute {command[0]}: {exc.strerror or exc}")

"""Launching: a spec checked before anything touches the disk, then prepared, started and handed over.

Theory of operation
-------------------
``submit`` creates the job directory (``os.mkdir``) and flocks it; whoever holds the lock
while neither ``pid`` nor ``exit`` exists prepares the directory and starts the job's shim
(:meth:`Launcher.start`). So two submits of one name (threads, instances or processes) start
one job, and a submit that failed half-way (fork kept failing with EAGAIN, or the runner
crashed) leaves a directory that the next submit takes over.

The shim (:mod:`.shim`) is started with ``sys.executable -I -S`` in a session of its own and
gets its configuration, the job's environment included, through its stdin pipe. It writes
``pid`` before the job may exec and answers with one line; ``submit`` returns after that
answer, under the lock, so nobody can observe a running job without ``pid``. A command that
cannot start (not found, not executable) is data, a START_FAILED ``exit``; only transient
errors (EAGAIN from fork, here or in the shim) are retried, under the runner's retry policy.
A start that fails half-way (even by KeyboardInterrupt) stops the shim and, if ``pid``
names one, the job, and surfaces the real error. A running job is then handed to a
:class:`~runners.process.supervisor.Watcher`.

A start can also be readied ahead (:meth:`Launcher.ready`, under the claim, which the runner
holds until then): the directory laid out, a shim forked with its configuration but not the
go byte, so the control plane's write that records the job overlaps the shim's preparation;
:meth:`Launcher.go` writes the byte and reads the answer as above, :meth:`Launcher.abort`
closes the pipe instead and waits for the shim to exit (ADR 0019).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import marshal
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from msgspec import Struct

from runners import retry
from runners.base import Failure, JobHandle, JobSpec, JobState, Runner, RunnerError, validate_options
from runners.process import forkserver, pool, registry
from runners.process import shim as _shim
from runners.process.files import dumps, file_uri, mkdir_fresh, read_json
from runners.process.forkserver import ShimProcess
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
from runners.process.procs import PidInfo, boot_id, signal_group
from runners.process.status import exit_doc, record_cancelled_before_start, write_exit
from runners.process.supervisor import Watcher

__all__ = ["SHIM", "Launcher", "Plan", "Ready", "make_handle"]

log = logging.getLogger("runners.process")  # one logger for the whole runner, as before it was a package

SHIM = _shim.__file__
"""The shim's file, imported by ``<sys.executable> -I -S -c shim.BOOT <its directory> <job_dir>``."""
_SHIM_DIR = os.path.dirname(SHIM)
_HANDSHAKE_TIMEOUT = 60.0  # seconds for a shim to start the job and answer (a loaded machine is slow)
_ABORT_WAIT = 5.0  # seconds a called-off shim gets to exit before it is killed


class Plan(Struct, frozen=True):
    """A validated spec and what follows from it, before anything touches the disk."""

    spec: JobSpec
    job_dir: str
    grace: float
    prefix_dir: Path | None  # None: <job_dir>/outputs
    inputs: tuple[tuple[PurePosixPath, bytes], ...]
    input_uris: tuple[tuple[PurePosixPath, str], ...] = ()


class Ready:
    """A start readied by :meth:`Launcher.ready`: its handle, its shim waiting for the go byte."""

    __slots__ = ("config", "handle", "program", "shim")

    def __init__(self, handle: JobHandle, config: bytes, shim: ShimProcess, program: str) -> None:
        self.handle, self.config, self.shim, self.program = handle, config, shim, program


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
        spawn: Callable[..., subprocess.Popen[bytes]] | None,
        policy: retry.RetryPolicy,
        sleep: Callable[[float], None],
        grace: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._runner_cls = runner_cls
        self.name = runner_cls.name
        self._base = base
        # None: shims are forked by this process's fork server when the platform allows it.
        self._spawn = spawn if spawn is not None or forkserver.available() else subprocess.Popen
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
        uris = tuple((relative(name, "input file"), uri) for name, uri in spec.input_uris.items())
        for pattern in spec.output_files:
            relative(pattern, "output file pattern")
        if spec.timeout is not None and spec.timeout <= timedelta(0):
            raise RunnerError(f"timeout must be positive, got {spec.timeout}", runner=self.name)
        job_dir = f"{self._base}/{spec.name}"
        prefix_dir = path_from_file_uri(spec.output_prefix) if spec.output_prefix is not None else None
        grace = options.grace_period if options.grace_period is not None else self._grace
        return Plan(spec, job_dir, grace.total_seconds(), prefix_dir, inputs, uris)

    def start(self, plan: Plan, fresh: bool = False) -> JobHandle:
        """Prepare the (claimed, unstarted) job directory and start its shim; called under the claim.

        ``fresh``: the job directory was just created, empty (the shim then makes its
        subdirectories itself, off this thread's way, when no input file goes there first)."""
        spec, job_dir = plan.spec, plan.job_dir
        submitted = self._clock()
        token = os.urandom(16).hex()
        handle = make_handle(self.name, job_dir, token)
        if os.path.exists(f"{job_dir}/{CANCELLED}"):  # cancelled while a previous submit was failing
            record_cancelled_before_start(job_dir, self._clock, token)
            return handle
        mkdirs = self._lay_out(plan, fresh)
        staging_error = _stage(plan.input_uris, job_dir + "/" + WORK)
        if staging_error is not None:  # the job cannot run as specified: it ends at once, CONFIG
            now = self._clock()
            write_exit(
                job_dir, exit_doc(JobState.FAILED, Failure.CONFIG, None, staging_error, now, now, token=token)
            )
            registry.notify()
            return handle
        config = self._config(plan, token, submitted, mkdirs)
        return self._started(handle, self._spawn_retrying(job_dir, config, spec.command[0]))

    def ready(self, plan: Plan, fresh: bool = False) -> Ready | None:
        """Ready the (claimed, unstarted) job's start without starting it: its directory laid out
        and its shim forked and configured, waiting for :meth:`go`; called under the claim.

        What a store write must precede (the job's start) waits for ``go``; the rest is done
        here, while that write is made durable. None when there is nothing worth readying
        (a cancelled job, files to stage: :meth:`start` does it all) or no shim could be
        forked now (:meth:`start` retries).
        """
        spec, job_dir = plan.spec, plan.job_dir
        if self._spawn is not None or plan.input_uris or os.path.exists(f"{job_dir}/{CANCELLED}"):
            return None
        submitted = self._clock()
        token = os.urandom(16).hex()
        config = self._config(plan, token, submitted, self._lay_out(plan, fresh))
        try:
            shim = forkserver.spawn_shim(job_dir, config, hold=True)
        except OSError:
            return None
        return Ready(make_handle(self.name, job_dir, token), config, shim, spec.command[0])

    def go(self, ready: Ready, meanwhile: Callable[[], None] | None = None) -> JobHandle:
        """Start a readied job (its shim forks it now): what :meth:`start` returns. A shim that
        cannot start it for a transient reason is replaced under the retry policy.

        ``meanwhile`` is called once the shim was told to go, before its answer is awaited
        (the caller's own wait, the store's fsync, overlaps the job's start); what it raises
        is raised once the job is watched, never instead of watching it."""
        job_dir, program = ready.handle.data["dir"], ready.program
        failed: list[BaseException] = []

        def guarded() -> None:
            if meanwhile is not None:
                try:
                    meanwhile()
                except BaseException as exc:
                    failed.append(exc)

        try:
            result = self._answer(ready.shim, job_dir, ready.config, program, guarded)
        except OSError as exc:
            if not retry.is_transient(exc):
                raise
            result = self._spawn_retrying(job_dir, ready.config, program)
        handle = self._started(ready.handle, result)
        if failed:
            raise failed[0]
        return handle

    @staticmethod
    def abort(ready: Ready) -> None:
        """Call a readied start off: its shim exits without starting the job, and is gone on return."""
        shim = ready.shim
        if shim.stdin is not None:
            with contextlib.suppress(OSError):
                shim.stdin.close()  # end of file in place of the go byte
        try:
            shim.wait(timeout=_ABORT_WAIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                shim.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                shim.wait(timeout=_ABORT_WAIT)
        _reap_pipes(shim)

    def _lay_out(self, plan: Plan, fresh: bool) -> list[str]:
        """The job's fresh work and output directories, its input files written; or, in a
        ``fresh`` job directory with no input file (the usual case), the directories for the
        shim to make (what this returns): two mkdirs less on the way from one task to the next."""
        work, out = f"{plan.job_dir}/{WORK}", f"{plan.job_dir}/{OUT}"
        if fresh and not plan.inputs and not plan.input_uris:
            return [work, out]
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
        return []

    def _config(self, plan: Plan, token: str, submitted: datetime, mkdirs: list[str]) -> bytes:
        """What the shim reads on its stdin: the framed configuration, then the go byte."""
        spec = plan.spec
        work, out = f"{plan.job_dir}/{WORK}", f"{plan.job_dir}/{OUT}"
        config = marshal.dumps(
            {
                "argv": list(spec.command),
                "cwd": work,
                "env": _child_env(spec.env, work, out),
                "timeout": spec.timeout.total_seconds() if spec.timeout is not None else None,
                "grace": plan.grace,
                "token": token,
                "summary": dumps(self._summary(plan, token, submitted)),
                "boot": boot_id(),
                "submitter": os.getpid(),
                "mkdirs": mkdirs,
            }
        )
        return _shim.frame(config) + _shim.GO

    def _started(
        self, handle: JobHandle, result: tuple[ShimProcess, dict[str, Any]] | _StartFailure
    ) -> JobHandle:
        """Record a start that failed, or hand the running job's shim to a watcher."""
        job_dir, token = handle.data["dir"], handle.id
        if isinstance(result, _StartFailure):
            started = self._clock()
            doc = exit_doc(
                JobState.FAILED,
                Failure.CONFIG,
                result.exit_code,
                result.reason,
                started,
                started,
                token=token,
            )
            write_exit(job_dir, doc)
            registry.notify()
        else:
            self._watch(job_dir, *result)
            # Not a change to report (the job runs, as submit says): the threads waiting now
            # only need to follow it too. The submitting thread's next wait then blocks until
            # the job ends, instead of returning at once for a step with nothing to do.
            registry.wake_waiters()
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

    def _watch(self, job_dir: str, shim: ShimProcess, pid_doc: dict[str, Any]) -> None:
        """Hand the running job's shim to a watcher: followed by whoever waits or polls, or on a
        pool thread when the shim is this process's child (:mod:`.supervisor`)."""
        watcher: Watcher | None = None
        try:
            watcher = Watcher(job_dir=job_dir, shim=shim, pid_doc=pid_doc, clock=self._clock)
            registry.register(job_dir, watcher)
            if not watcher.polled:
                pool.dispatch(watcher.run)
            watcher.dispatched = True
        except BaseException:
            # The job runs under its shim whatever happens here: without a watcher, polls
            # (from any process) follow it through its files. Only this process's bookkeeping
            # is undone; the shim is reaped by nobody until this process exits (a zombie).
            registry.unregister(job_dir, watcher)
            raise

    def _spawn_retrying(
        self, job_dir: str, config: bytes, program: str
    ) -> tuple[ShimProcess, dict[str, Any]] | _StartFailure:
        """:meth:`_spawn_once` under the retry policy; the first attempt skips the retry machinery."""
        try:
            return self._spawn_once(job_dir, config, program)
        except Exception as exc:
            first: Exception | None = exc

        def attempt(*args: Any) -> tuple[ShimProcess, dict[str, Any]] | _StartFailure:
            nonlocal first
            if first is not None:  # the attempt above, replayed: same count, same messages
                failed, first = first, None
                raise failed
            return self._spawn_once(*args)

        return retry.call(
            attempt,
            job_dir,
            config,
            program,
            policy=self._policy,
            sleep=self._sleep,
            runner=self.name,
            what=f"spawning {program!r}",
        )

    def _spawn_once(
        self, job_dir: str, config: bytes, program: str
    ) -> tuple[ShimProcess, dict[str, Any]] | _StartFailure:
        """One attempt: start the shim, hand it the configuration, read its answer.

        Returns the shim and the ``pid`` file it wrote, or a START_FAILED (a command that
        cannot start is data, not an exception); transient errors (EAGAIN from fork, in this
        process or in the shim) propagate to the retry loop; anything else is a RunnerError
        carrying the real cause, after the shim (and the job, if it started) are stopped.
        """
        shim: ShimProcess
        try:
            if self._spawn is None:
                shim = forkserver.spawn_shim(job_dir, config)
            else:
                shim = self._spawn(
                    [sys.executable, "-I", "-S", "-c", _shim.BOOT, _SHIM_DIR, job_dir],
                    cwd=job_dir,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            if retry.is_transient(exc):
                raise
            raise RunnerError(f"cannot start the job's supervisor: {exc}", runner=self.name) from exc
        return self._answer(shim, job_dir, config, program)

    def _answer(
        self,
        shim: ShimProcess,
        job_dir: str,
        config: bytes,
        program: str,
        meanwhile: Callable[[], None] | None = None,
    ) -> tuple[ShimProcess, dict[str, Any]] | _StartFailure:
        """The shim's answer (what it has not been given yet is written first; then
        ``meanwhile`` is called): see :meth:`_spawn_once`."""
        try:
            answer = _handshake(shim, config) if meanwhile is None else _handshake(shim, config, meanwhile)
            kind, _, rest = answer.partition(" ")
            if kind == "S":
                pid_doc = read_json(f"{job_dir}/{PID}")
                if pid_doc is None:
                    raise RunnerError("the job's supervisor wrote no pid file", runner=self.name)
                return shim, pid_doc
            if kind == "E":
                code = int(rest.split(" ", 1)[0])
                _reap(shim)
                return _start_failure(OSError(code, os.strerror(code)), program)
            reason = rest or "it exited before starting the job"
            raise RunnerError(f"the job's supervisor failed: {reason}", runner=self.name)
        except BaseException as exc:
            # Even a KeyboardInterrupt here must not leave an unsupervised job behind: stop the
            # shim and the job, and leave the directory as "never started", for a later submit
            # to take over. The cleanup never hides the real error.
            try:
                _abandon(shim, job_dir, config)
            except BaseException:
                log.exception("process runner: cleaning up a failed start of %s failed", job_dir)
            if isinstance(exc, OSError) and retry.is_transient(exc):
                raise
            if isinstance(exc, Exception) and not isinstance(exc, RunnerError):
                raise RunnerError(f"cannot start supervising the job: {exc!r}", runner=self.name) from exc
            raise


def _stage(uris: tuple[tuple[PurePosixPath, str], ...], work: str) -> str | None:
    """Copy each ``input_uris`` file into the working directory; why one could not be, or None.

    Local jobs read ``file://`` URIs (the local deployment's storage). A file that is missing
    or unreadable is the job's failure (CONFIG, naming the file), not the submitter's error:
    the job exists and says why it could not run.
    """
    for rel, uri in uris:
        if not uri.startswith("file://"):
            return f"cannot stage input file {rel} from {uri}: local jobs read file:// URIs only"
        try:
            source = path_from_file_uri(uri)
        except RunnerError as exc:
            return f"cannot stage input file {rel} from {uri}: {exc}"
        target = f"{work}/{rel}"
        try:
            if len(rel.parts) > 1:
                os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            return f"cannot stage input file {rel} from {uri}: {exc.strerror or exc}"
    return None


def _start_failure(exc: OSError, program: str) -> _StartFailure:
    """A job that cannot start, as a shell would report it; transient errors are raised for a retry."""
    if retry.is_transient(exc):
        raise exc
    if isinstance(exc, FileNotFoundError):
        return _StartFailure(127, f"command not found: {program}")
    if isinstance(exc, PermissionError):
        return _StartFailure(126, f"command not executable: {program} ({exc.strerror})")
    return _StartFailure(126, f"cannot execute {program}: {exc.strerror or exc}")


def _handshake(shim: ShimProcess, config: bytes, meanwhile: Callable[[], None] | None = None) -> str:
    """Give the shim its configuration (through the pipe: the environment never touches the
    disk), call ``meanwhile`` (it must not raise) and read the shim's one-line answer."""
    assert shim.stdout is not None
    if shim.stdin is not None:  # None: the fork server's shim got it all with the request
        try:
            shim.stdin.write(shim.unsent if isinstance(shim, forkserver.ForkedShim) else config)
            shim.stdin.close()
        except BrokenPipeError:
            pass  # the shim died: its answer (none) says so
    if meanwhile is not None:
        meanwhile()
    fd = shim.stdout.fileno()
    deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while True:
        line, newline, rest = data.partition(b"\n")
        first = line.decode("utf-8", "replace")
        if newline and isinstance(shim, forkserver.ForkedShim) and shim.heard(first):
            data = rest  # the forked shim's pid (or the server's fork error, raised): the answer follows
            continue
        if newline:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer from the job's supervisor after {_HANDSHAKE_TIMEOUT:g}s")
        if not poller.poll(remaining * 1000):
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            if isinstance(shim, forkserver.ForkedShim) and not _learn_pid(shim):
                # The request went to a server that died before forking a shim for it (its
                # descriptors were dropped with it): nothing started, try again (a new server).
                raise BlockingIOError(errno.EAGAIN, "the fork server went away before starting the job")
            break
        data += chunk
    shim.stdout.close()
    if isinstance(shim, forkserver.ForkedShim):
        _learn_pid(shim)  # written before the answer: there already, read without waiting
    return data.decode("utf-8", errors="replace").strip()


def _learn_pid(shim: forkserver.ForkedShim) -> bool:
    """Whether the forked shim said its pid (on its pid pipe, which the handshake never waits on:
    one wakeup less per job); the server's ``F`` error there is raised."""
    try:
        shim.learn_pid(0.0)
    except TimeoutError:
        pass  # not written (yet)
    except OSError as exc:
        if exc.errno is not None:
            raise  # the server's error
        # end of file: no shim ever had the pipe
    return shim.pid is not None


def _reap(shim: ShimProcess) -> None:
    shim.wait()
    _reap_pipes(shim)


def _reap_pipes(shim: ShimProcess) -> None:
    for pipe in (shim.stdin, shim.stdout, shim.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _token(config: bytes) -> object:
    """The token of a configuration as :meth:`Launcher._config` frames it."""
    return marshal.loads(_shim.unframe(config)).get("token")


def _abandon(shim: ShimProcess, job_dir: str, config: bytes) -> None:
    """Stop a shim whose start failed half-way, and its job if it started one."""
    with contextlib.suppress(OSError):
        shim.kill()  # not reaped yet: the pid is still ours
    _reap(shim)
    doc = read_json(f"{job_dir}/{PID}")
    if doc is not None and doc.get("id") == _token(config):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            signal_group(PidInfo.from_json(doc), signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{job_dir}/{PID}")

"""The per-job supervisor (the "shim", as in containerd-shim): a small detached process that
owns one job from spawn to its ``result`` file, so the job outlives the squall process that
submitted it.

Theory of operation
-------------------
:mod:`.launch` starts ``<sys.executable> -I -S -c <BOOT> <this directory> <job_dir>`` in a new
session (:data:`BOOT` imports this file, so its cached bytecode is used: a script given by
path is compiled again at every run; ``python -I -S shim.py <job_dir>`` works too) and
writes the job's configuration (a :mod:`marshal`-ed dict: argv, cwd, environment, timeout,
grace period, the ``pid`` summary, the subdirectories to make), framed by its length
(:func:`frame`), to the shim's stdin: the environment (secrets included) travels through that
inherited pipe, never through a file. The shim reads it, makes the subdirectories, and waits
for one more byte, :data:`GO`: a start readied ahead of the control plane's write that
records the job gets it only once that write is committed; end of file instead (the start
was called off, or the squall process died) ends the shim with nothing started and nothing
else touched. The shim then

1. creates ``log.jsonl`` and forks the job (its own session: the job's process group is the
   job, which timeout and cancel signal);
2. the child writes ``pid`` (atomically: the summary plus the job's and the shim's pid, start
   time and boot id; the shim is the job's *owner*), checks that the shim still lives, then
   execs: no user code runs without a record of its process (a launcher interrupted half-way
   finds it and stops it), and no wakeup of the shim is needed before the exec. An exec
   failure comes back through a close-on-exec pipe, as with ``subprocess``; then ``pid`` is
   removed. The shim answers on its stdout with one line, and closes it: ``S <pid> <start>``
   (running), ``E <errno> <text>`` (the command could not start) or ``X <message>`` (the
   shim itself failed);
3. reads both pipes with poll(2) (and a pidfd for the exit, when the kernel has them) into
   ``log.jsonl`` in arrival order, enforces the timeout (TERM to the group, grace period,
   KILL), reaps the job, and when leftover background processes hold the pipes open after
   the main process exited, drains them for one more second, then kills the group: like a
   container, a job ends with its main process;
4. writes ``result`` atomically: the raw return code (negative: killed by that signal),
   whether it timed out, whether ``cancelled`` existed when the job was reaped (``cancel``
   signals the group itself, from any process), start and end times, and exits.

The shim is the submitting process's child (that process's watcher reaps it); when that
process dies, the shim is reparented and carries on. Killing the shim makes the job LOST:
the next poll stops what is left of its group.

Everything else (copying outputs, the ``exit`` file, the status) is done by whichever squall
process finalizes the job (:func:`runners.process.status.finalize`).

It starts for every job, so it is stdlib-only and imports little (no msgspec, pydantic or
``runners.base``: ``-S`` leaves site-packages out anyway). The same file is imported as a
module (``runners.process.shim``) for :class:`LineSplitter` and :func:`records`, so a log line
is cut and encoded one way, and for the names of the files both sides use.
"""

from __future__ import annotations

import _signal as signal  # signal.py's C core: signal.py itself imports enum, functools, collections
import errno
import marshal
import os
import select
import sys
import time

TYPE_CHECKING = False  # typing itself costs an import
if TYPE_CHECKING:
    from collections.abc import Callable

    _Recv = Callable[..., tuple[bytes, list[int], int, object]]  # socket.recv_fds

try:
    from _json import encode_basestring  # what json.encoder uses; importing json costs more
except ImportError:  # pragma: no cover - CPython always has _json
    from json.encoder import py_encode_basestring as encode_basestring

__all__ = [
    "BOOT",
    "CANCELLED",
    "DELETE",
    "GO",
    "LOG",
    "MAX_LINE_BYTES",
    "PID",
    "RESULT",
    "SERVE",
    "LineSplitter",
    "frame",
    "iso_now",
    "records",
    "unframe",
]

PID, LOG, RESULT, CANCELLED = "pid", "log.jsonl", "result", "cancelled"

BOOT = "import sys; sys.path.append(sys.argv[1]); import shim; shim.run(sys.argv[2])"
"""The ``-c`` program that starts a shim: ``python -I -S -c BOOT <dir of shim.py> <job_dir>``.
Appended to the path, after the standard library: no file of that directory shadows it."""

SERVE = "import sys; sys.path.append(sys.argv[1]); import shim; shim.serve(int(sys.argv[2]))"
"""The ``-c`` program of the fork server (:func:`serve`): ``python -I -S -c SERVE <dir> <socket fd>``."""

DELETE = "import sys; sys.path.append(sys.argv[1]); import shim; shim.delete_paths()"
"""The ``-c`` program of the deleter (:func:`delete_paths`): ``python -I -S -c DELETE <dir>``."""

MAX_LINE_BYTES = 1 << 20
"""A longer line is cut into pieces of at most this many bytes (at a UTF-8 boundary)."""

_READ_SIZE = 1 << 16
_LINGER = 1.0  # seconds to drain pipes after the main process exited, before killing leftovers
_GIVE_UP = 1.0  # then seconds to wait for EOF before abandoning pipes held outside the group
_POLL = 0.05  # exit polling interval when pidfd_open is unavailable
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

_HEADER = 8  # bytes of the configuration's length, before it on the shim's stdin
_GO = b"G"
GO = _GO
"""The byte that lets a ready shim start its job; end of file in its place calls the start off."""

_WHOLE: frozenset[int] = frozenset()
"""No line was cut (the usual case): see :class:`LineSplitter`."""


# ------------------------------------------------------------------------------------ lines


class LineSplitter:
    """Cuts one stream's bytes into lines: split on ``\\n``, a trailing ``\\r`` dropped, and a
    line longer than MAX_LINE_BYTES cut into pieces, so memory stays bounded whatever the job prints.

    ``feed`` and ``close`` return the lines and the indexes of the pieces that do not end their
    line (the next line of this stream continues them): their records say ``partial``, so the
    reader can join them again (an outputs marker longer than MAX_LINE_BYTES is still one marker).
    """

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> tuple[list[bytes], frozenset[int] | set[int]]:
        parts = (self.pending + data if self.pending else data).split(b"\n")
        self.pending = parts.pop()
        lines: list[bytes] = []
        cut: frozenset[int] | set[int] = _WHOLE
        for part in parts:
            pieces = _pieces(part[:-1] if part.endswith(b"\r") else part)
            if len(pieces) > 1:
                cut = {*cut, *range(len(lines), len(lines) + len(pieces) - 1)}
            lines.extend(pieces)
        while len(self.pending) > MAX_LINE_BYTES:
            cut = {*cut, len(lines)}
            at = _utf8_cut(self.pending, MAX_LINE_BYTES)
            lines.append(self.pending[:at])
            self.pending = self.pending[at:]
        return lines, cut

    def close(self) -> tuple[list[bytes], frozenset[int]]:
        """The last line, even without a trailing newline."""
        last, self.pending = self.pending, b""
        if not last:
            return [], _WHOLE
        pieces = _pieces(last[:-1] if last.endswith(b"\r") else last)
        return pieces, frozenset(range(len(pieces) - 1))


def _pieces(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE_BYTES:
        return [line]
    pieces = []
    while len(line) > MAX_LINE_BYTES:
        cut = _utf8_cut(line, MAX_LINE_BYTES)
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def _utf8_cut(buf: bytes, limit: int) -> int:
    """A cut position <= limit that does not split a UTF-8 sequence (when the data is UTF-8)."""
    cut = limit
    while cut > limit - 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def records(stream: str, lines: list[bytes], cut: frozenset[int] | set[int], at: str) -> bytes:
    """Log records as JSON lines ``{"stream", "text", "at"}`` (plus ``"partial": true`` for the
    indexes in ``cut``), built by hand: json.dumps per line costs twice as much, and 100 MB of
    output is 100,000 lines or more."""
    if not lines:
        return b""
    head = '{"stream":' + encode_basestring(stream) + ',"text":'
    tail = ',"at":' + encode_basestring(at) + "}\n"
    if not cut:
        return "".join(
            head + encode_basestring(line.decode("utf-8", errors="replace")) + tail for line in lines
        ).encode("utf-8")
    partial = ',"partial":true' + tail
    return "".join(
        head + encode_basestring(line.decode("utf-8", errors="replace")) + (partial if i in cut else tail)
        for i, line in enumerate(lines)
    ).encode("utf-8")


_second: tuple[int, str] = (-1, "")


def iso_now() -> str:
    """``datetime.now(UTC).isoformat()`` without importing datetime (the shim starts per job)."""
    global _second
    secs, ns = divmod(time.time_ns(), 1_000_000_000)
    if _second[0] != secs:
        y, mo, d, h, mi, sec = time.gmtime(secs)[:6]
        _second = (secs, f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}")
    micros = ns // 1000
    return f"{_second[1]}.{micros:06d}+00:00" if micros else f"{_second[1]}+00:00"


# ------------------------------------------------------------------------------------ files


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_atomic(path: str, data: bytes) -> None:
    head, name = path.rsplit("/", 1)
    tmp = f"{head}/.{name}.shim.tmp"
    fd = os.open(tmp, _WRITE, 0o644)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, _READ_SIZE))
        if not chunk:
            raise EOFError(f"the configuration ended {left} bytes short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_config(fd: int) -> bytes:
    """The launcher's configuration (see :func:`frame`), leaving the go byte behind it unread."""
    return _read_exactly(fd, int.from_bytes(_read_exactly(fd, _HEADER), "big"))


def frame(config: bytes) -> bytes:
    """What the launcher writes on a shim's stdin: the configuration's length, the configuration,
    then (at once, or once the job may start) :data:`GO`."""
    return len(config).to_bytes(_HEADER, "big") + config


def unframe(data: bytes) -> bytes:
    """The configuration of what :func:`frame` made (a go byte after it is left out)."""
    size = int.from_bytes(data[:_HEADER], "big")
    return data[_HEADER : _HEADER + size]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, _READ_SIZE):
        chunks.append(chunk)
    return b"".join(chunks)


def _start_ticks(pid: int | str) -> int | None:
    """Field 22 of /proc/<pid>/stat: the process's start time in clock ticks (None without /proc)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)  # 3 syscalls; open() makes 8
        try:
            raw = os.read(fd, 4096)  # one line, well under a page, read whole by the kernel
        finally:
            os.close(fd)
        return int(raw[raw.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _json_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return encode_basestring(str(value))


def _json_fields(fields: dict[str, object]) -> str:
    return ",".join(f'"{key}":{_json_value(value)}' for key, value in fields.items())


# ------------------------------------------------------------------------------------ spawn


def _exec_child(argv: list[str], cwd: str, env: dict[bytes, bytes], out_w: int, err_w: int) -> None:
    """In the forked child (already in its own session): default signal dispositions, cwd,
    pipes; exec (never returns)."""
    for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ"):  # what Python ignores, as subprocess restores them
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.chdir(cwd)
    os.dup2(out_w, 1)  # fd 0 is already /dev/null; fd 1 was the report pipe: replaced here
    os.dup2(err_w, 2)
    program = os.fsencode(argv[0])
    args = [os.fsencode(a) for a in argv]
    if b"/" in program:
        candidates = [program]
    else:  # the job's PATH decides, as subprocess does with env=...
        path = env.get(b"PATH", os.fsencode(os.defpath))
        candidates = [(d + b"/" + program) if d else program for d in path.split(b":")]
    first: OSError | None = None
    last: OSError = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    for candidate in candidates:
        try:
            os.execve(candidate, args, env)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and first is None:
                first = exc
            last = exc
    raise first or last


def _spawn(
    argv: list[str],
    cwd: str,
    env: dict[bytes, bytes],
    out_w: int,
    err_w: int,
    record: Callable[[int, int | None], None],
    unrecord: Callable[[], None],
) -> int:
    """fork + exec of the job; its pid, or OSError with the errno the exec (or chdir) failed with.

    The child records itself before it execs: ``record(pid, start)`` (the ``pid`` file) is
    written by the child, in its own session, so no user code ever runs without a record of
    its process (a launcher interrupted half-way finds it there and stops it), and nothing
    waits for a go-ahead from the shim (one wakeup less per job, which on a loaded machine is
    a scheduling delay). Then the child checks that the shim still lives: if it was killed
    meanwhile (a launcher gave up on this start, stopped the shim and found no record to
    stop), nothing may run: the child removes its record and exits. A record that cannot be
    written raises RuntimeError (the shim's own failure, not the command's).
    """
    shim = os.getpid()
    exec_r, exec_w = os.pipe()  # close-on-exec: EOF means the exec succeeded
    try:
        pid = os.fork()
    except BaseException:
        os.close(exec_r)
        os.close(exec_w)
        raise
    if pid == 0:  # the child: never returns
        answer = str(errno.EINVAL)
        try:
            os.close(exec_r)
            os.setsid()  # before the record: the recorded process group exists
            try:
                record(os.getpid(), _start_ticks("self"))
            except BaseException as exc:
                answer = f"R {exc!r}"
                raise
            if os.getppid() != shim:  # the shim is gone: nothing may run
                unrecord()
                answer = "R the job's supervisor died before the job started"
                raise ProcessLookupError(answer)
            _exec_child(argv, cwd, env, out_w, err_w)
        except OSError as exc:
            if not answer.startswith("R"):
                answer = str(exc.errno or errno.EINVAL)
        except BaseException:
            pass
        try:
            os.write(exec_w, answer.encode("utf-8", errors="replace"))
        finally:
            os._exit(127)
    os.close(exec_w)
    try:
        failed = _read_all(exec_r).decode("utf-8", errors="replace")
    except BaseException:
        os.close(exec_r)
        os.waitpid(pid, 0)
        raise
    os.close(exec_r)
    if failed:
        os.waitpid(pid, 0)
        if failed.startswith("R"):
            raise RuntimeError(f"cannot record the job's process: {failed[2:]}")
        code = int(failed)
        raise OSError(code, os.strerror(code))
    return pid


# ------------------------------------------------------------------------------------ supervision


class _Supervisor:
    """Pumps the job's pipes into the log, enforces the timeout, reaps it."""

    def __init__(self, job_dir: str, pid: int, start: int | None, out: int, pipes: dict[int, str]) -> None:
        self.job_dir = job_dir
        self.pid = pid
        self.start = start
        self.out = out
        self.streams = dict(pipes)  # fd -> "stdout" | "stderr", until EOF
        self.splitters = {fd: LineSplitter() for fd in pipes}
        self.poller = select.poll()
        self.timers: dict[str, float] = {}  # name -> monotonic deadline: timeout, kill, linger, give_up
        self.returncode: int | None = None
        self.ended = ""
        self.timed_out = False
        self.cancelled = False
        self.grace = 0.0

    def run(self, timeout: float | None, grace: float, started_mono: float) -> None:
        self.grace = grace
        if timeout is not None:
            self.timers["timeout"] = started_mono + timeout
        for fd in self.streams:
            self.poller.register(fd, select.POLLIN)
        pidfd = self._open_pidfd()
        if pidfd is not None:
            self.poller.register(pidfd, select.POLLIN)
        try:
            while self.returncode is None or self.streams:
                wait = self._next_wakeup(polling=pidfd is None)
                events = self.poller.poll(None if wait is None else wait * 1000)  # ms, rounded up
                at = iso_now() if events else ""
                for fd, _ in events:
                    if fd == pidfd:
                        self.poller.unregister(fd)
                        os.close(fd)
                        pidfd = None
                        self.reaped(os.waitpid(self.pid, 0)[1])
                    elif fd in self.streams:
                        self._read(fd, at)
                if pidfd is None and self.returncode is None:
                    done, status = os.waitpid(self.pid, os.WNOHANG)
                    if done:
                        self.reaped(status)
                if self.timers:
                    self._fire_timers(time.monotonic())
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _open_pidfd(self) -> int | None:
        opener = getattr(os, "pidfd_open", None)
        if opener is None:
            return None
        try:
            return int(opener(self.pid))
        except OSError:
            return None

    def reaped(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self.ended = iso_now()
        # Decided now, not when the exit is recorded: a cancel that comes while the outputs
        # are drained or copied finds a job that already ended on its own (a no-op).
        self.cancelled = os.path.exists(f"{self.job_dir}/{CANCELLED}")
        self.timers.pop("timeout", None)
        self.timers.pop("kill", None)
        if self.streams:  # something still holds a pipe: drain it for a while, then stop it
            self.timers["linger"] = time.monotonic() + _LINGER

    def _next_wakeup(self, *, polling: bool) -> float | None:
        wait = max(min(self.timers.values()) - time.monotonic(), 0.0) if self.timers else None
        if polling and self.returncode is None:
            wait = _POLL if wait is None else min(wait, _POLL)
        return wait

    def signal_group(self, sig: int) -> None:
        """Signal the job's group; once the leader is reaped, only if its pid was not recycled."""
        if self.returncode is not None and self.start is not None:
            now = _start_ticks(self.pid)
            if now is not None and now != self.start:
                return
        try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _fire_timers(self, now: float) -> None:
        due = {name for name, at in self.timers.items() if at <= now}
        for name in due:
            del self.timers[name]
        if "timeout" in due:
            self.timed_out = True
            self.signal_group(signal.SIGTERM)
            self.timers["kill"] = now + self.grace
        if "kill" in due:
            self.signal_group(signal.SIGKILL)
        if "linger" in due and self.streams:
            # The main process is gone but leftovers (background children) hold a pipe open.
            self.signal_group(signal.SIGKILL)
            self.timers["give_up"] = now + _GIVE_UP
        if "give_up" in due and self.streams:
            for fd in list(self.streams):  # a process outside the group keeps the output open
                self._eof(fd, iso_now())

    def _read(self, fd: int, at: str) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._eof(fd, at)
            return
        if lines := records(self.streams[fd], *self.splitters[fd].feed(data), at):
            _write_all(self.out, lines)

    def _eof(self, fd: int, at: str) -> None:
        stream = self.streams.pop(fd)
        if lines := records(stream, *self.splitters.pop(fd).close(), at):
            _write_all(self.out, lines)
        self.poller.unregister(fd)
        os.close(fd)


def _report(line: str) -> None:
    """The one line for the launcher, then stdout is /dev/null (the launcher reads to EOF)."""
    try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
        _write_all(1, line.encode("utf-8", errors="replace") + b"\n")
    except OSError:
        pass
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def main(job_dir: str, owner_start: int | str | None = "", ended: int = -1) -> int:
    """Supervise the job of ``job_dir`` (configuration on stdin); the exit status of the shim.

    ``owner_start``: this process's start time, when a spare read it before its request came
    (off the job's way); ``""`` reads it here. ``ended``: the forked shim's copy of its answer
    pipe, closed once ``result`` is written: the launcher's end of file says the job's end is
    recorded without waiting for this process to be torn down.
    """
    try:
        config = marshal.loads(_read_config(0))
        for path in config.get("mkdirs") or ():  # the job's fresh work/ and out/ (see launch)
            try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
                os.mkdir(path)
            except FileExistsError:  # a submit that took this job over made it
                pass
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
    except BaseException as exc:
        _report(f"X cannot prepare the job: {exc!r}")
        return 2
    owner_pid = os.getpid()
    if owner_start == "":
        owner_start = _start_ticks("self")
    # Ready: the job starts on the launcher's go (its store write is durable by then); end of
    # file instead means the start was called off (or the launcher died): nothing ran, and
    # nothing in the job's directory was touched, so a later submit finds it as it was.
    try:
        go = os.read(0, 1)
    except OSError:
        go = b""
    if go != _GO:
        return 0
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # inheritable: the job's stdin
        os.close(null)
        out = os.open(f"{job_dir}/{LOG}", _WRITE | os.O_APPEND, 0o644)
    except BaseException as exc:
        _report(f"X cannot prepare the job: {exc!r}")
        return 2
    pid_path = f"{job_dir}/{PID}"
    started = iso_now()

    # The ``pid`` record, all but the job's own identity, built here: the forked child, where
    # every object it touches is a page copied, only formats two numbers in before its exec.
    summary = bytes(config["summary"]).rstrip()[:-1].rstrip()  # the JSON object, left open
    identities = _json_fields(
        {
            "boot": config.get("boot"),
            "owner_pid": owner_pid,
            "owner_start": owner_start,
            "started": started,
            "shim": True,
            "submitter_pid": config.get("submitter"),
        }
    ).encode()
    head = summary + (b"," if summary != b"{" else b"")
    tail = b"," + identities + b"}"

    def record(pid: int, start: int | None) -> None:
        """Write ``pid`` (in the job's process, before its exec): the launcher's summary plus the
        job's and the shim's identities."""
        job = b'"pid":%d,"pgid":%d,"start":%s' % (pid, pid, b"null" if start is None else b"%d" % start)
        _write_atomic(pid_path, head + job + tail)

    try:
        started_mono = time.monotonic()
        pid = _spawn(
            config["argv"], config["cwd"], config["env"], out_w, err_w, record, lambda: _unlink(pid_path)
        )
    except OSError as exc:
        _unlink(pid_path)  # the job never ran: the launcher records START_FAILED
        _report(f"E {exc.errno or errno.EINVAL} {exc.strerror or exc}")
        return 1
    except BaseException as exc:
        _unlink(pid_path)
        _report(f"X cannot start the job: {exc!r}")
        return 2
    finally:
        os.close(out_w)
        os.close(err_w)
        config.pop("env", None)  # no copy of the secrets kept longer than needed
    start = _start_ticks(pid)  # the same before and after its exec
    supervisor = _Supervisor(job_dir, pid, start, out, {out_r: "stdout", err_r: "stderr"})
    _report(f"S {pid} {start if start is not None else '-'}")
    error = None
    try:
        supervisor.run(config.get("timeout"), float(config.get("grace") or 0.0), started_mono)
    except BaseException as exc:  # never leave the job unsupervised: stop it, say why
        error = f"the job's supervisor failed: {exc!r}"
        supervisor.signal_group(signal.SIGKILL)
        if supervisor.returncode is None:
            try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
                supervisor.reaped(os.waitpid(pid, 0)[1])
            except OSError:
                pass
    result = {
        "id": config.get("token"),
        "pid": pid,
        "returncode": supervisor.returncode,
        "timed_out": supervisor.timed_out,
        "cancelled": supervisor.cancelled,
        "started": started,
        "ended": supervisor.ended or iso_now(),
        "error": error,
    }
    _write_atomic(f"{job_dir}/{RESULT}", ("{" + _json_fields(result) + "}").encode())
    if ended >= 0:
        os.close(ended)
    return 0


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
        os.unlink(path)
    except OSError:
        pass


def run(job_dir: str) -> None:
    """The entry point: :func:`main`, then exit without the interpreter's shutdown."""
    os._exit(main(job_dir))


# ------------------------------------------------------------------------------------ fork server


def serve(sock_fd: int) -> None:
    """The fork server: one interpreter started once per squall process, forking a shim per job.

    Starting an interpreter costs ~10 ms; forking this small one costs well under one, and
    the child is the same shim as :data:`BOOT` starts, with the same two pipes. Requests come
    on ``sock_fd``, a ``SOCK_SEQPACKET`` socket: one message per job, its directory as the
    data and three descriptors (``SCM_RIGHTS``): the read end of the configuration pipe and the
    write end of the answer pipe, which become the shim's stdin and stdout, and the write end
    of its pid pipe.

    The fork happens *before* the request: a spare child waits on the socket (:func:`_spare`),
    takes the next request itself and tells the server, which forks the next spare while the
    job runs. So a job's start waits for no fork and one process fewer. The shim first writes
    ``P <pid>`` on its pid pipe (the launcher reads it when it needs it, without waking for
    it), and keeps a copy of the answer pipe open until ``result`` is written: end of file
    there tells the launcher that the job's end is recorded (or that the shim died), with no
    pid to wait for. When no spare can be forked, the server takes the next request and
    answers ``F <errno> <text>`` (on both pipes). At end of file on the
    socket (the squall process exited or stopped its server) the spare and the server exit:
    the shims are their children, not their dependants; they are reparented and carry on.
    """
    import socket  # once per server, not per job

    sock = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the shims: no zombie, no wait
    while True:
        taken_r, taken_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(taken_r)
            os.close(taken_w)
            if not _refuse(socket.recv_fds, sock, exc):
                return
            continue
        if pid == 0:
            os.close(taken_r)
            _spare(socket.recv_fds, sock, sock_fd, taken_w)  # never returns
        os.close(taken_w)
        try:
            word = _read_all(taken_r)  # b"1": it took a request; b"0": end of file; b"": it died
        finally:
            os.close(taken_r)
        if word == b"0":
            return


def _receive(recv_fds: _Recv, sock: object) -> tuple[bytes, list[int]]:
    """One request, or ``b""`` at end of file (the launcher is gone) or on a broken socket."""
    try:
        data, fds, _, _ = recv_fds(sock, 4096, 3)
    except OSError:
        return b"", []
    if data and len(fds) == 3:
        return data, fds
    for fd in fds:
        os.close(fd)
    return (b"", []) if not data else (b"?", [])


def _refuse(recv_fds: _Recv, sock: object, exc: OSError) -> bool:
    """No spare could be forked: answer the next request with the error; False at end of file."""
    data, fds = _receive(recv_fds, sock)
    if not data:
        return False
    for fd in fds[1:]:
        try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
            _write_all(fd, f"F {exc.errno or errno.EAGAIN} {exc.strerror or exc}\n".encode())
        except OSError:
            pass
    for fd in fds:
        os.close(fd)
    return True


def _spare(recv_fds: _Recv, sock: object, sock_fd: int, taken_w: int) -> None:
    """A forked child waiting for the next request: it becomes that job's shim (never returns)."""
    code = 2
    try:
        start = _start_ticks("self")  # while no job waits: one /proc read less on the job's way
        data, fds = _receive(recv_fds, sock)
        try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
            _write_all(taken_w, b"1" if data else b"0")  # the server forks the next spare (or exits)
        except OSError:
            pass  # the server is gone: this request is served all the same
        os.close(taken_w)
        if len(fds) == 3:
            config_r, report_w, pid_w = fds
            os.close(sock_fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the shim waits for its job
            os.setsid()  # as a shim started in a session of its own
            os.dup2(config_r, 0)
            os.dup2(report_w, 1)
            os.close(config_r)
            os.close(report_w)
            job_dir = os.fsdecode(data)
            os.chdir(job_dir)
            _write_all(pid_w, f"P {os.getpid()}\n".encode())  # read when needed: no wakeup
            os.close(pid_w)
            ended = os.dup(1)  # held until `result` (close-on-exec: not the job's): the launcher's EOF
            code = main(job_dir, start, ended)
    finally:
        os._exit(code)


# ------------------------------------------------------------------------------------ deleter


def delete_paths() -> None:
    """The deleter (:mod:`runners.process.disposal`): ``rm -rf`` each NUL-terminated path read
    from stdin, in order, until end of file; then exit (never returns).

    A process of its own, so deleting a finished job's files takes neither the squall
    process's GIL nor its time slices; errors are ignored (what is left of a disposed
    directory is swept by the next runner on the same base directory).
    """
    import shutil  # once per deleter

    try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
        os.nice(10)  # deleting can wait: shims and jobs starting on the same cores come first
    except OSError:
        pass
    pending = b""
    while chunk := os.read(0, _READ_SIZE):
        *paths, pending = (pending + chunk).split(b"\0")
        for path in paths:
            try:
                os.rmdir(path)  # an empty directory: one operation
            except NotADirectoryError:
                try:  # noqa: SIM105 - no contextlib: every import costs the shim's start
                    os.unlink(path)
                except OSError:
                    pass
            except FileNotFoundError:
                pass
            except OSError:  # not empty
                shutil.rmtree(path, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    run(sys.argv[1])

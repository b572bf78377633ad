"""Starting shims cheaply: one fork server per squall process instead of one interpreter per job.

Theory of operation
-------------------
A shim used to be a fresh ``python -I -S`` per job: ~10 ms of interpreter start-up (more on
a loaded machine), ten times what the user's ``echo`` costs. Now the first submit starts one
*fork server* (``python -I -S -c shim.SERVE``, :func:`runners.process.shim.serve`) in a
session of its own, connected by a ``SOCK_SEQPACKET`` socket pair, and every later shim is a
``fork`` of it: the very same shim code, below a millisecond to start.

:func:`spawn_shim` writes the job's configuration into a fresh pipe (when a pipe can hold
it), then hands the server that pipe, an answer pipe and a pid pipe (``SCM_RIGHTS``) with the
job directory, and returns a :class:`ForkedShim` at once: a spare shim, forked in advance,
takes the request, so this process waits once per job, for the answer. The launcher's
handshake reads the shim's one answer line, as with an interpreter per job; the shim's
``P <pid>`` comes first on the pid pipe, which nobody waits on (one wakeup less per job): it
is read after the answer, or by :meth:`ForkedShim.kill` when a start is given up. The shim
keeps a copy of the answer pipe open until it wrote ``result`` (then it closes it, and end
of file tells the watcher that the job's end is recorded, before the shim's process is torn
down): while that pipe is open its pid is its own, so a pidfd opened then cannot be a
recycled pid's. The watcher polls that end of file, ``wait`` waits on the pidfd instead of
``waitpid`` (the shim is the server's child; the kernel reaps it), and a start given up
half-way kills the shim through it.

A start readied ahead of its submit (``spawn_shim(..., hold=True)``, ADR 0019) keeps the last
byte of the shim's stdin back: the go byte, written by the handshake once the job may start;
closing the pipe without it calls the start off.

Durability is unchanged: the shim is in a session of its own, outlives the squall process
(the server exits at end of file, when the squall process is gone, leaving its shims
running), and writes the same ``pid`` and ``result`` files. A server that died is replaced
on the next submit (a send that fails with EPIPE or ECONNREFUSED retries once on a new one;
a request it dropped unanswered is a transient error, retried by the launcher's policy).

Needs ``socket.send_fds`` (descriptor passing, Python 3.9+ on Unix): elsewhere
:func:`available` is False and the launcher starts an interpreter per job, as before.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Protocol

from runners.process import shim as _shim

__all__ = ["ForkedShim", "ShimProcess", "available", "spawn_shim", "stop"]

_SHIM_DIR = os.path.dirname(_shim.__file__)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux's values; fcntl names them from 3.10
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_ABANDON_WAIT = 5.0  # seconds to find and stop the shim of a start given up half-way


class ShimProcess(Protocol):
    """What the launcher and the watcher use of a shim: a ``subprocess.Popen`` or a :class:`ForkedShim`."""

    @property
    def stdin(self) -> IO[bytes] | None: ...

    @property
    def stdout(self) -> IO[bytes] | None: ...

    @property
    def stderr(self) -> IO[bytes] | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


def available() -> bool:
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


class ForkedShim:
    """A shim forked by the server: not this process's child, so followed through its pipe.

    Its pid arrives on its pid pipe (``P <pid>``), read by the handshake once the answer came
    (:meth:`learn_pid`); :meth:`kill` reads it if nobody did. The shim keeps a copy of that
    pipe open until it wrote ``result``, then closes it and exits (its job does not inherit
    it): while the pipe is open the pid is the shim's own, so a pidfd opened then is the
    shim's (no recycled pid is ever signalled or waited for), and end of file on ``_alive``,
    a second descriptor of the pipe, says the job's end is recorded (:meth:`ended`; the
    watcher's signal) or the shim died; :meth:`wait` takes it for the exit where there are
    no pidfds.
    """

    stdin: IO[bytes] | None = None
    stderr: IO[bytes] | None = None
    unsent: bytes = b""
    """What the handshake still writes on ``stdin`` (when not None) before it reads the answer."""

    def __init__(self, alive: int, stdout: IO[bytes], pid_pipe: int = -1) -> None:
        self.pid: int | None = None
        self.stdout: IO[bytes] | None = stdout
        self._alive = alive
        self._pid_pipe = pid_pipe
        self._pidfd = -1
        self._lock = threading.Lock()

    def learn_pid(self, timeout: float) -> None:
        """Read the shim's ``P <pid>`` from its pid pipe (waiting at most ``timeout`` s; 0: only
        if it is there). TimeoutError when it is not; OSError at end of file, or the server's
        ``F`` error."""
        if self.pid is None and self._pid_pipe >= 0:
            self.heard(_first_line(self._pid_pipe, timeout))

    def heard(self, line: str) -> bool:
        """Take the server's or the shim's first line; whether it was one (the handshake reads on)."""
        kind, _, rest = line.partition(" ")
        if kind == "P":
            self.pid = int(rest)
            self._open_pidfd(self.pid)
            return True
        if kind == "F":  # the server could not fork: EAGAIN is retried by the launcher's policy
            code, _, text = rest.partition(" ")
            raise OSError(int(code), text or os.strerror(int(code)))
        return False

    def _open_pidfd(self, pid: int) -> None:
        """A pidfd on the shim, when the kernel has them: readable once it has really exited
        (end of file comes a little earlier, when its descriptors are closed).

        The pid is the shim's if its pipe is still open after the pidfd was opened: it was
        alive before (it wrote its pid) and after, so the pid was not recycled in between.
        """
        opener = getattr(os, "pidfd_open", None)
        if opener is None:
            return
        try:
            pidfd = int(opener(pid))
        except OSError:
            return  # gone already: end of file says when
        if self._hung_up():
            os.close(pidfd)
        else:
            self._pidfd = pidfd

    def _hung_up(self) -> bool:
        poller = select.poll()
        poller.register(self._alive, select.POLLIN)
        return any(event & select.POLLHUP for _, event in poller.poll(0))

    def fileno(self) -> int:
        """Readable once the shim recorded the job's end (``result`` written: it closes its copy
        of the answer pipe then) or died: end of file on ``_alive``; -1 once :meth:`wait` saw it
        exit. Earlier than the pidfd, which waits for the whole process to be torn down."""
        with self._lock:
            return self._alive

    def ended(self) -> bool:
        """Whether :meth:`fileno` reached end of file (never blocks)."""
        with self._lock:
            if self._alive < 0:
                return True
            poller = select.poll()
            poller.register(self._alive, select.POLLIN)
            if not poller.poll(0):
                return False
            try:
                return not os.read(self._alive, 4096)
            except BlockingIOError:
                return False

    def wait(self, timeout: float | None = None) -> int:
        """Block until the shim exited (its exit status belongs to the server: 0 is returned)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                fd = self._pidfd if self._pidfd >= 0 else self._alive
                if fd < 0:
                    return 0
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not poller.poll(None if left is None else left * 1000):
                raise subprocess.TimeoutExpired(f"shim {self.pid}", timeout or 0.0)
            with self._lock:
                if fd == self._pidfd or (fd == self._alive and not os.read(fd, 4096)):  # it exited
                    self._close()

    def kill(self) -> None:
        with self._lock:
            if self._alive < 0:
                return
            if self.pid is None:  # not read yet: it comes at once if the shim exists
                with contextlib.suppress(OSError, ValueError):
                    self.learn_pid(_ABANDON_WAIT)
            if self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif self.pid is not None and not self._hung_up():  # alive: the pid is its own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def _close(self) -> None:
        for fd in (self._alive, self._pidfd, self._pid_pipe):
            if fd >= 0:
                os.close(fd)
        self._alive = self._pidfd = self._pid_pipe = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close()


class _Server:
    """One running fork server: its process and this side of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _shim.SERVE, _SHIM_DIR, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",  # holds no directory of the caller's
                start_new_session=True,  # a Ctrl-C to the terminal's group does not reach it
                close_fds=True,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.pid = os.getpid()

    def close(self) -> None:
        self.sock.close()  # end of file: the server exits (its shims carry on)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5.0)


_lock = threading.Lock()
_server: _Server | None = None


def _current() -> _Server:
    global _server
    with _lock:
        if _server is None or _server.pid != os.getpid() or _server.process.poll() is not None:
            if _server is not None and _server.pid == os.getpid():
                _server.close()
            _server = _Server()
        return _server


def _drop(server: _Server) -> None:
    global _server
    with _lock:
        if _server is server:
            _server = None
    server.close()


def stop() -> None:
    """Stop this process's fork server (its shims carry on); the next submit starts another."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None and server.pid == os.getpid():
        server.close()


def spawn_shim(job_dir: str, config: bytes, hold: bool = False) -> ForkedShim:
    """A new shim for ``job_dir``, its stdin (``config``: the framed configuration and the go
    byte, :func:`runners.process.shim.frame`) already written when it fits the pipe.

    Returns once the request is sent: the shim's lines (its answer; ``P <pid>`` on the pid pipe) are
    read by the handshake, so this process waits once per job, not once per step. Writing
    the configuration before the request saves a round trip as well (on a busy machine each
    is a scheduling delay); what is not written yet (more than a pipe can hold; with ``hold``,
    the last byte: the go the shim waits for before it starts the job) is left for the
    handshake (``stdin`` is then not None, and :attr:`ForkedShim.unsent` holds it).
    Raises OSError when the server cannot be reached twice.
    """
    config_r, config_w = os.pipe()
    report_r, report_w = os.pipe()
    pid_r, pid_w = os.pipe()
    now, later = (config[:-1], config[-1:]) if hold else (config, b"")
    unsent = config
    try:
        if _fits(config_w, len(now)):
            _write_all(config_w, now)
            unsent = later
            if not unsent:
                os.close(config_w)
                config_w = -1
        for attempt in (1, 2):
            server = _current()
            try:
                socket.send_fds(server.sock, [os.fsencode(job_dir)], [config_r, report_w, pid_w])
                break
            except (BrokenPipeError, ConnectionError):
                _drop(server)  # it died: start another
                if attempt == 2:
                    raise
            except OSError as exc:
                if exc.errno == errno.ETOOMANYREFS:  # too many descriptors in flight for now: later
                    why = f"cannot hand the job to the fork server: {exc}"
                    raise BlockingIOError(errno.EAGAIN, why) from exc
                raise
        shim = ForkedShim(os.dup(report_r), os.fdopen(report_r, "rb", buffering=0), pid_r)
    except BaseException:
        for fd in (config_r, config_w, report_r, report_w, pid_r, pid_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        raise
    os.close(config_r)
    os.close(report_w)
    os.close(pid_w)
    if config_w >= 0:
        shim.stdin = os.fdopen(config_w, "wb")
        shim.unsent = unsent
    return shim


def _fits(fd: int, size: int) -> bool:
    """Whether ``size`` bytes fit in the pipe ``fd`` without blocking (grown to hold them if allowed)."""
    capacity = fcntl.fcntl(fd, _F_GETPIPE_SZ)
    if size < capacity:
        return True
    try:
        return fcntl.fcntl(fd, _F_SETPIPE_SZ, size + 1) > size
    except OSError:  # above /proc/sys/fs/pipe-max-size for this user
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _first_line(fd: int, timeout: float) -> str:
    """The first line of a pipe that carries one (the pid pipe: its writer writes one line, in
    one write, then closes it), read in chunks (``timeout`` 0: only what is there already)."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while b"\n" not in data:
        remaining = max(deadline - time.monotonic(), 0.0)
        if not poller.poll(remaining * 1000):
            raise TimeoutError(f"no answer from the fork server after {timeout:g}s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise OSError("the fork server closed the answer pipe without a word")
        data += chunk
    return data.partition(b"\n")[0].decode("utf-8", errors="replace").strip()


def _after_fork_in_child() -> None:
    """A forked child does not share the parent's server (the socket is the parent's)."""
    global _lock, _server
    if _server is not None:
        with contextlib.suppress(OSError):
            _server.sock.close()  # the child's copy: the server still sees end of file when the parent goes
    _lock = threading.Lock()
    _server = None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop)  # the server is reaped, not left to the interpreter's shutdown (a ResourceWarning)

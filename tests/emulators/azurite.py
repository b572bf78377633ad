"""Azurite, Microsoft's Azure Storage emulator (its blob service), started by the tests.

Installed once from npm (``azurite@3.35.0``: later versions need Node 21+) into a cache
directory (``$SQUALL_AZURITE_DIR``, default ``~/.cache/squall/azurite``), the way DynamoDB
Local is (:mod:`tests.emulators.launch`), and run in memory on a free port::

    with Azurite() as azurite:
        storage = AzureBlobStorage(endpoint=azurite.endpoint, credential=azurite.credential)
        azurite.service().create_container("squall")

The account is Azurite's well-known development account (``devstoreaccount1`` and its
published key), so URIs read ``az://devstoreaccount1/<container>/<blob>``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.emulators.launch import EmulatorError, cache_dir, npm_install, spawn, stop

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "PACKAGE", "Azurite", "install"]

PACKAGE = "azurite@3.35.0"
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's documented development key (public, the same on every machine)."""


def _find_main(root: Path) -> Path | None:
    main = root / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    return main if main.exists() else None


def install(root: Path | None = None, *, timeout: float = 600.0) -> Path:
    """The path of Azurite's blob service entry point, installing the npm package when missing."""
    return npm_install(
        PACKAGE, root or cache_dir("SQUALL_AZURITE_DIR", "azurite"), _find_main, timeout=timeout
    )


class Azurite:
    """One in-memory Azurite blob service; ``endpoint`` is the account URL template once started."""

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._work: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        """The ``{account}`` endpoint template :class:`~runners.storage.azure_blob.AzureBlobStorage` takes."""
        return f"http://127.0.0.1:{self.port}/{{account}}"

    @property
    def credential(self) -> dict[str, str]:
        return {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}

    def start(self) -> Azurite:
        node = shutil.which("node")
        if node is None:
            raise EmulatorError("Node.js is needed to run Azurite")
        main = install()
        self._work = tempfile.TemporaryDirectory(prefix="azurite-")
        work = Path(self._work.name)

        def argv(port: int) -> list[str]:
            return [
                node,
                str(main),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableProductStyleUrl",
            ]

        self.process, self.port = spawn(
            "Azurite", argv, cwd=work, timeout=self.startup_timeout, log=work / "azurite.log"
        )
        return self

    def service(self) -> Any:
        """A ``BlobServiceClient`` for the development account (to create containers)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.endpoint.format(account=ACCOUNT), credential=self.credential)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
        if self._work is not None:
            self._work.cleanup()
            self._work = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

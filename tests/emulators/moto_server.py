"""moto in server mode on a free port: real boto3 clients talk HTTP to it, nothing is patched.

::

    with MotoServer() as moto:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="squall")

One server serves every AWS service moto implements (S3, Batch, CloudWatch Logs,
EventBridge...), each keyed by the client's service name, so a test session needs only one.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["MotoServer"]


def _quicker_dispatch() -> None:
    """Spare each request moto's listing of its own package, and werkzeug's access-log line.

    moto's dispatcher asks ``list_of_moto_modules()`` (an ``os.listdir`` and an ``isdir`` per
    entry of its package) on every request to tell a service name from a host; the answer is
    fixed for the installed package, so it is read once. Werkzeug logs each request at INFO on
    stderr: thousands of lines per benchmark and a measurable share of the server's CPU. Neither
    changes what a request answers.
    """
    import logging

    from moto import backends

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if getattr(backends.list_of_moto_modules, "squall_cached", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def cached() -> tuple[str, ...]:
        return modules

    cached.squall_cached = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = cached  # type: ignore[assignment]


class MotoServer:
    """A ``ThreadedMotoServer`` on 127.0.0.1 (a port of its own); ``endpoint`` is its URL once started."""

    region = "us-east-1"

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        _quicker_dispatch()
        # Port 0: the kernel picks a free one as the server binds (parallel workers never race).
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()  # returns once the server accepts connections
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` pointed at this server, with dummy credentials."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

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

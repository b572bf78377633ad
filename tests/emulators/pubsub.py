"""Google's Pub/Sub emulator, started by the tests, and a small REST client for it.

The emulator comes with the Google Cloud SDK on the machine image (a jar under
``/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib``; ``$PUBSUB_EMULATOR_JAR`` points
elsewhere) and runs on the machine's Java. It is started like the other emulators, on a
free port, and speaks Pub/Sub's REST surface (``/v1/projects/{p}/topics/{t}``...). The
client here is plain httpx, so neither the tests nor the Google Batch fake that publishes
job notifications need google-cloud-pubsub (and its gRPC stack)::

    with PubSubEmulator() as emulator:
        pubsub = emulator.client()
        topic = pubsub.create_topic("proj", "batch-events")
        sub = pubsub.create_subscription("proj", "batch-events-sub", "batch-events")
        pubsub.publish(topic, b"hello", {"Type": "JOB_STATE_CHANGED"})
        [received] = pubsub.pull(sub, 10)

It keeps everything in memory; topic and subscription names need at least three characters.
"""

from __future__ import annotations

import base64
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.emulators.launch import EmulatorError, spawn, stop

__all__ = ["PubSubEmulator", "PubSubError", "PubSubRest", "jar"]

SDK_JARS = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"


def jar() -> Path:
    """The emulator's jar: ``$PUBSUB_EMULATOR_JAR``, else the newest one the Cloud SDK installed."""
    override = os.environ.get("PUBSUB_EMULATOR_JAR")
    if override:
        if not Path(override).is_file():
            raise EmulatorError(f"PUBSUB_EMULATOR_JAR={override} is not a file")
        return Path(override)
    found = sorted(glob.glob(SDK_JARS))
    if not found:
        raise EmulatorError(
            f"the Pub/Sub emulator jar is not installed (looked for {SDK_JARS}; "
            "`gcloud components install pubsub-emulator` or set PUBSUB_EMULATOR_JAR)"
        )
    return Path(found[-1])


class PubSubError(RuntimeError):
    """The emulator answered an error: ``status`` is Google's (``NOT_FOUND``, ``ALREADY_EXISTS``...)."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code
        self.status = status


class PubSubRest:
    """Pub/Sub's REST calls the tests and the fakes need, against ``endpoint`` (no credentials)."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def create_topic(self, project: str, topic: str) -> str:
        """Create ``projects/{project}/topics/{topic}`` and return that path."""
        path = f"projects/{project}/topics/{topic}"
        self._call("PUT", path, {})
        return path

    def create_subscription(
        self, project: str, subscription: str, topic: str, push_endpoint: str | None = None
    ) -> str:
        """A pull subscription (or push to ``push_endpoint``) on ``topic`` (an id or a full path)."""
        path = f"projects/{project}/subscriptions/{subscription}"
        topic_path = topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"
        body: dict[str, Any] = {"topic": topic_path}
        if push_endpoint is not None:
            body["pushConfig"] = {"pushEndpoint": push_endpoint}
        self._call("PUT", path, body)
        return path

    def publish(self, topic_path: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message; its message id. ``PubSubError`` (``NOT_FOUND``) for a missing topic."""
        message: dict[str, Any] = {"data": base64.b64encode(data).decode()}
        if attributes:
            message["attributes"] = dict(attributes)
        answer = self._call("POST", f"{topic_path}:publish", {"messages": [message]})
        return str(answer["messageIds"][0])

    def pull(self, subscription_path: str, max_messages: int = 100) -> list[dict[str, Any]]:
        """The ``receivedMessages`` available now (``[]`` if none): each has ``ackId`` and ``message``
        (``data`` base64, ``attributes``, ``messageId``, ``publishTime``). Not acknowledged."""
        body = {"maxMessages": max_messages, "returnImmediately": True}
        answer = self._call("POST", f"{subscription_path}:pull", body)
        return list(answer.get("receivedMessages", []))

    def ack(self, subscription_path: str, ack_ids: Sequence[str]) -> None:
        if ack_ids:
            self._call("POST", f"{subscription_path}:acknowledge", {"ackIds": list(ack_ids)})

    @staticmethod
    def data(received: Mapping[str, Any]) -> bytes:
        """The decoded payload of one of :meth:`pull`'s messages."""
        return base64.b64decode(received["message"].get("data", ""))

    def _call(self, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._http.request(method, f"/v1/{path}", json=body)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"status": "UNKNOWN", "message": response.text}
            raise PubSubError(response.status_code, str(error.get("status")), str(error.get("message")))
        return dict(response.json()) if response.content.strip() else {}


class PubSubEmulator:
    """One in-memory Pub/Sub emulator; ``endpoint`` is its URL once started.

    ``start`` raises :class:`~tests.emulators.launch.EmulatorError` when Java or the jar is
    missing, with what to install, so a fixture can skip with that reason.
    """

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._logs: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``host:port``, the form ``PUBSUB_EMULATOR_HOST`` takes."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> PubSubEmulator:
        path = jar()
        java = shutil.which("java")
        if java is None:
            raise EmulatorError("java is not on PATH: Java 17 runs the Pub/Sub emulator")
        self._logs = tempfile.TemporaryDirectory(prefix="pubsub-emulator-")
        log = Path(self._logs.name) / "emulator.log"  # it logs every request: never a pipe
        self.process, self.port = spawn(
            "pubsub-emulator",
            lambda port: [java, "-jar", str(path), "--host=127.0.0.1", f"--port={port}"],
            timeout=self.startup_timeout,
            log=log,
        )
        return self

    def client(self) -> PubSubRest:
        return PubSubRest(self.endpoint)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
        if self._logs is not None:
            self._logs.cleanup()
            self._logs = None

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

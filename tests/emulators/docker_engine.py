"""A wire-protocol fake of the Docker Engine API that really runs containers as local processes.

The real docker-py client talks to it over TCP (``tcp://127.0.0.1:<port>``), so the Docker
runner is tested through the client's own request building, error mapping and multiplexed log
parsing. The endpoints docker-py calls for the runner::

    GET    /_ping, /version
    GET    /images/{name}/json                      404 unless pulled (or preloaded)
    POST   /images/create?fromImage=&tag=           a pull: JSON progress lines; 404 for an image
                                                    the fake registry does not have; the status
                                                    and message of ``pull_errors[image]``
    POST   /containers/create?name=                 409 on a name in use, 404 for a missing image
    POST   /containers/{id}/start|kill|stop|wait
    GET    /containers/{id}/json                    inspect (State.ExitCode, OOMKilled, times)
    GET    /containers/{id}/logs?stdout=&stderr=&timestamps=   multiplexed frames (8-byte headers)
    DELETE /containers/{id}?force=
    GET    /containers/json?all=&filters={"label":[...]}

A started container's ``Entrypoint`` + ``Cmd`` runs through :class:`LocalExecutor` (the one
every cloud fake shares) with its ``Env``; each bind ``host:/path`` is a :class:`Mount` copied in
before the command and back after it, the executor substituting the local directory for
``/path`` in the argv and environment. ``HostConfig.Memory`` is enforced: the fake samples the
process group's resident memory and kills it past the limit with ``OOMKilled`` set, as the
kernel's OOM killer would. The image is not used (the host's ``sh`` plays every image).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.emulators.executor import LocalExecutor, LogLine, Mount

__all__ = ["DockerEngine"]

_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+")


def _stamp(at: float | None) -> str:
    if at is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class _Container:
    id: str
    name: str
    image: str
    config: dict[str, Any]
    created: float = field(default_factory=time.time)
    status: str = "created"
    exit_code: int = 0
    oom_killed: bool = False
    started: float | None = None
    finished: float | None = None
    lines: list[tuple[str, str, float]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    runs: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "State": self.status,
            "Status": self.status,
            "Labels": self.config.get("Labels") or {},
            "Created": int(self.created),
        }

    def inspect(self) -> dict[str, Any]:
        host = self.config.get("HostConfig") or {}
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "Image": self.image,
            "State": {
                "Status": self.status,
                "Running": self.status == "running",
                "ExitCode": self.exit_code,
                "OOMKilled": self.oom_killed,
                "Error": "",
                "StartedAt": _stamp(self.started),
                "FinishedAt": _stamp(self.finished),
            },
            "Config": {
                "Image": self.image,
                "Cmd": self.config.get("Cmd"),
                "Entrypoint": self.config.get("Entrypoint"),
                "Env": self.config.get("Env") or [],
                "Labels": self.config.get("Labels") or {},
                "User": self.config.get("User") or "",
                "Tty": False,
            },
            "HostConfig": host,
        }


class DockerEngine:
    """The fake daemon; ``url`` is what ``DockerRunner(base_url=...)`` takes. Thread-safe.

    ``registry``: images a pull finds (``name:tag``); ``images``: images already local;
    ``pull_errors``: ``{image: (status, message)}`` a pull answers instead; ``image_paths``:
    ``{image: PATH}`` for its containers (what "the image has": a directory with a ``python``).
    ``calls`` counts requests by ``METHOD /path-pattern``.
    """

    def __init__(
        self, workdir: Path, *, registry: set[str] | None = None, images: set[str] | None = None
    ) -> None:
        self.workdir = workdir
        self.registry = set(registry or {"alpine:latest", "busybox:latest", "python:3.12-slim"})
        self.images = set(images or ())
        self.pull_errors: dict[str, tuple[int, str]] = {}
        self.image_paths: dict[str, str] = {}
        self.containers: dict[str, _Container] = {}
        self.calls: dict[str, int] = {}
        self.executor = LocalExecutor(workdir / "executor")
        self._lock = threading.Lock()
        engine = self

        class Handler(_Handler):
            fake = engine

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="docker-engine", daemon=True)
        self._thread.start()
        self.url = f"tcp://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.executor.stop()

    # -- helpers for tests

    def container(self, ref: str) -> _Container | None:
        with self._lock:
            return self._find(ref)

    def remove(self, ref: str) -> None:
        """Remove a container behind the runner's back (``docker rm -f``)."""
        with self._lock:
            found = self._find(ref)
        if found is not None:
            self._kill(found, signal.SIGKILL)
            found.done.wait(10)
            with self._lock:
                self.containers.pop(found.id, None)

    # -- internals

    def _find(self, ref: str) -> _Container | None:
        ref = ref.lstrip("/")
        for c in self.containers.values():
            if c.id == ref or c.name == ref or (len(ref) >= 12 and c.id.startswith(ref)):
                return c
        return None

    def _start(self, c: _Container) -> None:
        cfg = c.config
        entry = [part for part in (cfg.get("Entrypoint") or []) if part]
        argv = [*entry, *(cfg.get("Cmd") or [])]
        env = dict(item.split("=", 1) for item in cfg.get("Env") or [] if "=" in item)
        if c.image in self.image_paths:
            env.setdefault("PATH", self.image_paths[c.image])
        mounts = []
        for bind in (cfg.get("HostConfig") or {}).get("Binds") or []:
            host, path, *mode = bind.split(":")
            mounts.append(_bind(Path(host), path, read_only=mode == ["ro"]))
        c.status, c.started, c.finished, c.exit_code, c.oom_killed = "running", time.time(), None, 0, False
        c.done.clear()
        c.runs += 1

        def on_line(line: LogLine) -> None:
            with self._lock:
                c.lines.append((line.stream.value, line.text, line.at))

        def on_exit(code: int) -> None:
            with self._lock:
                c.exit_code, c.status, c.finished = code, "exited", time.time()
            c.done.set()

        job = self.executor.start(
            f"{c.id}-{c.runs}", argv, env, on_line=on_line, on_exit=on_exit, mounts=mounts
        )
        limit = int((cfg.get("HostConfig") or {}).get("Memory") or 0)
        if limit:
            threading.Thread(target=self._watch_memory, args=(c, job, limit), daemon=True).start()

    def _watch_memory(self, c: _Container, job: Any, limit: int) -> None:
        while not c.done.is_set():
            pid = job.pid
            if pid is not None and _group_rss(pid) > limit:
                c.oom_killed = True
                job.kill(signal.SIGKILL)
                return
            c.done.wait(0.02)

    def _kill(self, c: _Container, sig: int) -> None:
        if c.status == "running":
            self.executor.kill(f"{c.id}-{c.runs}", sig)


def _bind(host: Path, path: str, *, read_only: bool) -> Mount:
    """A bind mount as the executor can give one: copied in before, copied back after."""

    def download(directory: Path) -> None:
        if host.is_dir():
            shutil.copytree(host, directory, dirs_exist_ok=True)

    def upload(directory: Path) -> None:
        shutil.copytree(directory, host, dirs_exist_ok=True)

    return Mount(path, download, None if read_only else upload)


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group ``pgid`` (a container's processes)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, ValueError):
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            total += int(match.group(1)) * 1024
    return total


class _Handler(BaseHTTPRequestHandler):
    fake: DockerEngine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = _VERSION_PREFIX.sub("", parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake = self.fake
        try:
            self._dispatch(fake, method, path, query, body)
        except _Answer as answer:
            self._json(answer.status, {"message": answer.message})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _json(self, status: int, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _count(self, key: str) -> None:
        with self.fake._lock:
            self.fake.calls[key] = self.fake.calls.get(key, 0) + 1

    def _container(self, ref: str) -> _Container:
        with self.fake._lock:
            found = self.fake._find(unquote(ref))
        if found is None:
            raise _Answer(404, f"No such container: {unquote(ref)}")
        return found

    # -- endpoints

    def _dispatch(
        self, fake: DockerEngine, method: str, path: str, query: dict[str, str], body: bytes
    ) -> None:
        if path == "/_ping":
            self._count("GET /_ping")
            data = b"OK"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/version":
            self._count("GET /version")
            self._json(200, {"ApiVersion": "1.45", "MinAPIVersion": "1.24", "Version": "squall-fake"})
            return
        if method == "GET" and path.startswith("/images/") and path.endswith("/json"):
            self._count("GET /images/json")
            image = _normal(unquote(path[len("/images/") : -len("/json")]))
            if image not in fake.images:
                raise _Answer(404, f"No such image: {image}")
            self._json(
                200, {"Id": "sha256:" + uuid.uuid5(uuid.NAMESPACE_URL, image).hex, "RepoTags": [image]}
            )
            return
        if method == "POST" and path == "/images/create":
            self._count("POST /images/create")
            tag = query.get("tag") or "latest"
            image = _normal(
                f"{query.get('fromImage', '')}:{tag}" if "@" not in tag else query["fromImage"] + tag
            )
            if image in fake.pull_errors:
                status, message = fake.pull_errors[image]
                raise _Answer(status, message)
            if image not in fake.registry:
                repo = query.get("fromImage", "")
                raise _Answer(
                    404,
                    f"pull access denied for {repo}, repository does not exist or may require 'docker login'",
                )
            with fake._lock:
                fake.images.add(image)
            lines = [
                {"status": f"Pulling from {image}"},
                {"status": f"Status: Downloaded newer image for {image}"},
            ]
            # Chunked, one JSON object a chunk, as the daemon streams a pull's progress.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in lines:
                chunk = json.dumps(line).encode() + b"\r\n"
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if method == "POST" and path == "/containers/create":
            self._count("POST /containers/create")
            config = json.loads(body or b"{}")
            name = query.get("name") or uuid.uuid4().hex[:12]
            image = _normal(str(config.get("Image") or ""))
            with fake._lock:
                if fake._find(name) is not None and any(c.name == name for c in fake.containers.values()):
                    raise _Answer(409, f'Conflict. The container name "/{name}" is already in use')
                if image not in fake.images:
                    raise _Answer(404, f"No such image: {image}")
                container = _Container(uuid.uuid4().hex + uuid.uuid4().hex, name, image, config)
                fake.containers[container.id] = container
            self._json(201, {"Id": container.id, "Warnings": []})
            return
        if method == "GET" and path == "/containers/json":
            self._count("GET /containers/json")
            filters = json.loads(query.get("filters") or "{}")
            wanted = [f.split("=", 1) for f in filters.get("label") or []]
            every = query.get("all") in ("1", "true", "True")
            with fake._lock:
                listed = [
                    c.summary()
                    for c in fake.containers.values()
                    if (every or c.status == "running") and all(_has_label(c, pair) for pair in wanted)
                ]
            self._json(200, listed)
            return
        match = re.match(r"^/containers/([^/]+)(?:/(\w+))?$", path)
        if match is None:
            raise _Answer(404, f"page not found: {method} {path}")
        ref, action = match.group(1), match.group(2)
        self._count(f"{method} /containers/{{id}}" + (f"/{action}" if action else ""))
        container = self._container(ref)
        if method == "GET" and action == "json":
            with fake._lock:
                self._json(200, container.inspect())
            return
        if method == "POST" and action == "start":
            with fake._lock:
                if container.status == "running":
                    self._empty(304)
                    return
                fake._start(container)
            self._empty(204)
            return
        if method == "POST" and action == "kill":
            if container.status != "running":
                raise _Answer(409, f"Container {container.id} is not running")
            sig = getattr(signal, "SIG" + query.get("signal", "KILL").removeprefix("SIG"), signal.SIGKILL)
            fake._kill(container, sig)
            self._empty(204)
            return
        if method == "POST" and action == "stop":
            if container.status != "running":
                self._empty(304)
                return
            fake._kill(container, signal.SIGTERM)
            if not container.done.wait(float(query.get("t") or 10)):
                fake._kill(container, signal.SIGKILL)
                container.done.wait(10)
            self._empty(204)
            return
        if method == "POST" and action == "wait":
            container.done.wait()
            self._json(200, {"StatusCode": container.exit_code})
            return
        if method == "GET" and action == "logs":
            self._logs(container, query)
            return
        if method == "DELETE" and action is None:
            if container.status == "running":
                if query.get("force") not in ("1", "true", "True"):
                    raise _Answer(409, f"You cannot remove a running container {container.id}")
                fake._kill(container, signal.SIGKILL)
                container.done.wait(10)
            with fake._lock:
                fake.containers.pop(container.id, None)
            self._empty(204)
            return
        raise _Answer(404, f"page not found: {method} {path}")

    def _logs(self, container: _Container, query: dict[str, str]) -> None:
        wanted = {s for s in ("stdout", "stderr") if query.get(s) in ("1", "true", "True")}
        stamps = query.get("timestamps") in ("1", "true", "True")
        with self.fake._lock:
            lines = list(container.lines)
        data = b"".join(_frames(lines, wanted, stamps))
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _frames(lines: list[tuple[str, str, float]], wanted: set[str], stamps: bool) -> Iterator[bytes]:
    """Docker's multiplexed stream: per write, ``[stream, 0, 0, 0, size (big endian u32)]`` + payload."""
    for stream, text, at in lines:
        if stream not in wanted:
            continue
        payload = ((_stamp(at) + " ") if stamps else "") + text + "\n"
        raw = payload.encode()
        yield bytes([1 if stream == "stdout" else 2, 0, 0, 0]) + len(raw).to_bytes(4, "big") + raw


def _has_label(container: _Container, pair: list[str]) -> bool:
    labels = container.config.get("Labels") or {}
    return pair[0] in labels and (len(pair) == 1 or labels[pair[0]] == pair[1])


def _normal(image: str) -> str:
    """``alpine`` -> ``alpine:latest``, as the daemon names images."""
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else f"{image}:latest"


class _Answer(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

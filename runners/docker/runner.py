"""The Docker runner (entry point ``docker``): one task attempt, one container on a local daemon.

Kestra's ``io.kestra.plugin.scripts.runner.docker.Docker``, over docker-py's low-level
``APIClient``. Theory of operation::

    submit(spec)   ping the daemon (none: a RunnerError naming DOCKER_HOST or the socket tried),
                   write the inputs under the job's host directory, pull the image as
                   ``pullPolicy`` says, create the container under the attempt's deterministic
                   name (a 409 means it exists: reattach), then start it, once: the first
                   submitter to claim the job's ``started`` file starts it.
    find(spec)     inspect the container by name (or the tombstone of a job that never ran).
    poll(handles)  one LIST of the deployment's containers (label filter), one inspect per
                   container that is running with a timeout or has exited (exit code, OOMKilled).
    cancel         writes the ``cancelled`` tombstone, then kills the container (Kestra kills).
    logs           docker's logs of each stream with timestamps, merged in time order, the
                   wrapper's sentinels and stderr prefix removed; complete once the container
                   has exited (the daemon's log is then whole). Kept in the job directory at
                   cleanup, so they outlive the container.
    cleanup        keeps the log and the final status, then removes the container (``delete``).

The job directory on the host (``base_dir/<container name>``) holds ``squall/`` (bind-mounted at
:data:`CONTAINER_DIR`: ``inputs/`` the runner fills, ``outputs/`` the wrapper fills) and
``state/`` (never mounted, so a job cannot forge it): the start claim, the tombstones
(``cancelled``, ``timeout``), ``final.json`` and ``log.json``. The command is the shared
wrapper (:mod:`runners.wrapper`) with :class:`~runners.wrapper.VolumeStaging` on the mount, so
nothing is required in the image beyond a POSIX ``sh``.

Failures: an exit code is USER; OOM-killed is USER with the reason; the wrapper's own codes (an
input it cannot stage, a command not found) and an image that does not exist or cannot be
created are CONFIG; a pull that keeps failing for the registry's reasons is START_FAILED; a
container someone else removed is LOST; the timeout (enforced by ``poll``, from the container's
start) is TIMEOUT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from runners import retry
from runners.base import (
    Failure,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    RunnerError,
    RunnerOptions,
    RunnerOptionsError,
    TransientRunnerError,
    validate_options,
)
from runners.docker.options import DockerOptions, PullPolicy, parse_bytes
from runners.wrapper import (
    STDERR_PREFIX,
    VolumeStaging,
    WrapperExit,
    sentinel_token,
    split_sentinel,
    wrapper_command,
)

__all__ = ["CONTAINER_DIR", "DEFAULT_SOCKET", "DockerRunner", "classify", "container_name"]

CONTAINER_DIR = "/squall"
"""Where the job's host directory is bind-mounted in the container."""
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
LOG_PAGE = 10_000
MANAGED = "squall.dev/managed"
NAME = "squall.dev/name"
NONCE = "squall.dev/log-nonce"
TIMEOUT = "squall.dev/timeout"
PREFIX = "squall.dev/output-prefix"
DIRECTORY = "squall.dev/dir"
DELETE = "squall.dev/delete"
RESTART_CLAIM_AFTER = 60.0
"""Seconds after which a container still ``created`` under a start claim is started by ``poll``
(its submitter died between the claim and the start)."""
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
_TIMESTAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ?(.*)$", re.DOTALL)


def classify(exc: BaseException) -> bool | None:
    """docker-py's errors: an API answer of 429 or 5xx and a broken connection are transient,
    except a 5xx that says the image or the container does not exist."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    modules = {cls.__module__.partition(".")[0] for cls in type(exc).__mro__}
    if "APIError" in names and "docker" in modules:
        status = int(getattr(getattr(exc, "response", None), "status_code", 0) or 0)
        text = str(getattr(exc, "explanation", "") or exc).lower()
        if "no such" in text or "not found" in text or "does not exist" in text:
            return False
        return status == 429 or status >= 500
    if "requests" in modules and names & {"ConnectionError", "Timeout", "ChunkedEncodingError"}:
        return True
    return None


retry.register_classifier(classify, runner="docker")


def container_name(name: str) -> str:
    """``name`` if Docker accepts it as a container name, else a deterministic valid one."""
    if _NAME.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^a-zA-Z0-9_.-]", "-", name).strip("-.")[:100] or "squall"
    return f"{cleaned}-{digest}"


def _status_code(exc: BaseException) -> int:
    cause: BaseException | None = exc
    while cause is not None:
        code = getattr(getattr(cause, "response", None), "status_code", None)
        if code:
            return int(code)
        cause = cause.__cause__
    return 0


def _explanation(exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return str(getattr(cause, "explanation", None) or cause)


def _parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds; ``0001-01-01...`` (never) is None."""
    if not text or text.startswith("0001-"):
        return None
    match = re.match(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class DockerRunner:
    """Runs each task attempt as one container on a Docker daemon; see the module docstring.

    Constructor keywords (all optional): ``base_url`` (the daemon; default ``DOCKER_HOST``, then
    :data:`DEFAULT_SOCKET`), ``base_dir`` (host directory of the job directories, which the
    daemon must be able to bind-mount; default ``SQUALL_DOCKER_DIR``, then
    ``~/.local/share/squall/docker``), ``deployment`` (the label value telling this
    deployment's containers apart), ``defaults`` (deployment-wide ``taskRunner`` options),
    ``client_factory(base_url) -> APIClient`` (tests), ``policy`` and ``sleep`` (retry backoff),
    ``now`` (timeouts), ``volume_enabled`` (allow the ``volumes`` option: Kestra's
    ``volume-enabled``, off by default; default ``SQUALL_DOCKER_VOLUME_ENABLED``).
    """

    name: ClassVar[str] = "docker"
    Options: ClassVar[type[RunnerOptions]] = DockerOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(
        {
            Failure.USER,
            Failure.CONFIG,
            Failure.START_FAILED,
            Failure.TIMEOUT,
            Failure.CANCELLED,
            Failure.LOST,
        }
    )
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"file"})
    poll_batch: ClassVar[int] = 1_000

    def __init__(
        self,
        *,
        base_url: str | None = None,
        base_dir: str | Path | None = None,
        deployment: str = "default",
        defaults: Mapping[str, Any] | None = None,
        client_factory: Callable[[str], Any] | None = None,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        volume_enabled: bool | None = None,
    ) -> None:
        self._base_url = base_url
        if volume_enabled is None:
            volume_enabled = os.environ.get("SQUALL_DOCKER_VOLUME_ENABLED", "").lower() in (
                "1",
                "true",
                "yes",
            )
        self.volume_enabled = volume_enabled
        root = base_dir or os.environ.get("SQUALL_DOCKER_DIR") or Path.home() / ".local/share/squall/docker"
        self.base_dir = Path(root)
        self.deployment = deployment
        self._defaults = dict(defaults or {})
        self._client_factory = client_factory
        self._policy = policy
        self._sleep = sleep
        self._now = now
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._log_cache: dict[str, list[LogRecord]] = {}

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        return self._defaults

    # -- connection

    def _host(self, options: DockerOptions | None) -> tuple[str, str]:
        """(daemon URL, where it came from) for messages: taskRunner.host, DOCKER_HOST or the default."""
        if options is not None and options.host:
            return options.host, "taskRunner.host"
        if self._base_url:
            return self._base_url, "the deployment's docker base_url"
        if os.environ.get("DOCKER_HOST"):
            return os.environ["DOCKER_HOST"], "DOCKER_HOST"
        return DEFAULT_SOCKET, "the default socket (DOCKER_HOST is not set)"

    def _client(self, url: str) -> Any:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                if self._client_factory is not None:
                    client = self._client_factory(url)
                else:
                    import docker

                    client = docker.APIClient(base_url=url, version="auto", timeout=60)
                self._clients[url] = client
            return client

    def _connect(self, options: DockerOptions | None) -> Any:
        """The client of the daemon, checked with a ping; no daemon is a clear RunnerError."""
        url, source = self._host(options)
        hint = "start Docker, or point DOCKER_HOST (or taskRunner.host) at a running daemon"
        parsed = urlsplit(url)
        if parsed.scheme in ("unix", "http+unix") and not Path(parsed.path or "/").exists():
            raise RunnerError(
                f"no Docker daemon: the socket {parsed.path} (from {source}) does not exist; {hint}",
                runner=self.name,
            )
        try:
            client = self._call(lambda: self._client(url), "connect")
            self._call(client.ping, "ping")
        except TransientRunnerError as exc:
            raise TransientRunnerError(
                f"no Docker daemon answers at {url} (from {source}): {exc}; {hint}", runner=self.name
            ) from exc
        except RunnerError as exc:
            raise RunnerError(
                f"no Docker daemon answers at {url} (from {source}): {exc}; {hint}", runner=self.name
            ) from exc
        return client

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        return retry.call(fn, policy=self._policy, sleep=self._sleep, runner=self.name, what=what)

    # -- job directory

    def _dir(self, name: str) -> Path:
        return self.base_dir / container_name(name)

    def _state(self, name: str) -> Path:
        return self._dir(name) / "state"

    def _final(self, name: str) -> JobStatus | None:
        try:
            raw = json.loads((self._state(name) / "final.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return JobStatus(
            state=JobState(raw["state"]),
            failure=Failure(raw["failure"]) if raw.get("failure") else None,
            exit_code=raw.get("exit_code"),
            reason=raw.get("reason"),
            output_files=raw.get("output_files") or {},
            started=_parse_time(raw.get("started")),
            ended=_parse_time(raw.get("ended")),
        )

    def _keep_final(self, name: str, status: JobStatus) -> None:
        state = self._state(name)
        state.mkdir(parents=True, exist_ok=True)
        raw = {
            "state": status.state.value,
            "failure": status.failure.value if status.failure else None,
            "exit_code": status.exit_code,
            "reason": status.reason,
            "output_files": dict(status.output_files),
            "started": status.started.isoformat().replace("+00:00", "Z") if status.started else None,
            "ended": status.ended.isoformat().replace("+00:00", "Z") if status.ended else None,
        }
        _write_atomic(state / "final.json", json.dumps(raw).encode())

    def _prepare(self, spec: JobSpec) -> Path:
        """Write the inputs (inline and ``file://``) under the job's mounted directory."""
        mounted = self._dir(spec.name) / "squall"
        inputs, outputs = mounted / "inputs", mounted / "outputs"
        for directory in (inputs, outputs):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o777)  # a container running as another user (``user``) still writes
        mounted.chmod(0o777)
        self._state(spec.name).mkdir(parents=True, exist_ok=True)
        for rel, data in spec.input_files.items():
            target = inputs / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for rel, uri in spec.input_uris.items():
            parsed = urlsplit(uri)
            source = Path(unquote(parsed.path))
            if parsed.scheme == "file" and source.is_file():
                target = inputs / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            # else: not there, and the wrapper fails the job as CONFIG naming the input
        return mounted

    # -- protocol

    def submit(self, spec: JobSpec) -> JobHandle:
        options = validate_options(type(self), {**self._defaults, **spec.options})
        assert isinstance(options, DockerOptions)
        if not spec.image:
            raise RunnerError("the Docker task runner needs the task's containerImage", runner=self.name)
        if options.volumes and not self.volume_enabled:
            # Kestra's own default: host binds let a flow read the host, so the deployment opts in.
            problem = (
                "taskRunner.volumes: volume mounts are disabled, as in Kestra (volume-enabled); "
                "the deployment enables them (SQUALL_DOCKER_VOLUME_ENABLED=true)"
            )
            raise RunnerOptionsError(self.name, [problem])
        client = self._connect(options)
        found = self._find(client, spec, self._host(options)[0])
        if found is not None:
            return self._start_once(client, found, spec)
        mounted = self._prepare(spec)
        failed = self._pull(client, spec.image, options)
        if failed is not None:
            self._keep_final(spec.name, failed)
            return self._tombstone_handle(spec.name)
        nonce = uuid.uuid4().hex
        try:
            created = self._call(
                lambda: self._create(client, spec, options, mounted, nonce), "create_container"
            )
        except TransientRunnerError:
            raise
        except RunnerError as exc:
            if _status_code(exc) == 409:  # a racing submitter created it first: reattach
                found = self._find(client, spec, self._host(options)[0])
                if found is None:
                    raise
                return self._start_once(client, found, spec)
            self._keep_final(
                spec.name, self._config_failure(f"cannot create the container: {_explanation(exc)}")
            )
            return self._tombstone_handle(spec.name)
        handle = self._handle(spec.name, str(created["Id"]), self._host(options)[0])
        return self._start_once(client, handle, spec)

    def find(self, spec: JobSpec) -> JobHandle | None:
        options = validate_options(type(self), {**self._defaults, **spec.options})
        assert isinstance(options, DockerOptions)
        if self._is_tombstone(spec.name):
            return self._tombstone_handle(spec.name)
        url, _ = self._host(options)
        return self._find(self._client_of(url), spec, url)

    def _is_tombstone(self, name: str) -> bool:
        """The job ended before any container existed (a pull or create that failed)."""
        state = self._state(name)
        return (state / "final.json").exists() and not (state / "container").exists()

    def _find(self, client: Any, spec: JobSpec, url: str) -> JobHandle | None:
        if self._is_tombstone(spec.name):
            return self._tombstone_handle(spec.name)
        inspected = self._inspect(client, container_name(spec.name))
        if inspected is None:
            return None
        return self._handle(spec.name, str(inspected["Id"]), url)

    def _client_of(self, url: str) -> Any:
        """The client of ``url``, its creation's errors (no daemon) as RunnerErrors."""
        return self._call(lambda: self._client(url), "connect")

    def _client_for(self, handle: JobHandle) -> Any:
        """The client of the daemon the handle's container runs on (the task's ``host``)."""
        return self._client_of(str(handle.data.get("host") or self._host(None)[0]))

    def _inspect(self, client: Any, ref: str) -> dict[str, Any] | None:
        try:
            return dict(self._call(lambda: client.inspect_container(ref), "inspect_container"))
        except TransientRunnerError:
            raise
        except RunnerError as exc:
            if _status_code(exc) == 404:
                return None
            raise

    def _handle(self, name: str, container_id: str, url: str) -> JobHandle:
        data = {"container": container_name(name), "host": url}
        return JobHandle(name=name, runner=self.name, id=container_id, data=data)

    def _tombstone_handle(self, name: str) -> JobHandle:
        return JobHandle(name=name, runner=self.name, id=f"never-started:{container_name(name)}", data={})

    def _start_once(self, client: Any, handle: JobHandle, spec: JobSpec) -> JobHandle:
        """Start the container unless another submitter claimed the start (exactly once)."""
        state = self._state(spec.name)
        state.mkdir(parents=True, exist_ok=True)
        (state / "container").write_text(handle.id)
        try:
            fd = os.open(state / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return handle
        os.close(fd)
        if (state / "cancelled").exists():
            return handle
        self._start(client, handle)
        return handle

    def _start(self, client: Any, handle: JobHandle) -> None:
        try:
            self._call(lambda: client.start(handle.data.get("container") or handle.id), "start")
        except TransientRunnerError:
            raise
        except RunnerError as exc:
            self._keep_final(
                handle.name, self._config_failure(f"cannot start the container: {_explanation(exc)}")
            )

    def _config_failure(self, reason: str) -> JobStatus:
        now = self._now()
        return JobStatus(state=JobState.FAILED, failure=Failure.CONFIG, reason=reason, ended=now)

    def _pull(self, client: Any, image: str, options: DockerOptions) -> JobStatus | None:
        """Pull ``image`` as the policy says; a failure is the job's (CONFIG or START_FAILED)."""
        if options.pull_policy is PullPolicy.NEVER:
            return None
        if options.pull_policy is PullPolicy.IF_NOT_PRESENT:
            try:
                self._call(lambda: client.inspect_image(image), "inspect_image")
                return None
            except TransientRunnerError:
                raise
            except RunnerError as exc:
                if _status_code(exc) != 404:
                    raise
        repository, tag = _split_image(image)
        auth = _auth_config(options)

        def pull() -> None:
            for event in client.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                if isinstance(event, dict) and event.get("error"):
                    raise RunnerError(str(event["error"]), runner=self.name)

        try:
            self._call(pull, "pull")
        except TransientRunnerError as exc:
            now = self._now()
            reason = f"cannot pull image {image}: {exc}"
            return JobStatus(state=JobState.FAILED, failure=Failure.START_FAILED, reason=reason, ended=now)
        except RunnerError as exc:
            return self._config_failure(f"cannot pull image {image}: {_explanation(exc)}")
        return None

    def _create(
        self, client: Any, spec: JobSpec, options: DockerOptions, mounted: Path, nonce: str
    ) -> Mapping[str, Any]:
        upload = VolumeStaging(f"{CONTAINER_DIR}/inputs", f"{CONTAINER_DIR}/outputs")
        keep_outputs = bool(spec.output_files or spec.output_prefix)
        inputs = {rel: rel for rel in (*spec.input_files, *spec.input_uris)}
        command = wrapper_command(
            spec.command,
            sentinel=sentinel_token(spec.name, nonce),
            inputs=inputs,
            fetch=upload,
            output_globs=spec.output_files if keep_outputs else (),
            upload=upload if keep_outputs else None,
        )
        labels = {
            **{k: str(v) for k, v in spec.labels.items()},
            MANAGED: self.deployment,
            NAME: spec.name,
            NONCE: nonce,
            DIRECTORY: str(self._dir(spec.name)),
            DELETE: "true" if options.delete else "false",
        }
        if spec.timeout is not None:
            labels[TIMEOUT] = str(spec.timeout.total_seconds())
        if spec.output_prefix:
            labels[PREFIX] = spec.output_prefix
        host_config = client.create_host_config(**_host_config(options, mounted))
        return dict(
            client.create_container(
                spec.image,
                command=command,
                name=container_name(spec.name),
                environment=dict(spec.env),
                labels=labels,
                host_config=host_config,
                user=options.user or None,
                entrypoint=[""] if options.entry_point is None else list(options.entry_point) or [""],
                working_dir=None,
            )
        )

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        if not handles:
            return {}
        result: dict[str, JobStatus] = {}
        pending = []
        for handle in handles:
            final = self._final(handle.name)
            if final is not None:
                result[handle.name] = final
            else:
                pending.append(handle)
        if not pending:
            return result
        by_host: dict[str, list[JobHandle]] = {}
        for handle in pending:
            by_host.setdefault(str(handle.data.get("host") or self._host(None)[0]), []).append(handle)
        for url, group in by_host.items():
            client = self._client_of(url)
            listed = self._list(client)
            by_name = {str(n).lstrip("/"): c for c in listed for n in c.get("Names") or ()}
            for handle in group:
                status = self._judge(client, handle, by_name.get(container_name(handle.name)))
                if status is not None:
                    result[handle.name] = status
        return result

    def _list(self, client: Any) -> list[dict[str, Any]]:
        """Every container of this deployment on the daemon, running or not (one call)."""
        labels = {"label": [f"{MANAGED}={self.deployment}"]}
        return list(self._call(lambda: client.containers(all=True, filters=labels), "containers"))

    def _judge(self, client: Any, handle: JobHandle, summary: Mapping[str, Any] | None) -> JobStatus | None:
        state_dir = self._state(handle.name)
        cancelled = (state_dir / "cancelled").exists()
        if summary is None or (handle.id and summary.get("Id") not in (None, handle.id)):
            if handle.id.startswith("never-started:") or not state_dir.exists():
                return JobStatus(
                    JobState.LOST, Failure.LOST, reason=f"no container {container_name(handle.name)}"
                )
            if cancelled:
                status = JobStatus(
                    JobState.CANCELLED, Failure.CANCELLED, reason="cancelled", ended=self._now()
                )
            else:
                status = JobStatus(
                    JobState.LOST,
                    Failure.LOST,
                    reason=f"the container {container_name(handle.name)} was removed before its end was seen",
                )
            self._keep_final(handle.name, status)
            return status
        docker_state = str(summary.get("State") or "")
        if docker_state == "created":
            if cancelled:
                status = JobStatus(
                    JobState.CANCELLED, Failure.CANCELLED, reason="cancelled before it started"
                )
                self._keep_final(handle.name, status)
                return status
            claim = state_dir / "started"
            if claim.exists() and time.time() - claim.stat().st_mtime > RESTART_CLAIM_AFTER:
                self._start(client, handle)  # its submitter died between the claim and the start
            return JobStatus(JobState.QUEUED)
        if docker_state in ("running", "paused", "restarting", "removing"):
            labels = summary.get("Labels") or {}
            if TIMEOUT in labels and not cancelled:
                inspected = self._inspect(client, handle.id)
                started = _parse_time((inspected or {}).get("State", {}).get("StartedAt"))
                limit = timedelta(seconds=float(labels[TIMEOUT]))
                if started is not None and self._now() - started > limit:
                    (state_dir / "timeout").write_text(str(limit.total_seconds()))
                    self._kill(client, handle)
            return JobStatus(JobState.RUNNING)
        return self._finish(client, handle, summary, cancelled)

    def _finish(
        self, client: Any, handle: JobHandle, summary: Mapping[str, Any], cancelled: bool
    ) -> JobStatus | None:
        inspected = self._inspect(client, handle.id)
        if inspected is None:
            return None  # removed between the list and now: the next poll says LOST
        state = inspected.get("State") or {}
        labels = (inspected.get("Config") or {}).get("Labels") or {}
        code = int(state.get("ExitCode") or 0)
        started, ended = _parse_time(state.get("StartedAt")), _parse_time(state.get("FinishedAt"))
        timeout_file = self._state(handle.name) / "timeout"

        def finished(
            state: JobState,
            failure: Failure | None,
            reason: str | None,
            files: Mapping[str, str] | None = None,
        ) -> JobStatus:
            return JobStatus(state, failure, code, reason, files or {}, started=started, ended=ended)

        if cancelled:
            status = finished(JobState.CANCELLED, Failure.CANCELLED, "cancelled")
        elif timeout_file.exists():
            limit = timedelta(seconds=float(timeout_file.read_text()))
            status = finished(JobState.FAILED, Failure.TIMEOUT, f"timed out after {limit}")
        elif state.get("OOMKilled"):
            memory = ((inspected.get("HostConfig") or {}).get("Memory")) or 0
            limit_text = f" (memory limit {memory} bytes)" if memory else ""
            reason = f"out of memory: the container was OOM-killed{limit_text}"
            status = finished(JobState.FAILED, Failure.USER, reason)
        elif code in (WrapperExit.NOT_FOUND, WrapperExit.STAGING):
            said = self._wrapper_messages(client, handle, labels.get(NONCE, ""))
            what = (
                "command not found"
                if code == WrapperExit.NOT_FOUND
                else "an input or output could not be staged"
            )
            reason = "; ".join(said) if said else f"{what} (exit {code})"
            status = finished(JobState.FAILED, Failure.CONFIG, reason)
        elif code != 0:
            reason = f"exit code {code}" + (f": {state['Error']}" if state.get("Error") else "")
            status = finished(JobState.FAILED, Failure.USER, reason)
        else:
            try:
                files = self._outputs(handle.name, labels.get(PREFIX))
            except OSError as exc:
                status = finished(JobState.FAILED, Failure.CONFIG, f"cannot copy an output: {exc}")
            else:
                status = finished(JobState.SUCCEEDED, None, None, files)
        self._keep_final(handle.name, status)
        return status

    def _wrapper_messages(self, client: Any, handle: JobHandle, nonce: str) -> list[str]:
        """What the wrapper said about its own failure (``squall: cannot fetch input x ...``)."""
        token = sentinel_token(handle.name, nonce)
        lines = self._stream(client, handle.id, "stderr", token, ended=True)
        return [r.text.removeprefix("squall: ") for r in lines if r.text.startswith("squall: ")][:5]

    def _outputs(self, name: str, prefix: str | None) -> dict[str, str]:
        """The files the wrapper put in ``outputs/``, copied under ``prefix`` (a ``file://`` URI)
        or, without one, kept where they are."""
        outputs = self._dir(name) / "squall" / "outputs"
        found: dict[str, str] = {}
        if not outputs.is_dir():
            return found
        target_root = Path(unquote(urlsplit(prefix).path)) if prefix else None
        for path in sorted(p for p in outputs.rglob("*") if p.is_file()):
            rel = path.relative_to(outputs).as_posix()
            if target_root is None:
                found[rel] = path.as_uri()
                continue
            target = target_root / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            except OSError as exc:
                raise OSError(f"output {rel} to {target}: {exc.strerror or exc}") from exc
            found[rel] = (prefix or "").rstrip("/") + "/" + rel
        return found

    def cancel(self, handle: JobHandle) -> None:
        if self._final(handle.name) is not None:
            return
        client = self._client_for(handle)
        inspected = self._inspect(client, handle.id) if not handle.id.startswith("never-started:") else None
        if inspected is not None and (inspected.get("State") or {}).get("Status") in ("exited", "dead"):
            return  # it ended first: its own end stands
        state_dir = self._state(handle.name)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "cancelled").touch()
        if inspected is not None:
            self._kill(client, handle)

    def _kill(self, client: Any, handle: JobHandle) -> None:
        try:
            self._call(lambda: client.kill(handle.id), "kill")
        except TransientRunnerError:
            raise
        except RunnerError as exc:
            if _status_code(exc) not in (404, 409):  # gone, or not running: nothing to stop
                raise

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        start = int(cursor or 0)
        records, complete = self._records(handle)
        page = records[start : start + LOG_PAGE]
        end = start + len(page)
        return LogChunk(tuple(page), str(end), complete=complete and end >= len(records))

    def _records(self, handle: JobHandle) -> tuple[list[LogRecord], bool]:
        cached = self._log_cache.get(handle.name)
        if cached is not None:
            return cached, True
        kept = self._state(handle.name) / "log.json"
        if kept.exists():
            records = _load_records(kept.read_bytes())
            self._log_cache[handle.name] = records
            return records, True
        final = self._final(handle.name)
        if handle.id.startswith("never-started:"):
            if final is None:
                raise JobNotFoundError(f"no container for {handle.name}", runner=self.name)
            return [], True
        client = self._client_for(handle)
        inspected = self._inspect(client, handle.id)
        if inspected is None:
            if final is not None:
                return [], True
            raise JobNotFoundError(f"no container {handle.id}", runner=self.name)
        ended = (inspected.get("State") or {}).get("Status") in ("exited", "dead")
        nonce = ((inspected.get("Config") or {}).get("Labels") or {}).get(NONCE, "")
        token = sentinel_token(handle.name, nonce)
        streams = [self._stream(client, handle.id, kind, token, ended) for kind in ("stdout", "stderr")]
        merged = sorted(
            (record for stream in streams for record in stream),
            key=lambda r: (r.at or datetime.min.replace(tzinfo=UTC), r.stream != "stdout"),
        )
        if ended:
            self._log_cache[handle.name] = merged
        return merged, ended

    def _stream(self, client: Any, ref: str, kind: str, token: str, ended: bool) -> list[LogRecord]:
        raw = self._call(
            lambda: client.logs(ref, stdout=kind == "stdout", stderr=kind == "stderr", timestamps=True),
            "logs",
        )
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        lines = text.split("\n")
        last_complete = text.endswith("\n")
        if lines and lines[-1] == "":
            lines.pop()
        records: list[LogRecord] = []
        for index, line in enumerate(lines):
            if not ended and index == len(lines) - 1 and not last_complete:
                break  # a line still being written
            match = _TIMESTAMPED.match(line)
            at, body = (_parse_time(match.group(1)), match.group(2)) if match else (None, line)
            if kind == "stderr":
                body = body.removeprefix(STDERR_PREFIX)
            sentinel = split_sentinel(body, token, kind)
            if sentinel is not None:
                if sentinel.before:
                    records.append(LogRecord(kind, sentinel.before, at))
                continue
            records.append(LogRecord(kind, body, at))
        return records

    def cleanup(self, handle: JobHandle) -> None:
        if handle.id.startswith("never-started:"):
            return
        state = self._state(handle.name)
        kept = state / "log.json"
        client = self._client_for(handle)
        inspected = self._inspect(client, handle.id)
        if inspected is None:
            return
        if (inspected.get("State") or {}).get("Status") not in ("exited", "dead"):
            return  # still running: the control plane cleans up after the end
        if self._final(handle.name) is None:
            self.poll([handle])
        if not kept.exists():
            records, _ = self._records(handle)
            state.mkdir(parents=True, exist_ok=True)
            _write_atomic(kept, _dump_records(records))
        labels = (inspected.get("Config") or {}).get("Labels") or {}
        if labels.get(DELETE, "true") == "true":
            try:
                self._call(lambda: client.remove_container(handle.id, force=True), "remove_container")
            except TransientRunnerError:
                raise
            except RunnerError as exc:
                if _status_code(exc) != 404:
                    raise

    def dispose(self, handle: JobHandle) -> None:
        """Forget the job directory once the control plane stored the log and outputs."""
        shutil.rmtree(self._dir(handle.name), ignore_errors=True)
        self._log_cache.pop(handle.name, None)


def _split_image(image: str) -> tuple[str, str | None]:
    """(repository, tag or digest) as docker-py's pull wants them."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"


def _auth_config(options: DockerOptions) -> dict[str, str] | None:
    creds = options.credentials
    if creds is None:
        return None
    auth: dict[str, str] = {}
    if creds.registry:
        auth["serveraddress"] = creds.registry
    if creds.auth:
        user, _, password = base64.b64decode(creds.auth).decode().partition(":")
        auth.update(username=user, password=password)
    if creds.username is not None:
        auth["username"] = creds.username
    if creds.password is not None:
        auth["password"] = creds.password
    if creds.identity_token:
        auth["identitytoken"] = creds.identity_token
    return auth


def _host_config(options: DockerOptions, mounted: Path) -> dict[str, Any]:
    config: dict[str, Any] = {"binds": [f"{mounted}:{CONTAINER_DIR}:rw", *(options.volumes or ())]}
    if options.cpu is not None and options.cpu.cpus is not None:
        config["nano_cpus"] = int(options.cpu.cpus * 1e9)
    memory = options.memory
    if memory is not None:
        if memory.memory is not None:
            config["mem_limit"] = parse_bytes(memory.memory)
        if memory.memory_swap is not None:
            swap = str(memory.memory_swap).strip()
            config["memswap_limit"] = -1 if swap == "-1" else parse_bytes(memory.memory_swap)
        if memory.memory_reservation is not None:
            config["mem_reservation"] = parse_bytes(memory.memory_reservation)
        if memory.memory_swappiness is not None:
            config["mem_swappiness"] = memory.memory_swappiness
        if memory.oom_kill_disable is not None:
            config["oom_kill_disable"] = memory.oom_kill_disable
    if options.shm_size is not None:
        config["shm_size"] = parse_bytes(options.shm_size)
    if options.network_mode:
        config["network_mode"] = options.network_mode
    if options.extra_hosts:
        config["extra_hosts"] = dict(entry.split(":", 1) for entry in options.extra_hosts)
    return config


def _dump_records(records: Sequence[LogRecord]) -> bytes:
    return json.dumps(
        [[r.stream, r.text, r.at.isoformat() if r.at else None, r.partial] for r in records]
    ).encode()


def _load_records(data: bytes) -> list[LogRecord]:
    return [
        LogRecord(stream, text, datetime.fromisoformat(at) if at else None, bool(partial))
        for stream, text, at, partial in json.loads(data)
    ]

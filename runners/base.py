"""The contract between the control plane and every compute backend.

A runner turns a :class:`JobSpec` into a job on some backend and reports on it in neutral
terms. It never imports ``control_plane``: a third-party package can ship a runner by
exposing a class in the ``squall.runners`` entry-point group, exactly as the built-ins do.

Theory of operation::

    spec = JobSpec(name="etl-extract-3k2j4h5a", command=("sh", "-c", "echo hi"))
    handle = runner.find(spec) or runner.submit(spec)   # submit is idempotent on spec.name
    statuses = runner.poll([handle])                     # batched: one call for many jobs
    if statuses[handle.name].terminal:
        chunk = runner.logs(handle, None)                # every line, the last one included
        runner.cleanup(handle)

The values exchanged (:class:`JobSpec`, :class:`JobHandle`, :class:`JobStatus`...) are
frozen msgspec Structs, cheap to create at a cold start; derive a changed copy with
``msgspec.structs.replace``. The control plane persists ``handle.to_dict()`` and can rebuild
it with :meth:`JobHandle.from_dict` after a crash; ``find(spec)`` reattaches to a job that
was submitted but whose handle was never recorded. Errors: a transient backend error is retried
inside the runner (``runners/retry.py``); what escapes is a :class:`RunnerError`::

    RunnerError                 permanent: the backend's message, nothing to retry
    ├── RunnerOptionsError      the ``taskRunner`` block is invalid (names the field)
    ├── JobNotFoundError        a handle names a job the backend does not know
    └── TransientRunnerError    still failing after the retry policy gave up
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from msgspec import Struct, field
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Failure",
    "JobHandle",
    "JobNotFoundError",
    "JobSpec",
    "JobState",
    "JobStatus",
    "LogChunk",
    "LogRecord",
    "Resources",
    "Runner",
    "RunnerError",
    "RunnerOptions",
    "RunnerOptionsError",
    "TransientRunnerError",
    "Waitable",
    "runner_classes",
    "validate_options",
]

ENTRY_POINT_GROUP = "squall.runners"


class JobState(StrEnum):
    """Neutral job states: every backend's own states map onto these."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    LOST = "LOST"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})


class Failure(StrEnum):
    """Why a job did not succeed. Only USER failures spend the task's ``retry`` attempts."""

    USER = "USER"
    PREEMPTED = "PREEMPTED"
    START_FAILED = "START_FAILED"
    UNSCHEDULABLE = "UNSCHEDULABLE"
    QUOTA = "QUOTA"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    LOST = "LOST"


class JobSpec(Struct, frozen=True):
    """Everything a backend needs to run one attempt of one task.

    ``name`` is deterministic (one attempt, one name) and is the idempotency key of
    :meth:`Runner.submit`. ``command`` is an argv run in the job's working directory, where
    ``input_files`` are written first; ``WORKING_DIR`` and ``OUTPUT_DIR`` are set in the
    environment. When the job ends, files matching ``output_files`` (globs relative to the
    working directory) and everything under ``OUTPUT_DIR`` are copied under
    ``output_prefix`` (a URI: ``file://``, ``s3://``, ``gs://``...) and listed in the terminal
    :class:`JobStatus`. ``options`` is the task's ``taskRunner`` block without ``type``; the
    runner validates it with its :class:`RunnerOptions` model.
    """

    name: str
    command: tuple[str, ...]
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    input_files: Mapping[str, bytes] = field(default_factory=dict)
    output_files: tuple[str, ...] = ()
    output_prefix: str | None = None
    timeout: timedelta | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


class JobHandle(Struct, frozen=True):
    """How to find a submitted job again. ``data`` is JSON-compatible backend detail."""

    name: str
    runner: str
    id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runner": self.runner, "id": self.id, "data": dict(self.data)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JobHandle:
        return cls(raw["name"], raw["runner"], raw["id"], dict(raw.get("data") or {}))


class Resources(Struct, frozen=True):
    """What the backend billed for a finished job, so the control plane can estimate cost."""

    vcpu_seconds: float = 0.0
    gib_seconds: float = 0.0
    accelerator_seconds: float = 0.0
    spot: bool = False


class JobStatus(Struct, frozen=True):
    """One observation of a job. ``failure`` is set for every non-SUCCEEDED terminal state."""

    state: JobState
    failure: Failure | None = None
    exit_code: int | None = None
    reason: str | None = None
    output_files: Mapping[str, str] = field(default_factory=dict)
    resources: Resources | None = None
    started: datetime | None = None
    ended: datetime | None = None
    cost: float | None = None
    """USD the runner estimates the job was billed, from its price table; None when unknown."""

    @property
    def terminal(self) -> bool:
        return self.state.terminal


class LogRecord(Struct, frozen=True):
    """One line of a job's output, without its line ending, decoded as UTF-8 (invalid bytes replaced).

    A backend that cuts lines longer than it can carry in one record sets ``partial`` on every
    piece but the last: the next record of the same ``stream`` continues the line. The control
    plane joins them, so an outputs marker longer than the backend's record is still found
    (or, beyond the outputs limit, fails the task instead of vanishing).
    """

    stream: str  # "stdout" or "stderr"
    text: str
    at: datetime | None = None
    partial: bool = False


class LogChunk(Struct, frozen=True):
    """Lines after ``cursor``, in order. ``complete`` only once the job is terminal and nothing is left."""

    lines: tuple[LogRecord, ...]
    cursor: str | None
    complete: bool


class RunnerOptions(BaseModel):
    """Base of every runner's ``taskRunner`` options model: strict, Kestra's property names."""

    # ``defer_build``: a runner's options are validated when one of its tasks is submitted,
    # so handlers that never submit for it do not build its validator at import.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class RunnerError(Exception):
    """A backend refused or failed an operation; the message is the backend's own."""

    def __init__(self, message: str, *, runner: str | None = None) -> None:
        super().__init__(message)
        self.runner = runner


class RunnerOptionsError(RunnerError):
    """The ``taskRunner`` block is invalid; ``problems`` holds one ``field: message`` per error."""

    def __init__(self, runner: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        message = f"invalid taskRunner options for {runner}: " + "; ".join(self.problems)
        super().__init__(message, runner=runner)


class JobNotFoundError(RunnerError):
    """The backend has no job with this handle (deleted, expired, or never created)."""


class TransientRunnerError(RunnerError):
    """A transient error (throttling, 5xx, timeout) that outlived the retry policy."""


@runtime_checkable
class Runner(Protocol):
    """A compute backend. Every method but ``submit`` is idempotent; ``submit`` is idempotent on name.

    Example (the process runner)::

        runner = ProcessRunner(base_dir=tmp)
        handle = runner.submit(JobSpec(name="demo-1", command=("sh", "-c", "echo hi")))
        while not (status := runner.poll([handle])["demo-1"]).terminal: ...
        assert [r.text for r in runner.logs(handle, None).lines] == ["hi"]

    A runner configured with deployment-wide options (the AWS Batch queue and bucket from
    ``SQUALL_RUNNERS``) exposes them as ``option_defaults: Mapping[str, Any]``; a flow's
    ``taskRunner`` block may then leave them out, and the control plane validates the merge.
    """

    name: ClassVar[str]
    """Entry-point name, e.g. ``process`` or ``aws-batch``; recorded in every handle."""

    Options: ClassVar[type[RunnerOptions]]

    def submit(self, spec: JobSpec) -> JobHandle: ...

    def find(self, spec: JobSpec) -> JobHandle | None: ...

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]: ...

    def cancel(self, handle: JobHandle) -> None: ...

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk: ...

    def cleanup(self, handle: JobHandle) -> None: ...

    def parse_event(self, event: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
        """``(job name, status)`` from one of the backend's push events, None for any other event.

        A runner with push events also declares ``event_sources: ClassVar[frozenset[str]]``,
        the EventBridge ``source`` values it understands, so the events Lambda only asks (and
        builds) the runners concerned. If its events carry the backend's job id, it also
        implements ``handle_from_event(event) -> JobHandle | None``; the control plane then
        stores no handle after a submit (one write less per task) and takes it from the
        terminal event instead.
        """
        ...


@runtime_checkable
class Waitable(Protocol):
    """Optional: a runner that can tell when one of its jobs may have changed state.

    The local service blocks on it instead of polling on a fixed interval, so a chain of
    short local jobs does not pay a polling delay per task.
    """

    def wait(self, timeout: float) -> bool: ...


def validate_options(runner_cls: type[Runner], options: Mapping[str, Any]) -> RunnerOptions:
    """Validate a ``taskRunner`` block against the runner's model; errors name each field."""
    try:
        return runner_cls.Options.model_validate(dict(options))
    except ValidationError as exc:
        problems = [
            f"taskRunner.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        raise RunnerOptionsError(runner_cls.name, problems) from None


def runner_classes(
    on_import_error: Callable[[str, ImportError], None] | None = None,
) -> dict[str, type[Runner]]:
    """Every runner installed in the ``squall.runners`` entry-point group, by name.

    A runner module that cannot be imported (a plugin importing an SDK that is not
    installed) raises, unless ``on_import_error(name, error)`` is given: then it is reported
    there and left out, and the other runners stay usable.
    """
    # Imported here: only building the runner registry reads entry points, and most importers
    # of this module (runner modules, flow validation, the CLI's other commands) never do.
    from importlib.metadata import entry_points

    found: dict[str, type[Runner]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except ImportError as exc:
            if on_import_error is None:
                raise
            on_import_error(ep.name, exc)
    return found

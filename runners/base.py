"""The contract between the control plane and every compute backend.

A runner turns a :class:`JobSpec` into a job on some backend and reports on it in neutral
terms. It never imports ``control_plane``: a third-party package can ship a runner by
exposing a class in the ``squall.runners`` entry-point group, exactly as the built-ins do.

Theory of operation::

    spec = JobSpec(name="etl-extract-3k2j4h5a", command=("sh", "-c", "echo hi"))
    handle = runner.find(spec) or runner.submit(spec)   # submit is idempotent on spec.name
    statuses = runner.poll([handle])                     # batched: one call for many jobs
    if statuses[handle.name].terminal:
        cursor = None
        while not (chunk := runner.logs(handle, cursor)).complete:   # an empty page is not the end
            cursor = chunk.cursor
        runner.cleanup(handle)

The contract, in the words a third-party runner is tested against (``runners/testing``;
docs/runners/README.md says the same with an example runner):

- **Exactly once.** ``spec.name`` names one attempt. However many processes call ``submit``
  for it, and whatever responses are lost, the command runs at most once: a runner uses the
  backend's idempotency key where there is one, and otherwise converges on one job before it
  starts (the others cancelled before they run). ``find`` returns that job.
- **One job id per handle.** ``handle.id`` is the backend's id of the job that runs. An event
  (:class:`JobEvent`) names the job id it is about; the control plane ignores a terminal
  status whose id is not the one it recorded for the attempt.
- **Timeout** counts run time only: from the moment the job starts (STARTING or RUNNING)
  until it ends; time queued is not counted (a runner may bound it separately, and reports
  UNSCHEDULABLE when it does). A TIMEOUT's reason says ``timed out after <duration>``.
- **Cancel** is idempotent and may be repeated until the job is terminal. Stopping may take
  time (a container's grace period): until then ``poll`` may still say RUNNING, and the
  control plane keeps the job CANCELLING and calls ``cancel`` again. Once the job has
  stopped, it ends CANCELLED (unless it reached another terminal state first), and every
  later ``poll`` of the handle, by any runner instance, says so even if the backend deletes
  the job: the runner leaves a tombstone the backend keeps (a tag, a reason, a label, a file).
- **LOST needs evidence** that the job does not run and never will report (the backend says
  it was deleted, its host is gone, it is older than the backend keeps jobs). A job the
  backend does not know *yet* (eventual consistency after a submit) is left out of ``poll``'s
  result: no news, the control plane asks again.
- **Logs** come in order with the last line. ``complete`` is said once the job is terminal
  and the runner knows nothing more will come: for a cloud log service, after the job
  wrapper's end-of-log sentinel (``runners/wrapper.py``), or after a bounded grace with
  ``truncated`` set. An empty page means only "nothing yet". Pages are bounded (the control
  plane and the suite read page by page: about 10,000 records a page, as CloudWatch's).
- **Failures** (:class:`Failure`) say who is at fault and so who pays for another try; a
  runner declares the ones it can report in ``failures``.

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
    "Evented",
    "Failure",
    "JobEvent",
    "JobHandle",
    "JobNotFoundError",
    "JobSpec",
    "JobState",
    "JobStatus",
    "LogChunk",
    "LogRecord",
    "PushEvent",
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
    """Why a job did not succeed, which decides who pays for another try::

        USER           the command failed (its exit code)                 the task's ``retry``
        CONFIG         it cannot run as specified: bad image, command      never retried
                       not found, invalid job spec, an input it cannot
                       fetch or an output it cannot upload
        TIMEOUT        it ran past its timeout (run time, see above)       the task's ``retry``
        UNSCHEDULABLE  no capacity could take it within its queue bound    the task's ``retry``
        PREEMPTED      the platform took the host back (spot, eviction)    infrastructure budget
        START_FAILED   the platform failed to start it, for reasons of     infrastructure budget
                       its own that may pass (not the job's spec: CONFIG)
        QUOTA          an account or project quota is exhausted            infrastructure budget
        LOST           evidence that it does not run and never reports     infrastructure budget
        CANCELLED      cancelled (by Squall or by someone else)            never retried

    The infrastructure budget is the control plane's: such attempts are submitted again on
    their own count without spending the task's ``retry`` attempts (engine ``INFRA_FAILURES``).
    CONFIG is never retried: running a missing image again cannot help, and a typo must not
    run four times before the user hears of it.
    """

    USER = "USER"
    CONFIG = "CONFIG"
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
    the inputs are put first: ``input_files`` are small contents given inline (a script),
    ``input_uris`` are files in the deployment's storage (``file://``, ``s3://``, ``gs://``,
    ``az://``) that the runner stages natively, without needing any tool in the job's image;
    a file it cannot stage fails the job with :attr:`Failure.CONFIG` naming it. ``WORKING_DIR``
    and ``OUTPUT_DIR`` are set in the environment. When the job ends, files matching
    ``output_files`` (globs relative to the working directory) and everything under
    ``OUTPUT_DIR`` are copied under ``output_prefix`` (a URI in one of the runner's
    ``storage_schemes``) and listed in the terminal :class:`JobStatus`. Without an
    ``output_prefix``, a runner keeps ``output_files`` where it can (the process runner in the
    job's directory, AWS Batch in its staging bucket) and reports them; with neither, nothing
    is kept and nothing is looked for when the job ends. ``options`` is the task's
    ``taskRunner`` block without ``type``; the runner validates it with its
    :class:`RunnerOptions` model.

    ``claimed``: the caller holds the only claim to submit ``name`` across processes (the
    control plane's submit claim, a conditional write in its store, held longer than any
    Lambda may run) and knows no job of that name exists (it just created the claim, or
    ``find`` said so), so a runner that guards ``submit`` by a lock or a lookup of its own
    (AWS Batch: a conditional write in its bucket, a ListJobs) may skip them. Without it (a
    runner used on its own), the runner's own guards apply.
    """

    name: str
    command: tuple[str, ...]
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    input_files: Mapping[str, bytes] = field(default_factory=dict)
    input_uris: Mapping[str, str] = field(default_factory=dict)
    output_files: tuple[str, ...] = ()
    output_prefix: str | None = None
    timeout: timedelta | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    claimed: bool = False


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
    """Lines after ``cursor``, in order.

    ``complete`` only once the job is terminal and nothing is left; an empty page with
    ``complete`` false means "nothing yet" (a cloud log service still ingesting). ``truncated``
    comes with ``complete`` when the runner stopped waiting for the rest (the wrapper's end
    sentinel never arrived within its grace): the log may miss its last lines, and the control
    plane says so wherever it shows the log.
    """

    lines: tuple[LogRecord, ...]
    cursor: str | None
    complete: bool
    truncated: bool = False


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

    What a runner can do is declared, never found by looking for attributes: the class
    attributes below, and the optional protocols :class:`Evented` (push events) and
    :class:`Waitable` (a local wake-up).
    """

    name: ClassVar[str]
    """Entry-point name, e.g. ``process`` or ``aws-batch``; recorded in every handle."""

    Options: ClassVar[type[RunnerOptions]]

    failures: ClassVar[frozenset[Failure]]
    """The failure classes this runner can report (the contract suite checks each mapping)."""

    storage_schemes: ClassVar[frozenset[str]]
    """URI schemes the runner stages natively, in (``input_uris``) and out (``output_prefix``):
    ``{"file"}`` for local jobs, ``{"s3"}`` for AWS Batch. For any other scheme the control
    plane copies: it reads an input and passes its bytes, and it copies outputs the runner
    kept in its own place into the deployment's storage."""

    poll_batch: ClassVar[int]
    """Handles one backend call of ``poll`` covers (AWS Batch's DescribeJobs: 100); ``poll``
    of n handles makes at most ``ceil(n / poll_batch)`` calls per region and identity."""

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        """Deployment-wide options (``SQUALL_RUNNERS``: the AWS Batch queue and bucket), under
        each task's ``taskRunner`` block; a flow may leave them out and the control plane
        validates the merge. Empty when the deployment sets none."""
        ...

    def submit(self, spec: JobSpec) -> JobHandle: ...

    def find(self, spec: JobSpec) -> JobHandle | None: ...

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]: ...

    def cancel(self, handle: JobHandle) -> None: ...

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk: ...

    def cleanup(self, handle: JobHandle) -> None: ...


class PushEvent(Struct, frozen=True):
    """One push event, whatever carried it, in neutral terms.

    ``key`` routes it to the runners that declared it in :attr:`Evented.event_keys`: the
    EventBridge ``source`` for AWS (``aws.batch``); ``gcp.pubsub`` for every Pub/Sub push; for
    a signed webhook the key in its path (``POST /events/webhook/<key>``), which a runner must
    declare (``control_plane/ingress``). ``body`` is the event's document (the
    EventBridge event, the Pub/Sub message's decoded ``data``, the webhook's JSON body),
    ``attributes`` what came beside it (Pub/Sub attributes). The ingress has already checked
    the sender (OIDC token, signature) before a runner sees it.
    """

    key: str
    body: Mapping[str, Any]
    attributes: Mapping[str, str] = field(default_factory=dict)


class JobEvent(Struct, frozen=True):
    """What one push event says about one job.

    ``job_id`` is the backend's id of the job the event is about: the control plane applies a
    terminal status only when it is the id recorded for the attempt (a duplicate job's end
    must not end the task). ``handle`` is set when the event carries everything a handle
    needs (see :attr:`Evented.carries_handles`).
    """

    name: str
    job_id: str
    status: JobStatus
    handle: JobHandle | None = None


@runtime_checkable
class Evented(Protocol):
    """Optional: a runner whose backend pushes job state changes.

    The events function builds and asks only the runners whose ``event_keys`` hold the
    event's key, so it pays for no SDK it does not need. Delivery is at least once and in
    any order: the control plane checks each event against the stored job.
    """

    event_keys: ClassVar[frozenset[str]]

    carries_handles: ClassVar[bool]
    """True when every event's :attr:`JobEvent.handle` is set: the control plane then stores
    no handle after a submit (one write less per task) and takes it from the terminal event."""

    def parse_event(self, event: PushEvent) -> JobEvent | None:
        """What ``event`` says, None for an event that is not about one of this runner's jobs."""
        ...


@runtime_checkable
class Waitable(Protocol):
    """Optional: a runner that can tell when one of its jobs may have changed state.

    The local service blocks on it instead of polling on a fixed interval, so a chain of
    short local jobs does not pay a polling delay per task.
    """

    def wait(self, timeout: float) -> bool: ...


@runtime_checkable
class Disposable(Protocol):
    """Optional: a runner that keeps a job's traces on this machine (the process runner's job
    directory: its log, status and outputs, which ``cleanup`` leaves for any reader).

    The control plane calls ``dispose`` once the job's end, log and outputs are stored, so a
    long-lived local deployment does not keep one directory per task for ever. Idempotent.
    """

    def dispose(self, handle: JobHandle) -> None: ...


@runtime_checkable
class Preparable(Protocol):
    """Optional: a runner that can ready a job's start before the control plane's write that
    records it, so its own preparations overlap that write (locally: its fsync).

    ``prepare(spec)`` may do anything that starts nothing (lay out files, fork and configure a
    supervisor that waits); the ``submit`` of an equal spec then starts the readied job, and
    ``unprepare`` calls off whatever no submit took (the write failed, or the job was left to
    the tick). A crash in between starts nothing. Errors are the submit's to report:
    ``prepare`` never raises for a spec ``submit`` would refuse.
    """

    def prepare(self, spec: JobSpec) -> None: ...

    def go(self, spec: JobSpec, meanwhile: Callable[[], None]) -> JobHandle:
        """``submit(spec)``, calling ``meanwhile`` once a readied start was told to start,
        before its answer is awaited (the caller's own wait overlaps the start)."""
        ...

    def unprepare(self) -> None: ...


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

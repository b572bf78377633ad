"""Azure Batch runner: one Batch task per task attempt, in one Batch job per deployment and pool.

Theory of operation::

    submit   get_task(job, task id) first (a resubmit costs one call); else the wrapper script
             and the inline inputs are uploaded to the blob container under
             <stagingPrefix>/<job>/<task>/<nonce>/, and create_task names them as
             ``resourceFiles`` (SAS URLs the runner signs, read-only, one per blob), inputs from
             ``az://`` too; outputs and the task's stdout.txt/stderr.txt are ``outputFiles``
             (a write-only container SAS, uploaded on success and on failure), so nothing is
             needed in the user's image. 201: created; 409 TaskExists: submitted before (by
             us or a racing process): read it; 404 JobNotFound: the deployment's job for the
             pool is made (409 JobExists is fine) and the task created again
    the task commandLine ``/bin/sh -c 'exec /bin/sh "$AZ_BATCH_TASK_WORKING_DIR/.squall/run.sh"'``:
             Squall's wrapper (runners/wrapper.py) with the argv set inside it, so a command of
             any size fits; inputs copied from .squall/in/, outputs to .squall/out/
    poll     a few handles: get_task each; more: one paged list_tasks of the job (1000 tasks a
             page, ``$select`` of what the taxonomy reads), whatever the executions
    logs     while running: ranged reads of the node's stdout.txt/stderr.txt; once ended: the
             same files as uploaded to the blob container (node files go with the node); to
             both sentinels of the wrapper (runners/gcs_folder.read_log)
    cancel   final.json (CANCELLED, create-only) in the container, then terminate_task, which
             takes no reason: the tombstone says it was Squall's, should the task be deleted
    cleanup  final.json (how it ended), then the staged inputs and the task are deleted; the
             log, the outputs and final.json stay

Why one job per deployment and pool: a Batch job is a queue on one pool, free to keep, and one
``list_tasks`` of it reconciles every task Squall runs there. Task ids are the attempts' names
(at most 64 characters): creating it is the claim, so one attempt runs once.
azure-batch's long-running pollers (terminate and delete job) wait 5 s a step; the runner uses
none of them. SDK retries are off (``retry_total=0``): :mod:`runners.retry` retries with
:func:`runners.azure_errors.classify`.

Constructor keywords (all optional: the deployment's ``SQUALL_RUNNERS`` entry): ``defaults``
(options under every task's ``taskRunner``: account, endpoint, accessKey, poolId,
blobStorage...), ``allowed_endpoints`` (more Batch endpoints a task may name), ``credential``
(a ``TokenCredential`` for Microsoft Entra ID instead of azure-identity's default chain, when
there is no accessKey), ``transport`` (azure-core's, for tests), ``policy`` and ``sleep``
(retry backoff), ``rate`` (API calls per second), ``now`` (wall clock), ``log_grace``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from msgspec.structs import replace
from pydantic import ValidationError

from runners import azure_errors, retry
from runners.azure_batch import cost, taxonomy
from runners.azure_batch.options import AzureBatchOptions, BlobStorage
from runners.azure_batch.staging import Signer, plan_task
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
    validate_options,
)
from runners.endpoints import allowed_endpoint, canonical_endpoint
from runners.gcs_folder import LOG_PAGE_BYTES, parse_log_page, read_log
from runners.pacing import TokenBucket
from runners.wrapper import sentinel_token

__all__ = ["AzureBatchRunner", "azure_job_id", "azure_task_id"]

RUNNER = "azure-batch"
retry.register_classifier(azure_errors.classify, runner=RUNNER)

PAGE = 1000
"""Tasks a list_tasks page holds (Batch's maximum ``maxresults``)."""
GET_THRESHOLD = 4
"""Up to this many handles of one job are read with get_task; more with list_tasks."""
SELECT = ["id", "displayName", "state", "executionInfo", "constraints", "creationTime"]
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def azure_task_id(name: str) -> str:
    """The Batch task id of an attempt: its name when Batch takes it as is, else a slug and a hash."""
    if _ID.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:51].strip("-")
    return f"{slug}-{digest}"


def azure_job_id(deployment: str, pool: str) -> str:
    """The Batch job of a deployment's tasks on one pool (at most 64 characters)."""
    plain = f"squall-{deployment}-{pool}"
    if len(plain) <= 64:
        return plain
    return f"squall-{hashlib.sha256(plain.encode()).hexdigest()[:20]}-{pool[:36]}"


class _Context:
    """The clients of one Batch account and its blob storage (with the deployment's credentials)."""

    def __init__(self, batch: Any, blob: Any, account: str, key: str) -> None:
        self.batch = batch
        self.blob = blob
        self.storage_account = account
        self.storage_key = key


class AzureBatchRunner:
    """Runs each task attempt as one Azure Batch task; see the module docstring."""

    name: ClassVar[str] = RUNNER
    Options: ClassVar[type[RunnerOptions]] = AzureBatchOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(
        {
            Failure.USER,
            Failure.CONFIG,
            Failure.TIMEOUT,
            Failure.CANCELLED,
            Failure.LOST,
            Failure.START_FAILED,
        }
    )
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"az"})
    poll_batch: ClassVar[int] = PAGE
    """One list_tasks page covers 1000 tasks of the deployment's job on a pool (all its tasks,
    not only those polled: ``delete`` keeps the job to the live ones)."""

    def __init__(
        self,
        *,
        defaults: Mapping[str, Any] | None = None,
        allowed_endpoints: Sequence[str] = (),
        credential: Any = None,
        transport: Any = None,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        rate: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        limiter_sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        log_grace: float = 60.0,
    ) -> None:
        if isinstance(allowed_endpoints, str):
            raise TypeError("allowed_endpoints is a list of URLs, not one string")
        self._defaults = dict(defaults or {})
        self._allowed = tuple(canonical_endpoint(url) for url in allowed_endpoints)
        self._credential = credential
        self._transport = transport
        self._policy = policy
        self._sleep = sleep
        self._now = now
        self._log_grace = log_grace
        self._bucket = TokenBucket(rate, clock=clock, sleep=limiter_sleep)
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, str], _Context] = {}
        self._finished: dict[str, JobStatus] = {}  # handle id -> final status

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        return dict(self._defaults)

    # -- options, clients, calls

    def _options(self, spec: JobSpec) -> AzureBatchOptions:
        merged = {**self._defaults, **dict(spec.options)}
        if isinstance(self._defaults.get("blobStorage"), Mapping) and isinstance(
            spec.options.get("blobStorage"), Mapping
        ):
            merged["blobStorage"] = {**self._defaults["blobStorage"], **spec.options["blobStorage"]}
        options = validate_options(type(self), merged)
        assert isinstance(options, AzureBatchOptions)
        problems = options.problems() + options.secrets_match(self._defaults)
        if spec.image is None and options.container_run_options:
            problems.append("taskRunner.containerRunOptions: only for a task with a containerImage")
        if problems:
            raise RunnerOptionsError(RUNNER, problems)
        return options

    def _endpoint(self, requested: str) -> str:
        default = self._defaults.get("endpoint")
        if isinstance(default, str) and canonical_endpoint(requested) == canonical_endpoint(default):
            return canonical_endpoint(default)
        return allowed_endpoint(
            RUNNER,
            "endpoint",
            requested,
            allowed=self._allowed,
            default=default,
            what="the Batch account's key or token",
            setting="SQUALL_RUNNERS allowed_endpoints",
        )

    def _context(self, endpoint: str, account: str) -> _Context:
        """Clients for an account, signed with the deployment's credentials (never a handle's)."""
        key = (endpoint, account)
        with self._lock:
            found = self._contexts.get(key)
        if found is not None:
            return found
        try:
            # The account and its key are the deployment's; which container is each task's.
            blob = BlobStorage.model_validate(
                {"containerName": "squall", **(self._defaults.get("blobStorage") or {})}
            )
        except ValidationError as exc:
            raise RunnerError(
                f"the deployment's blobStorage (SQUALL_RUNNERS) is missing or invalid: {exc}", runner=RUNNER
            ) from None
        if blob.key_problem():
            raise RunnerError(f"the deployment's blobStorage: {blob.key_problem()}", runner=RUNNER)
        access_key = self._defaults.get("accessKey")
        from azure.batch import BatchClient
        from azure.storage.blob import BlobServiceClient

        options: dict[str, Any] = {"retry_total": 0}
        if self._transport is not None:
            options["transport"] = self._transport
        credential: Any
        if access_key:
            from azure.core.credentials import AzureNamedKeyCredential

            credential = AzureNamedKeyCredential(account, str(access_key))
        elif self._credential is not None:
            credential = self._credential
        else:
            from azure.identity import DefaultAzureCredential

            credential = self._credential = DefaultAzureCredential()
        context = _Context(
            BatchClient(endpoint, credential, **options),
            BlobServiceClient(
                blob.blob_endpoint,
                credential={"account_name": blob.account_name, "account_key": blob.account_key},
                **options,
            ),
            blob.account_name,
            blob.account_key,
        )
        with self._lock:
            return self._contexts.setdefault(key, context)

    def _default(self, option: str) -> str:
        value = self._defaults.get(option)
        return (
            canonical_endpoint(value) if option == "endpoint" and isinstance(value, str) else str(value or "")
        )

    def _handle_context(self, handle: JobHandle) -> _Context:
        """The handle's account, or the runner's own when the handle names none (a runner behind
        a proxy reads the same tasks through its own endpoint)."""
        return self._context(
            str(handle.data.get("endpoint") or self._default("endpoint")),
            str(handle.data.get("account") or self._default("account")),
        )

    def _call(self, fn: Callable[..., Any], /, *args: Any, paced: bool = True, **kwargs: Any) -> Any:
        def once() -> Any:
            if paced:
                self._bucket.acquire()
            return fn(*args, **kwargs)

        what = f"{RUNNER} {getattr(fn, '__name__', 'call')}"
        return retry.call(once, policy=self._policy, sleep=self._sleep, runner=RUNNER, what=what)

    def _blob_call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Storage calls: retried like the others, not paced (another service and quota)."""
        return self._call(fn, *args, paced=False, **kwargs)

    def _get_task(self, ctx: _Context, job: str, task: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        def get() -> dict[str, Any] | None:
            try:
                return dict(ctx.batch.get_task(job, task).as_dict())
            except ResourceNotFoundError:
                return None

        found: dict[str, Any] | None = self._call(get)
        return found

    # -- SAS URLs

    def _signer(self, ctx: _Context) -> Signer:
        return Signer(ctx.storage_account, ctx.storage_key, str(ctx.blob.url))

    def _az(self, ctx: _Context, uri: str, what: str) -> tuple[str, str]:
        """(container, blob name) of an ``az://`` URI in the runner's storage account."""
        try:
            return self._signer(ctx).locate(uri, what)
        except ValueError as exc:
            raise RunnerError(str(exc), runner=RUNNER) from None

    # -- submit / find

    def find(self, spec: JobSpec) -> JobHandle | None:
        opts = self._options(spec)
        endpoint = self._endpoint(opts.endpoint)
        ctx = self._context(endpoint, opts.account)
        job, task = azure_job_id(opts.deployment, opts.pool_id), azure_task_id(spec.name)
        doc = self._get_task(ctx, job, task)
        return None if doc is None else self._handle(spec.name, doc, opts, endpoint, job)

    def submit(self, spec: JobSpec) -> JobHandle:
        opts = self._options(spec)
        if not spec.command:
            raise RunnerError("empty command", runner=RUNNER)
        endpoint = self._endpoint(opts.endpoint)
        ctx = self._context(endpoint, opts.account)
        job, task_id = azure_job_id(opts.deployment, opts.pool_id), azure_task_id(spec.name)
        found = self._get_task(ctx, job, task_id)
        if found is None:
            self._create(ctx, opts, spec, job, task_id)
            found = self._get_task(ctx, job, task_id)
            if found is None:
                raise RunnerError(f"task {task_id} was created and is gone", runner=RUNNER)
        return self._handle(spec.name, found, opts, endpoint, job)

    def _create(self, ctx: _Context, opts: AzureBatchOptions, spec: JobSpec, job: str, task_id: str) -> None:
        from azure.batch import models
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        task = self._task(ctx, opts, spec, job, task_id)

        def create() -> bool:
            try:
                ctx.batch.create_task(job, task)
            except ResourceExistsError:  # TaskExists: submitted before (by us or a racing process)
                return True
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) not in (None, "JobNotFound"):
                    raise
                return False
            return True

        if self._call(create):
            return
        pool_job = models.BatchJobCreateOptions(id=job, pool_info=models.BatchPoolInfo(pool_id=opts.pool_id))

        def create_job() -> None:
            with contextlib.suppress(ResourceExistsError):  # JobExists: made by another submitter
                ctx.batch.create_job(pool_job)

        self._call(create_job)
        if not self._call(create):
            raise RunnerError(f"Batch job {job} was created and is gone", runner=RUNNER)

    def _task(self, ctx: _Context, opts: AzureBatchOptions, spec: JobSpec, job: str, task_id: str) -> Any:
        """The task to create, its files uploaded first (:mod:`runners.azure_batch.staging`)."""
        try:
            plan = plan_task(
                spec,
                opts,
                job=job,
                task_id=task_id,
                nonce=secrets.token_hex(8),
                signer=self._signer(ctx),
                now=self._now(),
            )
        except ValueError as exc:
            raise RunnerError(str(exc), runner=RUNNER) from None
        for (container, blob), data in plan.uploads.items():
            self._upload(ctx, container, blob, data)
        return plan.task

    def _upload(self, ctx: _Context, container: str, blob: str, data: bytes) -> None:
        client = ctx.blob.get_blob_client(container, blob)
        self._blob_call(client.upload_blob, data, overwrite=True)

    def _handle(
        self, name: str, doc: Mapping[str, Any], opts: AzureBatchOptions, endpoint: str, job: str
    ) -> JobHandle:
        about = _display(doc)
        price = opts.price
        data: dict[str, Any] = {
            "job": job,
            "task": str(doc["id"]),
            "container": opts.blob_storage.container_name,
            "staging": str(about.get("staging") or f"{opts.staging_prefix}/{job}/{doc['id']}"),
            "nonce": str(about.get("nonce", "")),
            "out": str(about.get("out") or ""),
            "delete": opts.delete,
            "slots": opts.resources.required_slots,
            "slotsPerNode": opts.task_slots_per_node,
        }
        if price is not None:
            data["price"] = price.model_dump()
        if endpoint != self._default("endpoint"):
            data["endpoint"] = endpoint
        if opts.account != self._default("account"):
            data["account"] = opts.account
        return JobHandle(name, RUNNER, f"{job}/{doc['id']}/{data['nonce']}", data)

    # -- poll

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        groups: dict[tuple[str, str, str], list[JobHandle]] = {}
        for handle in handles:
            known = self._known(handle)
            if known is not None:
                result[handle.name] = known
            elif not _ours(handle):
                result[handle.name] = JobStatus(
                    JobState.LOST,
                    Failure.LOST,
                    reason=f"{handle.id!r} is not an Azure Batch task of Squall's",
                )
            else:
                d = handle.data
                groups.setdefault((str(d.get("endpoint")), str(d.get("account")), str(d["job"])), []).append(
                    handle
                )
        for (_, _, job), group in groups.items():
            ctx = self._handle_context(group[0])
            if len(group) > GET_THRESHOLD:
                docs = self._list(ctx, job)
            else:
                docs = {}
                for handle in group:
                    doc = self._get_task(ctx, job, str(handle.data["task"]))
                    if doc is not None:
                        docs[str(doc["id"])] = doc
            for handle in group:
                result[handle.name] = self._observe(ctx, handle, docs.get(str(handle.data["task"])))
        return result

    def _list(self, ctx: _Context, job: str) -> dict[str, dict[str, Any]]:
        """Every task of the job, one call a page of 1000 (a missing job has none)."""
        from azure.core.exceptions import ResourceNotFoundError

        found: dict[str, dict[str, Any]] = {}
        pages = ctx.batch.list_tasks(job, max_results=PAGE, select=SELECT).by_page()

        def page() -> list[dict[str, Any]] | None:
            try:
                return [dict(task.as_dict()) for task in next(pages)]
            except StopIteration:
                return None
            except ResourceNotFoundError:
                return None

        # A retried page asks for the same page again: by_page keeps the continuation until a page succeeds.
        while (tasks := self._call(page)) is not None:
            found.update({str(t["id"]): t for t in tasks})
        return found

    def _observe(self, ctx: _Context, handle: JobHandle, doc: Mapping[str, Any] | None) -> JobStatus:
        if doc is not None and _display(doc).get("nonce", "") != handle.data.get("nonce"):
            doc = None  # another task under the same id: not the job this handle recorded
        if doc is None:
            final = self._final(ctx, handle)
            gone = JobStatus(
                JobState.LOST, Failure.LOST, reason=f"the Batch task {handle.data['task']} was deleted"
            )
            return self._remember(handle, final or gone)
        status = taxonomy.task_status(doc)
        if not status.terminal:
            return status
        return self._remember(handle, self._settle(ctx, handle, status))

    def _settle(self, ctx: _Context, handle: JobHandle, status: JobStatus) -> JobStatus:
        """The final word: cost, and the outputs this task uploaded (its blobs carry its nonce)."""
        data = handle.data
        price = data.get("price") or {}
        slots, per_node = int(data.get("slots", 1)), int(data.get("slotsPerNode", 1))
        billed = cost.billed(
            status.started,
            status.ended,
            vcpus=float(price.get("vcpus", 0)),
            gib=float(price.get("gib", 0)),
            slots=slots,
            slots_per_node=per_node,
        )
        status = replace(status, resources=billed if price else None)
        if price and status.started is not None and status.ended is not None:
            seconds = (status.ended - status.started).total_seconds()
            status = replace(
                status,
                cost=cost.share(
                    seconds=seconds, hour=float(price["hour"]), slots=slots, slots_per_node=per_node
                ),
            )
        if status.state is JobState.CANCELLED or not data.get("out"):
            return status
        return replace(status, output_files=self._outputs(ctx, handle))

    def _outputs(self, ctx: _Context, handle: JobHandle) -> dict[str, str]:
        out = str(handle.data["out"])
        container, prefix = self._az(ctx, out, "output prefix")
        client = ctx.blob.get_container_client(container)
        nonce = handle.data.get("nonce")

        def names() -> list[str]:
            from azure.core.exceptions import ResourceNotFoundError

            try:
                return [
                    b.name
                    for b in client.list_blobs(name_starts_with=prefix, include=["metadata"])
                    if (b.metadata or {}).get("squalltask") == nonce
                ]
            except ResourceNotFoundError:
                return []

        found: list[str] = self._blob_call(names)
        return {
            name[len(prefix) :]: f"az://{ctx.storage_account}/{container}/{name}" for name in sorted(found)
        }

    def _remember(self, handle: JobHandle, status: JobStatus) -> JobStatus:
        if status.terminal:
            with self._lock:
                self._finished[handle.id] = status
        return status

    def _known(self, handle: JobHandle) -> JobStatus | None:
        with self._lock:
            return self._finished.get(handle.id)

    # -- the tombstone

    def _final_blob(self, ctx: _Context, handle: JobHandle) -> Any:
        return ctx.blob.get_blob_client(str(handle.data["container"]), f"{handle.data['staging']}/final.json")

    def _final(self, ctx: _Context, handle: JobHandle) -> JobStatus | None:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._final_blob(ctx, handle)

        def read() -> bytes | None:
            try:
                return bytes(blob.download_blob().readall())
            except ResourceNotFoundError:
                return None

        raw = self._blob_call(read)
        if raw is None:
            return None
        doc = json.loads(raw)
        if doc.get("id") != handle.id:
            return None
        return JobStatus(
            JobState(doc["state"]),
            Failure(doc["failure"]) if doc.get("failure") else None,
            exit_code=doc.get("exit_code"),
            reason=doc.get("reason"),
            output_files=dict(doc.get("output_files") or {}),
            started=taxonomy.timestamp(doc.get("started")),
            ended=taxonomy.timestamp(doc.get("ended")),
            cost=doc.get("cost"),
        )

    def _write_final(self, ctx: _Context, handle: JobHandle, status: JobStatus, *, create_only: bool) -> None:
        from azure.core.exceptions import ResourceExistsError

        doc = {
            "id": handle.id,
            "state": status.state.value,
            "failure": status.failure.value if status.failure else None,
            "exit_code": status.exit_code,
            "reason": status.reason,
            "output_files": dict(status.output_files),
            "started": status.started.isoformat() if status.started else None,
            "ended": status.ended.isoformat() if status.ended else None,
            "cost": status.cost,
        }
        blob = self._final_blob(ctx, handle)

        def write() -> None:
            with contextlib.suppress(ResourceExistsError):  # create-only: the first word stays
                blob.upload_blob(json.dumps(doc).encode(), overwrite=not create_only)

        self._blob_call(write)

    # -- cancel / cleanup / logs

    def cancel(self, handle: JobHandle) -> None:
        if not _ours(handle):
            raise JobNotFoundError(f"{handle.id!r} is not an Azure Batch task of Squall's", runner=RUNNER)
        ctx = self._handle_context(handle)
        job, task = str(handle.data["job"]), str(handle.data["task"])
        doc = self._get_task(ctx, job, task)
        if doc is None or doc.get("state") == "completed":
            return
        self._write_final(
            ctx,
            handle,
            JobStatus(JobState.CANCELLED, Failure.CANCELLED, reason="cancelled"),
            create_only=True,
        )
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        def terminate() -> None:
            with contextlib.suppress(
                ResourceExistsError, ResourceNotFoundError
            ):  # TaskCompleted meanwhile, or deleted
                ctx.batch.terminate_task(job, task)

        self._call(terminate)

    def cleanup(self, handle: JobHandle) -> None:
        """final.json (how it ended), then the staged inputs and the task; the log and outputs stay."""
        if not _ours(handle) or not handle.data.get("delete", True):
            return
        status = self._known(handle) or self.poll([handle]).get(handle.name)
        if status is None or not status.terminal:
            return
        ctx = self._handle_context(handle)
        self._write_final(ctx, handle, status, create_only=False)
        container = ctx.blob.get_container_client(str(handle.data["container"]))
        staged = f"{handle.data['staging']}/{handle.data.get('nonce', '')}/"

        def delete_staged() -> None:
            from azure.core.exceptions import ResourceNotFoundError

            for blob in container.list_blobs(name_starts_with=staged):
                with contextlib.suppress(ResourceNotFoundError):
                    container.delete_blob(blob.name)

        self._blob_call(delete_staged)
        from azure.core.exceptions import ResourceNotFoundError

        def delete() -> None:
            with contextlib.suppress(ResourceNotFoundError):  # already gone
                ctx.batch.delete_task(str(handle.data["job"]), str(handle.data["task"]))

        self._call(delete)

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        if not _ours(handle):
            raise JobNotFoundError(f"{handle.id!r} is not an Azure Batch task of Squall's", runner=RUNNER)
        token = sentinel_token(handle.name, str(handle.data.get("nonce", "")))
        return read_log(
            _TaskLog(self, self._handle_context(handle), handle),
            cursor,
            token,
            lambda: self.poll([handle]).get(handle.name),
            now=self._now().timestamp(),
            grace=self._log_grace,
        )


class _TaskLog:
    """The task's two streams: node files while it runs, their uploaded copies once it ended."""

    def __init__(self, runner: AzureBatchRunner, ctx: _Context, handle: JobHandle) -> None:
        self.runner, self.ctx, self.handle = runner, ctx, handle

    def read_stream(
        self, stream: str, offset: int, token: str, budget: int
    ) -> tuple[list[LogRecord], int, bool]:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        data = self.handle.data
        ended = self.runner._known(self.handle) is not None
        end = offset + LOG_PAGE_BYTES - 1

        def node() -> bytes | None:
            try:
                chunks = self.ctx.batch.download_task_file(
                    str(data["job"]), str(data["task"]), f"{stream}.txt", ocp_range=f"bytes={offset}-{end}"
                )
                return b"".join(chunks)
            except ResourceNotFoundError:
                return None  # not written yet, or the task is gone: its uploaded copy
            except HttpResponseError as exc:
                if exc.status_code == 416:  # nothing past the end yet
                    return b""
                raise

        def uploaded() -> bytes:
            blob = self.ctx.blob.get_blob_client(
                str(data["container"]), f"{data['staging']}/log/{stream}.txt"
            )
            try:
                return bytes(blob.download_blob(offset=offset, length=LOG_PAGE_BYTES).readall())
            except ResourceNotFoundError:
                return b""
            except HttpResponseError as exc:
                if exc.status_code == 416:
                    return b""
                raise

        raw = None if ended else self.runner._call(node)
        if raw is None:
            raw = self.runner._blob_call(uploaded)
        return parse_log_page(raw, stream, offset, token, budget)


def _display(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What Squall recorded in the task's displayName (its name, nonce, staging, outputs)."""
    try:
        about = json.loads(str(doc.get("displayName") or doc.get("display_name") or "{}"))
    except ValueError:
        return {}
    return about if isinstance(about, dict) else {}


def _ours(handle: JobHandle) -> bool:
    return all(handle.data.get(k) for k in ("job", "task", "container", "staging"))

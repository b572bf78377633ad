"""Cloud Run jobs runner: one Cloud Run job per task attempt, started at its creation.

Theory of operation::

    submit   inputs staged in gs://<bucket>/<prefix>/<job>/in/ (runners/gcs_folder.py), then
             create_job(job_id=<short id of the attempt's name>, start_execution_token=<token>):
             Cloud Run starts one execution with the job, named from the job and the token, so
             the attempt has one deterministic execution; a second create is a 409 (already
             submitted: read the job), and nothing else can start an execution of it
    the job  one container running Squall's wrapper over the bucket mounted as a Cloud Storage
             volume (gen2; only this attempt's folder, ``only-dir``): inputs in, outputs and
             each stream's log out, as for Google Batch
    poll     a few handles: get_execution each; more: the ``jobs/-`` wildcard list of
             executions, one call a page of 100, kept to this deployment's label client-side;
             the exit codes of failed executions come from their tasks: one list_tasks each
             for a few, else the ``jobs/-/executions/-`` wildcard list, one call a page
             no execution: get_job; a job Cloud Run could not make ready (an image that does
             not exist: its terminalCondition) is CONFIG, one not started yet QUEUED
    logs     the folder's log objects by byte ranges, to both sentinels
    cancel   cancel_execution, not waited on; the execution ends CANCELLED; before the
             execution exists, the job is deleted under the cancel tombstone
    cleanup  the staged inputs and the job are deleted (Kestra's ``delete``); the log, the
             outputs and ``final.json`` (how it ended) stay

Why one job per attempt: ``run_job`` takes no idempotency key and names its executions
itself, so a lost response or two racing submitters would start two runs. A job id is unique
in its region: creating it is the claim. Cloud Run has no push events for jobs: polling (one
list call per page of executions) is the only path.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

from msgspec.structs import replace

from runners import google_errors, retry
from runners.base import (
    Failure,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    Resources,
    RunnerError,
    RunnerOptions,
    RunnerOptionsError,
    validate_options,
)
from runners.cloud_run import taxonomy
from runners.cloud_run.options import CloudRunOptions
from runners.gcs_folder import JobFolder, read_log, wrapper_for
from runners.gcs_folder import output_prefix as gcs_output_prefix
from runners.google_runner import Context, GoogleRunner, document, run_limit
from runners.labels import gcp_labels
from runners.wrapper import sentinel_token

__all__ = ["MOUNT", "CloudRunRunner", "cloud_run_job_id"]

RUNNER = "cloud-run"
retry.register_classifier(google_errors.classify, runner=RUNNER)

MOUNT = "/mnt/squall"
VOLUME = "squall"
DEFAULT_IMAGE = "python:3.12-slim"
DEFAULT_SHELL = "/bin/sh"
LIST_PAGE = 100
GET_THRESHOLD = 4
MANAGED_LABEL, DEPLOYMENT_LABEL, NONCE_LABEL = "squall-managed", "squall-deployment", "squall-nonce"
NAME_ANNOTATION = "squall.io/name"
TOKEN = "run"
"""The execution token: one job per attempt, so one constant token makes its one execution's name."""


def cloud_run_job_id(name: str) -> str:
    """A short, deterministic job id for an attempt's name: ``sq-`` and 20 characters of its hash.

    Job ids are at most 63 characters and the execution's name is the job's plus the token, so
    Squall's names (up to 63) cannot be used as they are; the full name is an annotation.
    """
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode().lower()
    return f"sq-{digest[:20]}"


def run_types() -> Any:
    """google.cloud.run_v2, imported on first use."""
    from google.cloud import run_v2

    return run_v2


class CloudRunRunner(GoogleRunner):
    """Runs each task attempt as one Cloud Run job; see the module docstring and
    :mod:`runners.google_runner` for the constructor keywords."""

    name: ClassVar[str] = RUNNER
    Options: ClassVar[type[RunnerOptions]] = CloudRunOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(
        {Failure.USER, Failure.CONFIG, Failure.TIMEOUT, Failure.CANCELLED, Failure.LOST}
    )
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"gs"})
    poll_batch: ClassVar[int] = LIST_PAGE // 2
    """Two calls a page of 100: the executions, then (when some failed) their tasks."""

    def _api(self, credentials: Any, endpoint: str | None) -> Any:
        run_v2 = run_types()
        options = {"api_endpoint": endpoint} if endpoint else None
        made = {
            kind: cls(transport="rest", credentials=credentials, client_options=options)
            for kind, cls in (
                ("jobs", run_v2.JobsClient),
                ("executions", run_v2.ExecutionsClient),
                ("tasks", run_v2.TasksClient),
            )
        }
        return SimpleNamespace(**made)  # ctx.api.jobs, .executions, .tasks

    def _options(self, spec: JobSpec) -> CloudRunOptions:
        options = validate_options(type(self), {**self._defaults, **dict(spec.options)})
        assert isinstance(options, CloudRunOptions)
        return options

    # -- submit / find

    def find(self, spec: JobSpec) -> JobHandle | None:
        opts = self._options(spec)
        ctx = self._spec_context(opts)
        job = self._get(ctx.api.jobs.get_job, self._job_name(opts, cloud_run_job_id(spec.name)))
        return None if job is None else self._handle(spec.name, job, opts)

    def submit(self, spec: JobSpec) -> JobHandle:
        opts = self._options(spec)
        if not spec.command:
            raise RunnerError("empty command", runner=RUNNER)
        job_id = cloud_run_job_id(spec.name)
        ctx = self._spec_context(opts)
        staging = f"{opts.staging_prefix}/{job_id}"
        folder = JobFolder(ctx.storage, opts.bucket, staging, self._unpaced, RUNNER)
        inline, staged = folder.stage_inputs(spec)
        job = self._job(spec, opts, staging, inline, staged)
        request = run_types().CreateJobRequest(
            parent=f"projects/{opts.project_id}/locations/{opts.region}", job=job, job_id=job_id
        )
        from google.api_core import exceptions

        def create() -> bool:
            try:
                ctx.api.jobs.create_job(
                    request=request, retry=None, timeout=60
                )  # the operation: not waited on
            except exceptions.Conflict:  # ALREADY_EXISTS: submitted before (by us or a racing process)
                return False
            return True

        self._call(create)
        created = self._get(ctx.api.jobs.get_job, self._job_name(opts, job_id))
        if created is None:
            raise RunnerError(f"job {job_id} was created and is gone", runner=RUNNER)
        return self._handle(spec.name, created, opts)

    @staticmethod
    def _job_name(opts: CloudRunOptions, job_id: str) -> str:
        return f"projects/{opts.project_id}/locations/{opts.region}/jobs/{job_id}"

    def _handle(self, spec_name: str, job: Any, opts: CloudRunOptions) -> JobHandle:
        doc = document(job)
        job_name = str(doc["name"])
        execution = (doc.get("latestCreatedExecution") or {}).get(
            "name"
        ) or f"{job_name}/executions/{job_name.rpartition('/')[2]}-{TOKEN}"
        env = taxonomy.env_of(doc)
        data: dict[str, Any] = {
            **self._handle_data(opts),
            "job": job_name,
            "execution": execution,
            "staging": f"{opts.staging_prefix}/{job_name.rpartition('/')[2]}",
            "nonce": (doc.get("labels") or {}).get(NONCE_LABEL, ""),
            "deployment": opts.deployment,
            "delete": opts.delete,
            "inputs": int(env.get("SQUALL_STAGED_INPUTS", "1") or 1),
            "cpu": opts.resources.vcpus,
            "gib": opts.resources.gib,
        }
        if env.get("SQUALL_OUTPUT_PREFIX"):
            data["out"] = env["SQUALL_OUTPUT_PREFIX"]
        return JobHandle(spec_name, RUNNER, str(doc.get("uid", "")), data)

    def _job(
        self,
        spec: JobSpec,
        opts: CloudRunOptions,
        staging: str,
        inline: Mapping[str, bytes],
        staged: Mapping[str, str],
    ) -> Any:
        t = run_types()
        output_prefix = gcs_output_prefix(spec, RUNNER)
        keep = output_prefix is not None or bool(spec.output_files)
        nonce = secrets.token_hex(8)
        command = wrapper_for(
            spec, MOUNT, nonce=nonce, inline=inline, staged=staged, keep=keep, runner=RUNNER
        )
        env = {
            **spec.env,
            "SQUALL_JOB_NAME": spec.name,
            "SQUALL_STAGED_INPUTS": str(len(staged)),
        }
        if keep:
            env["SQUALL_OUTPUT_PREFIX"] = output_prefix or f"gs://{opts.bucket}/{staging}/out/"
        container = t.Container(
            image=spec.image or DEFAULT_IMAGE,
            command=[DEFAULT_SHELL],
            args=command[1:],
            env=[t.EnvVar(name=k, value=v) for k, v in env.items()],
            resources=t.ResourceRequirements(
                limits={"cpu": opts.resources.cpu, "memory": opts.resources.memory}
            ),
            volume_mounts=[t.VolumeMount(name=VOLUME, mount_path=MOUNT)],
        )
        volume = t.Volume(
            name=VOLUME,
            gcs=t.GCSVolumeSource(bucket=opts.bucket, read_only=False, mount_options=[f"only-dir={staging}"]),
        )
        task = t.TaskTemplate(
            containers=[container],
            volumes=[volume],
            max_retries=opts.max_retries,
            execution_environment=t.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2,
        )
        limit = run_limit(spec.timeout, opts.timeout) or run_limit(opts.wait_until_completion)
        if limit is not None:
            task.timeout = limit
        if opts.job_service_account:
            task.service_account = opts.job_service_account
        if opts.vpc_access_connector or opts.vpc_egress or opts.network or opts.subnetwork:
            interfaces = (
                [t.VpcAccess.NetworkInterface(network=opts.network or "", subnetwork=opts.subnetwork or "")]
                if opts.network or opts.subnetwork
                else []
            )
            task.vpc_access = t.VpcAccess(
                connector=opts.vpc_access_connector or "",
                egress=t.VpcAccess.VpcEgress[opts.vpc_egress] if opts.vpc_egress else 0,
                network_interfaces=interfaces,
            )
        try:
            labels = gcp_labels({**opts.labels, **spec.labels})
        except ValueError as exc:
            raise RunnerOptionsError(RUNNER, [f"labels: {exc}"]) from None
        labels |= {MANAGED_LABEL: "true", DEPLOYMENT_LABEL: opts.deployment, NONCE_LABEL: nonce}
        return t.Job(
            labels=labels,
            annotations={NAME_ANNOTATION: spec.name},
            template=t.ExecutionTemplate(labels=labels, task_count=1, parallelism=1, template=task),
            start_execution_token=TOKEN,
        )

    # -- poll

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        groups: dict[tuple[Any, ...], list[JobHandle]] = {}
        for handle in handles:
            known = self._known(handle)
            if known is not None:
                result[handle.name] = known
            elif not _ours(handle):
                result[handle.name] = JobStatus(
                    JobState.LOST, Failure.LOST, reason=f"{handle.id!r} is not a Cloud Run job of Squall's"
                )
            else:
                d = handle.data
                groups.setdefault(
                    (d["project"], d["region"], d.get("endpoint"), d.get("impersonate")), []
                ).append(handle)
        for group in groups.values():
            ctx = self._handle_context(group[0])
            listed = self._list(ctx, group[0]) if len(group) > GET_THRESHOLD else {}
            docs: dict[str, Mapping[str, Any] | None] = {}
            for handle in group:
                doc = listed.get(str(handle.data["execution"]))
                if doc is None:
                    found = self._get(ctx.api.executions.get_execution, str(handle.data["execution"]))
                    doc = None if found is None else document(found)
                docs[handle.name] = doc
            failed = [
                d
                for d in docs.values()
                if d is not None and taxonomy.execution_status(d).state is JobState.FAILED
            ]
            tasks = self._tasks(ctx, group[0], failed)
            for handle in group:
                result[handle.name] = self._observe(ctx, handle, docs[handle.name], tasks)
        return result

    def _tasks(
        self, ctx: Context, handle: JobHandle, failed: Sequence[Mapping[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The task of each failed execution (its exit code): one list_tasks each for a few, else
        the ``jobs/-/executions/-`` wildcard list, one call a page."""
        if not failed:
            return {}
        if len(failed) <= GET_THRESHOLD:
            parents = [str(d["name"]) for d in failed]
        else:
            d = handle.data
            parents = [f"projects/{d['project']}/locations/{d['region']}/jobs/-/executions/-"]
        found: dict[str, dict[str, Any]] = {}
        for parent in parents:
            token = ""
            while True:
                request = run_types().ListTasksRequest(parent=parent, page_size=LIST_PAGE, page_token=token)
                page = self._call(self._tasks_page, ctx, request)
                for task in page.tasks:
                    doc = document(task)
                    found[str(doc.get("execution", "")).rpartition("/")[2]] = doc  # a name or a full path
                token = page.next_page_token
                if not token:
                    break
        return found

    @staticmethod
    def _tasks_page(ctx: Context, request: Any) -> Any:
        return next(iter(ctx.api.tasks.list_tasks(request=request, retry=None, timeout=30).pages))

    def _list(self, ctx: Context, handle: JobHandle) -> dict[str, dict[str, Any]]:
        """Every execution in the project and region (the ``jobs/-`` wildcard), by name, one call
        a page; this deployment's only (its label)."""
        d = handle.data
        parent = f"projects/{d['project']}/locations/{d['region']}/jobs/-"
        found: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            request = run_types().ListExecutionsRequest(parent=parent, page_size=LIST_PAGE, page_token=token)
            page = self._call(self._list_page, ctx, request)
            for execution in page.executions:
                doc = document(execution)
                if (doc.get("labels") or {}).get(DEPLOYMENT_LABEL) == d.get("deployment", "squall"):
                    found[str(doc["name"])] = doc
            token = page.next_page_token
            if not token:
                return found

    @staticmethod
    def _list_page(ctx: Context, request: Any) -> Any:
        return next(iter(ctx.api.executions.list_executions(request=request, retry=None, timeout=30).pages))

    def _observe(
        self,
        ctx: Context,
        handle: JobHandle,
        doc: Mapping[str, Any] | None,
        tasks: Mapping[str, Mapping[str, Any]],
    ) -> JobStatus:
        folder = self._folder(ctx, handle)
        if doc is None:
            return self._without_execution(ctx, handle, folder)
        status = taxonomy.execution_status(doc)
        if not status.terminal:
            return status
        if status.state is JobState.CANCELLED:
            return self._remember(handle, folder.final(handle.id) or status)
        if status.state is JobState.FAILED:
            status = taxonomy.task_failure(status, tasks.get(str(doc["name"]).rpartition("/")[2]))
        return self._remember(handle, self._complete(ctx, handle, status))

    def _without_execution(self, ctx: Context, handle: JobHandle, folder: JobFolder) -> JobStatus:
        """No execution: the job failed to become ready (CONFIG), has not started it yet
        (QUEUED), or is gone with it (how it ended is in ``final.json``, else LOST)."""
        found = self._get(ctx.api.jobs.get_job, str(handle.data["job"]))
        job = None if found is None else document(found)
        if job is not None:
            failed = taxonomy.job_failure(job)
            if failed is not None:
                return self._remember(handle, failed)
            if not job.get("executionCount"):
                return JobStatus(JobState.QUEUED)
        gone = JobStatus(
            JobState.LOST,
            Failure.LOST,
            reason=f"the Cloud Run execution {handle.data['execution']} was deleted",
        )
        return self._remember(handle, folder.final(handle.id) or gone)

    def _complete(self, ctx: Context, handle: JobHandle, status: JobStatus) -> JobStatus:
        """The final word: cost, then what only the bucket can tell (GoogleRunner._settle)."""
        return self._settle(
            ctx, handle, replace(status, resources=_billed(handle, status), cost=_cost(handle, status))
        )

    # -- cancel / cleanup / logs

    def cancel(self, handle: JobHandle) -> None:
        if not _ours(handle):
            raise JobNotFoundError(f"{handle.id!r} is not a Cloud Run job of Squall's", runner=RUNNER)
        ctx = self._handle_context(handle)
        found = self._get(ctx.api.executions.get_execution, str(handle.data["execution"]))
        if found is None:
            self._cancel_job(ctx, handle)
            return
        if taxonomy.execution_status(document(found)).terminal:
            return
        self._folder(ctx, handle).write_final(
            handle.id, JobStatus(JobState.CANCELLED, Failure.CANCELLED, reason="cancelled")
        )
        from google.api_core import exceptions

        def cancel() -> None:
            with contextlib.suppress(exceptions.NotFound, exceptions.BadRequest):  # gone, or ended meanwhile
                ctx.api.executions.cancel_execution(
                    name=str(handle.data["execution"]), retry=None, timeout=30
                )

        self._call(cancel)

    def _cancel_job(self, ctx: Context, handle: JobHandle) -> None:
        """Cancel before the execution exists: the tombstone, then the job is deleted, so no
        execution can start; the poll reads CANCELLED from ``final.json``. A job that failed
        to become ready has nothing to cancel."""
        found = self._get(ctx.api.jobs.get_job, str(handle.data["job"]))
        job = None if found is None else document(found)
        if job is None or job.get("executionCount") or taxonomy.job_failure(job) is not None:
            return
        self._folder(ctx, handle).write_final(
            handle.id, JobStatus(JobState.CANCELLED, Failure.CANCELLED, reason="cancelled before it started")
        )
        from google.api_core import exceptions

        def delete() -> None:
            with contextlib.suppress(exceptions.NotFound):
                ctx.api.jobs.delete_job(name=str(handle.data["job"]), retry=None, timeout=30)

        self._call(delete)

    def cleanup(self, handle: JobHandle) -> None:
        """Delete the staged inputs and the job (its executions go with it), leaving ``final.json``."""
        if _ours(handle):
            self._clean(
                handle,
                lambda ctx: ctx.api.jobs.delete_job(name=str(handle.data["job"]), retry=None, timeout=30),
            )

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        if not _ours(handle):
            raise JobNotFoundError(f"{handle.id!r} is not a Cloud Run job of Squall's", runner=RUNNER)
        token = sentinel_token(handle.name, str(handle.data.get("nonce", "")))
        return read_log(
            self._folder(self._handle_context(handle), handle),
            cursor,
            token,
            lambda: self.poll([handle]).get(handle.name),
            now=self._now().timestamp(),
            grace=self._log_grace,
        )


def _ours(handle: JobHandle) -> bool:
    return all(handle.data.get(k) for k in ("job", "execution", "project", "region", "bucket", "staging"))


def _billed(handle: JobHandle, status: JobStatus) -> Resources | None:
    if status.started is None or status.ended is None:
        return None
    seconds = max(0.0, (status.ended - status.started).total_seconds())
    return Resources(
        vcpu_seconds=seconds * float(handle.data.get("cpu", 1)),
        gib_seconds=seconds * float(handle.data.get("gib", 0.5)),
    )


def _cost(handle: JobHandle, status: JobStatus) -> float | None:
    price, billed = handle.data.get("pricing"), _billed(handle, status)
    if not price or billed is None:
        return None
    hourly = billed.vcpu_seconds * float(price.get("vcpuHour", 0)) + billed.gib_seconds * float(
        price.get("gibHour", 0)
    )
    return round(hourly / 3600, 8)

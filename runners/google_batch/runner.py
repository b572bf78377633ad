"""Google Cloud Batch runner: one Batch job per task attempt, files and logs through a GCS bucket.

Theory of operation::

    submit   inputs copied into gs://<bucket>/<prefix>/<job>/in/ (server-side, create-only),
             then create_job(job_id=<the attempt's name>, request_id=uuid5(name)): a job id
             is unique in the project and region, so two submitters get one job and the
             loser's 409 means "already submitted": it reads the job instead
    the job  one container; its command is Squall's job wrapper (runners/wrapper.py), which
             copies inputs from the bucket mounted at /mnt/disks/squall (a GCS volume:
             gcsfuse, so the image needs no Cloud SDK), runs the task, copies outputs back
             and tees each stream, ending in its sentinel, to log/stdout and log/stderr there
    poll     a few handles: get_job each; more: one paged list_jobs filtered on the
             deployment's label (100 a page), get_job only for what the list lacks
    events   Batch publishes state changes to a Pub/Sub topic (``notificationTopic``) whose
             push subscription reaches the events function (control_plane/ingress, OIDC
             verified); a terminal event costs one get_job (the exit code is not in it)
    logs     ranged reads of the two log objects, until both sentinels came (or the grace
             after the end passed: ``truncated``)
    cancel   cancel_job, not waited on; the next polls see CANCELLATION_IN_PROGRESS (still
             RUNNING to the control plane) and then CANCELLED
    cleanup  with ``delete`` (Kestra's, default true): the staged inputs and the Batch job are
             deleted; the log, the outputs and the final status (``final.json``, the
             tombstone) stay, so a later poll of the handle still says how it ended

Failures (taxonomy.py cites Google's pages): exit 50001 PREEMPTED, 50005 TIMEOUT, 50002-4/6
LOST, wrapper 96/97 CONFIG, an image that cannot be pulled CONFIG; a job still queued after
``queuedTimeout`` is cancelled as QUOTA when Batch said a quota or the zone's capacity held
it, else UNSCHEDULABLE; a job deleted behind Squall's back (404 without a tombstone) LOST.

The SDK (google-cloud-batch over REST, google-cloud-storage) is imported on first use; its
own retries are off (``retry=None``) and :mod:`runners.retry` retries with
:mod:`runners.google_errors` under ``runner="google-batch"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from msgspec.structs import replace

from runners import google_errors, retry
from runners.base import (
    Failure,
    JobEvent,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    PushEvent,
    Resources,
    RunnerError,
    RunnerOptions,
    RunnerOptionsError,
    validate_options,
)
from runners.gcs_folder import JobFolder, output_prefix, read_log, wrapper_for
from runners.google_batch import taxonomy
from runners.google_batch.options import GoogleBatchOptions, Pricing
from runners.google_runner import Context, GoogleRunner, document, run_limit
from runners.labels import gcp_labels
from runners.wrapper import sentinel_token

__all__ = ["MOUNT", "GoogleBatchRunner", "batch_job_id", "google_classifier"]

RUNNER = "google-batch"
google_classifier = retry.register_classifier(google_errors.classify, runner=RUNNER)

MOUNT = "/mnt/disks/squall"
"""Where the job's staging prefix is mounted (Kestra mounts its bucket at /mnt/disks/share)."""
DEFAULT_IMAGE = "python:3.12-slim"
DEFAULT_SHELL = "/bin/sh"
LIST_PAGE = 100
GET_THRESHOLD = 4
"""Up to this many handles (per project, region and identity) are polled with get_job each."""
MANAGED_LABEL = "squall-managed"
DEPLOYMENT_LABEL = "squall-deployment"
NONCE_LABEL = "squall-nonce"
NAME_ENV = "SQUALL_JOB_NAME"
STAGING_ENV = "SQUALL_STAGING"
OUTPUT_ENV = "SQUALL_OUTPUT_PREFIX"
INPUTS_ENV = "SQUALL_STAGED_INPUTS"
_JOB_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_REQUEST_NS = uuid.UUID("5d0f3a5e-6c1b-4f0e-9a57-5b1a8a5c0b7e")
_TERMINAL_EVENTS = ("RUNNING", "SUCCEEDED", "FAILED")


def batch_job_id(name: str) -> str:
    """``name`` as a Batch job id (``^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$``): itself when valid.

    The control plane's job names are valid already (engine/ids.py); any other is cleaned,
    cut and given a hash of the original, so two names never share an id.
    """
    if _JOB_ID.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = "j-" + cleaned
    return f"{cleaned[:52].rstrip('-')}-{digest}"


def request_id(job_id: str) -> str:
    """The create request's idempotency key: a UUID derived from the job id (Google wants a UUID)."""
    return str(uuid.uuid5(_REQUEST_NS, job_id))


def batch_types() -> Any:
    """google.cloud.batch_v1, imported on first use (the control plane pays for it only then)."""
    from google.cloud import batch_v1

    return batch_v1


class GoogleBatchRunner(GoogleRunner):
    """Runs each task attempt as one Google Cloud Batch job; see the module docstring.

    Constructor keywords (all optional, the deployment's ``SQUALL_RUNNERS`` entry): ``defaults``
    (options under every task's ``taskRunner``: projectId, region, bucket...), ``endpoint`` and
    ``storage_endpoint`` (the deployment's API endpoints, e.g. an emulator),
    ``allowed_endpoints`` (more endpoints a task may name), ``anonymous`` (sign nothing: an
    emulator), ``policy`` and ``sleep`` (retry backoff), ``rate`` (Batch calls per second),
    ``now`` (wall clock: queued dwell and log grace), ``log_grace`` (seconds after the end
    that :meth:`logs` waits for a sentinel), ``credentials`` (replaces the credential chain),
    ``credentials_config`` (a credential configuration document, e.g. workload identity
    federation from AWS: the deployment's identity without a key).
    """

    name: ClassVar[str] = RUNNER
    Options: ClassVar[type[RunnerOptions]] = GoogleBatchOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(Failure)
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"gs"})
    poll_batch: ClassVar[int] = LIST_PAGE
    event_keys: ClassVar[frozenset[str]] = frozenset({"gcp.pubsub"})
    carries_handles: ClassVar[bool] = False

    def _options(self, spec: JobSpec) -> GoogleBatchOptions:
        options = validate_options(type(self), {**self._defaults, **dict(spec.options)})
        assert isinstance(options, GoogleBatchOptions)
        return options

    def _api(self, credentials: Any, endpoint: str | None) -> Any:
        from google.cloud import batch_v1

        options = {"api_endpoint": endpoint} if endpoint else None
        return batch_v1.BatchServiceClient(transport="rest", credentials=credentials, client_options=options)

    # -- submit / find

    def find(self, spec: JobSpec) -> JobHandle | None:
        opts = self._options(spec)
        ctx = self._spec_context(opts)
        job = self._get(ctx.api.get_job, self._job_name(opts, batch_job_id(spec.name)))
        return None if job is None else self._handle(spec.name, job, opts)

    def submit(self, spec: JobSpec) -> JobHandle:
        opts = self._options(spec)
        if not spec.command:
            raise RunnerError("empty command", runner=RUNNER)
        job_id = batch_job_id(spec.name)
        ctx = self._spec_context(opts)
        staging = f"{opts.staging_prefix}/{job_id}"
        folder = JobFolder(ctx.storage, opts.bucket, staging, self._unpaced, RUNNER)
        inline, staged = folder.stage_inputs(spec)
        job = self._job(ctx, spec, opts, job_id, staging, inline, staged)

        request = batch_types().CreateJobRequest(
            parent=f"projects/{opts.project_id}/locations/{opts.region}",
            job_id=job_id,
            job=job,
            request_id=request_id(job_id),
        )
        from google.api_core import exceptions

        def create() -> Any:
            try:
                return ctx.api.create_job(request=request, retry=None, timeout=60)
            except exceptions.Conflict:  # ALREADY_EXISTS: another submitter (or our lost response) won
                return None

        created = self._call(create)
        if created is None:
            created = self._get(ctx.api.get_job, self._job_name(opts, job_id))
            if created is None:  # 409, then gone: deleted in between; the next tick submits again
                raise RunnerError(f"job {job_id} exists and vanished at once", runner=RUNNER)
        return self._handle(spec.name, created, opts)

    @staticmethod
    def _job_name(opts: GoogleBatchOptions, job_id: str) -> str:
        return f"projects/{opts.project_id}/locations/{opts.region}/jobs/{job_id}"

    def _handle(self, spec_name: str, job: Any, opts: GoogleBatchOptions) -> JobHandle:
        doc = document(job)
        labels = doc.get("labels") or {}
        created = taxonomy.timestamp(doc.get("createTime")) or self._now()
        data: dict[str, Any] = {
            **self._handle_data(opts),
            "job": doc["name"],
            "staging": f"{opts.staging_prefix}/{doc['name'].rpartition('/')[2]}",
            "nonce": labels.get(NONCE_LABEL, ""),
            "deployment": opts.deployment,
            "submitted": round(created.timestamp(), 3),
            "queued_timeout": opts.queued_timeout.total_seconds(),
            "delete": opts.delete,
        }
        out = _env(doc).get(OUTPUT_ENV)
        if out:
            data["out"] = out
        data["inputs"] = _staged_inputs(doc)
        return JobHandle(spec_name, RUNNER, str(doc.get("uid", "")), data)

    def _job(
        self,
        ctx: Context,
        spec: JobSpec,
        opts: GoogleBatchOptions,
        job_id: str,
        staging: str,
        inline: Mapping[str, bytes],
        staged: Mapping[str, str],
    ) -> Any:
        t = batch_types()
        nonce = secrets.token_hex(8)
        outputs_to = output_prefix(spec, RUNNER)
        volumes = [t.Volume(gcs=t.GCS(remote_path=f"{opts.bucket}/{staging}"), mount_path=MOUNT)]
        keep = outputs_to is not None or bool(spec.output_files)
        command = wrapper_for(
            spec, MOUNT, nonce=nonce, inline=inline, staged=staged, keep=keep, runner=RUNNER
        )
        shell = opts.entry_point[0] if opts.entry_point else DEFAULT_SHELL
        env = {
            **spec.env,
            NAME_ENV: spec.name,
            STAGING_ENV: f"gs://{opts.bucket}/{staging}",
            INPUTS_ENV: str(len(staged)),  # cleanup lists the staged inputs only when there are some
        }
        if keep:  # where outputs end up: the control plane's prefix, else the job's own out/
            env[OUTPUT_ENV] = outputs_to or f"gs://{opts.bucket}/{staging}/out/"
        timeout = self._run_limit(spec, opts)
        task = t.TaskSpec(
            runnables=[
                t.Runnable(
                    container=t.Runnable.Container(
                        image_uri=spec.image or DEFAULT_IMAGE, entrypoint=shell, commands=command[1:]
                    )
                )
            ],
            compute_resource=t.ComputeResource(
                cpu_milli=opts.compute_resource.cpu_milli,
                memory_mib=opts.compute_resource.memory_mib,
                **(
                    {"boot_disk_mib": opts.compute_resource.boot_disk_mib}
                    if opts.compute_resource.boot_disk_mib
                    else {}
                ),
            ),
            max_retry_count=0,  # Squall owns retries (and tells preemption from the user's failure)
            volumes=volumes,
            environment=t.Environment(variables=env),
            **({"max_run_duration": timeout} if timeout is not None else {}),
        )
        policy = t.AllocationPolicy.InstancePolicy(
            machine_type=opts.machine_type,
            provisioning_model=t.AllocationPolicy.ProvisioningModel[opts.provisioning_model],
            accelerators=[
                t.AllocationPolicy.Accelerator(
                    type_=a.type,
                    count=a.count,
                    **({"driver_version": a.driver_version} if a.driver_version else {}),
                )
                for a in opts.accelerators
            ],
            **({"reservation": opts.reservation} if opts.reservation else {}),
        )
        instance = t.AllocationPolicy.InstancePolicyOrTemplate(
            policy=policy, install_gpu_drivers=bool(opts.accelerators)
        )
        allocation = t.AllocationPolicy(instances=[instance])
        if opts.job_service_account:
            allocation.service_account = t.ServiceAccount(email=opts.job_service_account)
        if opts.network_interfaces:
            allocation.network = t.AllocationPolicy.NetworkPolicy(
                network_interfaces=[
                    t.AllocationPolicy.NetworkInterface(
                        network=n.network,
                        no_external_ip_address=n.no_external_ip_address,
                        **({"subnetwork": n.subnetwork} if n.subnetwork else {}),
                    )
                    for n in opts.network_interfaces
                ]
            )
        try:
            labels = gcp_labels({**opts.labels, **spec.labels})
        except ValueError as exc:
            raise RunnerOptionsError(RUNNER, [f"labels: {exc}"]) from None
        labels |= {MANAGED_LABEL: "true", DEPLOYMENT_LABEL: opts.deployment, NONCE_LABEL: nonce}
        notifications = []
        if opts.notification_topic:
            notifications = [
                t.JobNotification(
                    pubsub_topic=opts.notification_topic,
                    message=t.JobNotification.Message(
                        type_=t.JobNotification.Type.JOB_STATE_CHANGED,
                        new_job_state=t.JobStatus.State[state],
                    ),
                )
                for state in _TERMINAL_EVENTS
            ]
        return t.Job(
            task_groups=[t.TaskGroup(task_spec=task, task_count=1, parallelism=1)],
            allocation_policy=allocation,
            labels=labels,
            logs_policy=t.LogsPolicy(destination=t.LogsPolicy.Destination.CLOUD_LOGGING),
            notifications=notifications,
        )

    @staticmethod
    def _run_limit(spec: JobSpec, opts: GoogleBatchOptions) -> timedelta | None:
        """Batch's ``maxRunDuration``: the shorter of the task's timeout and maxRunDuration, else
        Kestra's waitUntilCompletion."""
        return run_limit(spec.timeout, opts.max_run_duration) or run_limit(opts.wait_until_completion)

    # -- poll

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        groups: dict[tuple[Any, ...], list[JobHandle]] = {}
        result: dict[str, JobStatus] = {}
        for handle in handles:
            with self._lock:
                done = self._finished.get(handle.id)
            if done is not None:
                result[handle.name] = done[1]
                continue
            if not _ours(handle):
                result[handle.name] = JobStatus(
                    JobState.LOST, Failure.LOST, reason=f"{handle.id!r} is not a Google Batch job of Squall's"
                )
                continue
            d = handle.data
            key = (
                d.get("project"),
                d.get("region"),
                d.get("endpoint"),
                d.get("impersonate"),
                d.get("deployment"),
            )
            groups.setdefault(key, []).append(handle)
        for group in groups.values():
            ctx = self._handle_context(group[0])
            listed = self._list(ctx, group[0]) if len(group) > GET_THRESHOLD else {}
            for handle in group:
                doc = listed.get(str(handle.data.get("job")))
                if doc is None:
                    job = self._get(ctx.api.get_job, str(handle.data["job"]))
                    doc = None if job is None else document(job)
                status = self._observe(ctx, handle, doc)
                if status is not None:
                    result[handle.name] = status
        return result

    def _list(self, ctx: Context, handle: JobHandle) -> dict[str, dict[str, Any]]:
        """Every job of the deployment in the handle's project and region, by name: one call a page."""
        d = handle.data
        parent = f"projects/{d['project']}/locations/{d['region']}"
        flt = f'labels.{MANAGED_LABEL}="true" AND labels.{DEPLOYMENT_LABEL}="{d.get("deployment", "squall")}"'
        found: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            request = batch_types().ListJobsRequest(
                parent=parent, filter=flt, page_size=LIST_PAGE, page_token=token
            )
            page = self._call(self._list_page, ctx, request)
            for job in page.jobs:
                doc = document(job)
                found[doc["name"]] = doc
            token = page.next_page_token
            if not token:
                return found

    @staticmethod
    def _list_page(ctx: Context, request: Any) -> Any:
        """One page: the pager's first response, so a retry repeats just this page."""
        pager = ctx.api.list_jobs(request=request, retry=None, timeout=30)
        return next(iter(pager.pages))

    def _observe(self, ctx: Context, handle: JobHandle, doc: Mapping[str, Any] | None) -> JobStatus | None:
        if doc is None or str(doc.get("uid", "")) != handle.id:
            final = self._folder(ctx, handle).final(handle.id)
            if final is not None:
                return self._remember(handle, final)
            what = "deleted" if doc is None else "deleted and replaced by another job of the same name"
            return self._remember(
                handle,
                JobStatus(
                    JobState.LOST, Failure.LOST, reason=f"the Batch job {handle.data['job']} was {what}"
                ),
            )
        status = taxonomy.job_status(doc)
        if status.state is JobState.CANCELLED or status.state is JobState.LOST:
            final = self._folder(ctx, handle).final(handle.id)
            if final is not None:
                return self._remember(handle, final)
        if not status.terminal:
            return self._enforce_queue_bound(ctx, handle, doc, status)
        return self._remember(handle, self._complete(ctx, handle, doc, status))

    def _enforce_queue_bound(
        self, ctx: Context, handle: JobHandle, doc: Mapping[str, Any], status: JobStatus
    ) -> JobStatus:
        """A job queued past ``queuedTimeout`` is cancelled: QUOTA when Batch said a quota or the
        zone's capacity held it (the infrastructure budget pays), else UNSCHEDULABLE."""
        if status.state is not JobState.QUEUED:
            return status
        bound = float(handle.data.get("queued_timeout", 1800))
        submitted = float(handle.data.get("submitted", self._now().timestamp()))
        waited = self._now().timestamp() - submitted
        if waited < bound:
            return status
        problem = taxonomy.capacity_problem(doc)
        shown = timedelta(seconds=round(waited))
        if problem is not None:
            final = JobStatus(JobState.FAILED, Failure.QUOTA, reason=f"not started after {shown}: {problem}")
        else:
            final = JobStatus(
                JobState.FAILED,
                Failure.UNSCHEDULABLE,
                reason=f"not started after {shown} (queuedTimeout): no capacity took the job",
            )
        self._folder(ctx, handle).write_final(handle.id, final)
        self._cancel_job(ctx, str(handle.data["job"]))
        return self._remember(handle, final)

    def _complete(
        self, ctx: Context, handle: JobHandle, doc: Mapping[str, Any], status: JobStatus
    ) -> JobStatus:
        """The final word: cost, then what only the bucket can tell (GoogleRunner._settle)."""
        resources, cost = _billed(doc, handle.data.get("pricing"))
        return self._settle(ctx, handle, replace(status, resources=resources, cost=cost))

    # -- cancel / cleanup

    def cancel(self, handle: JobHandle) -> None:
        if not _ours(handle):
            raise JobNotFoundError(f"{handle.id!r} is not a Google Batch job of Squall's", runner=RUNNER)
        ctx = self._handle_context(handle)
        job = self._get(ctx.api.get_job, str(handle.data["job"]))
        if job is None:
            return
        doc = document(job)
        if str(doc.get("uid", "")) != handle.id:
            return
        state = str((doc.get("status") or {}).get("state", ""))
        if state in ("SUCCEEDED", "FAILED", "CANCELLED", "CANCELLATION_IN_PROGRESS", "DELETION_IN_PROGRESS"):
            return
        self._folder(ctx, handle).write_final(
            handle.id, JobStatus(JobState.CANCELLED, Failure.CANCELLED, reason="cancelled")
        )
        self._cancel_job(ctx, str(handle.data["job"]))

    def _cancel_job(self, ctx: Context, name: str) -> None:
        """cancel_job without waiting on its operation (a poller would block the caller)."""
        from google.api_core import exceptions

        def cancel() -> None:
            # gone, or already terminal (FAILED_PRECONDITION: over REST, google-api-core raises the
            # class of the HTTP status, BadRequest): nothing left to stop
            with contextlib.suppress(exceptions.NotFound, exceptions.BadRequest):
                ctx.api.cancel_job(name=name, retry=None, timeout=30)

        self._call(cancel)

    def cleanup(self, handle: JobHandle) -> None:
        """Delete the staged inputs and the Batch job, leaving how it ended (``final.json``)."""
        if _ours(handle):
            self._clean(
                handle, lambda ctx: ctx.api.delete_job(name=str(handle.data["job"]), retry=None, timeout=30)
            )

    # -- logs

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        if not _ours(handle):
            raise JobNotFoundError(f"{handle.id!r} is not a Google Batch job of Squall's", runner=RUNNER)
        token = sentinel_token(handle.name, str(handle.data.get("nonce", "")))
        folder = self._folder(self._handle_context(handle), handle)
        return read_log(
            folder,
            cursor,
            token,
            lambda: self.poll([handle]).get(handle.name),
            now=self._now().timestamp(),
            grace=self._log_grace,
        )

    # -- events

    def parse_event(self, event: PushEvent) -> JobEvent | None:
        """A Batch notification (Pub/Sub attributes ``Type``, ``JobName``, ``JobUID``, ``NewJobState``).

        A terminal state costs one get_job: the notification has no exit code, and the job's
        document is the same judgement as poll's.
        """
        attrs = event.attributes
        if attrs.get("Type") != "JOB_STATE_CHANGED" or not attrs.get("JobName") or not attrs.get("JobUID"):
            return None
        name, uid, state = str(attrs["JobName"]), str(attrs["JobUID"]), str(attrs.get("NewJobState", ""))
        match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)", name)
        if match is None:
            return None
        with self._lock:
            done = self._finished.get(uid)
        if done is not None:
            return JobEvent(done[0], uid, done[1])
        if state not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            doc = None
            status = taxonomy.job_status({"status": {"state": state or "QUEUED"}})
            if status.terminal:
                return None
            return JobEvent(self._event_name(match.group(3), doc), uid, status)
        ctx = self._context(match.group(1))
        job = self._get(ctx.api.get_job, name)
        if job is None:
            return None
        doc = document(job)
        handle = self._handle_from_doc(doc, uid)
        if handle is None:
            return None
        observed = self._observe(ctx, handle, doc)
        return None if observed is None else JobEvent(handle.name, uid, observed)

    def _handle_from_doc(self, doc: Mapping[str, Any], uid: str) -> JobHandle | None:
        """The handle of a job Squall made, rebuilt from its document (what the job carries)."""
        env, labels = _env(doc), doc.get("labels") or {}
        staging = str(env.get(STAGING_ENV, ""))
        bucket, _, prefix = staging.removeprefix("gs://").partition("/")
        project, region = str(doc["name"]).split("/")[1::2][:2]
        if labels.get(MANAGED_LABEL) != "true" or not bucket:
            return None
        created = taxonomy.timestamp(doc.get("createTime")) or self._now()
        data: dict[str, Any] = {
            "job": doc["name"],
            "project": project,
            "region": region,
            "bucket": bucket,
            "staging": prefix,
            "nonce": labels.get(NONCE_LABEL, ""),
            "deployment": labels.get(DEPLOYMENT_LABEL, "squall"),
            "submitted": round(created.timestamp(), 3),
        }
        if env.get(OUTPUT_ENV):
            data["out"] = env[OUTPUT_ENV]
        data["inputs"] = _staged_inputs(doc)
        return JobHandle(self._event_name(str(doc["name"]).rpartition("/")[2], doc), RUNNER, uid, data)

    @staticmethod
    def _event_name(job_id: str, doc: Mapping[str, Any] | None) -> str:
        if doc is not None:
            name = _env(doc).get(NAME_ENV)
            if name:
                return str(name)
        return job_id


def _ours(handle: JobHandle) -> bool:
    """Whether the handle says where its job and files are (every handle this runner made does)."""
    return all(handle.data.get(key) for key in ("job", "project", "region", "bucket", "staging"))


def _staged_inputs(doc: Mapping[str, Any]) -> int:
    """How many inputs the job's submit staged in the bucket (unknown: assume some)."""
    raw = _env(doc).get(INPUTS_ENV, "1")
    return int(raw) if raw.isdigit() else 1


def _env(doc: Mapping[str, Any]) -> dict[str, str]:
    groups = doc.get("taskGroups") or [{}]
    spec = (groups[0] or {}).get("taskSpec") or {}
    return dict((spec.get("environment") or {}).get("variables") or {})


def _billed(doc: Mapping[str, Any], pricing: Any) -> tuple[Resources | None, float | None]:
    """What the task's computeResource asked for, times how long it ran (``status.runDuration``)."""
    ran = taxonomy.duration((doc.get("status") or {}).get("runDuration"))
    if ran is None:
        return None, None
    groups = doc.get("taskGroups") or [{}]
    spec = (groups[0] or {}).get("taskSpec") or {}
    compute = spec.get("computeResource") or {}
    seconds = ran.total_seconds()
    instances = ((doc.get("allocationPolicy") or {}).get("instances") or [{}])[0].get("policy") or {}
    spot = instances.get("provisioningModel") in ("SPOT", "PREEMPTIBLE")
    accelerators = sum(int(a.get("count", 0)) for a in instances.get("accelerators") or [])
    resources = Resources(
        vcpu_seconds=seconds * int(compute.get("cpuMilli", 0)) / 1000,
        gib_seconds=seconds * int(compute.get("memoryMib", 0)) / 1024,
        accelerator_seconds=seconds * accelerators,
        spot=spot,
    )
    if not pricing:
        return resources, None
    table = Pricing.model_validate(pricing)
    price = table.spot if spot else table.standard
    cost = (
        resources.vcpu_seconds * price.vcpu_hour
        + resources.gib_seconds * price.gib_hour
        + resources.accelerator_seconds * price.accelerator_hour
    ) / 3600
    return resources, round(cost, 8)

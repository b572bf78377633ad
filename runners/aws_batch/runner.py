"""The AWS Batch runner (entry point ``aws-batch``): one task attempt, one Batch job.

Theory of operation::

    submit(spec)   ListJobs(JOB_NAME=name) -> the job if it exists (exactly-once; skipped
                   for a ``claimed`` spec, whose claimant looked it up or just created it), else
                   stage inputs, reuse or register a job definition, SubmitJob, ListJobs again
                   (two racing submitters converge on the oldest job; the other is terminated).
                   SubmitJob has no idempotency token (only SubmitServiceJob does), so it is
                   never retried blindly: after a failed call (a lost response may have
                   created the job) ListJobs is asked first. One submitter per name across
                   processes: the control plane's submit claim when the spec is ``claimed``
                   (no request of its own), else a submit lock in the staging bucket (an S3
                   conditional PUT, $5 per 1M submits); this convergence is the last line of defence.
    poll(handles)  DescribeJobs, 100 ids a call; a timed-out RUNNING job or one RUNNABLE past
                   its dwell is terminated here, and stays live until Batch says it stopped.
                   A job DescribeJobs does not return is left out (no news: eventual
                   consistency) unless it was submitted longer ago than Batch keeps jobs
                   (:data:`BATCH_RETENTION`, from the submit time in the handle): then LOST
    parse_event    "Batch Job State Change" events: the same classification as poll
    cancel         CancelJob (not started yet) + TerminateJob; the job is CANCELLED once Batch
                   reports it FAILED with our reason, never before
    logs           CloudWatch GetLogEvents from the job's (main container's) logStreamName,
                   one page a call, the forward token in the cursor; complete once the
                   wrapper's end sentinels were read, or truncated after ``log_grace``
    cleanup        deletes staged input objects; job definitions are shared and kept

Everything poll and parse_event need to judge a job travels on the job itself, as tags
(``squall:timeout``, ``squall:runnable-timeout``, ``squall:outputs``, ``squall:resources``,
``squall:price``...), because a handle rebuilt from an event carries nothing else. Every job
and job definition also carries ``squall:managed = true`` (:data:`MANAGED_TAG`): the infra
module's IAM policy lets Squall cancel or terminate only jobs with that tag, and submit only
requests that set it. The ``squall:`` keys are the runner's: a task's own ``tags`` (or
labels) in that namespace are dropped, so a flow can neither remove the tag nor fake one of
the others.

Endpoints: a task's ``endpointOverride`` is where the control plane would send requests
signed with its own credentials, so a flow cannot choose it alone. It must be the runner's
default (``defaults``) or one of ``allowed_endpoints`` (both deployment settings; the
control plane fills ``allowed_endpoints`` from ``SQUALL_AWS_ENDPOINT_ALLOWLIST``); any other
value is a :class:`~runners.base.RunnerOptionsError` naming the option and the allowed
values, raised before any request is made.

Calls: every Batch call takes a token from a bucket shared by the instance (default 40 per
second, under Batch's ~50 TPS account limit) and goes through :func:`runners.retry.call`;
botocore's own retries are off, so there is one retry policy. The botocore classifier
registered below makes throttling, 5xx and connection errors transient.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from msgspec.structs import replace

from runners import botocore_errors, retry
from runners.aws_batch import staging, taxonomy
from runners.aws_batch.cost import billed_resources, estimate_cost
from runners.aws_batch.options import DEFAULT_LOG_GROUP, BatchOptions, BatchResources, Pricing
from runners.base import (
    Failure,
    JobEvent,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    PushEvent,
    RunnerError,
    RunnerOptions,
    TransientRunnerError,
    validate_options,
)
from runners.endpoints import allowed_endpoint, canonical_endpoint
from runners.pacing import TokenBucket
from runners.recent import Recent
from runners.wrapper import (
    INLINE_LIMIT,
    STDERR_PREFIX,
    WrapperExit,
    check_relative,
    sentinel_token,
    split_sentinel,
)

__all__ = [
    "DEFAULT_IMAGE",
    "MANAGED_TAG",
    "MANAGED_VALUE",
    "AwsBatchRunner",
    "TokenBucket",
    "batch_job_name",
    "botocore_classifier",
    "canonical_endpoint",
]

DEFAULT_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
MANAGED_TAG = "squall:managed"
"""Tag key on every job the runner submits and every job definition it registers.

infra/modules/squall/modules/policies conditions CancelJob and TerminateJob on
``aws:ResourceTag/squall:managed`` and SubmitJob, RegisterJobDefinition and TagResource on
``aws:RequestTag/squall:managed`` (tests/infra checks the two agree)."""
MANAGED_VALUE = "true"
RESERVED_TAG_PREFIX = "squall:"
"""Tag keys the runner writes itself; a task's ``tags`` and labels may not use them."""
DESCRIBE_BATCH = 100
"""DescribeJobs takes at most 100 job ids."""
FINISHED_KEPT = 2000
"""Terminal jobs a runner remembers (two of the tick's 1,000-job passes); older ones are described again."""
BATCH_RETENTION = timedelta(days=7)
"""How long AWS Batch keeps a job visible to DescribeJobs after it ends (at least a week):
a handle submitted longer ago that Batch does not return is evidence the job is gone (LOST)."""
SUBMIT_LOCK_STALE = timedelta(minutes=2)
"""A submit lock this old whose job ListJobs does not show was left by a submitter that died."""
SUBMIT_LOCK_WAIT = 20.0
"""Seconds a submitter that lost the lock waits for the winner's job to show in ListJobs."""
_LOCK_TAKEN = frozenset({"PreconditionFailed", "412"})
MIN_ATTEMPT_SECONDS = 60
"""Batch refuses an attemptDurationSeconds under 60; shorter timeouts are enforced by poll."""

botocore_classifier = retry.register_classifier(botocore_errors.classify, runner="aws-batch")
"""botocore's errors (:mod:`runners.botocore_errors`), asked about this runner's calls only."""


def _error_code(exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    response = getattr(cause, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_TAG_BAD = re.compile(r"[^\w\s.:/=+\-@]")


def batch_job_name(name: str) -> str:
    """``name`` if Batch accepts it, else a deterministic valid name with a hash of the original."""
    if _NAME_OK.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", name).lstrip("-_")[:110] or "squall"
    return f"{cleaned}-{digest}"


def _tag_value(value: str) -> str:
    return _TAG_BAD.sub("_", value)[:256]


def _client_config() -> Any:
    from botocore.config import Config

    # One retry policy (ours): botocore's own retries would multiply attempts and hide throttling.
    return Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30)


def _names_output_dir(spec: JobSpec) -> bool:
    """Whether the task's command, environment or inline files name ``OUTPUT_DIR`` (or may).

    Only then can it put files there without ``outputFiles``: Squall renders no
    ``{{ outputDir }}``, so the directory is reached through the variable, by name. Inputs
    staged from storage URIs are not read here: a task with any counts as naming it.
    """
    if spec.input_uris:
        return True
    texts = [*spec.command, *spec.env.values()]
    return any("OUTPUT_DIR" in text for text in texts) or any(
        b"OUTPUT_DIR" in data for data in spec.input_files.values()
    )


class _Clients:
    """The boto3 clients of one (region, credentials) pair."""

    def __init__(self, session: Any, region: str | None, endpoints: Mapping[str, str]) -> None:
        config = _client_config()

        def make(service: str) -> Any:
            return session.client(
                service, region_name=region, endpoint_url=endpoints.get(service), config=config
            )

        self.batch = make("batch")
        self.logs = make("logs")
        self.s3 = make("s3")


class AwsBatchRunner:
    """Runs each task attempt as one AWS Batch job; see the module docstring.

    Seams (constructor keywords, all optional): ``session_factory(**kwargs) -> boto3.Session``
    (tests add botocore event hooks there), ``endpoint_url`` / ``endpoints`` (moto),
    ``defaults`` (options used when a handle does not say, e.g. the region), ``policy`` and
    ``sleep`` (retry backoff), ``rate`` / ``logs_rate`` (calls per second for this instance,
    paced with ``clock`` and ``limiter_sleep``), ``now`` (wall clock for timeouts, dwell and the
    expiry of assumed-role credentials, and the log grace), ``allowed_endpoints`` (the Batch
    endpoints a task's ``endpointOverride`` may name besides the one in ``defaults``; none by
    default), ``log_grace`` (seconds after a job ended that :meth:`logs` waits for the
    wrapper's end sentinel before it says the log is complete but truncated).
    """

    name: ClassVar[str] = "aws-batch"
    Options: ClassVar[type[RunnerOptions]] = BatchOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(Failure) - {Failure.QUOTA}
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"s3"})
    poll_batch: ClassVar[int] = DESCRIBE_BATCH
    event_keys: ClassVar[frozenset[str]] = frozenset({taxonomy.EVENT_SOURCE})
    carries_handles: ClassVar[bool] = True

    _name_locks: ClassVar[dict[str, threading.Lock]] = {}
    _name_locks_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        session_factory: Callable[..., Any] | None = None,
        endpoint_url: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        region: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        rate: float = 40.0,
        logs_rate: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        limiter_sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        allowed_endpoints: Sequence[str] = (),
        log_grace: float = 60.0,
    ) -> None:
        if isinstance(allowed_endpoints, str):
            raise TypeError("allowed_endpoints is a list of URLs, not one string")
        self._allowed_endpoints = frozenset(canonical_endpoint(url) for url in allowed_endpoints)
        self._session_factory = session_factory
        self._endpoints = {
            **({s: endpoint_url for s in ("batch", "logs", "s3", "sts")} if endpoint_url else {}),
            **(endpoints or {}),
        }
        self._region = region
        self._defaults = dict(defaults or {})
        self._validated_defaults: BatchOptions | None = None
        self._policy = policy
        self._sleep = sleep
        self._now = now
        self._log_grace = log_grace
        self._pause = limiter_sleep
        self._batch_bucket = TokenBucket(rate, clock=clock, sleep=limiter_sleep)
        self._logs_bucket = TokenBucket(logs_rate, clock=clock, sleep=limiter_sleep)
        self._lock = threading.Lock()
        self._clients: dict[tuple[str | None, ...], tuple[_Clients, float]] = {}
        self._jobdefs: dict[str, str] = {}
        # Terminal jobs as last described, so logs and cleanup after their event need no
        # second DescribeJobs; bounded, since a warm container may see 100,000 of them.
        self._finished: Recent[str, tuple[Mapping[str, Any], JobStatus]] = Recent(FINISHED_KEPT)
        self._asked: set[str] = set()

    # -- plumbing

    def _call(self, service: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        bucket = {"batch": self._batch_bucket, "logs": self._logs_bucket}.get(service)

        def once() -> Any:
            if bucket is not None:
                bucket.acquire()
            return fn(**kwargs)

        what = f"{service}.{getattr(fn, '__name__', 'call')}"
        return retry.call(once, policy=self._policy, sleep=self._sleep, runner=self.name, what=what)

    def _session(self, **kwargs: Any) -> Any:
        if self._session_factory is not None:
            return self._session_factory(**kwargs)
        import boto3

        return boto3.Session(**kwargs)

    def _allowed_endpoint(self, requested: str) -> str:
        """``requested`` (a task's ``endpointOverride``), canonical, if the deployment allows it."""
        return allowed_endpoint(
            self.name,
            "endpointOverride",
            requested,
            allowed=self._allowed_endpoints,
            default=self._defaults.get("endpointOverride"),
            what="signed AWS requests",
            setting="SQUALL_AWS_ENDPOINT_ALLOWLIST",
        )

    def _clients_for(
        self,
        region: str | None,
        role: str | None,
        key_id: str | None,
        opts: BatchOptions | None = None,
        *,
        endpoint: str | None = None,
    ) -> _Clients:
        """Clients for a region and identity; ``endpoint`` (else ``opts``'s override) is checked first."""
        if endpoint is None and opts is not None:
            endpoint = opts.endpoint_override
        batch_endpoint = self._allowed_endpoint(endpoint) if endpoint else None
        region = region or self._region
        cache_key = (region, role, key_id, batch_endpoint)
        with self._lock:
            cached = self._clients.get(cache_key)
            if cached is not None and cached[1] > self._now().timestamp():
                return cached[0]
        credentials: dict[str, Any] = {}
        if opts is not None and opts.access_key_id is not None:
            credentials = {
                "aws_access_key_id": opts.access_key_id,
                "aws_secret_access_key": opts.secret_key_id,
                "aws_session_token": opts.session_token,
            }
        expires = math.inf
        if role is not None:
            base = self._session(region_name=region, **credentials)
            sts = base.client("sts", region_name=region, endpoint_url=self._endpoints.get("sts"))
            assume: dict[str, Any] = {
                "RoleArn": role,
                "RoleSessionName": (opts.sts_role_session_name if opts else None) or "squall-aws-batch",
            }
            if opts is not None and opts.sts_role_external_id:
                assume["ExternalId"] = opts.sts_role_external_id
            got = self._call("sts", sts.assume_role, **assume)["Credentials"]
            credentials = {
                "aws_access_key_id": got["AccessKeyId"],
                "aws_secret_access_key": got["SecretAccessKey"],
                "aws_session_token": got["SessionToken"],
            }
            expires = got["Expiration"].timestamp() - 300  # renewed 5 minutes before they lapse
        endpoints = dict(self._endpoints)
        if batch_endpoint is not None:
            endpoints.setdefault("batch", batch_endpoint)
        clients = _Clients(self._session(region_name=region, **credentials), region, endpoints)
        with self._lock:
            self._clients[cache_key] = (clients, expires)
        return clients

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        """The deployment's options (``defaults``), under each task's ``taskRunner`` block."""
        return dict(self._defaults)

    def _options(self, spec: JobSpec) -> BatchOptions:
        merged = {**self._defaults, **dict(spec.options)}
        options = validate_options(type(self), merged)
        assert isinstance(options, BatchOptions)
        return options

    def _handle_clients(self, handle: JobHandle) -> _Clients:
        data = handle.data
        region = data.get("region") or self._defaults.get("region")
        role = data.get("role") or self._defaults.get("stsRoleArn")
        return self._clients_for(region, role, None, self._default_options(), endpoint=data.get("endpoint"))

    def _default_options(self) -> BatchOptions | None:
        """The deployment's options, validated once (every poll, cancel and log read uses them)."""
        if "jobQueueArn" not in self._defaults:
            return None
        if self._validated_defaults is None:
            options = validate_options(type(self), self._defaults)
            assert isinstance(options, BatchOptions)
            self._validated_defaults = options
        return self._validated_defaults

    @classmethod
    def _name_lock(cls, key: str) -> threading.Lock:
        with cls._name_locks_guard:
            return cls._name_locks.setdefault(key, threading.Lock())

    # -- submit / find

    def _list_by_name(self, clients: _Clients, queue: str, job_name: str) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {
            "jobQueue": queue,
            "filters": [{"name": "JOB_NAME", "values": [job_name]}],
        }
        while True:
            page = self._call("batch", clients.batch.list_jobs, **kwargs)
            found += [j for j in page.get("jobSummaryList", []) if j.get("jobName") == job_name]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        # The oldest job is the one: racing submitters all converge on it.
        return sorted(found, key=lambda j: (j.get("createdAt", 0), j.get("jobId", "")))

    def _handle(self, spec_name: str, job_id: str, opts: BatchOptions, created: Any = None) -> JobHandle:
        """``created``: the job's ``createdAt`` (epoch ms) when known; kept as ``submitted``
        (epoch seconds), the evidence poll needs to call a job Batch no longer returns LOST."""
        submitted = created / 1000 if isinstance(created, int | float) else self._now().timestamp()
        data: dict[str, Any] = {"queue": opts.job_queue_arn, "submitted": round(submitted, 3)}
        if opts.region or self._region:
            data["region"] = opts.region or self._region
        if opts.sts_role_arn:
            data["role"] = opts.sts_role_arn
        if opts.endpoint_override and opts.endpoint_override != self._defaults.get("endpointOverride"):
            # The task's own endpoint: poll, cancel and logs go there too (checked again each time).
            data["endpoint"] = canonical_endpoint(opts.endpoint_override)
        return JobHandle(spec_name, self.name, job_id, data)

    def find(self, spec: JobSpec) -> JobHandle | None:
        opts = self._options(spec)
        clients = self._clients_for(opts.region, opts.sts_role_arn, opts.access_key_id, opts)
        jobs = self._list_by_name(clients, opts.job_queue_arn, batch_job_name(spec.name))
        return (
            self._handle(spec.name, str(jobs[0]["jobId"]), opts, jobs[0].get("createdAt")) if jobs else None
        )

    def submit(self, spec: JobSpec) -> JobHandle:
        opts = self._options(spec)
        if not spec.command:
            raise RunnerError("empty command", runner=self.name)
        job_name = batch_job_name(spec.name)
        clients = self._clients_for(opts.region, opts.sts_role_arn, opts.access_key_id, opts)
        # In-process lock: two threads (or two runner instances) of this process submit once.
        # Across processes: the control plane's submit claim (``spec.claimed``) lets one
        # process submit; without it, a lock object in the staging bucket does (the others
        # wait for its job), and the ListJobs after SubmitJob makes racers converge on one job
        # where there is neither (then a duplicate may start before it is stopped).
        with self._name_lock(f"{opts.job_queue_arn}|{job_name}"):
            if opts.resume and not spec.claimed:  # a claimed spec was looked up by its claimant
                existing = self._list_by_name(clients, opts.job_queue_arn, job_name)
                if existing:
                    return self._handle(
                        spec.name, str(existing[0]["jobId"]), opts, existing[0].get("createdAt")
                    )
            if not spec.claimed and not self._claim_submit(clients, opts, job_name):
                found = self._await_job(clients, opts.job_queue_arn, job_name)
                return self._handle(spec.name, str(found["jobId"]), opts, found.get("createdAt"))
            request = self._request(clients, spec, opts, job_name)
            job_id = self._submit_once(clients, request, opts.job_queue_arn, job_name)
            after = self._list_by_name(clients, opts.job_queue_arn, job_name)
            winner = after[0] if after else {"jobId": job_id}
            if str(winner["jobId"]) != job_id:
                reason = f"{taxonomy.CANCEL_PREFIX}: duplicate of {winner['jobId']}"
                self._call("batch", clients.batch.terminate_job, jobId=job_id, reason=reason)
            return self._handle(spec.name, str(winner["jobId"]), opts, winner.get("createdAt"))

    def _claim_submit(self, clients: _Clients, opts: BatchOptions, job_name: str) -> bool:
        """Whether this process may call SubmitJob for ``job_name`` (asked when the spec is not ``claimed``).

        SubmitJob has no idempotency token, and a job started by a second submitter runs its
        command before the loser can stop it. So submitters first create an object only if it
        is absent (S3 conditional write, ``If-None-Match: *``): one wins and submits, the
        others wait for its job. The object names its owner, so a retry of our own write whose
        response was lost still counts as ours; a lock older than :data:`SUBMIT_LOCK_STALE`
        whose job never appeared (its owner died before submitting) is taken over with
        ``If-Match`` on its ETag, so again by one process only.
        """
        if not opts.bucket:
            return True
        key = f"{opts.staging_prefix.strip('/')}/{job_name}/submit.lock"
        owner = f"{socket.gethostname()}:{os.getpid()}:{id(self)}:{uuid.uuid4().hex[:8]}".encode()
        try:
            self._call("s3", clients.s3.put_object, Bucket=opts.bucket, Key=key, Body=owner, IfNoneMatch="*")
            return True
        except RunnerError as exc:
            if _error_code(exc) not in _LOCK_TAKEN:
                raise
        held = self._call("s3", clients.s3.get_object, Bucket=opts.bucket, Key=key)
        if held["Body"].read() == owner:
            return True  # our own write, whose first response was lost
        age = self._now() - held["LastModified"]
        if age < SUBMIT_LOCK_STALE or self._list_by_name(clients, opts.job_queue_arn, job_name):
            return False
        try:
            self._call(
                "s3", clients.s3.put_object, Bucket=opts.bucket, Key=key, Body=owner, IfMatch=held["ETag"]
            )
        except RunnerError as exc:
            if _error_code(exc) not in _LOCK_TAKEN:
                raise
            return False
        return True

    def _await_job(self, clients: _Clients, queue: str, job_name: str) -> Mapping[str, Any]:
        """The job another process is submitting, once ListJobs shows it (a bounded wait)."""
        pause = 0.1
        waited = 0.0
        while True:
            found = self._list_by_name(clients, queue, job_name)
            if found:
                return found[0]
            if waited >= SUBMIT_LOCK_WAIT:
                raise TransientRunnerError(
                    f"{job_name}: another process holds its submit lock and its job is not visible yet",
                    runner=self.name,
                )
            self._pause(pause)
            waited += pause
            pause = min(pause * 2, 2.0)

    def _submit_once(self, clients: _Clients, request: Mapping[str, Any], queue: str, job_name: str) -> str:
        """SubmitJob under the retry policy, asking ListJobs before each new try.

        A transient failure may hide a job that was created (the response was lost on the
        way back): submitting again would start the command twice. So a try after a failure
        looks for the name first and takes the job it finds.
        """
        failed = False

        def once() -> str:
            nonlocal failed
            if failed:
                found = self._list_by_name(clients, queue, job_name)
                if found:
                    return str(found[0]["jobId"])
            self._batch_bucket.acquire()
            try:
                return str(clients.batch.submit_job(**request)["jobId"])
            except Exception:
                failed = True
                raise

        return retry.call(
            once, policy=self._policy, sleep=self._sleep, runner=self.name, what="batch.submit_job"
        )

    def _timeout(self, spec: JobSpec, opts: BatchOptions) -> timedelta | None:
        limits = [t for t in (spec.timeout, opts.timeout) if t is not None]
        return min(limits) if limits else None

    def _request(self, clients: _Clients, spec: JobSpec, opts: BatchOptions, job_name: str) -> dict[str, Any]:
        for rel in (*spec.input_files, *spec.input_uris):
            try:
                check_relative(rel, "input file")
            except ValueError as exc:
                raise RunnerError(str(exc), runner=self.name) from None
        for glob in spec.output_files:
            if glob.startswith("/") or ".." in glob.split("/"):
                raise RunnerError(f"output file pattern {glob!r} must stay inside the working directory")
        for rel, uri in spec.input_uris.items():
            if not uri.startswith("s3://") or not uri.removeprefix("s3://").partition("/")[2]:
                raise RunnerError(
                    f"input {rel!r}: {uri!r} cannot be staged on AWS Batch (only s3:// objects are, for now)",
                    runner=self.name,
                )
        staging_uri = None
        if opts.bucket:
            staging_uri = f"s3://{opts.bucket}/{opts.staging_prefix.strip('/')}/{job_name}/"
        output_prefix = self._output_prefix(spec, staging_uri)
        inline, remote = self._stage_inputs(clients, spec, staging_uri)
        nonce = uuid.uuid4().hex[:16]
        try:
            plan = staging.layout(
                spec.command,
                token=sentinel_token(job_name, nonce),
                inline_files=inline,
                remote={**remote, **spec.input_uris},
                output_globs=spec.output_files,
                output_prefix=output_prefix,
                cli=opts.staging == "cli" or opts.job_definition_arn is not None,
            )
        except ValueError as exc:
            raise RunnerError(f"{job_name}: {exc}", runner=self.name) from None
        timeout = self._timeout(spec, opts)
        resources = opts.resources
        tags: dict[str, str] = {}
        for key, value in {**dict(spec.labels), **opts.tags}.items():
            if key.startswith(RESERVED_TAG_PREFIX):
                continue  # the runner's own keys (below): a task can neither drop nor fake them
            tags[_tag_value(key)[:128]] = _tag_value(str(value))
        tags[MANAGED_TAG] = MANAGED_VALUE
        tags["squall:name"] = _tag_value(spec.name)
        tags["squall:resources"] = f"{resources.vcpu:g}/{resources.memory}/{resources.gpu}"
        tags["squall:runnable-timeout"] = f"{opts.runnable_timeout.total_seconds():g}"
        tags["squall:cancel-unschedulable"] = "1" if opts.cancel_unschedulable else "0"
        if timeout is not None:
            tags["squall:timeout"] = f"{timeout.total_seconds():g}"
        if output_prefix is not None:
            tags["squall:outputs"] = output_prefix
        if staging_uri is not None and remote:
            tags["squall:staging"] = staging_uri
        tags["squall:log-nonce"] = nonce  # the wrapper's end sentinel (logs) is derived from it
        if opts.log_group_name != DEFAULT_LOG_GROUP:
            tags["squall:log-group"] = opts.log_group_name
        if self._is_spot(clients, opts):
            tags["squall:spot"] = "1"
        if opts.pricing is not None:  # priced at submit: the job's completion may reach another process
            price = opts.pricing
            hourly = (price.vcpu_hour, price.gib_hour, price.gpu_hour, price.spot_discount)
            tags["squall:price"] = "/".join(f"{value:g}" for value in hourly)
        environment = [{"name": k, "value": v} for k, v in spec.env.items()]
        job_overrides: dict[str, Any]
        if opts.job_definition_arn is not None:
            definition = opts.job_definition_arn
            overrides = {
                "command": plan.command,
                "environment": environment,
                "resourceRequirements": self._resource_requirements(resources),
            }
            job_overrides = {"containerOverrides": overrides}
        elif plan.multi:
            definition = self._job_definition(clients, spec, opts, plan.shape)
            containers = [{"name": staging.MAIN, "command": plan.command, "environment": environment}]
            containers += [
                {"name": f"{staging.STAGE_IN}{i}", "command": list(args)}
                for i, args in enumerate(plan.stage_in)
            ]
            if plan.stage_out is not None:
                containers.append({"name": staging.STAGE_OUT, "command": list(plan.stage_out)})
            job_overrides = {"ecsPropertiesOverride": {"taskProperties": [{"containers": containers}]}}
        else:
            definition = self._job_definition(clients, spec, opts, None)
            job_overrides = {"containerOverrides": {"command": plan.command, "environment": environment}}
        request: dict[str, Any] = {
            "jobName": job_name,
            "jobQueue": opts.job_queue_arn,
            "jobDefinition": definition,
            **job_overrides,
            "tags": tags,
            "propagateTags": True,
        }
        if timeout is not None:
            seconds = max(MIN_ATTEMPT_SECONDS, math.ceil(timeout.total_seconds()))
            request["timeout"] = {"attemptDurationSeconds": seconds}
        if opts.retry_strategy is not None:
            request["retryStrategy"] = dict(opts.retry_strategy)
        return request

    def _output_prefix(self, spec: JobSpec, staging_uri: str | None) -> str | None:
        if spec.output_prefix is None and not spec.output_files:
            return None  # nobody asked for outputs: no stage-out container, no listing when it ends
        if not spec.output_files and not _names_output_dir(spec):
            # No outputFiles and nothing the task runs names OUTPUT_DIR: no stage-out step and,
            # above all, no S3 LIST when the job ends ($5 per million jobs, the largest request
            # charge of a Batch task; docs/cost.md). A program in the image that writes to
            # $OUTPUT_DIR unnamed needs outputFiles (docs/runners/README.md, Files).
            return None
        if spec.output_prefix is not None and spec.output_prefix.startswith("s3://"):
            return spec.output_prefix if spec.output_prefix.endswith("/") else spec.output_prefix + "/"
        if staging_uri is not None:
            return staging_uri + "outputs/"
        if spec.output_files:
            raise RunnerError(
                "outputFiles on AWS Batch need an s3:// output prefix or taskRunner.bucket", runner=self.name
            )
        return None

    def _stage_inputs(
        self, clients: _Clients, spec: JobSpec, staging_uri: str | None
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        total = sum(len(data) for data in spec.input_files.values())
        if total <= INLINE_LIMIT:
            return dict(spec.input_files), {}
        if staging_uri is None:
            raise RunnerError(
                f"input files of {total} bytes need taskRunner.bucket (up to {INLINE_LIMIT} "
                "bytes travel inside the job's command)",
                runner=self.name,
            )
        bucket, _, key_prefix = staging_uri.removeprefix("s3://").partition("/")
        remote: dict[str, str] = {}
        for rel, data in spec.input_files.items():
            key = f"{key_prefix}inputs/{rel}"
            self._call("s3", clients.s3.put_object, Bucket=bucket, Key=key, Body=data)
            remote[rel] = f"s3://{bucket}/{key}"
        return {}, remote

    @staticmethod
    def _resource_requirements(resources: BatchResources) -> list[dict[str, str]]:
        requirements = [
            {"type": "VCPU", "value": f"{resources.vcpu:g}"},
            {"type": "MEMORY", "value": str(resources.memory)},
        ]
        if resources.gpu:
            requirements.append({"type": "GPU", "value": str(resources.gpu)})
        return requirements

    def _compute_type(self, clients: _Clients, opts: BatchOptions) -> str | None:
        arn = opts.compute_environment_arn
        if arn is None:
            return None
        key = f"ce|{arn}"
        with self._lock:
            if key in self._jobdefs:
                return self._jobdefs[key] or None
        found = self._call("batch", clients.batch.describe_compute_environments, computeEnvironments=[arn])
        envs = found.get("computeEnvironments") or []
        kind = str(((envs[0].get("computeResources") or {}).get("type")) or "") if envs else ""
        with self._lock:
            self._jobdefs[key] = kind
        return kind or None

    def _is_spot(self, clients: _Clients, opts: BatchOptions) -> bool:
        if opts.spot is not None:
            return opts.spot
        return (self._compute_type(clients, opts) or "") in {"SPOT", "FARGATE_SPOT"}

    def _job_definition(
        self, clients: _Clients, spec: JobSpec, opts: BatchOptions, shape: tuple[int, bool] | None
    ) -> str:
        """One job definition per distinct image + resources + roles (+ staging shape), registered once.

        ``shape`` (stage-in containers, whether a stage-out) makes it an ECS multi-container
        definition (:mod:`runners.aws_batch.staging`); None, a single container.
        """
        capabilities: tuple[str, ...]
        if opts.platform_capabilities is not None:
            capabilities = opts.platform_capabilities
        else:
            fargate = (self._compute_type(clients, opts) or "").startswith("FARGATE")
            capabilities = ("FARGATE",) if fargate else ("EC2",)
        logging = None
        if opts.log_group_name != DEFAULT_LOG_GROUP:
            logging = {"logDriver": "awslogs", "options": {"awslogs-group": opts.log_group_name}}
        properties: dict[str, Any] = {
            "image": spec.image or DEFAULT_IMAGE,
            "command": ["sh"],
            "resourceRequirements": self._resource_requirements(opts.resources),
        }
        kind: dict[str, Any]
        if shape is None:
            if opts.task_role_arn:
                properties["jobRoleArn"] = opts.task_role_arn
            if opts.execution_role_arn:
                properties["executionRoleArn"] = opts.execution_role_arn
            if logging is not None:
                properties["logConfiguration"] = logging
            if "FARGATE" in capabilities:
                public_ip = "ENABLED" if opts.assign_public_ip else "DISABLED"
                properties["networkConfiguration"] = {"assignPublicIp": public_ip}
                properties["fargatePlatformConfiguration"] = {"platformVersion": "LATEST"}
            kind = {"containerProperties": properties}
        else:
            kind = {"ecsProperties": self._ecs_properties(properties, opts, capabilities, shape, logging)}
        identity = json.dumps([kind, sorted(capabilities)], sort_keys=True)
        def_name = "squall-" + hashlib.sha256(identity.encode()).hexdigest()[:20]
        with self._lock:
            if def_name in self._jobdefs:
                return self._jobdefs[def_name]
        existing = self._call(
            "batch", clients.batch.describe_job_definitions, jobDefinitionName=def_name, status="ACTIVE"
        ).get("jobDefinitions", [])
        if existing:
            arn = str(max(existing, key=lambda d: d.get("revision", 0))["jobDefinitionArn"])
        else:
            arn = str(
                self._call(
                    "batch",
                    clients.batch.register_job_definition,
                    jobDefinitionName=def_name,
                    type="container",
                    **kind,
                    platformCapabilities=list(capabilities),
                    tags={MANAGED_TAG: MANAGED_VALUE},
                )["jobDefinitionArn"]
            )
        with self._lock:
            self._jobdefs[def_name] = arn
        return arn

    @staticmethod
    def _ecs_properties(
        main: dict[str, Any],
        opts: BatchOptions,
        capabilities: Sequence[str],
        shape: tuple[int, bool],
        logging: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The task of a staged job: stage-in containers, main, stage-out, one shared volume.

        Only main asks for the task's resources: the stagers are one ``aws`` process each,
        and on Fargate the task's size is what the containers ask for together.
        """
        stage_ins, stage_out = shape
        mount = [{"sourceVolume": staging.VOLUME, "containerPath": staging.MOUNT}]

        def stager(name: str, depends: list[dict[str, str]], essential: bool) -> dict[str, Any]:
            container: dict[str, Any] = {
                "name": name,
                "image": opts.staging_image,
                "essential": essential,
                "command": ["--version"],  # each job's own `aws` args come as an override
                "mountPoints": mount,
            }
            if depends:
                container["dependsOn"] = depends
            if logging is not None:
                container["logConfiguration"] = logging
            return container

        ins = [stager(f"{staging.STAGE_IN}{i}", [], False) for i in range(stage_ins)]
        main_container = {
            "name": staging.MAIN,
            **main,
            "essential": not stage_out,
            "mountPoints": mount,
        }
        if ins:
            main_container["dependsOn"] = [{"containerName": c["name"], "condition": "COMPLETE"} for c in ins]
        if logging is not None:
            main_container["logConfiguration"] = logging
        containers = [*ins, main_container]
        if stage_out:
            containers.append(
                stager(staging.STAGE_OUT, [{"containerName": staging.MAIN, "condition": "COMPLETE"}], True)
            )
        task: dict[str, Any] = {"containers": containers, "volumes": [{"name": staging.VOLUME}]}
        if opts.task_role_arn:
            task["taskRoleArn"] = opts.task_role_arn
        if opts.execution_role_arn:
            task["executionRoleArn"] = opts.execution_role_arn
        if "FARGATE" in capabilities:
            task["networkConfiguration"] = {
                "assignPublicIp": "ENABLED" if opts.assign_public_ip else "DISABLED"
            }
            task["platformVersion"] = "LATEST"
        return {"taskProperties": [task]}

    # -- poll

    def _describe(self, clients: _Clients, ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(ids), DESCRIBE_BATCH):
            chunk = list(ids[start : start + DESCRIBE_BATCH])
            reply = self._call("batch", clients.batch.describe_jobs, jobs=chunk)
            for job in reply.get("jobs", []):
                found[str(job["jobId"])] = job
        return found

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        groups: dict[tuple[Any, Any], list[JobHandle]] = {}
        for handle in handles:
            with self._lock:
                done = self._finished.get(handle.id)
            if done is not None:
                out[handle.name] = done[1]
            elif not handle.id:
                out[handle.name] = _lost(handle, "no Batch job id")
            else:
                key = (handle.data.get("region"), handle.data.get("role"))
                groups.setdefault(key, []).append(handle)
        for group in groups.values():
            clients = self._handle_clients(group[0])
            jobs = self._describe(clients, [h.id for h in group])
            for handle in group:
                job = jobs.get(handle.id)
                if job is not None:
                    out[handle.name] = self._observe(clients, handle, job)
                elif (gone := self._gone(handle)) is not None:
                    out[handle.name] = gone
                # else: no news (not visible yet); the control plane asks again, and bounds it
        return out

    def _gone(self, handle: JobHandle) -> JobStatus | None:
        """LOST for a job Batch does not return, when there is evidence it is gone for good:
        it was submitted longer ago than Batch keeps jobs. None otherwise (no news)."""
        submitted = handle.data.get("submitted")
        if not isinstance(submitted, int | float):
            return None  # a handle from before submit times were recorded: the control plane bounds it
        age = self._now().timestamp() - submitted
        if age <= BATCH_RETENTION.total_seconds():
            return None
        return _lost(
            handle,
            f"Batch no longer returns this job, submitted {timedelta(seconds=round(age))} ago"
            f" (Batch keeps jobs {BATCH_RETENTION})",
        )

    def _observe(self, clients: _Clients, handle: JobHandle, job: Mapping[str, Any]) -> JobStatus:
        status = self._complete(clients, job)
        if status.terminal:
            with self._lock:
                self._finished[handle.id] = (job, status)
            return status
        return self._enforce(clients, job, status)

    def _complete(self, clients: _Clients, job: Mapping[str, Any]) -> JobStatus:
        """classify() plus what needs tags or I/O: output files and billed resources."""
        status = taxonomy.classify(job)
        if not status.terminal:
            return status
        tags = job.get("tags") or {}
        resources = _resources_from_tag(tags.get("squall:resources"))
        spot = tags.get("squall:spot") == "1"
        billed = billed_resources(resources, status.started, status.ended, spot=spot)
        price = _pricing_from_tag(tags.get("squall:price"))
        cost = estimate_cost(billed, price) if billed is not None and price is not None else None
        outputs = self._list_outputs(clients, tags.get("squall:outputs"))
        status = replace(status, output_files=outputs, resources=billed, cost=cost)
        if status.failure is Failure.CONFIG and (
            taxonomy.staging_failure(job) is not None or status.exit_code in set(WrapperExit)
        ):
            status = replace(status, reason=self._staging_detail(clients, job, status.reason))
        return status

    def _staging_detail(self, clients: _Clients, job: Mapping[str, Any], reason: str | None) -> str | None:
        """``reason`` plus the last lines that name the files: the stage-out container's when it
        failed, else the wrapper's own ``squall:`` messages (an input, a command not found).

        Best effort: the lines may not be ingested yet (the reason then points at the stream).
        """
        out = taxonomy.containers_of(job).get(taxonomy.STAGE_OUT) or {}
        wrapper = taxonomy.staging_failure(job) is None
        stream = taxonomy.log_stream_of(job) if wrapper else out.get("logStreamName")
        if not isinstance(stream, str):
            return reason
        group = (job.get("tags") or {}).get("squall:log-group", DEFAULT_LOG_GROUP)
        try:
            page = self._call(
                "logs",
                clients.logs.get_log_events,
                logGroupName=group,
                logStreamName=stream,
                startFromHead=False,
                limit=20,
            )
        except RunnerError:
            return f"{reason} (see the log stream {group}/{stream})"
        lines = [str(event.get("message", "")).strip() for event in page.get("events", [])]
        if wrapper:
            lines = [line.removeprefix(STDERR_PREFIX) for line in lines if "squall: " in line[:40]]
        shown = "; ".join(line for line in lines if line)[-1500:]
        return f"{reason}: {shown}" if shown else f"{reason} (see the log stream {group}/{stream})"

    def _list_outputs(self, clients: _Clients, prefix: str | None) -> dict[str, str]:
        if not prefix or not prefix.startswith("s3://"):
            return {}
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        files: dict[str, str] = {}
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key_prefix}
        while True:
            try:
                page = self._call("s3", clients.s3.list_objects_v2, **kwargs)
            except RunnerError as exc:
                if _error_code(exc) == "NoSuchBucket":
                    return {}
                raise
            for item in page.get("Contents", []):
                rel = str(item["Key"])[len(key_prefix) :]
                files[rel] = f"s3://{bucket}/{item['Key']}"
            if not page.get("IsTruncated"):
                return files
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _enforce(self, clients: _Clients, job: Mapping[str, Any], status: JobStatus) -> JobStatus:
        """Timeouts shorter than Batch's 60 s minimum, and the RUNNABLE dwell: ask Batch to stop the job."""
        tags = job.get("tags") or {}
        job_id = str(job["jobId"])
        now = self._now()
        timeout = _seconds(tags.get("squall:timeout"))
        started = status.started
        ran = (now - started).total_seconds() if started is not None else 0.0
        if status.state is JobState.RUNNING and timeout is not None and ran > timeout:
            reason = f"{taxonomy.TIMEOUT_PREFIX} after {timedelta(seconds=timeout)}"
            self._stop_once(clients, job_id, reason, terminate=True)
            return replace(status, reason=reason.removeprefix("Squall: "))
        dwell = _seconds(tags.get("squall:runnable-timeout"))
        created = job.get("createdAt")
        if job.get("status") == "RUNNABLE" and dwell is not None and isinstance(created, int | float):
            waited = now.timestamp() - created / 1000
            if waited > dwell:
                reason = f"{taxonomy.UNSCHEDULABLE_PREFIX}: RUNNABLE for {timedelta(seconds=round(waited))}"
                if tags.get("squall:cancel-unschedulable", "1") == "1":
                    self._stop_once(clients, job_id, reason, terminate=False)
                    return replace(status, reason=reason.removeprefix("Squall: "))
                return replace(status, failure=Failure.UNSCHEDULABLE, reason=reason.removeprefix("Squall: "))
        return status

    def _stop_once(self, clients: _Clients, job_id: str, reason: str, *, terminate: bool) -> None:
        with self._lock:
            if job_id in self._asked:
                return
            self._asked.add(job_id)
        if not terminate:
            self._call("batch", clients.batch.cancel_job, jobId=job_id, reason=reason)
        self._call("batch", clients.batch.terminate_job, jobId=job_id, reason=reason)

    # -- cancel / logs / cleanup

    def _job(self, handle: JobHandle) -> tuple[_Clients, Mapping[str, Any], JobStatus]:
        clients = self._handle_clients(handle)
        with self._lock:
            done = self._finished.get(handle.id)
        if done is not None:
            return clients, done[0], done[1]
        job = self._describe(clients, [handle.id]).get(handle.id) if handle.id else None
        if job is None:
            raise JobNotFoundError(f"AWS Batch has no job {handle.id!r} ({handle.name})", runner=self.name)
        return clients, job, self._observe(clients, handle, job)

    def cancel(self, handle: JobHandle) -> None:
        clients, job, status = self._job(handle)
        if status.terminal:
            return
        reason = f"{taxonomy.CANCEL_PREFIX} by Squall"
        if job.get("status") in {"SUBMITTED", "PENDING", "RUNNABLE"}:
            self._call("batch", clients.batch.cancel_job, jobId=handle.id, reason=reason)
        # Also when not started: the job may start between DescribeJobs and CancelJob.
        self._call("batch", clients.batch.terminate_job, jobId=handle.id, reason=reason)

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        """One page of the job's CloudWatch stream after ``cursor``.

        ``complete`` once both of the wrapper's end sentinels (stdout's and stderr's) were read
        (they are not returned); an empty page is never the end. A job whose sentinels have not
        come ``log_grace`` seconds after it ended (killed, cancelled, a lost tail) is
        ``complete`` and ``truncated``. The cursor is CloudWatch's forward token plus which
        sentinels were read, so another runner instance goes on from it. A job without the
        ``squall:log-nonce`` tag (submitted before the sentinel existed) ends at its first
        empty page after it ended, as before.
        """
        clients, job, status = self._job(handle)
        tags = job.get("tags") or {}
        nonce = tags.get("squall:log-nonce")
        token = sentinel_token(str(job.get("jobName") or handle.name), nonce) if nonce else None
        seen, forward = _parse_cursor(cursor)
        stream = taxonomy.log_stream_of(job)
        if stream is None:  # it never ran, or has not started yet: no line exists
            return LogChunk((), cursor, status.terminal)
        group = tags.get("squall:log-group", DEFAULT_LOG_GROUP)
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if forward:
            kwargs["nextToken"] = forward
        events: list[Mapping[str, Any]] = []
        if len(seen) < 2:
            try:
                page = self._call("logs", clients.logs.get_log_events, **kwargs)
            except RunnerError as exc:
                if _error_code(exc) == "ResourceNotFoundException":  # no line written yet
                    page = {}
                elif _error_code(exc) == "InvalidParameterException" and forward:
                    raise RunnerError(f"invalid log cursor {cursor!r}: {exc}", runner=self.name) from exc
                else:
                    raise
            events = list(page.get("events", []))
            forward = page.get("nextForwardToken") or forward
        records: list[LogRecord] = []
        for event in events:
            if len(seen) == 2:
                break  # nothing the wrapper wrote comes after both sentinels
            record = _record(event)
            found = split_sentinel(record.text, token, record.stream) if token else None
            if found is None:
                records.append(record)
                continue
            seen.add(found.stream)
            if found.before:  # a last line written without a newline
                records.append(replace(record, text=found.before))
        next_cursor = _cursor(seen, forward) if token else forward
        if token is None:
            return LogChunk(tuple(records), next_cursor, status.terminal and not records)
        if len(seen) == 2:
            return LogChunk(tuple(records), next_cursor, True)
        ended = status.ended or self._now()
        waited = (self._now() - ended).total_seconds()
        if status.terminal and not events and waited >= self._log_grace:
            return LogChunk(tuple(records), next_cursor, True, truncated=True)
        return LogChunk(tuple(records), next_cursor, False)

    def cleanup(self, handle: JobHandle) -> None:
        clients, job, status = self._job(handle)
        if not status.terminal:
            raise RunnerError(f"job {handle.name} is still running: cancel it first", runner=self.name)
        staged = (job.get("tags") or {}).get("squall:staging")
        if not staged:
            return
        bucket, _, key_prefix = staged.removeprefix("s3://").partition("/")
        listing = self._call("s3", clients.s3.list_objects_v2, Bucket=bucket, Prefix=f"{key_prefix}inputs/")
        keys = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
        if keys:
            delete = {"Objects": keys, "Quiet": True}
            self._call("s3", clients.s3.delete_objects, Bucket=bucket, Delete=delete)

    # -- events

    def parse_event(self, event: PushEvent) -> JobEvent | None:
        """A "Batch Job State Change" (the EventBridge event is the body): the same judgement as poll."""
        job = taxonomy.job_from_event(event.body)
        handle = self._handle_from_event(event.body)
        if job is None or handle is None:
            return None
        with self._lock:
            done = self._finished.get(handle.id)
        if done is not None:
            return JobEvent(handle.name, handle.id, done[1], handle)
        status = taxonomy.classify(job)
        if status.terminal:  # the final word: outputs and resources attached, like poll's
            status = self._complete(self._handle_clients(handle), job)
            with self._lock:
                self._finished[handle.id] = (job, status)
        return JobEvent(handle.name, handle.id, status, handle)

    def _handle_from_event(self, event: Mapping[str, Any]) -> JobHandle | None:
        handle = taxonomy.handle_from_event(event, self.name)
        if handle is None:
            return None
        job = taxonomy.job_from_event(event) or {}
        spec_name = (job.get("tags") or {}).get("squall:name")
        return JobHandle(spec_name or handle.name, handle.runner, handle.id, handle.data)


def _lost(handle: JobHandle, reason: str) -> JobStatus:
    return JobStatus(JobState.LOST, failure=Failure.LOST, reason=f"{handle.name}: {reason}")


def _seconds(raw: Any) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _pricing_from_tag(raw: str | None) -> Pricing | None:
    try:
        vcpu, gib, gpu, discount = (float(part) for part in (raw or "").split("/"))
        return Pricing(vcpuHour=vcpu, gibHour=gib, gpuHour=gpu, spotDiscount=discount)
    except ValueError:  # absent or not ours: no estimate rather than a wrong one
        return None


def _resources_from_tag(raw: str | None) -> BatchResources:
    try:
        vcpu, memory, gpu = (raw or "").split("/")
        return BatchResources(vcpu=float(vcpu), memory=int(memory), gpu=int(gpu))
    except ValueError:
        return BatchResources()


def _record(event: Mapping[str, Any]) -> LogRecord:
    text = str(event.get("message", "")).rstrip("\r\n")
    at = datetime.fromtimestamp(event["timestamp"] / 1000, UTC) if "timestamp" in event else None
    if text.startswith(STDERR_PREFIX):
        return LogRecord("stderr", text[len(STDERR_PREFIX) :], at)
    return LogRecord("stdout", text, at)


_CURSOR = "squall-log:"


def _parse_cursor(cursor: str | None) -> tuple[set[str], str | None]:
    """(the sentinels read so far, CloudWatch's forward token) of a :meth:`AwsBatchRunner.logs` cursor."""
    if not cursor or not cursor.startswith(_CURSOR):
        return set(), cursor or None  # a bare forward token (a cursor from before the sentinel)
    bits, _, forward = cursor.removeprefix(_CURSOR).partition(":")
    seen = {name for flag, name in (("o", "stdout"), ("e", "stderr")) if flag in bits}
    return seen, forward or None


def _cursor(seen: set[str], forward: str | None) -> str:
    bits = ("o" if "stdout" in seen else "") + ("e" if "stderr" in seen else "")
    return f"{_CURSOR}{bits or '-'}:{forward or ''}"

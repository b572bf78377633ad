"""The Kubernetes runner (entry point ``kubernetes``): one task attempt, one batch/v1 Job.

Theory of operation::

    submit(spec)   stage big inline inputs under the attempt's folder in the object store, then
                   POST the Job under the attempt's deterministic name; 409 AlreadyExists means
                   it was submitted (by us before a lost response, or by a racing submitter):
                   GET it and return its handle. The API server's name uniqueness is the
                   idempotency key, so a blind retry of the create is safe.
    find(spec)     GET the Job by name.
    poll(handles)  one paged LIST of the deployment's Jobs (label selector, ``limit``/``continue``)
                   per namespace, and one of their Pods only when some Job is not running yet
                   (waiting reasons, dwell) or failed without saying why in its condition.
                   A Job the list does not show was deleted: the tombstone ``final.json`` that
                   cleanup writes in the object store says how it ended, else it is LOST.
    cancel         PATCH ``spec.suspend: true`` plus the ``squall.dev/cancelled`` annotation
                   (optimistic: the Job's resourceVersion is the precondition). Kubernetes
                   deletes the active pods and keeps the Job, so a fresh runner still reads
                   CANCELLED, and the log stays. Deleting on cancel would make it LOST.
    logs           the wrapper's log as the sidecar copied it to the object store, by byte
                   ranges, complete at both sentinels (or truncated after ``log_grace``).
    cleanup        writes the tombstone, deletes staged inputs, DELETEs the Job (Background).

Stops the runner decides itself (an image that cannot be pulled past ``configErrorTimeout``,
an unschedulable pod or a quota past ``pendingTimeout``) are the cancel's PATCH with the
``squall.dev/stopped`` annotation instead: Kubernetes never fails those pods on its own.

The Job: ``backoffLimit: 0`` and ``restartPolicy: Never`` (Squall owns retries),
``activeDeadlineSeconds`` from the timeout (``DeadlineExceeded`` is TIMEOUT), and a
``podFailurePolicy`` whose rules fail the Job at once and say why in its condition: a
``DisruptionTarget`` (eviction, preemption, node loss: PREEMPTED), else the exit code of the
container that failed (kept in the Job's condition after the pods are gone). The pod: an
``emptyDir`` at :data:`VOLUME`; the init container :data:`~taxonomy.STAGE_IN` and the sidecar
:data:`~taxonomy.STAGE_OUT` in the tools image (:mod:`runners.kubernetes.tools`) move inputs,
the log and outputs through the object store; the task's container runs the shared wrapper.

Everything poll needs to judge a Job travels on the Job (annotations ``squall.dev/...``), so a
fresh runner instance judges it the same. Calls: the official ``kubernetes`` client, imported
when first needed, its urllib3 retries off; every call goes through :func:`runners.retry.call`
with the classifier registered below (429, 5xx, broken connections, a response the client's
models cannot parse are transient; other API errors are permanent).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from msgspec.structs import replace

from runners import botocore_errors, retry
from runners.base import (
    Failure,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    Resources,
    RunnerError,
    RunnerOptions,
    RunnerOptionsError,
    validate_options,
)
from runners.gcs_folder import LOG_PAGE_BYTES, read_log
from runners.kubernetes import taxonomy
from runners.kubernetes.options import Connection, KubernetesOptions
from runners.kubernetes.watch import JobWatch
from runners.labels import k8s_labels
from runners.wrapper import INLINE_LIMIT, VolumeStaging, check_relative, sentinel_token, wrapper_command

__all__ = [
    "DEFAULT_TOOLS_IMAGE",
    "LIST_PAGE",
    "VOLUME",
    "KubernetesRunner",
    "MalformedResponse",
    "classify",
    "job_name",
]

DEFAULT_TOOLS_IMAGE = "ghcr.io/squall-orchestrator/squall-tools:latest"
VOLUME = "/squall"
"""Where the pod's shared ``emptyDir`` is mounted in every container."""
LIST_PAGE = 500
"""Items a LIST page asks for (``limit``); the API server's default maximum is far above."""
MANAGED = "squall.dev/managed"
DEPLOYMENT = "squall.dev/deployment"
NAME = "squall.dev/name"
FOLDER = "squall.dev/folder"
OUTPUTS = "squall.dev/outputs"
NONCE = "squall.dev/log-nonce"
COST = "squall.dev/cost"
DELETE = "squall.dev/delete"
_JOB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class MalformedResponse(Exception):
    """The API answered something the client's models could not parse (a proxy cut the body)."""


def classify(exc: BaseException) -> bool | None:
    """The kubernetes client's errors: 429 and 5xx answers, urllib3's connection errors
    (``MaxRetryError`` with retries off wraps each), and malformed answers are transient."""
    if isinstance(exc, MalformedResponse):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    modules = {cls.__module__.partition(".")[0] for cls in type(exc).__mro__}
    if "ApiException" in names and "kubernetes" in modules:
        status = int(getattr(exc, "status", 0) or 0)
        return status == 429 or status >= 500 or status == 0
    if "urllib3" in modules and names & {
        "MaxRetryError",
        "ProtocolError",
        "NewConnectionError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ProxyError",
        "SSLError",
        "IncompleteRead",
    }:
        return "SSLError" not in names or "EOF" in str(exc)
    if "ValidationError" in names and "pydantic_core" in modules:
        return True  # a body that does not fit the model it should be: as a cut body, try again
    return None


retry.register_classifier(classify, runner="kubernetes")
retry.register_classifier(botocore_errors.classify, runner="kubernetes")


def job_name(name: str) -> str:
    """``name`` if it is a valid Job name (a DNS-1123 label of 63 characters at most), else a
    deterministic valid one with a hash of the original."""
    if _JOB_NAME.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:52].strip("-") or "squall"
    return f"{cleaned}-{digest}"


def _status_reason(exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    body = getattr(cause, "body", None)
    try:
        return str(json.loads(body).get("reason", "")) if body else ""
    except (ValueError, AttributeError):
        return ""


def _status_code(exc: BaseException) -> int:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return int(getattr(cause, "status", 0) or 0)


class _Cluster:
    """The client objects of one connection."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api = api_client
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def plain(self, model: Any) -> Any:
        """The API's JSON (camelCase) of a client model: what the taxonomy reads."""
        return self.api.sanitize_for_serialization(model)


class KubernetesRunner:
    """Runs each task attempt as one Kubernetes Job; see the module docstring.

    Seams (constructor keywords, all optional): ``defaults`` (the deployment's options: the
    connection, ``stagingUri``, ``toolsImage``...), ``tools_env`` (environment of the tools
    containers: object-store endpoint or credentials when the pod's service account has none),
    ``s3_client`` / ``s3_endpoint`` (the object store the runner reads logs and writes
    tombstones in), ``api_client_factory(connection) -> ApiClient`` (tests), ``policy`` and
    ``sleep`` (retry backoff), ``now`` (dwell, grace and cost), ``log_grace`` (seconds after the
    end that :meth:`logs` waits for the sentinels), ``reconcile_horizon`` (how long the control
    plane may take to see a Job's end: ``ttlSecondsAfterFinished`` must be longer).
    """

    name: ClassVar[str] = "kubernetes"
    Options: ClassVar[type[RunnerOptions]] = KubernetesOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(
        {
            Failure.USER,
            Failure.CONFIG,
            Failure.TIMEOUT,
            Failure.CANCELLED,
            Failure.UNSCHEDULABLE,
            Failure.PREEMPTED,
            Failure.LOST,
            Failure.QUOTA,
        }
    )
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"s3"})
    poll_batch: ClassVar[int] = LIST_PAGE

    def __init__(
        self,
        *,
        defaults: Mapping[str, Any] | None = None,
        tools_env: Mapping[str, str] | None = None,
        s3_client: Any = None,
        s3_endpoint: str | None = None,
        api_client_factory: Callable[[Connection], Any] | None = None,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        log_grace: float = 60.0,
        reconcile_horizon: timedelta = timedelta(hours=1),
    ) -> None:
        self._defaults = dict(defaults or {})
        self._tools_env = dict(tools_env or {})
        self._s3_client = s3_client
        self._s3_endpoint = s3_endpoint
        self._api_client_factory = api_client_factory
        self._policy = policy
        self._sleep = sleep
        self._now = now
        self._log_grace = log_grace
        self._horizon = reconcile_horizon
        self._lock = threading.Lock()
        self._clusters: dict[str, _Cluster] = {}
        self._finished: dict[str, JobStatus] = {}
        self._default_connection: Connection | None = None
        self._watch: JobWatch | None = None
        self._watch_tried = False

    # -- plumbing

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        return dict(self._defaults)

    def _call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        def once() -> Any:
            try:
                return fn(*args, **kwargs)
            except (ValueError, TypeError) as exc:  # the client's models refused the answer
                if (
                    "kubernetes" in getattr(fn, "__module__", "")
                    or "kubernetes" in type(getattr(fn, "__self__", None)).__module__
                ):
                    raise MalformedResponse(f"the API's answer did not parse: {exc}") from exc
                raise

        what = getattr(fn, "__name__", "call")
        return retry.call(once, policy=self._policy, sleep=self._sleep, runner=self.name, what=what)

    def _s3(self) -> Any:
        with self._lock:
            if self._s3_client is None:
                import boto3
                from botocore.config import Config

                config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
                self._s3_client = boto3.session.Session().client(
                    "s3", endpoint_url=self._s3_endpoint, config=config
                )
            return self._s3_client

    def _options(self, spec: JobSpec) -> KubernetesOptions:
        merged = {**self._defaults, **dict(spec.options)}
        options = validate_options(type(self), merged)
        assert isinstance(options, KubernetesOptions)
        problems: list[str] = []
        ttl = options.ttl_seconds_after_finished
        if ttl is not None and ttl <= self._horizon.total_seconds():
            problems.append(
                f"taskRunner.ttlSecondsAfterFinished: {ttl} s is not longer than the control plane's"
                f" reconcile horizon ({int(self._horizon.total_seconds())} s): a finished Job would"
                " vanish before its end was seen and be LOST"
            )
        if options.staging_uri is None:
            problems.append(
                "taskRunner.stagingUri: required (the object-store folder of the job's files and log)"
            )
        if problems:
            raise RunnerOptionsError(self.name, problems)
        return options

    def _connect(self, connection: Connection) -> _Cluster:
        key = connection.identity
        with self._lock:
            found = self._clusters.get(key)
        if found is not None:
            return found
        api_client = (
            self._api_client_factory(connection)
            if self._api_client_factory is not None
            else _api_client(connection)
        )
        cluster = _Cluster(api_client)
        with self._lock:
            return self._clusters.setdefault(key, cluster)

    def _cluster_of(self, handle: JobHandle) -> _Cluster:
        """The cluster of a handle: the deployment's connection when it is the same one (it may
        hold a token a handle never carries), else the handle's own (no secret in it)."""
        raw = dict(handle.data.get("connection") or {})
        if self._default_connection is None and "config" in self._defaults:
            self._default_connection = Connection.model_validate(self._defaults["config"])
        wanted = Connection.model_validate(raw) if raw else (self._default_connection or Connection())
        if self._default_connection is not None and self._default_connection.identity == wanted.identity:
            wanted = self._default_connection
        return self._connect(wanted)

    # -- submit / find

    def submit(self, spec: JobSpec) -> JobHandle:
        opts = self._options(spec)
        cluster = self._connect(opts.config)
        name = job_name(spec.name)
        assert opts.staging_uri is not None
        folder = f"{opts.staging_uri}{name}/"
        nonce = hashlib.sha256(f"{spec.name}\0{folder}".encode()).hexdigest()[:16]
        inline, staged = self._stage_inputs(spec, folder)
        body = self._manifest(spec, opts, name, folder, nonce, inline, staged)
        try:
            created = self._call(cluster.batch.create_namespaced_job, opts.namespace, body)
        except RunnerError as exc:
            if _status_code(exc) != 409:
                raise
            created = self._call(cluster.batch.read_namespaced_job, name, opts.namespace)
        job = cluster.plain(created)
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        if annotations.get(NAME) != spec.name:
            raise RunnerError(
                f"a Job named {name} exists in {opts.namespace} that Squall did not submit for {spec.name}",
                runner=self.name,
            )
        return self._handle(spec.name, job, opts)

    def _handle(self, spec_name: str, job: Mapping[str, Any], opts: KubernetesOptions) -> JobHandle:
        meta = job.get("metadata") or {}
        connection = opts.config.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        connection.pop("oauthToken", None)  # never in a handle: the deployment's config holds it
        connection.pop("caCertData", None)
        data = {
            "namespace": opts.namespace,
            "deployment": opts.deployment,
            "job": meta.get("name"),
            "folder": (meta.get("annotations") or {}).get(FOLDER),
            "connection": connection,
        }
        return JobHandle(spec_name, self.name, str(meta.get("uid")), data)

    def find(self, spec: JobSpec) -> JobHandle | None:
        opts = self._options(spec)
        cluster = self._connect(opts.config)
        try:
            found = self._call(cluster.batch.read_namespaced_job, job_name(spec.name), opts.namespace)
        except RunnerError as exc:
            if _status_code(exc) == 404:
                return None
            raise
        job = cluster.plain(found)
        if ((job.get("metadata") or {}).get("annotations") or {}).get(NAME) != spec.name:
            return None
        return self._handle(spec.name, job, opts)

    def _stage_inputs(self, spec: JobSpec, folder: str) -> tuple[dict[str, bytes], dict[str, str]]:
        """Inline files up to the wrapper's budget stay in the command; bigger ones go to
        ``in/`` in the folder. Returns the inline files and ``{rel: s3 URI}`` to fetch."""
        for rel in (*spec.input_files, *spec.input_uris):
            try:
                check_relative(rel, "input file")
            except ValueError as exc:
                raise RunnerError(str(exc), runner=self.name) from None
        inline: dict[str, bytes] = {}
        budget = INLINE_LIMIT
        staged: dict[str, str] = {}
        for rel, data in sorted(spec.input_files.items(), key=lambda kv: len(kv[1])):
            if len(data) <= budget:
                inline[rel] = data
                budget -= len(data)
                continue
            uri = f"{folder}in/{rel}"
            bucket, key = _where(uri)
            self._call(self._s3().put_object, Bucket=bucket, Key=key, Body=data)
            staged[rel] = uri
        for rel, uri in sorted(spec.input_uris.items()):
            if not uri.startswith("s3://"):
                raise RunnerError(
                    f"input {rel}: {uri} is not an s3:// URI this runner stages", runner=self.name
                )
            staged[rel] = uri
        return inline, staged

    def _manifest(
        self,
        spec: JobSpec,
        opts: KubernetesOptions,
        name: str,
        folder: str,
        nonce: str,
        inline: Mapping[str, bytes],
        staged: Mapping[str, str],
    ) -> dict[str, Any]:
        tools_image = opts.tools_image or DEFAULT_TOOLS_IMAGE
        if spec.output_prefix is not None and not spec.output_prefix.startswith("s3://"):
            raise RunnerError(f"output prefix {spec.output_prefix} is not in S3 (s3://)", runner=self.name)
        # Without the control plane's prefix, outputs are kept in the attempt's folder (out/).
        outputs = (
            spec.output_prefix.rstrip("/") + "/"
            if spec.output_prefix is not None
            else (f"{folder}out/" if spec.output_files else None)
        )
        keep = outputs is not None
        staging = VolumeStaging(f"{VOLUME}/in", f"{VOLUME}/out")
        try:
            wrapped = wrapper_command(
                list(spec.command),
                log_dir=f"{VOLUME}/log",
                sentinel=sentinel_token(spec.name, nonce),
                inline_files=dict(inline),
                inputs={rel: rel for rel in staged},
                fetch=staging,
                output_globs=spec.output_files if keep else (),
                upload=staging if keep else None,
            )
        except ValueError as exc:
            raise RunnerError(str(exc), runner=self.name) from None
        # The sidecar copies the outputs once the wrapper has ended: an rc file in the volume.
        ended = (
            f'sh -c "$0" "$@"; rc=$?; echo "$rc" > {VOLUME}/rc.tmp && mv {VOLUME}/rc.tmp {VOLUME}/rc;'
            ' exit "$rc"'
        )
        command = ["sh", "-c", ended, *wrapped[2:]]
        mount = [{"name": "squall", "mountPath": VOLUME}]
        tools_env = [{"name": k, "value": v} for k, v in sorted(self._tools_env.items())]
        pull = {"imagePullPolicy": opts.pull_policy} if opts.pull_policy else {}
        resources = opts.resources.as_k8s()
        main: dict[str, Any] = {
            **opts.container_spec,
            "name": taxonomy.MAIN,
            "image": spec.image or "busybox:1.36",
            "command": command,
            # containerSpec's own env (valueFrom a Secret or ConfigMap, say) first; the task's
            # values win by name.
            "env": [
                *(e for e in opts.container_spec.get("env") or [] if e.get("name") not in spec.env),
                *({"name": k, "value": v} for k, v in sorted(spec.env.items())),
            ],
            "volumeMounts": [*opts.container_spec.get("volumeMounts", []), *mount],
            **({"resources": resources} if resources else {}),
            **pull,
        }
        sidecar = {
            "name": taxonomy.STAGE_OUT,
            "image": tools_image,
            "command": [
                "python",
                "-m",
                "runners.kubernetes.tools",
                "--termination-log",
                "/dev/termination-log",
                "stage-out",
                "--dir",
                VOLUME,
                "--log",
                f"{folder}log/",
                *(["--outputs", outputs] if outputs else []),
            ],
            "env": tools_env,
            "volumeMounts": mount,
            **pull,
        }
        init = []
        if staged:
            init.append(
                {
                    "name": taxonomy.STAGE_IN,
                    "image": tools_image,
                    "command": [
                        "python",
                        "-m",
                        "runners.kubernetes.tools",
                        "--termination-log",
                        "/dev/termination-log",
                        "stage-in",
                        "--dir",
                        f"{VOLUME}/in",
                        *(f"{rel}={uri}" for rel, uri in sorted(staged.items())),
                    ],
                    "env": tools_env,
                    "volumeMounts": mount,
                    **pull,
                }
            )
        try:
            labels = {**k8s_labels({**dict(spec.labels), **opts.labels})}
        except ValueError as exc:
            raise RunnerOptionsError(self.name, [f"taskRunner.labels: {exc}"]) from None
        labels.update({DEPLOYMENT: opts.deployment, MANAGED: "true"})
        timeout = _shortest(spec.timeout, opts.timeout)
        price = opts.pricing
        annotations = {
            **opts.annotations,
            NAME: spec.name,
            FOLDER: folder,
            NONCE: nonce,
            taxonomy.PENDING_TIMEOUT: str(opts.pending_timeout.total_seconds()),
            taxonomy.CONFIG_ERROR_TIMEOUT: str(opts.config_error_timeout.total_seconds()),
            DELETE: "1" if opts.delete else "0",
            COST: json.dumps(
                {
                    "vcpu": opts.resources.vcpus,
                    "gib": opts.resources.gib,
                    **({"vcpuHour": price.vcpu_hour, "gibHour": price.gib_hour} if price else {}),
                }
            ),
        }
        if outputs:
            annotations[OUTPUTS] = outputs
        if timeout is not None:
            annotations[taxonomy.TIMEOUT] = str(timeout.total_seconds())
        pod_spec: dict[str, Any] = {
            **opts.pod_spec,
            "restartPolicy": "Never",
            "volumes": [{"name": "squall", "emptyDir": {}}],
            "containers": [main, sidecar],
        }
        if init:
            pod_spec["initContainers"] = init
        if opts.service_account_name:
            pod_spec["serviceAccountName"] = opts.service_account_name
        if opts.node_selector:
            pod_spec["nodeSelector"] = dict(opts.node_selector)
        if opts.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in opts.tolerations]
        if opts.pull_secrets:
            pod_spec["imagePullSecrets"] = [dict(s) for s in opts.pull_secrets]
        rules: list[dict[str, Any]] = [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            *(
                {"action": "FailJob", "onExitCodes": {"containerName": c, "operator": "NotIn", "values": [0]}}
                for c in (taxonomy.MAIN, taxonomy.STAGE_OUT, *([taxonomy.STAGE_IN] if init else []))
            ),
        ]
        job_spec: dict[str, Any] = {
            "backoffLimit": 0,
            "podFailurePolicy": {"rules": rules},
            "template": {
                "metadata": {"labels": labels, "annotations": dict(opts.annotations)},
                "spec": pod_spec,
            },
        }
        if timeout is not None:
            job_spec["activeDeadlineSeconds"] = max(1, math.ceil(timeout.total_seconds()))
        if opts.ttl_seconds_after_finished is not None:
            job_spec["ttlSecondsAfterFinished"] = opts.ttl_seconds_after_finished
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": opts.namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": job_spec,
        }

    # -- poll

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        groups: dict[tuple[str, str, str], list[JobHandle]] = {}
        for handle in handles:
            with self._lock:
                known = self._finished.get(handle.id)
            if known is not None:
                result[handle.name] = known
                continue
            if not handle.data.get("namespace"):
                result[handle.name] = _lost(
                    handle, "the handle names no namespace: not a Job Squall submitted"
                )
                continue
            key = (
                json.dumps(handle.data.get("connection") or {}, sort_keys=True),
                str(handle.data["namespace"]),
                str(handle.data.get("deployment") or "squall"),
            )
            groups.setdefault(key, []).append(handle)
        for (_, namespace, deployment), members in groups.items():
            cluster = self._cluster_of(members[0])
            result.update(self._poll_group(cluster, namespace, deployment, members))
        return result

    def _list(
        self, method: Callable[..., Any], cluster: _Cluster, namespace: str, selector: str
    ) -> Iterator[Any]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": selector, "limit": LIST_PAGE}
            if token:
                kwargs["_continue"] = token
            try:
                page = self._call(method, namespace, **kwargs)
            except RunnerError as exc:
                if _status_code(exc) == 410 and token:  # the continue token expired: list again
                    token = None
                    continue
                raise
            yield from page.items
            token = page.metadata._continue
            if not token:
                return

    def _poll_group(
        self, cluster: _Cluster, namespace: str, deployment: str, handles: Sequence[JobHandle]
    ) -> dict[str, JobStatus]:
        selector = f"{DEPLOYMENT}={deployment}"
        jobs = {
            job["metadata"]["name"]: job
            for job in (
                cluster.plain(j)
                for j in self._list(cluster.batch.list_namespaced_job, cluster, namespace, selector)
            )
        }
        now = self._now()
        mine: dict[str, Mapping[str, Any]] = {}
        for handle in handles:
            job = jobs.get(str(handle.data.get("job") or job_name(handle.name)))
            if job is not None and job["metadata"].get("uid") == handle.id:  # else another Job of that name
                mine[handle.name] = job
        verdicts = {name: taxonomy.classify(job, None, now) for name, job in mine.items()}
        if any(taxonomy.needs_pods(mine[name], verdict) for name, verdict in verdicts.items()):
            pods: dict[str, list[Mapping[str, Any]]] = {}
            for pod in self._list(cluster.core.list_namespaced_pod, cluster, namespace, selector):
                plain = cluster.plain(pod)
                owner = ((plain.get("metadata") or {}).get("labels") or {}).get(
                    "batch.kubernetes.io/job-name"
                )
                pods.setdefault(str(owner), []).append(plain)
            for group in pods.values():
                group.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
            verdicts = {
                name: taxonomy.classify(job, pods.get(job["metadata"]["name"], []), now)
                for name, job in mine.items()
            }
            podless = [
                name
                for name, verdict in verdicts.items()
                if verdict.status.state is JobState.QUEUED
                and verdict.stop is None
                and not pods.get(mine[name]["metadata"]["name"])
                and taxonomy.overdue(mine[name], now)
            ]
            if podless:  # a Job without a pod: did a ResourceQuota refuse it? (one more call, then only)
                events = [
                    cluster.plain(e)
                    for e in self._call(
                        cluster.core.list_namespaced_event,
                        namespace,
                        field_selector="involvedObject.kind=Job,reason=FailedCreate",
                    ).items
                ]
                for name in podless:
                    stop = taxonomy.quota_stop(mine[name], events, now)
                    if stop is not None:
                        verdicts[name] = taxonomy.Verdict(verdicts[name].status, stop)
        result: dict[str, JobStatus] = {}
        for handle in handles:
            verdict = verdicts.get(handle.name)
            if verdict is None:
                result[handle.name] = self._gone(handle)
                continue
            job = mine[handle.name]
            status = verdict.status
            if verdict.stop is not None:
                self._suspend(cluster, job, taxonomy.STOPPED, taxonomy.stopped_value(*verdict.stop))
            if status.terminal:
                status = self._complete(job, status)
                with self._lock:
                    self._finished[handle.id] = status
            result[handle.name] = status
        return result

    def _complete(self, job: Mapping[str, Any], status: JobStatus) -> JobStatus:
        """Outputs (listed under the Job's output prefix) and the cost, for a terminal status."""
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        outputs = annotations.get(OUTPUTS)
        files = self._list_outputs(outputs) if outputs and status.state is not JobState.CANCELLED else {}
        try:
            cost = json.loads(annotations.get(COST) or "{}")
        except ValueError:
            cost = {}
        billed: Resources | None = None
        estimate: float | None = None
        if status.started is not None and status.ended is not None:
            seconds = max(0.0, (status.ended - status.started).total_seconds())
            billed = Resources(
                vcpu_seconds=float(cost.get("vcpu", 0.0)) * seconds,
                gib_seconds=float(cost.get("gib", 0.0)) * seconds,
            )
            if "vcpuHour" in cost:
                estimate = (
                    billed.vcpu_seconds * float(cost["vcpuHour"])
                    + billed.gib_seconds * float(cost["gibHour"])
                ) / 3600
        return replace(status, output_files=files, resources=billed, cost=estimate)

    def _list_outputs(self, prefix: str) -> dict[str, str]:
        bucket, key_prefix = _where(prefix)
        files: dict[str, str] = {}
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key_prefix}
        while True:
            try:
                page = self._call(self._s3().list_objects_v2, **kwargs)
            except RunnerError:
                return files  # an output prefix that cannot be listed: the job said CONFIG already
            for item in page.get("Contents", []):
                files[str(item["Key"])[len(key_prefix) :]] = f"s3://{bucket}/{item['Key']}"
            if not page.get("IsTruncated"):
                return files
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _gone(self, handle: JobHandle) -> JobStatus:
        """A Job the list does not show: its tombstone's status, else LOST."""
        final = self._tombstone(handle)
        if final is not None:
            with self._lock:
                self._finished[handle.id] = final
            return final
        return _lost(
            handle,
            "the Job is gone from the cluster without Squall seeing its end (deleted by someone, or its"
            " ttlSecondsAfterFinished passed first)",
        )

    def _tombstone(self, handle: JobHandle) -> JobStatus | None:
        folder = handle.data.get("folder")
        if not isinstance(folder, str):
            return None
        bucket, key = _where(f"{folder}final.json")

        def read() -> bytes | None:
            try:
                return bytes(self._s3().get_object(Bucket=bucket, Key=key)["Body"].read())
            except Exception as exc:
                if type(exc).__name__ == "NoSuchKey" or "NoSuchKey" in str(exc):
                    return None
                raise

        raw = self._call(read)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("uid") != handle.id:
                return None
            return JobStatus(
                JobState(doc["state"]),
                Failure(doc["failure"]) if doc.get("failure") else None,
                doc.get("exit_code"),
                doc.get("reason"),
                output_files=doc.get("output_files") or {},
            )
        except (ValueError, KeyError, TypeError):
            return None

    # -- the local wake-up (Waitable)

    def wait(self, timeout: float) -> bool:
        """True when one of the deployment's Jobs may have changed within ``timeout`` seconds.

        A bounded watch (:mod:`runners.kubernetes.watch`) of the Jobs in the deployment's
        namespace with its label, started on first use; without a deployment connection in
        ``defaults`` there is nothing to watch and this only waits."""
        watch = self._deployment_watch()
        if watch is None:
            self._sleep_for(timeout)
            return False
        return watch.wait(timeout)

    def _sleep_for(self, seconds: float) -> None:
        threading.Event().wait(seconds)

    def _deployment_watch(self) -> JobWatch | None:
        with self._lock:
            if self._watch_tried:
                return self._watch
            self._watch_tried = True
        try:
            opts = KubernetesOptions.model_validate(self._defaults)
        except ValueError:
            return None
        cluster = self._connect(opts.config)
        watch = JobWatch(
            functools.partial(
                cluster.batch.list_namespaced_job,
                opts.namespace,
                label_selector=f"{DEPLOYMENT}={opts.deployment}",
            )
        )
        with self._lock:
            self._watch = watch
        return watch

    # -- cancel / stop

    def _suspend(self, cluster: _Cluster, job: Mapping[str, Any], annotation: str, value: str) -> None:
        """PATCH suspend plus the tombstone annotation, on the resourceVersion read (409: read again)."""
        meta = job.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace"))
        current: Mapping[str, Any] = job
        for _ in range(5):
            annotations = (current.get("metadata") or {}).get("annotations") or {}
            if annotations.get(taxonomy.CANCELLED) or annotations.get(taxonomy.STOPPED):
                return  # already stopping: the first word stands
            if taxonomy.classify(current, None, self._now()).status.terminal:
                return
            patch = {
                "metadata": {
                    "resourceVersion": (current.get("metadata") or {}).get("resourceVersion"),
                    "annotations": {annotation: value},
                },
                "spec": {"suspend": True},
            }
            try:
                self._call(cluster.batch.patch_namespaced_job, name, namespace, patch)
                return
            except RunnerError as exc:
                if _status_code(exc) == 404:
                    return
                if _status_code(exc) != 409:
                    raise
            current = cluster.plain(self._call(cluster.batch.read_namespaced_job, name, namespace))
        raise RunnerError(f"Job {name} kept changing while Squall stopped it; try again", runner=self.name)

    def cancel(self, handle: JobHandle) -> None:
        with self._lock:
            if handle.id in self._finished:
                return
        cluster = self._cluster_of(handle)
        name = str(handle.data.get("job") or job_name(handle.name))
        namespace = str(handle.data.get("namespace") or "default")
        try:
            found = self._call(cluster.batch.read_namespaced_job, name, namespace)
        except RunnerError as exc:
            if _status_code(exc) == 404:
                return  # gone: nothing runs (poll says how it ended)
            raise
        job = cluster.plain(found)
        if job["metadata"].get("uid") != handle.id:
            return
        self._suspend(cluster, job, taxonomy.CANCELLED, self._now().isoformat())

    # -- logs / cleanup

    def _status_of(self, handle: JobHandle) -> JobStatus | None:
        return self.poll([handle]).get(handle.name)

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        folder = handle.data.get("folder")
        if not isinstance(folder, str):
            raise JobNotFoundError(
                f"no Job of Squall's is known for {handle.name} ({handle.id})", runner=self.name
            )
        nonce = hashlib.sha256(f"{handle.name}\0{folder}".encode()).hexdigest()[:16]
        token = sentinel_token(handle.name, nonce)
        source = _S3Log(self, f"{folder}log/")
        return read_log(
            source,
            cursor,
            token,
            lambda: self._status_of(handle),
            now=self._now().timestamp(),
            grace=self._log_grace,
        )

    def cleanup(self, handle: JobHandle) -> None:
        status = self._status_of(handle)
        if status is None or not status.terminal:
            raise RunnerError(f"job {handle.name} is still running: cancel it first", runner=self.name)
        folder = handle.data.get("folder")
        if isinstance(folder, str) and status.failure is not Failure.LOST:
            doc = {
                "uid": handle.id,
                "state": status.state.value,
                "failure": status.failure.value if status.failure else None,
                "exit_code": status.exit_code,
                "reason": status.reason,
                "output_files": dict(status.output_files),
            }
            bucket, key = _where(f"{folder}final.json")
            self._call(self._s3().put_object, Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
            self._delete_inputs(folder)
        cluster = self._cluster_of(handle)
        name = str(handle.data.get("job") or job_name(handle.name))
        namespace = str(handle.data.get("namespace") or "default")
        from kubernetes import client

        try:
            found = cluster.plain(self._call(cluster.batch.read_namespaced_job, name, namespace))
            if found["metadata"].get("uid") != handle.id:
                return
            if ((found["metadata"].get("annotations") or {}).get(DELETE)) == "0":
                return
            options = client.V1DeleteOptions(
                propagation_policy="Background", preconditions=client.V1Preconditions(uid=handle.id)
            )
            self._call(cluster.batch.delete_namespaced_job, name, namespace, body=options)
        except RunnerError as exc:
            if _status_code(exc) not in (404, 409):
                raise

    def _delete_inputs(self, folder: str) -> None:
        bucket, prefix = _where(f"{folder}in/")
        page = self._call(self._s3().list_objects_v2, Bucket=bucket, Prefix=prefix)
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            self._call(self._s3().delete_objects, Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


class _S3Log:
    """One job's log objects in S3, read by byte ranges (a :class:`runners.gcs_folder.LogSource`)."""

    def __init__(self, runner: KubernetesRunner, prefix: str) -> None:
        self.runner, self.prefix = runner, prefix

    def read_stream(
        self, stream: str, offset: int, token: str, budget: int
    ) -> tuple[list[LogRecord], int, bool]:
        from runners.gcs_folder import parse_log_page

        bucket, key = _where(self.prefix + stream)
        s3 = self.runner._s3()

        def read() -> bytes:
            try:
                answer = s3.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + LOG_PAGE_BYTES - 1}"
                )
                return bytes(answer["Body"].read())
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code in ("NoSuchKey", "InvalidRange", "416"):
                    return b""
                raise

        return parse_log_page(self.runner._call(read), stream, offset, token, budget)


def _where(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _shortest(*limits: timedelta | None) -> timedelta | None:
    given = [t for t in limits if t is not None]
    return min(given) if given else None


def _lost(handle: JobHandle, reason: str) -> JobStatus:
    return JobStatus(JobState.LOST, Failure.LOST, reason=f"{handle.name}: {reason}")


def _api_client(connection: Connection) -> Any:
    """An ApiClient for ``connection``, urllib3's retries off (one retry policy: ours)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    if connection.master_url is not None:
        configuration.host = connection.master_url
        if connection.oauth_token:
            configuration.api_key = {"authorization": connection.oauth_token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        if connection.ca_cert_data:
            handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)  # noqa: SIM115
            handle.write(connection.ca_cert_data)
            handle.close()
            configuration.ssl_ca_cert = handle.name
        elif connection.ca_cert_file:
            configuration.ssl_ca_cert = connection.ca_cert_file
        configuration.verify_ssl = not connection.trust_certs
    elif connection.kubeconfig is not None:
        kube_config.load_kube_config(
            config_file=connection.kubeconfig, context=connection.context, client_configuration=configuration
        )
    else:
        kube_config.load_incluster_config(client_configuration=configuration)
    configuration.retries = False
    if configuration.host.startswith("http://") and configuration.api_key.get("authorization"):
        raise RunnerOptionsError(
            "kubernetes", ["taskRunner.config: a bearer token over plain http:// would travel in clear"]
        )
    return client.ApiClient(configuration)

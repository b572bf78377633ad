"""What every Google runner does the same way: clients per identity, retries, pacing, endpoints.

Google Batch and Cloud Run differ in their job API and nothing else here: both sign with the
same credentials (:mod:`runners.google_auth`), retry with the same classifier
(:mod:`runners.google_errors`, under the runner's own name), pace their API calls with a token
bucket, accept only the endpoints the deployment lists (:mod:`runners.endpoints`), and keep an
attempt's files in a folder of a GCS bucket (:mod:`runners.gcs_folder`). A subclass says how
to build its API client (:meth:`GoogleRunner._api`) and reads its options.

Constructor keywords (all optional: the deployment's ``SQUALL_RUNNERS`` entry): ``defaults``
(options under every task's ``taskRunner``: projectId, region, bucket...), ``endpoint`` and
``storage_endpoint`` (the deployment's API endpoints, e.g. an emulator), ``allowed_endpoints``
(more endpoints a task may name), ``anonymous`` (sign nothing: an emulator), ``credentials``
(replaces the credential chain), ``credentials_config`` (a credential configuration document,
e.g. workload identity federation from AWS: the deployment's identity without a key),
``policy`` and ``sleep`` (retry backoff), ``rate`` (API calls per second), ``now`` (wall clock),
``log_grace`` (seconds after the end that ``logs`` waits for a sentinel).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from msgspec.structs import replace

from runners import google_errors, retry
from runners.base import Failure, JobHandle, JobState, JobStatus
from runners.endpoints import allowed_endpoint, canonical_endpoint
from runners.gcs_folder import JobFolder
from runners.google_auth import CLOUD_PLATFORM, google_credentials
from runners.pacing import TokenBucket
from runners.wrapper import WrapperExit

__all__ = ["NO_CONTAINER", "Context", "GoogleRunner", "document", "run_limit"]

NO_CONTAINER = frozenset({125, 126, 127})
"""Exit codes of a container runtime that could not start the container (docker run's)."""


def document(message: Any) -> dict[str, Any]:
    """A proto-plus message as its JSON document (camelCase, enums by name, int64 as strings)."""
    from google.protobuf import json_format

    return dict(json_format.MessageToDict(type(message).pb(message)))


def run_limit(*limits: timedelta | None) -> timedelta | None:
    """The shortest of the limits given, in whole seconds (at least one), as the APIs take it."""
    given = [limit for limit in limits if limit is not None]
    return timedelta(seconds=max(1, int(min(given).total_seconds() + 0.999))) if given else None


class Context:
    """The clients of one (project, endpoints, identity): the runner's API and Cloud Storage."""

    def __init__(self, api: Any, storage: Any) -> None:
        self.api = api
        self.storage = storage


class GoogleRunner:
    """Base of the Google runners; see the module docstring."""

    name: ClassVar[str]

    def __init__(
        self,
        *,
        defaults: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
        storage_endpoint: str | None = None,
        allowed_endpoints: Sequence[str] = (),
        anonymous: bool = False,
        credentials: Any = None,
        credentials_config: Mapping[str, Any] | None = None,
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
        retry.register_classifier(google_errors.classify, runner=self.name)
        self._defaults = dict(defaults or {})
        self._endpoint = canonical_endpoint(endpoint) if endpoint else None
        self._storage_endpoint = canonical_endpoint(storage_endpoint) if storage_endpoint else None
        self._allowed = tuple(canonical_endpoint(url) for url in allowed_endpoints)
        self._anonymous = anonymous
        self._credentials = credentials
        self._credentials_config = dict(credentials_config) if credentials_config else None
        self._policy = policy
        self._sleep = sleep
        self._now = now
        self._log_grace = log_grace
        self._bucket = TokenBucket(rate, clock=clock, sleep=limiter_sleep)
        self._lock = threading.Lock()
        self._contexts: dict[tuple[Any, ...], Context] = {}
        self._finished: dict[str, tuple[str, JobStatus]] = {}  # job uid -> (Squall's name, final status)

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        return dict(self._defaults)

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        raise NotImplementedError

    def _api(self, credentials: Any, endpoint: str | None) -> Any:
        """The runner's own API client (REST transport, SDK retries never used: ``retry=None``)."""
        raise NotImplementedError

    # -- calls

    def _call(self, fn: Callable[..., Any], /, *args: Any, paced: bool = True, **kwargs: Any) -> Any:
        def once() -> Any:
            if paced:
                self._bucket.acquire()
            return fn(*args, **kwargs)

        what = f"{self.name} {getattr(fn, '__name__', 'call')}"
        return retry.call(once, policy=self._policy, sleep=self._sleep, runner=self.name, what=what)

    def _unpaced(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Cloud Storage calls: retried like the others, not paced (a separate API and quota)."""
        return self._call(fn, *args, paced=False, **kwargs)

    def _folder(self, ctx: Context, handle: JobHandle) -> JobFolder:
        data = handle.data
        return JobFolder(ctx.storage, str(data["bucket"]), str(data["staging"]), self._unpaced, self.name)

    def _remember(self, handle: JobHandle, status: JobStatus) -> JobStatus:
        if status.terminal:
            with self._lock:
                self._finished[handle.id] = (handle.name, status)
        return status

    def _known(self, handle: JobHandle) -> JobStatus | None:
        with self._lock:
            done = self._finished.get(handle.id)
        return None if done is None else done[1]

    def _get(self, method: Callable[..., Any], name: str) -> Any:
        """``method(name=name)``, or None when the API does not know it (404)."""
        from google.api_core import exceptions

        def get() -> Any:
            try:
                return method(name=name, retry=None, timeout=30)
            except exceptions.NotFound:
                return None

        return self._call(get)

    def _settle(self, ctx: Context, handle: JobHandle, status: JobStatus) -> JobStatus:
        """What only the attempt's folder can tell of a finished job: whether its container ran
        at all, what the wrapper said it failed at, and its outputs, delivered."""
        if status.state is JobState.CANCELLED:
            return status
        folder = self._folder(ctx, handle)
        if status.failure is Failure.USER and status.exit_code in NO_CONTAINER and not folder.logged():
            # The wrapper writes its log first thing; none at all means the container never ran it.
            return replace(
                status,
                failure=Failure.CONFIG,
                reason=f"the container did not start (exit code {status.exit_code}): its image could not be "
                "pulled or has no /bin/sh",
            )
        if status.failure is Failure.CONFIG and status.exit_code in (
            WrapperExit.NOT_FOUND,
            WrapperExit.STAGING,
        ):
            status = replace(status, reason=folder.wrapper_says() or status.reason)
        if not handle.data.get("out"):
            return status
        outputs, failed = folder.deliver_outputs(str(handle.data["out"]))
        status = replace(status, output_files=outputs)
        if failed and status.failure in (None, Failure.USER):
            shown = "; ".join(failed)
            return replace(
                status, state=JobState.FAILED, failure=Failure.CONFIG, reason=f"cannot upload {shown}"
            )
        return status

    def _clean(self, handle: JobHandle, delete_job: Callable[[Context], None]) -> None:
        """Cleanup: how the job ended kept in ``final.json`` (create-only: a cancel's tombstone
        stays), the staged inputs deleted (when there were some), then ``delete_job(ctx)``.

        The control plane cleans up in the container that saw the job end, so the status is
        usually known here and costs no poll.
        """
        if not handle.data.get("delete", True):
            return
        status = self._known(handle) or self.poll([handle]).get(handle.name)
        if status is None or not status.terminal:
            return
        ctx = self._handle_context(handle)
        folder = self._folder(ctx, handle)
        folder.write_final(handle.id, status, create_only=True)
        if handle.data.get("inputs", 1):
            folder.delete_inputs()
        from google.api_core import exceptions

        def delete() -> None:
            with contextlib.suppress(exceptions.NotFound):  # already gone
                delete_job(ctx)

        self._call(delete)

    # -- clients per identity

    def _check_endpoint(self, option: str, requested: str | None, default: str | None) -> str | None:
        if requested is None or (default is not None and canonical_endpoint(requested) == default):
            return default
        return allowed_endpoint(
            self.name,
            option,
            requested,
            allowed=self._allowed,
            default=self._defaults.get(option),
            what="Google credentials",
            setting="SQUALL_RUNNERS allowed_endpoints",
        )

    def _context(
        self,
        project: str,
        *,
        endpoint: str | None = None,
        storage_endpoint: str | None = None,
        key: str | None = None,
        impersonate: str | None = None,
        scopes: Sequence[str] = (),
    ) -> Context:
        api = self._check_endpoint("endpoint", endpoint, self._endpoint)
        gcs = self._check_endpoint("storageEndpoint", storage_endpoint, self._storage_endpoint)
        fingerprint = hashlib.sha256(key.encode()).hexdigest() if key else None
        cache_key = (project, api, gcs, fingerprint, impersonate, tuple(scopes))
        with self._lock:
            found = self._contexts.get(cache_key)
        if found is not None:
            return found
        if self._credentials is not None and key is None:
            credentials = self._credentials
        else:
            credentials, _ = google_credentials(
                self.name,
                key=key,
                impersonate=impersonate,
                scopes=scopes or (CLOUD_PLATFORM,),
                anonymous=self._anonymous,
                config=self._credentials_config,
            )
        import google.cloud.storage as storage

        options = {"api_endpoint": gcs} if gcs else None
        context = Context(
            self._api(credentials, api),
            storage.Client(project=project, credentials=credentials, client_options=options),
        )
        with self._lock:
            return self._contexts.setdefault(cache_key, context)

    def _spec_context(self, opts: Any) -> Context:
        """Clients for a submit: the task's own key, if it has one."""
        return self._context(
            opts.project_id,
            endpoint=opts.endpoint,
            storage_endpoint=opts.storage_endpoint,
            key=opts.service_account,
            impersonate=opts.impersonated_service_account,
            scopes=opts.scopes,
        )

    def _handle_context(self, handle: JobHandle) -> Context:
        """Polls, cancels and log reads sign with the deployment's identity (or the task's
        impersonated account): a task's own key is a secret that no handle stores."""
        data = handle.data
        return self._context(
            str(data["project"]),
            endpoint=data.get("endpoint"),
            storage_endpoint=data.get("storage_endpoint"),
            impersonate=data.get("impersonate"),
        )

    def _handle_data(self, opts: Any) -> dict[str, Any]:
        """What every handle of this runner carries about where its job and files are."""
        data: dict[str, Any] = {"project": opts.project_id, "region": opts.region, "bucket": opts.bucket}
        if opts.endpoint and canonical_endpoint(opts.endpoint) != self._endpoint:
            data["endpoint"] = canonical_endpoint(opts.endpoint)
        if opts.storage_endpoint and canonical_endpoint(opts.storage_endpoint) != self._storage_endpoint:
            data["storage_endpoint"] = canonical_endpoint(opts.storage_endpoint)
        if opts.impersonated_service_account:
            data["impersonate"] = opts.impersonated_service_account
        if opts.pricing is not None:
            data["pricing"] = opts.pricing.model_dump(by_alias=True)
        return data

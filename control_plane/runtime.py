"""The one place a runtime (settings, store, runners, service) is built, for every entry point.

Each Lambda container builds one (:func:`control_plane.handlers.container.runtime`), as does
``squall server``; ``squall run``, the other local commands and ``squall conformance`` build
theirs with :func:`open_local`, which is :func:`open_runtime` on :func:`local_settings`.
Nothing else constructs a :class:`~control_plane.service.service.Service` outside the tests.
The HTTP API (:class:`control_plane.api.app.Api`) and the handlers are given a runtime; none
of them builds one.

Settings come from the environment, the way Lambda passes them (Terraform sets them); a
bad value is reported with the variable's name instead of surfacing as a stack trace in
the first request::

    SQUALL_STORE            sqlite | dynamodb (default: dynamodb when SQUALL_TABLE is set)
    SQUALL_TABLE            DynamoDB table name
    SQUALL_DYNAMODB_ENDPOINT  endpoint URL (DynamoDB Local); AWS_ENDPOINT_URL_DYNAMODB works too
    SQUALL_BUCKET           S3 bucket for outputs too large for a DynamoDB item
    SQUALL_DB               SQLite file (sqlite store)
    SQUALL_DATA_DIR         local scratch (process-runner jobs; the storage by default): /tmp/squall
    SQUALL_STORAGE          the deployment storage's root URL, where task output files and API
                            uploads go and every container reads them: file:///dir,
                            s3://<bucket>[/<prefix>], gs://<bucket>[/<prefix>] or
                            az://<account>/<container>[/<prefix>] (default
                            file://<SQUALL_DATA_DIR>/storage); runners/storage/deployment.py
    SQUALL_STORAGE_READ     comma-separated URI prefixes a flow's inputFiles may also read
                            (default none): the control plane reads them with its own
                            credentials, so nothing outside the root is readable unless listed
    SQUALL_STORAGE_ENDPOINT the storage API's endpoint for the root's scheme (moto, MinIO,
                            fake-gcs-server; for az://, a template with {account}, e.g. Azurite's
                            http://127.0.0.1:10000/{account}); default: the cloud's own
    SQUALL_STORAGE_AZURE_KEY  the az:// account key (default: azure-identity's credential chain)
    SQUALL_AUTH             gateway | token | none (default gateway: API Gateway authorised it)
    SQUALL_API_TOKEN        the bearer token, when SQUALL_AUTH=token
    SQUALL_MAX_BODY_BYTES   largest request body accepted (default 1 MiB)
    SQUALL_MAX_RESPONSE_BYTES  largest response body sent (default 4 MiB: Lambda's 6 MB response
                            limit applies to the body escaped into its JSON envelope); a bigger
                            one is a 400 asking for smaller pages
    SQUALL_RECONCILE_AFTER  seconds without news before a running job is polled (default 300)
    SQUALL_SUBMIT_GRACE     seconds before a job left SUBMITTING is submitted again (default 120);
                            also how long a submit claim holds (one submitter per job name)
    SQUALL_SUBMIT_TIMEOUT   seconds transient backend errors may keep a job SUBMITTING, found or
                            submitted again under the same name by each tick, before its task
                            fails START_FAILED (default 900: many ticks past a throttling burst)
    SQUALL_LOST_AFTER       seconds a job its runner leaves out of every poll (no news) may stay
                            unheard of before the control plane ends it LOST (default 3600)
    SQUALL_SUBMIT_BUDGET    jobs one step submits itself; a wider step hands the rest to the tick
                            (default 100: an API call stays well under API Gateway's 30 s)
    SQUALL_TICK_SUBMITS     jobs one tick submits at most (default 500: ~25 s at AWS Batch's rate)
    SQUALL_FINISHED_TTL_DAYS  days a finished execution is kept in DynamoDB (default 30; 0: forever)
    SQUALL_RUNNERS          JSON object: runner name -> constructor options
    SQUALL_MAX_OUTPUTS_BYTES  largest outputs a task may report with ``::{"outputs":...}::`` lines,
                            one line or all of them merged (default 1 MiB, at least 1 KiB); over
                            it the task fails saying so (control_plane/service/capture.py)
    SQUALL_SECRETS          where secret('NAME') looks, in order: env (SECRET_<NAME>, base64),
                            file, secretsmanager, ssm (default: env, then file when set)
    SQUALL_SECRETS_FILE     a YAML map of name to value, mode 600 (`--secrets` of run/server)
    SQUALL_SECRETS_PREFIX   Secrets Manager secret / SSM parameter prefix (default squall/:
                            secret squall/NAME, parameter /squall/NAME); control_plane/secrets
    SQUALL_EXPRESSION_TIMEOUT     seconds one expression may take to render (default 2)
    SQUALL_EXPRESSION_MAX_OUTPUT  characters one expression, or any string in it, may hold
                            (default 4 MiB); both: control_plane/expressions/limits.py
    SQUALL_AWS_ENDPOINT_ALLOWLIST  comma-separated http(s) URLs a flow's taskRunner
                            `endpointOverride` may name (default none). The control plane signs
                            AWS requests with its own credentials, so a flow cannot choose the
                            endpoint alone: it may name one of these, or the one the deployment's
                            runner defaults set; anything else fails the task with the option's
                            name and the allowed values. Passed to the aws-batch runner as
                            `allowed_endpoints`.
    SQUALL_PUBSUB_AUDIENCE  the ``aud`` a Pub/Sub push's OIDC token must carry (the push
                            subscription's audience); with SQUALL_PUBSUB_SERVICE_ACCOUNT it turns
                            on ``POST /events/pubsub`` (control_plane/ingress)
    SQUALL_PUBSUB_SERVICE_ACCOUNT  the ``email`` of the service account the subscription pushes as
    SQUALL_PUBSUB_CERTS_URL Google's signing keys (JWKS; default
                            https://www.googleapis.com/oauth2/v3/certs)
    SQUALL_WEBHOOK_SECRETS  comma-separated, at most two: where the shared secrets of
                            ``POST /events/webhook/<key>`` live, each a Secrets Manager ARN (its
                            AWSCURRENT and AWSPREVIOUS values are both accepted) or a name looked
                            up like ``secret('NAME')`` (SQUALL_SECRETS); two for a rotation
    SQUALL_UI_OIDC          JSON ``{"issuer", "client_id", "scopes", "token", "origins"}``: the
                            web UI logs in with OIDC (code flow + PKCE) against that IdP, for
                            API Gateway's JWT authorizer (control_plane/ui/oidc.py); unset: the
                            UI asks for a bearer token on a 401 (or nothing with --no-auth)

The DynamoDB store registers running executions in its active index lazily (the tick's
watermark visit, ADR 0005 point 5) after ``min(SQUALL_SUBMIT_GRACE, SQUALL_RECONCILE_AFTER)``
seconds: the tick does nothing with a younger job, so a task that ends sooner costs no index
write. No variable of its own, so the delay can never outgrow what the tick needs. When it is
0 (``squall server`` polls every job on every tick) the store registers them at once.

This module keeps no runtime of its own: a Lambda container's, built once and reused warm,
is kept by :mod:`control_plane.handlers.container`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from control_plane.errors import SquallError
from control_plane.store.base import StateStore
from control_plane.ui.oidc import UiOidc

if TYPE_CHECKING:
    from control_plane.secrets import SecretChain
    from control_plane.service.capture import LogLimits
    from control_plane.service.clock import Clock
    from control_plane.service.service import Service
    from control_plane.service.storage import TaskStorage
    from runners.base import Runner

__all__ = [
    "Runtime",
    "Settings",
    "SettingsError",
    "configure_expressions",
    "load_settings",
    "local_settings",
    "log_limits",
    "open_local",
    "open_runtime",
    "secret_chain",
    "task_storage",
    "visit_after",
]

ENV_PREFIX = "SQUALL_"


class SettingsError(SquallError):
    """The environment does not describe a usable control plane; the message names the variable."""


class Settings(BaseModel):
    # Built at import, not deferred: every first request reads the settings, so deferring
    # would only move the cost (and pydantic's plugin loader) out of the import time measured.
    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Literal["sqlite", "dynamodb"] = "sqlite"
    table: str | None = None
    dynamodb_endpoint: str | None = None
    bucket: str | None = None
    region: str | None = None
    db: str | None = None
    data_dir: str = "/tmp/squall"
    storage: str | None = None
    storage_read: tuple[str, ...] = ()
    storage_endpoint: str | None = None
    storage_azure_key: SecretStr | None = None
    auth: Literal["gateway", "token", "none"] = "gateway"
    api_token: SecretStr | None = None
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    max_response_bytes: int = Field(default=4 << 20, ge=64 << 10)
    reconcile_after: float = Field(default=300.0, ge=0)
    submit_grace: float = Field(default=120.0, ge=0)
    submit_timeout: float = Field(default=900.0, ge=0)
    lost_after: float = Field(default=3600.0, gt=0)
    submit_budget: int = Field(default=100, ge=1)
    tick_submits: int = Field(default=500, ge=1)
    fanout_chunk: int = Field(default=40, ge=1)  # lanes one plan starts: ADR 0015
    submit_seconds: float = Field(default=0.25, gt=0)  # a step stops submitting after this: ADR 0015
    tick_seconds: float = Field(default=6.0, gt=0)  # a tick's budget for timers and submits (ADR 0015)
    finished_ttl_days: int = Field(default=30, ge=0)
    runners: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_outputs_bytes: int = Field(default=1 << 20, ge=1024)  # capture.DEFAULT_MAX_OUTPUTS_BYTES
    aws_endpoint_allowlist: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    secrets_file: str | None = None
    secrets_prefix: str = "squall/"
    expression_timeout: float = Field(default=2.0, gt=0, le=60)
    expression_max_output: int = Field(default=4 << 20, ge=1024)
    pubsub_audience: str | None = None
    pubsub_service_account: str | None = None
    pubsub_certs_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    webhook_secrets: tuple[str, ...] = Field(default=(), max_length=2)
    ui_oidc: UiOidc | None = None

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_backends(cls, raw: Any) -> Any:
        from control_plane.secrets import BACKENDS

        kinds = [k.strip() for k in raw.split(",") if k.strip()] if isinstance(raw, str) else raw
        for kind in kinds if isinstance(kinds, list | tuple) else ():
            if kind not in BACKENDS:
                raise ValueError(f"unknown secret backend {kind!r} (known: {', '.join(BACKENDS)})")
        return kinds

    @field_validator("storage")
    @classmethod
    def _storage_root(cls, url: str | None) -> str | None:
        from runners.storage import StorageError, check_root

        if url is not None:
            try:
                check_root(url)
            except StorageError as exc:
                raise ValueError(str(exc)) from None
        return url

    @field_validator("storage_read", mode="before")
    @classmethod
    def _storage_read(cls, raw: Any) -> Any:
        from runners.storage import StorageError, check_root

        urls = [u.strip() for u in raw.split(",") if u.strip()] if isinstance(raw, str) else raw
        for url in urls if isinstance(urls, list | tuple) else ():
            try:
                check_root(str(url))
            except StorageError as exc:
                raise ValueError(str(exc)) from None
        return urls

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _secret_sources(cls, raw: Any) -> Any:
        return [part.strip() for part in raw.split(",") if part.strip()] if isinstance(raw, str) else raw

    @field_validator("pubsub_certs_url")
    @classmethod
    def _certs_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    @field_validator("aws_endpoint_allowlist", mode="before")
    @classmethod
    def _endpoint_list(cls, raw: Any) -> Any:
        urls = [u.strip() for u in raw.split(",") if u.strip()] if isinstance(raw, str) else raw
        for url in urls if isinstance(urls, list | tuple) else ():
            if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``SQUALL_*`` variables, then ``overrides`` (the server's command line)."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            raw[name] = value
    if "runners" in raw:
        try:
            raw["runners"] = json.loads(raw["runners"])
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{ENV_PREFIX}RUNNERS is not valid JSON: {exc}") from None
    if "dynamodb_endpoint" not in raw and env.get("AWS_ENDPOINT_URL_DYNAMODB"):
        raw["dynamodb_endpoint"] = env["AWS_ENDPOINT_URL_DYNAMODB"]
    raw.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
    if "store" not in raw and raw.get("table"):
        raw["store"] = "dynamodb"
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("bad control-plane settings: " + "; ".join(problems)) from None
    if settings.store == "dynamodb" and not settings.table:
        raise SettingsError(f"{ENV_PREFIX}TABLE is required with {ENV_PREFIX}STORE=dynamodb")
    if (settings.pubsub_audience is None) != (settings.pubsub_service_account is None):
        raise SettingsError(
            f"{ENV_PREFIX}PUBSUB_AUDIENCE and {ENV_PREFIX}PUBSUB_SERVICE_ACCOUNT go together:"
            " a push is accepted only from that account, for that audience"
        )
    if settings.ui_oidc is not None and settings.auth != "gateway":
        raise SettingsError(
            f"{ENV_PREFIX}UI_OIDC needs {ENV_PREFIX}AUTH=gateway: the UI's OIDC tokens are checked by"
            " API Gateway's JWT authorizer, which this server does not run"
        )
    if settings.auth == "token" and settings.api_token is None:
        raise SettingsError(f"{ENV_PREFIX}API_TOKEN is required with {ENV_PREFIX}AUTH=token")
    return settings


class Runtime:
    """One container's settings, store and service.

    The service, and with it the engine and the flow language, is built on first use: an API
    read (an execution, its logs, a flow's source) needs only the store, so its cold start
    does not import them (ADR 0006). ``tick``, ``events`` and ``schedule``, any of whose
    requests may move an execution, import the service module at init themselves: deferring
    it there would only move the import into the first request.
    """

    __slots__ = ("_build", "_lock", "_service", "secrets", "settings", "store")

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        service: Service | None = None,
        *,
        build: Callable[[], Service] | None = None,
        secrets: SecretChain | None = None,
    ) -> None:
        if service is None and build is None:
            raise TypeError("Runtime needs a service or a function that builds one")
        self.settings = settings
        self.store = store
        # The deployment's secret() chain, the service's too: the event ingress reads its
        # webhook secrets through it, sharing its cache. None when built without one.
        self.secrets = secrets
        self._service = service
        self._build = build
        self._lock = threading.Lock()  # squall server serves requests on several threads

    @property
    def service(self) -> Service:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    assert self._build is not None
                    self._service = self._build()
        return self._service

    @property
    def data_dir(self) -> Path:
        """Local scratch: ``storage/`` (the object store) and ``jobs/`` (the process runner's)."""
        return Path(self.settings.data_dir)

    def flush(self) -> None:
        """Write the job handles the service holds; nothing to do when no request built it."""
        if self._service is not None:
            self._service.flush()

    def close(self) -> None:
        if self._service is not None and self._service.driver.templates is not None:
            self._service.driver.templates.save()  # what this process compiled, for the next ones
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def configure_expressions(settings: Settings) -> None:
    """Apply the expression limits (process-wide: they bound resources, not what a flow means)."""
    from control_plane.expressions import limits

    limits.configure(
        limits.Limits(
            timeout=settings.expression_timeout,
            max_output=settings.expression_max_output,
            max_string=settings.expression_max_output,
        )
    )


def secret_chain(settings: Settings) -> SecretChain:
    """The ``secret()`` backends the settings name; a bad secrets file is a SettingsError naming it."""
    from control_plane.secrets import SecretError, open_chain

    try:
        return open_chain(
            settings.secrets,
            file=settings.secrets_file,
            prefix=settings.secrets_prefix,
            region=settings.region,
        )
    except SecretError as exc:
        raise SettingsError(f"{ENV_PREFIX}SECRETS / {ENV_PREFIX}SECRETS_FILE: {exc}") from None


def log_limits(settings: Settings) -> LogLimits:
    """What of a job's log and outputs the service keeps: ``SQUALL_MAX_OUTPUTS_BYTES``, defaults otherwise."""
    from control_plane.service.capture import LogLimits

    return LogLimits(max_outputs_bytes=settings.max_outputs_bytes)


def task_storage(settings: Settings) -> TaskStorage:
    """The deployment storage the settings name; a bad one is a SettingsError naming the variable.

    The backend of the root's scheme gets ``SQUALL_STORAGE_ENDPOINT`` (and the region, the
    Azure key); no cloud SDK is imported until the first read or write.
    """
    from control_plane.service.storage import StorageError, open_task_storage
    from runners.storage.base import uri_of

    url = settings.storage or uri_of(Path(settings.data_dir) / "storage", directory=True)
    endpoint = settings.storage_endpoint
    azure: dict[str, Any] = {} if endpoint is None else {"endpoint": endpoint}
    if settings.storage_azure_key is not None:
        account = url.removeprefix("az://").partition("/")[0]
        key = settings.storage_azure_key.get_secret_value()
        azure["credential"] = {"account_name": account, "account_key": key}
    options: dict[str, dict[str, Any]] = {
        "s3": {"endpoint_url": endpoint, "region": settings.region},
        "gs": {} if endpoint is None else {"endpoint": endpoint},
        "az": azure,
    }
    try:
        return open_task_storage(url, read=settings.storage_read, options=options)
    except StorageError as exc:
        raise SettingsError(f"{ENV_PREFIX}STORAGE / {ENV_PREFIX}STORAGE_READ: {exc}") from None


def visit_after(settings: Settings) -> timedelta | None:
    """The DynamoDB store's ``visit_after``: the youngest age at which the tick acts on a job.

    A SUBMITTING job is recovered after ``submit_grace`` and a silent one polled after
    ``reconcile_after``; before the smaller of the two the tick needs no job, so that is how
    long a new execution may stay out of the active index. 0 (or less): None, eager.
    """
    delay = min(settings.submit_grace, settings.reconcile_after)
    return timedelta(seconds=delay) if delay > 0 else None


def _open_store(settings: Settings) -> StateStore:
    if settings.store == "dynamodb":
        from control_plane.store.dynamodb import DynamoDBStore  # boto3: only when asked for

        assert settings.table is not None
        ttl = timedelta(days=settings.finished_ttl_days) if settings.finished_ttl_days else None
        return DynamoDBStore(
            settings.table,
            endpoint_url=settings.dynamodb_endpoint,
            region=settings.region,
            bucket=settings.bucket,
            finished_ttl=ttl,
            visit_after=visit_after(settings),
        )
    from control_plane.store.sqlite import SqliteStore, default_db_path

    return SqliteStore(Path(settings.db) if settings.db else default_db_path())


def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: StateStore | None = None,
    runners: Mapping[str, Runner] | None = None,
    storage: TaskStorage | None = None,
    **service_options: Any,
) -> Runtime:
    """Wire store, runners and service; ``store``/``runners``/``storage`` replace the configured ones (tests).

    The store is opened now; the service and the runner registry when first asked for.
    ``service_options`` are :class:`~control_plane.service.service.Service` keywords that
    replace what the settings give (``submit_budget``, ``poll_interval``, ``on_logs``, ...).
    """
    chain = secret_chain(settings)  # a bad secrets file stops the start, not the first task
    opened = store or _open_store(settings)

    def build() -> Service:
        from control_plane.service.runners import RunnerRegistry
        from control_plane.service.service import Service

        configure_expressions(settings)
        data = Path(settings.data_dir)
        config: dict[str, Mapping[str, Any]] = dict(settings.runners)
        config["process"] = {"base_dir": data / "jobs", **config.get("process", {})}  # keep_jobs...
        if settings.aws_endpoint_allowlist:
            batch = dict(config.get("aws-batch", {}))
            allowed = [*batch.get("allowed_endpoints", ()), *settings.aws_endpoint_allowlist]
            config["aws-batch"] = {**batch, "allowed_endpoints": allowed}
        options: dict[str, Any] = {
            "submit_budget": settings.submit_budget,
            "lane_budget": settings.fanout_chunk,
            "submit_within": settings.submit_seconds,
            # A submit claim lasts the tick's grace: by the time the tick recovers a job, the
            # claim of the process that wrote it has expired too.
            "submit_lease": timedelta(seconds=settings.submit_grace),
            "submit_timeout": timedelta(seconds=settings.submit_timeout),
            "lost_after": timedelta(seconds=settings.lost_after),
            "log_limits": log_limits(settings),
            "secrets": chain,
        }
        options.update(service_options)
        return Service(
            opened,
            runners=RunnerRegistry(config, instances=runners),
            storage=storage if storage is not None else task_storage(settings),  # checked with the settings
            clock=clock,
            **options,
        )

    return Runtime(settings, opened, build=build, secrets=chain)


def local_settings(
    db: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Settings of a runtime on one machine: SQLite at ``db``, the rest from ``SQUALL_*``.

    ``db`` defaults to ``$SQUALL_DB``, else a file under the user's data directory. Task
    output files (``storage/``) and the process runner's job directories (``jobs/``) live
    beside it unless ``$SQUALL_DATA_DIR`` says otherwise, the same for ``squall run`` and
    ``squall server``, so either finds what the other left on that database.
    """
    from control_plane.store.sqlite import default_db_path

    env = os.environ if env is None else env
    path = Path(db if db is not None else env.get(ENV_PREFIX + "DB") or default_db_path())
    path = path.expanduser().resolve()
    data_dir = env.get(ENV_PREFIX + "DATA_DIR") or str(path.parent)
    return load_settings(env, **{"data_dir": data_dir, **overrides, "store": "sqlite", "db": str(path)})


def open_local(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: StateStore | None = None,
    runners: Mapping[str, Runner] | None = None,
    **service_options: Any,
) -> Runtime:
    """:func:`open_runtime` for a process that drives its executions to the end (``Service.run``).

    ``settings`` come from :func:`local_settings`. The runtime of ``squall run``, the
    ``executions``/``flows`` commands and ``squall conformance``. It differs from a Lambda's in
    one option: no tick runs beside it, so a step submits every job it asks for itself (no
    ``submit_budget``).
    """
    from control_plane.expressions.code_cache import TemplateCodeCache

    use_local_caches(settings)
    options: dict[str, Any] = {
        "submit_budget": None,
        "lane_budget": None,
        "submit_within": None,
        # compiled templates shared by the processes of this machine (like .pyc files)
        "templates": TemplateCodeCache(Path(settings.data_dir) / "cache" / "templates"),
        **service_options,
    }
    return open_runtime(settings, clock=clock, store=store, runners=runners, **options)


def use_local_caches(settings: Settings) -> None:
    """Validated flows are kept under ``<data_dir>/cache/flows`` for the next processes of this
    machine (``flows/flow_cache.py``); ``squall run`` calls this before it first reads the flow."""
    from control_plane.flows.flow_cache import FlowCache
    from control_plane.flows.loader import use_flow_cache

    use_flow_cache(FlowCache(Path(settings.data_dir) / "cache" / "flows"))

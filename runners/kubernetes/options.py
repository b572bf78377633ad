"""``taskRunner`` options of ``type: squall.runner.Kubernetes`` (and Kestra's Kubernetes runner names).

Property names are Kestra's where Kestra has one (``namespace``, ``config``, ``serviceAccountName``,
``resources``, ``nodeSelector``, ``tolerations``, ``pullPolicy``, ``pullSecrets``, ``labels``,
``annotations``, ``podSpec``, ``containerSpec``, ``delete``, ``resume``,
``waitForLogInterval``); the rest are Squall's and say so in their description.

Every option Squall accepts is honoured, or refused here with a message naming it: a merge
into ``podSpec``/``containerSpec`` may not replace what the runner owns (the containers, the
restart policy, the staging volume), because Squall's exactly-once and file contract live there.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runners.base import RunnerOptions

__all__ = ["Connection", "KubernetesOptions", "Price", "Resources"]

_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_MEMORY_UNITS = {
    None: 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
RUNNER_OWNED_POD_FIELDS = frozenset({"containers", "initContainers", "restartPolicy", "volumes"})
"""``podSpec`` keys the runner writes itself (its containers, ``Never``, the staging volume)."""
RUNNER_OWNED_CONTAINER_FIELDS = frozenset({"name", "image", "command", "args", "volumeMounts"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Connection(_Strict):
    """Kestra's ``config``: how to reach the API server. One of three ways:

    - ``inCluster: true`` (the default when nothing else is given): the pod's service account
      token and CA, as the control plane sees them when it runs in the cluster;
    - ``kubeconfig`` (a path) and optionally ``context``;
    - ``masterUrl`` plus ``oauthToken`` (from a secret: ``{{ secret('K8S_TOKEN') }}``) and
      ``caCertData`` (PEM) or ``caCertFile``. A token over plain ``http://`` is refused: it
      would travel in clear.
    """

    in_cluster: bool = Field(default=False, alias="inCluster")
    kubeconfig: str | None = None
    context: str | None = None
    master_url: str | None = Field(default=None, alias="masterUrl")
    oauth_token: str | None = Field(default=None, alias="oauthToken", repr=False)
    ca_cert_data: str | None = Field(default=None, alias="caCertData", repr=False)
    ca_cert_file: str | None = Field(default=None, alias="caCertFile")
    trust_certs: bool = Field(
        default=False, alias="trustCerts", description="Kestra's: skip TLS verification (tests only)."
    )

    @model_validator(mode="after")
    def _one_way(self) -> Connection:
        ways = [self.in_cluster, self.kubeconfig is not None, self.master_url is not None]
        if sum(ways) > 1:
            raise ValueError("give one of inCluster, kubeconfig or masterUrl")
        if self.context is not None and self.kubeconfig is None:
            raise ValueError("context needs kubeconfig")
        if self.master_url is None and (self.oauth_token or self.ca_cert_data or self.ca_cert_file):
            raise ValueError("oauthToken, caCertData and caCertFile go with masterUrl")
        if self.master_url is not None:
            if not re.match(r"^https?://[^/\s]+", self.master_url):
                raise ValueError("masterUrl is an http(s):// URL")
            if self.oauth_token and self.master_url.startswith("http://"):
                raise ValueError("a bearer token over plain http:// would travel in clear: use https://")
        return self

    @property
    def identity(self) -> str:
        """What tells one cluster connection from another (recorded in handles; no secret in it)."""
        if self.master_url is not None:
            return f"url:{self.master_url}"
        if self.kubeconfig is not None:
            return f"kubeconfig:{self.kubeconfig}#{self.context or ''}"
        return "in-cluster"


class _Quantities(_Strict):
    cpu: str | None = None
    memory: str | None = None

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is not None and not _CPU.match(str(value)):
            raise ValueError('cpu is a number of cores ("1", "0.5") or millicores ("500m")')
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(str(value)):
            raise ValueError('memory is a Kubernetes quantity ("512Mi", "2Gi", "1G")')
        return value


class Resources(_Strict):
    """Kestra's ``resources: {request: {cpu, memory}, limit: {cpu, memory}}``, as the container's."""

    request: _Quantities = Field(default_factory=_Quantities)
    limit: _Quantities = Field(default_factory=_Quantities)

    @model_validator(mode="before")
    @classmethod
    def _strings(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: {kk: str(vv) for kk, vv in dict(v or {}).items()} for k, v in raw.items()}
        return raw

    def as_k8s(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for key, quantities in (("requests", self.request), ("limits", self.limit)):
            given = {k: v for k, v in (("cpu", quantities.cpu), ("memory", quantities.memory)) if v}
            if given:
                out[key] = given
        return out

    @property
    def vcpus(self) -> float:
        """Requested cores (the limit when no request is given; 0 when neither)."""
        cpu = self.request.cpu or self.limit.cpu
        if not cpu:
            return 0.0
        return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)

    @property
    def gib(self) -> float:
        memory = self.request.memory or self.limit.memory
        if not memory:
            return 0.0
        found = _MEMORY.match(memory)
        assert found is not None
        return float(found.group(1)) * _MEMORY_UNITS[found.group(3)] / 1024**3


class Price(_Strict):
    """Squall extra: USD per hour of one requested core and one requested GiB."""

    vcpu_hour: float = Field(default=0.0, alias="vcpuHour", ge=0)
    gib_hour: float = Field(default=0.0, alias="gibHour", ge=0)


class KubernetesOptions(RunnerOptions):
    """Everything a task can say about how it runs as a Kubernetes Job."""

    namespace: str = Field(default="default", description="Kestra's: the namespace of the Job.")
    config: Connection = Field(default_factory=Connection)
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[dict[str, Any], ...] = ()
    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(default=None, alias="pullPolicy")
    pull_secrets: tuple[dict[str, str], ...] = Field(default=(), alias="pullSecrets")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    pod_spec: dict[str, Any] = Field(default_factory=dict, alias="podSpec")
    container_spec: dict[str, Any] = Field(default_factory=dict, alias="containerSpec")

    ttl_seconds_after_finished: int | None = Field(
        default=None,
        alias="ttlSecondsAfterFinished",
        gt=0,
        description="Squall extra: Kubernetes deletes the finished Job after this many seconds. It must "
        "outlast the control plane's reconcile horizon (checked by the runner), or a Job would vanish "
        "before its end was seen and be LOST.",
    )
    tools_image: str | None = Field(
        default=None,
        alias="toolsImage",
        description="Squall extra: the image of the init and sidecar containers that move files and logs "
        "between the pod and the object store (Squall's own image; the deployment sets it).",
    )
    staging_uri: str | None = Field(
        default=None,
        alias="stagingUri",
        description="Squall extra: the object-store folder (s3://bucket/prefix) the job's files and log "
        "go through; required, usually set once for the deployment.",
    )
    deployment: str = Field(
        default="squall",
        pattern=r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$",
        description="Squall extra: a label on every Job; one list call covers a deployment's Jobs.",
    )
    pending_timeout: timedelta = Field(
        default=timedelta(minutes=15),
        alias="pendingTimeout",
        gt=timedelta(0),
        description="Squall extra: how long a pod may stay unschedulable (UNSCHEDULABLE) or the Job stay "
        "without a pod for quota (QUOTA) before the runner stops it.",
    )
    config_error_timeout: timedelta = Field(
        default=timedelta(minutes=2),
        alias="configErrorTimeout",
        gt=timedelta(0),
        description="Squall extra: how long an image pull or container config error may last before the "
        "runner stops the Job as CONFIG (Kubernetes keeps retrying forever).",
    )
    timeout: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="Squall extra: the attempt's timeout (the task's `timeout` too; the shorter wins).",
    )
    pricing: Price | None = None
    delete: bool = Field(default=True, description="Kestra's: delete the Job (and staged inputs) at the end.")
    resume: bool = Field(default=True, description="Kestra's: reattach to the attempt's Job. Always on.")
    wait_for_log_interval: timedelta | None = Field(
        default=None,
        alias="waitForLogInterval",
        description="Kestra's wait for late logs. Squall reads the log from the object store until the "
        "wrapper's end sentinel, so there is nothing to wait for.",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError("a namespace is a DNS-1123 label (lowercase letters, digits, '-')")
        return value

    @field_validator("resume")
    @classmethod
    def _resume(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "Squall always reattaches to the attempt's Job so that it runs once; false cannot be honoured"
            )
        return value

    @field_validator("staging_uri")
    @classmethod
    def _staging(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", value):
            raise ValueError("an s3://bucket/prefix URI (the object stores this runner stages through: s3)")
        return value.rstrip("/") + "/"

    @field_validator("pod_spec")
    @classmethod
    def _pod_spec(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(RUNNER_OWNED_POD_FIELDS & set(value))
        if owned:
            raise ValueError(f"{', '.join(owned)} belong to the runner (its containers and staging volume)")
        return value

    @field_validator("container_spec")
    @classmethod
    def _container_spec(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(RUNNER_OWNED_CONTAINER_FIELDS & set(value))
        if owned:
            raise ValueError(f"{', '.join(owned)} belong to the runner (the task sets the image and command)")
        env = value.get("env")
        if env is not None and not (
            isinstance(env, list) and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in env)
        ):
            raise ValueError("env must be a list of {name, value} or {name, valueFrom} (Kubernetes' EnvVar)")
        return value

    @field_validator("pull_secrets", mode="before")
    @classmethod
    def _pull_secrets(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple({"name": v} if isinstance(v, str) else v for v in value)
        return value

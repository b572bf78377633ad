"""``taskRunner`` options of ``type: squall.runner.gcp.CloudRun`` (and Kestra's Cloud Run runner names).

Property names are Kestra's where Kestra has one (``projectId``, ``region``, ``serviceAccount``
(the JSON key of the caller, as in Kestra's GCP plugins), ``impersonatedServiceAccount``,
``scopes``, ``vpcAccessConnector``, ``vpcEgress``, ``network``, ``subnetwork``, ``resources``,
``bucket``, ``maxRetries``, ``waitUntilCompletion``, ``completionCheckInterval``,
``waitForLogInterval``, ``syncWorkingDirectory``, ``delete``, ``resume``); the rest are
Squall's and say so.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runners.base import RunnerOptions
from runners.gcs_folder import always_reattach, bucket_name, staging_prefix
from runners.google_auth import CLOUD_PLATFORM

__all__ = ["CloudRunOptions", "Price", "Resources"]

_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^\d+(Mi|Gi)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Resources(_Strict):
    """The container's limits, in Cloud Run's units: ``cpu`` "1", "2", "4", "8" (or "1000m"),
    ``memory`` "512Mi", "2Gi"... Kestra's ``resources: {request: {cpu, memory}}`` is accepted."""

    cpu: str = "1"
    memory: str = "512Mi"

    @model_validator(mode="before")
    @classmethod
    def _request(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and ("request" in raw or "limit" in raw):
            return {str(k): str(v) for k, v in dict(raw.get("limit") or raw.get("request") or {}).items()}
        return raw

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        if not _CPU.match(value):
            raise ValueError('cpu is a number of vCPUs ("1", "2") or millicores ("1000m")')
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError('memory is a size in Mi or Gi ("512Mi", "2Gi")')
        return value

    @property
    def vcpus(self) -> float:
        return float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    @property
    def gib(self) -> float:
        number = float(self.memory[:-2])
        return number if self.memory.endswith("Gi") else number / 1024


class Price(_Strict):
    """Squall extra: USD per hour of one vCPU and one GiB (Cloud Run jobs bill per second of both)."""

    vcpu_hour: float = Field(default=0.0, alias="vcpuHour", ge=0)
    gib_hour: float = Field(default=0.0, alias="gibHour", ge=0)


class CloudRunOptions(RunnerOptions):
    """Everything a task can say about how it runs as a Cloud Run job."""

    project_id: str = Field(alias="projectId", min_length=1)
    region: str = Field(min_length=1)
    service_account: str | None = Field(
        default=None,
        alias="serviceAccount",
        description="Kestra's: the JSON key of the account that calls the API.",
    )
    impersonated_service_account: str | None = Field(default=None, alias="impersonatedServiceAccount")
    scopes: tuple[str, ...] = (CLOUD_PLATFORM,)
    endpoint: str | None = Field(
        default=None, description="Squall extra: the API endpoint; deployment-listed only."
    )
    storage_endpoint: str | None = Field(default=None, alias="storageEndpoint", description="Squall extra.")

    resources: Resources = Field(default_factory=Resources)
    vpc_access_connector: str | None = Field(default=None, alias="vpcAccessConnector")
    vpc_egress: Literal["ALL_TRAFFIC", "PRIVATE_RANGES_ONLY"] | None = Field(default=None, alias="vpcEgress")
    network: str | None = Field(
        default=None,
        min_length=1,
        description="Kestra's: direct VPC egress, the VPC network (a name or "
        "projects/<p>/global/networks/<n>).",
    )
    subnetwork: str | None = Field(
        default=None,
        min_length=1,
        description="Kestra's: direct VPC egress, the subnetwork (default: the network's name).",
    )
    job_service_account: str | None = Field(
        default=None, alias="jobServiceAccount", description="Squall extra: the account the job runs as."
    )
    execution_environment: Literal["GEN2"] = Field(
        default="GEN2",
        alias="executionEnvironment",
        description="Squall extra. GEN2 only: Cloud Storage volumes, which carry the job's files and log, "
        "need the second generation environment.",
    )
    max_retries: int = Field(
        default=0,
        alias="maxRetries",
        ge=0,
        le=10,
        description="Kestra's (its default is 3): Cloud Run's own retries of the task. Default 0: Squall "
        "retries, and tells the platform's failures from the command's.",
    )
    timeout: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="Squall extra: the task attempt's timeout in Cloud Run (the task's `timeout` too; the "
        "shorter wins).",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Squall extra: more labels on the job.")

    bucket: str = Field(
        min_length=3,
        description="Kestra's: the bucket the job's files and log go through (mounted into the job); "
        "required.",
    )
    staging_prefix: str = Field(default="squall", alias="stagingPrefix", description="Squall extra.")
    deployment: str = Field(default="squall", pattern=r"^[a-z0-9_-]{1,63}$", description="Squall extra.")
    pricing: Price | None = None

    wait_until_completion: timedelta | None = Field(
        default=None,
        alias="waitUntilCompletion",
        gt=timedelta(0),
        description="Kestra's: with no task `timeout` and no `timeout` here, the attempt's limit in Cloud "
        "Run. Squall never blocks waiting for a job, so the waiting itself has no meaning here; "
        "Kestra's 1-hour default is not applied.",
    )
    completion_check_interval: timedelta | None = Field(
        default=None,
        alias="completionCheckInterval",
        description="Kestra's polling period. Squall polls all executions of a region in one list call a "
        "page per tick, so there is no per-job polling to tune.",
    )
    sync_working_directory: Literal[False] = Field(
        default=False,
        alias="syncWorkingDirectory",
        description="Kestra's copy of the whole working directory back. Not supported: Squall returns "
        "the files `outputFiles` names and the output directory; name the files there.",
    )
    wait_for_log_interval: timedelta | None = Field(
        default=None,
        alias="waitForLogInterval",
        description="Kestra's wait for late logs. Squall reads the log from the bucket until the wrapper's "
        "end sentinel, so there is nothing to wait for.",
    )
    delete: bool = Field(default=True, description="Kestra's: delete the job and staged inputs at the end.")
    resume: bool = Field(default=True, description="Kestra's: reattach to the attempt's job. Always on.")

    _resume = field_validator("resume")(classmethod(lambda cls, v: always_reattach(v)))

    @model_validator(mode="after")
    def _direct_vpc(self) -> CloudRunOptions:
        if self.vpc_access_connector and (self.network or self.subnetwork):
            raise ValueError(
                "vpcAccessConnector and network/subnetwork are two ways to reach a VPC: give one"
            )
        return self

    _bucket = field_validator("bucket")(classmethod(lambda cls, v: bucket_name(v)))
    _prefix = field_validator("staging_prefix")(classmethod(lambda cls, v: staging_prefix(v)))

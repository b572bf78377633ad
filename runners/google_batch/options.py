"""``taskRunner`` options of ``type: squall.runner.gcp.Batch`` (and Kestra's Google Batch runner names).

Property names are Kestra's where Kestra has one (``projectId``, ``region``,
``serviceAccount``, ``impersonatedServiceAccount``, ``scopes``, ``machineType``,
``computeResource``, ``reservation``, ``entryPoint``, ``networkInterfaces``, ``bucket``,
``waitUntilCompletion``, ``completionCheckInterval``, ``waitForLogInterval``, ``delete``,
``resume``), so a Kestra flow validates unchanged; everything else is a Squall extra and
says so in its description. Kestra's ``serviceAccount`` is the JSON key of the account that
calls the API (usually ``{{ secret('GCP_KEY') }}``); the account the job's VMs run as is
Squall's ``jobServiceAccount``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runners.base import RunnerOptions
from runners.gcs_folder import always_reattach, bucket_name, staging_prefix
from runners.google_auth import CLOUD_PLATFORM

__all__ = ["Accelerator", "ComputeResource", "GoogleBatchOptions", "NetworkInterface", "Price", "Pricing"]

DEFAULT_MACHINE_TYPE = "e2-medium"
"""Kestra's default: 2 shared vCPUs, 4 GiB."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MIB = {"": 1.0, "B": 1 / 2**20, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}


def _mib(raw: Any, what: str) -> int:
    """MiB from an int (MiB) or Kestra's readable sizes ("2 GiB", "512MB", "4096")."""
    if isinstance(raw, bool):
        raise ValueError(f"{what} is a size such as 2048 (MiB) or '2 GiB'")
    if isinstance(raw, int | float):
        return int(raw)
    found = _SIZE.match(str(raw))
    if found is None:
        raise ValueError(f"{what} {raw!r} is not a size such as 2048 (MiB) or '2 GiB'")
    unit = (found.group(2) or "").upper()[:1]
    return max(1, int(float(found.group(1)) * _MIB[unit]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ComputeResource(_Strict):
    """What one task asks of its VM (Batch's ``computeResource``).

    Kestra's form is accepted: ``cpu`` in milli-CPUs as a string ("2000"), ``memory`` and
    ``bootDisk`` as sizes ("2 GiB"); so is the ``resources: {request: {cpu: "2", memory: "4Gi"}}``
    form other Squall runners take, where ``cpu`` counts whole vCPUs.
    """

    cpu_milli: int = Field(default=2000, alias="cpu", gt=0, description="milli-vCPUs (2000 = 2 vCPUs).")
    memory_mib: int = Field(default=2048, alias="memory", gt=0, description="MiB, or a size ('2 GiB').")
    boot_disk_mib: int | None = Field(default=None, alias="bootDisk", gt=0)

    @model_validator(mode="before")
    @classmethod
    def _sizes(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if "request" in raw:  # the `resources` shape: whole vCPUs and Kubernetes-style sizes
            request = dict(raw.pop("request") or {})
            if "cpu" in request:
                raw.setdefault("cpu", int(float(str(request["cpu"])) * 1000))
            if "memory" in request:
                raw.setdefault("memory", request["memory"])
        for key, what in (("memory", "memory"), ("bootDisk", "bootDisk")):
            if key in raw and raw[key] is not None:
                raw[key] = _mib(raw[key], what)
        if isinstance(raw.get("cpu"), str):
            raw["cpu"] = int(float(raw["cpu"]))
        return raw


class NetworkInterface(_Strict):
    network: str = Field(min_length=1)
    subnetwork: str | None = None
    no_external_ip_address: bool = Field(default=False, alias="noExternalIpAddress")


class Accelerator(_Strict):
    type: str = Field(
        min_length=1, description="e.g. nvidia-tesla-t4 (gcloud compute accelerator-types list)."
    )
    count: int = Field(default=1, gt=0)
    driver_version: str | None = Field(default=None, alias="driverVersion")


class Price(_Strict):
    """USD per hour of one resource, for one provisioning model."""

    vcpu_hour: float = Field(default=0.0, alias="vcpuHour", ge=0)
    gib_hour: float = Field(default=0.0, alias="gibHour", ge=0)
    accelerator_hour: float = Field(default=0.0, alias="acceleratorHour", ge=0)


class Pricing(_Strict):
    """Squall extra: the prices of the region and machine family, for the cost estimate.

    Batch itself is free; the VMs are billed per second of vCPU, memory and accelerator,
    at one price on standard VMs and a lower one on Spot VMs.
    """

    standard: Price = Field(default_factory=Price)
    spot: Price = Field(default_factory=Price)


class GoogleBatchOptions(RunnerOptions):
    """Everything a task can say about how it runs on Google Cloud Batch."""

    # -- where and as whom (Kestra's names)
    project_id: str = Field(alias="projectId", min_length=1)
    region: str = Field(min_length=1, description="Batch location, e.g. europe-west1.")
    service_account: str | None = Field(
        default=None,
        alias="serviceAccount",
        description="Kestra's: the JSON key of the account that calls the API; default: application "
        "default credentials.",
    )
    impersonated_service_account: str | None = Field(default=None, alias="impersonatedServiceAccount")
    scopes: tuple[str, ...] = (CLOUD_PLATFORM,)
    endpoint: str | None = Field(
        default=None,
        description="Squall extra: the Batch API endpoint (a private endpoint, an emulator). A flow may "
        "name only one the deployment allows.",
    )

    # -- the job's machine (Kestra's names, then Squall's)
    machine_type: str = Field(default=DEFAULT_MACHINE_TYPE, alias="machineType", min_length=1)
    compute_resource: ComputeResource = Field(default_factory=ComputeResource, alias="computeResource")
    reservation: str | None = None
    entry_point: tuple[str] | None = Field(
        default=None,
        alias="entryPoint",
        description="Kestra's: the container's entry point. Squall's job wrapper is a POSIX shell "
        "script, so this is the shell that runs it (one path, default /bin/sh).",
    )
    network_interfaces: tuple[NetworkInterface, ...] = Field(default=(), alias="networkInterfaces")
    job_service_account: str | None = Field(
        default=None,
        alias="jobServiceAccount",
        description="Squall extra: the service account email the job's VMs run as (default: the "
        "Compute Engine default service account).",
    )
    provisioning_model: Literal["STANDARD", "SPOT"] = Field(default="STANDARD", alias="provisioningModel")
    accelerators: tuple[Accelerator, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict, description="Squall extra: more labels on the job.")
    max_run_duration: timedelta | None = Field(
        default=None,
        alias="maxRunDuration",
        gt=timedelta(0),
        description="Squall extra: Batch's own limit on the run (the task's `timeout` too; the shorter "
        "wins). A job past it ends TIMEOUT.",
    )
    queued_timeout: timedelta = Field(
        default=timedelta(minutes=30),
        alias="queuedTimeout",
        gt=timedelta(0),
        description="Squall extra: a job not running after this long is cancelled, as QUOTA when Batch "
        "said a quota or the zone's capacity stopped it, else UNSCHEDULABLE.",
    )

    # -- events, files, cost (Squall extras, but `bucket`)
    notification_topic: str | None = Field(
        default=None,
        alias="notificationTopic",
        pattern=r"^projects/[^/]+/topics/[^/]+$",
        description="Squall extra: the Pub/Sub topic Batch publishes the job's state changes to "
        "(projects/<p>/topics/<t>); its push subscription targets the events function.",
    )
    bucket: str = Field(
        min_length=3,
        description="Kestra's: the GCS bucket the job's files and log go through. Required: Squall reads "
        "the job's log from it (mounted into the job, so the image needs no Cloud SDK).",
    )
    staging_prefix: str = Field(default="squall", alias="stagingPrefix", description="Squall extra.")
    storage_endpoint: str | None = Field(
        default=None,
        alias="storageEndpoint",
        description="Squall extra: the Cloud Storage endpoint (an emulator). Deployment setting.",
    )
    deployment: str = Field(
        default="squall",
        pattern=r"^[a-z0-9_-]{1,63}$",
        description="Squall extra: the label that groups this deployment's jobs, so one list call "
        "reconciles many of them.",
    )
    pricing: Pricing | None = None

    # -- Kestra's, accepted with their Kestra meaning where Squall has one
    wait_until_completion: timedelta | None = Field(
        default=None,
        alias="waitUntilCompletion",
        gt=timedelta(0),
        description="Kestra's: with no task `timeout` and no maxRunDuration, Batch's limit on the run. "
        "Squall never blocks waiting for a job (it reacts to events and reconciles), so the "
        "waiting itself has no meaning here; Kestra's 1-hour default is not applied.",
    )
    completion_check_interval: timedelta | None = Field(
        default=None,
        alias="completionCheckInterval",
        description="Kestra's polling period. Squall learns of the end from Pub/Sub and reconciles "
        "all jobs in one list call per tick, so there is no per-job polling to tune.",
    )
    wait_for_log_interval: timedelta | None = Field(
        default=None,
        alias="waitForLogInterval",
        description="Kestra's wait for late logs. Squall reads the log from the bucket until the "
        "wrapper's end sentinel, so no guess is needed.",
    )
    delete: bool = Field(
        default=True, description="Kestra's: delete the Batch job and its staged files at the end."
    )
    resume: bool = Field(
        default=True,
        description="Kestra's: reattach to the job of the same name. Squall always does (one attempt runs "
        "once), so false is refused.",
    )

    @field_validator("entry_point")
    @classmethod
    def _shell(cls, value: tuple[str] | None) -> tuple[str] | None:
        if value is not None and not value[0].startswith("/"):
            raise ValueError("entryPoint is the shell that runs Squall's job wrapper: one absolute path")
        return value

    _bucket = field_validator("bucket")(classmethod(lambda cls, v: bucket_name(v)))
    _prefix = field_validator("staging_prefix")(classmethod(lambda cls, v: staging_prefix(v)))

    _resume = field_validator("resume")(classmethod(lambda cls, v: always_reattach(v)))

    @property
    def spot(self) -> bool:
        return self.provisioning_model == "SPOT"

"""``taskRunner`` options of ``type: squall.runner.azure.Batch`` (and Kestra's Azure Batch runner names).

Property names are Kestra's where Kestra has one (``account``, ``endpoint``, ``accessKey``,
``poolId``, ``blobStorage``, ``resources``, ``containerRunOptions``, ``maxWallClockTime``,
``retentionTime``, ``delete``, ``resume``); the rest are Squall's and say so. ``blobStorage``
keeps Kestra's inner names too (containerName, connectionString, sharedKeyAccountName,
sharedKeyAccountAccessKey, endpoint). Each accepted option works; what Squall cannot honour
is a validation error naming it.

Secrets (``accessKey``, the blob storage key or connection string) are the deployment's: a
poll, a cancel or a log read after a restart signs with what the deployment configured,
since no handle stores a secret. A task may repeat the deployment's value (Kestra flows write
``accessKey: "{{ secret('AZURE_BATCH_KEY') }}"``) but not bring another one
(:meth:`AzureBatchOptions.secrets_match`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runners.base import RunnerOptions
from runners.gcs_folder import always_reattach, staging_prefix

__all__ = ["AzureBatchOptions", "BlobStorage", "Price", "Resources"]

_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BlobStorage(_Strict):
    """Kestra's ``blobStorage``: the container the task's files and log go through.

    The runner signs SAS URLs for Batch's ``resourceFiles`` and ``outputFiles`` with the storage
    account's key, so a key is needed: a ``connectionString`` with an ``AccountKey``, or
    ``sharedKeyAccountName`` and ``sharedKeyAccountAccessKey`` (with ``endpoint``, the blob
    service URL, for another cloud or Azurite). A ``sasToken`` alone cannot sign new SAS URLs.
    """

    container_name: str = Field(alias="containerName")
    connection_string: str | None = Field(default=None, alias="connectionString", repr=False)
    endpoint: str | None = None
    shared_key_account_name: str | None = Field(default=None, alias="sharedKeyAccountName")
    shared_key_account_access_key: str | None = Field(
        default=None, alias="sharedKeyAccountAccessKey", repr=False
    )

    @field_validator("container_name")
    @classmethod
    def _container(cls, value: str) -> str:
        if not _CONTAINER.match(value):
            raise ValueError("a blob container name: 3-63 lowercase letters, digits and single hyphens")
        return value

    def key_problem(self) -> str | None:
        """Why the runner cannot sign SAS URLs with this configuration, if it cannot.

        Checked when a task is submitted, on the options merged with the deployment's (a flow
        leaves the key to the deployment), not when a flow is validated alone."""
        if self.connection_string:
            parts = _connection_parts(self.connection_string)
            if not parts.get("AccountKey") or not parts.get("AccountName"):
                return "connectionString needs AccountName and AccountKey: SAS URLs are signed with the key"
            return None
        if not (self.shared_key_account_name and self.shared_key_account_access_key):
            return (
                "give connectionString, or sharedKeyAccountName and sharedKeyAccountAccessKey: the runner "
                "signs the SAS URLs of resourceFiles and outputFiles with the account key"
            )
        return None

    @property
    def account_name(self) -> str:
        if self.connection_string:
            return _connection_parts(self.connection_string)["AccountName"]
        assert self.shared_key_account_name is not None
        return self.shared_key_account_name

    @property
    def account_key(self) -> str:
        if self.connection_string:
            return _connection_parts(self.connection_string)["AccountKey"]
        assert self.shared_key_account_access_key is not None
        return self.shared_key_account_access_key

    @property
    def blob_endpoint(self) -> str:
        """The blob service URL (``https://<account>.blob.core.windows.net`` unless configured)."""
        if self.connection_string:
            parts = _connection_parts(self.connection_string)
            if parts.get("BlobEndpoint"):
                return parts["BlobEndpoint"].rstrip("/")
            protocol = parts.get("DefaultEndpointsProtocol", "https")
            suffix = parts.get("EndpointSuffix", "core.windows.net")
            return f"{protocol}://{parts['AccountName']}.blob.{suffix}"
        return (self.endpoint or f"https://{self.account_name}.blob.core.windows.net").rstrip("/")


def _connection_parts(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip()] = value.strip()
    return parts


class Resources(_Strict):
    """What one task takes of a node: ``requiredSlots`` (Batch's own unit; the pool's
    ``taskSlotsPerNode`` says how many a node has). The VM size is the pool's."""

    required_slots: int = Field(default=1, alias="requiredSlots", ge=1, le=256)


class Price(_Strict):
    """Squall extra: one VM size's price and shape, for the cost of a task run."""

    hour: float = Field(ge=0, description="USD per node hour (spot or dedicated, as the pool runs).")
    vcpus: float = Field(default=0.0, ge=0)
    gib: float = Field(default=0.0, ge=0)


class AzureBatchOptions(RunnerOptions):
    """Everything a task can say about how it runs as an Azure Batch task."""

    account: str = Field(min_length=3, max_length=24, pattern=r"^[a-z0-9]+$")
    endpoint: str = Field(
        description="Kestra's: the account URL (https://<account>.<region>.batch.azure.com); "
        "a task may only name one the deployment lists."
    )
    access_key: str | None = Field(
        default=None,
        alias="accessKey",
        repr=False,
        description="Kestra's: the account's shared key; without it, Microsoft Entra ID through "
        "azure-identity (DefaultAzureCredential).",
    )
    pool_id: str = Field(alias="poolId", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    blob_storage: BlobStorage = Field(alias="blobStorage")
    resources: Resources = Field(default_factory=Resources)
    container_run_options: str | None = Field(
        default=None,
        alias="containerRunOptions",
        description="Extra `docker create` options of the task's container (only with a containerImage).",
    )
    max_wall_clock_time: timedelta | None = Field(
        default=None,
        alias="maxWallClockTime",
        gt=timedelta(0),
        description="Batch's limit on the task's run time (the task's `timeout` too; the shorter wins).",
    )
    retention_time: timedelta | None = Field(
        default=None,
        alias="retentionTime",
        gt=timedelta(0),
        description="How long Batch keeps the task's directory on the node after it ends (default 7 days).",
    )
    staging_prefix: str = Field(default="squall", alias="stagingPrefix", description="Squall extra.")
    deployment: str = Field(default="squall", pattern=r"^[a-z0-9_-]{1,40}$", description="Squall extra.")
    vm_size: str | None = Field(
        default=None, alias="vmSize", description="Squall extra: the pool's VM size, to price task runs."
    )
    task_slots_per_node: int = Field(
        default=1, alias="taskSlotsPerNode", ge=1, le=256, description="Squall extra: the pool's."
    )
    prices: dict[str, Price] = Field(
        default_factory=dict, description="Squall extra: VM size -> price (deployment configuration)."
    )
    delete: bool = Field(default=True, description="Kestra's: delete the task and staged inputs at the end.")
    resume: bool = Field(default=True, description="Kestra's: reattach to the attempt's task. Always on.")

    _resume = field_validator("resume")(classmethod(lambda cls, v: always_reattach(v)))
    _prefix = field_validator("staging_prefix")(classmethod(lambda cls, v: staging_prefix(v)))

    def problems(self) -> list[str]:
        """What cannot work in the options merged with the deployment's (checked at submission:
        a flow may leave the price table and the pool's shape to the deployment)."""
        found = []
        if self.vm_size is not None and self.prices and self.vm_size not in self.prices:
            found.append(
                f"taskRunner.vmSize: {self.vm_size!r} is not in prices ({', '.join(sorted(self.prices))})"
            )
        if self.resources.required_slots > self.task_slots_per_node:
            found.append(
                f"taskRunner.resources.requiredSlots: {self.resources.required_slots} is over the pool's "
                f"taskSlotsPerNode ({self.task_slots_per_node}): the task could never be scheduled"
            )
        keyless = self.blob_storage.key_problem()
        if keyless:
            found.append(f"taskRunner.blobStorage: {keyless}")
        return found

    @property
    def price(self) -> Price | None:
        return self.prices.get(self.vm_size) if self.vm_size else None

    def secrets_match(self, defaults: Mapping[str, Any]) -> list[str]:
        """Problems (``field: message``) where the task brings a secret the deployment does not have."""
        problems = []
        deployed = defaults.get("accessKey")
        if self.access_key is not None and self.access_key != deployed:
            problems.append(
                "taskRunner.accessKey: differs from the deployment's; polls, cancels and log reads after a "
                "restart sign with the deployment's key, so a task cannot bring its own (set it in "
                "SQUALL_RUNNERS)"
            )
        blob = dict(defaults.get("blobStorage") or {})
        for alias, value in (
            ("connectionString", self.blob_storage.connection_string),
            ("sharedKeyAccountAccessKey", self.blob_storage.shared_key_account_access_key),
        ):
            if value is not None and value != blob.get(alias):
                problems.append(
                    f"taskRunner.blobStorage.{alias}: differs from the deployment's; log reads and cleanups "
                    "after a restart use the deployment's storage credential (set it in SQUALL_RUNNERS)"
                )
        return problems

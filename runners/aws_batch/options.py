"""``taskRunner`` options of ``type: squall.runner.aws.Batch`` (and Kestra's Batch runner names).

Property names are Kestra's where Kestra has one (``region``, ``accessKeyId``, ``secretKeyId``,
``sessionToken``, ``stsRoleArn``, ``endpointOverride``, ``computeEnvironmentArn``,
``jobQueueArn``, ``executionRoleArn``, ``taskRoleArn``, ``bucket``, ``resources``,
``waitUntilCompletion``, ``completionCheckInterval``, ``delete``, ``resume``), so a Kestra flow
validates unchanged; everything else is a Squall extra and says so in its description.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runners.base import RunnerOptions

__all__ = ["BatchOptions", "BatchResources", "Pricing"]

DEFAULT_LOG_GROUP = "/aws/batch/job"
DEFAULT_STAGING_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.15.30"
"""The official AWS CLI image, pinned: a staging container must not change under a running flow."""


class BatchResources(BaseModel):
    """What one job asks for. ``memory`` is MiB, as Batch's ``MEMORY`` resource requirement.

    Kestra writes ``resources: {request: {cpu: "1", memory: "2048"}}``; that shape is accepted too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    vcpu: float = Field(default=1.0, gt=0, description="vCPUs (Fargate: 0.25, 0.5, 1, 2, 4, 8 or 16).")
    memory: int = Field(default=2048, ge=4, description="Memory in MiB.")
    gpu: int = Field(default=0, ge=0, description="GPUs (EC2 compute environments only).")

    @model_validator(mode="before")
    @classmethod
    def _kestra_request(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "request" in raw:
            request = dict(raw.get("request") or {})
            rest = {k: v for k, v in raw.items() if k != "request"}
            if "cpu" in request:
                rest.setdefault("vcpu", float(request["cpu"]))
            if "memory" in request:
                rest.setdefault("memory", int(str(request["memory"]).removesuffix("Mi")))
            return rest
        return raw


class Pricing(BaseModel):
    """A price table for the cost estimate (USD per hour), e.g. the Fargate or EC2 price of the region.

    Squall extra. Batch itself is free; the compute behind it is billed per second.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    vcpu_hour: float = Field(default=0.0, alias="vcpuHour", ge=0)
    gib_hour: float = Field(default=0.0, alias="gibHour", ge=0)
    gpu_hour: float = Field(default=0.0, alias="gpuHour", ge=0)
    spot_discount: float = Field(
        default=0.0, alias="spotDiscount", ge=0, lt=1, description="Fraction saved when the job ran on spot."
    )


class BatchOptions(RunnerOptions):
    """Everything a task can say about how it runs on AWS Batch."""

    # -- where and as whom
    region: str | None = Field(default=None, description="AWS region; default: the SDK's default chain.")
    access_key_id: str | None = Field(default=None, alias="accessKeyId")
    secret_key_id: str | None = Field(default=None, alias="secretKeyId")
    session_token: str | None = Field(default=None, alias="sessionToken")
    sts_role_arn: str | None = Field(
        default=None, alias="stsRoleArn", description="Role to assume (from the default chain)."
    )
    sts_role_external_id: str | None = Field(default=None, alias="stsRoleExternalId")
    sts_role_session_name: str | None = Field(default=None, alias="stsRoleSessionName")
    endpoint_override: str | None = Field(default=None, alias="endpointOverride")

    # -- the Batch resources
    job_queue_arn: str = Field(alias="jobQueueArn", min_length=1)
    job_definition_arn: str | None = Field(
        default=None,
        alias="jobDefinitionArn",
        description="Use this job definition; otherwise Squall registers one per image+resources+roles.",
    )
    compute_environment_arn: str | None = Field(
        default=None,
        alias="computeEnvironmentArn",
        description="Hint: its type (FARGATE, FARGATE_SPOT, EC2, SPOT) picks platformCapabilities and spot.",
    )
    execution_role_arn: str | None = Field(default=None, alias="executionRoleArn")
    task_role_arn: str | None = Field(default=None, alias="taskRoleArn")
    resources: BatchResources = Field(default_factory=BatchResources)
    platform_capabilities: tuple[Literal["EC2", "FARGATE"], ...] | None = Field(
        default=None, alias="platformCapabilities"
    )
    retry_strategy: dict[str, Any] | None = Field(
        default=None, alias="retryStrategy", description="Passed to SubmitJob as is (Batch's own retries)."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on the job.")
    timeout: timedelta | None = Field(
        default=None, description="Attempt timeout (also the task's `timeout`); the shorter one wins."
    )
    log_group_name: str = Field(default=DEFAULT_LOG_GROUP, alias="logGroupName", description="Squall extra.")
    assign_public_ip: bool = Field(
        default=True, alias="assignPublicIp", description="Fargate only: needed to pull images without NAT."
    )

    # -- file staging
    bucket: str | None = Field(default=None, description="S3 bucket for input files larger than a few KiB.")
    staging_prefix: str = Field(default="squall", alias="stagingPrefix", description="Squall extra.")
    staging: Literal["sidecar", "cli"] = Field(
        default="sidecar",
        description="Squall extra. How files reach the job: `sidecar` (AWS CLI containers beside the "
        "task's, nothing needed in its image) or `cli` (the task's image runs `aws s3 cp` itself).",
    )
    staging_image: str = Field(
        default=DEFAULT_STAGING_IMAGE,
        alias="stagingImage",
        min_length=1,
        description="Squall extra. The staging containers' image: AWS CLI, entry point `aws`.",
    )

    # -- scheduling and cost (Squall extras)
    runnable_timeout: timedelta = Field(
        default=timedelta(minutes=30),
        alias="runnableTimeout",
        gt=timedelta(0),
        description="A job RUNNABLE for longer than this is UNSCHEDULABLE (no capacity fits it).",
    )
    cancel_unschedulable: bool = Field(default=True, alias="cancelUnschedulable")
    spot: bool | None = Field(default=None, description="Whether the queue's capacity is spot (for cost).")
    pricing: Pricing | None = None

    # -- Kestra's, accepted for compatibility (Squall always waits through events and polls)
    wait_until_completion: timedelta | None = Field(default=None, alias="waitUntilCompletion")
    completion_check_interval: timedelta | None = Field(default=None, alias="completionCheckInterval")
    delete: bool = Field(default=True, description="Kestra's: clean staged files once the job ended.")
    resume: bool = Field(default=True, description="Kestra's: reattach to an existing job of the same name.")
    sync_working_directory: bool = Field(default=False, alias="syncWorkingDirectory")

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> BatchOptions:
        if (self.access_key_id is None) != (self.secret_key_id is None):
            raise ValueError("accessKeyId and secretKeyId go together")
        return self

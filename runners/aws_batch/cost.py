"""Billed resources of a finished Batch job, and a cost estimate from a price table.

Batch bills nothing itself; the Fargate task or EC2 capacity behind the job is billed per
second. The runner reports the resources (``vCPU x seconds``, ``GiB x seconds``, ``GPU x
seconds``, spot or not) in the terminal status; :func:`estimate_cost` prices them with a
table from the ``taskRunner.pricing`` option, so the control plane can attach a number to
the task run without knowing anything about AWS.
"""

from __future__ import annotations

from datetime import datetime

from runners.aws_batch.options import BatchResources, Pricing
from runners.base import Resources

__all__ = ["billed_resources", "estimate_cost"]


def billed_resources(
    resources: BatchResources,
    started: datetime | None,
    ended: datetime | None,
    *,
    spot: bool = False,
    minimum_seconds: float = 0.0,
) -> Resources | None:
    """What the job used, or None when it never started (nothing is billed then)."""
    if started is None or ended is None:
        return None
    seconds = max((ended - started).total_seconds(), 0.0, minimum_seconds)
    return Resources(
        vcpu_seconds=resources.vcpu * seconds,
        gib_seconds=resources.memory / 1024 * seconds,
        accelerator_seconds=resources.gpu * seconds,
        spot=spot,
    )


def estimate_cost(resources: Resources, pricing: Pricing) -> float:
    """USD for ``resources`` at ``pricing`` (hourly prices, spot discount applied when spot)."""
    total = (
        resources.vcpu_seconds * pricing.vcpu_hour
        + resources.gib_seconds * pricing.gib_hour
        + resources.accelerator_seconds * pricing.gpu_hour
    ) / 3600
    if resources.spot:
        total *= 1 - pricing.spot_discount
    return round(total, 6)

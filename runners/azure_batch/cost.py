"""A task run's cost: its share of its node's time, at the VM size's price (pure).

Batch bills the pool's nodes, not tasks. A node of ``taskSlotsPerNode`` slots runs that many
one-slot tasks at once, so a task that takes ``requiredSlots`` of them for ``t`` seconds is
charged ``t / 3600 * hour * requiredSlots / taskSlotsPerNode``: an estimate that assumes the
pool is kept busy (an idle node's time is the pool's cost, not any task's)::

    share(seconds=1800, hour=0.096, slots=1, slots_per_node=2)   # 0.024 USD
"""

from __future__ import annotations

from datetime import datetime

from runners.base import Resources

__all__ = ["billed", "share"]


def share(*, seconds: float, hour: float, slots: int, slots_per_node: int) -> float:
    """USD for ``seconds`` of ``slots`` of a node priced ``hour`` USD an hour."""
    return round(max(0.0, seconds) / 3600 * hour * slots / max(1, slots_per_node), 8)


def billed(
    started: datetime | None,
    ended: datetime | None,
    *,
    vcpus: float,
    gib: float,
    slots: int,
    slots_per_node: int,
) -> Resources | None:
    """The task's share of the node's vCPUs and memory over its run, when it ran."""
    if started is None or ended is None:
        return None
    seconds = max(0.0, (ended - started).total_seconds())
    fraction = slots / max(1, slots_per_node)
    return Resources(vcpu_seconds=seconds * vcpus * fraction, gib_seconds=seconds * gib * fraction)

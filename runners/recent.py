"""A bounded memory of recent things, for what a runner remembers across calls in a warm process.

A runner that caches what it learnt of finished jobs (so logs and cleanup after an event
need no second describe) must not keep every job it ever saw: a Lambda container stays warm
through a 100,000-job fan-out, and AWS Batch's full ``DescribeJobs`` entry is ~8 KB, which
made the container's memory grow with the loop (issue 28 part 3). A forgotten entry costs
one describe call again, never a wrong answer: only terminal facts are kept here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["Recent"]

K = TypeVar("K")
V = TypeVar("V")


class Recent(OrderedDict[K, V]):
    """A dict that keeps its ``size`` most recently stored entries (callers hold their own lock)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a Recent keeps at least one entry, not {size}")
        super().__init__()
        self.size = size

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)

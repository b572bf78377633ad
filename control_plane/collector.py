"""How Squall keeps Python's cyclic garbage collector off its long-lived, acyclic state.

Theory of operation: an execution is a tree of frozen values (task runs and their parts are
msgspec Structs declared ``gc=False``; the task-run map and the outputs index are persistent
maps whose nodes hold them). None of it can form a reference cycle, so refcounting frees all of
it, yet the collector still walks every tracked node each time one of its generation
thresholds is crossed, and a 100,000-item ForEach crosses them hundreds of times while it
grows that graph: benchmarks/engine.py measured the collector at a fifth of the planner's time
there, and growing with the size (issue 28 part 4). Two remedies, each around one call and
never for the whole process (a cycle made elsewhere must still be collected):

- :func:`acyclic` pauses the collector while a store encodes or decodes one execution's
  records: JSON values and ``gc=False`` Structs, nothing a collection could free.
- :func:`planning` wraps one ``plan`` call: what was alive before it (the execution loaded,
  the flow, the modules) is frozen out of the collector's sight (``gc.freeze``) and the
  youngest generation's threshold is raised, so the few collections that still run look only
  at what the planner allocates. A plan over 10,000 tasks leaves about ten cyclic objects
  (measured with ``gc.collect()`` after it), so garbage cannot pile up. It unfreezes after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PLANNING_THRESHOLD", "acyclic", "planning"]

PLANNING_THRESHOLD = 100_000
"""Allocations between young collections while planning (CPython's default is 700). Measured
with benchmarks/engine.py's flow at 100,000 items, planner CPU per task run (load 6 on 2 cores):
no change 30.9 us, freeze with 20,000: 27.3, freeze with 100,000: 26.8, collector off: 25.9."""


@contextmanager
def acyclic() -> Iterator[None]:
    """Pause the cyclic garbage collector while one execution's records are encoded or decoded.

    Decoding N task runs allocates a few container objects per record (dicts, lists) and keeps
    them; every generation threshold crossed meanwhile makes the collector rescan the batch
    built so far, so a 100,000-task-run load spent most of its time there (issue 28: 2.4 s of
    json.loads instead of 0.5). What is built here cannot form a reference cycle (JSON values
    and Structs declared ``gc=False``), so there is nothing for the collector to find. The
    pause is for the one call, re-entrant, and leaves a collector the process disabled alone;
    objects allocated meanwhile are counted when it resumes.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def planning() -> Iterator[None]:
    """Collect only what one ``plan`` call allocates, and that less often (module docstring).

    Leaves the collector alone when the process disabled it or froze objects itself (a Lambda
    handler's ``gc.freeze()`` after import must not be undone here). Two threads planning at
    once may end each other's window early; that costs time, never a collection.
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(PLANNING_THRESHOLD, threshold[0]), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()

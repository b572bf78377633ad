"""How Squall keeps Python's cyclic garbage collector off its long-lived, acyclic state.

Theory of operation: an execution is a tree of frozen values (task runs and their parts are
msgspec Structs declared ``gc=False``; the task-run map and the outputs index are persistent
maps whose nodes hold them). None of it can form a reference cycle, so refcounting frees all of
it, yet the collector walks every tracked map node each time one of its generation thresholds
is crossed. A 100,000-item ForEach has some 170,000 such nodes: planning it crossed the
thresholds hundreds of times, and each pass over the nodes built so far took about 0.1 s, so
the collector's share grew with the size (issue 28 part 4). Then every node was scanned again
once it was young no more: once after planning, once after loading.

So the calls that build an execution's state (a store decoding or encoding one execution's
records, one ``plan`` call) run with the collector paused (:func:`acyclic`), and what they
built joins the oldest generation directly when they return (``gc.freeze()`` then
``gc.unfreeze()``, two list splices) instead of being scanned on its way there. Nothing is
turned off for the process, and nothing is kept from the collector: a cycle made during the
call (a plan over 10,000 tasks leaves about ten cyclic objects, measured with ``gc.collect()``)
is found by the next full collection, which still runs on CPython's own schedule.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PROMOTE_AFTER", "acyclic", "planning"]

PROMOTE_AFTER = 10_000
"""Young objects a paused call must leave behind for them to be promoted: a plan or load of a
few thousand task runs."""


@contextmanager
def acyclic() -> Iterator[None]:
    """Pause the cyclic garbage collector while one execution's state is built (module docstring).

    Decoding N task runs allocates a few container objects per record and keeps them; every
    generation threshold crossed meanwhile makes the collector rescan the batch built so far,
    so a 100,000-task-run load spent most of its time there (issue 28: 2.4 s of json.loads
    instead of 0.5). The pause is for the one call and re-entrant (an inner call leaves the
    collector to the outer one); a collector the process disabled is left alone, and so is a
    process that froze objects itself (a Lambda handler's ``gc.freeze()`` after its imports
    must not be undone): there the objects stay young, as before.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        # Only after a call that built much: get_freeze_count() walks the frozen objects (a CLI
        # that froze its start-up has many), and a small call's objects are cheap to scan young.
        if gc.get_count()[0] > PROMOTE_AFTER and gc.get_freeze_count() == 0:
            gc.freeze()  # everything tracked, this call's objects included...
            gc.unfreeze()  # ...back into the oldest generation, unscanned
        gc.enable()


planning = acyclic
"""Around one ``plan`` call: what the planner builds is the execution's next state, acyclic
like a loaded one. Planner CPU per task run of benchmarks/engine.py's flow at 100,000 items
(load 6 on 2 cores): 30.9 us untouched, 26.8 with the young threshold raised to 100,000 and
the older state frozen meanwhile, 25.9 paused; and the 170,000 map nodes it made were then
scanned once more after it returned (0.4 s) unless promoted as here."""

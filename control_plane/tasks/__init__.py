"""Kestra's core tasks that do I/O, run by the control plane itself (``TaskKind.EFFECT``).

The engine renders such a task's properties and asks for it with a ``RunInline`` action; the
driver looks its handler up here (:func:`run_effect`), runs it with a narrow
:class:`EffectContext` (the deployment storage, the store, the clock, the execution's ids, a
log sink, a deadline) and answers the engine with a ``TaskResult``. One module per plugin
family: :mod:`.kv`, :mod:`.http`, :mod:`.storage`, :mod:`.namespace`, :mod:`.execution`,
:mod:`.foreach_item`.

These run inside whichever process carries out the plan: ``squall run``, the server, or the
events/tick/API Lambda functions. So every handler bounds its own time (the task's ``timeout``
when it has one, else :data:`DEFAULT_BUDGET`) and keeps what it holds in memory bounded.

At-least-once, as in Kestra's worker: the effect is done first and its result stored after.
If the process dies in between (a Lambda timeout, a crash), the task run is still RUNNING in
the store and recovery runs the attempt again, so the effect may happen twice: a KV write is
idempotent, an HTTP POST may not be.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

from control_plane.errors import SquallError
from control_plane.levels import Level

if TYPE_CHECKING:
    from control_plane.service.storage import TaskStorage
    from control_plane.store.base import StateStore

__all__ = [
    "DEFAULT_BUDGET",
    "EffectContext",
    "EffectOutcome",
    "Handler",
    "TaskFailure",
    "deadline_for",
    "handler_for",
    "limit_to_invocation",
    "run_effect",
]

DEFAULT_BUDGET = timedelta(seconds=60)
"""How long a handler may take when its task has no ``timeout``."""

INVOCATION_MARGIN = 3.0
"""Seconds kept, at the end of a Lambda invocation, to store the result of a task with I/O."""

_invocation_end: float | None = None


def limit_to_invocation(context: Any) -> None:
    """Bound tasks with I/O run in this Lambda invocation by the time it has left.

    Each handler calls it with its Lambda ``context``: a handler's budget is then the least of
    the task's ``timeout``, :data:`DEFAULT_BUDGET` and the invocation's remaining time less
    :data:`INVOCATION_MARGIN` (the API function has 30 s at most, API Gateway's limit).
    Anything without ``get_remaining_time_in_millis`` (a test, a local process) sets no limit.
    """
    global _invocation_end
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    _invocation_end = None if remaining is None else time.monotonic() + remaining() / 1000 - INVOCATION_MARGIN


def deadline_for(timeout: timedelta | None) -> float:
    """The monotonic moment by which a handler must answer (see :func:`limit_to_invocation`)."""
    deadline = time.monotonic() + budget(timeout)
    return deadline if _invocation_end is None else min(deadline, _invocation_end)


class TaskFailure(SquallError):
    """The attempt fails with this message (a missing key, a 404, a bad property)."""


class EffectContext(Struct):
    """What a handler may use: no service, no driver, only these."""

    storage: TaskStorage
    store: StateStore
    now: Callable[[], datetime]
    namespace: str
    flow_id: str
    execution_id: str
    taskrun_id: str
    attempt: int
    deadline: float  # time.monotonic() by which the handler must have answered
    # resumes a paused execution with onResume inputs (core.execution.Resume)
    resume: Callable[[str, Mapping[str, Any]], None] | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)

    def log(self, level: Level, message: str) -> None:
        self.logs.append((level.value, message))

    def remaining(self) -> float:
        """Seconds left before the deadline (at least a little, so a call can fail cleanly)."""
        return max(self.deadline - time.monotonic(), 0.05)

    def output_uri(self, name: str) -> str:
        """Where this attempt's output file ``name`` goes (the layout script outputFiles use)."""
        prefix = self.storage.prefix(
            self.namespace, self.flow_id, self.execution_id, self.taskrun_id, self.attempt
        )
        return prefix + name


class EffectOutcome(Struct, frozen=True):
    outputs: Mapping[str, Any] | None
    error: str | None
    logs: tuple[tuple[str, str], ...]


Handler = Callable[[Mapping[str, Any], EffectContext], Mapping[str, Any] | None]


def _registry() -> dict[str, Handler]:
    from control_plane.tasks import execution, foreach_item, http, kv, namespace, storage

    table: dict[str, Handler] = {}
    for module in (kv, http, storage, namespace, execution, foreach_item):
        table.update(module.HANDLERS)
    return table


_HANDLERS: dict[str, Handler] | None = None


def handler_for(canonical: str) -> Handler | None:
    """The handler of a canonical task type, None when it has none."""
    global _HANDLERS
    if _HANDLERS is None:
        _HANDLERS = _registry()
    return _HANDLERS.get(canonical)


def budget(timeout: timedelta | None) -> float:
    """Seconds a handler may take: the task's timeout, else :data:`DEFAULT_BUDGET`."""
    return (timeout or DEFAULT_BUDGET).total_seconds()


def run_effect(canonical: str, properties: Mapping[str, Any], ctx: EffectContext) -> EffectOutcome:
    """Run one attempt; a TaskFailure or any SquallError is the attempt's error, not a crash."""
    handler = handler_for(canonical)
    if handler is None:
        return EffectOutcome(None, f"no handler for task type {canonical}", tuple(ctx.logs))
    from control_plane.service.storage import StorageError

    try:
        outputs = handler(properties, ctx)
    except (SquallError, StorageError) as exc:
        return EffectOutcome(None, str(exc), tuple(ctx.logs))
    # Kestra serializes outputs with Jackson's NON_NULL inclusion: a null output is absent
    kept = {k: v for k, v in outputs.items() if v is not None} if outputs is not None else None
    return EffectOutcome(kept, None, tuple(ctx.logs))

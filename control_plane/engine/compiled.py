"""A flow, indexed once for the engine: child lists without disabled tasks, retry chains, DAG edges.

Kestra drops ``disabled: true`` tasks from the flow before running it (they get no task run);
doing that here once keeps every lookup in the hot path a dictionary access.
"""

from __future__ import annotations

import re
import weakref
from enum import Enum

from msgspec import Struct, field

from control_plane.flows.models import (
    Dag,
    EachParallel,
    EachSequential,
    Flow,
    FlowableTask,
    ForEach,
    If,
    Parallel,
    RetryBehavior,
    Switch,
    Task,
)
from control_plane.flows.template_checks import strings_in

__all__ = ["CompiledFlow", "LaneMode", "compile_flow"]

ROOT = ""  # owner key of the flow's own lists


class LaneMode(Enum):
    SEQUENTIAL = "sequential"  # one lane running the `tasks` list in order
    EACH_TASK = "each_task"  # one lane per task (Parallel, Dag)
    BRANCH = "branch"  # one lane running the chosen list (Switch, If)
    LOOP = "loop"  # one lane per value, each running `tasks` in order (ForEach)


class CompiledFlow(Struct):
    flow: Flow
    tasks: dict[str, Task] = field(default_factory=dict)
    lists: dict[tuple[str, str], tuple[Task, ...]] = field(default_factory=dict)
    modes: dict[str, LaneMode] = field(default_factory=dict)
    retries: dict[str, object] = field(default_factory=dict)
    dag_deps: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    named_secrets: tuple[str, ...] | None = None

    def list_of(self, owner: str | None, name: str) -> tuple[Task, ...]:
        return self.lists.get((owner or ROOT, name), ())

    def secret_names(self) -> tuple[str, ...]:
        """The names the flow passes to ``secret()`` as literals (found once, on first need).

        Their values are masked in every event of an execution, not only in the one whose
        rendering looked them up: a job's outputs come back in a later event.
        """
        if self.named_secrets is None:
            found = {
                name
                for text in strings_in(self.flow)
                if "secret" in text
                for name in _SECRET_CALL.findall(text)
            }
            self.named_secrets = tuple(sorted(found))
        return self.named_secrets


_SECRET_CALL = re.compile(r"""secret\(\s*\\?["']([A-Za-z0-9_][A-Za-z0-9_./-]{0,255})\\?["']\s*\)""")


_CACHE: dict[int, tuple[weakref.ref[Flow], CompiledFlow]] = {}


def compile_flow(flow: Flow) -> CompiledFlow:
    """The compiled form of ``flow``, cached for as long as the flow object lives."""
    hit = _CACHE.get(id(flow))
    if hit is not None and hit[0]() is flow:
        return hit[1]
    compiled = _compile(flow)
    key = id(flow)
    cache = _CACHE  # bound now: the module global may be gone at interpreter exit
    _CACHE[key] = (weakref.ref(flow, lambda _ref: cache.pop(key, None)), compiled)
    return compiled


def _enabled(tasks: list[Task] | None) -> tuple[Task, ...]:
    return tuple(t for t in tasks or () if not t.disabled)


def _compile(flow: Flow) -> CompiledFlow:
    out = CompiledFlow(flow=flow)
    # Kestra applies the flow's retry to every failed runnable task, whatever its behavior
    # (ExecutorService: "Case flow has a retry"); RETRY_FAILED_TASK is the default behavior.
    flow_retry = flow.retry
    for name, tasks in flow.child_lists():
        out.lists[(ROOT, name)] = _enabled(tasks)
    stack: list[tuple[Task, object]] = [(t, flow_retry) for _, ts in flow.child_lists() for t in ts]
    while stack:
        task, inherited = stack.pop()
        out.tasks[task.id] = task
        own = task.retry if task.retry is not None else inherited
        out.retries[task.id] = own
        if not isinstance(task, FlowableTask):
            continue
        out.modes[task.id] = _mode(task)
        # Under RETRY_FLOWABLE the flowable is retried as a unit; a child without a retry of
        # its own is not retried as a leaf (Kestra's RetryCaseTest.retryFlowableBehavior).
        passed_on = None if getattr(own, "behavior", None) is RetryBehavior.RETRY_FLOWABLE else own
        for name, tasks in task.child_lists():
            out.lists[(task.id, name)] = _enabled(tasks)
            stack.extend((t, passed_on) for t in tasks)
        if isinstance(task, Dag):
            nodes = [n for n in task.tasks or () if not n.task.disabled]
            index = {n.task.id: i for i, n in enumerate(nodes)}
            out.dag_deps[task.id] = tuple(
                tuple(index[d] for d in n.dependsOn or () if d in index) for n in nodes
            )
    return out


def _mode(task: FlowableTask) -> LaneMode:
    if isinstance(task, Parallel | Dag):
        return LaneMode.EACH_TASK
    if isinstance(task, Switch | If):
        return LaneMode.BRANCH
    if isinstance(task, ForEach | EachSequential | EachParallel):
        return LaneMode.LOOP
    return LaneMode.SEQUENTIAL

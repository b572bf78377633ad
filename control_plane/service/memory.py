"""Drive ``plan`` to the end in memory: for unit tests, the conformance suite and ``squall run``.

Timers are served from a heap against an injected clock. With :class:`VirtualClock` (the
default) a retry with a 15-minute interval or a one-hour Sleep completes at once and
deterministically; with :class:`SystemClock` the executor really waits. Jobs are handed to an
optional ``jobs`` callable; subflows run recursively with the same executor.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from msgspec import Struct, field

from control_plane.engine.actions import (
    CancelJob,
    Emit,
    Finish,
    RunInline,
    StartSubflow,
    StartTimer,
    SubmitJob,
)
from control_plane.engine.events import Event, JobStatusChanged, Started, TaskResult, TimerFired
from control_plane.engine.model import Execution, LogLine
from control_plane.engine.planner import new_execution, plan
from control_plane.engine.states import State
from control_plane.flows.models import Flow

__all__ = [
    "Clock",
    "InMemoryExecutor",
    "JobOutcome",
    "RunResult",
    "SystemClock",
    "VirtualClock",
    "new_execution_id",
]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep_until(self, moment: datetime) -> None: ...


def new_execution_id() -> str:
    """A random 22-character id, the length of Kestra's execution ids."""
    return uuid.uuid4().hex[:22]


class VirtualClock:
    """Time that only moves when the executor waits for a timer: instant and reproducible."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, moment: datetime) -> None:
        self._now = max(self._now, moment)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, moment: datetime) -> None:
        delay = (moment - self.now()).total_seconds()
        if delay > 0:
            time.sleep(delay)


class JobOutcome(Struct, frozen=True):
    """What a job handler reports for a SubmitJob: a runner's terminal status, in short."""

    status: str = "SUCCEEDED"
    outputs: Mapping[str, Any] | None = None
    exit_code: int | None = 0
    failure: str | None = None
    reason: str | None = None


class RunResult(Struct):
    execution: Execution
    logs: list[LogLine] = field(default_factory=list)
    subflows: dict[str, Execution] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)

    @property
    def state(self) -> State:
        return self.execution.state


class InMemoryExecutor:
    """Runs flows to completion with no store and no runner (or a job handler function)."""

    def __init__(
        self,
        *,
        flows: Mapping[str, Flow] | None = None,
        clock: Clock | None = None,
        jobs: Callable[[SubmitJob], JobOutcome] | None = None,
        on_change: Callable[[Execution], None] | None = None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.flows = dict(flows or {})
        self.clock = clock or VirtualClock()
        self.jobs = jobs
        self.on_change = on_change
        self.new_id = id_factory or new_execution_id

    def run(
        self,
        flow: Flow,
        inputs: Mapping[str, Any] | None = None,
        *,
        typed: bool = True,
        labels: Mapping[str, str] | None = None,
        execution_id: str | None = None,
        trigger: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run one execution; with ``typed`` the inputs are validated (InputError if bad)."""
        from control_plane.flows.inputs import resolve_inputs

        resolved = resolve_inputs(flow, inputs, typed=typed)
        self.flows.setdefault(flow.uid, flow)
        execution = new_execution(
            flow,
            execution_id or self.new_id(),
            at=self.clock.now(),
            inputs=resolved,
            labels=labels,
            trigger=trigger,
            parent=parent,
        )
        return self.drive(flow, execution, Started(at=self.clock.now()))

    def drive(self, flow: Flow, execution: Execution, first: Event) -> RunResult:
        """Apply ``first`` and every event it leads to, until the execution ends or waits for a person."""
        result = RunResult(execution)
        events: deque[Event] = deque([first])
        timers: list[tuple[datetime, int, str]] = []
        counter = 0
        finish: Finish | None = None
        while True:
            while events:
                execution, actions = plan(flow, execution, events.popleft())
                if self.on_change is not None:
                    self.on_change(execution)
                for action in actions:
                    match action:
                        case Emit():
                            result.logs.extend(action.logs)
                        case StartTimer():
                            counter += 1
                            heapq.heappush(timers, (action.at, counter, action.key))
                        case SubmitJob():
                            events.append(self._job(action))
                        case CancelJob():
                            events.append(self._cancelled(action))
                        case StartSubflow():
                            event = self._subflow(action, execution, result)
                            if event is not None:
                                events.append(event)
                        case RunInline():
                            events.append(
                                TaskResult(
                                    self.clock.now(),
                                    action.taskrun_id,
                                    action.attempt,
                                    State.FAILED,
                                    None,
                                    f"no inline handler for {action.task_type}",
                                )
                            )
                        case Finish():
                            finish = action
            if execution.state.terminal or not timers:
                break
            at, _, key = heapq.heappop(timers)
            self.clock.sleep_until(at)
            events.append(TimerFired(at=max(at, self.clock.now()), key=key))
        result.execution = execution
        result.executions.append(execution)
        if finish is not None and finish.retry_at is not None:
            self.clock.sleep_until(finish.retry_at)
            attempt = int(execution.labels.get("system.retryAttempt", "1")) + 1
            again = self.run(
                flow,
                execution.inputs,
                typed=False,
                labels={**execution.labels, "system.retryAttempt": str(attempt)},
                trigger=execution.trigger,
            )
            again.executions[:0] = result.executions
            again.logs[:0] = result.logs
            return again
        return result

    def _job(self, action: SubmitJob) -> JobStatusChanged:
        now = self.clock.now()
        if self.jobs is None:
            return JobStatusChanged(
                now,
                action.taskrun_id,
                action.attempt,
                "FAILED",
                failure="START_FAILED",
                reason=f"no runner in the in-memory executor for {action.task_type}",
            )
        outcome = self.jobs(action)
        return JobStatusChanged(
            self.clock.now(),
            action.taskrun_id,
            action.attempt,
            outcome.status,
            outcome.failure,
            outcome.exit_code,
            outcome.reason,
            outcome.outputs,
        )

    def _cancelled(self, action: CancelJob) -> JobStatusChanged:
        return JobStatusChanged(self.clock.now(), action.taskrun_id, action.attempt, "CANCELLED", "CANCELLED")

    def _subflow(self, action: StartSubflow, parent: Execution, result: RunResult) -> TaskResult | None:
        flow = self.flows.get(f"{action.namespace}.{action.flow_id}")
        if flow is None:
            return TaskResult(
                self.clock.now(),
                action.taskrun_id,
                action.attempt,
                State.FAILED,
                None,
                f"Unable to find flow '{action.namespace}'.'{action.flow_id}'",
            )
        from control_plane.errors import InputError

        link = {
            "id": parent.id,
            "namespace": parent.namespace,
            "flowId": parent.flow_id,
            "taskRunId": action.taskrun_id,
        }
        try:
            sub = self.run(
                flow, action.inputs, labels=action.labels, execution_id=action.execution_id, parent=link
            )
        except InputError as exc:
            return TaskResult(
                self.clock.now(), action.taskrun_id, action.attempt, State.FAILED, None, str(exc)
            )
        result.subflows[sub.execution.id] = sub.execution
        result.subflows.update(sub.subflows)
        result.logs.extend(sub.logs)
        if not action.wait:
            return None
        outputs = {
            "executionId": sub.execution.id,
            "state": str(sub.execution.state),
            "outputs": dict(sub.execution.outputs or {}),
        }
        return TaskResult(self.clock.now(), action.taskrun_id, action.attempt, sub.execution.state, outputs)

"""Small builders shared by the engine tests: a flow from YAML text, a fixed clock, a driver."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from control_plane.engine import Action, Event, Execution, Started, new_execution, plan
from control_plane.flows.loader import parse_flow
from control_plane.flows.models import Flow

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def flow(text: str) -> Flow:
    return parse_flow(text, "test.yaml")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Driver:
    """Feeds events to ``plan`` by hand and keeps every action, for step-by-step assertions."""

    def __init__(
        self, source: str | Flow, inputs: dict[str, Any] | None = None, execution_id: str = "ex1"
    ) -> None:
        self.flow = flow(source) if isinstance(source, str) else source
        self.execution: Execution = new_execution(self.flow, execution_id, at=T0, inputs=inputs or {})
        self.history: list[Event] = []
        self.actions: list[Action] = []

    def send(self, event: Event) -> list[Action]:
        self.history.append(event)
        self.execution, actions = plan(self.flow, self.execution, event)
        self.actions.extend(actions)
        return actions

    def start(self) -> list[Action]:
        return self.send(Started(at=T0))

    def of_type(self, kind: type, actions: Iterable[Action] | None = None) -> list[Any]:
        return [a for a in (self.actions if actions is None else actions) if isinstance(a, kind)]

    def run(self, task_id: str) -> Any:
        runs = [tr for tr in self.execution.ordered_taskruns() if tr.task_id == task_id]
        assert len(runs) == 1, f"{task_id}: {len(runs)} task runs"
        return runs[0]

    def states(self) -> dict[str, str]:
        return {tr.task_id: str(tr.state) for tr in self.execution.ordered_taskruns()}

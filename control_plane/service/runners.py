"""Which runner instance serves a ``taskRunner`` type: one instance per runner, made on first use.

Built-in and third-party runners are found the same way, through the ``squall.runners``
entry-point group. The service passes construction arguments per runner name (the process
runner needs its jobs directory); a runner without arguments is built with none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct

from runners.base import JobHandle, JobStatus, Runner, runner_classes

__all__ = ["RunnerEvent", "RunnerRegistry", "UnknownRunnerError"]


class RunnerEvent(Struct, frozen=True):
    """A push event, understood: which runner, which job, its status, its handle when the event carries it."""

    runner: str
    name: str
    status: JobStatus
    handle: JobHandle | None = None


class UnknownRunnerError(LookupError):
    def __init__(self, name: str, installed: list[str]) -> None:
        super().__init__(
            f"unknown task runner type '{name}' (installed runners: {', '.join(installed) or 'none'})"
        )


class RunnerRegistry:
    def __init__(
        self,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        instances: Mapping[str, Runner] | None = None,
        classes: Callable[[], Mapping[str, type[Runner]]] = runner_classes,
    ) -> None:
        self._config = dict(config or {})
        self._instances: dict[str, Runner] = dict(instances or {})
        self._classes_of = classes
        self._classes: Mapping[str, type[Runner]] | None = None

    def classes(self) -> Mapping[str, type[Runner]]:
        if self._classes is None:
            self._classes = self._classes_of()
        return self._classes

    def get(self, name: str) -> Runner:
        runner = self._instances.get(name)
        if runner is None:
            cls = self.classes().get(name)
            if cls is None:
                raise UnknownRunnerError(name, sorted({*self.classes(), *self._instances}))
            runner = cls(**self._config.get(name, {}))
            self._instances[name] = runner
        return runner

    def parse_event(self, event: Mapping[str, Any]) -> RunnerEvent | None:
        """What a push event says, asking only the runners that emit it.

        A runner class lists the event ``source`` values it understands in ``event_sources``
        (``aws.batch`` for AWS Batch); the others are not even built, so an events Lambda
        does not pay for SDK clients it will never use.
        """
        source = event.get("source") if isinstance(event, Mapping) else None
        if not isinstance(source, str):
            return None
        names = {*self._instances, *self.classes()}
        for name in sorted(names):
            cls = type(self._instances[name]) if name in self._instances else self.classes()[name]
            if source not in getattr(cls, "event_sources", ()):
                continue
            runner = self.get(name)
            parsed = runner.parse_event(event)
            if parsed is not None:
                from_event = getattr(runner, "handle_from_event", None)
                handle = from_event(event) if from_event is not None else None
                return RunnerEvent(name, parsed[0], parsed[1], handle)
        return None

    def started(self) -> list[Runner]:
        """Runners already in use (the ones worth polling or waiting on)."""
        return list(self._instances.values())

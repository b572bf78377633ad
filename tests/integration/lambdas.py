"""The Lambda functions as separate warm containers over one backend, for the handler tests.

In AWS each function (api, events, tick) runs in containers of its own, kept warm between
invocations: whatever a container remembers from one call is still there in the next, while
other containers move the same executions on. :class:`Plane` builds that: one store backend,
one virtual clock, one simulated compute, and any number of containers, each its own
:func:`open_runtime` (its own store client and service). A call names the container it runs in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from control_plane.handlers import api, events, tick
from control_plane.handlers.container import install
from control_plane.runtime import Runtime, Settings, load_settings, open_runtime
from control_plane.service.clock import VirtualClock
from control_plane.store.base import StateStore
from runners.testing.simulated import SimulatedRunner
from tests.integration.api_events import LambdaContext, event

__all__ = ["SHELL_TASK", "T0", "TIMINGS", "Plane"]

T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
TIMINGS: dict[str, Any] = {"reconcile_after": 300, "submit_grace": 120}
"""The tick's thresholds in these tests; the DynamoDB store's visit delay follows them as in production."""

SHELL_TASK = """
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo {{ task.id }}"""
"""The body of a script task the simulated compute runs: ``f"  - id: work{SHELL_TASK}"`` in a flow."""


class Plane:
    """One control plane's backend (store, clock, compute) and the containers that serve it."""

    def __init__(self, store_factory: Callable[[], StateStore], tmp_path: Path, **settings: Any) -> None:
        self.clock = VirtualClock(T0)
        self.compute = SimulatedRunner()
        self.store_factory = store_factory
        self.settings: Settings = load_settings(
            {}, data_dir=str(tmp_path / "data"), auth="none", **{**TIMINGS, **settings}
        )
        self.opened: list[Runtime] = []

    def container(self, store: StateStore | None = None) -> Runtime:
        """A new warm container: its own store client (``store``, or a new one) and service."""
        rt = open_runtime(
            self.settings,
            clock=self.clock,
            store=store or self.store_factory(),
            runners={"process": self.compute},
        )
        self.opened.append(rt)
        return rt

    def advance(self, seconds: float) -> None:
        self.clock.sleep_until(self.clock.now() + timedelta(seconds=seconds))

    # -- one invocation of a function, in the container named

    def api(self, rt: Runtime, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API Gateway request served by ``rt`` (the api handler finds its runtime globally)."""
        install(rt)
        try:
            return api.handler(event(method, path, **kwargs), LambdaContext())
        finally:
            install(None)

    def deliver(self, rt: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
        """One EventBridge delivery to the events function, served by ``rt``."""
        install(rt)
        try:
            return events.handler(payload, None)
        finally:
            install(None)

    def tick(self, rt: Runtime) -> dict[str, Any]:
        install(rt)
        try:
            return tick.handler({}, None)
        finally:
            install(None)

    # -- the compute

    def jobs(self, execution_id: str) -> list[str]:
        """The jobs submitted for the execution, in submission order."""
        return [
            n
            for n in self.compute.names()
            if self.compute.spec(n).labels.get("squall.io/execution") == execution_id
        ]

    def close(self) -> None:
        install(None)
        for rt in self.opened:
            rt.close()

"""Run flows through the production driver in tests, with jobs a function scripts.

The service, store and wiring are the real ones (:func:`control_plane.conformance.scratch_runtime`:
``open_local`` on a scratch SQLite file, a virtual clock); only the compute is a stand-in: a
:class:`ScriptedRunner` ends each job as soon as it is submitted, the way ``jobs(spec)`` says::

    def jobs(spec: JobSpec) -> Outcome:
        return Outcome(exit_code=1) if "echo b" in spec.command[-1] else Outcome(outputs={"n": 7})

    result = run(SOURCE, jobs=jobs)
    assert result.state is State.FAILED

Without ``jobs`` every job succeeds. For script tasks that should really run, use
``scratch_runtime()`` as it is (the process runner).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from msgspec import Struct

from control_plane.conformance import FlowRun, run_flow, scratch_runtime
from control_plane.runtime import Runtime
from control_plane.service.clock import VirtualClock
from runners.base import Failure, JobHandle, JobSpec
from runners.testing.simulated import SimulatedRunner

__all__ = ["Outcome", "ScriptedRunner", "run", "scripted"]


class Outcome(Struct, frozen=True):
    """How a scripted job ends: its exit code, log lines, and outputs (sent as the outputs marker)."""

    exit_code: int = 0
    outputs: Mapping[str, Any] | None = None
    lines: Sequence[str] = ()
    failure: Failure | None = None
    reason: str | None = None


Jobs = Callable[[JobSpec], Outcome]


class ScriptedRunner(SimulatedRunner):
    """A runner whose jobs end at submit as ``jobs(spec)`` says (each succeeds without ``jobs``)."""

    def __init__(self, jobs: Jobs | None = None) -> None:
        super().__init__(runner_name="process")
        self.jobs = jobs or (lambda spec: Outcome())

    def submit(self, spec: JobSpec) -> JobHandle:
        first = spec.name not in self.names()
        handle = super().submit(spec)
        if first:
            outcome = self.jobs(spec)
            lines = list(outcome.lines)
            if outcome.outputs is not None:
                lines.append("::" + json.dumps({"outputs": dict(outcome.outputs)}) + "::")
            self.finish(
                spec.name,
                exit_code=outcome.exit_code,
                lines=lines,
                failure=outcome.failure,
                reason=outcome.reason,
            )
        return handle


@contextmanager
def scripted(
    jobs: Jobs | None = None, *, start: datetime | None = None, **service_options: Any
) -> Iterator[Runtime]:
    """A scratch runtime: script tasks are :class:`ScriptedRunner` jobs; the clock starts at ``start``."""
    runner = ScriptedRunner(jobs)
    with scratch_runtime(clock=VirtualClock(start), runners={"process": runner}, **service_options) as rt:
        yield rt


def run(
    source: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    jobs: Jobs | None = None,
    flows: Iterable[str] = (),
    start: datetime | None = None,
    **options: Any,
) -> FlowRun:
    """Deploy ``flows`` (subflows) and ``source``, run ``source`` to its end in a scratch runtime.

    ``options`` are ``Service.start`` keywords (``typed``, ``labels``, ``trigger``) or
    ``Service`` keywords (``on_change``, ``id_factory``).
    """
    service_keys = {"on_change", "id_factory", "on_logs", "poll_interval"}
    service_options = {k: v for k, v in options.items() if k in service_keys}
    start_options = {k: v for k, v in options.items() if k not in service_keys}
    with scripted(jobs, start=start, **service_options) as rt:
        for other in flows:
            rt.service.deploy(other)
        return run_flow(rt, source, inputs, **start_options)

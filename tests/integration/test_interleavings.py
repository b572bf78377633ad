"""Randomized interleavings of api calls, runner events and ticks over separate warm containers.

Three containers (:class:`Plane`) serve every function over one SQLite store. Each
interleaving starts one execution of each flow below and then, driven by a seeded random
generator, finishes jobs, delivers their push events to any container (reordered, duplicated,
some lost, with late RUNNING events), ticks any container after a random clock advance, and
resumes or restarts executions through any container's api. A quiet phase then lets every
event arrive and the tick run until nothing moves. Every execution must end where a run on
one container with in-order delivery ends (the reference, computed first), and the api must
never refuse a resume or restart that the stored execution allows.

The outcome of each job depends only on its task and attempt, so the final state is the
same whatever the order; it is the control plane that must not lose its way.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.runtime import Runtime
from control_plane.store.sqlite import SqliteStore
from runners.base import JobState
from tests.integration.lambdas import SHELL_TASK, Plane

INTERLEAVINGS = int(os.environ.get("SQUALL_INTERLEAVINGS", "200"))  # ~13 s on 2 cores; more: set it
SEED = int(os.environ.get("SQUALL_INTERLEAVINGS_SEED", "18"))
STEPS = 60  # random actions per interleaving, before the quiet phase
QUIET_ROUNDS = 40

NS = "squall.interleavings"

FLOWS = {
    "retried": f"""
id: retried
namespace: {NS}
tasks:
  - id: flaky{SHELL_TASK}
    retry:
      type: constant
      interval: PT1M
      maxAttempts: 3
""",
    "approval": f"""
id: approval
namespace: {NS}
tasks:
  - id: work{SHELL_TASK}
  - id: approve
    type: io.kestra.plugin.core.flow.Pause
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: approved
""",
    "fanout": f"""
id: fanout
namespace: {NS}
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: [1, 2, 3]
    concurrencyLimit: 2
    tasks:
      - id: lane{SHELL_TASK.replace(chr(10), chr(10) + "    ")}
  - id: done{SHELL_TASK}
""",
    "restarted": f"""
id: restarted
namespace: {NS}
tasks:
  - id: first{SHELL_TASK}
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT2M
  - id: last{SHELL_TASK}
""",
    "timeout": f"""
id: timeout
namespace: {NS}
tasks:
  - id: slow{SHELL_TASK}
    timeout: PT5M
""",
}


def fails(task_id: str, attempt: int) -> bool:
    """The compute's script: what each job does, by task and attempt only."""
    return (task_id == "flaky" and attempt < 3) or (task_id == "last" and attempt == 1)


NEVER_ENDS = {"slow"}  # ended only by the control plane's cancel (its timeout)
RESTART_ONCE = {"restarted"}  # restarted through the api once, when it has failed


def signature(execution: Execution) -> tuple[Any, ...]:
    runs = sorted(
        (tr.task_id, tr.value or "", tr.state.value, len(tr.attempts)) for tr in execution.taskruns.values()
    )
    return (execution.state.value, tuple(runs))


@dataclass
class Tally:
    deliveries: int = 0
    ticks: int = 0
    api_calls: int = 0
    refused: list[str] = field(default_factory=list)


class World:
    """One interleaving: the compute, the event bus and the operator, around a plane's containers."""

    def __init__(
        self, plane: Plane, containers: list[Runtime], rng: random.Random | None, tally: Tally
    ) -> None:
        self.plane = plane
        self.containers = containers
        self.rng = rng  # None: the reference run, one container, everything in order
        self.tally = tally
        self.observer = plane.store_factory()
        self.inbox: list[dict[str, Any]] = []
        self.finished: set[str] = set()
        self.announced: set[str] = set()
        self.restarted: set[str] = set()
        self.executions: dict[str, str] = {}  # execution id -> flow id
        self.known_jobs = len(plane.compute.names())

    def container(self) -> Runtime:
        return self.rng.choice(self.containers) if self.rng else self.containers[0]

    def chance(self, p: float) -> bool:
        return self.rng is not None and self.rng.random() < p

    def api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.tally.api_calls += 1
        return self.plane.api(self.container(), method, path, **kwargs)

    def start(self) -> None:
        flows = list(FLOWS)
        if self.rng:
            self.rng.shuffle(flows)
        for flow_id in flows:
            response = self.api("POST", f"/api/v1/main/executions/{NS}/{flow_id}", json_body={})
            assert response["statusCode"] == 200, response["body"]
            self.executions[json.loads(response["body"])["id"]] = flow_id

    # -- what the world can do

    def jobs(self) -> list[str]:
        return self.plane.compute.names()[self.known_jobs :]

    def finishable(self) -> list[str]:
        compute = self.plane.compute
        return [
            name
            for name in self.jobs()
            if name not in self.finished
            and compute.spec(name).labels["squall.io/task"] not in NEVER_ENDS
            and not JobState(compute.event(name)["detail"]["status"]).terminal
        ]

    def finish(self, name: str) -> None:
        labels = self.plane.compute.spec(name).labels
        failed = fails(labels["squall.io/task"], int(labels["squall.io/attempt"]))
        self.plane.compute.finish(name, exit_code=1 if failed else 0, lines=[f"{name} ends"])
        self.finished.add(name)
        if self.chance(0.3):
            self.inbox.append(self.plane.compute.event(name, JobState.RUNNING))  # may arrive after the end

    def announce(self) -> None:
        """Every job that has ended (finished here, or cancelled by the control plane) sends its event."""
        for name in self.jobs():
            event = self.plane.compute.event(name)
            if name not in self.announced and JobState(event["detail"]["status"]).terminal:
                self.announced.add(name)
                self.inbox.append(event)

    def deliver(self, index: int = 0) -> None:
        event = self.inbox[index]
        if not self.chance(0.25):  # else: delivered now and again later (at-least-once)
            self.inbox.pop(index)
        if self.chance(0.1):
            return  # lost: the tick's reconcile poll must make up for it
        self.tally.deliveries += 1
        self.plane.deliver(self.container(), event)

    def tick(self, seconds: float) -> None:
        self.plane.advance(seconds)
        self.tally.ticks += 1
        self.plane.tick(self.container())

    def operate(self) -> None:
        """What an operator does: resume what is paused, restart once what may be restarted."""
        for execution_id, flow_id in self.executions.items():
            state = self.observer.get_execution(execution_id).state
            if state is State.PAUSED:
                self.expect_ok(
                    self.api("POST", f"/api/v1/main/executions/{execution_id}/actions/resume", json_body={})
                )
            elif state is State.FAILED and flow_id in RESTART_ONCE and execution_id not in self.restarted:
                self.restarted.add(execution_id)
                self.expect_ok(self.api("POST", f"/api/v1/main/executions/{execution_id}/actions/restart"))

    def expect_ok(self, response: dict[str, Any]) -> None:
        if response["statusCode"] != 200:
            self.tally.refused.append(response["body"])

    # -- the two phases

    def shuffle(self, steps: int) -> None:
        assert self.rng is not None
        for _ in range(steps):
            self.announce()
            roll = self.rng.random()
            if roll < 0.3 and (names := self.finishable()):
                self.finish(self.rng.choice(names))
            elif roll < 0.65 and self.inbox:
                self.deliver(self.rng.randrange(len(self.inbox)))
            elif roll < 0.85:
                self.tick(self.rng.choice([0, 30, 61, 130, 301]))
            else:
                self.operate()

    def quiet(self) -> None:
        """Everything sent arrives, in order; jobs end; the tick runs until nothing is left to do."""
        for _ in range(QUIET_ROUNDS):
            for name in self.finishable():
                self.finish(name)
            self.announce()
            while self.inbox:
                event = self.inbox.pop(0)
                self.tally.deliveries += 1
                self.plane.deliver(self.container(), event)
            self.operate()
            ended = all(self.observer.get_execution(x).state.terminal for x in self.executions)
            if ended and not self.finishable():
                return
            self.tick(301)

    def outcome(self) -> dict[str, tuple[Any, ...] | None]:
        """Flow id -> signature of its execution's final state (None: not ended)."""
        result: dict[str, tuple[Any, ...] | None] = {}
        for execution_id, flow_id in self.executions.items():
            execution = self.observer.get_execution(execution_id)
            result[flow_id] = signature(execution) if execution.state.terminal else None
        return result


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    p = Plane(lambda: SqliteStore(tmp_path / "squall.db"), tmp_path)
    yield p
    p.close()


@pytest.mark.slow  # 40 s: every interleaving of two warm containers
def test_interleavings_over_warm_containers_end_where_one_container_ends(plane: Plane) -> None:
    deployer = plane.container()
    for source in FLOWS.values():
        deployed = plane.api(
            deployer, "POST", "/api/v1/main/flows", body=source, content_type="application/x-yaml"
        )
        assert deployed["statusCode"] == 200, deployed["body"]

    reference_world = World(plane, [plane.container()], None, Tally())
    reference_world.start()
    reference_world.quiet()
    reference = reference_world.outcome()
    assert all(reference.values()), reference
    assert reference["retried"] is not None and reference["retried"][0] == "SUCCESS"
    assert reference["restarted"] is not None and reference["restarted"][0] == "SUCCESS"
    assert reference["timeout"] is not None and reference["timeout"][0] == "FAILED"

    containers = [plane.container() for _ in range(3)]  # warm for the whole campaign, as in Lambda
    tally = Tally()
    stuck: list[tuple[int, str]] = []
    wrong: list[tuple[int, str, Any]] = []
    started = time.monotonic()
    for i in range(INTERLEAVINGS):
        world = World(plane, containers, random.Random(SEED * 100_003 + i), tally)
        world.start()
        world.shuffle(STEPS)
        world.quiet()
        for flow_id, final in world.outcome().items():
            if final is None:
                stuck.append((i, flow_id))
            elif final != reference[flow_id]:
                wrong.append((i, flow_id, final))
    elapsed = time.monotonic() - started

    print(f"\ninterleavings: {INTERLEAVINGS}, stuck: {len(stuck)}, wrong final state: {len(wrong)}")
    print(
        f"({INTERLEAVINGS * len(FLOWS)} executions, {tally.deliveries} event deliveries, {tally.ticks} ticks,"
        f" {tally.api_calls} api calls, {len(tally.refused)} refused; seed {SEED}; {elapsed:.1f} s)"
    )
    assert not stuck, f"stuck (interleaving, flow): {stuck[:10]}"
    assert not wrong, f"wrong final states: {wrong[:5]} (reference: {reference})"
    assert not tally.refused, tally.refused[:5]

"""Flow trigger ``preconditions`` over several upstream flows: the window lives in the store,
and ends evaluated at once (threads, processes; SQLite and DynamoDB Local) fire once per window.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.runtime import Runtime
from control_plane.service.clock import VirtualClock
from control_plane.triggers.preconditions import state_key
from tests.integration.service_helpers import messages, runtime

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def upstream(flow_id: str) -> str:
    return (
        f"id: {flow_id}\nnamespace: squall.pre\ntasks:\n"
        f"  - id: work\n    type: io.kestra.plugin.core.log.Log\n    message: {flow_id} done\n"
    )


BOTH = """
id: both
namespace: squall.pre
tasks:
  - id: go
    type: io.kestra.plugin.core.log.Log
    message: "after {{ trigger.flowId }} {{ trigger.executionId }}"
triggers:
  - id: after_a_and_b
    type: io.kestra.plugin.core.trigger.Flow
    preconditions:
      id: a_and_b
      timeWindow:
        type: DAILY_TIME_DEADLINE
        deadline: "12:00:00"
      flows:
        - namespace: squall.pre
          flowId: a
          states: [SUCCESS]
        - namespace: squall.pre
          flowId: b
"""
KEY = state_key("squall.pre", "both", "after_a_and_b", "a_and_b")


def deploy(rt: Runtime) -> None:
    for source in (upstream("a"), upstream("b"), BOTH):
        rt.service.deploy(source, "flow.yaml")


def boths(rt: Runtime) -> list[str]:
    return [s.id for s in rt.store.list_executions(namespace="squall.pre", flow_id="both").items]


def run(rt: Runtime, flow_id: str) -> Execution:
    return rt.service.run(rt.service.start("squall.pre", flow_id).id, deadline=time.monotonic() + 60)


def test_the_flow_starts_when_both_upstream_flows_ended_before_the_deadline(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    with runtime(tmp_path, clock=clock) as rt:
        deploy(rt)
        run(rt, "a")
        assert boths(rt) == []
        record = rt.store.get_trigger(KEY)
        assert record is not None and list(record.data["results"]) == ["condition_1"]
        clock.sleep_until(T0 + timedelta(hours=1))
        b = run(rt, "b")
        (started,) = boths(rt)
        done = rt.service.run(started, deadline=time.monotonic() + 60)
        assert done.state is State.SUCCESS and done.trigger is not None
        assert done.trigger["executionId"] == b.id
        assert messages(rt, started, "go") == [f"after b {b.id}"]
        assert rt.store.get_trigger(KEY).data["results"] == {}  # type: ignore[union-attr]

        run(rt, "b")  # reset on success: b alone does not fire it again
        assert len(boths(rt)) == 1


def test_ends_after_the_deadline_are_not_counted(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    with runtime(tmp_path, clock=clock) as rt:
        deploy(rt)
        run(rt, "a")
        clock.sleep_until(T0 + timedelta(hours=5))  # 13:00, past the 12:00 deadline
        run(rt, "b")
        assert boths(rt) == []
        clock.sleep_until(T0 + timedelta(days=1))  # the next morning: a new, empty window
        run(rt, "b")
        assert boths(rt) == []
        run(rt, "a")
        assert len(boths(rt)) == 1


def ended(flow_id: str, n: int) -> Execution:
    return Execution(f"{flow_id}-{n:03d}", "squall.pre", flow_id, 1, State.SUCCESS, T0)


def fire(rt: Runtime, execution: Execution) -> list[str]:
    service = rt.service
    return service.driver.flow_triggers.fire(execution, service.flow, service.start, now=service.clock.now)


ROUNDS = 12


def _race(rts: list[Runtime], rounds: int) -> list[list[str]]:
    """Each round, one runtime counts a's end and the other b's, at once."""
    barrier = threading.Barrier(2)
    started: list[list[str]] = [[], []]

    def worker(k: int) -> None:
        for n in range(rounds):
            barrier.wait(30)
            started[k] += fire(rts[k], ended("ab"[k], n))

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return started


@pytest.fixture
def two_runtimes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[list[Runtime], Callable[[], Any]]]:
    """Two runtimes (each its own store client and service) on one SQLite file or DynamoDB table."""
    clock = VirtualClock(T0 + timedelta(hours=1))
    if request.param == "sqlite":
        rts = [runtime(tmp_path, clock=clock), runtime(tmp_path, clock=clock)]
    else:
        from control_plane.store.dynamodb import DynamoDBStore
        from tests.emulators.fixtures import dynamodb_client

        local = request.getfixturevalue("dynamodb_local")
        _, table = request.getfixturevalue("dynamodb_table")
        rts = [
            runtime(
                tmp_path / str(k),
                clock=clock,
                store=DynamoDBStore(table, client=dynamodb_client(local.endpoint)),
            )
            for k in (0, 1)
        ]
    try:
        yield rts, clock
    finally:
        for rt in rts:
            rt.close()


@pytest.mark.parametrize("two_runtimes", ["sqlite", "dynamodb"], indirect=True)
def test_two_runtimes_counting_ends_at_once_fire_once_per_window(
    two_runtimes: tuple[list[Runtime], Callable[[], Any]],
) -> None:
    rts, _ = two_runtimes
    deploy(rts[0])
    started = _race(rts, ROUNDS)
    every = started[0] + started[1]
    assert len(every) == ROUNDS and len(set(every)) == ROUNDS  # one per round, never two
    assert sorted(boths(rts[0])) == sorted(every)
    assert rts[0].store.get_trigger(KEY).data["results"] == {}  # type: ignore[union-attr]
    # an end delivered again (a retried Lambda) starts nothing new
    assert set(fire(rts[1], ended("a", 0)) + fire(rts[0], ended("b", 0))) <= set(every)
    assert len(boths(rts[0])) == ROUNDS


def _process(db: str, flow_id: str, rounds: int, barrier: Any, out: Any) -> None:
    """One process of the two-process race: its own runtime on the shared SQLite file."""
    from control_plane.runtime import local_settings, open_local

    clock = VirtualClock(T0 + timedelta(hours=1))
    with open_local(local_settings(Path(db)), clock=clock) as rt:
        started: list[str] = []
        for n in range(rounds):
            barrier.wait(60)
            started += fire(rt, ended(flow_id, n))
        out.put(started)


def test_two_processes_counting_ends_at_once_fire_once_per_window(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    from control_plane.runtime import local_settings, open_local

    with open_local(local_settings(db), clock=VirtualClock(T0)) as rt:
        deploy(rt)
    spawn = multiprocessing.get_context("spawn")
    barrier, out = spawn.Barrier(2), spawn.Queue()
    procs = [spawn.Process(target=_process, args=(str(db), f, ROUNDS, barrier, out)) for f in ("a", "b")]
    for p in procs:
        p.start()
    every = out.get(timeout=120) + out.get(timeout=120)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(every) == ROUNDS and len(set(every)) == ROUNDS
    with open_local(local_settings(db), clock=VirtualClock(T0)) as rt:
        assert sorted(boths(rt)) == sorted(every)

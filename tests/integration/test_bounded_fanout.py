"""Bounded fan-out through the Lambda handlers on a real store (ADR 0015, issue 28 part 3).

A wide ForEach is started by the ``api`` function, which writes at most ``fanout_chunk`` task
runs; the ``tick`` function's continuations materialise the rest chunk by chunk; redelivered
and concurrent continuations (separate processes on one SQLite file, and on DynamoDB Local)
create and submit every task run exactly once. Counted work, not wall time, is asserted.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.events import TimerFired
from control_plane.engine.states import State
from control_plane.runtime import Runtime, load_settings, open_runtime
from control_plane.service.clock import VirtualClock
from control_plane.store.base import StateStore
from runners.testing.simulated import SimulatedRunner
from tests.integration.lambdas import SHELL_TASK, T0, TIMINGS, Plane

CHUNK = 20


def wide(n: int) -> str:
    return f"""
id: wide
namespace: squall.fanout
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: {json.dumps(list(range(n)))}
    tasks:
      - id: work{SHELL_TASK.replace(chr(10), chr(10) + "    ")}
"""


@pytest.fixture
def plane(store_factory: Callable[[], StateStore], tmp_path: Path) -> Iterator[Plane]:
    # tick_seconds ~0: one round of due timers per tick, so each tick continues one chunk
    p = Plane(store_factory, tmp_path, fanout_chunk=CHUNK, tick_seconds=1e-9)
    yield p
    p.close()


def _start(plane: Plane, n: int, api: Runtime | None = None) -> str:
    api = api or plane.container()
    deployed = plane.api(api, "POST", "/api/v1/main/flows", body=wide(n), content_type="application/x-yaml")
    assert deployed["statusCode"] == 200, deployed
    started = plane.api(api, "POST", "/api/v1/main/executions/squall.fanout/wide")
    assert started["statusCode"] == 200, started
    return str(json.loads(started["body"])["id"])


def _children(store: StateStore, execution_id: str) -> list[int]:
    """The lanes of the loop's child task runs as stored (one entry per task run)."""
    ex = store.get_execution(execution_id)
    return [tr.lane for tr in ex.taskruns.values() if tr.task_id == "work"]


def _pending(store: StateStore, execution_id: str) -> list[str]:
    return [
        t.key
        for t in store.due_timers(T0 + timedelta(days=1))
        if t.execution_id == execution_id and t.key.startswith("fanout:")
    ]


def test_a_wide_start_writes_one_chunk_and_the_ticks_continue_it_to_the_end(plane: Plane) -> None:
    n = 5 * CHUNK + 7
    execution_id = _start(plane, n)
    store = plane.store_factory()
    # the start: the ForEach and CHUNK children (the root's one lane is not counted)
    assert len(_children(store, execution_id)) == CHUNK
    assert len(_pending(store, execution_id)) == 1
    sizes: list[int] = []
    while _pending(store, execution_id):
        before = len(_children(store, execution_id))
        plane.tick(plane.container())  # each tick in a container of its own: no warm copy helps
        sizes.append(len(_children(store, execution_id)) - before)
        assert len(sizes) <= n // CHUNK + 2, f"continuations do not converge: {sizes}"
    assert max(sizes) <= CHUNK
    lanes = _children(store, execution_id)
    assert sorted(lanes) == list(range(n))  # every lane once
    names = plane.jobs(execution_id)
    assert len(names) == len(set(names)) == n  # every job submitted once
    events = plane.container()
    for name in names:
        plane.compute.finish(name)
        assert plane.deliver(events, plane.compute.event(name)) == {"applied": 1}
    final = store.get_execution(execution_id)
    assert final.state is State.SUCCESS
    assert Counter(tr.state for tr in final.taskruns.values()) == {State.SUCCESS: n + 1}


def test_when_every_job_falls_silent_each_tick_polls_a_batch_and_the_next_ones_the_rest(
    plane: Plane,
) -> None:
    """The events stop arriving for a wide fan-out (a rule throttled, misconfigured): every
    job is unheard at once. A tick asks about them in its runner's batches and stops when its
    budget is spent (here after the first: ``tick_seconds`` ~0), so no invocation grows with
    the fan-out; the next ticks poll the rest, and every job's end is applied once."""
    n = 2 * CHUNK + 5
    plane.compute.carries_handles = False  # type: ignore[misc]  # each handle stored: any tick can poll
    plane.compute.poll_batch = 10  # type: ignore[misc]  # AWS Batch asks about 100 per call
    execution_id = _start(plane, n)
    store = plane.store_factory()
    while _pending(store, execution_id):
        plane.tick(plane.container())
    names = plane.jobs(execution_id)
    assert len(names) == len(set(names)) == n
    for name in names:
        plane.compute.finish(name)  # their events are never delivered
    plane.advance(TIMINGS["reconcile_after"] + 1)
    ticker = plane.container()
    reports = []
    while store.get_execution(execution_id).state is not State.SUCCESS:
        reports.append(plane.tick(ticker))
        assert len(reports) <= n // 10 + 2, f"the polls do not converge: {reports}"
    assert [r["polled"] for r in reports] == [10] * (n // 10) + [n % 10]
    assert sum(r["ended"] for r in reports) == n
    final = store.get_execution(execution_id)
    assert Counter(tr.state for tr in final.taskruns.values()) == {State.SUCCESS: n + 1}


def test_a_continuation_delivered_three_times_creates_nothing_twice(plane: Plane) -> None:
    execution_id = _start(plane, 3 * CHUNK)
    store = plane.store_factory()
    (key,) = _pending(store, execution_id)
    for _ in range(3):  # the message, then two redeliveries, each in a container of its own
        plane.container().service.advance(execution_id, TimerFired(at=plane.clock.now(), key=key))
    lanes = _children(store, execution_id)
    assert len(lanes) == len(set(lanes)) == 2 * CHUNK  # one chunk more, not three
    names = plane.jobs(execution_id)
    assert len(names) == len(set(names)) == 2 * CHUNK
    for _ in range(5):  # the ticks fire the stale key (a no-op, deleted) and the pending ones
        plane.tick(plane.container())
    names = plane.jobs(execution_id)
    assert len(names) == len(set(names)) == 3 * CHUNK
    assert _pending(store, execution_id) == []


# ------------------------------------------------------------------ concurrent continuations


def _continue(spec: dict[str, Any], out: Any, ready: Any) -> None:
    """A separate process continuing the loop through the production timer path until nothing is due.

    Cloud semantics on any store: no local lease (the Lambdas have none), versioned saves only.
    """
    store: StateStore
    if spec["backend"] == "sqlite":
        from control_plane.store.sqlite import SqliteStore

        store = SqliteStore(Path(spec["db"]))
    else:
        from control_plane.store.dynamodb import DynamoDBStore
        from tests.emulators.fixtures import dynamodb_client

        store = DynamoDBStore(spec["table"], client=dynamodb_client(spec["endpoint"]))
    compute = SimulatedRunner()
    rt = _runtime(store, compute, spec["data"])
    rt.service.driver.ownership = None
    ready.wait(timeout=60)  # both processes loaded: they race from here
    idle = 0
    while idle < 3:
        idle = 0 if rt.service.driver.fire_timers(fresh=True) else idle + 1
    out.put(compute.names())
    rt.close()


def _runtime(store: StateStore, compute: SimulatedRunner, data: str) -> Runtime:
    settings = load_settings(
        {}, data_dir=data, auth="none", fanout_chunk=CHUNK, submit_budget=10_000, **TIMINGS
    )
    return open_runtime(settings, clock=VirtualClock(T0), store=store, runners={"process": compute})


@pytest.mark.parametrize("backend", ["sqlite", "dynamodb"])
def test_two_processes_continuing_one_loop_create_and_submit_each_task_run_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    n = 6 * CHUNK
    spec: dict[str, Any] = {"backend": backend, "data": str(tmp_path / "data")}
    if backend == "sqlite":
        from control_plane.store.sqlite import SqliteStore

        spec["db"] = str(tmp_path / "squall.db")
        store: StateStore = SqliteStore(Path(spec["db"]))
    else:
        from control_plane.store.dynamodb import DynamoDBStore

        client, table = request.getfixturevalue("dynamodb_table")
        spec |= {"endpoint": request.getfixturevalue("dynamodb_local").endpoint, "table": table}
        store = DynamoDBStore(table, client=client)
    compute = SimulatedRunner()
    rt = _runtime(store, compute, spec["data"])
    rt.service.deploy(wide(n))
    execution_id = rt.service.start("squall.fanout", "wide").id
    if rt.service.driver.ownership is not None:
        rt.service.driver.ownership.release(execution_id)
    ctx = multiprocessing.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Barrier(2)
    workers = [ctx.Process(target=_continue, args=(spec, out, ready)) for _ in range(2)]
    for w in workers:
        w.start()
    submitted = [*compute.names(), *out.get(timeout=60), *out.get(timeout=60)]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    lanes = _children(store, execution_id)
    assert sorted(lanes) == list(range(n))
    assert Counter(submitted).most_common(1)[0][1] == 1 and len(submitted) == n
    assert _pending(store, execution_id) == []
    rt.close()


class SlowCompute(SimulatedRunner):
    """A backend whose submit takes ``latency`` seconds (AWS Batch: four calls per job)."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency

    def submit(self, spec: Any) -> Any:
        import time

        time.sleep(self.latency)  # the call's latency, not a wait for state
        return super().submit(spec)


def test_a_step_out_of_submit_time_leaves_the_rest_to_the_tick_each_job_once(
    store_factory: Callable[[], StateStore], tmp_path: Path
) -> None:
    plane = Plane(store_factory, tmp_path, fanout_chunk=CHUNK, submit_seconds=0.05)
    plane.compute = SlowCompute(latency=0.02)
    try:
        execution_id = _start(plane, CHUNK - 1)  # one chunk, no continuation
        store = plane.store_factory()
        assert len(_children(store, execution_id)) == CHUNK - 1
        assert 1 <= len(plane.jobs(execution_id)) <= 5  # ~0.05 s of 0.02 s submits, then it answered
        plane.tick(plane.container())
        assert len(plane.jobs(execution_id)) <= 5  # still under their writer's claim
        plane.advance(TIMINGS["submit_grace"] + 1)
        for _ in range(10):  # find first, then submit: still one job each (a tick has a time budget)
            plane.tick(plane.container())
            if len(plane.jobs(execution_id)) >= CHUNK - 1:
                break
        names = plane.jobs(execution_id)
        assert len(names) == len(set(names)) == CHUNK - 1
    finally:
        plane.close()


def test_the_container_that_ran_out_of_submit_time_submits_the_rest_at_its_next_tick(
    store_factory: Callable[[], StateStore], tmp_path: Path
) -> None:
    plane = Plane(store_factory, tmp_path, fanout_chunk=CHUNK, submit_seconds=0.05)
    plane.compute = SlowCompute(latency=0.02)
    try:
        warm = plane.container()  # squall server's one process, or a warm container
        execution_id = _start(plane, CHUNK - 1, warm)
        assert len(plane.jobs(execution_id)) <= 5
        for _ in range(10):  # no grace to wait for: the claim is its own
            plane.tick(warm)
            if len(plane.jobs(execution_id)) >= CHUNK - 1:
                break
        names = plane.jobs(execution_id)
        assert len(names) == len(set(names)) == CHUNK - 1
        assert plane.clock.now() == T0
    finally:
        plane.close()


def test_an_events_container_out_of_submit_time_submits_the_rest_at_its_next_event(
    store_factory: Callable[[], StateStore], tmp_path: Path
) -> None:
    """An ``events`` container never ticks: the jobs its step left under its claim go out with
    its next events, each job once, instead of waiting for the claim to lapse (issue 28)."""
    plane = Plane(store_factory, tmp_path, fanout_chunk=CHUNK, submit_seconds=0.05)
    plane.compute = SlowCompute(latency=0.02)
    try:
        warm = plane.container()
        execution_id = _start(plane, CHUNK - 1, warm)
        first = plane.jobs(execution_id)[0]
        assert len(plane.jobs(execution_id)) <= 5
        owed = list(warm.service.driver.owed)
        store = plane.store_factory()
        stored = [store.get_job(job.name) for job in owed]
        assert owed and [job.version for job in owed] == [j.version if j else None for j in stored]
        for _ in range(20):  # a job that reports RUNNING: each call spends ~0.05 s on submits
            answer = plane.deliver(warm, plane.compute.event(first))
            assert answer == {"applied": 0}  # nothing ended: the execution does not move
            if len(plane.jobs(execution_id)) >= CHUNK - 1:
                break
        names = plane.jobs(execution_id)
        assert len(names) == len(set(names)) == CHUNK - 1
        assert plane.clock.now() == T0  # no grace waited, no tick
        assert plane.compute.calls["submit"] == CHUNK - 1
    finally:
        plane.close()

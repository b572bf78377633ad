"""A flow's ``concurrency`` in the local runtime: across processes on one SQLite file, and in one.

Kestra (``ExecutorService.checkConcurrencyLimit``, ``JdbcExecutor``): at most ``limit``
executions of the flow run; with ``behavior: QUEUE`` the others stay QUEUED and start, in
order, as running ones end.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from control_plane.engine.states import State
from control_plane.service.clock import VirtualClock
from control_plane.service.concurrency import Slots
from control_plane.store.sqlite import SqliteStore
from tests.integration.service_helpers import messages, runtime, wait_for

ROOT = Path(__file__).resolve().parents[2]
QUEUED = "Flow is queued due to concurrency limit exceeded, 1 running(s)"


def test_squall_runs_racing_on_one_sqlite_file_run_one_at_a_time_in_start_order(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    flow = tmp_path / "limited.yaml"
    flow.write_text(
        "id: limited\nnamespace: squall.compat.service\nconcurrency:\n  limit: 1\ntasks:\n"
        "  - id: hold\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n      type: io.kestra.plugin.core.runner.Process\n"
        f"    commands: ['while [ ! -f {gate} ]; do sleep 0.02; done']\n"
    )
    db = tmp_path / "squall.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    subprocess.run(  # deploy first: the racers then only create executions
        [sys.executable, "-m", "control_plane.cli", "flows", "deploy", str(flow), "--db", str(db)],
        env=env,
        check=True,
        capture_output=True,
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "control_plane.cli", "run", str(flow), "--db", str(db), "-q"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    store = SqliteStore(db)
    try:
        # every racer created its execution while the first admitted one holds the gate
        wait_for(lambda: len(store.list_executions().items) == 3, 60, "three executions")
        states = sorted(str(s.state) for s in store.list_executions().items)
        assert states == ["QUEUED", "QUEUED", "RUNNING"]
        # the queue's order is the order the racers' conditional writes landed in, which two
        # processes creating executions 30 us apart need not share with their creation times
        queue = list(Slots(store).book("squall.compat.service", "limited").queued)
        assert len(queue) == 2
        gate.write_text("open")
        outputs = [p.communicate(timeout=120)[0] for p in racers]
        assert [p.returncode for p in racers] == [0, 0, 0], outputs
        executions = sorted(
            (store.get_execution(s.id) for s in store.list_executions().items),
            key=lambda e: e.started or e.created,
        )
        assert [e.state for e in executions] == [State.SUCCESS] * 3
        for before, after in itertools.pairwise(executions):
            assert before.ended is not None and after.started is not None
            assert after.started >= before.ended  # never two at once
        queued = [e for e in executions if any(QUEUED in x.message for x in store.read_logs(e.id).items)]
        assert len(queued) == 2 and executions[0] not in queued
        assert [e.id for e in executions[1:]] == queue  # started in the order they queued
    finally:
        for p in racers:
            if p.poll() is None:
                p.kill()
                p.wait()
        store.close()


def test_a_queued_execution_starts_when_the_running_one_ends(tmp_path: Path) -> None:
    source = (
        "id: q\nnamespace: t\nconcurrency:\n  limit: 1\ntasks:\n"
        "  - id: hold\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT10M\n"
        "  - id: said\n    type: io.kestra.plugin.core.log.Log\n    message: '{{ execution.id }}'\n"
    )
    clock = VirtualClock()
    with runtime(tmp_path, clock=clock) as rt:
        service = rt.service
        record = service.deploy(source, "q.yaml")
        first = service.start(record.namespace, record.id)
        second = service.start(record.namespace, record.id)
        assert (first.state, second.state) == (State.RUNNING, State.QUEUED)
        assert len(second.taskruns) == 0 and messages(rt, second.id) == [QUEUED]
        done = service.run(first.id, deadline=time.monotonic() + 60)
        assert done.state is State.SUCCESS
        promoted = service.get(second.id)
        assert promoted.state is State.RUNNING and promoted.started == done.ended
        final = service.run(second.id, deadline=time.monotonic() + 60)
        assert final.state is State.SUCCESS and messages(rt, second.id, "said") == [second.id]
        assert final.ended is not None and (final.ended - done.ended).total_seconds() == 600


def test_a_queued_execution_killed_gives_up_its_place(tmp_path: Path) -> None:
    source = (
        "id: q\nnamespace: t\nconcurrency:\n  limit: 1\ntasks:\n"
        "  - id: hold\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT10M\n"
    )
    with runtime(tmp_path, clock=VirtualClock()) as rt:
        service = rt.service
        record = service.deploy(source, "q.yaml")
        first, second, third = (service.start(record.namespace, record.id) for _ in range(3))
        assert service.kill(second.id).state is State.KILLED
        assert service.run(first.id, deadline=time.monotonic() + 60).state is State.SUCCESS
        assert service.get(second.id).state is State.KILLED  # never started
        assert service.get(third.id).state is State.RUNNING
        assert service.run(third.id, deadline=time.monotonic() + 60).state is State.SUCCESS
        assert service.driver.slots.book(record.namespace, record.id).running == ()


def test_the_tick_repairs_what_a_dead_process_left_half_done(tmp_path: Path) -> None:
    # A process died after handing a slot to a queued execution but before starting it, and
    # another one after its execution ended but before freeing the slot.
    from datetime import timedelta

    from control_plane.service.concurrency import book_key
    from control_plane.store.base import TriggerRecord

    source = (
        "id: q\nnamespace: t\nconcurrency:\n  limit: 1\ntasks:\n"
        "  - id: hold\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT10M\n"
    )
    with runtime(tmp_path, clock=VirtualClock()) as rt:
        service = rt.service
        slots = service.driver.slots
        record = service.deploy(source, "q.yaml")
        first, second, third = (service.start(record.namespace, record.id) for _ in range(3))
        assert slots.release("t", "q", first.id, 1) == (second.id,)  # handed over; nobody started it
        assert service.get(second.id).state is State.QUEUED
        service.tick(reconcile_after=timedelta(minutes=1), submit_grace=timedelta(minutes=1))
        assert service.get(second.id).state is State.RUNNING

        service.kill(first.id)  # its slot was already given away: ends without changing the book
        assert service.run(second.id, deadline=time.monotonic() + 60).state is State.SUCCESS
        assert service.get(third.id).state is State.RUNNING  # handed on at the second one's end
        book = rt.store.get_trigger(book_key("t", "q"))
        assert book is not None
        # the third ends, but its slot stays in the book (as if its process died before freeing it)
        assert service.run(third.id, deadline=time.monotonic() + 60).state is State.SUCCESS
        stale = rt.store.get_trigger(book_key("t", "q"))
        assert stale is not None
        rt.store.put_trigger(
            TriggerRecord(stale.key, {"running": [third.id], "queued": []}), expected_version=stale.version
        )
        fourth = service.start(record.namespace, record.id)
        assert fourth.state is State.QUEUED
        service.tick(reconcile_after=timedelta(minutes=1), submit_grace=timedelta(minutes=1))
        assert service.get(fourth.id).state is State.RUNNING
        assert slots.book("t", "q").running == (fourth.id,)

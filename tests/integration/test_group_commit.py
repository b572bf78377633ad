"""Group commit: jobs of one execution that one poll hears ended are stored in one write.

The jobs run on the simulated runner (its jobs end when the test says so), behind the
production service and the SQLite store; writes are counted at the store's write transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from control_plane.engine.states import State
from control_plane.runtime import Runtime, local_settings, open_local
from control_plane.service.clock import VirtualClock
from control_plane.store.sqlite import SqliteStore
from runners.testing.simulated import SimulatedRunner
from tests.integration.lambdas import T0
from tests.integration.service_helpers import messages

N = 8
TASK = "{indent}- id: {id}\n{indent}  type: io.kestra.plugin.scripts.shell.Commands\n"
TASK += "{indent}  commands: ['echo']\n"
FLOW = "id: wide\nnamespace: test.group\ntasks:\n  - id: p\n    type: io.kestra.plugin.core.flow.Parallel\n"
FLOW += "    tasks:\n" + "".join(TASK.format(indent="      ", id=f"t{i}") for i in range(N))
FLOW += TASK.format(indent="  ", id="after")  # so the execution goes on after the group


class Plane:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "squall.db"
        self.store = SqliteStore(self.db)
        self.compute = SimulatedRunner()
        self.rt: Runtime = open_local(
            local_settings(self.db),
            clock=VirtualClock(T0),
            store=self.store,
            runners={"process": self.compute},
        )
        self.writes = 0
        original = self.store._write

        def counted(**options: Any) -> Any:
            self.writes += 1
            return original(**options)

        self.store._write = counted  # type: ignore[method-assign]

    def start(self) -> str:
        record = self.rt.service.deploy(FLOW)
        execution = self.rt.service.start(record.namespace, record.id)
        assert len(self.compute.names()) == N
        return execution.id

    def finish_all(self) -> None:
        for name in self.compute.names():
            self.compute.finish(name, lines=[f"done {name}"])

    def finish_the_rest(self, execution_id: str) -> None:
        assert len(self.compute.names()) == N + 1  # the task after the Parallel was submitted
        self.finish_all()  # a finished job's status does not change: only the last one ends now
        self.rt.service.step(flush=False)
        _check_all_done(self, execution_id)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    p = Plane(tmp_path)
    yield p
    p.rt.close()


def _check_all_done(plane: Plane, execution_id: str) -> None:
    stored = plane.store.get_execution(execution_id)
    assert stored.state is State.SUCCESS
    assert sorted(tr.task_id for tr in stored.taskruns.values() if tr.state is State.SUCCESS) == sorted(
        ["after", "p", *(f"t{i}" for i in range(N))]
    )
    assert list(plane.store.active_jobs()) == []  # every job marked DONE
    logged = messages(plane.rt, execution_id)
    assert all(any(f"done {name}" in m for m in logged) for name in plane.compute.names())


def test_jobs_that_end_together_are_stored_in_one_write(plane: Plane) -> None:
    execution_id = plane.start()
    plane.finish_all()
    plane.writes = 0
    plane.rt.service.step(flush=False)
    assert plane.writes == 1  # one event at a time: one write per job
    stored = plane.store.get_execution(execution_id)
    assert all(tr.state is State.SUCCESS for tr in stored.taskruns.values() if tr.task_id.startswith("t"))
    plane.finish_the_rest(execution_id)


def test_a_group_whose_copy_is_stale_is_applied_one_event_at_a_time(plane: Plane) -> None:
    execution_id = plane.start()
    plane.finish_all()
    other = SqliteStore(plane.db)  # another process moves the execution on first
    try:
        stored = other.get_execution(execution_id)
        other.save_execution(
            replace(stored, version=stored.version + 1, changed=frozenset()), expected_version=stored.version
        )
    finally:
        other.close()
    plane.writes = 0
    plane.rt.service.step(flush=False)
    assert plane.writes > 1  # the group's write conflicted: each event was planned again as stored
    plane.finish_the_rest(execution_id)

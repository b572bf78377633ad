"""Flow triggers in the local runtime: the index kept at deploy, and what fires."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from control_plane.engine.states import State
from control_plane.service.clock import VirtualClock
from tests.integration.service_helpers import runtime

UP = "id: up\nnamespace: t\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: up\n"
DOWN = (
    "id: down\nnamespace: t\ntasks:\n  - id: b\n    type: io.kestra.plugin.core.log.Log\n    message: down\n"
    "triggers:\n  - id: after\n    type: io.kestra.plugin.core.trigger.Flow\n"
)


def downs(rt: object) -> list[str]:
    store = rt.store  # type: ignore[attr-defined]
    return [s.id for s in store.list_executions(flow_id="down").items]


def test_the_index_follows_deploys_and_deletes_and_each_end_fires_once(tmp_path: Path) -> None:
    with runtime(tmp_path, clock=VirtualClock()) as rt:
        service = rt.service
        triggers = service.driver.flow_triggers
        first = service.deploy(DOWN, "down.yaml")
        assert triggers.listeners() == [("t", "down", first.revision)]
        up = service.deploy(UP, "up.yaml")
        assert triggers.listeners() == [("t", "down", first.revision)]  # up has no Flow trigger

        ended = service.run(service.start("t", up.id).id, deadline=time.monotonic() + 60)
        assert ended.state is State.SUCCESS and len(downs(rt)) == 1
        service.driver.flow_triggers.fire(
            ended, service.flow, service.start, now=service.clock.now
        )  # fired again: no new one
        assert len(downs(rt)) == 1

        disabled = service.deploy(DOWN.replace("tasks:", "disabled: true\ntasks:", 1), "down.yaml")
        assert triggers.listeners() == [("t", "down", disabled.revision)]
        service.run(service.start("t", up.id).id, deadline=time.monotonic() + 60)
        assert len(downs(rt)) == 1  # Kestra skips disabled flows (FlowTriggerService)

        service.deploy(DOWN.split("triggers:")[0], "down.yaml")  # no trigger any more
        assert triggers.listeners() == []
        service.deploy(DOWN, "down.yaml")
        service.delete_flow("t", "down")
        assert triggers.listeners() == []
        service.run(service.start("t", up.id).id, deadline=time.monotonic() + 60)
        assert len(downs(rt)) == 1


def test_a_process_dying_between_an_end_and_its_firing_leaves_the_firing_to_the_next_one(
    tmp_path: Path,
) -> None:
    # The end is saved with an outbox timer; the process dies before the Flow trigger fires
    # (injected: the firing raises, as a kill would stop it there). The next process fires it.
    from datetime import timedelta

    from control_plane.service.driver import FLOW_TRIGGER_TIMER
    from control_plane.triggers.flow import fire_id

    clock = VirtualClock()
    with runtime(tmp_path, clock=clock) as rt:
        service = rt.service
        service.deploy(DOWN, "down.yaml")
        up = service.deploy(UP, "up.yaml")

        def die(*args: object, **kwargs: object) -> list[str]:
            raise SystemExit("killed between the save and the firing")

        service.driver.flow_triggers.fire = die  # type: ignore[method-assign]
        with contextlib.suppress(SystemExit):  # an inline flow ends within its start
            service.start("t", up.id)
        (started,) = rt.store.list_executions(flow_id="up").items
        ended = rt.store.get_execution(started.id)
        assert ended.state is State.SUCCESS and downs(rt) == []
        assert [t.key for t in rt.store.due_timers(clock.now())] == [FLOW_TRIGGER_TIMER]
    with runtime(tmp_path, clock=clock) as rt:  # the next process: a tick (or any local command)
        service = rt.service
        service.catch_up()  # the dead owner's execution is taken over
        service.tick(reconcile_after=timedelta(minutes=1), submit_grace=timedelta(minutes=1))
        assert downs(rt) == [fire_id(started.id, "t", "down", "after")]
        assert rt.store.next_timer() is None
        service.tick(reconcile_after=timedelta(minutes=1), submit_grace=timedelta(minutes=1))
        assert len(downs(rt)) == 1

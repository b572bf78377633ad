"""Flow triggers in the local runtime: the index kept at deploy, and what fires."""

from __future__ import annotations

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
        service.driver.flow_triggers.fire(ended, service.flow, service.start)  # fired again: no new one
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

"""WaitFor / LoopUntil against Kestra's WaitFor.java and ExecutorService (the Dec 2024 snapshot).

The condition is the exit condition; ``iterationCount`` is 1 in the first iteration and grows
when an iteration succeeds; maximums are checked before the condition; the previous
iteration's task runs are dropped when the next starts (ExecutionService.retryWaitFor).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.engine import Emit, Finish, StartTimer, State, TimerFired
from control_plane.levels import Level

from .helpers import T0, Driver, flow

LOOP = """
id: w
namespace: t
tasks:
  - id: loop
    type: io.kestra.plugin.core.flow.{kind}
    condition: "{{{{ outputs.ret.value == '{stop}' }}}}"
    failOnMaxReached: {fail}
    checkFrequency: {{interval: PT0.25s{extra}}}
    tasks:
      - id: ret
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ outputs.loop.iterationCount }}}}"
"""


def loop(stop: str, *, fail: bool = False, extra: str = "", kind: str = "WaitFor") -> Driver:
    return Driver(LOOP.format(kind=kind, stop=stop, fail=str(fail).lower(), extra=extra))


def tick(d: Driver) -> list:
    """Fire the newest WaitFor timer (the pending one) at its due time."""
    timer = d.of_type(StartTimer)[-1]
    return d.send(TimerFired(timer.at, timer.key))


@pytest.mark.parametrize("kind", ["WaitFor", "LoopUntil"])
def test_children_see_the_iteration_count_and_the_loop_exits_when_the_condition_holds(kind: str) -> None:
    d = loop("3", kind=kind)
    d.start()
    assert d.run("ret").outputs == {"value": "1"}
    [timer] = d.of_type(StartTimer)
    assert timer.at == T0 + timedelta(milliseconds=250)
    tick(d)
    assert d.run("ret").outputs == {"value": "2"}  # the first iteration's task run is gone
    actions = tick(d)
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.SUCCESS
    assert d.run("ret").outputs == {"value": "3"} and d.run("ret").iteration == 2
    assert d.run("loop").outputs == {"iterationCount": 4}
    assert len(d.execution.taskruns) == 2


def test_max_iterations_counts_iterations_done_and_fails_when_asked() -> None:
    d = loop("never", fail=True, extra=", maxIterations: 3")
    d.start()
    tick(d)
    actions = tick(d)
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.FAILED
    assert d.run("ret").outputs == {"value": "3"}
    warnings = [line.message for emit in d.of_type(Emit) for line in emit.logs if line.level is Level.WARN]
    assert warnings == ["Max iterations reached"]


def test_max_duration_ends_the_loop_without_failing_by_default() -> None:
    d = loop("never", extra=", maxDuration: PT0.6S")
    d.start()
    tick(d)  # at 0.25 s
    tick(d)  # at 0.5 s: not yet past 0.6 s
    actions = tick(d)  # at 0.75 s
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.SUCCESS
    assert d.run("loop").outputs == {"iterationCount": 5}


def test_defaults_are_kestra_s_since_0_23_no_caps_and_one_minute() -> None:
    task = flow(LOOP.format(kind="LoopUntil", stop="x", fail="false", extra="")).tasks[0]
    bounds = task.bounds  # type: ignore[union-attr]
    assert bounds.maxIterations is None and bounds.maxDuration is None
    bare = flow(
        """
id: w
namespace: t
tasks:
  - id: loop
    type: io.kestra.plugin.core.flow.WaitFor
    condition: "{{ true }}"
    tasks:
      - {id: ret, type: io.kestra.plugin.core.debug.Return, format: x}
"""
    ).tasks[0]
    assert bare.bounds.interval == timedelta(minutes=1)  # type: ignore[union-attr]


def test_a_condition_that_fails_to_render_fails_the_loop() -> None:
    d = Driver(
        LOOP.replace("outputs.ret.value == '{stop}'", "outputs.nope.value").format(
            kind="WaitFor", stop="", fail="false", extra=""
        )
    )
    [finish] = d.of_type(Finish, d.start())
    assert finish.state is State.FAILED
    assert d.states() == {"loop": "FAILED", "ret": "SUCCESS"}


def test_the_previous_iteration_s_outputs_are_gone_when_the_next_starts() -> None:
    """ExecutionService.retryWaitFor removes the children, so their outputs go with them."""
    d = Driver(
        """
id: w
namespace: t
tasks:
  - id: loop
    type: io.kestra.plugin.core.flow.LoopUntil
    condition: "{{ outputs.loop.iterationCount > 2 }}"
    checkFrequency: {interval: PT1S}
    tasks:
      - id: first
        type: io.kestra.plugin.core.debug.Return
        format: "{{ outputs.second.value ?? 'none' }}"
      - id: second
        type: io.kestra.plugin.core.debug.Return
        format: "second of {{ outputs.loop.iterationCount }}"
"""
    )
    d.start()
    assert d.run("first").outputs == {"value": "none"}
    [finish] = d.of_type(Finish, tick(d))
    assert finish.state is State.SUCCESS
    assert d.run("first").outputs == {"value": "none"}
    assert d.run("second").outputs == {"value": "second of 2"}

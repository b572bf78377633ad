"""The seam for tasks with I/O (TaskKind.EFFECT): the engine renders and asks, the shell answers.

Engine side, driven event by event: a RunInline with rendered properties, the task's timeout
as a timer, retry on a failed answer, a late answer ignored. Shell side: the KV handlers on a
real storage directory, and ``kv()`` in expressions through the planner's injected lookup.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control_plane.engine import Emit, RunInline, StartTimer, State, TaskResult, TimerFired
from control_plane.service.kv import KvError, KvStore
from control_plane.service.storage import LocalStorage
from control_plane.tasks import EffectContext, run_effect

from .helpers import Driver, at

KV_FLOW = """
id: kv
namespace: t.kv
tasks:
  - id: get
    type: io.kestra.plugin.core.kv.Get
    key: "k-{{ execution.id }}"
    timeout: PT5S
    retry: {type: constant, interval: PT1S, maxAttempt: 2}
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.get.value }}"
"""


def test_an_effect_task_asks_the_shell_with_rendered_properties_and_a_timeout_timer() -> None:
    d = Driver(KV_FLOW)
    actions = d.start()
    [run] = d.of_type(RunInline, actions)
    assert run.task_type == "io.kestra.plugin.core.kv.Get"
    assert run.properties["key"] == "k-ex1"
    assert "retry" not in run.properties and "timeout" not in run.properties
    assert run.timeout == timedelta(seconds=5)
    assert [t.key for t in d.of_type(StartTimer, actions)] == [f"timeout:{run.taskrun_id}:1"]
    logs = (("INFO", "read it"),)
    d.send(TaskResult(at(1), run.taskrun_id, 1, State.SUCCESS, {"value": "v"}, None, logs))
    assert d.states() == {"get": "SUCCESS", "after": "SUCCESS"}
    assert d.run("after").outputs == {"value": "v"}


def test_a_failed_answer_follows_the_retry_and_a_late_answer_is_ignored() -> None:
    d = Driver(KV_FLOW)
    [run] = d.of_type(RunInline, d.start())
    d.send(TaskResult(at(1), run.taskrun_id, 1, State.FAILED, None, "unavailable"))
    assert d.run("get").state is State.RETRYING
    [again] = d.of_type(RunInline, d.send(TimerFired(at(2), f"retry:{run.taskrun_id}:1")))
    assert again.attempt == 2
    d.send(TimerFired(at(8), f"timeout:{run.taskrun_id}:2"))  # no answer within PT5S
    assert d.run("get").state is State.FAILED
    assert d.execution.state is State.FAILED
    assert d.run("get").error == "Timeout after 00:00:05.000"
    before = d.execution.version
    d.send(TaskResult(at(9), run.taskrun_id, 2, State.SUCCESS, {"value": "late"}))
    assert d.execution.version == before


class _Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def ctx(tmp_path: Path) -> EffectContext:
    return EffectContext(
        storage=LocalStorage(tmp_path / "storage"),
        store=None,  # type: ignore[arg-type]  # the KV handlers never touch the store
        now=_Clock(),
        namespace="t.kv",
        flow_id="kv",
        execution_id="ex1",
        taskrun_id="tr1",
        attempt=1,
        deadline=float("inf"),
    )


def _run(kind: str, ctx: EffectContext, **props: object) -> tuple[object, str | None]:
    ctx.logs = []
    outcome = run_effect(f"squall.kv.{kind}", props, ctx)
    return outcome.outputs, outcome.error


def test_kv_set_get_delete_getkeys_as_kestra(ctx: EffectContext) -> None:
    assert _run("Set", ctx, key="b", value="1", kvType="NUMBER") == (None, None)
    assert _run("Set", ctx, key="a", value='{"x": [1]}', kvType="JSON") == (None, None)
    assert _run("Set", ctx, key="s", value="text") == (None, None)
    assert _run("Get", ctx, key="b") == ({"value": 1}, None)
    assert _run("Get", ctx, key="a") == ({"value": {"x": [1]}}, None)
    assert _run("GetKeys", ctx) == ({"keys": ["a", "b", "s"]}, None)
    assert _run("GetKeys", ctx, prefix="a") == ({"keys": ["a"]}, None)
    assert _run("Get", ctx, key="other", namespace="t.other") == ({}, None)  # null: absent
    assert _run("Delete", ctx, key="a") == ({"deleted": True}, None)
    assert _run("Delete", ctx, key="a") == ({"deleted": False}, None)
    _, error = _run("Delete", ctx, key="a", errorOnMissing=True)
    assert error == "No value found for key 'a' in namespace 't.kv' and `errorOnMissing` is set to true"
    _, error = _run("Get", ctx, key="a", errorOnMissing=True)
    assert error is not None and "No value found for key 'a'" in error


def test_kv_set_refuses_what_kestra_refuses(ctx: EffectContext) -> None:
    assert _run("Set", ctx, key="k", value="1") == (None, None)
    _, error = _run("Set", ctx, key="k", value="2", overwrite=False)
    assert error == "Cannot set value for key 'k'. Key already exists and `overwrite` is set to `false`."
    _, error = _run("Set", ctx, key="n", value="abc", kvType="NUMBER")
    assert error is not None and "property 'value'" in error and "NUMBER" in error
    _, error = _run("Set", ctx, key="bad key!", value="1")
    assert error is not None and "invalid key 'bad key!'" in error
    _, error = _run("Get", ctx, key="k", namespace="Not A Namespace")
    assert error is not None and "invalid namespace" in error


def test_a_kv_pair_expires_after_its_ttl(ctx: EffectContext) -> None:
    clock = ctx.now
    assert isinstance(clock, _Clock)
    assert _run("Set", ctx, key="k", value="v", ttl="PT1M") == (None, None)
    assert _run("Get", ctx, key="k") == ({"value": "v"}, None)
    clock.moment += timedelta(minutes=2)
    assert _run("GetKeys", ctx) == ({"keys": []}, None)
    store = KvStore(ctx.storage, clock)
    assert _run("Set", ctx, key="j", value="v", ttl="PT1M") == (None, None)
    clock.moment += timedelta(minutes=2)
    with pytest.raises(KvError, match="The requested value has expired"):
        store.get("t.kv", "j")
    with pytest.raises(KeyError):  # deleted by the read that found it expired
        store.get("t.kv", "j")


KV_FUNCTION = """
id: kvf
namespace: t.kv
tasks:
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('k') }}|{{ kv('k', 't.other') }}|{{ kv('missing', errorOnMissing=false) is null }}"
  - id: strict
    type: io.kestra.plugin.core.debug.Return
    format: "{{ kv('missing') }}"
"""


def test_the_kv_function_reads_through_the_injected_lookup(ctx: EffectContext) -> None:
    from control_plane.engine import Started, new_execution, plan
    from tests.unit.helpers import T0, flow

    store = KvStore(ctx.storage, ctx.now)
    store.put("t.kv", "k", "STRING", "mine")
    store.put("t.other", "k", "NUMBER", 7)
    f = flow(KV_FUNCTION)
    execution, _ = plan(f, new_execution(f, "ex1", at=T0), Started(at=T0), kv=store)
    runs = {tr.task_id: tr for tr in execution.taskruns.values()}
    assert runs["read"].outputs == {"value": "mine|7|true"}
    assert runs["strict"].state is State.FAILED
    assert runs["strict"].error is not None
    assert "The key 'missing' does not exist in the namespace 't.kv'." in runs["strict"].error
    without, _ = plan(f, new_execution(f, "ex2", at=T0), Started(at=T0))
    assert "no KV store" in str(next(iter(without.taskruns.values())).error)


NO_TIMEOUT = """
id: lost
namespace: t.kv
tasks:
  - id: set
    type: io.kestra.plugin.core.kv.Set
    key: k
    value: v
    retry: {type: constant, interval: PT1S, maxAttempt: 2}
"""


def test_an_answer_lost_with_its_process_fails_the_attempt_then_retries() -> None:
    from control_plane.engine.events import Recover
    from control_plane.engine.planner import EFFECT_ANSWER_WITHIN, EFFECT_LOST

    d = Driver(NO_TIMEOUT)
    actions = d.start()
    [run] = d.of_type(RunInline, actions)
    [timer] = d.of_type(StartTimer, actions)
    assert timer.key == f"effect-lost:{run.taskrun_id}:1"
    assert timer.at == at(0) + EFFECT_ANSWER_WITHIN
    [again] = d.of_type(RunInline, d.send(Recover(at(5))))  # a new driver asks again: at-least-once
    assert (again.taskrun_id, again.attempt, again.properties) == (run.taskrun_id, 1, run.properties)
    d.send(TimerFired(timer.at, timer.key))
    assert d.run("set").state is State.RETRYING
    assert d.run("set").attempts[0].state is State.FAILED
    [retried] = d.of_type(
        RunInline, d.send(TimerFired(timer.at + timedelta(seconds=1), f"retry:{run.taskrun_id}:1"))
    )
    assert retried.attempt == 2
    d.send(TaskResult(timer.at + timedelta(seconds=2), run.taskrun_id, 2, State.SUCCESS))
    assert d.execution.state is State.SUCCESS
    assert d.run("set").state is State.SUCCESS
    emitted = [line.message for a in d.actions if isinstance(a, Emit) for line in a.logs]
    assert EFFECT_LOST in emitted


def test_a_lambda_invocation_bounds_the_handlers_budget() -> None:
    import time

    from control_plane.tasks import DEFAULT_BUDGET, INVOCATION_MARGIN, deadline_for, limit_to_invocation

    class _LambdaContext:
        def get_remaining_time_in_millis(self) -> int:
            return 10_000

    try:
        limit_to_invocation(_LambdaContext())
        before = time.monotonic()
        assert deadline_for(None) <= before + 10 - INVOCATION_MARGIN + 0.5
        assert deadline_for(timedelta(seconds=1)) <= before + 1.5  # the task's timeout is shorter
    finally:
        limit_to_invocation(None)  # a local process: no invocation limit
    before = time.monotonic()
    assert deadline_for(None) >= before + DEFAULT_BUDGET.total_seconds() - 0.5


FILTER = """
id: f
namespace: t.kv
inputs:
  - id: limit
    type: INT
    defaults: 3
tasks:
  - id: filter
    type: io.kestra.plugin.core.storage.FilterItems
    from: "kestra:///t/items.ion"
    filterCondition: "{{ v > inputs.limit }}"
"""


def test_per_item_templates_reach_the_handler_unrendered_with_the_task_context() -> None:
    d = Driver(FILTER, inputs={"limit": 3})
    [run] = d.of_type(RunInline, d.start())
    assert run.properties["filterCondition"] == "{{ v > inputs.limit }}"
    assert run.properties["from"] == "kestra:///t/items.ion"
    context = run.properties["@context"]
    assert context["inputs"]["limit"] == 3 and context["flow"]["id"] == "f"

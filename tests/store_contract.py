"""The contract every :class:`~control_plane.store.base.StateStore` passes, whatever its backend.

A backend runs it by subclassing :class:`StoreContract` and supplying one fixture,
``store_factory``: a callable that opens a *new* store instance on the *same* backend (same
file, same table) every time it is called, and closes every instance it opened at teardown::

    class TestSqliteStore(StoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            opened = []

            def factory():
                opened.append(SqliteStore(tmp_path / "squall.db"))
                return opened[-1]

            yield factory
            for store in opened:
                store.close()

Each test starts from an *empty* backend (a fresh file, a fresh table): timers and jobs are
global queries, so leftovers from another test would change what they return. ``close()`` may
be called twice on one instance (the reopen test closes early, teardown closes again).

Executions come from really running flows through the production driver (``Service`` on a
scratch SQLite store, ``tests/driving.py``; every version it stored is kept), so the suite
exercises what the engine produces (value-keyed ForEach outputs, Parallel lanes, errors and
finally branches, retries, Pause/Resume, Restart dropping task runs, subflow parents) rather
than hand-made records. Nothing here depends on a backend's internals.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import immutables
import pytest
from msgspec.structs import replace

from control_plane.conformance import run_flow
from control_plane.engine.model import Execution, LogLine, Phase, Progress, TaskRun
from control_plane.engine.states import State
from control_plane.levels import Level
from control_plane.store.base import (
    ConflictError,
    JobPhase,
    JobRecord,
    NotFoundError,
    Page,
    StateStore,
    TimerRecord,
    TriggerRecord,
)
from control_plane.store.codec import dumps, rebuild_outputs_index
from runners.base import JobSpec
from tests.driving import Outcome, run, scripted

__all__ = [
    "SCENARIOS",
    "T0",
    "Scenario",
    "StoreContract",
    "assert_same_execution",
    "collect_pages",
    "make_execution",
    "make_taskrun",
    "plain",
    "scenario",
]

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------- comparison helpers


def plain(value: Any) -> Any:
    """Maps (``immutables.Map`` included) to dicts and tuples to lists, recursively: JSON's view."""
    if isinstance(value, immutables.Map | Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _short(value: Any, size: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= size else f"{text[:size]}... ({len(text)} chars)"


_PLAIN_EXECUTION_FIELDS = {"inputs", "labels", "trigger", "outputs", "parent"}


def assert_same_execution(got: Execution, want: Execution) -> None:
    """Field by field (``changed`` aside: a loaded execution has it empty), with readable failures."""
    assert got.changed == frozenset(), f"execution {want.id}: a loaded execution has changed={got.changed}"
    for name in Execution.__struct_fields__:
        if name in ("changed", "taskruns", "outputs_index"):
            continue
        a, b = getattr(got, name), getattr(want, name)
        if name in _PLAIN_EXECUTION_FIELDS:
            a, b = plain(a), plain(b)
        assert a == b, f"execution {want.id}, field {name}: {_short(a)} != {_short(b)}"
    assert got.created.utcoffset() == timedelta(0), "datetimes come back timezone-aware"
    missing = set(want.taskruns) - set(got.taskruns)
    extra = set(got.taskruns) - set(want.taskruns)
    assert not missing and not extra, f"execution {want.id}: missing {missing}, unexpected {extra}"
    for tr_id, w in want.taskruns.items():
        g = got.taskruns[tr_id]
        for name in TaskRun.__struct_fields__:
            a, b = getattr(g, name), getattr(w, name)
            if name == "outputs":
                a, b = plain(a), plain(b)
            assert a == b, f"task run {w.task_id} ({tr_id}), field {name}: {_short(a)} != {_short(b)}"
    assert plain(got.outputs_index) == plain(want.outputs_index), (
        f"execution {want.id}, outputs_index: {_short(plain(got.outputs_index))}"
        f" != {_short(plain(want.outputs_index))}"
    )


def collect_pages(fetch: Callable[[str | None], Page[Any]], *, max_pages: int = 1000) -> list[list[Any]]:
    """Follow cursors to the end; return each page's items."""
    pages: list[list[Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = fetch(cursor)
        pages.append(list(page.items))
        if page.cursor is None:
            return pages
        assert page.cursor != cursor, "a cursor must move forward"
        cursor = page.cursor
    raise AssertionError(f"still paging after {max_pages} pages")


# ---------------------------------------------------------------------------- synthetic records


def make_taskrun(
    tr_id: str,
    seq: int,
    *,
    task_id: str = "t",
    state: State = State.SUCCESS,
    outputs: Mapping[str, Any] | None = None,
    values: tuple[str, ...] = (),
    parent_id: str | None = None,
) -> TaskRun:
    return TaskRun(
        id=tr_id,
        seq=seq,
        task_id=task_id,
        task_type="io.kestra.plugin.core.debug.Return",
        parent_id=parent_id,
        phase=Phase.TASKS,
        lane=seq,
        position=0,
        values=values,
        iteration=0,
        state=state,
        created=T0 + timedelta(milliseconds=seq),
        ended=None if state is State.RUNNING else T0 + timedelta(milliseconds=seq, microseconds=7),
        outputs=outputs,
    )


def make_execution(
    execution_id: str,
    *,
    namespace: str = "t.store",
    flow_id: str = "f",
    state: State = State.RUNNING,
    created: datetime = T0,
    taskruns: list[TaskRun] | tuple[TaskRun, ...] = (),
    labels: Mapping[str, str] | None = None,
    parent: Mapping[str, Any] | None = None,
    version: int = 1,
) -> Execution:
    ordered = sorted(taskruns, key=lambda tr: tr.seq)
    return Execution(
        id=execution_id,
        namespace=namespace,
        flow_id=flow_id,
        flow_revision=3,
        state=state,
        created=created,
        labels=dict(labels or {}),
        version=version,
        started=created,
        ended=created + timedelta(seconds=1) if state.terminal else None,
        taskruns=immutables.Map((tr.id, tr) for tr in ordered),
        outputs_index=rebuild_outputs_index(ordered),
        next_seq=max((tr.seq for tr in ordered), default=-1) + 1,
        parent=parent,
        changed=frozenset(tr.id for tr in ordered),
    )


def with_taskrun(ex: Execution, tr: TaskRun, **changes: Any) -> Execution:
    """The next version of ``ex`` with ``tr`` added or replaced, as ``plan`` would return it."""
    taskruns = ex.taskruns.set(tr.id, tr)
    return ex.evolve(
        taskruns=taskruns,
        outputs_index=rebuild_outputs_index(sorted(taskruns.values(), key=lambda t: t.seq)),
        next_seq=max(ex.next_seq, tr.seq + 1),
        version=ex.version + 1,
        changed=frozenset({tr.id}),
        **changes,
    )


def make_job(name: str, execution_id: str, *, runner: str = "process", taskrun_id: str = "tr") -> JobRecord:
    return JobRecord(
        name=name,
        execution_id=execution_id,
        taskrun_id=taskrun_id,
        attempt=1,
        runner=runner,
        phase=JobPhase.SUBMITTING,
        spec={"image": "alpine:3", "commands": ["echo 'héllo 🌧'"], "env": {"A": "1"}},
        updated=T0,
    )


def log(
    message: str, *, taskrun_id: str | None = None, seconds: float = 0, level: Level = Level.INFO
) -> LogLine:
    return LogLine(at(seconds), level, message, "t" if taskrun_id else None, taskrun_id, 1)


# ---------------------------------------------------------------------------- realistic executions

FOREACH = """
id: loops
namespace: t.store
labels: {team: data}
inputs:
  - id: who
    type: STRING
    defaults: "Zoë 🌍"
  - id: n
    type: INT
    defaults: 3
tasks:
  - id: outer
    type: io.kestra.plugin.core.flow.ForEach
    values: ["a", "b", "ç"]
    concurrencyLimit: 2
    tasks:
      - id: inner
        type: io.kestra.plugin.core.flow.ForEach
        values: ["x", "y"]
        concurrencyLimit: 0
        tasks:
          - id: leaf
            type: io.kestra.plugin.scripts.shell.Commands
            commands: ["echo {{ parents[0].taskrun.value }}-{{ taskrun.value }}"]
      - id: vals
        type: io.kestra.plugin.core.output.OutputValues
        values:
          k: "{{ taskrun.value }}"
          nested: {list: [1, 2.5, true, null, {deep: "{{ inputs.who }}"}]}
  - id: par
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: p1
        type: io.kestra.plugin.core.debug.Return
        format: "{{ outputs.leaf['ç']['y'].vars.echo }}"
      - id: p2
        type: io.kestra.plugin.core.log.Log
        message: "parallel {{ outputs.vals['b'].values.k }}"
outputs:
  - id: first
    type: STRING
    value: "{{ outputs.p1.value }}"
"""

ERRORS = """
id: errs
namespace: t.store
tasks:
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["flaky"]
    retry:
      type: constant
      interval: PT10S
      maxAttempt: 3
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: "broken after {{ outputs.sh.vars.rows | length }} rows"
errors:
  - id: on_error
    type: io.kestra.plugin.core.debug.Return
    format: "handled: {{ errorLogs()[0].message }}"
finally:
  - id: cleanup
    type: io.kestra.plugin.core.log.Log
    message: cleaning
"""

PAUSE = """
id: pz
namespace: t.store
tasks:
  - id: approve
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: ok
        type: BOOLEAN
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "approved={{ outputs.approve.onResume.ok }}"
"""

# The errors branch only logs: Restart drops it, and the engine keeps no outputs of it.
RESTART = """
id: rs
namespace: t.store
tasks:
  - id: first
    type: io.kestra.plugin.core.debug.Return
    format: one
  - id: sh
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["flaky"]
  - id: last
    type: io.kestra.plugin.core.log.Log
    message: done
errors:
  - id: alert
    type: io.kestra.plugin.core.log.Log
    message: failed
  - id: alert2
    type: io.kestra.plugin.core.log.Log
    message: still failed
"""

CHILD = """
id: child
namespace: t.store.sub
inputs:
  - id: n
    type: INT
tasks:
  - id: double
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.n * 2 }}"
outputs:
  - id: result
    type: INT
    value: "{{ outputs.double.value }}"
"""

PARENT = """
id: parent
namespace: t.store
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: t.store.sub
    flowId: child
    inputs: {n: 21}
  - id: show
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.call.outputs.result }}"
"""


@dataclass(frozen=True)
class Scenario:
    """Every distinct version of every execution one run produced, in the order ``plan`` made them."""

    name: str
    main: str
    histories: Mapping[str, tuple[Execution, ...]]

    @property
    def final(self) -> Execution:
        return self.histories[self.main][-1]


def _flaky_jobs(failures: int) -> Callable[[JobSpec], Outcome]:
    """Jobs whose first ``failures`` fail (exit 1); the others print what they echo, and rows."""
    calls = itertools.count()

    def handle(spec: JobSpec) -> Outcome:
        if next(calls) < failures:
            return Outcome(exit_code=1)
        command = spec.command[-1].splitlines()[-1]
        return Outcome(outputs={"echo": command.removeprefix("echo "), "rows": [1, {"ü": None}]})

    return handle


@functools.cache
def scenario(name: str) -> Scenario:
    """Run one of :data:`SCENARIOS` and keep every version the service stored (cached: deterministic)."""
    snapshots: list[Execution] = []
    ids = (f"{name}-{n}" for n in itertools.count())
    source, failures = {
        "foreach": (FOREACH, 0),
        "errors": (ERRORS, 2),
        "pause": (PAUSE, 0),
        "restart": (RESTART, 1),
        "subflow": (PARENT, 0),
    }[name]
    with scripted(_flaky_jobs(failures), start=T0, on_change=snapshots.append, id_factory=ids.__next__) as rt:
        service = rt.service
        if name == "subflow":
            service.deploy(CHILD, "child.yaml")
        result = run_flow(
            rt,
            source,
            origin=f"{name}.yaml",
            labels={"owner": "ada", "ключ": "значение"},
            trigger={"type": "io.kestra.plugin.core.trigger.Schedule", "date": T0.isoformat()},
        ).execution
        if name == "pause":
            assert result.state is State.PAUSED
            service.clock.sleep_until(at(3600))
            service.resume(result.id, {"ok": "true"})
            result = service.run(result.id)
        elif name == "restart":
            assert result.state is State.FAILED
            service.clock.sleep_until(at(60))
            service.restart(result.id)
            result = service.run(result.id)
    assert result.state.terminal, f"{name} ended {result.state}"
    histories: dict[str, list[Execution]] = {}
    for ex in snapshots:
        versions = histories.setdefault(ex.id, [])
        if not versions or versions[-1].version != ex.version:
            versions.append(ex)
    return Scenario(name, result.id, {k: tuple(v) for k, v in histories.items()})


SCENARIOS = ("foreach", "errors", "pause", "restart", "subflow")


def big_outputs() -> dict[str, Any]:
    """About 1 MB of nested JSON with non-ASCII text and every JSON type."""
    rows = [
        {
            "id": i,
            "name": f"ряд-{i}-🌧-“quoted”",
            "tags": ["日本", "€", str(i), ""],
            "nested": {"ok": i % 2 == 0, "ratio": i / 7, "none": None, "list": [[i], {"k": "v\n\t\\"}]},
        }
        for i in range(6000)
    ]
    return {"rows": rows, "summary": {"count": len(rows), "title": "grand 大きい output"}}


@functools.cache
def five_thousand() -> Execution:
    """One ForEach over 5,000 values, run for real (cached: pure)."""
    values = ",".join(f'"v{i}"' for i in range(5000))
    source = (
        "id: big\nnamespace: t.store\ntasks:\n"
        "  - id: each\n"
        "    type: io.kestra.plugin.core.flow.ForEach\n"
        f"    values: '[{values}]'\n"
        "    concurrencyLimit: 0\n"
        "    tasks:\n"
        "      - id: leaf\n"
        "        type: io.kestra.plugin.core.debug.Return\n"
        '        format: "{{ taskrun.value }}"\n'
    )
    result = run(source, start=T0, id_factory=lambda: "five-thousand")
    assert result.state is State.SUCCESS
    return result.execution


# ---------------------------------------------------------------------------- the contract


class StoreContract:
    """Subclass with a ``store_factory`` fixture (see the module docstring); ``store`` is its first store."""

    @pytest.fixture
    def store(self, store_factory: Callable[[], StateStore]) -> StateStore:
        return store_factory()

    # ------------------------------------------------------------------ flows

    def test_save_flow_starts_at_revision_one_and_identical_source_keeps_it(self, store: StateStore) -> None:
        first = store.save_flow("t.flows", "hello", "id: hello\n", at=at(0))
        assert (first.namespace, first.id, first.revision, first.source) == (
            "t.flows",
            "hello",
            1,
            "id: hello\n",
        )
        assert first.deleted is False
        again = store.save_flow("t.flows", "hello", "id: hello\n", at=at(5))
        assert again.revision == 1
        assert store.flow_revisions("t.flows", "hello") == [1]
        assert store.get_flow("t.flows", "hello").updated == at(0)

    def test_changed_source_makes_the_next_revision(self, store: StateStore) -> None:
        store.save_flow("t.flows", "hello", "v1: ü\n", at=at(0))
        second = store.save_flow("t.flows", "hello", "v2: 🌧\n", at=at(1))
        assert second.revision == 2
        latest = store.get_flow("t.flows", "hello")
        assert (latest.revision, latest.source, latest.updated) == (2, "v2: 🌧\n", at(1))
        assert latest.updated.utcoffset() == timedelta(0)
        assert store.get_flow("t.flows", "hello", 1).source == "v1: ü\n"
        assert store.get_flow("t.flows", "hello", 2).source == "v2: 🌧\n"
        assert store.flow_revisions("t.flows", "hello") == [1, 2]
        # going back to an older text is a change too
        assert store.save_flow("t.flows", "hello", "v1: ü\n", at=at(2)).revision == 3

    def test_unknown_flow_or_revision_raises_not_found_naming_it(self, store: StateStore) -> None:
        with pytest.raises(NotFoundError, match="nowhere"):
            store.get_flow("t.flows", "nowhere")
        store.save_flow("t.flows", "known", "a: 1\n", at=at(0))
        with pytest.raises(NotFoundError, match="known"):
            store.get_flow("t.flows", "known", 9)
        with pytest.raises(NotFoundError, match="known"):
            store.get_flow("t.other", "known")

    def test_list_flows_latest_revisions_ordered_by_namespace_then_id(self, store: StateStore) -> None:
        for ns, flow_id in [("b", "z"), ("a.x", "b"), ("a", "y"), ("a", "b"), ("b", "a")]:
            store.save_flow(ns, flow_id, f"{ns}.{flow_id} v1", at=at(0))
        store.save_flow("a", "y", "a.y v2", at=at(1))
        items = store.list_flows().items
        assert [(f.namespace, f.id) for f in items] == [
            ("a", "b"),
            ("a", "y"),
            ("a.x", "b"),
            ("b", "a"),
            ("b", "z"),
        ]
        latest = {(f.namespace, f.id): (f.revision, f.source) for f in items}
        assert latest[("a", "y")] == (2, "a.y v2")
        assert latest[("a", "b")] == (1, "a.b v1")

    def test_list_flows_namespace_filter_takes_sub_namespaces_only(self, store: StateStore) -> None:
        for ns in ["team", "team.etl", "team.etl.daily", "teams", "team_x", "Team", "TEAM.etl", "a.team"]:
            store.save_flow(ns, "f", f"{ns}\n", at=at(0))
        store.save_flow("tXam.sub", "f", "wildcard bait\n", at=at(0))
        store.save_flow("t_am", "f", "underscore\n", at=at(0))

        def names(ns: str) -> list[str]:
            return [f.namespace for f in store.list_flows(ns).items]

        assert names("team") == ["team", "team.etl", "team.etl.daily"]
        assert names("team.etl") == ["team.etl", "team.etl.daily"]
        assert names("Team") == ["Team"]  # namespaces are case-sensitive
        assert names("t_am") == ["t_am"]  # `_` is a character, not a wildcard
        assert names("nothing") == []

    def test_list_flows_pages_with_a_cursor(self, store: StateStore) -> None:
        expected = []
        for i in range(25):
            ns = f"p.ns{i % 3}"
            store.save_flow(ns, f"flow{i:02d}", f"source {i}", at=at(i))
            expected.append((ns, f"flow{i:02d}"))
        store.save_flow("q", "outside", "not in p", at=at(0))
        pages = collect_pages(lambda cursor: store.list_flows("p", limit=10, cursor=cursor))
        assert [len(p) for p in pages] == [10, 10, 5]
        seen = [(f.namespace, f.id) for page in pages for f in page]
        assert seen == sorted(expected)
        assert len(set(seen)) == 25
        everything = collect_pages(lambda cursor: store.list_flows(limit=7, cursor=cursor))
        assert [len(p) for p in everything] == [7, 7, 7, 5]
        assert [(f.namespace, f.id) for page in everything for f in page] == sorted(
            [*expected, ("q", "outside")]
        )

    def test_delete_flow_hides_it_but_old_revisions_stay_readable(self, store: StateStore) -> None:
        store.save_flow("t.flows", "gone", "v1\n", at=at(0))
        store.save_flow("t.flows", "gone", "v2\n", at=at(1))
        store.save_flow("t.flows", "kept", "k\n", at=at(1))
        store.delete_flow("t.flows", "gone", at=at(2))
        with pytest.raises(NotFoundError, match="gone"):
            store.get_flow("t.flows", "gone")
        assert [f.id for f in store.list_flows("t.flows").items] == ["kept"]
        assert [f.id for f in store.list_flows().items] == ["kept"]
        assert store.get_flow("t.flows", "gone", 1).source == "v1\n"
        assert store.get_flow("t.flows", "gone", 2).source == "v2\n"
        assert store.flow_revisions("t.flows", "gone") == [1, 2]
        with pytest.raises(NotFoundError, match="gone"):
            store.delete_flow("t.flows", "gone", at=at(3))
        with pytest.raises(NotFoundError, match="never"):
            store.delete_flow("t.flows", "never", at=at(3))
        # saving it again brings it back with a new revision, even with the same text
        back = store.save_flow("t.flows", "gone", "v2\n", at=at(4))
        assert back.revision > 2
        assert store.get_flow("t.flows", "gone").revision == back.revision
        assert [f.id for f in store.list_flows("t.flows").items] == ["gone", "kept"]

    # ------------------------------------------------------------------ executions

    @pytest.mark.parametrize("name", SCENARIOS)
    def test_created_execution_reads_back_equal(self, store: StateStore, name: str) -> None:
        sc = scenario(name)
        for history in sc.histories.values():
            store.create_execution(history[-1])
        for ex_id, history in sc.histories.items():
            assert_same_execution(store.get_execution(ex_id), history[-1])

    @pytest.mark.parametrize("name", SCENARIOS)
    def test_saving_each_version_in_turn_ends_equal_to_the_engine(self, store: StateStore, name: str) -> None:
        sc = scenario(name)
        for history in sc.histories.values():
            assert len(history) >= 2 or sc.name == "subflow", f"{name}: too few versions to step through"
            store.create_execution(history[0])
            assert_same_execution(store.get_execution(history[0].id), history[0])
            for previous, current in itertools.pairwise(history):
                store.save_execution(current, expected_version=previous.version)
                assert_same_execution(store.get_execution(current.id), current)

    def test_scenarios_cover_what_they_claim(self) -> None:
        foreach = scenario("foreach").final
        assert isinstance(foreach.outputs_index["leaf"]["ç"], immutables.Map)  # value-keyed, nested
        assert foreach.outputs_index["leaf"]["ç"]["y"]["vars"]["echo"] == "ç-y"
        versions = [ex.version for ex in scenario("foreach").histories[foreach.id]]
        # Jobs the scripted runner ends together are stored in one write (the driver's group
        # commit): a save whose version moves by more than one, its changed set a union.
        assert len(versions) >= 3 and any(b - a > 1 for a, b in itertools.pairwise(versions)), versions
        errors = scenario("errors").final
        assert errors.state is State.FAILED and errors.error_logs
        assert {tr.task_id: len(tr.attempts) for tr in errors.taskruns.values()}["sh"] == 3
        assert any(tr.phase is Phase.ERRORS for tr in errors.taskruns.values())
        assert any(tr.phase is Phase.FINALLY for tr in errors.taskruns.values())
        assert State.PAUSED in {ex.state for ex in scenario("pause").histories[scenario("pause").main]}
        restart = scenario("restart")
        assert any(
            tr_id not in restart.final.taskruns
            for ex in restart.histories[restart.main]
            for tr_id in ex.changed
        )
        subflow = scenario("subflow")
        assert sum(1 for h in subflow.histories.values() if h[-1].parent) == 1

    def test_create_twice_raises_conflict(self, store: StateStore) -> None:
        ex = make_execution("dup", taskruns=[make_taskrun("a", 0)])
        store.create_execution(ex)
        with pytest.raises(ConflictError, match="dup"):
            store.create_execution(ex.evolve(state=State.FAILED, version=7))
        got = store.get_execution("dup")
        assert (got.state, got.version) == (State.RUNNING, 1)

    def test_unknown_execution_raises_not_found(self, store: StateStore) -> None:
        with pytest.raises(NotFoundError, match="no-such-execution"):
            store.get_execution("no-such-execution")
        ghost = make_execution("ghost-execution", version=2)
        with pytest.raises(NotFoundError, match="ghost-execution"):
            store.save_execution(ghost, expected_version=1)
        with pytest.raises(NotFoundError):
            store.get_execution("ghost-execution")

    def test_save_writes_the_changed_taskruns_only_and_the_new_version(self, store: StateStore) -> None:
        a, b = make_taskrun("a", 0, outputs={"v": 1}), make_taskrun("b", 1, outputs={"v": 1})
        ex = make_execution("ex", taskruns=[a, b])
        store.create_execution(ex)
        # ``b`` changes in memory but is not in ``changed``: the store must not spend a write on it
        nxt = ex.evolve(
            state=State.SUCCESS,
            taskruns=ex.taskruns.set("a", a.evolve(outputs={"v": 2})).set("b", b.evolve(outputs={"v": 2})),
            progress=Progress(total=2, started=2, done=2),
            version=2,
            changed=frozenset({"a"}),
        )
        store.save_execution(nxt, expected_version=1)
        got = store.get_execution("ex")
        assert got.version == 2
        assert got.state is State.SUCCESS
        assert got.progress == Progress(total=2, started=2, done=2)
        assert got.taskruns["a"].outputs == {"v": 2}
        assert got.taskruns["b"].outputs == {"v": 1}
        assert plain(got.outputs_index) == {"t": {"v": 1}}  # rebuilt from what is stored, seq order

    def test_stale_save_raises_conflict_and_changes_nothing(self, store: StateStore) -> None:
        ex = make_execution("stale-one", taskruns=[make_taskrun("a", 0)])
        store.create_execution(ex, logs=[log("created")])
        winner = with_taskrun(ex, make_taskrun("b", 1))
        store.save_execution(winner, expected_version=1)
        loser = with_taskrun(ex, make_taskrun("c", 1, outputs={"lost": True}), state=State.FAILED)
        loser = loser.evolve(
            taskruns=loser.taskruns.set("a", ex.taskruns["a"].evolve(state=State.FAILED)),
            changed=frozenset({"a", "c"}),
        )
        with pytest.raises(ConflictError, match="stale-one"):
            store.save_execution(
                loser,
                expected_version=1,
                logs=[log("from the loser", taskrun_id="c")],
                timers=[TimerRecord("stale-one", "retry:c:1", at(1))],
                jobs=[make_job("loser-job", "stale-one", taskrun_id="c")],
            )
        assert_same_execution(store.get_execution("stale-one"), winner)
        assert [line.message for line in store.read_logs("stale-one").items] == ["created"]
        assert store.due_timers(at(10**6)) == []
        assert store.next_timer() is None
        assert store.get_job("loser-job") is None
        assert store.active_jobs() == []

    def test_changed_ids_missing_from_taskruns_are_deleted(self, store: StateStore) -> None:
        ex = make_execution("ex", taskruns=[make_taskrun(x, i) for i, x in enumerate("abcd")])
        store.create_execution(ex)
        taskruns = ex.taskruns.delete("b").delete("d").set("e", make_taskrun("e", 4))
        nxt = ex.evolve(taskruns=taskruns, version=2, next_seq=5, changed=frozenset({"b", "d", "e", "zz"}))
        store.save_execution(nxt, expected_version=1)
        assert sorted(store.get_execution("ex").taskruns) == ["a", "c", "e"]

    def test_restart_deletes_the_dropped_branch(self, store: StateStore) -> None:
        sc = scenario("restart")
        history = sc.histories[sc.main]
        failed = next(ex for ex in history if ex.state is State.FAILED)
        store.create_execution(failed)
        assert {"alert", "alert2"} <= {tr.task_id for tr in store.get_execution(sc.main).taskruns.values()}
        previous = failed
        for current in history[history.index(failed) + 1 :]:
            store.save_execution(current, expected_version=previous.version)
            previous = current
        got = store.get_execution(sc.main)
        assert_same_execution(got, sc.final)
        assert {tr.task_id for tr in got.taskruns.values()} == {"first", "sh", "last"}

    def _write_concurrently(self, stores: list[StateStore], writes_each: int) -> None:
        """Each store gets a thread that adds its own task runs and bumps a shared counter task run."""
        counter = make_taskrun("counter", 0, outputs={"count": 0, "by": []})
        initial = make_execution("race", taskruns=[counter], version=5)
        stores[0].create_execution(initial)
        barrier = threading.Barrier(len(stores))
        failures: list[BaseException] = []
        successes = [0] * len(stores)

        def writer(k: int, st: StateStore) -> None:
            try:
                barrier.wait(timeout=60)
                for j in range(writes_each):
                    for _ in range(500):
                        cur = st.get_execution("race")
                        count = cur.taskruns["counter"].outputs or {}
                        bumped = cur.taskruns["counter"].evolve(
                            outputs={"count": count["count"] + 1, "by": [*count["by"], f"{k}.{j}"]}
                        )
                        mine = make_taskrun(f"w{k}-{j}", cur.next_seq, task_id=f"w{k}")
                        nxt = with_taskrun(
                            cur, mine, progress=replace(cur.progress, done=cur.progress.done + 1)
                        )
                        nxt = nxt.evolve(
                            taskruns=nxt.taskruns.set("counter", bumped),
                            changed=frozenset({mine.id, "counter"}),
                        )
                        try:
                            st.save_execution(nxt, expected_version=cur.version)
                        except ConflictError:
                            continue
                        successes[k] += 1
                        break
                    else:
                        raise AssertionError(f"writer {k} never won a write")
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(k, st)) for k, st in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        assert not failures, failures
        total = len(stores) * writes_each
        assert successes == [writes_each] * len(stores)
        got = stores[0].get_execution("race")
        assert got.version == initial.version + total
        assert got.progress.done == total
        assert got.taskruns["counter"].outputs is not None
        assert got.taskruns["counter"].outputs["count"] == total
        expected = {f"{k}.{j}" for k in range(len(stores)) for j in range(writes_each)}
        assert sorted(got.taskruns["counter"].outputs["by"]) == sorted(expected)
        assert set(got.taskruns) == {"counter"} | {
            f"w{k}-{j}" for k in range(len(stores)) for j in range(writes_each)
        }
        assert sorted(tr.seq for tr in got.taskruns.values()) == list(range(total + 1))

    def test_concurrent_writers_through_one_store_lose_no_update(self, store: StateStore) -> None:
        self._write_concurrently([store] * 8, writes_each=3)

    def test_concurrent_writers_through_separate_instances_lose_no_update(
        self, store: StateStore, store_factory: Callable[[], StateStore]
    ) -> None:
        self._write_concurrently([store] + [store_factory() for _ in range(5)], writes_each=3)

    # ------------------------------------------------------------------ listing executions

    @staticmethod
    def _listing(store: StateStore) -> list[Execution]:
        states = [State.SUCCESS, State.FAILED, State.RUNNING, State.PAUSED, State.KILLED]
        executions = []
        for i in range(55):
            ex = make_execution(
                f"ex-{(i * 37) % 55:02d}",  # ids not in creation order
                namespace="ns.a" if i % 2 else "ns.b",
                flow_id="f1" if i % 3 else "f2",
                state=states[i % 5],
                created=T0 + timedelta(microseconds=i // 3),  # groups of three share a timestamp
                labels={"i": str(i)},
                parent={"id": "the-parent", "namespace": "ns.a", "flowId": "p", "taskRunId": "x"}
                if i == 7
                else None,
            )
            store.create_execution(ex)
            executions.append(ex)
        return executions

    @staticmethod
    def _newest_first(executions: list[Execution]) -> list[str]:
        return [ex.id for ex in sorted(executions, key=lambda ex: (ex.created, ex.id), reverse=True)]

    def test_list_executions_newest_first_pages_without_gaps(self, store: StateStore) -> None:
        executions = self._listing(store)
        pages = collect_pages(lambda cursor: store.list_executions(limit=10, cursor=cursor))
        assert [len(p) for p in pages] == [10, 10, 10, 10, 10, 5]
        ids = [s.id for page in pages for s in page]
        assert len(set(ids)) == 55
        assert ids == self._newest_first(executions)
        assert [s.id for s in store.list_executions(limit=100).items] == ids

    def test_list_executions_summaries(self, store: StateStore) -> None:
        executions = {ex.id: ex for ex in self._listing(store)}
        for summary in store.list_executions(limit=100).items:
            ex = executions[summary.id]
            assert (summary.namespace, summary.flow_id, summary.flow_revision) == (
                ex.namespace,
                ex.flow_id,
                3,
            )
            assert (summary.state, summary.created, summary.ended) == (ex.state, ex.created, ex.ended)
            assert dict(summary.labels) == dict(ex.labels)
            assert summary.parent_id == (ex.parent or {}).get("id")
        assert sum(1 for s in store.list_executions(limit=100).items if s.parent_id == "the-parent") == 1

    def test_list_executions_filters_and_pages_within_them(self, store: StateStore) -> None:
        executions = self._listing(store)

        def listed(**filters: Any) -> list[str]:
            pages = collect_pages(lambda cursor: store.list_executions(limit=4, cursor=cursor, **filters))
            assert all(len(p) <= 4 for p in pages)
            ids = [s.id for p in pages for s in p]
            assert len(ids) == len(set(ids))
            return ids

        def expected(keep: Callable[[Execution], bool]) -> list[str]:
            return self._newest_first([ex for ex in executions if keep(ex)])

        assert listed(namespace="ns.a") == expected(lambda ex: ex.namespace == "ns.a")
        assert listed(flow_id="f2") == expected(lambda ex: ex.flow_id == "f2")
        assert listed(namespace="ns.b", flow_id="f1") == expected(
            lambda ex: (ex.namespace, ex.flow_id) == ("ns.b", "f1")
        )
        assert listed(states=[State.FAILED, State.PAUSED]) == expected(
            lambda ex: ex.state in (State.FAILED, State.PAUSED)
        )
        assert listed(namespace="ns.a", states=[State.RUNNING]) == expected(
            lambda ex: ex.namespace == "ns.a" and ex.state is State.RUNNING
        )
        assert listed(namespace="elsewhere") == []
        assert listed(states=[State.CREATED]) == []

    def test_list_executions_follows_state_changes(self, store: StateStore) -> None:
        ex = make_execution("moving", state=State.RUNNING)
        store.create_execution(ex)
        assert [s.id for s in store.list_executions(states=[State.RUNNING]).items] == ["moving"]
        store.save_execution(ex.evolve(state=State.SUCCESS, ended=at(9), version=2), expected_version=1)
        assert store.list_executions(states=[State.RUNNING]).items == []
        [summary] = store.list_executions(states=[State.SUCCESS]).items
        assert (summary.id, summary.state, summary.ended) == ("moving", State.SUCCESS, at(9))

    # ------------------------------------------------------------------ delete

    def test_delete_execution_removes_an_ended_one_and_nothing_else(
        self, store_factory: Callable[[], StateStore]
    ) -> None:
        store, other = store_factory(), store_factory()
        runs = [make_taskrun(f"tr{i}", i, outputs={"v": "x" * 50}) for i in range(3)]
        store.create_execution(
            make_execution("gone", state=State.SUCCESS, taskruns=runs),
            logs=[log("bye", taskrun_id="tr0")],
            timers=[TimerRecord("gone", "late", at(5))],
        )
        store.create_execution(
            make_execution("kept", state=State.FAILED, taskruns=[make_taskrun("k", 0)], created=at(1)),
            logs=[log("stay")],
        )
        other.delete_execution("gone")  # another instance: nothing cached decides
        for reader in (store, other):
            with pytest.raises(NotFoundError, match="gone"):
                reader.get_execution("gone")
            with pytest.raises(NotFoundError, match="gone"):
                reader.get_execution_meta("gone")
            assert reader.list_taskruns("gone") == []
            assert reader.read_logs("gone").items == []
            assert [s.id for s in reader.list_executions().items] == ["kept"]
            assert reader.get_execution("kept").state is State.FAILED
            assert [line.message for line in reader.read_logs("kept").items] == ["stay"]
        assert store.due_timers(at(100)) == []
        with pytest.raises(NotFoundError, match="gone"):
            store.delete_execution("gone")
        store.create_execution(make_execution("gone", state=State.SUCCESS))  # the id is free again
        assert len(store.get_execution("gone").taskruns) == 0

    def test_delete_execution_refuses_one_that_has_not_ended(self, store: StateStore) -> None:
        for state in (State.RUNNING, State.PAUSED, State.CREATED):
            ex = make_execution(f"live-{state.value}", state=state, taskruns=[make_taskrun("a", 0)])
            store.create_execution(ex, logs=[log("still here")])
            with pytest.raises(ConflictError, match=f"live-{state.value}"):
                store.delete_execution(ex.id)
            assert store.get_execution(ex.id).state is state
            assert len(store.list_taskruns(ex.id)) == 1
            assert [line.message for line in store.read_logs(ex.id).items] == ["still here"]
        with pytest.raises(NotFoundError, match="never"):
            store.delete_execution("never")

    # ------------------------------------------------------------------ logs

    def test_logs_keep_append_order_and_filter_by_taskrun(self, store: StateStore) -> None:
        store.create_execution(make_execution("ex"))
        store.create_execution(make_execution("other"))
        lines = [log(f"line {i}", taskrun_id=("tr-a", "tr-b", None)[i % 3], seconds=-i) for i in range(30)]
        store.append_logs("ex", lines[:10])
        store.append_logs("other", [log("not mine")])
        store.append_logs("ex", lines[10:])
        store.append_logs("ex", [])
        assert store.read_logs("ex").items == lines  # append order, not time order
        assert store.read_logs("ex", taskrun_id="tr-b").items == [x for x in lines if x.taskrun_id == "tr-b"]
        assert store.read_logs("other").items == [log("not mine")]
        assert store.read_logs("nobody").items == []
        assert store.read_logs("ex").items[0].at.utcoffset() == timedelta(0)

    def test_read_logs_pages_without_gaps(self, store: StateStore) -> None:
        store.create_execution(make_execution("ex"))
        lines = [
            log(f"line {i}", taskrun_id="tr-a" if i % 2 else None, level=Level.WARN if i % 5 else Level.ERROR)
            for i in range(45)
        ]
        store.append_logs("ex", lines)
        pages = collect_pages(lambda cursor: store.read_logs("ex", limit=10, cursor=cursor))
        assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
        assert [x for p in pages for x in p] == lines
        odd = collect_pages(lambda cursor: store.read_logs("ex", taskrun_id="tr-a", limit=6, cursor=cursor))
        assert [len(p) for p in odd] == [6, 6, 6, 4]
        assert [x for p in odd for x in p] == lines[1::2]

    def test_logs_are_written_with_the_execution(self, store: StateStore) -> None:
        ex = make_execution("ex", taskruns=[make_taskrun("a", 0)])
        store.create_execution(ex, logs=[log("one", taskrun_id="a"), log("two")])
        store.append_logs("ex", [log("three")])
        store.save_execution(
            with_taskrun(ex, make_taskrun("b", 1)), expected_version=1, logs=[log("four", taskrun_id="b")]
        )
        assert [x.message for x in store.read_logs("ex").items] == ["one", "two", "three", "four"]
        assert [x.message for x in store.read_logs("ex", taskrun_id="b").items] == ["four"]

    def test_unicode_and_long_log_messages_are_intact(self, store: StateStore) -> None:
        store.create_execution(make_execution("ex"))
        long = "".join(f"{i:06d} ünïcødé 🌧 日本語 \\n\t'\"" for i in range(4000))  # ~120,000 chars
        lines = [
            log(long),
            log("line\nbreaks\r\nand\x00nul"),
            log("  leading and trailing spaces  "),
            log(""),
            LogLine(at(1), Level.ERROR, "ошибка", "task", "tr-x", 3),
        ]
        store.append_logs("ex", lines)
        got = store.read_logs("ex").items
        assert len(got[0].message) == len(long)
        assert got == lines

    # ------------------------------------------------------------------ large executions

    def test_a_megabyte_of_outputs_round_trips(self, store: StateStore) -> None:
        big = big_outputs()
        assert len(dumps(big).encode()) > 1_000_000
        ex = make_execution("big", taskruns=[make_taskrun("small", 0, outputs={"x": 1})])
        store.create_execution(ex)
        nxt = with_taskrun(ex, make_taskrun("large", 1, task_id="large", outputs=big))
        store.save_execution(nxt, expected_version=1)
        got = store.get_execution("big")
        assert_same_execution(got, nxt)
        assert got.taskruns["large"].outputs == big
        assert got.outputs_index["large"] == big
        # and created in one go, too
        store.create_execution(nxt.evolve(id="big2"))
        assert store.get_execution("big2").taskruns["large"].outputs == big

    def test_five_thousand_taskruns_round_trip_and_one_is_saved_alone(self, store: StateStore) -> None:
        ex = five_thousand()
        assert len(ex.taskruns) == 5001
        store.create_execution(ex)
        got = store.get_execution(ex.id)
        assert_same_execution(got, ex)
        assert got.outputs_index["leaf"]["v4999"] == {"value": "v4999"}
        leaf = next(tr for tr in got.taskruns.values() if tr.values == ("v2500",))
        changed = leaf.evolve(outputs={"value": "rewritten"})
        nxt = got.evolve(
            taskruns=got.taskruns.set(leaf.id, changed), version=got.version + 1, changed=frozenset({leaf.id})
        )
        store.save_execution(nxt, expected_version=got.version)
        again = store.get_execution(ex.id)
        assert again.version == got.version + 1
        assert again.taskruns[leaf.id].outputs == {"value": "rewritten"}
        assert again.outputs_index["leaf"]["v2500"] == {"value": "rewritten"}
        assert len(again.taskruns) == 5001

    # ------------------------------------------------------------------ reading a big execution in pages

    @staticmethod
    def _all_taskruns(store: StateStore, execution_id: str, limit: int) -> list[TaskRun]:
        out: list[TaskRun] = []
        after: str | None = None
        for _ in range(10_000):
            page = store.list_taskruns(execution_id, after=after, limit=limit)
            assert len(page) <= limit
            if not page:
                return out
            out += page
            after = page[-1].id
        raise AssertionError("list_taskruns never ran out")

    def test_list_taskruns_pages_visit_each_task_run_once_in_id_order(self, store: StateStore) -> None:
        ex = five_thousand()
        store.create_execution(ex)
        listed = self._all_taskruns(store, ex.id, 700)
        ids = [tr.id for tr in listed]
        assert ids == sorted(ex.taskruns, key=str.encode) and len(set(ids)) == 5001
        for tr in listed[::250]:
            assert plain(tr.outputs) == plain(ex.taskruns[tr.id].outputs) and tr == replace(
                ex.taskruns[tr.id], outputs=tr.outputs
            )
        assert store.list_taskruns(ex.id, after=ids[-1]) == []
        assert [tr.id for tr in store.list_taskruns(ex.id, after=ids[99], limit=3)] == ids[100:103]
        between = ids[99][:-1]  # ``after`` need not be the id of a task run
        assert store.list_taskruns(ex.id, after=between, limit=1)[0].id == min(i for i in ids if i > between)
        meta = store.get_execution_meta(ex.id)  # read without its 5,001 task runs
        assert_same_execution(meta, ex.evolve(taskruns=immutables.Map(), outputs_index=immutables.Map()))

    @pytest.mark.parametrize("name", ["foreach", "restart"])
    def test_list_taskruns_of_a_small_execution_and_after_saves(self, store: StateStore, name: str) -> None:
        sc = scenario(name)
        for history in sc.histories.values():
            store.create_execution(history[0])
            for previous, current in itertools.pairwise(history):
                store.save_execution(current, expected_version=previous.version)
                listed = self._all_taskruns(store, current.id, 2)
                assert [tr.id for tr in listed] == sorted(current.taskruns, key=str.encode)
                assert {tr.id: tr.state for tr in listed} == {k: v.state for k, v in current.taskruns.items()}

    def test_list_taskruns_of_an_unknown_execution_is_empty(self, store: StateStore) -> None:
        assert store.list_taskruns("nobody") == []

    @pytest.mark.parametrize("name", SCENARIOS)
    def test_execution_meta_is_the_execution_without_its_task_runs(
        self, store: StateStore, name: str
    ) -> None:
        for history in scenario(name).histories.values():
            store.create_execution(history[-1])
            meta = store.get_execution_meta(history[-1].id)
            assert len(meta.taskruns) == 0 and len(meta.outputs_index) == 0
            want = history[-1].evolve(
                taskruns=immutables.Map(), outputs_index=immutables.Map(), changed=frozenset()
            )
            assert_same_execution(meta, want)
        with pytest.raises(NotFoundError, match="nobody"):
            store.get_execution_meta("nobody")

    # ------------------------------------------------------------------ timers

    def test_timers_are_written_with_executions_and_come_due_earliest_first(self, store: StateStore) -> None:
        a = make_execution("a")
        b = make_execution("b")
        store.create_execution(
            a, timers=[TimerRecord("a", "retry:x:1", at(30)), TimerRecord("a", "pause:y", at(10))]
        )
        store.create_execution(b, timers=[TimerRecord("b", "timeout:z", at(20))])
        store.save_execution(
            a.evolve(version=2), expected_version=1, timers=[TimerRecord("a", "sleep:w", at(20.5))]
        )
        assert store.next_timer() == at(10)
        assert store.due_timers(at(9.999999)) == []
        due = store.due_timers(at(20.5))  # inclusive bound
        assert due == [
            TimerRecord("a", "pause:y", at(10)),
            TimerRecord("b", "timeout:z", at(20)),
            TimerRecord("a", "sleep:w", at(20.5)),
        ]
        assert due[0].at.utcoffset() == timedelta(0)
        assert store.due_timers(at(100), limit=2) == due[:2]
        assert [t.key for t in store.due_timers(at(100))] == ["pause:y", "timeout:z", "sleep:w", "retry:x:1"]

    def test_rewriting_a_timer_replaces_its_time(self, store: StateStore) -> None:
        ex = make_execution("ex")
        store.create_execution(ex, timers=[TimerRecord("ex", "retry:t:1", at(10))])
        store.save_execution(
            ex.evolve(version=2), expected_version=1, timers=[TimerRecord("ex", "retry:t:1", at(40))]
        )
        assert store.due_timers(at(39)) == []
        assert store.due_timers(at(40)) == [TimerRecord("ex", "retry:t:1", at(40))]
        store.save_execution(
            ex.evolve(version=3), expected_version=2, timers=[TimerRecord("ex", "retry:t:1", at(5))]
        )
        assert store.due_timers(at(100)) == [TimerRecord("ex", "retry:t:1", at(5))]
        assert store.next_timer() == at(5)

    def test_delete_timer_and_next_timer(self, store: StateStore) -> None:
        assert store.next_timer() is None
        store.create_execution(
            make_execution("ex"),
            timers=[
                TimerRecord("ex", "k1", at(1)),
                TimerRecord("ex", "k2", at(2)),
                TimerRecord("ex", "k3", at(3)),
            ],
        )
        store.delete_timer("ex", "k1")
        store.delete_timer("ex", "k1")  # idempotent
        store.delete_timer("ex", "never")
        assert store.next_timer() == at(2)
        assert [t.key for t in store.due_timers(at(100))] == ["k2", "k3"]
        store.delete_timer("ex", "k3")
        store.delete_timer("ex", "k2")
        assert store.next_timer() is None
        assert store.due_timers(at(100)) == []

    # ------------------------------------------------------------------ jobs

    def test_jobs_written_with_save_are_readable_and_active(self, store: StateStore) -> None:
        ex = make_execution("ex", taskruns=[make_taskrun("a", 0)])
        store.create_execution(ex)
        job = make_job("ex-a-job", "ex", taskrun_id="a")
        store.save_execution(ex.evolve(version=2), expected_version=1, jobs=[job])
        stored = store.get_job("ex-a-job")
        assert stored == replace(job, version=1)
        assert (
            stored is not None and stored.updated is not None and stored.updated.utcoffset() == timedelta(0)
        )
        assert store.active_jobs() == [stored]
        assert store.get_job("unknown") is None

    def test_update_job_checks_the_version(self, store: StateStore) -> None:
        store.create_execution(make_execution("ex"), jobs=[make_job("job-under-test", "ex")])
        stored = store.get_job("job-under-test")
        assert stored is not None
        submitted = replace(
            stored, phase=JobPhase.SUBMITTED, handle={"id": "arn:aws:batch:job/1", "n": [1]}, updated=at(5)
        )
        written = store.update_job(submitted, expected_version=stored.version)
        assert written == replace(submitted, version=stored.version + 1)
        assert store.get_job("job-under-test") == written
        with pytest.raises(ConflictError, match="job-under-test"):
            store.update_job(replace(stored, phase=JobPhase.DONE), expected_version=stored.version)
        assert store.get_job("job-under-test") == written
        with pytest.raises(NotFoundError, match="missing-job"):
            store.update_job(replace(stored, name="missing-job"), expected_version=1)

    def test_active_jobs_submitting_first_runner_filter_and_done_leave(self, store: StateStore) -> None:
        jobs = [
            make_job("j1", "ex", runner="process"),
            make_job("j2", "ex", runner="aws_batch"),
            make_job("j3", "ex", runner="process"),
            make_job("j4", "ex", runner="process"),
        ]
        store.create_execution(make_execution("ex"), jobs=jobs)
        for name, phase in [("j1", JobPhase.SUBMITTED), ("j4", JobPhase.DONE)]:
            stored = store.get_job(name)
            assert stored is not None
            store.update_job(
                replace(stored, phase=phase, handle={"id": name}), expected_version=stored.version
            )
        active = store.active_jobs()
        assert [j.phase for j in active] == [JobPhase.SUBMITTING, JobPhase.SUBMITTING, JobPhase.SUBMITTED]
        assert {j.name for j in active[:2]} == {"j2", "j3"} and active[2].name == "j1"
        assert sorted(j.name for j in store.active_jobs(runner="process")) == ["j1", "j3"]
        assert [j.name for j in store.active_jobs(runner="aws_batch")] == ["j2"]
        assert store.active_jobs(runner="kubernetes") == []
        assert len(store.active_jobs(limit=2)) == 2
        done = store.get_job("j4")
        assert done is not None and done.phase is JobPhase.DONE

    @pytest.mark.parametrize(
        ("execution_id", "name"),
        [("ex", "claimed-job"), ("0123456789abcdef", "work-0123456789abcdef-abcdefgh")],
        ids=["own-record", "name-carries-execution"],
    )
    def test_a_submit_claim_is_stored_and_taken_by_one_conditional_write(
        self, store_factory: Callable[[], StateStore], execution_id: str, name: str
    ) -> None:
        first, second = store_factory(), store_factory()
        claim = {"claim": "host:1:aaaa", "claim_until": at(120), "since": at(0)}
        first.create_execution(
            make_execution(execution_id), jobs=[replace(make_job(name, execution_id), **claim)]
        )
        stored = first.get_job(name)
        assert stored is not None and (stored.claim, stored.claim_until, stored.since) == (
            "host:1:aaaa",
            at(120),
            at(0),
        )
        # Two processes that read the same version: one takes the claim, the other conflicts.
        mine = replace(stored, claim="host:2:bbbb", claim_until=at(300))
        theirs = replace(stored, claim="host:3:cccc", claim_until=at(300))
        taken = first.update_job(mine, expected_version=stored.version)
        with pytest.raises(ConflictError, match=name):
            second.update_job(theirs, expected_version=stored.version)
        assert second.get_job(name) == taken and taken.claim == "host:2:bbbb"
        released = second.update_job(
            replace(taken, claim=None, claim_until=None), expected_version=taken.version
        )
        assert first.get_job(name) == released and released.since == at(0)

    @pytest.mark.parametrize(
        ("execution_id", "name"),
        [("ex", "killed-job"), ("0123456789abcdef", "work-0123456789abcdef-bcdefghi")],
        ids=["own-record", "name-carries-execution"],
    )
    def test_cancelling_is_active_and_a_handle_written_after_it_keeps_it_cancelling(
        self, store: StateStore, execution_id: str, name: str
    ) -> None:
        ex = make_execution(execution_id, taskruns=[make_taskrun("tr", 0)])
        store.create_execution(ex, jobs=[make_job(name, execution_id)])
        stored = store.get_job(name)
        assert stored is not None
        cancelling = replace(stored, phase=JobPhase.CANCELLING, updated=at(10))
        store.save_execution(ex.evolve(version=2), expected_version=1, jobs=[cancelling])
        assert [(j.name, j.phase) for j in store.active_jobs()] == [(name, JobPhase.CANCELLING)]
        # A step carrying the job's handle lands after the kill's (another process submitted it).
        handle = {"name": name, "runner": "process", "id": "job-1", "data": {}}
        late = replace(stored, phase=JobPhase.SUBMITTED, handle=handle, updated=at(11))
        store.save_execution(ex.evolve(version=3), expected_version=2, jobs=[late])
        after = store.get_job(name)
        assert after is not None and (after.phase, after.handle) == (JobPhase.CANCELLING, handle)
        assert after.spec == stored.spec  # still findable by name: the spec stays until DONE
        done = replace(after, phase=JobPhase.DONE, updated=at(12))
        store.save_execution(ex.evolve(version=4), expected_version=3, jobs=[done])
        final = store.get_job(name)
        assert final is not None and final.phase is JobPhase.DONE and store.active_jobs() == []

    def test_a_job_name_written_twice_rolls_back_the_second_write(self, store: StateStore) -> None:
        first = make_execution("first")
        store.create_execution(first, jobs=[make_job("same-name", "first")])
        second = make_execution("second", taskruns=[make_taskrun("a", 0)])
        store.create_execution(second)
        attempt = with_taskrun(second, make_taskrun("b", 1), state=State.FAILED)
        with pytest.raises(ConflictError, match="same-name"):
            store.save_execution(
                attempt,
                expected_version=1,
                logs=[log("should vanish")],
                timers=[TimerRecord("second", "k", at(1))],
                jobs=[make_job("fresh-name", "second"), make_job("same-name", "second")],
            )
        assert_same_execution(store.get_execution("second"), second.evolve(changed=frozenset()))
        assert store.read_logs("second").items == []
        assert store.next_timer() is None
        assert store.get_job("fresh-name") is None
        owner = store.get_job("same-name")
        assert owner is not None and owner.execution_id == "first"
        # the same on create: nothing of the new execution remains
        with pytest.raises(ConflictError, match="same-name"):
            store.create_execution(
                make_execution("third", taskruns=[make_taskrun("a", 0)]),
                logs=[log("gone")],
                timers=[TimerRecord("third", "k", at(1))],
                jobs=[make_job("same-name", "third")],
            )
        with pytest.raises(NotFoundError):
            store.get_execution("third")
        assert store.read_logs("third").items == []
        assert store.next_timer() is None
        # and the version stayed put, so the right write still succeeds
        store.save_execution(attempt, expected_version=1, jobs=[make_job("fresh-name", "second")])
        assert store.get_execution("second").version == 2

    # ------------------------------------------------------------------ flow concurrency slots

    @staticmethod
    def _race(stores: list[StateStore], work: Callable[[int, StateStore], None]) -> None:
        """Run ``work(k, store)`` for every store at once (threads released together)."""
        barrier = threading.Barrier(len(stores))
        failures: list[BaseException] = []

        def run(k: int, st: StateStore) -> None:
            try:
                barrier.wait(timeout=60)
                work(k, st)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(k, st)) for k, st in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        assert not failures, failures

    def test_concurrency_slots_racing_writers_admit_exactly_the_limit_and_hand_over_once(
        self, store_factory: Callable[[], StateStore]
    ) -> None:
        # Kestra's flow ``concurrency``: at most ``limit`` run, the rest queue in order; what
        # separate store instances (processes, Lambdas) decide at once must add up.
        from control_plane.flows.models import Concurrency
        from control_plane.service.concurrency import Admission, Slots

        stores = [store_factory() for _ in range(4)]
        limit = Concurrency(limit=3)
        answers: dict[str, Admission] = {}

        def admit(k: int, st: StateStore) -> None:
            slots = Slots(st)
            for j in range(5):
                answers[f"e{k}-{j}"], _ = slots.admit("t.slots", "f", f"e{k}-{j}", limit)

        self._race(stores, admit)
        running = sorted(e for e, a in answers.items() if a is Admission.RUN)
        assert len(running) == 3 and len(answers) == 20
        book = Slots(stores[0]).book("t.slots", "f")
        assert sorted(book.running) == running
        assert sorted(book.queued) == sorted(set(answers) - set(running))
        # asked again (a retried start), each gets the same answer and the book does not change
        assert Slots(stores[1]).admit("t.slots", "f", running[0], limit)[0] is Admission.RUN
        assert Slots(stores[1]).admit("t.slots", "f", book.queued[-1], limit)[0] is Admission.QUEUE
        assert Slots(stores[2]).book("t.slots", "f") == book

        promoted: dict[str, tuple[str, ...]] = {}

        def release(k: int, st: StateStore) -> None:
            promoted[running[k]] = tuple(Slots(st).release("t.slots", "f", running[k], 3))

        self._race(stores[:3], release)
        handed = sorted(p for ps in promoted.values() for p in ps)
        assert all(len(ps) == 1 for ps in promoted.values())
        assert handed == sorted(book.queued[:3])  # the three oldest queued, each once
        after = Slots(stores[3]).book("t.slots", "f")
        assert sorted(after.running) == handed and after.queued == book.queued[3:]
        assert Slots(stores[0]).release("t.slots", "f", running[0], 3) == ()  # a second release: no-op
        assert Slots(stores[0]).book("t.slots", "f") == after

    def test_concurrency_slots_cancel_and_fail_refuse_without_queueing(self, store: StateStore) -> None:
        from control_plane.flows.models import Concurrency
        from control_plane.service.concurrency import Admission, Slots

        slots = Slots(store)
        cancel, fail = Concurrency(limit=1, behavior="CANCEL"), Concurrency(limit=1, behavior="FAIL")
        assert slots.admit("t.slots", "c", "first", cancel) == (Admission.RUN, 0)
        assert slots.admit("t.slots", "c", "second", cancel) == (Admission.CANCEL, 1)
        assert slots.admit("t.slots", "c", "third", fail) == (Admission.FAIL, 1)
        assert slots.book("t.slots", "c").queued == ()
        assert slots.release("t.slots", "c", "first", 1) == ()
        assert slots.admit("t.slots", "c", "fourth", cancel) == (Admission.RUN, 0)
        assert slots.book("t.slots", "other") == slots.book("t.slots", "nothing-yet")  # empty, per flow

    # ------------------------------------------------------------------ triggers

    def test_triggers_create_update_and_conflict(self, store: StateStore) -> None:
        assert store.get_trigger("t.store.f.daily") is None
        created = store.put_trigger(
            TriggerRecord("t.store.f.daily", {"last": "2026-01-01", "ü": [1]}), expected_version=0
        )
        assert created == TriggerRecord("t.store.f.daily", {"last": "2026-01-01", "ü": [1]}, 1)
        assert store.get_trigger("t.store.f.daily") == created
        with pytest.raises(ConflictError, match="daily"):
            store.put_trigger(TriggerRecord("t.store.f.daily", {"last": "other"}), expected_version=0)
        updated = store.put_trigger(
            TriggerRecord("t.store.f.daily", {"last": "2026-01-02"}), expected_version=1
        )
        assert updated.version == 2
        assert store.get_trigger("t.store.f.daily") == TriggerRecord(
            "t.store.f.daily", {"last": "2026-01-02"}, 2
        )
        with pytest.raises(ConflictError, match="daily"):
            store.put_trigger(TriggerRecord("t.store.f.daily", {"last": "stale"}), expected_version=1)
        assert store.get_trigger("t.store.f.daily") == updated
        with pytest.raises(ConflictError):
            store.put_trigger(TriggerRecord("never.created", {}), expected_version=4)
        assert store.get_trigger("never.created") is None

    # ------------------------------------------------------------------ reopening

    def test_data_survives_reopening(self, store_factory: Callable[[], StateStore]) -> None:
        sc = scenario("foreach")
        first = store_factory()
        first.save_flow("t.store", "loops", FOREACH, at=at(0))
        first.create_execution(
            sc.final,
            logs=[log("persisted 🌧")],
            timers=[TimerRecord(sc.main, "k", at(7))],
            jobs=[make_job("kept-job", sc.main)],
        )
        first.put_trigger(TriggerRecord("kept", {"a": 1}), expected_version=0)
        first.close()
        second = store_factory()
        assert second.get_flow("t.store", "loops").source == FOREACH
        assert_same_execution(second.get_execution(sc.main), sc.final)
        assert [x.message for x in second.read_logs(sc.main).items] == ["persisted 🌧"]
        assert second.due_timers(at(7)) == [TimerRecord(sc.main, "k", at(7))]
        assert [j.name for j in second.active_jobs()] == ["kept-job"]
        assert second.get_trigger("kept") == TriggerRecord("kept", {"a": 1}, 1)
        assert [s.id for s in second.list_executions().items] == [sc.main]

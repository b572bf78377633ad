"""The progress display's figures (``control_plane/progress.py``), on hand-made executions and
an injected clock: no service, no terminal."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import immutables
from msgspec.structs import replace
from rich.console import Console

from control_plane.engine.model import Attempt, Execution, LogLine, Phase, Progress, TaskRun
from control_plane.engine.states import State
from control_plane.flows.loader import parse_flow
from control_plane.levels import Level
from control_plane.progress import LiveDisplay, PlainDisplay, Tally, tree

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(
    tr_id: str, state: State, *, parent: str | None = "f", position: int = 0, attempts: int = 1, **kw: Any
) -> TaskRun:
    value = tr_id if parent else None
    return TaskRun(
        id=tr_id,
        seq=int(tr_id[1:].rstrip("b")) + 1 if parent else 0,
        task_id=kw.pop("task_id", "planet" if parent else "f"),
        task_type="t",
        parent_id=parent,
        phase=Phase.TASKS,
        lane=0,
        position=position,
        values=(value,) if value else (),
        iteration=0,
        state=state,
        created=T0,
        ended=T0 + timedelta(seconds=2) if state.terminal else None,
        attempts=tuple(Attempt(state, T0) for _ in range(attempts)),
        **kw,
    )


class Builder:
    """Successive versions of one execution, each saying which task runs it changed."""

    def __init__(self, execution_id: str = "e1") -> None:
        self.id = execution_id
        self.version = 0
        self.runs: dict[str, TaskRun] = {}

    def save(self, *changes: TaskRun, state: State = State.RUNNING, gap: int = 0) -> Execution:
        for tr in changes:
            self.runs[tr.id] = tr
        self.version += 1 + gap
        return Execution(
            id=self.id,
            namespace="n",
            flow_id="fl",
            flow_revision=1,
            state=state,
            created=T0,
            version=self.version,
            taskruns=immutables.Map(self.runs),
            progress=Progress(total=1, started=1),
            changed=frozenset(tr.id for tr in changes),
        )


def foreach(started: int, total: int = 10, state: State = State.RUNNING) -> TaskRun:
    return run("f", state, parent=None, progress=Progress(total=total, started=started))


def test_counts_follow_the_changed_task_runs_and_the_eta_follows_the_pace() -> None:
    clock = Clock()
    tally = Tally(clock=clock)
    ex = Builder()
    tally.update(ex.save(foreach(2), run("c0", State.RUNNING), run("c1", State.RUNNING)))
    s = tally.snapshot()
    # 3 created; the ForEach has 8 lanes still to start, one task run each (no flow: as seen)
    assert (s.done, s.total, s.running, s.failed, s.retries, s.eta) == (
        0,
        11,
        ("planet (c0)", "planet (c1)"),
        0,
        0,
        None,
    )

    clock.now += 2
    ended = tally.update(ex.save(run("c0", State.SUCCESS), run("c2", State.RUNNING, position=0), foreach(3)))
    assert [(e.label, e.state) for e in ended] == [("planet (c0)", State.SUCCESS)]
    assert (tally.snapshot().done, tally.snapshot().total) == (1, 11)
    assert tally.snapshot().eta is None  # one task run says too little of the pace

    clock.now += 8  # 10 s in: 4 of 11 done
    ended = tally.update(
        ex.save(
            run("c1", State.SUCCESS),
            run("c2", State.FAILED, attempts=2, error="exit 1"),
            run("c3", State.SUCCESS),
            foreach(4),
        )
    )
    s = tally.snapshot()
    assert (s.done, s.total, s.failed, s.retries, s.running) == (4, 11, 1, 1, ())
    assert s.eta == (11 - 4) * 10 / 4
    assert {e.label for e in ended if e.retry} == {"planet (c2)"}
    assert s.header() == "4/11 done · 0 running · 1 failed · 1 retry · 10.0s · ETA 17.5s"


def test_a_version_gap_counts_everything_again() -> None:
    tally = Tally(clock=Clock())
    ex = Builder()
    tally.update(ex.save(foreach(2), run("c0", State.RUNNING), run("c1", State.RUNNING)))
    # another process wrote in between: this change names only c1, but c0 ended meanwhile
    ex.runs["c0"] = run("c0", State.SUCCESS)
    tally.update(ex.save(run("c1", State.SUCCESS), gap=1))
    assert tally.snapshot().done == 2 and tally.snapshot().running == ()


def test_a_dropped_task_run_counts_everything_again() -> None:
    tally = Tally(clock=Clock())
    ex = Builder()
    tally.update(ex.save(foreach(2), run("c0", State.FAILED), run("c1", State.SUCCESS)))
    assert tally.snapshot().failed == 1
    del ex.runs["c0"]  # a restart drops the failed run and makes it again
    tally.update(ex.save(run("c0b", State.RUNNING)))
    s = tally.snapshot()
    assert (s.failed, s.done, s.running) == (0, 1, ("planet (c0b)",))


def test_the_flow_gives_the_tasks_of_a_lane_for_the_total() -> None:
    flow = parse_flow(
        "id: fl\nnamespace: n\ntasks:\n"
        "  - id: f\n    type: io.kestra.plugin.core.flow.ForEach\n"
        "    values: [a, b, c, d, e, f, g, h, i, j]\n"
        "    tasks:\n"
        "      - id: planet\n        type: io.kestra.plugin.core.log.Log\n        message: x\n"
        "      - id: moon\n        type: io.kestra.plugin.core.log.Log\n        message: y\n"
        "  - id: after\n    type: io.kestra.plugin.core.log.Log\n    message: z\n"
    )
    tally = Tally(lambda _: flow, clock=Clock())
    tally.update(Builder().save(foreach(1), run("c0", State.RUNNING)))
    # f, c0 created; f: 10 lanes x 2 tasks - 1 created; the flow: 2 top-level tasks - 1 created
    assert tally.snapshot().total == 2 + 19 + 1


def test_the_flow_retry_of_the_followed_execution_is_said_in_a_line_and_followed() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(Console(file=out, width=200), Tally(clock=clock), lambda ex: f"{ex.id}-retry")
    first = Builder("first")
    display.on_change(first.save(foreach(1), run("c0", State.RUNNING)))
    display.on_change(first.save(run("c0", State.FAILED), foreach(1, state=State.FAILED), state=State.FAILED))
    subflow = Builder("subflow").save(foreach(1), run("c0", State.RUNNING))
    display.on_change(subflow)  # not followed: only its logs are shown, under its id
    display.on_logs(subflow, [LogLine(T0, Level.INFO, "from the subflow", "c0")])
    assert display.tally.execution_id == "first"
    display.on_change(Builder("first-retry").save(foreach(1), run("c0", State.RUNNING)))
    text = out.getvalue()
    assert "FAILED planet (c0)" in text
    assert "execution first FAILED: the flow's retry made a new execution, first-retry" in text
    assert display.tally.previous == [("first", State.FAILED)]
    assert "[subflow] INFO  c0: from the subflow" in text
    assert "\x1b" not in text


def test_plain_lines_say_the_progress_at_most_every_interval() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(Console(file=out, width=200), Tally(clock=clock), interval=10)
    ex = Builder()
    display.on_change(ex.save(foreach(1), run("c0", State.RUNNING)))
    clock.now += 9
    display.on_change(ex.save(run("c0", State.SUCCESS), run("c1", State.RUNNING), foreach(2)))
    assert "progress:" not in out.getvalue()
    clock.now += 1
    display.on_change(ex.save(run("c1", State.SUCCESS), run("c2", State.RUNNING), foreach(3)))
    clock.now += 1
    display.on_change(ex.save(run("c2", State.SUCCESS), run("c3", State.RUNNING), foreach(4)))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("progress:")]
    assert lines == ["progress: 2/11 done · 1 running · 10.0s"]


def test_the_final_tree_collapses_a_large_sibling_group_to_counts_by_state() -> None:
    ex = Builder()
    children = [run(f"v{i}", State.FAILED if i in (3, 17) else State.SUCCESS) for i in range(30)]
    execution = ex.save(foreach(30, total=30, state=State.FAILED), *children, state=State.FAILED)
    out = io.StringIO()
    Console(file=out, width=120).print(tree(execution, "fl"))
    text = out.getvalue()
    assert "planet x30: 28 SUCCESS, 2 FAILED" in text
    assert "FAILED planet (v3)" in text and "FAILED planet (v17)" in text  # the odd ones, by value
    assert "planet (v4)" not in text
    assert len(text.splitlines()) == 5


def test_on_a_terminal_changes_and_logs_only_record_until_the_next_draw() -> None:
    out = io.StringIO()
    clock = Clock()
    console = Console(file=out, width=120, height=40, force_terminal=True, force_interactive=True)
    display = LiveDisplay(console, Tally(clock=clock))
    ex = Builder()
    display.live.start(refresh=False)
    started = out.getvalue()  # rich hides the cursor
    try:
        for i in range(100):
            display.on_change(ex.save(run(f"c{i}", State.RUNNING), foreach(i + 1, total=100)))
            display.on_logs(None, [LogLine(T0, Level.INFO, f"hello {i}", "planet")])
            display.on_change(ex.save(run(f"c{i}", State.SUCCESS)))
        assert out.getvalue() == started  # 200 changes, 100 logs: nothing drawn yet
        clock.now += 5
        display.draw()
        text = out.getvalue()
    finally:
        display.live.stop()
    assert text.count("hello ") == 100 and "hello 99" in text  # the logs, once, above the block
    assert text.count("100/101 done") == 1 and "ETA 0.1s" in text
    assert display.redraws == 1


def _rich_text(execution: Execution, title: str, width: int, *, ascii_only: bool = False) -> str:
    """What ``squall`` prints through rich where there is no colour (cli_output.make_console);
    rich draws ascii guides when the stream's encoding is not UTF-8."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii" if ascii_only else "utf-8", newline="\n")
    console = Console(file=out, width=width, soft_wrap=True, highlight=False, color_system=None)
    assert console.options.ascii_only is ascii_only
    console.print(tree(execution, title))
    out.flush()
    return raw.getvalue().decode("utf-8")


def _nested() -> Execution:
    ex = Builder()
    loop = [run(f"v{i}", State.FAILED if i in (3, 17) else State.SUCCESS) for i in range(30)]
    inner = [run(f"w{i}b", State.SUCCESS, parent=f"v{i}", task_id="inner") for i in range(3)]
    retried = run("r", State.SUCCESS, parent=None, task_id="retried", attempts=3)
    last = run("z", State.WARNING, parent=None, task_id="last")
    flow = foreach(30, total=30, state=State.FAILED)
    return ex.save(flow, *loop, *inner, retried, last, state=State.FAILED)


def test_the_plain_tree_is_what_rich_prints_without_colour() -> None:
    """``tree_text`` (the CLI's fast path to a pipe or a file) is byte for byte rich's output, for
    grouped, nested, retried siblings, with unicode and ascii guides, at several widths."""
    from control_plane.progress import tree_text

    execution = _nested()
    for width in (60, 80, 200):
        for ascii_only in (False, True):
            plain = tree_text(execution, "[bold]n.fl[/bold]", width=width, unicode=not ascii_only)
            assert plain is not None
            assert plain == _rich_text(execution, "[bold]n.fl[/bold]", width, ascii_only=ascii_only)
    # Siblings of equal start sort by id (random per run): `last` may or may not be the last.
    assert "planet x30: 28 SUCCESS, 2 FAILED" in plain
    assert "+-- WARNING last" in plain or "`-- WARNING last" in plain


def test_the_plain_tree_defers_to_rich_where_rich_would_print_otherwise() -> None:
    """Markup or an emoji code inside a value, a tab, non-ASCII text, a line as wide as the
    console: rich renders or crops those its own way, so ``tree_text`` gives None (or, for
    the state colours' own markup, the very text rich prints)."""
    from control_plane.progress import tree_text

    cases = {"[red]x[/red]": False, "[x]": True, "a :smile: b": True, "tab\there": True, "caf\u00e9": True}
    cases |= {"x" * 70: True, "fine: value": False, "a:b c:d": False}
    for value, deferred in cases.items():
        ex = Builder()
        execution = ex.save(foreach(1, total=1), replace(run("v1", State.SUCCESS), values=(value,)))
        plain = tree_text(execution, "fl", width=80)
        assert (plain is None) is deferred, value
        assert plain is None or plain == _rich_text(execution, "fl", 80), value

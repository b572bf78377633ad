"""What ``squall run`` shows while an execution runs, and the tree it prints at the end.

Theory of operation: the service calls ``on_change(execution)`` after every saved change and
``on_logs(execution, lines)`` when logs are stored or a running job prints. Neither may cost
much: a 300-task ForEach makes well over a thousand changes. So

* :class:`Tally` keeps the counts (done, running, failed, retries, the total to expect)
  up to date from ``Execution.changed``, the task runs one plan touched: O(changed) per
  change, not O(task runs). A version gap (another process wrote, a restart dropped task
  runs) or a new execution id rescans once.
* :class:`LiveDisplay` (stdout is an interactive terminal) only records in the callbacks;
  a thread redraws at most ``1 / interval`` times a second: the log lines that came since
  go above, then a short block: the header ``done/total · running · failed · retries ·
  elapsed · ETA``, the running tasks by name, the last task runs that ended.
* :class:`PlainDisplay` (a pipe, a file, a dumb terminal) writes plain lines and never moves
  the cursor: each log line, each failure or retry, a progress line at most every
  ``interval`` seconds.

Both say so in a line of their own when a flow-level retry moves on to a new execution, and
prefix the logs of an execution that is no longer the current one with its id.

The total is an estimate that only the engine's counters make cheap: the task runs created,
plus, for each running flowable (and the flow itself), the lanes its ``Progress`` has not
started times the tasks in a lane (from the flow), minus the children it already created.
Nested loops not started yet count as one task run until they start.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_plane.cli_output import literal
from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.engine.states import State

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live
    from rich.text import Text
    from rich.tree import Tree

    from control_plane.flows.models import Flow

__all__ = [
    "STYLE",
    "LiveDisplay",
    "PlainDisplay",
    "Snapshot",
    "Tally",
    "display_for",
    "log_text",
    "tree",
    "tree_text",
]

STYLE = {  # a state's colour wherever squall prints one (cli.py imports it inside its commands)
    "SUCCESS": "green",
    "WARNING": "yellow",
    "FAILED": "red",
    "KILLED": "red",
    "CANCELLED": "red",
    "RUNNING": "cyan",
    "PAUSED": "magenta",
    "RETRYING": "yellow",
    "SKIPPED": "dim",
}
GROUP_AT = 10  # siblings of one task id beyond this are one line of counts in the final tree
SHOWN_IN_GROUP = 5  # members of a collapsed group listed anyway when they did not succeed
RUNNING_SHOWN = 6  # running tasks named in the live block
RECENT_SHOWN = 5  # task runs that just ended, in the live block


def _label(tr: TaskRun) -> str:
    return f"{tr.task_id} ({tr.value})" if tr.value is not None and tr.parent_id else tr.task_id


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# ====================================================================== the counts


@dataclass(frozen=True)
class Ended:
    """A task run that reached a terminal state (or a new attempt: ``retry``) in one change."""

    label: str
    state: State
    seconds: float | None
    retry: int = 0  # the number of the attempt that starts (retries only)
    error: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """The figures of the header, at one instant."""

    name: str
    execution_id: str
    state: State
    done: int
    total: int
    running: tuple[str, ...]
    failed: int
    retries: int
    elapsed: float
    eta: float | None
    recent: tuple[Ended, ...]

    def header(self) -> str:
        parts = [f"{self.done}/{self.total} done", f"{len(self.running)} running"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.retries:
            parts.append(f"{self.retries} {'retry' if self.retries == 1 else 'retries'}")
        parts.append(_duration(self.elapsed))
        if self.eta is not None:
            parts.append(f"ETA {_duration(self.eta)}")
        return " · ".join(parts)


class Tally:
    """Counts of one execution's task runs, kept up to date change by change.

    ``flow`` (optional) gives the number of tasks in a lane of each flowable, for the total;
    ``clock`` returns monotonic seconds (injected in tests).
    """

    def __init__(
        self, flow_of: Callable[[Execution], Flow] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.started = clock()
        self.flow_of = flow_of
        self._compiled: Any = None
        self.name = ""
        self.execution_id: str | None = None
        self.previous: list[tuple[str, State]] = []  # executions this one retried, in order
        self.recent: deque[Ended] = deque(maxlen=RECENT_SHOWN)
        self._reset()

    def _reset(self) -> None:
        self.version = -1
        self.state = State.CREATED
        self.states: dict[str, State] = {}
        self.counts: Counter[State] = Counter()
        self.attempts: dict[str, int] = {}
        self.retries = 0
        self.running: dict[str, tuple[int, str]] = {}  # leaf task runs RUNNING: id -> (seq, label)
        self.open: dict[str | None, tuple[str, Any]] = {}  # running flowables: id -> (task id, Progress)
        self.children: Counter[str | None] = Counter()  # task runs created under each parent
        self.widths: Counter[str | None] = Counter()  # observed lane width (max position + 1)

    # ------------------------------------------------------------------ updates

    def update(self, execution: Execution) -> list[Ended]:
        """Take in one change; what ended (or retried) in it, for the lines shown above."""
        if execution.id != self.execution_id:
            if self.execution_id is not None:
                self.previous.append((self.execution_id, self.state))
            self.execution_id = execution.id
            self.name = f"{execution.namespace}.{execution.flow_id}"
            self._compiled = self._compile(execution)
            self._reset()
        elif execution.version <= self.version:
            return []  # already seen
        ended: list[Ended] = []
        changed = execution.changed
        step = self.version >= 0 and execution.version == self.version + 1 and bool(changed)
        if step and all(tr_id in execution.taskruns for tr_id in changed):
            for tr_id in changed:
                self._take(execution.taskruns[tr_id], execution, ended)
            step = len(self.states) == len(execution.taskruns)  # else some were dropped (a restart)
        else:
            step = False
        if not step:  # a gap, a first look, task runs dropped: one full pass
            known = self.states
            self._reset()
            found: list[Ended] = []
            for tr in execution.taskruns.values():
                self._take(tr, execution, found if known else None, known.get(tr.id))
            ended += [e for e in found if not e.retry]  # attempts were not kept across the pass
        self.version = execution.version
        self.state = execution.state
        if execution.state.terminal or execution.state is State.PAUSED:
            self.open.pop(None, None)
        else:
            self.open[None] = ("", execution.progress)
        self.recent.extend(e for e in ended if not e.retry)
        return ended

    def _compile(self, execution: Execution) -> Any:
        if self.flow_of is None:
            return None
        from control_plane.engine.compiled import compile_flow
        from control_plane.errors import SquallError

        try:
            return compile_flow(self.flow_of(execution))
        except SquallError:  # no flow, no expected total: the task runs created so far
            return None

    def _take(
        self, tr: TaskRun, execution: Execution, ended: list[Ended] | None, known: State | None = None
    ) -> None:
        old = self.states.get(tr.id)
        if old is None:
            self.children[tr.parent_id] += 1
            self.widths[tr.parent_id] = max(self.widths[tr.parent_id], tr.position + 1)
        else:
            known = old
        if old is not tr.state:
            if old is not None:
                self.counts[old] -= 1
            self.counts[tr.state] += 1
            self.states[tr.id] = tr.state
        attempts = len(tr.attempts)
        before = self.attempts.get(tr.id, 0)
        if attempts != before:
            self.attempts[tr.id] = attempts
            if attempts > 1 and attempts > before:
                self.retries += attempts - max(before, 1)
                if ended is not None and known is not None:
                    ended.append(Ended(_label(tr), tr.state, None, retry=attempts))
        if tr.progress is None and tr.state is State.RUNNING:
            self.running.setdefault(tr.id, (tr.seq, _label(tr)))
        else:
            self.running.pop(tr.id, None)
        if tr.progress is not None and not tr.state.terminal:
            self.open[tr.id] = (tr.task_id, tr.progress)
        else:
            self.open.pop(tr.id, None)
        if ended is not None and tr.state.terminal and (known is None or not known.terminal):
            end = tr.ended or execution.ended
            seconds = (end - tr.created).total_seconds() if end else None
            ended.append(Ended(_label(tr), tr.state, seconds, error=tr.error))

    # ------------------------------------------------------------------ figures

    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if state.terminal)

    def total(self) -> int:
        """Task runs created plus those the started flowables are still to create (an estimate)."""
        pending = 0
        for parent, (task_id, progress) in self.open.items():
            width = self._width(parent, task_id, progress)
            pending += max(0, progress.total * width - self.children[parent])
        return len(self.states) + pending

    def _width(self, parent: str | None, task_id: str, progress: Any) -> int:
        c = self._compiled
        if c is None:
            return self.widths[parent] or 1
        from control_plane.engine.compiled import LaneMode

        owner = task_id or None
        mode = c.modes.get(task_id) if owner else LaneMode.SEQUENTIAL
        if mode is LaneMode.EACH_TASK:
            return 1
        if mode is LaneMode.BRANCH:
            return len(c.list_of(owner, progress.branch)) if progress.branch else self.widths[parent]
        return len(c.list_of(owner, "tasks"))

    def snapshot(self) -> Snapshot:
        done, total = self.done(), self.total()
        total = max(total, done)
        elapsed = self.clock() - self.started
        eta = None
        if 3 <= done < total and elapsed > 0:  # fewer say too little of the pace
            eta = (total - done) * elapsed / done
        failed = self.counts[State.FAILED] + self.counts[State.KILLED]
        return Snapshot(
            self.name,
            self.execution_id or "",
            self.state,
            done,
            total,
            tuple(label for _, label in sorted(self.running.values())),  # the oldest first
            failed,
            self.retries,
            elapsed,
            eta,
            tuple(self.recent),
        )


# ====================================================================== lines


def log_text(line: LogLine, prefix: str = "") -> Text:
    """One log line as ``squall run`` prints it: level, task id, message."""
    who = f"{line.task_id}: " if line.task_id else ""
    style = {"ERROR": "red", "WARN": "yellow"}.get(str(line.level), "dim")
    from rich.text import Text  # here: a run that prints no line never imports rich (cli_output)

    return Text.assemble(prefix, (f"{line.level:5}", style), f" {who}{line.message}")


def _ended_text(e: Ended) -> Text:
    from rich.text import Text

    if e.retry:
        return Text.assemble(("RETRY", "yellow"), f" {e.label}: attempt {e.retry}")
    style = STYLE.get(str(e.state), "white")
    took = f" {e.seconds:.2f}s" if e.seconds is not None else ""
    error = f": {e.error}" if e.error else ""
    return Text.assemble((f"{e.state}", style), f" {e.label}", (took, "dim"), error)


def _retried_text(previous: str, state: State, new: str) -> Text:
    from rich.text import Text

    return Text.assemble(
        (f"execution {previous} {state}: ", "yellow"), f"the flow's retry made a new execution, {new}"
    )


class _Watcher:
    """What both displays share: the tally, which execution is followed, the retry notice.

    The first execution reported is followed, then the one its flow-level retry makes, and so
    on; any other (a subflow's, one a retry left behind) only has its logs shown, prefixed
    with its id.
    """

    def __init__(self, tally: Tally, retry_of: Callable[[Execution], str] | None = None) -> None:
        self.tally = tally
        self.retry_of = retry_of  # the id of the execution a flow-level retry of this one makes
        self.lock = threading.Lock()
        self.lines: list[Text] = []  # to print above, in order
        self._current: Execution | None = None

    def _follows(self, execution: Execution) -> bool:
        current = self._current
        if current is None or execution.id == current.id:
            return True
        return self.retry_of is not None and execution.id == self.retry_of(current)

    def _changed(self, execution: Execution, *, failures: bool) -> None:
        if not self._follows(execution):
            return
        seen = len(self.tally.previous)
        ended = self.tally.update(execution)
        self._current = execution
        if len(self.tally.previous) > seen:
            old, state = self.tally.previous[-1]
            self.lines.append(_retried_text(old, state, execution.id))
        if failures:
            for e in ended:
                if e.retry or e.state in (State.FAILED, State.KILLED):
                    self.lines.append(_ended_text(e))

    def _logs(self, execution: Execution | None, lines: Sequence[LogLine]) -> None:
        prefix = ""
        if execution is not None and execution.id != self.tally.execution_id:
            if self.tally.execution_id is not None and self._follows(execution):
                self._changed(
                    execution, failures=True
                )  # a flow retry's first logs come before its first change
            else:
                prefix = f"[{execution.id}] "  # a subflow's, or late lines of an execution retried since
        self.lines.extend(log_text(line, prefix) for line in lines)


class PlainDisplay(_Watcher):
    """Plain lines, no cursor movement: for pipes, files and dumb terminals."""

    def __init__(
        self,
        console: Console,
        tally: Tally,
        retry_of: Callable[[Execution], str] | None = None,
        *,
        interval: float = 10.0,
    ) -> None:
        super().__init__(tally, retry_of)
        self.console = console
        self.interval = interval
        self._last = tally.clock()

    def on_change(self, execution: Execution) -> None:
        self._changed(execution, failures=True)
        now = self.tally.clock()
        if now - self._last >= self.interval and not execution.state.terminal:
            self._last = now
            from rich.text import Text

            self.lines.append(Text("progress: " + self.tally.snapshot().header()))
        self._print()

    def on_logs(self, execution: Execution | None, lines: Sequence[LogLine]) -> None:
        self._logs(execution, lines)
        self._print()

    def _print(self) -> None:
        if self.lines:
            from rich.text import Text

            lines, self.lines = self.lines, []
            self.console.print(Text("\n").join(lines), highlight=False, soft_wrap=True)

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self._print()


class _View:
    """The live block, rendered from the latest snapshot whenever rich draws."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        s = self.snapshot
        if not s.execution_id:
            yield Text("starting", style="dim")
            return
        style = STYLE.get(str(s.state), "white")
        yield Text.assemble(
            (s.name, "bold"), " ", (str(s.state), style), " ", s.header(), no_wrap=True, overflow="ellipsis"
        )
        if s.running:
            names = ", ".join(s.running[:RUNNING_SHOWN])
            more = f" +{len(s.running) - RUNNING_SHOWN} more" if len(s.running) > RUNNING_SHOWN else ""
            yield Text.assemble(
                ("  running: ", "cyan"), names, (more, "dim"), no_wrap=True, overflow="ellipsis"
            )
        for e in s.recent:
            line = Text("  ")
            line.append_text(_ended_text(e))
            line.no_wrap, line.overflow = True, "ellipsis"
            yield line


class LiveDisplay(_Watcher):
    """A live block at the bottom of an interactive terminal, redrawn by a thread at most
    ``1 / interval`` times a second; the callbacks only record."""

    def __init__(
        self,
        console: Console,
        tally: Tally,
        retry_of: Callable[[Execution], str] | None = None,
        *,
        interval: float = 0.25,
    ) -> None:
        from rich.live import Live

        super().__init__(tally, retry_of)
        self.console = console
        self.interval = interval
        self.view = _View(tally.snapshot())
        self.live: Live = Live(self.view, console=console, transient=True, auto_refresh=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="squall-progress", daemon=True)
        self.redraws = 0

    def on_change(self, execution: Execution) -> None:
        with self.lock:
            self._changed(execution, failures=True)

    def on_logs(self, execution: Execution | None, lines: Sequence[LogLine]) -> None:
        with self.lock:
            self._logs(execution, lines)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()

    def draw(self) -> None:
        with self.lock:
            lines, self.lines = self.lines, []
            self.view.snapshot = self.tally.snapshot()
        self.redraws += 1
        if lines:  # printed above the block, which rich then draws again below them
            from rich.text import Text

            self.console.print(Text("\n").join(lines), highlight=False, soft_wrap=True)
        else:
            self.live.refresh()

    def __enter__(self) -> LiveDisplay:
        self.live.start(refresh=False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.draw()
        self.live.stop()


def display_for(
    console: Console,
    flow_of: Callable[[Execution], Flow] | None = None,
    retry_of: Callable[[Execution], str] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    interactive: bool | None = None,
) -> LiveDisplay | PlainDisplay:
    """The live block on an interactive terminal, plain lines anywhere else.

    ``flow_of`` gives an execution's flow (for the expected total), ``retry_of`` the id of
    the execution a flow-level retry of it makes (followed when it comes). ``interactive``:
    what ``console.is_interactive`` says, when the caller knows it without asking rich.
    """
    tally = Tally(flow_of, clock)
    if console.is_interactive if interactive is None else interactive:
        return LiveDisplay(console, tally, retry_of)
    return PlainDisplay(console, tally, retry_of)


# ====================================================================== the final tree


class _Node:
    """A line of the final tree (rich markup) and the lines under it; the same ``add`` as rich's
    ``Tree``, so one builder feeds both :func:`tree` and :func:`tree_text`."""

    __slots__ = ("children", "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self.children: list[_Node] = []

    def add(self, label: str) -> _Node:
        child = _Node(label)
        self.children.append(child)
        return child


def tree(execution: Execution, title: str) -> Tree:
    """The task-run tree; siblings of one task id beyond ``GROUP_AT`` are one line of counts
    by state (``planet x300: 298 SUCCESS, 2 FAILED``), their children grouped the same way
    under it, and the ones that did not succeed listed (at most ``SHOWN_IN_GROUP``)."""
    from rich.tree import Tree

    def copy(node: _Node, into: Tree) -> Tree:
        for child in node.children:
            copy(child, into.add(child.label))
        return into

    root = _tree_nodes(execution, title)
    return copy(root, Tree(root.label))


# The markup the tree's labels are made of: the state colours (STYLE), dim and bold.
_OWN_MARKUP = re.compile(r"\[/?(?:bold|dim|white|green|yellow|red|cyan|magenta)\]")
_GUIDES = {  # rich's Tree.TREE_GUIDES[0] and ASCII_GUIDES: (blank, down, branch, last)
    True: ("    ", "\u2502   ", "\u251c\u2500\u2500 ", "\u2514\u2500\u2500 "),
    False: ("    ", "|   ", "+-- ", "`-- "),
}


def tree_text(execution: Execution, title: str, *, width: int, unicode: bool = True) -> str | None:
    """:func:`tree` as rich prints it where there is no colour (a pipe, a file), or None.

    Why: rich lays out each node on its own (segments, cell widths, cropping), about 0.1 ms a
    task run: 20 ms of a cached 200-task ``squall run``. Without colour a line is the guides and
    the label's text, which this writes directly. Only when that is certain: a label whose text
    holds anything rich renders otherwise (markup or an emoji code inside a task's value, a
    tab, a non-ASCII or unprintable character) or a line that reaches ``width`` (rich crops
    it) gives None, and the caller prints :func:`tree` (``tests/unit/test_progress.py``
    compares the two)."""
    empty, down, branch, last = _GUIDES[unicode]
    lines: list[str] = []

    def text_of(label: str) -> str | None:
        text = _OWN_MARKUP.sub("", label)
        return text if literal(text) else None

    def walk(node: _Node, prefix: str) -> bool:
        for index, child in enumerate(node.children):
            text = text_of(child.label)
            is_last = index == len(node.children) - 1
            line = prefix + (last if is_last else branch) + (text or "")
            if text is None or len(line) >= width:
                return False
            lines.append(line)
            if child.children and not walk(child, prefix + (empty if is_last else down)):
                return False
        return True

    root = _tree_nodes(execution, title)
    head = text_of(root.label)
    if head is None or len(head) >= width:
        return None
    lines.append(head)
    if not walk(root, ""):
        return None
    return "\n".join(lines) + "\n"


def _tree_nodes(execution: Execution, title: str) -> _Node:
    """The lines of :func:`tree`, grouped as its docstring says."""
    root = _Node(title)
    children: dict[str | None, list[TaskRun]] = {}
    for tr in execution.ordered_taskruns():
        children.setdefault(tr.parent_id, []).append(tr)

    def one(node: _Node, tr: TaskRun) -> _Node:
        style = STYLE.get(str(tr.state), "white")
        ended = tr.ended or execution.ended
        duration = f" {(ended - tr.created).total_seconds():.2f}s" if ended else ""
        value = f" [dim]({tr.value})[/dim]" if tr.value is not None and tr.parent_id else ""
        attempts = f" [dim]x{len(tr.attempts)}[/dim]" if len(tr.attempts) > 1 else ""
        return node.add(f"[{style}]{tr.state}[/{style}] {tr.task_id}{value}{attempts}[dim]{duration}[/dim]")

    def add(node: _Node, parents: list[str | None]) -> None:
        groups: dict[str, list[TaskRun]] = {}
        for parent in parents:
            for tr in children.get(parent, ()):
                groups.setdefault(tr.task_id, []).append(tr)
        for task_id, group in groups.items():
            if len(group) <= GROUP_AT and len(parents) == 1:
                for tr in group:
                    add(one(node, tr), [tr.id])
                continue
            counts = Counter(str(tr.state) for tr in group)
            by_state = ", ".join(
                f"[{STYLE.get(s, 'white')}]{n} {s}[/{STYLE.get(s, 'white')}]" for s, n in counts.most_common()
            )
            sub = node.add(f"{task_id} x{len(group)}: {by_state}")
            odd = [tr for tr in group if tr.state is not State.SUCCESS]
            for tr in odd[:SHOWN_IN_GROUP]:
                one(sub, tr)
            if len(odd) > SHOWN_IN_GROUP:
                sub.add(f"[dim]... {len(odd) - SHOWN_IN_GROUP} more not SUCCESS[/dim]")
            add(sub, [tr.id for tr in group])

    add(root, [None])
    return root

"""``outputs.<task>``, what templates read: kept as a log of writes, built only when read.

Theory of operation
-------------------
The index maps a task id to its outputs, or inside loops to a value-keyed map of them
(``outputs.each['a']['b']``). Kept current eagerly, every task run that produced outputs cost
two persistent-map sets, each copying a path of nodes that gets deeper as the loop grows
(``benchmarks/engine.py``: about 1 us per task run at 100,000 items, half that at 1,000), and
every load rebuilt it from all the task runs, although most flows never read ``outputs`` in
most plan calls (the benchmark's never does).

So an :class:`OutputsIndex` is a value that says how to build the map: from task runs (a
loaded execution), or as an earlier index plus the writes one ``plan`` call made in order
(:class:`OutputsLog`). It builds its map the first time something reads it and keeps it. Each
template context gets a snapshot (the writes so far), so a context reads what it would have
read from an eager index. Once something has read one in a plan call, the log keeps the map
current from then on and contexts get the map itself: a flow that reads ``outputs`` in every
task pays what it paid before (each write set once; no Python frame between Jinja and the
map). A chain of unread indexes (one link per plan call) is folded once it is
:data:`MAX_CHAIN` links long, so it stays short and the work stays O(1) per write.

The map is the same one :func:`outputs_index` builds; the index is a read-only ``Mapping`` over
it (what templates, displays and tests use). Building writes only a private cache: reading an
index from two threads at once builds it twice at worst, with the same result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import immutables

if TYPE_CHECKING:
    from control_plane.engine.model import TaskRun

__all__ = ["MAX_CHAIN", "OutputsIndex", "OutputsLog", "nested_set", "outputs_index"]

MAX_CHAIN = 32
"""Unread indexes an index may sit on before its base is built: bounds the recursion of a
build and what a long-lived unread chain keeps alive."""

Write = tuple[str, tuple[str, ...], Mapping[str, Any]]
"""One write of the log: task id, loop values (outermost first), outputs."""


def nested_set(current: Any, path: tuple[str, ...], value: Any) -> immutables.Map[str, Any]:
    base = current if isinstance(current, immutables.Map) else immutables.Map()
    if len(path) == 1:
        return base.set(path[0], value)
    return base.set(path[0], nested_set(base.get(path[0]), path[1:], value))


def _apply(built: immutables.Map[str, Any], write: Write) -> immutables.Map[str, Any]:
    task_id, values, outputs = write
    if not values:
        return built.set(task_id, outputs)
    return built.set(task_id, nested_set(built.get(task_id), values, outputs))


def outputs_index(taskruns: list[TaskRun]) -> immutables.Map[str, Any]:
    """``outputs.<task>`` rebuilt from task runs in creation order, as the planner writes it.

    Stores' loads build it (through :meth:`OutputsIndex.of_taskruns`, when read); restart and
    replay call it after dropping task runs, so outputs of runs that no longer exist cannot be
    read.

    The same maps as :func:`nested_set` applied in ``seq`` order, built as plain dicts first
    and frozen once: a load of a 100,000-item ForEach set its value-keyed map 100,000 times,
    each copying a path of nodes that gets longer with the size (benchmarks/engine.py's flow:
    1.5 us per task run at 100,000 and 0.56 at 1,000; built this way 0.9 and 0.34).
    """
    tree = _Node()
    for tr in sorted(taskruns, key=_seq):
        if tr.outputs is None:
            continue
        node = tree
        key = tr.task_id
        for part in tr.values:
            child = node.get(key)
            if type(child) is not _Node:  # a value where a map goes: replaced, as nested_set does
                child = node[key] = _Node(child) if isinstance(child, immutables.Map) else _Node()
                node.branch = True
            node, key = child, part
        node[key] = tr.outputs
    return _frozen(tree)


class _Node(dict[str, Any]):
    """A map of :func:`outputs_index` under construction (outputs may be dicts themselves)."""

    __slots__ = ("branch",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.branch = False  # holds a _Node: frozen entry by entry, else as a whole


_seq = attrgetter("seq")


def _frozen(node: _Node) -> immutables.Map[str, Any]:
    if not node.branch:  # the value-keyed map of a loop: outputs only, no copy of it first
        return immutables.Map(node)
    return immutables.Map({k: _frozen(v) if type(v) is _Node else v for k, v in node.items()})


_EMPTY: immutables.Map[str, Any] = immutables.Map()


class OutputsIndex(Mapping[str, Any]):
    """A read-only ``outputs`` map, built from its source the first time it is read."""

    __slots__ = ("_built", "_depth", "_log", "_runs", "_upto")

    def __init__(
        self,
        built: immutables.Map[str, Any] | None = _EMPTY,
        runs: list[TaskRun] | None = None,
        log: _Writes | None = None,
        upto: int = 0,
        depth: int = 0,
    ) -> None:
        # Built when ``built`` is a map; else from ``runs``, or from the first ``upto`` writes
        # of ``log``. Positional: a plan call makes one per task run that wrote outputs.
        self._built = built
        self._runs = runs
        self._log = log
        self._upto = upto
        self._depth = depth  # unbuilt indexes under this one (0: built, or built from task runs)

    @classmethod
    def of(cls, built: Mapping[str, Any]) -> OutputsIndex:
        """``built`` as an index: itself when it is one, else wrapping a map already built."""
        if isinstance(built, OutputsIndex):
            return built
        return cls(built if isinstance(built, immutables.Map) else immutables.Map(built))

    @classmethod
    def of_taskruns(cls, taskruns: list[TaskRun]) -> OutputsIndex:
        """The index of a loaded execution's task runs (any order; the list is kept as given)."""
        return cls(None, taskruns)

    def map(self) -> immutables.Map[str, Any]:
        """The map itself, built now if it was not."""
        built = self._built
        if built is not None:
            return built
        runs, log = self._runs, self._log
        built = self._built  # another thread's build sets this before it drops runs and log
        if built is not None:
            return built
        if runs is not None:
            built = outputs_index(runs)
        else:
            assert log is not None
            built = log.fold(self._upto)
        self._built = built
        self._runs = self._log = None  # what it was built from may go
        return built

    @property
    def depth(self) -> int:
        return 0 if self._built is not None else self._depth

    def __getitem__(self, key: str) -> Any:
        return self.map()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.map().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.map()

    def __iter__(self) -> Iterator[str]:
        return iter(self.map())

    def __len__(self) -> int:
        return len(self.map())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OutputsIndex):
            other = other.map()
        if isinstance(other, immutables.Map):
            return self.map() == other
        return isinstance(other, Mapping) and dict(self.map().items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(self.map())

    def __repr__(self) -> str:
        return f"OutputsIndex({dict(self.map().items())!r})"


class OutputsLog:
    """The writes of one ``plan`` call on top of the index it started from, in order.

    :meth:`snapshot` is the index as it stands (what a context reads and what the call
    commits): an :class:`OutputsIndex` until something reads one, the map itself after.
    """

    __slots__ = ("_map", "_snapshot", "_snapshot_at", "_writes")

    def __init__(self, base: Mapping[str, Any]) -> None:
        index = OutputsIndex.of(base)
        if index.depth >= MAX_CHAIN:
            index.map()  # fold the chain below now: it stays short, each write folded once
        self._writes = _Writes(index)
        self._snapshot: Mapping[str, Any] = index
        self._snapshot_at = 0  # writes the snapshot holds
        self._map: immutables.Map[str, Any] | None = None  # once something read: kept current

    def write(self, task_id: str, values: tuple[str, ...], outputs: Mapping[str, Any]) -> None:
        """``outputs.<task_id>`` (under ``values`` inside loops) is now ``outputs``."""
        built = self._map
        if built is None:
            self._writes.log.append((task_id, values, outputs))
        elif not values:
            self._map = built.set(task_id, outputs)
        else:
            self._map = built.set(task_id, nested_set(built.get(task_id), values, outputs))

    def snapshot(self) -> Mapping[str, Any]:
        if self._map is not None:
            return self._map
        writes = self._writes
        count = len(writes.log)
        if writes.folded is not None:
            # Something read this call's outputs: a flow that reads them reads them again, so
            # from here on each write is set as it comes and contexts get the map itself, as
            # before (a read through an OutputsIndex costs Python frames; a miss, a traceback).
            built = self._map = writes.fold(count)
            return built
        if count == self._snapshot_at:
            return self._snapshot
        self._snapshot_at = count
        snap = self._snapshot = OutputsIndex(None, None, writes, count, writes.base.depth + 1)
        return snap


class _Writes:
    """What the snapshots of one :class:`OutputsLog` are built from. Apart from the log so that
    no reference cycle joins a snapshot and the log that hands out the latest one."""

    __slots__ = ("base", "folded", "log")

    def __init__(self, base: OutputsIndex) -> None:
        self.base = base
        self.log: list[Write] = []
        self.folded: tuple[int, immutables.Map[str, Any]] | None = None  # the longest prefix built

    def fold(self, upto: int) -> immutables.Map[str, Any]:
        """The base with the first ``upto`` writes applied, from the longest prefix built so far."""
        folded = self.folded
        if folded is not None and folded[0] <= upto:
            count, built = folded
        else:
            count, built = 0, self.base.map()
        for write in self.log[count:upto]:
            built = _apply(built, write)
        self.folded = (upto, built)
        return built

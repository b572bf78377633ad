"""Whole-tree checks that no single model can make, run on the raw YAML data.

They run on the raw data, not on validated models, so they still report a duplicate id or a
recursive subflow when another task of the same flow failed its own validation: the user sees
every problem in one pass.

Where child tasks live (``tasks``, ``errors``, ``finally``, Switch ``cases.*``/``defaults``, If
``then``/``else``, Dag ``tasks[].task``, listeners' ``tasks`` ...) is not written down here: it is
read once from the models' field annotations (:func:`task_slots`), so a new flowable task only
needs its model. A task's class is found through the alias table, as the models do.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

from msgspec import Struct
from pydantic import BaseModel
from typing_extensions import TypeAliasType

from control_plane.flows.aliases import canonical_trigger_type, canonical_type, runner_name
from control_plane.flows.models import FOR_EACH_ITEM_PARTS, Flow, Task, task_classes

__all__ = [
    "ALLOWED_SYSTEM_LABELS",
    "Issue",
    "check_tree",
    "iter_tasks",
    "task_index",
    "task_model",
    "task_slots",
]

PathTuple = tuple[str | int, ...]
Locate = Callable[..., tuple[int, int]]

#: ``system.*`` labels a flow may set itself; every other one is Kestra's (and Squall's) to set.
ALLOWED_SYSTEM_LABELS = frozenset({"system.readOnly"})

SlotKind = Literal["list", "map", "one", "nodes"]


class Issue(Struct, frozen=True):
    """A tree-level problem at ``path``; the loader turns it into a positioned Violation."""

    path: PathTuple
    kind: str
    message: str
    at_key: bool = False
    #: the problem's line inside a multi-line string value (1-based), 0 when not applicable;
    #: the loader turns it into the file's line for literal block scalars (``|``)
    text_line: int = 0


# --------------------------------------------------------------------------- where tasks live


def _strip(tp: Any) -> Any:
    """Drop named aliases (``AnyTask``), ``Annotated`` wrappers and ``| None``."""
    while True:
        if isinstance(tp, TypeAliasType):
            tp = tp.__value__
            continue
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_task(tp: Any) -> bool:
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return all(_is_task(member) for member in get_args(tp))
    return isinstance(tp, type) and issubclass(tp, Task)


def _slot(tp: Any) -> tuple[SlotKind, type[BaseModel] | None] | None:
    tp = _strip(tp)
    origin = get_origin(tp)
    if _is_task(tp):
        return "one", None
    if origin is list:
        (item,) = get_args(tp)
        if _is_task(item):
            return "list", None
        item = _strip(item)
        if isinstance(item, type) and issubclass(item, BaseModel) and task_slots(item):
            return "nodes", item
    if origin is dict:
        _, value = get_args(tp)
        value = _strip(value)
        if get_origin(value) is list and _is_task(get_args(value)[0]):
            return "map", None
    return None


@cache
def task_slots(model: type[BaseModel]) -> tuple[tuple[str, SlotKind, type[BaseModel] | None], ...]:
    """``(yaml key, kind, node model)`` for every field of ``model`` that holds tasks.

    kinds: ``list`` (a list of tasks), ``map`` (key -> list of tasks: Switch ``cases``), ``one``
    (a single task: Dag ``tasks[].task``), ``nodes`` (a list of mappings that hold tasks
    themselves: Dag ``tasks``, flow ``listeners``).
    """
    slots: list[tuple[str, SlotKind, type[BaseModel] | None]] = []
    # Models build lazily (``defer_build``): their fields may still name ``AnyTask`` as a
    # forward reference, so the annotations are resolved here instead of from ``FieldInfo``.
    hints = typing.get_type_hints(model, include_extras=True)
    for name, info in model.model_fields.items():
        if name == "onResume":
            continue
        found = _slot(hints.get(name, info.annotation))
        if found is not None:
            slots.append((info.alias or name, found[0], found[1]))
    return tuple(slots)


def task_model(raw: Mapping[str, Any]) -> type[Task] | None:
    """The model class of a raw task mapping, through the alias table; None when unknown."""
    kind = raw.get("type")
    canonical = canonical_type(kind) if isinstance(kind, str) else None
    return task_classes().get(canonical) if canonical else None


def _children(
    raw: Mapping[str, Any], model: type[BaseModel] | None, path: PathTuple
) -> Iterator[tuple[PathTuple, dict[str, Any]]]:
    if model is None:
        return
    for key, kind, node_model in task_slots(model):
        value = raw.get(key)
        if kind == "one":
            if isinstance(value, dict):
                yield (*path, key), value
        elif kind == "list":
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, dict):
                        yield (*path, key, index), item
        elif kind == "map":
            if isinstance(value, dict):
                for case, items in value.items():
                    if isinstance(items, list):
                        for index, item in enumerate(items):
                            if isinstance(item, dict):
                                yield (*path, key, case, index), item
        elif kind == "nodes" and isinstance(value, list):
            for index, node in enumerate(value):
                if isinstance(node, dict):
                    yield from _children(node, node_model, (*path, key, index))


def iter_tasks(data: Mapping[str, Any]) -> Iterator[tuple[PathTuple, dict[str, Any]]]:
    """Every raw task mapping of a flow with its path, depth first, listeners included."""
    stack = list(reversed(list(_children(data, Flow, ()))))
    while stack:
        path, task = stack.pop()
        yield path, task
        stack.extend(reversed(list(_children(task, task_model(task), path))))


def task_index(data: Mapping[str, Any]) -> dict[PathTuple, dict[str, Any]]:
    """Path -> raw task, to name the task a violation sits in."""
    return dict(iter_tasks(data)) if isinstance(data, Mapping) else {}


# --------------------------------------------------------------------------- the checks


def check_tree(data: Mapping[str, Any], locate: Locate) -> list[Issue]:
    """Every whole-tree problem of a raw flow mapping. ``locate(path)`` gives (line, column)."""
    tasks = list(iter_tasks(data))
    issues: list[Issue] = []
    ids = [((*path, "id"), task.get("id")) for path, task in tasks]
    # a ForEachItem owns three generated tasks (<id>_split, _items, _merge): their ids are taken
    ids += [
        ((*path, "id"), f"{task['id']}{suffix}")
        for path, task in tasks
        if canonical_type(str(task.get("type"))) == "squall.flow.ForEachItem"
        and isinstance(task.get("id"), str)
        for suffix in FOR_EACH_ITEM_PARTS
    ]
    issues += _duplicates(ids, "task id", locate, "Duplicate task id")
    for key, what in (
        ("triggers", "Duplicate trigger id"),
        ("inputs", "Duplicate input"),
        ("outputs", "Duplicate output"),
    ):
        items = data.get(key)
        if isinstance(items, list):
            ids = [((key, i, "id"), item.get("id")) for i, item in enumerate(items) if isinstance(item, dict)]
            issues += _duplicates(ids, key, locate, what)
    issues += _system_labels(data)
    issues += _recursive_subflows(data, tasks)
    issues += _worker_groups(data, tasks)
    issues += _task_runners(tasks)
    issues += _flow_triggers(data)
    issues += _trigger_properties(data)
    return issues


# trigger property -> why no Squall trigger can honour it yet (a Flow trigger's ``conditions`` are
# evaluated: control_plane/triggers/flow.py)
_TRIGGER_PROPERTIES_NOT_HONOURED = {
    "stopAfter": "no Squall trigger stops itself after an execution state yet",
    "scheduleConditions": "the scheduler does not evaluate schedule conditions yet",
}


def _trigger_properties(data: Mapping[str, Any]) -> list[Issue]:
    """Trigger properties the model reads that nothing acts on: refused, never silently ignored."""
    triggers = data.get("triggers")
    if not isinstance(triggers, list):
        return []
    issues: list[Issue] = []
    for i, trigger in enumerate(triggers):
        if not isinstance(trigger, dict):
            continue
        kind = canonical_trigger_type(str(trigger.get("type")))
        refused = dict(_TRIGGER_PROPERTIES_NOT_HONOURED)
        if kind != "squall.trigger.Flow":
            refused["conditions"] = "only Flow triggers evaluate conditions in Squall"
        if kind == "squall.trigger.Http":
            del refused["stopAfter"]  # a polling trigger stops itself (service/http_triggers.py)
            issues += _stop_after_states(trigger.get("stopAfter"), ("triggers", i, "stopAfter"))
        for name, why in refused.items():
            if trigger.get(name) not in (None, []):
                message = f"'{name}' is not supported on this trigger: {why}"
                issues.append(Issue(("triggers", i, name), "unsupported property", message, at_key=True))
    return issues


def _stop_after_states(states: Any, path: PathTuple) -> list[Issue]:
    """``stopAfter`` holds Kestra state names (``State.Type``): a typo would never match."""
    from control_plane.engine.states import State

    if not isinstance(states, list):
        return []
    known = {s.value for s in State}
    return [
        Issue(
            (*path, j),
            "unsupported value",
            f"'{name}' is not an execution state ({', '.join(sorted(known))})",
        )
        for j, name in enumerate(states)
        if name not in known
    ]


def _flow_triggers(data: Mapping[str, Any]) -> list[Issue]:
    """What a Flow trigger asks that Squall cannot honour (``triggers/flow.py`` says what it can)."""
    from control_plane.triggers.flow import unsupported

    triggers = data.get("triggers")
    if not isinstance(triggers, list):
        return []
    return [
        Issue(("triggers", i, *path), "flow trigger", message, at_key=True)
        for i, trigger in enumerate(triggers)
        if isinstance(trigger, dict)
        and isinstance(trigger.get("type"), str)
        and canonical_trigger_type(trigger["type"]) == "squall.trigger.Flow"
        for path, message in unsupported(trigger)
    ]


def _task_runners(tasks: Sequence[tuple[PathTuple, Mapping[str, Any]]]) -> list[Issue]:
    """``taskRunner.type`` must name an installed runner and its options must fit that runner.

    Checked at load time, so ``squall validate`` and a deploy report a typo with its line
    instead of a task failing at run time. A templated type (``{{ ... }}``) is checked when
    the task is submitted.
    """
    issues: list[Issue] = []
    installed: dict[str, Any] | None = None
    broken: dict[str, ImportError] = {}  # a plugin that cannot be imported hides no other runner
    for path, task in tasks:
        spec = task.get("taskRunner")
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or "{{" in spec["type"]:
            continue
        if installed is None:
            from runners.base import runner_classes

            installed = runner_classes(on_import_error=broken.__setitem__)
        name = runner_name(spec["type"])
        runner_cls = installed.get(name)
        if name in broken:
            message = f"task runner type '{spec['type']}' cannot be loaded here: {broken[name]}"
            issues.append(Issue((*path, "taskRunner", "type"), "runner not loadable", message))
            continue
        if runner_cls is None:
            known = ", ".join(sorted(installed)) or "none"
            message = f"unknown task runner type '{spec['type']}' (installed runners: {known})"
            issues.append(Issue((*path, "taskRunner", "type"), "unknown runner", message))
            continue
        issues += _runner_options(path, spec, runner_cls)
    return issues


def _runner_options(path: PathTuple, spec: Mapping[str, Any], runner_cls: Any) -> list[Issue]:
    """Unknown options and wrong values are load errors; a *missing* required option is not.

    A deployment configures its runners' defaults once (``SQUALL_RUNNERS``: the AWS Batch
    queue, bucket, region...), so a flow need not repeat them; the runner checks the merged
    options when the job is submitted and fails the task with the missing field's name.
    """
    from pydantic import ValidationError

    options = {k: v for k, v in spec.items() if k != "type"}
    if any(isinstance(v, str) and "{{" in v for v in options.values()):
        return []  # rendered per task run; the runner checks it at submission
    try:
        runner_cls.Options.model_validate(options)
    except ValidationError as exc:
        return [
            Issue(
                (*path, "taskRunner", *(str(p) for p in err["loc"][:1])),
                "runner option",
                f"{err['msg']} (taskRunner {'.'.join(str(p) for p in err['loc'])} of {spec['type']})",
                at_key=err["type"] == "extra_forbidden",
            )
            for err in exc.errors()
            if err["type"] != "missing"
        ]
    return []


def _duplicates(ids: Sequence[tuple[PathTuple, Any]], kind: str, locate: Locate, what: str) -> list[Issue]:
    """One issue per duplicated id, at its second occurrence in the file."""
    where: dict[str, list[PathTuple]] = {}
    for path, value in ids:
        if isinstance(value, str) and value:
            where.setdefault(value, []).append(path)
    issues: list[Issue] = []
    for value, paths in where.items():
        if len(paths) < 2:
            continue
        ordered = sorted(paths, key=lambda p: locate(p))
        first_line = locate(ordered[0])[0]
        message = f"{what} with name [{value}] (first defined at line {first_line})"
        issues.append(Issue(ordered[1], f"duplicate {kind}", message))
    return issues


def _system_labels(data: Mapping[str, Any]) -> list[Issue]:
    labels = data.get("labels")
    pairs: list[tuple[PathTuple, Any, Any]] = []
    if isinstance(labels, dict):
        pairs = [(("labels", key), key, value) for key, value in labels.items()]
    elif isinstance(labels, list):
        pairs = [
            (("labels", i), item.get("key"), item.get("value"))
            for i, item in enumerate(labels)
            if isinstance(item, dict)
        ]
    return [
        Issue(
            path,
            f"system label {key}",
            f"System labels can only be set by Kestra itself, offending label: {key}={_text(value)}",
            at_key=True,
        )
        for path, key, value in pairs
        if isinstance(key, str) and key.startswith("system.") and key not in ALLOWED_SYSTEM_LABELS
    ]


def _recursive_subflows(
    data: Mapping[str, Any], tasks: list[tuple[PathTuple, dict[str, Any]]]
) -> list[Issue]:
    namespace, flow_id = data.get("namespace"), data.get("id")
    if not isinstance(namespace, str) or not isinstance(flow_id, str):
        return []
    return [
        Issue(path, "recursive subflow", f"Recursive call to flow [{namespace}.{flow_id}]")
        for path, task in tasks
        if canonical_type(str(task.get("type"))) in ("squall.flow.Subflow", "squall.flow.ForEachItem")
        and task.get("namespace") == namespace
        and task.get("flowId") == flow_id
    ]


def _worker_groups(data: Mapping[str, Any], tasks: list[tuple[PathTuple, dict[str, Any]]]) -> list[Issue]:
    holders: list[tuple[PathTuple, Mapping[str, Any]]] = [((), data), *tasks]
    issues: list[Issue] = []
    for path, holder in holders:
        if "workerGroup" not in holder:
            continue
        group = holder["workerGroup"]
        key = group.get("key") if isinstance(group, dict) else group
        name = f" '{_text(key)}'" if key is not None and not isinstance(key, dict | list) else ""
        issues.append(
            Issue(
                (*path, "workerGroup"),
                "workerGroup",
                f"workerGroup{name} is not supported: Squall has no worker groups; "
                "use `taskRunner` to choose where a task runs",
                at_key=True,
            )
        )
    return issues


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)

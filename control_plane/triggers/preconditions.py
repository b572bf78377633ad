"""A Flow trigger's ``preconditions`` (Kestra 0.19+ multi-flow dependencies) as pure functions.

Kestra (``plugin/core/trigger/Flow.java`` Preconditions, ``FlowTriggerService``,
``MultipleConditionStorageInterface.getOrCreate``, ``MultipleConditionWindow``): each upstream
flow listed in ``flows`` is a condition (``condition_1``, ``condition_2``, ... in order), and
so is each execution filter in ``where`` (its ``filters`` on FLOW_ID, NAMESPACE, STATE or a
rendered EXPRESSION, joined by ``operand``). The deprecated MultipleCondition (in a Flow
trigger's ``conditions``) is the same with named conditions (its ``conditions`` map of
ExecutionStatus, ExecutionFlow, ExecutionNamespace, ExecutionLabels). When
an execution ends and passes the trigger's ``states`` and ``conditions``, the trigger's
current window is read, or a new one opened if none is valid now; a new window that is not
valid now either (a daily window outside its hours, past a deadline) is not evaluated at all.
Each condition the execution meets is marked met in the window. When every condition is met,
the flow fires, and with ``resetOnSuccess`` (the default) the window is cleared, so each
condition must be met again; without it, every later execution meeting one of them fires again
while the window lasts. (Kestra's code would also fire on an execution that meets none of
them; its documentation says "each time one of the conditions is satisfied again": Squall
does what the documentation says.)

Windows (``timeWindow.type``), computed from the instant the window is opened, in UTC, to the
second (Kestra truncates ``now`` to seconds); a window is valid from its start to before its end:

* ``DURATION_WINDOW`` (default, ``window`` PT24H): the start is ``now`` floored to the day
  when ``window`` is a day or more, to the hour when it is an hour or more, else to a multiple
  of ``window``'s minutes within the hour; plus ``windowAdvance``; it ends ``window`` later
  (less a millisecond).
* ``SLIDING_WINDOW`` (``window`` PT24H): from the first met condition for ``window``.
* ``DAILY_TIME_WINDOW``: today from ``startTime`` to ``endTime``.
* ``DAILY_TIME_DEADLINE``: today from midnight to ``deadline``.

State: one record per trigger (:func:`state_key`) holding the window (``start``, ``end``,
``results``: condition -> the id of the execution that met it) and ``fired``: the ids of the
last executions that fired it. An execution already counted in the window, or already in
``fired``, is not counted twice (an execution's end delivered again after a crash); one found
in ``fired`` fires again, which the deterministic id of the started execution makes a no-op
if it was started before. The caller writes the new state with the version it read, then
starts the execution: two processes evaluating ends at once cannot both complete one window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from msgspec import Struct, field

from control_plane.engine.labels import context_labels
from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.errors import ExpressionError
from control_plane.expressions import is_truthy, render
from control_plane.flows.aliases import canonical_condition_type
from control_plane.flows.durations import parse_timedelta
from control_plane.triggers.conditions import EVALUATED, holds

__all__ = [
    "MULTIPLE",
    "WINDOW_TYPES",
    "Preconditions",
    "Step",
    "WindowState",
    "advance",
    "expression_context",
    "met_by",
    "multiple_problems",
    "parse",
    "parse_multiple",
    "problems",
    "state_key",
    "window_for",
]

WINDOW_TYPES = ("DURATION_WINDOW", "SLIDING_WINDOW", "DAILY_TIME_WINDOW", "DAILY_TIME_DEADLINE")
_ONE_DAY = timedelta(days=1)
_FIRED_KEPT = 50  # ids of the last firing executions remembered against a redelivered end
_TERMINATED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "RETRIED", "SKIPPED")
# what each window type may (and must) set, Kestra's TimeWindowValidator
_ALLOWED = {
    "DURATION_WINDOW": {"window", "windowAdvance"},
    "SLIDING_WINDOW": {"window"},
    "DAILY_TIME_WINDOW": {"startTime", "endTime"},
    "DAILY_TIME_DEADLINE": {"deadline"},
}
_REQUIRED = {"DAILY_TIME_WINDOW": ("startTime", "endTime"), "DAILY_TIME_DEADLINE": ("deadline",)}
_PRECONDITION_FIELDS = frozenset({"id", "flows", "where", "timeWindow", "resetOnSuccess"})
_MULTIPLE_FIELDS = frozenset(
    {"type", "id", "conditions", "timeWindow", "window", "windowAdvance", "resetOnSuccess"}
)
MULTIPLE = "squall.condition.MultipleCondition"
_WHERE_FIELDS = frozenset({"id", "operand", "filters"})
_FILTER_FIELDS = frozenset({"field", "type", "value", "values"})
_FILTER_KINDS = ("FLOW_ID", "NAMESPACE", "STATE", "EXPRESSION")
_FILTER_TYPES = (
    "EQUAL_TO",
    "NOT_EQUAL_TO",
    "IN",
    "NOT_IN",
    "IS_TRUE",
    "IS_FALSE",
    "IS_NULL",
    "IS_NOT_NULL",
    "STARTS_WITH",
    "ENDS_WITH",
    "REGEX",
    "CONTAINS",
)
_UPSTREAM_FIELDS = frozenset({"namespace", "flowId", "states", "labels"})
_WINDOW_FIELDS = frozenset({"type", "window", "windowAdvance", "deadline", "startTime", "endTime"})


class Upstream(Struct, frozen=True):
    namespace: str
    flowId: str | None = None
    states: tuple[str, ...] | None = None
    labels: dict[str, str] | None = None


class Filter(Struct, frozen=True):
    field: str  # FLOW_ID NAMESPACE STATE EXPRESSION
    type: str
    value: str | None = None
    values: tuple[str, ...] | None = None


class Where(Struct, frozen=True):
    """Flow.ExecutionFilter: its ``filters`` joined by ``operand`` (AND, OR)."""

    id: str
    filters: tuple[Filter, ...]
    operand: str = "AND"


class Preconditions(Struct, frozen=True):
    id: str
    flows: tuple[Upstream, ...]
    type: str = "DURATION_WINDOW"
    window: timedelta | None = None
    advance: timedelta | None = None
    start_time: time | None = None
    end_time: time | None = None
    deadline: time | None = None
    reset_on_success: bool = True
    where: tuple[Where, ...] = ()
    named: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # a MultipleCondition's (name, type, props)

    def conditions(self) -> list[str]:
        """Kestra's condition names: ``condition_<n>`` per flow, then ``condition_<n>_<id>`` per
        filter; a MultipleCondition's are the keys of its ``conditions`` map."""
        if self.named:
            return [name for name, _, _ in self.named]
        flows = [f"condition_{i}" for i in range(1, len(self.flows) + 1)]
        return flows + [f"condition_{len(flows) + i}_{w.id}" for i, w in enumerate(self.where, start=1)]


class WindowState(Struct, frozen=True):
    """One trigger's preconditions state (its store record's ``data``)."""

    start: str | None = None
    end: str | None = None
    results: dict[str, str] = field(default_factory=dict)
    fired: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> WindowState:
        data = data or {}
        return cls(
            data.get("start"),
            data.get("end"),
            dict(data.get("results") or {}),
            tuple(data.get("fired") or ()),
        )

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"results": dict(self.results), "fired": list(self.fired)}
        if self.start is not None:
            data |= {"start": self.start, "end": self.end}
        return data


class Step(Struct, frozen=True):
    """What one ended execution does to the state: the state to write (None: nothing), and
    whether the flow fires (after that write succeeded)."""

    state: WindowState | None
    fire: bool


def state_key(namespace: str, flow_id: str, trigger_id: str, preconditions_id: str) -> str:
    return f"preconditions/{namespace}/{flow_id}/{trigger_id}/{preconditions_id}"


def _time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 86400:
        # YAML 1.1 reads an unquoted 10:30:00 as sexagesimal seconds (37800)
        return time(value // 3600, value // 60 % 60, value % 60)
    return time.fromisoformat(str(value))


def parse(raw: Mapping[str, Any]) -> Preconditions:
    """The validated ``preconditions`` block (:func:`problems` found nothing wrong with it)."""
    window: Mapping[str, Any] = raw.get("timeWindow") or {}

    def duration(name: str) -> timedelta | None:
        value = window.get(name)
        return None if value is None else parse_timedelta(str(value))

    def clock(name: str) -> time | None:
        value = window.get(name)
        return None if value is None else _time(value)

    flows = tuple(
        Upstream(
            str(f["namespace"]),
            None if f.get("flowId") is None else str(f["flowId"]),
            None if f.get("states") is None else tuple(str(s) for s in f["states"]),
            None if f.get("labels") is None else {str(k): str(v) for k, v in f["labels"].items()},
        )
        for f in raw.get("flows") or ()
    )
    where = tuple(
        Where(
            str(w["id"]),
            tuple(
                Filter(
                    str(f["field"]),
                    str(f["type"]),
                    None if f.get("value") is None else str(f["value"]),
                    None if f.get("values") is None else tuple(str(v) for v in f["values"]),
                )
                for f in w.get("filters") or ()
            ),
            str(w.get("operand") or "AND"),
        )
        for w in raw.get("where") or ()
    )
    return Preconditions(
        id=str(raw["id"]),
        where=where,
        flows=flows,
        type=str(window.get("type") or "DURATION_WINDOW"),
        window=duration("window"),
        advance=duration("windowAdvance"),
        start_time=clock("startTime"),
        end_time=clock("endTime"),
        deadline=clock("deadline"),
        reset_on_success=raw.get("resetOnSuccess") is not False,
    )


def parse_multiple(raw: Mapping[str, Any]) -> Preconditions:
    """A (deprecated) MultipleCondition, validated by :func:`multiple_problems`: its named
    conditions in a window (``timeWindow``, or the older ``window`` and ``windowAdvance``)."""
    window = dict(raw.get("timeWindow") or {})
    for old in ("window", "windowAdvance"):
        if raw.get(old) is not None:
            window[old] = raw[old]  # MultipleCondition.setWindow: the old property wins
    named = tuple(
        (str(name), str(c["type"]), {k: v for k, v in c.items() if k != "type"})
        for name, c in (raw.get("conditions") or {}).items()
    )
    base = parse({"id": raw["id"], "timeWindow": window, "resetOnSuccess": raw.get("resetOnSuccess")})
    return Preconditions(
        id=base.id,
        flows=(),
        type=base.type,
        window=base.window,
        advance=base.advance,
        start_time=base.start_time,
        end_time=base.end_time,
        deadline=base.deadline,
        reset_on_success=base.reset_on_success,
        named=named,
    )


def window_for(pre: Preconditions, now: datetime) -> tuple[datetime, datetime]:
    """The bounds of a window opened at ``now`` (``getOrCreate``), in UTC."""
    now = now.astimezone(UTC).replace(microsecond=0)
    midnight = now.replace(hour=0, minute=0, second=0)
    match pre.type:
        case "SLIDING_WINDOW":
            return now, now + (pre.window or _ONE_DAY)
        case "DAILY_TIME_WINDOW":
            assert pre.start_time is not None and pre.end_time is not None
            return midnight + _since_midnight(pre.start_time), midnight + _since_midnight(pre.end_time)
        case "DAILY_TIME_DEADLINE":
            assert pre.deadline is not None
            return midnight, midnight + _since_midnight(pre.deadline)
    window = pre.window or _ONE_DAY
    start = now
    if window >= _ONE_DAY:
        start = start.replace(hour=0)
    if window >= timedelta(hours=1):
        start = start.replace(minute=0)
    minutes = int(window.total_seconds() // 60)
    if minutes > 0:
        start = start.replace(second=0, minute=0) + timedelta(minutes=minutes * (start.minute // minutes))
    if pre.advance is not None:
        start += pre.advance
    return start, start + window - timedelta(milliseconds=1)


def _since_midnight(moment: time) -> timedelta:
    return timedelta(hours=moment.hour, minutes=moment.minute, seconds=moment.second)


def _valid(start: datetime, end: datetime, now: datetime) -> bool:
    return start <= now < end  # Kestra: strictly after a start truncated to the second


def met_by(pre: Preconditions, execution: Execution, context: Mapping[str, Any] | None = None) -> list[str]:
    """The conditions ``execution`` meets: Flow.UpstreamFlowCondition for each upstream flow,
    Flow.FilterCondition for each ``where`` (its EXPRESSION filters rendered with ``context``,
    the listening flow's, over the ended execution; one that fails to render is not met)."""
    met: list[str] = []
    names = pre.conditions()
    if pre.named:
        return [name for name, kind, props in pre.named if holds(kind, props, execution)]
    for name, where in zip(names[len(pre.flows) :], pre.where, strict=True):
        results = (_filter_holds(f, execution, context or {}) for f in where.filters)
        if any(results) if where.operand == "OR" else all(results):
            met.append(name)
    for name, upstream in zip(names, pre.flows, strict=False):
        if execution.namespace != upstream.namespace:
            continue
        if upstream.flowId is not None and execution.flow_id != upstream.flowId:
            continue
        if upstream.states is not None and execution.state.value not in upstream.states:
            continue
        if upstream.labels is not None and any(
            execution.labels.get(k) != v for k, v in upstream.labels.items()
        ):
            continue
        met.append(name)
    return sorted(met, key=names.index)


def expression_context(
    namespace: str, flow_id: str, revision: int | None, execution: Execution
) -> dict[str, Any]:
    """What an EXPRESSION filter sees: Kestra renders it in ``runContextFactory.of(flow,
    execution)``, the listening flow over the ended execution (its id, state and labels)."""
    return {
        "flow": {"id": flow_id, "namespace": namespace, "revision": revision},
        "execution": {
            "id": execution.id,
            "namespace": execution.namespace,
            "flowId": execution.flow_id,
            "state": execution.state.value,
            "originalId": execution.original_id or execution.id,
        },
        "labels": context_labels(execution.labels),
    }


def _filter_holds(f: Filter, execution: Execution, context: Mapping[str, Any]) -> bool:
    value: str | None
    match f.field:
        case "FLOW_ID":
            value = execution.flow_id
        case "NAMESPACE":
            value = execution.namespace
        case "STATE":
            value = execution.state.value
        case _:  # EXPRESSION
            try:
                value = render(f.value or "", context)
            except ExpressionError:
                return False
    match f.type:
        case "EQUAL_TO":
            return f.value == value
        case "NOT_EQUAL_TO":
            return f.value != value
        case "IN":
            return value in (f.values or ())
        case "NOT_IN":
            return value not in (f.values or ())
        case "IS_TRUE":
            return is_truthy(value)
        case "IS_FALSE":
            return not is_truthy(value)
        case "IS_NULL":
            return value is None
        case "IS_NOT_NULL":
            return value is not None
        case "STARTS_WITH":
            return value is not None and value.startswith(f.value or "")
        case "ENDS_WITH":
            return value is not None and value.endswith(f.value or "")
        case "REGEX":  # Java's String.matches: the whole value
            return value is not None and re.fullmatch(f.value or "", value) is not None
        case _:  # CONTAINS
            return value is not None and (f.value or "") in value


def advance(
    pre: Preconditions,
    state: WindowState,
    execution: Execution,
    now: datetime,
    context: Mapping[str, Any] | None = None,
) -> Step:
    """What the end of ``execution`` does (its trigger's ``states`` and ``conditions`` passed);
    ``context``: what a ``where`` EXPRESSION filter is rendered with."""
    if execution.id in state.fired:
        return Step(None, True)  # fired before; starting it again is a no-op if it was started
    if execution.id in state.results.values():
        return Step(None, False)  # counted already: an end delivered twice
    met = met_by(pre, execution, context)
    if not met:
        return Step(None, False)
    now = now.astimezone(UTC)
    if state.start is not None and _valid(_at(state.start), _at(state.end), now):
        start, end, results = _at(state.start), _at(state.end), dict(state.results)
    else:
        start, end = window_for(pre, now)
        if not _valid(start, end, now):
            return Step(None, False)  # outside today's window, past the deadline: not evaluated
        results = {}
    for name in met:
        results.setdefault(name, execution.id)
    complete = all(name in results for name in pre.conditions())
    fired = (*state.fired, execution.id)[-_FIRED_KEPT:] if complete else state.fired
    if complete and pre.reset_on_success:
        return Step(WindowState(fired=fired), True)
    return Step(WindowState(start.isoformat(), end.isoformat(), results, fired), complete)


def _at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def problems(pre: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What a raw ``preconditions`` block asks that Squall cannot honour, or gets wrong."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for key in sorted(set(pre) - _PRECONDITION_FIELDS):
        why = "not a property of Kestra's Flow trigger preconditions"
        found.append((("preconditions", key), f"preconditions.{key} is not supported: {why}"))
    pre_id = pre.get("id")
    if not isinstance(pre_id, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_-]*", pre_id):
        found.append(  # Flow.Preconditions.id: @NotNull @NotBlank @Pattern
            (("preconditions",), "preconditions.id is required and must match ^[a-zA-Z0-9][a-zA-Z0-9_-]*")
        )
    flows = pre.get("flows")
    where = pre.get("where")
    if (not isinstance(flows, list) or not flows) and (not isinstance(where, list) or not where):
        found.append(
            (
                ("preconditions", "flows"),
                "preconditions.flows or preconditions.where must list a precondition",
            )
        )
    elif flows is not None and not isinstance(flows, list):
        found.append((("preconditions", "flows"), "preconditions.flows is a list of upstream flows"))
    found += _where_problems(where)
    for i, upstream in enumerate(flows if isinstance(flows, list) else ()):
        if not isinstance(upstream, Mapping):
            found.append(
                (("preconditions", "flows", i), "an upstream flow is a map: namespace, flowId, states")
            )
            continue
        for key in sorted(set(upstream) - _UPSTREAM_FIELDS):
            found.append(
                (("preconditions", "flows", i, key), f"preconditions.flows[{i}].{key} is not supported")
            )
        if not isinstance(upstream.get("namespace"), str):
            found.append((("preconditions", "flows", i), f"preconditions.flows[{i}].namespace is required"))
        states = upstream.get("states")
        for j, state in enumerate(states if isinstance(states, list) else ()):
            if state not in _TERMINATED:
                found.append(
                    (
                        ("preconditions", "flows", i, "states", j),
                        f"preconditions state {state} is not supported: only terminated states "
                        f"({', '.join(_TERMINATED)})",
                    )
                )
    window = pre.get("timeWindow")
    if window is not None:
        found += _window_problems(window)
    if "resetOnSuccess" in pre and not isinstance(pre["resetOnSuccess"], bool):
        found.append(
            (("preconditions", "resetOnSuccess"), "preconditions.resetOnSuccess must be true or false")
        )
    return found


def multiple_problems(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What a raw MultipleCondition asks that Squall cannot honour, or gets wrong."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for key in sorted(set(raw) - _MULTIPLE_FIELDS):
        found.append(((key,), f"{key} is not a property of MultipleCondition"))
    cid = raw.get("id")
    if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_-]*", cid):
        found.append(((), "a MultipleCondition's id is required and must match ^[a-zA-Z0-9][a-zA-Z0-9_-]*"))
    conditions = raw.get("conditions")
    if not isinstance(conditions, Mapping) or not conditions:
        found.append(((), "a MultipleCondition's conditions must map names to conditions"))
    for name, condition in (conditions if isinstance(conditions, Mapping) else {}).items():
        kind = condition.get("type") if isinstance(condition, Mapping) else None
        if not isinstance(kind, str) or canonical_condition_type(kind) in (None, MULTIPLE):
            found.append(
                (
                    ("conditions", str(name), "type"),
                    f"condition {kind} is not supported in a MultipleCondition: Squall evaluates "
                    f"{', '.join(EVALUATED)}",
                )
            )
    for old in ("window", "windowAdvance"):
        if raw.get(old) is not None:
            try:
                parse_timedelta(str(raw[old]))
            except ValueError as exc:
                found.append(((old,), f"{old}: {exc}"))
    if raw.get("timeWindow") is not None:
        found += [(path[1:], message) for path, message in _window_problems(raw["timeWindow"])]
    return found


def _where_problems(where: Any) -> list[tuple[tuple[str | int, ...], str]]:
    if where is None:
        return []
    if not isinstance(where, list):
        return [(("preconditions", "where"), "preconditions.where is a list of execution filters")]
    found: list[tuple[tuple[str | int, ...], str]] = []
    for i, item in enumerate(where):
        path: tuple[str | int, ...] = ("preconditions", "where", i)
        if not isinstance(item, Mapping):
            found.append((path, "an execution filter is a map: id, operand, filters"))
            continue
        for key in sorted(set(item) - _WHERE_FIELDS):
            found.append(
                ((*path, key), f"preconditions.where[{i}].{key} is not a property of an execution filter")
            )
        if not isinstance(item.get("id"), str) or not item["id"]:
            found.append((path, f"preconditions.where[{i}].id is required"))
        if item.get("operand", "AND") not in ("AND", "OR"):
            found.append(((*path, "operand"), f"preconditions.where[{i}].operand must be AND or OR"))
        filters = item.get("filters")
        if not isinstance(filters, list) or not filters:
            found.append((path, f"preconditions.where[{i}].filters must list at least one filter"))
            continue
        for j, f in enumerate(filters):
            fpath = (*path, "filters", j)
            if not isinstance(f, Mapping):
                found.append((fpath, "a filter is a map: field, type, value or values"))
                continue
            for key in sorted(set(f) - _FILTER_FIELDS):
                found.append(((*fpath, key), f"{key} is not a property of a filter"))
            if f.get("field") not in _FILTER_KINDS:
                found.append(
                    (
                        (*fpath, "field"),
                        f"filter field {f.get('field')!r} is not one of {', '.join(_FILTER_KINDS)}",
                    )
                )
            kind = f.get("type")
            if kind not in _FILTER_TYPES:
                found.append(
                    ((*fpath, "type"), f"filter type {kind!r} is not one of {', '.join(_FILTER_TYPES)}")
                )
            elif kind in ("IN", "NOT_IN") and not isinstance(f.get("values"), list):
                found.append((fpath, f"a filter of type {kind} needs `values`"))
            elif (
                kind not in ("IN", "NOT_IN", "IS_NULL", "IS_NOT_NULL", "IS_TRUE", "IS_FALSE")
                and f.get("value") is None
            ):
                found.append((fpath, f"a filter of type {kind} needs `value`"))
            elif f.get("field") == "EXPRESSION" and f.get("value") is None:
                found.append((fpath, "an EXPRESSION filter needs `value`: the expression"))
            elif kind == "REGEX":
                try:
                    re.compile(str(f["value"]))
                except re.error as exc:
                    found.append(((*fpath, "value"), f"invalid regular expression: {exc}"))
    return found


def _window_problems(window: Any) -> list[tuple[tuple[str | int, ...], str]]:
    path: tuple[str | int, ...] = ("preconditions", "timeWindow")
    if not isinstance(window, Mapping):
        return [(path, "timeWindow is a map: type, window, windowAdvance, deadline, startTime, endTime")]
    found: list[tuple[tuple[str | int, ...], str]] = []
    kind = window.get("type", "DURATION_WINDOW")
    if kind not in WINDOW_TYPES:
        return [((*path, "type"), f"timeWindow.type {kind!r} is not one of {', '.join(WINDOW_TYPES)}")]
    for key in sorted(set(window) - _WINDOW_FIELDS):
        found.append(((*path, key), f"timeWindow.{key} is not a property of a time window"))
    for key in sorted((set(window) & _WINDOW_FIELDS) - {"type"} - _ALLOWED[kind]):
        found.append(((*path, key), f"Time window of type `{kind}` cannot have {key}"))
    for key in _REQUIRED.get(kind, ()):
        if window.get(key) is None:
            found.append(((*path,), f"Time window of type `{kind}` must have {key}"))
    for key in ("window", "windowAdvance"):
        if window.get(key) is not None and key in _ALLOWED[kind]:
            try:
                if parse_timedelta(str(window[key])) <= timedelta(0) and key == "window":
                    found.append(((*path, key), "timeWindow.window must be a positive duration"))
            except ValueError as exc:
                found.append(((*path, key), f"timeWindow.{key}: {exc}"))
    for key in ("deadline", "startTime", "endTime"):
        if window.get(key) is not None and key in _ALLOWED[kind]:
            try:
                _time(window[key])
            except ValueError:
                found.append(((*path, key), f'timeWindow.{key} must be a time of day such as "09:00:00"'))
    return found


# States are Kestra's names; keep the list above in step with the engine's.
assert set(_TERMINATED) == {s.value for s in State if s.terminal}

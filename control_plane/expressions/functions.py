"""Kestra's functions (``now()``, ``fromJson()``, ``render()``...) as Jinja globals.

Everything a function needs beyond its arguments comes from context keys starting with ``@``
(``@now``, ``@loop_values``, ``@error_logs``, ``@secrets``, ``@kv``), which the engine injects. Templates
cannot name those keys (``@`` is not an identifier), and reading the clock through ``@now`` keeps
rendering deterministic when the engine replays events.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from jinja2.utils import missing

from control_plane.errors import ExpressionError
from control_plane.expressions import calendar_days, dates, seeded
from control_plane.expressions.display import to_display
from control_plane.expressions.filters import FILTERS

__all__ = ["GLOBALS", "MAX_RENDER_DEPTH"]

MAX_RENDER_DEPTH = 10
MAX_RANGE = 100_000

_render_depth: ContextVar[int] = ContextVar("squall_render_depth", default=0)


def _lookup(ctx: Context, key: str) -> Any:
    """A context value or None; ``ctx.get`` would return our Undefined for absent keys."""
    value = ctx.resolve_or_missing(key)
    return None if value is missing else value


@pass_context
def _now(ctx: Context, timeZone: str | None = None) -> str:
    """ISO-8601 with milliseconds, from the engine's clock (``@now``) when it gave one."""
    moment = _lookup(ctx, "@now") or datetime.now(UTC)
    if not timeZone:
        return dates.iso_millis(moment)
    local = moment.astimezone(dates.zone(timeZone))
    return dates.format_date(local, "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")


@pass_context
def _render(ctx: Context, template: Any, recursive: bool = True) -> Any:
    """Render a string that holds an expression (``render(vars.greeting)``) with the same context.

    Recursive by default like Kestra: rendered again while the output still changes. The depth
    (nesting and repetition together) is capped so a self-referencing variable fails cleanly.
    """
    if not isinstance(template, str):
        return template
    depth = _render_depth.get()
    if depth >= MAX_RENDER_DEPTH:
        raise ExpressionError(f'render() went deeper than {MAX_RENDER_DEPTH} levels on "{template}"')
    scope: Mapping[str, Any] = ChainMap(ctx.vars, ctx.parent) if ctx.vars else ctx.parent
    token = _render_depth.set(depth + 1)
    try:
        text = template
        for _ in range(MAX_RENDER_DEPTH):
            rendered = ctx.environment.render_string(text, scope)  # type: ignore[attr-defined]
            if not recursive or rendered == text:
                return rendered
            text = rendered
        raise ExpressionError(f'render() did not settle after {MAX_RENDER_DEPTH} passes on "{template}"')
    finally:
        _render_depth.reset(token)


@pass_context
def _render_once(ctx: Context, toRender: Any) -> Any:
    """Kestra's ``renderOnce``: ``render`` without the recursion (one pass only)."""
    return _render(ctx, toRender, recursive=False)


def _loop_values(ctx: Context) -> Sequence[str]:
    """The current ForEach values, outermost first: ``@loop_values``, else taskrun/parents."""
    injected = _lookup(ctx, "@loop_values")
    if injected is not None:
        return tuple(injected)
    values: list[str] = []
    parents = _lookup(ctx, "parents")
    if isinstance(parents, Sequence):
        for parent in reversed(parents):  # Kestra lists the closest parent first
            run = parent.get("taskrun") if isinstance(parent, Mapping) else None
            if isinstance(run, Mapping) and run.get("value") is not None:
                values.append(to_display(run["value"]))
    taskrun = _lookup(ctx, "taskrun")
    if isinstance(taskrun, Mapping) and taskrun.get("value") is not None:
        values.append(to_display(taskrun["value"]))
    return values


@pass_context
def _current_each_output(ctx: Context, outputs: Any) -> Any:
    """The entry of a value-keyed loop output (``outputs.t``) for the loop iteration running now."""
    for value in _loop_values(ctx):
        if not (isinstance(outputs, Mapping) and value in outputs):
            break
        outputs = outputs[value]
    return outputs


@pass_context
def _error_logs(ctx: Context) -> list[Any]:
    return list(_lookup(ctx, "@error_logs") or ())


@pass_context
def _secret(ctx: Context, name: str) -> Any:
    """Kestra's ``secret('NAME')``: the value from the deployment's secret backends.

    The engine puts a lookup under ``@secrets`` and masks every value it returns; the lookup's
    own error (unknown name, a backend that failed) becomes the expression's error.
    """
    secrets = _lookup(ctx, "@secrets")
    if secrets is None:
        raise ExpressionError(f"secret '{name}' not found: no secret backend is configured")
    try:
        return secrets[name]
    except ExpressionError:
        raise
    except KeyError:
        raise ExpressionError(f"secret '{name}' not found") from None
    except Exception as exc:  # the backend's error names the places it looked in
        raise ExpressionError(str(exc)) from None


@pass_context
def _kv(ctx: Context, key: str, namespace: str | None = None, errorOnMissing: bool | None = None) -> Any:
    """Kestra's ``kv('key', namespace, errorOnMissing)`` (KvFunction.java): a KV pair's value.

    The namespace defaults to the flow's. A missing key is an error unless ``errorOnMissing`` is
    false, as since Kestra 0.22 (its migration guide "KV function errors on missing key"; before,
    a missing key was null). The shell's reader sits under ``@kv`` (the engine does no I/O).
    """
    store = _lookup(ctx, "@kv")
    flow = _lookup(ctx, "flow") or {}
    namespace = namespace or flow.get("namespace")
    if store is None or not namespace:
        raise ExpressionError(f"kv('{key}'): no KV store is available here")
    try:
        return store.get(namespace, key)
    except KeyError:
        if errorOnMissing is None or errorOnMissing:
            raise ExpressionError(f"The key '{key}' does not exist in the namespace '{namespace}'.") from None
        return None
    except ExpressionError:
        raise
    except Exception as exc:  # the store's own reason (expired, unavailable, invalid key)
        raise ExpressionError(str(exc)) from None


@pass_context
def _fetch_context(ctx: Context) -> dict[str, Any]:
    """Kestra's ``printContext()``/``fetchContext()``: every variable of the render, as a map.

    Squall's internal ``@`` keys (clock, secret lookup) are left out; the result is bounded
    by the render's size limits like any other value.
    """
    names = [*ctx.parent, *(ctx.vars or {})]
    return {
        name: ctx.resolve_or_missing(name)
        for name in dict.fromkeys(names)
        if isinstance(name, str) and not name.startswith("@")
    }


def _range(start: int, end: int, step: int = 1) -> list[int]:
    """Pebble's ``range``: both ends included."""
    if step == 0:
        raise ExpressionError("range() step must not be zero")
    stop = end + (1 if step > 0 else -1)
    if abs((stop - start) // step) > MAX_RANGE:
        raise ExpressionError(f"range() would hold more than {MAX_RANGE} values")
    return list(range(start, stop, step))


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def extreme(*values: Any) -> Any:
        items = list(values[0]) if len(values) == 1 and not isinstance(values[0], str) else list(values)
        if not items:
            raise ExpressionError(f"{pick.__name__}() needs at least one value")
        return pick(items)

    return extreme


GLOBALS: dict[str, Any] = {
    "now": _now,
    "render": _render,
    "renderOnce": _render_once,
    "fromJson": FILTERS["fromJson"],
    "json": FILTERS["fromJson"],
    "yaml": FILTERS["yaml"],
    "currentEachOutput": _current_each_output,
    "errorLogs": _error_logs,
    "secret": _secret,
    "kv": _kv,
    "range": _range,
    "max": _extreme(max),
    "min": _extreme(min),
    "printContext": _fetch_context,
    "fetchContext": _fetch_context,
    **seeded.FUNCTIONS,
    **calendar_days.FUNCTIONS,
}

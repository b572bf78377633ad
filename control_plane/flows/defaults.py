"""Flow-level plugin defaults (``pluginDefaults`` and the deprecated ``taskDefaults``).

Kestra merges defaults into each plugin's raw properties *before* it deserializes the flow, so a
default can supply a required property (``message`` of every Log) and the task still validates.
Squall does the same on the raw YAML data, and never mutates its input (the YAML builder shares
objects between an anchor and its aliases).

Semantics, as in Kestra's ``PluginDefaultService``:

- a default applies to a plugin when the plugin's ``type`` starts with the default's ``type``
  (``io.kestra.plugin.scripts`` covers every script task). Squall also compares every accepted
  spelling of the plugin's type (alias table), so a default written with an old name
  (``io.kestra.core.tasks.log.Log``) applies to a task written with the new one and back;
- values are deep-merged: mappings merge key by key, anything else (lists included) is replaced
  as a whole; the task's own values win, except over ``forced: true`` defaults;
- among several matching defaults the one declared first wins; ``pluginDefaults`` are declared
  before ``taskDefaults``;
- ``id`` and ``type`` are never taken from a default (they identify the task);
- defaults apply to every task of the tree (``tasks``, ``errors``, ``finally``,
  ``afterExecution``, listeners, children of flowables), to the ``taskRunner`` block of a task,
  and to triggers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct
from pydantic import BaseModel

from control_plane.flows.aliases import canonical_trigger_type, canonical_type, known_names
from control_plane.flows.models import Flow
from control_plane.flows.validation import task_model, task_slots

__all__ = ["Default", "apply_plugin_defaults", "deep_merge", "defaults_of", "matches"]

_PROTECTED = frozenset({"id", "type"})


class Default(Struct, frozen=True):
    """One usable ``pluginDefaults`` entry (malformed entries are left to model validation)."""

    type: str
    values: Mapping[str, Any]
    forced: bool


def defaults_of(data: Mapping[str, Any]) -> list[Default]:
    """The well-formed defaults of a raw flow, in declaration order."""
    found: list[Default] = []
    for key in ("pluginDefaults", "taskDefaults"):
        entries = data.get(key)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            kind, values, forced = entry.get("type"), entry.get("values", {}), entry.get("forced", False)
            if isinstance(kind, str) and isinstance(values, dict) and isinstance(forced, bool):
                found.append(Default(kind, values, forced))
    return found


def _spellings(plugin_type: str) -> list[str]:
    canonical = canonical_type(plugin_type) or canonical_trigger_type(plugin_type)
    if canonical is None:
        return [plugin_type]
    return [plugin_type, *known_names(canonical)]


def matches(default_type: str, plugin_type: str) -> bool:
    """Whether a default declared for ``default_type`` applies to a plugin of ``plugin_type``."""
    return any(name.startswith(default_type) for name in _spellings(plugin_type))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``; nested mappings merge, everything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def _apply(plugin: Mapping[str, Any], defaults: list[Default]) -> dict[str, Any]:
    kind = plugin.get("type")
    if not isinstance(kind, str):
        return dict(plugin)
    chosen = [d for d in defaults if matches(d.type, kind)]
    result = dict(plugin)
    for default in [d for d in chosen if not d.forced]:
        result = deep_merge(_unprotected(default.values), result)  # what is there already wins
    for default in reversed([d for d in chosen if d.forced]):
        result = deep_merge(result, _unprotected(default.values))  # first declared applied last
    return result


def _unprotected(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in _PROTECTED}


def _task(raw: Mapping[str, Any], defaults: list[Default]) -> dict[str, Any]:
    task = _apply(raw, defaults)
    runner = task.get("taskRunner")
    if isinstance(runner, dict):
        task["taskRunner"] = _apply(runner, defaults)
    return _with_children(task, task_model(task), defaults)


def _with_children(
    raw: dict[str, Any], model: type[BaseModel] | None, defaults: list[Default]
) -> dict[str, Any]:
    if model is None:
        return raw
    for key, kind, node_model in task_slots(model):
        value = raw.get(key)
        if kind == "one" and isinstance(value, dict):
            raw[key] = _task(value, defaults)
        elif kind == "list" and isinstance(value, list):
            raw[key] = _task_list(value, defaults)
        elif kind == "map" and isinstance(value, dict):
            raw[key] = {
                case: _task_list(items, defaults) if isinstance(items, list) else items
                for case, items in value.items()
            }
        elif kind == "nodes" and isinstance(value, list):
            raw[key] = [
                _with_children(dict(node), node_model, defaults) if isinstance(node, dict) else node
                for node in value
            ]
    return raw


def _task_list(items: list[Any], defaults: list[Default]) -> list[Any]:
    return [_task(item, defaults) if isinstance(item, dict) else item for item in items]


def apply_plugin_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a raw flow mapping with its plugin defaults merged into its tasks and triggers."""
    defaults = defaults_of(data)
    flow = dict(data)
    if not defaults:
        return flow
    flow = _with_children(flow, Flow, defaults)
    triggers = flow.get("triggers")
    if isinstance(triggers, list):
        flow["triggers"] = [
            _apply(t, defaults) if isinstance(t, dict) and t.get("type") not in (None, "") else t
            for t in triggers
        ]
    return flow

"""JSON Schema (draft-07) of the flow language, for editor completion and validation.

yaml-language-server reads draft-07 best, so the schema uses ``definitions`` rather than
``$defs``. It is generated from the pydantic models (one source of truth), then sharpened where
pydantic cannot know the YAML surface: each task or trigger model's ``type`` becomes an enum of
every accepted spelling from the alias table, so an editor completes type names and picks the
right member of the task union.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from control_plane.flows.aliases import known_names
from control_plane.flows.models import Flow, FlowTrigger, HttpTrigger, Schedule, Webhook, task_classes

__all__ = ["SCHEMA_ID", "flow_json_schema"]

SCHEMA_ID = "https://squall.dev/schemas/flow.json"
_REF = "#/definitions/{model}"


def _plugins() -> dict[str, str]:
    """definition name -> canonical type, for every task and trigger model."""
    found = {cls.__name__: cls.canonical for cls in task_classes().values()}
    found.update({cls.__name__: cls.canonical for cls in (Schedule, Webhook, FlowTrigger, HttpTrigger)})
    return found


@cache
def _schema() -> dict[str, Any]:
    schema = Flow.model_json_schema(ref_template=_REF, by_alias=True)
    definitions = schema.pop("$defs", {})
    for name, canonical in _plugins().items():
        definition = definitions.get(name)
        if definition is None:
            continue
        names = known_names(canonical)
        definition.setdefault("properties", {})["type"] = {
            "type": "string",
            "enum": names,
            "description": f"The task or trigger type; {names[0]} and its aliases are accepted.",
        }
        definition.setdefault("description", f"{names[0]} (also spelled {', '.join(names[1:])}).")
    labels = {
        "description": "Labels: a map, or a list of {key, value} pairs.",
        "anyOf": [
            {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"key": {"type": "string"}, "value": {}},
                    "required": ["key", "value"],
                    "additionalProperties": False,
                },
            },
        ],
    }
    schema.setdefault("properties", {})["labels"] = labels
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        **{k: v for k, v in schema.items() if k != "title"},
        "title": "Squall flow",
        "description": "A Squall (Kestra-compatible) flow: id, namespace, inputs, tasks, triggers ...",
        "definitions": definitions,
    }


def flow_json_schema() -> dict[str, Any]:
    """A fresh copy of the flow language's JSON Schema (callers may mutate it)."""
    return copy.deepcopy(_schema())

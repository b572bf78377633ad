"""The exported JSON Schema accepts the flows the loader accepts and helps an editor complete them."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from control_plane.flows import flow_json_schema
from control_plane.flows.aliases import ALIASES, TRIGGER_ALIASES
from control_plane.flows.loader import read_yaml
from tests.shared_suite import CASES, CONFORMANCE

_CASES = CASES
_VALID_FILES = sorted({c["flow"] for c in _CASES if not c.get("invalid")})


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = flow_json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _data(text: str) -> Any:
    doc, problems = read_yaml(text)
    assert not problems
    return doc.data


def test_schema_header() -> None:
    schema = flow_json_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] == "Squall flow"
    assert "$defs" not in schema
    assert {"id", "namespace", "tasks"} <= set(schema["required"]) | {"tasks"}


def test_schema_is_a_fresh_copy() -> None:
    flow_json_schema()["title"] = "changed"
    assert flow_json_schema()["title"] == "Squall flow"


@pytest.mark.parametrize("flow", _VALID_FILES)
def test_valid_conformance_flows_validate(validator: jsonschema.Draft7Validator, flow: str) -> None:
    data = _data((CONFORMANCE / flow).read_text(encoding="utf-8"))
    errors = [e.message for e in validator.iter_errors(data)]
    assert not errors, errors


def test_unknown_property_is_rejected(validator: jsonschema.Draft7Validator) -> None:
    data = _data(
        "id: f\nnamespace: n\ntasks:\n"
        "  - id: t\n    type: io.kestra.plugin.core.debug.Return\n    invalid: x\n"
    )
    assert not validator.is_valid(data)


def test_unknown_flow_property_is_rejected(validator: jsonschema.Draft7Validator) -> None:
    data = _data("id: f\nnamespace: n\nnope: 1\ntasks:\n  - {id: t, type: squall.core.Log, message: x}\n")
    assert not validator.is_valid(data)


def test_unknown_type_is_rejected(validator: jsonschema.Draft7Validator) -> None:
    data = _data("id: f\nnamespace: n\ntasks:\n  - {id: t, type: io.kestra.plugin.core.debug.Nope}\n")
    assert not validator.is_valid(data)


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_every_task_spelling_validates(validator: jsonschema.Draft7Validator, name: str) -> None:
    schema = flow_json_schema()
    (definition,) = [
        d
        for d in schema["definitions"].values()
        if name in d.get("properties", {}).get("type", {}).get("enum", [])
    ]
    task: dict[str, Any] = {"id": "t", "type": name}
    for field in definition.get("required", []):
        if field not in task:
            task[field] = _sample(definition["properties"][field], schema)
    flow = {"id": "f", "namespace": "n", "tasks": [task]}
    errors = [e.message for e in validator.iter_errors(flow)]
    assert not errors, (task, errors)


def _sample(prop: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A value that satisfies a required property, enough to prove the type enum is reachable."""
    if "$ref" in prop:
        return _sample(schema["definitions"][prop["$ref"].rsplit("/", 1)[1]], schema)
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return _sample(prop[key][0], schema)
    kind = prop.get("type")
    if kind == "array":
        return [_sample(prop.get("items", {"type": "string"}), schema)]
    if kind == "object":
        return {}
    if kind == "boolean":
        return True
    if kind == "integer":
        return 1
    if "enum" in prop:
        return prop["enum"][0]
    return "PT1S" if prop.get("format") == "duration" else "x"


def test_trigger_spellings_are_in_the_schema() -> None:
    enums = {
        n
        for d in flow_json_schema()["definitions"].values()
        for n in d.get("properties", {}).get("type", {}).get("enum", [])
    }
    assert set(TRIGGER_ALIASES) <= enums


def test_labels_as_list_validate(validator: jsonschema.Draft7Validator) -> None:
    data = _data(
        "id: f\nnamespace: n\nlabels:\n  - {key: a, value: b}\n"
        "tasks:\n  - {id: t, type: squall.core.Log, message: x}\n"
    )
    assert validator.is_valid(data)


def test_descriptions_come_from_docstrings() -> None:
    definitions = flow_json_schema()["definitions"]
    assert "Deprecated Kestra loop" in definitions["EachSequential"]["description"]
    plugins = [d for d in definitions.values() if "enum" in d.get("properties", {}).get("type", {})]
    assert len(plugins) == len(set(ALIASES.values())) + len(set(TRIGGER_ALIASES.values()))
    assert all(d.get("description") for d in plugins)

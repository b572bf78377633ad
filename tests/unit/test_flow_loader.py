"""The strict flow loader: Kestra's invalid flows are rejected, valid ones load, positions are right."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.errors import FlowValidationError, SquallError
from control_plane.flows import Flow, Violation, load_flow_file, parse_flow
from control_plane.flows.defaults import apply_plugin_defaults, deep_merge, matches
from control_plane.flows.loader import read_yaml
from control_plane.flows.validation import iter_tasks, task_slots
from tests.shared_suite import CASES, CONFORMANCE, needs_suite

_CASES = CASES
_INVALID = [c for c in _CASES if c.get("invalid")]
_VALID_FILES = sorted({c["flow"] for c in _CASES if not c.get("invalid")})


def rejected(text: str) -> FlowValidationError:
    with pytest.raises(FlowValidationError) as info:
        parse_flow(textwrap.dedent(text), "test.yaml")
    return info.value


def only(error: FlowValidationError) -> Violation:
    assert len(error.violations) == 1, str(error)
    return error.violations[0]


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("case", _INVALID, ids=[c["name"] for c in _INVALID])
def test_invalid_conformance_flow_is_rejected(case: dict[str, Any]) -> None:
    with pytest.raises(FlowValidationError) as info:
        load_flow_file(CONFORMANCE / case["flow"])
    text = str(info.value).lower()
    for needle in case.get("error_contains") or ():
        assert str(needle).lower() in text, str(info.value)
    wanted = case.get("violations")
    if wanted is not None:
        assert len(info.value.violations) >= int(wanted), str(info.value)
        if int(wanted) == 1:  # a single problem must not come with noise
            assert len(info.value.violations) == 1, str(info.value)


@needs_suite
def test_all_invalid_conformance_flows_are_covered() -> None:
    assert len(_INVALID) == 22


@pytest.mark.parametrize("flow", _VALID_FILES)
def test_valid_conformance_flow_loads(flow: str) -> None:
    assert isinstance(load_flow_file(CONFORMANCE / flow), Flow)


# --------------------------------------------------------------------------- positions and paths


def test_unknown_property_points_at_the_key() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        tasks:
          - id: t
            type: io.kestra.plugin.core.debug.Return
            format: x
            nope: 1
        """
    )
    violation = only(error)
    assert (violation.line, violation.column) == (7, 5)
    assert violation.path == "tasks[0].nope"
    assert violation.message == "unknown property 'nope' (task 't', type io.kestra.plugin.core.debug.Return)"
    assert str(violation) == f"test.yaml:7:5: tasks[0].nope: {violation.message}"
    assert str(error).splitlines()[0] == "test.yaml: 1 violation"


def test_nested_path_through_if_then_and_retry() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        tasks:
          - id: a
            type: squall.core.Log
            message: hi
          - id: b
            type: io.kestra.plugin.core.flow.If
            condition: "{{ true }}"
            then:
              - id: c
                type: io.kestra.plugin.core.log.Log
                message: hi
                retry:
                  type: constant
                  interval: PT1S
                  maxAttempt: 0
        """
    )
    violation = only(error)
    assert violation.path == "tasks[1].then[0].retry.maxAttempt"
    assert (violation.line, violation.column) == (17, 23)
    assert "(task 'c')" in violation.message


def test_missing_field_points_at_the_mapping_that_lacks_it() -> None:
    violation = only(
        rejected(
            """\
            id: f
            namespace: n
            tasks:
              - id: t
                type: io.kestra.plugin.core.log.Log
            """
        )
    )
    assert violation.path == "tasks[0].message"
    assert violation.message == "must not be null (task 't')"
    assert (violation.line, violation.column) == (4, 5)


def test_every_problem_is_listed_sorted_by_line() -> None:
    error = rejected(
        """\
        id: f
        namespace: Bad Namespace
        tasks:
          - id: a
            type: io.kestra.plugin.core.debug.Nope
          - id: a
            type: squall.core.Log
            message: hi
            extra: 1
        """
    )
    assert [(v.line, v.path) for v in error.violations] == [
        (2, "namespace"),
        (4, "tasks[0]"),
        (6, "tasks[1].id"),
        (9, "tasks[1].extra"),
    ]
    assert "unknown task type 'io.kestra.plugin.core.debug.Nope'" in str(error)
    assert "Duplicate task id with name [a] (first defined at line 4)" in str(error)
    assert str(error).splitlines()[0] == "test.yaml: 4 violations"
    assert len(str(error).splitlines()) == 5


def test_union_mismatch_is_one_violation() -> None:
    violation = only(
        rejected("id: f\nnamespace: n\ntasks:\n  - {id: t, type: squall.core.Log, message: {a: 1}}\n")
    )
    assert violation.message == "expected a string or a list of strings, got a mapping (task 't')"
    assert violation.path == "tasks[0].message"


def test_bad_item_of_a_list_union_names_the_item() -> None:
    violation = only(
        rejected("id: f\nnamespace: n\ntasks:\n  - {id: t, type: squall.core.Log, message: [a, {}]}\n")
    )
    assert violation.path == "tasks[0].message[1]"


def test_dag_problems_are_one_violation_each() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        tasks:
          - id: dag
            type: io.kestra.plugin.core.flow.Dag
            tasks:
              - task: {id: a, type: squall.core.Log, message: x}
                dependsOn: [b, ghost]
              - task: {id: b, type: squall.core.Log, message: x}
                dependsOn: [a]
        """
    )
    messages = [v.message for v in error.violations]
    assert messages == [
        "dag: Cyclic dependency detected: a, b",
        "dag: Not existing task id in dependency: ghost",
    ]
    assert {v.path for v in error.violations} == {"tasks[0]"}


def test_enum_and_pattern_messages() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        inputs:
          - id: x
            type: FOO
        tasks:
          - {id: "bad id", type: squall.core.Log, message: x}
        """
    )
    text = str(error)
    assert "inputs[0].type: invalid value 'FOO', expected one of 'STRING'" in text
    assert 'tasks[0].id: must match "^[a-zA-Z0-9][a-zA-Z0-9_-]*"' in text


# --------------------------------------------------------------------------- YAML level


def test_yaml_syntax_error_has_its_position() -> None:
    violation = only(rejected("id: f\nnamespace: n\ntasks: [\n"))
    assert violation.message.startswith("invalid YAML")
    assert violation.line >= 3


def test_duplicate_key_is_reported_alone() -> None:
    violation = only(rejected("id: f\nnamespace: n\nid: g\ntasks:\n  - {id: t, type: Missing}\n"))
    assert (violation.line, violation.column, violation.path) == (3, 1, "")
    assert violation.message == "duplicate key 'id' (first defined at line 1)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "a flow must be a YAML mapping"),
        ("just text\n", "a flow must be a YAML mapping"),
        ("a: 1\n---\nb: 2\n", "single YAML document"),
        ("a: &x [1, *x]\n", "recursive alias"),
        ("a: *nothing\n", "unknown alias '*nothing'"),
        ("a: !custom 1\n", "unsupported YAML tag"),
        ("a: !!int nope\n", "not a valid int"),
        ("? [1]\n: x\n", "mapping key must be a scalar"),
        ("[" * 300 + "]" * 300, "nested too deeply"),
        ("a: \x00\n", "invalid YAML"),
        ("a: \ud800\n", "invalid YAML"),
    ],
)
def test_yaml_problems_are_violations(text: str, message: str) -> None:
    error = rejected(text)
    assert message in str(error)


def test_empty_document_is_an_empty_flow() -> None:
    error = rejected("")
    assert "tasks: must not be empty" in str(error)
    assert "id: must not be null" in str(error)


def test_alias_bomb_is_refused_cheaply() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "document too large" in str(rejected("\n".join(lines) + "\n"))


def test_scalars_follow_the_yaml_1_2_core_schema() -> None:
    doc, problems = read_yaml(
        "a: yes\nb: on\nc: 2024-01-02\nd: true\ne: 0x1f\nf: 1.5\ng: ~\nh: '3'\ni: !!str 4\nNO: 1\n1: 2\n"
    )
    assert not problems
    assert doc.data == {
        "a": "yes",
        "b": "on",
        "c": "2024-01-02",
        "d": True,
        "e": 31,
        "f": 1.5,
        "g": None,
        "h": "3",
        "i": "4",
        "NO": 1,
        "1": 2,
    }


def test_numbers_are_accepted_where_text_is_expected() -> None:
    flow = parse_flow("id: f\nnamespace: n\ntasks:\n  - {id: t, type: squall.core.Return, format: 42}\n")
    assert flow.tasks is not None
    assert flow.tasks[0].format == "42"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FlowValidationError) as info:
        load_flow_file(tmp_path / "absent.yaml")
    assert "cannot read the flow file" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(FlowValidationError, match="cannot read the flow file"):
        load_flow_file(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"id: f\nnamespace: n\ndescription: caf\xe9\n")
    with pytest.raises(FlowValidationError) as info:
        load_flow_file(path)
    violation = only(info.value)
    assert "not valid UTF-8" in violation.message
    assert (violation.line, violation.column) == (3, 17)


def test_error_is_a_squall_error() -> None:
    assert issubclass(FlowValidationError, SquallError)


# --------------------------------------------------------------------------- tree checks


def test_system_labels_except_read_only() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        labels:
          - {key: system.readOnly, value: "true"}
          - {key: system.correlationId, value: x}
        tasks:
          - {id: t, type: squall.core.Log, message: x}
        """
    )
    violation = only(error)
    assert "offending label: system.correlationId=x" in violation.message
    assert violation.path == "labels[1]"


def test_recursive_subflow_with_old_alias() -> None:
    error = rejected(
        """\
        id: me
        namespace: my.ns
        tasks:
          - {id: t, type: io.kestra.core.tasks.flows.Flow, namespace: my.ns, flowId: me}
        """
    )
    assert "Recursive call to flow [my.ns.me]" in only(error).message


def test_duplicate_ids_in_switch_cases_and_dag_and_outputs() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        tasks:
          - id: s
            type: squall.flow.Switch
            value: x
            cases:
              A: [{id: same, type: squall.core.Log, message: x}]
            defaults:
              - id: dag
                type: squall.flow.Dag
                tasks:
                  - task: {id: same, type: squall.core.Log, message: x}
        outputs:
          - {id: o, value: x}
          - {id: o, value: y}
        """
    )
    assert [v.path for v in error.violations] == ["tasks[0].defaults[0].tasks[0].task.id", "outputs[1].id"]


def test_flow_level_worker_group() -> None:
    violation = only(
        rejected(
            "id: f\nnamespace: n\nworkerGroup: {key: gpu}\n"
            "tasks:\n  - {id: t, type: squall.core.Log, message: x}\n"
        )
    )
    assert violation.path == "workerGroup"
    assert "workerGroup 'gpu' is not supported" in violation.message


def test_task_slots_come_from_the_models() -> None:
    from control_plane.flows.models import Dag, If, Switch
    from control_plane.flows.models import Flow as FlowModel

    assert {key for key, _, _ in task_slots(If)} == {"errors", "finally", "then", "else"}
    assert ("cases", "map", None) in task_slots(Switch)
    assert {key for key, _, _ in task_slots(FlowModel)} == {
        "tasks",
        "errors",
        "finally",
        "afterExecution",
        "listeners",
    }
    assert [kind for key, kind, _ in task_slots(Dag) if key == "tasks"] == ["nodes"]


# --------------------------------------------------------------------------- plugin defaults


def test_defaults_fill_a_required_property() -> None:
    flow = parse_flow(
        """\
id: f
namespace: n
pluginDefaults:
  - type: io.kestra.plugin.core.log
    values: {message: from default, level: WARN}
tasks:
  - {id: a, type: io.kestra.plugin.core.log.Log}
  - {id: b, type: io.kestra.plugin.core.log.Log, message: own}
"""
    )
    assert flow.tasks is not None
    a, b = flow.tasks
    assert (a.message, a.level, b.message, b.level) == ("from default", "WARN", "own", "WARN")  # type: ignore[union-attr]


def test_forced_defaults_win_and_first_declared_wins() -> None:
    data = {
        "pluginDefaults": [
            {"type": "io.kestra.plugin.core.log.Log", "values": {"level": "ERROR"}, "forced": True},
            {"type": "io.kestra.plugin.core.log.Log", "values": {"level": "DEBUG"}, "forced": True},
            {"type": "io.kestra.plugin.core", "values": {"message": "first"}},
            {"type": "io.kestra.plugin", "values": {"message": "second", "id": "hijack"}},
        ],
        "tasks": [{"id": "t", "type": "io.kestra.plugin.core.log.Log", "level": "INFO"}],
    }
    task = apply_plugin_defaults(data)["tasks"][0]
    assert task == {"id": "t", "type": "io.kestra.plugin.core.log.Log", "level": "ERROR", "message": "first"}
    assert data["tasks"][0] == {"id": "t", "type": "io.kestra.plugin.core.log.Log", "level": "INFO"}


def test_defaults_reach_nested_tasks_with_alias_spelling() -> None:
    data = {
        "taskDefaults": [{"type": "io.kestra.core.tasks.log.Log", "values": {"message": "m"}}],
        "tasks": [
            {
                "id": "s",
                "type": "squall.flow.Switch",
                "value": "x",
                "cases": {"A": [{"id": "a", "type": "io.kestra.plugin.core.log.Log"}]},
                "defaults": [
                    {
                        "id": "d",
                        "type": "squall.flow.Dag",
                        "tasks": [{"task": {"id": "b", "type": "squall.core.Log"}}],
                    }
                ],
            }
        ],
        "listeners": [{"tasks": [{"id": "l", "type": "squall.core.Log"}]}],
        "finally": [{"id": "f", "type": "squall.core.Log", "message": "own"}],
    }
    out = apply_plugin_defaults(data)
    messages = {task["id"]: task.get("message") for _, task in iter_tasks(out)}
    assert messages == {"s": None, "a": "m", "d": None, "b": "m", "l": "m", "f": "own"}


def test_default_type_matching() -> None:
    assert matches("io.kestra.plugin.scripts", "io.kestra.plugin.scripts.python.Script")
    assert matches("io.kestra.core.tasks.log.Log", "squall.core.Log")
    assert matches("squall.core.Log", "io.kestra.plugin.core.log.Log")
    assert not matches("io.kestra.plugin.core.log.Log", "io.kestra.plugin.core.debug.Return")
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


def test_malformed_defaults_are_reported_not_crashed() -> None:
    error = rejected(
        """\
        id: f
        namespace: n
        pluginDefaults:
          - type: squall.core.Log
            values: [1]
          - 3
        tasks:
          - {id: t, type: squall.core.Log, message: x}
        """
    )
    assert [v.path for v in error.violations] == ["pluginDefaults[0].values", "pluginDefaults[1]"]


# --------------------------------------------------------------------------- fuzz

# SQUALL_FUZZ_EXAMPLES=20000 for a long run; the default keeps the unit suite fast.
_FUZZ = settings(
    max_examples=int(os.environ.get("SQUALL_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_VALID_TEXTS = [(CONFORMANCE / f).read_text(encoding="utf-8") for f in _VALID_FILES] or [
    path.read_text(encoding="utf-8")  # without shared/: mutate the samples instead
    for path in sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.yaml"))
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["squall.core.Log", "io.kestra.plugin.core.flow.Dag", "tasks", "id", "PT1S", "{{ x }}"]),
)
_keys = st.one_of(
    st.sampled_from(
        [
            "id",
            "namespace",
            "tasks",
            "type",
            "message",
            "then",
            "else",
            "cases",
            "task",
            "dependsOn",
            "retry",
            "errors",
            "finally",
            "labels",
            "inputs",
            "triggers",
            "pluginDefaults",
            "values",
            "workerGroup",
            "x",
        ]
    ),
    st.text(max_size=6),
)
_trees = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=30,
)


def _accepts_or_rejects(text: str) -> None:
    try:
        parse_flow(text, "fuzz.yaml")
    except FlowValidationError as exc:
        assert exc.violations
        for violation in exc.violations:
            assert violation.line >= 1 and violation.column >= 1
        str(exc)


@_FUZZ
@given(
    st.lists(
        st.sampled_from([*"ab:-[]{}&*!|>'\"#?,.\n \t%@`~0", "tasks", "id: x", "\n  - "]), max_size=60
    ).map("".join)
)
def test_fuzz_yamlish_text(text: str) -> None:
    _accepts_or_rejects(text)


@_FUZZ
@given(_trees)
def test_fuzz_random_trees(tree: Any) -> None:
    _accepts_or_rejects(yaml.safe_dump(tree))


@_FUZZ
@given(st.sampled_from(_VALID_TEXTS), st.data())
def test_fuzz_mutated_valid_flows(text: str, data: st.DataObject) -> None:
    flow = yaml.safe_load(text)
    tasks = flow["tasks"]
    index = data.draw(st.integers(0, len(tasks) - 1))
    key = data.draw(_keys)
    tasks[index][key] = data.draw(_trees)
    _accepts_or_rejects(yaml.safe_dump(flow))

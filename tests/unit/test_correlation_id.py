"""``system.correlationId``: every execution has one; Subflow and ForEachItem children carry the root's."""

from __future__ import annotations

from control_plane.engine import RunInline, StartSubflow, State, TaskResult, new_execution
from control_plane.engine.actions import BATCHES_KEY
from control_plane.engine.labels import CORRELATION_ID, child_labels, context_labels

from .helpers import T0, Driver, at, flow

SUBFLOW = """
id: parent
namespace: t
labels: {{team: data}}
tasks:
  - id: call
    type: io.kestra.plugin.core.flow.Subflow
    namespace: t
    flowId: child
    inheritLabels: {inherit}
    labels: {{own: "yes"}}
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "root is {{{{ labels.system.correlationId }}}}"
"""

FOREACH = """
id: parent
namespace: t
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEachItem
    items: s3://bucket/in/items.csv
    namespace: t
    flowId: child
    inputs: {items: "{{ taskrun.items }}"}
"""


def test_a_new_execution_is_its_own_correlation_id_unless_it_carries_one() -> None:
    f = flow("id: f\nnamespace: t\ntasks:\n  - {id: a, type: io.kestra.plugin.core.log.Log, message: x}\n")
    assert new_execution(f, "ex9", at=T0).labels[CORRELATION_ID] == "ex9"
    carried = new_execution(f, "ex9", at=T0, labels={CORRELATION_ID: "root1"})
    assert carried.labels[CORRELATION_ID] == "root1"


def test_a_subflow_child_gets_the_roots_id_with_or_without_inherited_labels() -> None:
    for inherit, expected in ((True, {"team": "data", "own": "yes"}), (False, {"own": "yes"})):
        d = Driver(SUBFLOW.format(inherit=str(inherit).lower()), execution_id="root1")
        (start,) = d.of_type(StartSubflow, d.start())
        assert start.labels == {**expected, CORRELATION_ID: "root1"}


def test_a_grandchild_keeps_the_roots_id_not_its_parents() -> None:
    d = Driver(SUBFLOW.format(inherit="false"), execution_id="child1")
    d.execution = d.execution.evolve(labels={**d.execution.labels, CORRELATION_ID: "root1"})
    (start,) = d.of_type(StartSubflow, d.start())
    assert start.labels[CORRELATION_ID] == "root1"


def test_a_task_cannot_override_the_correlation_id_of_its_child() -> None:
    assert child_labels({}, "root1", {CORRELATION_ID: "mine"}, inherit=False) == {CORRELATION_ID: "root1"}


def test_every_foreachitem_batch_child_gets_the_roots_id() -> None:
    d = Driver(FOREACH, execution_id="root1")
    (split,) = d.of_type(RunInline, d.start())
    hint = {"total": 3, "prefix": "s3://bucket/p/", "extension": ".csv"}
    starts = d.of_type(
        StartSubflow,
        d.send(TaskResult(at(1), split.taskrun_id, 1, State.SUCCESS, {"splits": "x", BATCHES_KEY: hint})),
    )
    assert [s.labels for s in starts] == [{CORRELATION_ID: "root1"}] * 3


def test_templates_read_system_labels_nested_as_kestra_does() -> None:
    labels = context_labels({"team": "a", CORRELATION_ID: "root1"})
    assert labels["system"] == {"correlationId": "root1"} and labels["team"] == "a"
    assert context_labels({"team": "a"}) == {"team": "a"}

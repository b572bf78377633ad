"""runners/markers.py: Kestra's ``::{...}::`` stdout protocol."""

from __future__ import annotations

import json
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from runners.markers import Marker, collect, looks_like_marker, parse_line


def test_parses_outputs_metrics_and_logs() -> None:
    line = (
        '::{"outputs":{"rows":42,"file":"a.csv"},'
        '"metrics":[{"name":"rows","type":"counter","value":42}],'
        '"logs":[{"level":"WARN","message":"careful"}]}::'
    )
    assert parse_line(line) == Marker(
        outputs={"rows": 42, "file": "a.csv"},
        metrics=[{"name": "rows", "type": "counter", "value": 42}],
        logs=[{"level": "WARN", "message": "careful"}],
    )


def test_surrounding_whitespace_and_nested_objects() -> None:
    marker = parse_line('  ::{"outputs":{"nested":{"deep":[1,{"x":"}::"}]}}}::\r\n')
    assert marker is not None
    assert marker.outputs == {"nested": {"deep": [1, {"x": "}::"}]}}


def test_empty_object_is_a_marker_that_carries_nothing() -> None:
    marker = parse_line("::{}::")
    assert marker == Marker()
    assert marker is not None and not marker


def test_not_markers() -> None:
    for text in [
        "",
        "hello",
        '{"outputs":{"a":1}}',
        '::{"outputs":{"a":1}}',  # no closing ::
        'x ::{"outputs":{"a":1}}::',  # text before the marker
        '::{"outputs":{"a":1}}:: trailing',
        "::[1,2]::",  # JSON, but not an object
        "::{not json}::",
        '::{"outputs":{"a":1}',
        '::{"a":' + "[" * 100_000 + "]" * 100_000 + "}::",  # absurd nesting: not a crash
    ]:
        assert parse_line(text) is None, text


def test_looks_like_marker_is_the_shape_only() -> None:
    assert looks_like_marker('  ::{"outputs":{}}::\n')
    assert looks_like_marker("::{not json}::")  # the shape: a caller measures it before parsing
    assert not looks_like_marker('::{"outputs":{}}')  # cut before its end
    assert not looks_like_marker('"outputs":{}}::')
    assert not looks_like_marker("::not a marker::")


def test_fields_of_the_wrong_type_are_ignored_one_by_one() -> None:
    marker = parse_line('::{"outputs":[1],"metrics":[{"name":"m"},3,"x"],"logs":"nope","extra":1}::')
    assert marker == Marker(outputs={}, metrics=[{"name": "m"}], logs=[])


def test_collect_merges_in_order() -> None:
    texts = [
        "starting",
        '::{"outputs":{"a":1,"b":1},"metrics":[{"name":"m1"}]}::',
        "::{broken::",
        '::{"outputs":{"b":2,"c":3},"metrics":[{"name":"m2"}],"logs":[{"level":"INFO","message":"hi"}]}::',
        '::{"logs":[{"level":"ERROR","message":"late"}]}::',
    ]
    assert collect(texts) == Marker(
        outputs={"a": 1, "b": 2, "c": 3},
        metrics=[{"name": "m1"}, {"name": "m2"}],
        logs=[{"level": "INFO", "message": "hi"}, {"level": "ERROR", "message": "late"}],
    )
    assert collect([]) == Marker()


def test_collect_streams_a_generator() -> None:
    def lines() -> Iterator[str]:
        for i in range(50_000):
            yield f"line {i}"
        yield '::{"outputs":{"last":true}}::'

    assert collect(lines()).outputs == {"last": True}


def test_merge_matches_collect() -> None:
    first = parse_line('::{"outputs":{"a":1},"metrics":[{"n":1}]}::')
    second = parse_line('::{"outputs":{"a":2},"logs":[{"message":"m"}]}::')
    assert first is not None and second is not None
    assert first.merge(second) == Marker(outputs={"a": 2}, metrics=[{"n": 1}], logs=[{"message": "m"}])


@given(st.text())
def test_parse_line_never_raises(text: str) -> None:
    result = parse_line(text)
    assert result is None or isinstance(result, Marker)


@given(st.dictionaries(st.text(), st.integers() | st.text() | st.booleans() | st.none()))
def test_any_json_object_of_outputs_round_trips(outputs: dict[str, object]) -> None:
    marker = parse_line("::" + json.dumps({"outputs": outputs}) + "::")
    assert marker is not None and marker.outputs == outputs

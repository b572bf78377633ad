"""core.storage tasks on a real storage directory, as the driver runs them (``run_effect``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from control_plane.errors import FlowValidationError
from control_plane.flows.loader import parse_flow
from control_plane.tasks import EffectContext
from tests.unit.effect_helpers import effect_context, run_family


@pytest.fixture
def ctx(tmp_path: Path) -> EffectContext:
    return effect_context(tmp_path, "t.st")


def _run(kind: str, ctx: EffectContext, **props: Any) -> tuple[Any, str | None]:
    return run_family("storage", kind, ctx, **props)


def _file(ctx: EffectContext, name: str, text: str) -> str:
    uri = ctx.storage.uri(f"t.st/f/ex0/tr0/1/{name}")
    ctx.storage.write(uri, text.encode())
    return uri


def _text(ctx: EffectContext, uri: str) -> str:
    return ctx.storage.read(uri).decode()


ITEMS = '{"id": 1, "v": 5}\n{"id": 2, "v": 15}\n{"id": 1, "v": 25}\n'


def test_write_then_size_then_delete(ctx: EffectContext) -> None:
    out, error = _run("Write", ctx, content="Hello World", extension=".txt")
    assert error is None and out["uri"].endswith("/t.st/f/ex1/tr1/1/write.txt")
    assert _run("Size", ctx, uri=out["uri"]) == ({"size": 11}, None)
    assert _run("Delete", ctx, uri=out["uri"]) == ({"uri": out["uri"], "deleted": True}, None)
    assert _run("Delete", ctx, uri=out["uri"]) == ({"uri": out["uri"], "deleted": False}, None)
    _, error = _run("Delete", ctx, uri=out["uri"], errorOnMissing=True)
    assert error == f"Unable to find file '{out['uri']}'"
    _, error = _run("Size", ctx, uri=out["uri"])
    assert error is not None and error.startswith("property 'uri':")


def test_delete_refuses_files_outside_the_flow_namespace(ctx: EffectContext) -> None:
    other = ctx.storage.uri("other.ns/f/ex/tr/1/x.txt")
    ctx.storage.write(other, b"keep me")
    _, error = _run("Delete", ctx, uri=other)
    assert error is not None and "is not a file of namespace 't.st'" in error
    assert ctx.storage.exists(other)
    _, error = _run("Delete", ctx, uri="file:///etc/passwd")
    assert error is not None and error.startswith("property 'uri':")


def test_concat_split_reverse(ctx: EffectContext) -> None:
    a, b = _file(ctx, "a.csv", "1\n2\n"), _file(ctx, "b.csv", "3\n")
    out, error = _run("Concat", ctx, files=json.dumps([a, b]), separator="-\n", extension=".csv")
    assert error is None and _text(ctx, out["uri"]) == "1\n2\n-\n3\n-\n"
    _, error = _run("Concat", ctx, files=42)
    assert error is not None and "Invalid `files` properties" in error
    parts, error = _run("Split", ctx, **{"from": out["uri"], "rows": 2})
    assert error is None and [_text(ctx, u) for u in parts["uris"]] == ["1\n2\n", "-\n3\n", "-\n"]
    assert all(u.endswith(".csv") for u in parts["uris"])
    parts, _ = _run("Split", ctx, **{"from": out["uri"], "partitions": 2})
    assert [_text(ctx, u) for u in parts["uris"]] == ["1\n-\n-\n", "2\n3\n"]
    parts, _ = _run("Split", ctx, **{"from": out["uri"], "bytes": "4B"})
    assert [_text(ctx, u) for u in parts["uris"]] == ["1\n2\n", "-\n3\n", "-\n"]
    _, error = _run("Split", ctx, **{"from": out["uri"], "bytes": "lots"})
    assert error == "Invalid size with value 'lots'"
    rev, error = _run("Reverse", ctx, **{"from": a})
    assert error is None and _text(ctx, rev["uri"]) == "2\n1\n"


def test_filter_and_deduplicate_json_lines(ctx: EffectContext) -> None:
    src = _file(ctx, "items.ion", ITEMS)
    out, error = _run("FilterItems", ctx, **{"from": src, "filterCondition": "{{ v > 10 }}"})
    assert error is None
    assert (out["processedItemsTotal"], out["droppedItemsTotal"]) == (3, 1)
    assert _text(ctx, out["uri"]) == '{"id": 2, "v": 15}\n{"id": 1, "v": 25}\n'
    out, _ = _run(
        "FilterItems", ctx, **{"from": src, "filterCondition": "{{ v > 10 }}", "filterType": "EXCLUDE"}
    )
    assert _text(ctx, out["uri"]) == '{"id": 1, "v": 5}\n'
    out, error = _run("DeduplicateItems", ctx, **{"from": src, "expr": "{{ id }}"})
    assert error is None and (out["numKeys"], out["droppedItemsTotal"]) == (2, 1)
    assert _text(ctx, out["uri"]) == '{"id": 2, "v": 15}\n{"id": 1, "v": 25}\n'  # the last of each key


def test_items_that_are_not_json_or_conditions_that_fail(ctx: EffectContext) -> None:
    ion = _file(ctx, "ion.ion", "{id:1, v:5}\n")
    _, error = _run("FilterItems", ctx, **{"from": ion, "filterCondition": "{{ v > 1 }}"})
    assert error is not None and "line 1 is not JSON" in error
    src = _file(ctx, "items.ion", ITEMS)
    bad = "{{ v | nosuchfilter }}"
    _, error = _run("FilterItems", ctx, **{"from": src, "filterCondition": bad})
    assert error is not None and error.startswith("filterCondition on")
    out, error = _run(
        "FilterItems", ctx, **{"from": src, "filterCondition": bad, "errorOrNullBehavior": "EXCLUDE"}
    )
    assert error is None and out["droppedItemsTotal"] == 3
    out, _ = _run(
        "FilterItems", ctx, **{"from": src, "filterCondition": bad, "errorOrNullBehavior": "INCLUDE"}
    )
    assert out["droppedItemsTotal"] == 0


def test_purge_removes_this_execution_files_only(ctx: EffectContext) -> None:
    mine = ctx.output_uri("a.txt")
    ctx.storage.write(mine, b"x")
    theirs = _file(ctx, "b.txt", "y")
    out, error = _run("PurgeCurrentExecutionFiles", ctx)
    assert error is None and out["uris"] == [mine]
    assert not ctx.storage.exists(mine) and ctx.storage.exists(theirs)


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ("type: io.kestra.plugin.core.storage.Split\n    from: x", "bytes"),
        ("type: io.kestra.plugin.core.storage.Split\n    from: x\n    rows: 1\n    partitions: 2", "rows"),
        ("type: io.kestra.plugin.core.storage.FilterItems\n    from: x", "filterCondition"),
        (
            "type: io.kestra.plugin.core.storage.FilterItems\n    from: x\n"
            "    filterCondition: a\n    filterType: MAYBE",
            "filterType",
        ),
        ("type: io.kestra.plugin.core.storage.Write", "content"),
    ],
)
def test_bad_properties_are_validation_errors_naming_the_field(task: str, field: str) -> None:
    source = f"id: s\nnamespace: t.st\ntasks:\n  - id: t\n    {task}\n"
    with pytest.raises(FlowValidationError, match=field):
        parse_flow(source, "s.yaml")


def test_local_files_outputs_the_inputs_its_globs_pick(ctx: EffectContext) -> None:
    src = _file(ctx, "data.csv", "a,b\n")
    out, error = _run(
        "LocalFiles",
        ctx,
        inputs={"hello.txt": "Hello", "dir/copy.csv": "kestra:///t.st/f/ex0/tr0/1/data.csv", "skip.md": "x"},
        outputs=["*.txt", "dir/**"],
    )
    assert error is None
    assert sorted(out["uris"]) == ["dir/copy.csv", "hello.txt"]
    assert _text(ctx, out["uris"]["hello.txt"]) == "Hello"
    assert _text(ctx, out["uris"]["dir/copy.csv"]) == _text(ctx, src)
    _, error = _run("LocalFiles", ctx, inputs={"../up.txt": "x"}, outputs=["**"])
    assert error == "property 'inputs': '../up.txt' is not a relative file path"


def test_local_files_inside_a_working_directory_is_refused() -> None:
    source = """
id: w
namespace: t.st
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:
      - id: files
        type: io.kestra.plugin.core.storage.LocalFiles
        inputs: {a.txt: hi}
      - id: sh
        type: io.kestra.plugin.scripts.shell.Commands
        commands: [cat a.txt]
"""
    with pytest.raises(FlowValidationError, match="LocalFiles inside a WorkingDirectory"):
        parse_flow(source, "w.yaml")

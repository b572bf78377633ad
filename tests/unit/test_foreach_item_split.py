"""ForEachItem's I/O parts (``_split``, ``_merge``) on a real storage directory, as the driver runs them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from control_plane.engine.actions import BATCHES_KEY
from control_plane.service.storage import LocalStorage
from control_plane.tasks import EffectContext, TaskFailure, run_effect
from control_plane.tasks.storage import cut
from tests.unit.effect_helpers import effect_context

SPLIT = "io.kestra.plugin.core.flow.ForEachItem$ForEachItemSplit"
MERGE = "io.kestra.plugin.core.flow.ForEachItem$ForEachItemMergeOutputs"
LINES = "".join(f"{n:>20}\n" for n in range(102))  # ForEachItemCaseTest.content()


@pytest.fixture
def ctx(tmp_path: Path) -> EffectContext:
    return effect_context(tmp_path, "t.fei")


def _put(ctx: EffectContext, name: str, data: str) -> str:
    uri = f"kestra:///file/storage/{name}"
    ctx.storage.write(uri, data.encode())
    return uri


def _split(ctx: EffectContext, items: Any, **batch: Any) -> tuple[Any, str | None]:
    outcome = run_effect(SPLIT, {"items": items, "batch": batch}, ctx)
    return outcome.outputs, outcome.error


def test_cut_by_rows_ends_each_line_with_the_separator() -> None:
    assert cut(b"a\nb\r\nc\rd", {"rows": 1}) == [b"a\n", b"b\n", b"c\n", b"d\n"]  # readLine's endings
    assert cut(b"a\nb\nc\n", {"rows": "2", "separator": ";"}) == [b"a;b;", b"c;"]
    assert len(cut(LINES.encode(), {"rows": 4})) == 26


def test_cut_by_bytes_closes_a_batch_once_it_holds_the_limit() -> None:
    batches = cut(LINES.encode(), {"bytes": "100B", "rows": 1})  # bytes wins over rows, as in Kestra
    assert len(batches) == 21 and all(len(b) == 105 for b in batches[:-1]) and len(batches[-1]) == 42
    assert cut(b"abc\nd\n", {"bytes": "1KB"}) == [b"abc\nd\n"]


def test_cut_by_partitions_deals_lines_and_drops_empty_partitions() -> None:
    assert cut(b"1\n2\n3\n4\n5\n", {"partitions": 2}) == [b"1\n3\n5\n", b"2\n4\n"]
    assert cut(b"1\n2\n", {"partitions": "5"}) == [b"1\n", b"2\n"]  # StorageService.partition filter


def test_cut_of_an_empty_file_has_no_batch() -> None:
    assert cut(b"", {"rows": 4}) == []
    assert cut(b"", {"partitions": 3}) == []


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"rows": 0}, "property 'rows' must be at least 1"),
        ({"rows": "four"}, "property 'rows': 'four' is not a whole number"),
        ({"partitions": -1}, "property 'partitions' must be at least 1"),
        ({"bytes": "lots"}, "Invalid size with value 'lots'"),
        ({"rows": None}, "Invalid configuration with no size, count, nor rows"),
    ],
)
def test_cut_refuses_bad_batch_settings_by_name(batch: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskFailure) as caught:
        cut(b"a\n", batch)
    assert str(caught.value) == message


def test_split_writes_numbered_batches_their_list_and_the_engine_hint(ctx: EffectContext) -> None:
    items = _put(ctx, "file.txt", LINES)
    outputs, error = _split(ctx, items, rows=4)
    assert error is None
    hint = outputs[BATCHES_KEY]
    assert hint["total"] == 26 and hint["extension"] == ".txt"
    assert hint["prefix"] == ctx.output_uri("")
    listed = ctx.storage.read(outputs["splits"]).decode().split("\n")
    assert listed == [f"{hint['prefix']}{n}.txt" for n in range(1, 27)]
    assert ctx.storage.read(listed[0]).decode() == "".join(f"{n:>20}\n" for n in range(4))
    assert ctx.storage.read(listed[-1]).decode() == f"{100:>20}\n{101:>20}\n"


def test_split_of_an_empty_file_has_no_batch(ctx: EffectContext) -> None:
    outputs, error = _split(ctx, _put(ctx, "empty.csv", ""), rows=4)
    assert error is None and outputs[BATCHES_KEY]["total"] == 0
    assert ctx.storage.read(outputs["splits"]) == b""


def test_split_of_a_file_that_does_not_exist_fails_naming_it(ctx: EffectContext) -> None:
    _, error = _split(ctx, "kestra:///file/storage/missing.txt", rows=4)
    assert error is not None and error.startswith("property 'items':") and "missing.txt" in error


@pytest.mark.parametrize("items", ["", None, "just some text", "file:///etc/passwd"])
def test_split_refuses_items_that_are_no_file_of_the_storage(ctx: EffectContext, items: Any) -> None:
    _, error = _split(ctx, items, rows=1)
    assert error is not None
    assert "items" in error


def test_merge_concatenates_the_outputs_written_in_batch_order(ctx: EffectContext) -> None:
    prefix = ctx.storage.uri("t.fei/f/ex1/split/1/")
    for n in (10, 2, 1):  # batch 3 had no outputs; 10 sorts after 2 numerically
        ctx.storage.write(f"{prefix}outputs/{n}.ion", f'{{"value":"{n}"}}\n'.encode())
    outcome = run_effect(MERGE, {"total": 10, "prefix": prefix}, ctx)
    assert outcome.error is None
    merged = ctx.storage.read(outcome.outputs["subflowOutputs"]).decode()
    assert merged == '{"value":"1"}\n{"value":"2"}\n{"value":"10"}\n'
    assert outcome.outputs["subflowOutputs"].endswith("/outputs.ion")


def test_merge_has_no_outputs_when_no_subflow_wrote_any(ctx: EffectContext) -> None:
    assert run_effect(MERGE, {"total": 0}, ctx).outputs is None
    prefix = ctx.storage.uri("t.fei/f/ex1/split/1/")
    assert run_effect(MERGE, {"total": 3, "prefix": prefix}, ctx).outputs is None


class _StuckAfter(LocalStorage):
    """Writes after the first ``free`` batch files wait until released (a storage that stalls)."""

    def __init__(self, root: Path, free: int) -> None:
        super().__init__(root)
        self.free = free
        self.release = threading.Event()
        self.lock = threading.Lock()

    def write(self, uri: str, data: bytes) -> None:
        with self.lock:
            stall = uri.rsplit("/", 1)[1][0].isdigit() and self.free <= 0
            self.free -= 1
        if stall:
            self.release.wait(timeout=10)
        super().write(uri, data)


def test_a_split_out_of_time_fails_saying_how_far_it_got(tmp_path: Path) -> None:
    storage = _StuckAfter(tmp_path / "storage", free=3)
    ctx = effect_context(tmp_path, "t.fei")
    ctx = msgspec.structs.replace(ctx, storage=storage, deadline=time.monotonic() + 0.5)
    items = "kestra:///file/storage/file.txt"
    storage.write(items, LINES.encode())
    storage.free = 3
    try:
        _, error = _split(ctx, items, rows=4)
    finally:
        storage.release.set()
    assert error is not None and error.startswith("wrote 3 of 26 batch files before the task's time ran out")

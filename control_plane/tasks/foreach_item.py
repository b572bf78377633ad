"""The I/O of Kestra's ForEachItem: its ``_split`` and ``_merge`` parts (ForEachItem.java).

``_split`` cuts the ``items`` file as Kestra's ``StorageService.split`` does (the cut itself is
:func:`control_plane.tasks.storage.cut`, shared with the Split task) into batch files
``<prefix><n><extension>`` under the attempt's output prefix, lists their URIs in
``splits.txt`` (Kestra's ``splits`` output) and tells the engine how many there are and where
(:data:`~control_plane.engine.actions.BATCHES_KEY`): the engine derives each batch's URI from
that, without reading the list. ``items`` must be a file this deployment's storage may read;
Kestra asks for a ``kestra://`` URI, Squall takes any URI of its storage (a task's output is
``s3://...`` on AWS).

``_merge`` concatenates the outputs the shell wrote for each ended subflow (one JSON line each,
which is valid Ion text: Ion is a superset of JSON) in batch order into ``outputs.ion``
(Kestra's ``subflowOutputs``); no file when no subflow had outputs, as in Kestra.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from control_plane.engine.actions import BATCHES_KEY
from control_plane.levels import Level
from control_plane.tasks import TaskFailure
from control_plane.tasks.storage import _extension, _read, cut

if TYPE_CHECKING:
    from control_plane.tasks import EffectContext, Handler

__all__ = ["HANDLERS"]

_TYPE = "io.kestra.plugin.core.flow.ForEachItem$"
WRITERS = 8
"""Batch files written (outputs read) at once: every storage backend takes concurrent calls
(runners/testing/storage_contract.py writes with eight threads)."""


def split(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    from control_plane.service.storage import is_uri

    items = props.get("items")
    if not isinstance(items, str) or not items.strip():
        raise TaskFailure("property 'items' is required: the URI of a file in the storage")
    items = items.strip()
    if not is_uri(items):
        raise TaskFailure(f"Unable to split the items from {items}, this is not an internal storage URI!")
    batch = props.get("batch")
    chunks = cut(_read(ctx, items, "items"), batch if isinstance(batch, Mapping) else {})
    prefix = ctx.output_uri("")
    extension = _extension(items)
    uris = [f"{prefix}{n}{extension}" for n in range(1, len(chunks) + 1)]
    _write_all(ctx, list(zip(uris, chunks, strict=True)))
    splits = ctx.output_uri("splits.txt")
    ctx.storage.write(splits, "\n".join(uris).encode())
    ctx.log(Level.INFO, f"{len(uris)} batches of {items}")
    return {"splits": splits, BATCHES_KEY: {"total": len(uris), "prefix": prefix, "extension": extension}}


def _write_all(ctx: EffectContext, files: list[tuple[str, bytes]]) -> None:
    """Write the batch files :data:`WRITERS` at a time (an object store takes tens of ms a PUT);
    out of time, the attempt fails saying how far it got rather than being cut off unsaid."""
    pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="squall-split")
    try:
        futures = [pool.submit(ctx.storage.write, uri, data) for uri, data in files]
        for written, future in enumerate(futures):
            try:
                left = ctx.remaining()
                future.result(timeout=left if math.isfinite(left) else None)
            except FutureTimeout:
                raise TaskFailure(
                    f"wrote {written} of {len(files)} batch files before the task's time ran out:"
                    " use bigger batches (batch.rows, batch.bytes or batch.partitions)"
                ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def merge(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any] | None:
    total = int(props.get("total") or 0)
    prefix = props.get("prefix")
    if total == 0 or not isinstance(prefix, str):
        return None  # no subflow execution waited for: Kestra's merge has no outputs either
    found = ctx.storage.list_prefix(f"{prefix}outputs/")
    numbered = sorted(
        (int(name[: -len(".ion")]), uri)
        for name, uri in found.items()
        if name.endswith(".ion") and name[: -len(".ion")].isdigit()
    )
    if not numbered:
        return None
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="squall-merge") as pool:
        parts = pool.map(
            lambda uri: _read(ctx, uri, "subflowOutputs"), [u for n, u in numbered if 1 <= n <= total]
        )
        merged = b"".join(parts)
    target = ctx.output_uri("outputs.ion")
    ctx.storage.write(target, merged)
    return {"subflowOutputs": target}


HANDLERS: dict[str, Handler] = {
    f"{_TYPE}ForEachItemSplit": split,
    f"{_TYPE}ForEachItemMergeOutputs": merge,
}

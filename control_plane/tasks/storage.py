"""``io.kestra.plugin.core.storage``: files in the deployment storage, named by URIs.

Write, Concat, Split, Size, Delete, Reverse, FilterItems, DeduplicateItems and
PurgeCurrentExecutionFiles, with Kestra's properties and outputs (storage/*.java,
StorageService.split). A file a task writes goes where a script task's ``outputFiles`` go
(``<root>/<namespace>/<flow>/<execution>/<taskrun>/<attempt>/``), so its URI works in any
later task (``inputFiles``, another storage task, the API). A URI the storage may not read
(another bucket, ``file:///etc/passwd``) fails the task with the storage's reason.

Items files: Kestra writes them as ION, one value per line. Squall reads and writes them as
JSON lines: a line that is not JSON (ION's ``{a:1}``, symbols, timestamps) fails the task
naming the line, never read as something else. ``filterCondition`` and ``expr`` are rendered
for each item with the item's fields as variables on top of the task's context (flow,
execution, inputs, outputs, vars, labels, taskrun, trigger), as Kestra renders them with its
run context.

Files are read whole (the storage seam reads objects as bytes): what a task handles is
bounded by the memory of the process that runs it, a Lambda's included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from control_plane.errors import ExpressionError
from control_plane.expressions import is_truthy, render
from control_plane.tasks import TaskFailure

if TYPE_CHECKING:
    from control_plane.tasks import EffectContext, Handler

__all__ = ["HANDLERS", "cut"]


def _text(props: Mapping[str, Any], name: str) -> str:
    value = props.get(name)
    if not isinstance(value, str) or not value:
        raise TaskFailure(f"property '{name}' is required")
    return value


def _read(ctx: EffectContext, uri: str, name: str) -> bytes:
    from control_plane.service.storage import StorageError

    try:
        return ctx.storage.read(uri)
    except StorageError as exc:
        raise TaskFailure(f"property '{name}': {exc}") from None


def _extension(uri: str, default: str = ".tmp") -> str:
    last = uri.rsplit("/", 1)[-1]
    return last[last.rfind(".") :] if "." in last else default


def write(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    content = props.get("content")
    if content is None:
        raise TaskFailure("property 'content' is required")
    extension = str(props.get("extension") or "")
    uri = ctx.output_uri(f"write{extension}")
    ctx.storage.write(uri, str(content).encode())
    return {"uri": uri}


def concat(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    files = props.get("files")
    if isinstance(files, str):
        try:
            files = json.loads(files)
        except ValueError:
            raise TaskFailure("property 'files': a JSON list of URIs expected") from None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise TaskFailure(f"Invalid `files` properties with type '{type(files).__name__}'")
    separator = props.get("separator")
    parts: list[bytes] = []
    for uri in files:
        parts.append(_read(ctx, uri, "files"))
        if separator is not None:
            parts.append(str(separator).encode())
    target = ctx.output_uri(f"concat{props.get('extension') or '.tmp'}")
    ctx.storage.write(target, b"".join(parts))
    return {"uri": target}


_BYTES = re.compile(r"^\s*(\d+)\s*([KMGT]?B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _readable_bytes(text: str) -> int:
    """Micronaut's ReadableBytesTypeConverter: ``1048576``, ``512KB``, ``10MB``, ``1GB``."""
    match = _BYTES.match(str(text))
    if not match:
        raise TaskFailure(f"Invalid size with value '{text}'")
    unit = match.group(2).upper() if match.group(2) else None
    return int(match.group(1)) * _UNITS[unit]


def _lines(data: bytes) -> list[str]:
    """Java's BufferedReader.readLine: \\n, \\r or \\r\\n end a line; no empty last line."""
    return data.decode().splitlines()


def cut(data: bytes, batch: Mapping[str, Any]) -> list[bytes]:
    """Kestra's ``StorageService.split``: the lines of ``data`` in batches, each line ended by
    ``separator``; the one place Split and ForEachItem cut a file.

    Kestra's precedence: ``bytes`` (a batch is closed once it holds at least that many),
    else ``partitions`` (lines dealt round-robin; empty partitions dropped), else ``rows``.
    """
    lines = _lines(data)
    separator = str(batch.get("separator", "\n"))
    chunks: list[list[bytes]] = []
    if batch.get("bytes") is not None:
        limit = _readable_bytes(str(batch["bytes"]))
        size = 0
        for row in lines:
            encoded = (row + separator).encode()
            if not chunks or size >= limit:
                chunks.append([])
                size = 0
            chunks[-1].append(encoded)
            size += len(encoded)
    elif batch.get("partitions") is not None:
        count = _positive(batch["partitions"], "partitions")
        chunks = [[] for _ in range(count)]
        for index, row in enumerate(lines):
            chunks[index % count].append((row + separator).encode())
        chunks = [chunk for chunk in chunks if chunk]
    elif batch.get("rows") is not None:
        rows = _positive(batch["rows"], "rows")
        for index, row in enumerate(lines):
            if index % rows == 0:
                chunks.append([])
            chunks[-1].append((row + separator).encode())
    else:
        raise TaskFailure("Invalid configuration with no size, count, nor rows")
    return [b"".join(chunk) for chunk in chunks]


def _positive(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TaskFailure(f"property '{name}': {value!r} is not a whole number") from None
    if number < 1:
        raise TaskFailure(f"property '{name}' must be at least 1")
    return number


def split(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    source = _text(props, "from")
    extension = _extension(source)
    uris: list[str] = []
    for index, chunk in enumerate(cut(_read(ctx, source, "from"), props)):
        uri = ctx.output_uri(f"split-{index}{extension}")
        ctx.storage.write(uri, chunk)
        uris.append(uri)
    return {"uris": uris}


def _in_namespace(ctx: EffectContext, uri: str) -> str:
    """The backend's URI of ``uri`` if it is under the flow's namespace, else a failure.

    Kestra's storage calls are scoped by the flow's namespace; here a storage task may change
    only files of its own namespace (its executions' outputs and uploads).
    """
    from control_plane.service.storage import StorageError

    try:
        canonical = ctx.storage.canonical(uri)
    except StorageError as exc:
        raise TaskFailure(f"property 'uri': {exc}") from None
    if not canonical.startswith(ctx.storage.uri(f"{ctx.namespace}/")):
        raise TaskFailure(f"property 'uri': {uri!r} is not a file of namespace '{ctx.namespace}'")
    return canonical


def size(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    uri = _text(props, "uri")
    return {"size": len(_read(ctx, uri, "uri"))}


def delete(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    uri = _text(props, "uri")
    canonical = _in_namespace(ctx, uri)
    deleted = ctx.storage.exists(canonical)
    if deleted:
        ctx.storage.delete([canonical])
    if props.get("errorOnMissing") and not deleted:
        raise TaskFailure(f"Unable to find file '{uri}'")
    return {"uri": uri, "deleted": deleted}


def reverse(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    source = _text(props, "from")
    charset = str(props.get("charset") or "UTF-8")
    separator = str(props.get("separator", "\n"))
    try:
        lines = _read(ctx, source, "from").decode(charset).splitlines()
        data = "".join(line + separator for line in reversed(lines)).encode(charset)
    except LookupError:
        raise TaskFailure(f"property 'charset': unknown charset {charset!r}") from None
    uri = ctx.output_uri(f"reverse{_extension(source)}")
    ctx.storage.write(uri, data)
    return {"uri": uri}


def _items(ctx: EffectContext, source: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for number, line in enumerate(_lines(_read(ctx, source, "from")), start=1):
        if not line.strip():
            continue
        try:
            items.append((line, json.loads(line)))
        except ValueError:
            raise TaskFailure(
                f"property 'from': line {number} is not JSON (Squall reads items files as JSON lines,"
                f" not ION): {line[:80]!r}"
            ) from None
    return items


def _item_context(ctx: EffectContext, item: Any, props: Mapping[str, Any]) -> dict[str, Any]:
    """The task's own context (``@context``, from the planner) with the item's fields on top."""
    base: dict[str, Any] = dict(props.get("@context") or {})
    base.setdefault("flow", {"id": ctx.flow_id, "namespace": ctx.namespace})
    base.setdefault("execution", {"id": ctx.execution_id})
    if isinstance(item, Mapping):
        base.update(item)
    return base


def filter_items(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    source, condition = _text(props, "from"), _text(props, "filterCondition")
    keep_matching = props.get("filterType", "INCLUDE") == "INCLUDE"
    on_error = props.get("errorOrNullBehavior", "FAIL")
    kept: list[str] = []
    processed = dropped = 0
    for line, item in _items(ctx, source):
        try:
            match = is_truthy(render(condition, _item_context(ctx, item, props)).strip())
        except ExpressionError as exc:  # Kestra's null match: errorOrNullBehavior decides
            if on_error == "FAIL":
                raise TaskFailure(f"filterCondition on {line[:80]!r}: {exc}") from None
            include = on_error == "INCLUDE"
        else:
            include = match if keep_matching else not match
        processed += 1
        if include:
            kept.append(line)
        else:
            dropped += 1
    uri = ctx.output_uri("filtered.ion")
    ctx.storage.write(uri, "".join(f"{line}\n" for line in kept).encode())
    return {"uri": uri, "processedItemsTotal": processed, "droppedItemsTotal": dropped}


def deduplicate_items(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    source, expr = _text(props, "from"), _text(props, "expr")
    items = _items(ctx, source)
    keys: list[str] = []
    for line, item in items:
        try:
            keys.append(render(expr, _item_context(ctx, item, props)))
        except ExpressionError as exc:
            raise TaskFailure(f"expr on {line[:80]!r}: {exc}") from None
    last = {key: offset for offset, key in enumerate(keys)}  # the last item of each key is kept
    kept = [line for offset, (line, _) in enumerate(items) if last[keys[offset]] == offset]
    uri = ctx.output_uri("deduplicated.ion")
    ctx.storage.write(uri, "".join(f"{line}\n" for line in kept).encode())
    return {
        "uri": uri,
        "numKeys": len(last),
        "processedItemsTotal": len(items),
        "droppedItemsTotal": len(items) - len(kept),
    }


def local_files(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    """LocalFiles.java outside a WorkingDirectory: its own working directory holds only its inputs.

    ``inputs`` (name -> content, or a ``kestra://`` URI to copy) make the files; ``outputs``
    (globs relative to that directory, FilesService.outputFiles) pick which of them become
    storage URIs, output as ``uris``. Without ``outputs`` the files are made and dropped, as
    Kestra drops a working directory.
    """
    from control_plane.service.namespace_files import PathError, matcher

    inputs = props.get("inputs") or {}
    if isinstance(inputs, str):
        try:
            inputs = json.loads(inputs)
        except ValueError:
            raise TaskFailure("property 'inputs': a map of file name -> content expected") from None
    if not isinstance(inputs, Mapping):
        raise TaskFailure("property 'inputs': a map of file name -> content expected")
    files: dict[str, bytes] = {}
    for name, content in inputs.items():
        relative = str(name).lstrip("/")
        if any(part in ("", ".", "..") for part in relative.split("/")):
            raise TaskFailure(f"property 'inputs': {name!r} is not a relative file path")
        if content is None:
            files[relative] = b""
        elif str(content).startswith("kestra://"):
            files[relative] = _read(ctx, str(content), "inputs")
        else:
            files[relative] = str(content).encode()
    patterns = props.get("outputs") or []
    try:
        chosen = matcher(
            [p if p.startswith(("glob:", "regex:")) else "glob:/" + p.lstrip("/") for p in patterns]
        )
    except PathError as exc:
        raise TaskFailure(f"property 'outputs': {exc}") from None
    uris: dict[str, str] = {}
    for relative, data in sorted(files.items()):
        if patterns and chosen.fullmatch("/" + relative):
            uri = ctx.output_uri(relative)
            ctx.storage.write(uri, data)
            uris[relative] = uri
    return {"uris": uris}


def purge_current_execution_files(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    prefix = ctx.storage.execution_prefix(ctx.namespace, ctx.flow_id, ctx.execution_id)
    uris = sorted(ctx.storage.list_prefix(prefix).values())
    ctx.storage.delete(uris)
    return {"uris": uris}


HANDLERS: dict[str, Handler] = {
    "squall.storage.Write": write,
    "squall.storage.Concat": concat,
    "squall.storage.Split": split,
    "squall.storage.Size": size,
    "squall.storage.Delete": delete,
    "squall.storage.Reverse": reverse,
    "squall.storage.FilterItems": filter_items,
    "squall.storage.DeduplicateItems": deduplicate_items,
    "squall.storage.PurgeCurrentExecutionFiles": purge_current_execution_files,
    "squall.storage.LocalFiles": local_files,
}

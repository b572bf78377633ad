"""What a request that starts an execution carries besides the flow: labels and form inputs.

Kestra's clients send a start's inputs as ``multipart/form-data`` (one part per input) and its
labels as repeated ``labels=key:value`` query parameters; Squall also takes the inputs as one
JSON object (``START_TYPES``). The start, replay-with-inputs and resume routes of
:mod:`control_plane.api.kestra_executions` read them through here.

File inputs (multipart parts with a filename) are written to the deployment storage
(``SQUALL_STORAGE``, so a task submitted from another container reads them) under
``<root>/<namespace>/<flow>/<execution>/inputs/<input>/<filename>`` and the input gets the
part's ``kestra:///`` URI, which names that object whatever the backend (Kestra's layout) and
which tasks read like any other storage URI. The caller removes them again (the returned
prefix) when the execution is then refused: a rejected request leaves nothing behind. A
resume's files go to a folder of their own under ``inputs/`` for the same reason.
"""

from __future__ import annotations

import contextlib
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from control_plane.api import common
from control_plane.runtime import Runtime
from control_plane.service.storage import StorageError

__all__ = ["START_TYPES", "form_inputs", "label_values"]

START_TYPES = ("application/json", "multipart/form-data")


def label_values(event: dict[str, Any]) -> dict[str, str]:
    """The ``labels=key:value`` query parameters, read from the raw query string so a value may
    hold a comma (API Gateway joins repeated parameters with commas in its map); 422 naming the
    parameter for one without a colon or a key."""
    labels: dict[str, str] = {}
    for raw in common.query_values(event, "labels"):
        key, sep, value = raw.partition(":")
        if not sep or not key.strip():
            raise common.ApiError(
                422,
                f"invalid query parameter 'labels': expected key:value, got {raw!r}",
                extra={"errors": [{"name": "labels", "in": "query", "message": "expected key:value"}]},
            )
        labels[key.strip()] = value
    return labels


def _safe_name(filename: str, fallback: str) -> str:
    """The last path component of a client-supplied file name: never a path out of the directory."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else fallback


def form_inputs(
    rt: Runtime,
    event: dict[str, Any],
    namespace: str,
    flow_id: str,
    execution_id: str,
    folder: str = "inputs",
) -> tuple[dict[str, Any], str | None]:
    """Inputs from multipart parts: fields as text (repeated fields as lists), files stored as URIs.

    Also the storage prefix that holds this request's uploads, None when there were none.
    ``folder`` is where under the execution: ``inputs`` for a start; a resume's own folder
    (``inputs/resume-<id>``), so that refusing it removes its files and nothing of the start's.
    """
    inputs: dict[str, Any] = {}
    stored: str | None = None
    storage = rt.service.storage
    relative = PurePosixPath(namespace, flow_id, execution_id, *folder.split("/"))
    for part in common.multipart(event):
        if part.filename is not None:
            name = _safe_name(part.filename, part.name)
            key = relative / _safe_name(part.name, "input") / name
            stored = storage.uri(f"{relative}/")
            try:
                storage.write(storage.uri(key), part.content)
            except StorageError as exc:  # keep nothing of a request that fails
                with contextlib.suppress(StorageError):
                    storage.delete_prefix(stored)
                status = 503 if exc.transient else 500
                raise common.ApiError(status, f"input {part.name!r}: cannot store the file: {exc}") from None
            value: Any = "kestra:///" + quote(str(key))
        else:
            value = part.text()
        if part.name in inputs:
            previous = inputs[part.name]
            inputs[part.name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            inputs[part.name] = value
    return inputs, stored

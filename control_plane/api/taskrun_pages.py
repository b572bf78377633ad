"""Task runs of a big execution, a page at a time, each page within the response budget.

An execution's JSON lists at most ``TASKRUNS_SHOWN`` task runs, fewer when they would make
the response larger than about ``SQUALL_MAX_RESPONSE_BYTES`` (a Lambda response is at most
6 MB); its ``taskRunCursor`` then leads to ``GET /api/v1/{tenant}/executions/{id}/taskruns
?cursor=`` for the rest (a Squall extension: Kestra lists every task run, which a Lambda
cannot send for a big execution). Pages follow task-run ids (the order both stores keep them
in, so a page is one range read, never a sort of the whole execution); within a page, task
runs are listed in creation order, so an execution that fits in one page reads exactly as
Kestra lists it. The cursor is the last id of the page, base64url so it stays opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel

from control_plane.api import common
from control_plane.engine.model import TaskRun

__all__ = [
    "ENVELOPE",
    "TASKRUNS_SHOWN",
    "TASKRUN_PAGE",
    "TASKRUN_PAGE_MAX",
    "after",
    "fit",
    "size",
    "task_run_cursor",
]

TASKRUNS_SHOWN = 1000  # task runs an execution's JSON lists at most; the rest through /taskruns
TASKRUN_PAGE = 100  # /taskruns page size by default
TASKRUN_PAGE_MAX = 1000
ENVELOPE = 1024  # bytes kept free for what wraps the task runs ({"results":[...],"cursor":...})

View = TypeVar("View", bound=BaseModel)


def task_run_cursor(taskrun_id: str) -> str:
    return base64.urlsafe_b64encode(taskrun_id.encode()).decode().rstrip("=")


def after(cursor: str) -> str:
    """The task-run id a cursor names; 422 naming the parameter when it is not one."""
    try:
        taskrun_id = base64.b64decode(
            cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True
        ).decode()
        if not taskrun_id:
            raise ValueError("empty")
        return taskrun_id
    except (binascii.Error, ValueError):
        raise common.ApiError(
            422,
            "invalid query parameter 'cursor': not a cursor this API returned",
            extra={
                "errors": [{"name": "cursor", "in": "query", "message": "not a cursor this API returned"}]
            },
        ) from None


def size(value: BaseModel) -> int:
    """Bytes of ``value`` as the response serialiser writes it (ASCII JSON, no spaces)."""
    return len(json.dumps(value.model_dump(mode="json"), separators=(",", ":")))


def fit(
    candidates: Sequence[TaskRun], limit: int, budget: int, view: Callable[[TaskRun], View]
) -> tuple[list[View], str | None]:
    """The first of ``candidates`` (in id order) that fit in ``limit`` and ``budget`` bytes, and the cursor.

    At least one is shown whatever its size (the response limit then decides, with a 400 that
    says so); the page is listed in creation order, the cursor is the id of the last one taken,
    None when every candidate was taken.
    """
    taken: list[tuple[TaskRun, View]] = []
    used = 0
    for tr in candidates[:limit]:
        shown = view(tr)
        cost = size(shown) + 1
        if taken and used + cost > budget:
            break
        taken.append((tr, shown))
        used += cost
    cursor = task_run_cursor(taken[-1][0].id) if taken and len(taken) < len(candidates) else None
    return [shown for _, shown in sorted(taken, key=lambda pair: pair[0].seq)], cursor

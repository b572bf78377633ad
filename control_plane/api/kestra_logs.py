"""``/api/v1/{tenant}/logs``: an execution's log lines as Kestra's clients read them.

Filters are Kestra's (``minLevel``: that level and above, ``taskRunId``, ``taskId``,
``attempt``). The store pages logs with cursors; Kestra's routes read every page, as Kestra's
list endpoint answers with the whole list. An execution whose logs would pass
``SQUALL_MAX_RESPONSE_BYTES`` (a Lambda response is at most 6 MB) is read through Squall's
extension ``GET /api/v1/{tenant}/executions/{executionId}/logs?limit=&cursor=``, a page at
a time, which the whole list's 400 points to. ``follow`` sends server-sent events, gathered
until the execution ends or for ``FOLLOW_SECONDS``, less when the Lambda invocation ends
sooner (API Gateway does not stream responses; see
:func:`control_plane.api.kestra_executions.follow_execution`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from control_plane.api import common, tenants
from control_plane.api.kestra_executions import FOLLOW_POLL_SECONDS, follow_deadline
from control_plane.api.kestra_views import KestraLogEntry, PagedLogs, log_entry
from control_plane.engine.model import Execution, LogLine
from control_plane.levels import Level
from control_plane.runtime import Runtime

__all__ = ["router"]

router = Router()
_TAGS = ["kestra logs"]


def _lines(rt: Runtime, execution_id: str, task_run_id: str | None) -> Iterator[LogLine]:
    cursor: str | None = None
    while True:
        page = rt.store.read_logs(execution_id, taskrun_id=task_run_id, limit=5000, cursor=cursor)
        yield from page.items
        cursor = page.cursor
        if cursor is None:
            return


def _filtered(
    rt: Runtime,
    execution_id: str,
    min_level: Level | None,
    task_run_id: str | None,
    task_id: str | None,
    attempt: int | None,
) -> tuple[Execution, list[LogLine]]:
    meta = rt.store.get_execution_meta(execution_id)  # 404 for an unknown id rather than an empty list
    lines = [
        line
        for line in _lines(rt, execution_id, task_run_id)
        if (min_level is None or line.level.rank >= min_level.rank)
        and (task_id is None or line.task_id == task_id)
        and (attempt is None or line.attempt == attempt)
    ]
    return meta, lines


_MIN_LEVEL = Query(alias="minLevel", description="TRACE, DEBUG, INFO, WARN or ERROR: this level and above")


@router.get(
    "/api/v1/<tenant>/logs/<execution_id>",
    summary="An execution's log lines, in order",
    description="Filters: minLevel, taskRunId, taskId, attempt.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def execution_logs(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    min_level: Annotated[Level | None, _MIN_LEVEL] = None,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
    task_id: Annotated[str | None, Query(alias="taskId")] = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> list[KestraLogEntry]:
    meta, lines = _filtered(rt, execution_id, min_level, task_run_id, task_id, attempt)
    return [log_entry(meta, line) for line in lines]


@router.get(
    "/api/v1/<tenant>/logs/<execution_id>/download",
    summary="An execution's log lines as text, one a line",
    description="Same filters as the JSON listing; each line is `timestamp level message`.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def download_logs(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    min_level: Annotated[Level | None, _MIN_LEVEL] = None,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
    task_id: Annotated[str | None, Query(alias="taskId")] = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> Response[str]:
    meta, lines = _filtered(rt, execution_id, min_level, task_run_id, task_id, attempt)
    entries = [log_entry(meta, line) for line in lines]
    text = "".join(f"{e.timestamp} {e.level} {e.message}\n" for e in entries)
    return Response(status_code=200, content_type="text/plain; charset=utf-8", body=text)


@router.get(
    "/api/v1/<tenant>/logs/<execution_id>/follow",
    summary="Follow an execution's logs (server-sent events), to its end or for 25 seconds",
    description="text/event-stream: one `log` event per line (minLevel filters), sent together when the"
    " execution ends or after 25 seconds (API Gateway does not stream responses); follow again for more.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def follow_logs(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    min_level: Annotated[Level | None, _MIN_LEVEL] = None,
) -> Response[str]:
    import threading
    import time

    deadline = follow_deadline(router.lambda_context)
    pause = threading.Event()  # never set: a wait that is not a busy loop
    events: list[str] = []
    sent = 0
    while True:
        # state first: lines read after the execution is seen ended include its last ones
        ended = rt.store.get_execution_meta(execution_id).state.terminal
        meta, lines = _filtered(rt, execution_id, None, None, None, None)
        for line in lines[sent:]:
            if min_level is None or line.level.rank >= min_level.rank:
                events.append(f"event: log\ndata: {log_entry(meta, line).model_dump_json()}\n\n")
        sent = len(lines)
        if ended or time.monotonic() >= deadline:
            return Response(status_code=200, content_type="text/event-stream", body="".join(events))
        pause.wait(FOLLOW_POLL_SECONDS)


@router.get(
    "/api/v1/<tenant>/executions/<execution_id>/logs",
    summary="An execution's log lines, in order, a page at a time (Squall extension)",
    description="For an execution whose whole log list would pass SQUALL_MAX_RESPONSE_BYTES: pass cursor"
    " back for the next page (null on the last). taskRunId filters in the store; minLevel, taskId and"
    " q (text in the message, any case) filter each page of `limit` lines read, so a page may hold"
    " fewer lines, or none, and still have a cursor.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def execution_log_pages(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    cursor: Annotated[str | None, Query(description="from the previous page")] = None,
    min_level: Annotated[Level | None, _MIN_LEVEL] = None,
    task_id: Annotated[str | None, Query(alias="taskId")] = None,
    q: Annotated[str | None, Query(description="text the message contains, in any case")] = None,
) -> PagedLogs:
    meta = rt.store.get_execution_meta(execution_id)  # 404 for an unknown id rather than an empty page
    with common.cursor_errors(cursor):
        page = rt.store.read_logs(execution_id, taskrun_id=task_run_id, limit=limit, cursor=cursor)
    needle = q.casefold() if q else None
    lines = [
        line
        for line in page.items
        if (min_level is None or line.level.rank >= min_level.rank)
        and (task_id is None or line.task_id == task_id)
        and (needle is None or needle in line.message.casefold())
    ]
    return PagedLogs(results=[log_entry(meta, line) for line in lines], cursor=page.cursor)

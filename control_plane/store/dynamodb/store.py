"""``DynamoDBStore``: the :class:`~control_plane.store.base.StateStore` of the cloud, assembled.

This module owns the clients, builds one part per concern (each holding its own state, see
the package docstring) and answers the protocol by handing each call to its part. Its own
logic is the one decision that spans parts: whether an execution write goes to the document
path or the split path (:class:`~control_plane.store.dynamodb.documents.WriteMode`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.engine.states import State
from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.base import (
    ExecutionSummary,
    FlowRecord,
    JobRecord,
    Page,
    TimerRecord,
    TriggerRecord,
)
from control_plane.store.dynamodb.active import ActiveIndex
from control_plane.store.dynamodb.bigstep import BigSteps
from control_plane.store.dynamodb.conditions import EXISTS, NO_LEASE
from control_plane.store.dynamodb.documents import Documents, WriteMode
from control_plane.store.dynamodb.flows import Flows
from control_plane.store.dynamodb.items import exec_key, s
from control_plane.store.dynamodb.jobs import Jobs
from control_plane.store.dynamodb.logs import Logs
from control_plane.store.dynamodb.memory import Memory
from control_plane.store.dynamodb.offload import Offload
from control_plane.store.dynamodb.pages import list_executions
from control_plane.store.dynamodb.reads import Reads
from control_plane.store.dynamodb.specs import Specs
from control_plane.store.dynamodb.steps import SplitWrites
from control_plane.store.dynamodb.table import Capacity, Refused, Table, boto_client
from control_plane.store.dynamodb.timers import Timers
from control_plane.store.dynamodb.triggers import Triggers
from control_plane.store.dynamodb.values import LoopValues

__all__ = ["DynamoDBStore"]


class DynamoDBStore:
    """A :class:`~control_plane.store.base.StateStore` on one DynamoDB table (and S3 for big outputs).

    ``fault`` is a test seam: it is called with the name of each stage of a big step
    (``journal``, ``lease``, ``jobs``, ``apply``, ``commit``) and may raise to simulate a crash
    there. ``clock`` (epoch seconds) decides when a lease has expired and when TTLs fall.

    ``visit_after`` chooses how documents enter the ``active-executions`` index. None (eager):
    the write that adds an unfinished job sets the keys, 1 WRU to enter and 1 to leave. A
    duration (the watermark visit, ADR 0005 point 5): creates and steps do not set them, and
    :meth:`visit` (the tick) registers the documents created more than ``visit_after`` ago
    that still have unfinished jobs, so a task that ends sooner costs no index write at all.
    It must not exceed the tick's ``submit_grace`` nor ``reconcile_after``: the tick needs a
    job only once it is that old. ``visit_overlap`` is how far back of its watermark a visit
    reads again (index propagation, clock skew); ``visit_limit`` bounds the executions one
    visit reads.
    """

    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        s3_client: Any = None,
        bucket: str | None = None,
        s3_prefix: str = "squall/outputs/",
        offload_bytes: int = 100_000,
        finished_ttl: timedelta | None = timedelta(days=30),
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        fault: Callable[[str], None] | None = None,
        visit_after: timedelta | None = None,
        visit_overlap: timedelta = timedelta(seconds=10),
        visit_limit: int = 1000,
    ) -> None:
        self.table = table
        self.visit_after = visit_after
        self.visit_overlap = visit_overlap
        self.visit_limit = visit_limit
        self.bucket = bucket
        self.s3_prefix = s3_prefix
        self.offload_bytes = offload_bytes
        self.finished_ttl = finished_ttl
        self.lease_seconds = lease_seconds
        self.capacity = Capacity()
        self._clock = clock
        self._lock = threading.Lock()
        self._owned: list[Any] = []
        if client is None:
            client = boto_client("dynamodb", endpoint_url, region)
            self._owned.append(client)
        if bucket is not None and s3_client is None:
            s3_client = boto_client("s3", None, region)
            self._owned.append(s3_client)
        self._table = Table(table, client, self.capacity)
        self._offload = Offload(s3_client, bucket, s3_prefix, offload_bytes, self.capacity)
        memory = Memory()
        values = LoopValues(self._table)
        big = BigSteps(self._table, lease_seconds=lease_seconds, clock=clock, fault=fault)
        specs = Specs(self._table)
        self._active = ActiveIndex(
            self._table,
            memory,
            specs,
            clock=clock,
            visit_after=visit_after,
            visit_overlap=visit_overlap,
            visit_limit=visit_limit,
        )
        self._memory = memory
        self._split = SplitWrites(self._table, big, values, self._offload, self._expiry, memory)
        self._documents = Documents(
            self._table,
            memory,
            self._split,
            self._active,
            specs,
            offload_bytes=offload_bytes,
            expiry=self._expiry,
        )
        self._reads = Reads(self._table, memory, values, self._offload, big)
        self._jobs = Jobs(self._table, memory, big, self._active, specs, self._expiry)
        self._logs = Logs(self._table, memory, self._reads, self._documents, big)
        self._timers = Timers(self._table)
        self._flows = Flows(self._table)
        self._triggers = Triggers(self._table)

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
        self._table.close()
        for client in owned:
            client.close()

    def _expiry(self) -> int | None:
        """The TTL (epoch seconds) of a record finished now, None when nothing expires."""
        if self.finished_ttl is None:
            return None
        return int(self._clock() + self.finished_ttl.total_seconds())

    # ------------------------------------------------------------------ flows

    def save_flow(self, namespace: str, flow_id: str, source: str, *, at: datetime) -> FlowRecord:
        return self._flows.save(namespace, flow_id, source, at=at)

    def get_flow(self, namespace: str, flow_id: str, revision: int | None = None) -> FlowRecord:
        return self._flows.get(namespace, flow_id, revision)

    def list_flows(
        self, namespace: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[FlowRecord]:
        return self._flows.page(namespace, limit=limit, cursor=cursor)

    def flow_revisions(self, namespace: str, flow_id: str) -> list[int]:
        return self._flows.revisions(namespace, flow_id)

    def delete_flow(self, namespace: str, flow_id: str, *, at: datetime) -> None:
        self._flows.delete(namespace, flow_id, at=at)

    # ------------------------------------------------------------------ executions: writes

    def create_execution(
        self,
        execution: Execution,
        *,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        if self._documents.write(execution, None, logs, timers, jobs) is WriteMode.DOCUMENT:
            return
        step = self._split.build(execution, None, execution.taskruns.keys(), logs, timers, jobs)
        self._split.write(step)
        self._memory.remember(execution.id, execution.version, dict(execution.taskruns))

    def save_execution(
        self,
        execution: Execution,
        *,
        expected_version: int,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        match self._documents.write(execution, expected_version, logs, timers, jobs):
            case WriteMode.DOCUMENT:
                return
            case WriteMode.SWITCH:
                self._documents.switch(execution, expected_version, logs, timers, jobs)
                return
            case WriteMode.SPLIT:
                pass
        step = self._split.build(execution, expected_version, execution.changed, logs, timers, jobs)
        self._split.write(step)
        cached = self._memory.snapshot(execution.id)
        if cached is not None and cached[0] == expected_version:
            # What is stored now is the snapshot we had plus exactly the changed task runs.
            taskruns = dict(cached[1])
            for tr_id in execution.changed:
                if tr_id in execution.taskruns:
                    taskruns[tr_id] = execution.taskruns[tr_id]
                else:
                    taskruns.pop(tr_id, None)
            self._memory.remember(execution.id, execution.version, taskruns)

    # ------------------------------------------------------------------ executions: reads

    def get_execution(self, execution_id: str) -> Execution:
        return self._reads.get_execution(execution_id)

    def get_execution_meta(self, execution_id: str) -> Execution:
        return self._reads.get_execution_meta(execution_id)

    def list_taskruns(
        self, execution_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[TaskRun]:
        return self._reads.list_taskruns(execution_id, after=after, limit=limit)

    def list_executions(
        self,
        *,
        namespace: str | None = None,
        flow_id: str | None = None,
        states: Sequence[State] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ExecutionSummary]:
        return list_executions(self._table, namespace, flow_id, states, limit, cursor)

    # ------------------------------------------------------------------ logs

    def append_logs(self, execution_id: str, logs: Sequence[LogLine]) -> None:
        self._logs.append(execution_id, logs)

    def read_logs(
        self,
        execution_id: str,
        *,
        taskrun_id: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[LogLine]:
        return self._logs.read(execution_id, taskrun_id, limit, cursor)

    # ------------------------------------------------------------------ timers

    def due_timers(self, now: datetime, *, limit: int = 100) -> list[TimerRecord]:
        return self._timers.due(now, limit=limit)

    def next_timer(self) -> datetime | None:
        return self._timers.next()

    def delete_timer(self, execution_id: str, key: str) -> None:
        self._timers.delete(execution_id, key)

    # ------------------------------------------------------------------ jobs

    def get_job(self, name: str) -> JobRecord | None:
        return self._jobs.get(name)

    def update_job(self, job: JobRecord, *, expected_version: int) -> JobRecord:
        return self._jobs.update(job, expected_version=expected_version)

    def active_jobs(self, *, runner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        return self._jobs.active(runner=runner, limit=limit)

    def visit(self, now: datetime) -> None:
        self._active.visit(now)

    # ------------------------------------------------------------------ triggers

    def get_trigger(self, key: str) -> TriggerRecord | None:
        return self._triggers.get(key)

    def put_trigger(self, trigger: TriggerRecord, *, expected_version: int) -> TriggerRecord:
        return self._triggers.put(trigger, expected_version=expected_version)

    # ------------------------------------------------------------------ delete

    def delete_execution(self, execution_id: str) -> None:
        """``META`` goes first, in one conditional delete (ended, no big step under way), then
        the rest of the partition through :meth:`purge_execution`, which runs only once
        ``META`` is gone: a crash between the two leaves what the ``sweeper`` finishes when
        the stream reports the removal."""
        ended = [state.value for state in State if state.terminal]
        values = {f":s{i}": s(v) for i, v in enumerate(ended)}
        try:
            self._table.call(
                "DeleteItem",
                TableName=self._table.name,
                Key=exec_key(execution_id),
                ConditionExpression=f"{EXISTS} AND {NO_LEASE} AND #st IN ({', '.join(values)})",
                ExpressionAttributeNames={"#st": "st", "#ls": "ls"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Refused as refused:
            old = refused.response.get("Item")
            if not old:
                raise NotFoundError(f"execution {execution_id} not found") from None
            state = old.get("st", {}).get("S", "?")
            why = "a write is under way" if "ls" in old else f"it is {state}: only an ended one can go"
            raise ConflictError(f"execution {execution_id} cannot be deleted now: {why}") from None
        self.purge_execution(execution_id)

    # ------------------------------------------------------------------ expiry

    def purge_execution(self, execution_id: str) -> int:
        """Delete what is left of an execution whose ``META`` item TTL removed; the item count.

        TTL is written on every item a finishing step touches, which is the whole execution in
        document mode. A split-mode execution also has task runs and log items written earlier
        and never touched again; DynamoDB Streams report the ``META`` removal, and the
        ``sweeper`` handler calls this. Its offloaded outputs go too (no S3 lifecycle rule can
        know when an execution ends). Nothing happens while ``META`` exists: an execution is
        only purged once DynamoDB itself has expired it, so a stray or replayed stream record
        cannot delete a live one. Idempotent: a second call finds nothing.
        """
        if self._table.get(exec_key(execution_id), projection="#v") is not None:
            return 0
        keys = [
            {"PK": item["PK"], "SK": item["SK"]}
            for item in self._table.query(
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": s(f"EXEC#{execution_id}")},
                ProjectionExpression="PK, SK",
            )
        ]
        if self.bucket is not None:
            self._offload.purge(execution_id)
        self._table.batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

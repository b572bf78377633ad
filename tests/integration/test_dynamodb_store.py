"""The store contract against DynamoDB Local (and moto's S3), plus what only DynamoDB has."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

pytest.importorskip("boto3")

from control_plane.engine.actions import Emit, SubmitJob
from control_plane.engine.events import JobStatusChanged, Started
from control_plane.engine.model import Execution, LogLine
from control_plane.engine.planner import new_execution, plan
from control_plane.engine.states import State
from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.flows.loader import parse_flow
from control_plane.flows.models import Flow
from control_plane.store.base import JobPhase, JobRecord, TimerRecord, TriggerRecord
from control_plane.store.codec import rebuild_outputs_index
from control_plane.store.dynamodb import DynamoDBStore
from control_plane.store.dynamodb.items import exec_key, item_size
from control_plane.store.dynamodb.records import doc_jobs
from tests.emulators.dynamodb_local import DynamoDBLocal
from tests.emulators.fixtures import dynamodb_client
from tests.emulators.moto_server import MotoServer
from tests.store_contract import (
    T0,
    StoreContract,
    assert_same_execution,
    at,
    log,
    make_execution,
    make_job,
    make_taskrun,
    with_taskrun,
)

BUCKET = "squall-test-outputs"


@pytest.fixture(scope="module")
def s3_endpoint(moto_server: str) -> str:
    s3 = _s3(moto_server)
    s3.create_bucket(Bucket=BUCKET)
    s3.close()
    return moto_server


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=MotoServer.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def make_store(
    dynamodb_local: DynamoDBLocal, dynamodb_table: tuple[Any, str], s3_endpoint: str
) -> Iterator[Callable[..., DynamoDBStore]]:
    """Opens stores on the test's table, each with its own clients, and closes them at teardown."""
    _, table = dynamodb_table
    opened: list[tuple[DynamoDBStore, list[Any]]] = []

    def factory(**options: Any) -> DynamoDBStore:
        clients = [dynamodb_client(dynamodb_local.endpoint), _s3(s3_endpoint)]
        options.setdefault("bucket", BUCKET)
        options.setdefault("s3_prefix", f"{table}/")
        store = DynamoDBStore(table, client=clients[0], s3_client=clients[1], **options)
        opened.append((store, clients))
        return store

    yield factory
    for store, clients in opened:
        store.close()
        for client in clients:
            client.close()


class TestDynamoDBStore(StoreContract):
    @pytest.fixture
    def store_factory(self, make_store: Callable[..., DynamoDBStore]) -> Callable[[], DynamoDBStore]:
        return make_store


# ---------------------------------------------------------------------------- concurrency, for real


def _fanout_flow(width: int) -> Flow:
    values = ",".join(f'"v{i}"' for i in range(width))
    source = (
        "id: fanout\nnamespace: t.ddb\ntasks:\n"
        "  - id: each\n"
        "    type: io.kestra.plugin.core.flow.ForEach\n"
        f"    values: '[{values}]'\n"
        "    concurrencyLimit: 0\n"
        "    tasks:\n"
        "      - id: work\n"
        "        type: io.kestra.plugin.scripts.shell.Commands\n"
        '        commands: ["echo {{ taskrun.value }}"]\n'
    )
    return parse_flow(source, "fanout.yaml")


def _records(execution: Execution, actions: list[Any], at: datetime) -> tuple[list[LogLine], list[JobRecord]]:
    """The outbox records of ``plan``'s actions, the way the service writes them."""
    logs: list[LogLine] = []
    jobs: list[JobRecord] = []
    for action in actions:
        if isinstance(action, Emit):
            logs.extend(action.logs)
        elif isinstance(action, SubmitJob):
            jobs.append(
                JobRecord(
                    action.job_name,
                    execution.id,
                    action.taskrun_id,
                    action.attempt,
                    "process",
                    JobPhase.SUBMITTING,
                    {"task_type": action.task_type, "properties": dict(action.properties)},
                    updated=at,
                )
            )
    return logs, jobs


@pytest.mark.slow  # 300 conditional writes under contention; 1,000 took 55-70 s on 2 cores
def test_eight_threads_complete_300_parallel_tasks_without_losing_an_update(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    """Each completion reads the whole execution and writes it back under a version condition:
    the cost grows with the square of the width, and 300 tasks already give every worker
    conflicts to lose and retry (printed below)."""
    width, threads = 300, 8
    flow = _fanout_flow(width)
    first = make_store()
    started, actions = plan(flow, new_execution(flow, "fanout-1", at=T0), Started(T0))
    logs, jobs = _records(started, actions, T0)
    submits = [a for a in actions if isinstance(a, SubmitJob)]
    assert len(submits) == width and len(started.taskruns) == width + 1
    first.create_execution(started, logs=logs, jobs=jobs)  # ~600 items: the big-step path
    assert len(first.active_jobs(limit=5000)) == width

    work: queue.SimpleQueue[SubmitJob] = queue.SimpleQueue()
    for action in random.Random(6).sample(submits, len(submits)):
        work.put(action)
    failures: list[BaseException] = []
    wins = [0] * threads
    conflicts = [0] * threads

    def worker(k: int) -> None:
        store = make_store()  # its own instance and its own boto3 client
        cached: Execution | None = None
        try:
            while True:
                try:
                    action = work.get_nowait()
                except queue.Empty:
                    return
                for _ in range(10_000):
                    current = cached if cached is not None else store.get_execution(started.id)
                    at = T0 + timedelta(seconds=1)
                    event = JobStatusChanged(
                        at, action.taskrun_id, action.attempt, "SUCCEEDED", exit_code=0, outputs={"by": k}
                    )
                    new, acts = plan(flow, current, event)
                    assert new.version == current.version + 1, "every completion changes the execution"
                    more_logs, more_jobs = _records(new, acts, at)
                    done = replace(jobs_by_name[action.job_name], phase=JobPhase.DONE, updated=at)
                    try:
                        store.save_execution(
                            new, expected_version=current.version, logs=more_logs, jobs=[done, *more_jobs]
                        )
                    except ConflictError:
                        conflicts[k] += 1
                        cached = None  # someone else wrote first: reload and plan again
                        continue
                    wins[k] += 1
                    cached = new
                    break
                else:
                    raise AssertionError(f"worker {k} never won a write for {action.taskrun_id}")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    jobs_by_name = {job.name: job for job in jobs}
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in pool), "a worker hung"
    assert not failures, failures
    assert sum(wins) == width

    final = first.get_execution(started.id)
    assert final.state is State.SUCCESS
    assert final.version == started.version + width
    children = [tr for tr in final.taskruns.values() if tr.task_id == "work"]
    assert len(children) == width and all(tr.state is State.SUCCESS for tr in children)
    assert {v for tr in children for v in tr.values} == {f"v{i}" for i in range(width)}
    assert set(final.outputs_index["work"]) == {f"v{i}" for i in range(width)}
    assert first.active_jobs(limit=5000) == []
    sample = first.get_job(submits[0].job_name)
    assert sample is not None and sample.phase is JobPhase.DONE
    print(f"wins per worker {wins}, conflicts {conflicts}")
    assert sum(conflicts) > 0, "no contention: the test proves nothing about lost updates"


# ---------------------------------------------------------------------------- big steps: lease + redo journal


class Crash(Exception):
    """Stands for the process dying at a stage of a big step."""


def _crash_at(stage: str) -> Callable[[str], None]:
    def fault(where: str) -> None:
        if where == stage:
            raise Crash(where)

    return fault


def _wide(execution_id: str, width: int = 150) -> Execution:
    return make_execution(execution_id, taskruns=[make_taskrun(f"t{i:03d}", i) for i in range(width)])


def _all_rewritten(ex: Execution) -> Execution:
    taskruns = ex.taskruns
    for tr in ex.taskruns.values():
        taskruns = taskruns.set(tr.id, tr.evolve(outputs={"n": tr.seq}))
    return ex.evolve(
        taskruns=taskruns,
        outputs_index=rebuild_outputs_index(sorted(taskruns.values(), key=lambda t: t.seq)),
        state=State.SUCCESS,
        ended=at(9),
        version=ex.version + 1,
        changed=frozenset(taskruns.keys()),
    )


def _later(make_store: Callable[..., DynamoDBStore]) -> DynamoDBStore:
    """A store whose clock is an hour ahead: every lease taken before now has expired."""
    return make_store(clock=lambda: time.time() + 3600)


@pytest.mark.slow  # crash tests: a big save interrupted at each stage, 5-10 s each
@pytest.mark.parametrize("stage", ["journal", "lease", "jobs", "apply", "commit"])
def test_a_crash_in_a_big_save_is_rolled_forward_or_never_happened(
    make_store: Callable[..., DynamoDBStore], stage: str
) -> None:
    base = _wide("wide")
    make_store().create_execution(base)
    nxt = _all_rewritten(base)
    assert len(nxt.changed) > 100  # the big-step path
    crashing = make_store(fault=_crash_at(stage))
    with pytest.raises(Crash):
        crashing.save_execution(
            nxt, expected_version=1, logs=[log("wide step")], jobs=[make_job("wide-job", "wide")]
        )
    if stage in ("lease", "jobs", "apply"):  # the lease is live: writers back off
        with pytest.raises(ConflictError, match="big step"):
            make_store().save_execution(base.evolve(version=2, changed=frozenset()), expected_version=1)
    reader = _later(make_store)
    got = reader.get_execution("wide")
    if stage == "journal":  # the lease was never taken: nothing happened, the save can be done again
        assert_same_execution(got, base.evolve(changed=frozenset()))
        assert reader.get_job("wide-job") is None
        reader.save_execution(nxt, expected_version=1, jobs=[make_job("wide-job", "wide")])
        assert_same_execution(reader.get_execution("wide"), nxt.evolve(changed=frozenset()))
        return
    assert_same_execution(got, nxt.evolve(changed=frozenset()))  # rolled forward, whole
    assert [x.message for x in reader.read_logs("wide").items] == ["wide step"]
    assert [j.name for j in reader.active_jobs()] == ["wide-job"]
    with pytest.raises(ConflictError):  # the stale version is refused like after any write
        reader.save_execution(nxt, expected_version=1)
    again = _later(make_store).get_execution("wide")
    assert again.version == 2


def test_a_writer_meeting_an_expired_lease_rolls_the_step_forward_first(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    base = _wide("wide")
    make_store().create_execution(base)
    nxt = _all_rewritten(base)
    with pytest.raises(Crash):
        make_store(fault=_crash_at("apply")).save_execution(nxt, expected_version=1)
    writer = _later(make_store)
    with pytest.raises(ConflictError, match="big step"):
        writer.save_execution(base.evolve(version=2, changed=frozenset()), expected_version=1)
    assert_same_execution(make_store().get_execution("wide"), nxt.evolve(changed=frozenset()))


@pytest.mark.slow  # crash tests: a big create interrupted at each stage, 8-12 s each
@pytest.mark.parametrize("stage", ["journal", "lease", "apply"])
def test_a_crash_in_a_big_create_leaves_the_whole_execution_or_none(
    make_store: Callable[..., DynamoDBStore], stage: str
) -> None:
    wide = _wide("new-wide")
    with pytest.raises(Crash):
        make_store(fault=_crash_at(stage)).create_execution(
            wide, timers=[TimerRecord("new-wide", "k", at(1))]
        )
    assert make_store().list_executions().items == []  # a half-made execution is never listed
    reader = _later(make_store)
    if stage == "journal":
        with pytest.raises(NotFoundError):
            reader.get_execution("new-wide")
        return
    assert_same_execution(reader.get_execution("new-wide"), wide.evolve(changed=frozenset()))
    assert [s.id for s in reader.list_executions().items] == ["new-wide"]
    assert reader.due_timers(at(1)) == [TimerRecord("new-wide", "k", at(1))]


def test_a_big_step_whose_job_name_is_taken_is_rolled_back(make_store: Callable[..., DynamoDBStore]) -> None:
    store = make_store()
    store.create_execution(make_execution("owner"), jobs=[make_job("taken", "owner")])
    base = _wide("wide")
    store.create_execution(base)
    with pytest.raises(ConflictError, match="taken"):
        store.save_execution(
            _all_rewritten(base),
            expected_version=1,
            logs=[log("gone")],
            jobs=[make_job("fresh", "wide"), make_job("taken", "wide")],
        )
    fresh = make_store()
    assert_same_execution(fresh.get_execution("wide"), base.evolve(changed=frozenset()))
    assert fresh.get_job("fresh") is None
    owner = fresh.get_job("taken")
    assert owner is not None and owner.execution_id == "owner"
    assert fresh.read_logs("wide").items == []
    fresh.save_execution(_all_rewritten(base), expected_version=1)  # no lease left behind
    assert fresh.get_execution("wide").version == 2


def _some_rewritten(ex: Execution, ids: list[str]) -> Execution:
    """The next version of ``ex`` with the task runs ``ids`` given new outputs (one write)."""
    taskruns = ex.taskruns
    for tr_id in ids:
        taskruns = taskruns.set(tr_id, taskruns[tr_id].evolve(outputs={"v": ex.version + 1}))
    return ex.evolve(
        taskruns=taskruns,
        outputs_index=rebuild_outputs_index(sorted(taskruns.values(), key=lambda t: t.seq)),
        version=ex.version + 1,
        changed=frozenset(ids),
    )


def test_a_big_step_planned_on_a_stale_copy_is_refused_before_its_journal_is_written(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """The tick fires a fan-out timer on its cached copy while ``events`` moved the execution
    on: one read refuses it, instead of a journal written and deleted again (2 x 2 WRU/KB)."""
    client, table = dynamodb_table
    base = _wide("wide")
    stale = make_store()
    stale.create_execution(base)
    make_store().save_execution(_some_rewritten(base, ["t000"]), expected_version=1)
    stale.capacity.reset()
    with pytest.raises(ConflictError, match="at version 2, not 1"):
        stale.save_execution(_all_rewritten(base), expected_version=1, jobs=[make_job("late", "wide")])
    assert stale.capacity.calls == {"GetItem": 1}
    assert stale.capacity.write_units == 0
    assert not [sk for sk in _items(client, table, "wide") if sk.startswith("JOURNAL#")]
    assert stale.get_job("late") is None
    fresh = stale.get_execution("wide")
    stale.save_execution(_all_rewritten(fresh), expected_version=2)  # a current copy goes through
    assert make_store().get_execution("wide").version == 3


def test_a_reader_catches_up_across_a_wide_write_without_reading_every_task_run(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """A fan-out chunk changes too many task runs for META's ring: they are listed in a
    ``CH#`` item of the same transaction, and a reader holding the previous version fetches
    those alone; without the item (expired), or when they are many, it reads everything."""
    client, table = dynamodb_table
    writer = make_store()
    base = _wide("wide", width=240)
    writer.create_execution(base)
    reader = make_store()
    reader.get_execution("wide")  # its snapshot: version 1

    chunk = [f"t{i:03d}" for i in range(26)]  # 129 characters of ids: more than a ring entry holds
    second = _some_rewritten(base, chunk)
    writer.save_execution(second, expected_version=1)
    assert _items(client, table, "wide")["CH#0000000002"]["ids"]["S"] == ",".join(chunk)
    reader.capacity.reset()
    assert_same_execution(reader.get_execution("wide"), second.evolve(changed=frozenset()))
    # META, the CH# item, the 26 task runs, META again to see nothing moved meanwhile
    assert reader.capacity.calls == {"GetItem": 3, "BatchGetItem": 1}

    third = _some_rewritten(second, [f"t{i:03d}" for i in range(100, 126)])
    writer.save_execution(third, expected_version=2)
    client.delete_item(TableName=table, Key=exec_key("wide", "CH#0000000003"))  # expired
    reader.capacity.reset()
    assert_same_execution(reader.get_execution("wide"), third.evolve(changed=frozenset()))
    assert reader.capacity.calls["Query"] == 1

    fourth = _some_rewritten(third, [f"t{i:03d}" for i in range(40, 80)])  # 40 of 240: over 1/8
    writer.save_execution(fourth, expected_version=3)
    reader.capacity.reset()
    assert_same_execution(reader.get_execution("wide"), fourth.evolve(changed=frozenset()))
    assert reader.capacity.calls["Query"] == 1


def _counting_store(
    dynamodb_local: DynamoDBLocal, table: str, returned: list[tuple[int, int]]
) -> DynamoDBStore:
    """A store whose client records each ``Query``'s (items returned, items scanned), as sent back."""
    client = dynamodb_client(dynamodb_local.endpoint)

    def record(parsed: dict[str, Any], **_: Any) -> None:
        returned.append((parsed.get("Count", 0), parsed.get("ScannedCount", 0)))

    client.meta.events.register("after-call.dynamodb.Query", record)
    return DynamoDBStore(table, client=client)


def _deleted(ex: Execution, tr_id: str) -> Execution:
    """The next version of ``ex`` without task run ``tr_id`` (a restart dropping a branch)."""
    taskruns = ex.taskruns.delete(tr_id)
    return ex.evolve(
        taskruns=taskruns,
        outputs_index=rebuild_outputs_index(sorted(taskruns.values(), key=lambda t: t.seq)),
        version=ex.version + 1,
        changed=frozenset([tr_id]),
    )


def test_a_reader_further_behind_than_the_ring_fetches_only_what_was_written_since(
    make_store: Callable[..., DynamoDBStore],
    dynamodb_local: DynamoDBLocal,
    dynamodb_table: tuple[Any, str],
) -> None:
    """The tick's copy beside busy ``events`` containers is many writes old: a ``Query``
    filtered on each task run's write version returns only the task runs changed since (the
    scan is billed whole; the decoding, which at 100,000 task runs took seconds, is not done)."""
    client, table = dynamodb_table
    writer = make_store()
    current = _wide("wide", width=240)
    writer.create_execution(current)
    returned: list[tuple[int, int]] = []
    reader = _counting_store(dynamodb_local, table, returned)
    try:
        reader.get_execution("wide")  # its snapshot: version 1
        for i in range(12):  # 12 writes: the ring holds the last 8
            nxt = _some_rewritten(current, [f"t{i * 3:03d}"])
            writer.save_execution(nxt, expected_version=current.version)
            current = nxt
        returned.clear()
        assert_same_execution(reader.get_execution("wide"), current.evolve(changed=frozenset()))
        assert returned == [(12, 240)]

        # a deletion leaves no item to find: past it, the reader reads everything
        for tr_id in ("t001", "t002"):
            nxt = _some_rewritten(current, [tr_id])
            writer.save_execution(nxt, expected_version=current.version)
            current = nxt
        reader.get_execution("wide")
        nxt = _deleted(current, "t100")
        writer.save_execution(nxt, expected_version=current.version)
        current = nxt
        for i in range(9):
            nxt = _some_rewritten(current, [f"t{i + 200:03d}"])
            writer.save_execution(nxt, expected_version=current.version)
            current = nxt
        returned.clear()
        got = reader.get_execution("wide")
        assert "t100" not in got.taskruns
        assert_same_execution(got, current.evolve(changed=frozenset()))
        assert returned == [(240, 240)]  # META and every task run

        # items written before write versions existed have none: always fetched again
        for i in range(9):
            nxt = _some_rewritten(current, [f"t{i + 210:03d}"])
            writer.save_execution(nxt, expected_version=current.version)
            current = nxt
        client.update_item(TableName=table, Key=exec_key("wide", "TR#t050"), UpdateExpression="REMOVE wv")
        returned.clear()
        assert_same_execution(reader.get_execution("wide"), current.evolve(changed=frozenset()))
        assert returned == [(10, 239)]
    finally:
        reader.close()


def test_the_reload_after_a_refused_step_starts_from_the_meta_the_refusal_returned(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    """Two ``events`` containers end jobs of one execution: the loser's reload needs no read of
    META before catching up (the refusal returned it), only the one that checks nothing moved."""
    base = _wide("wide", width=40)
    winner, loser = make_store(), make_store()
    winner.create_execution(base)
    loser.get_execution("wide")
    won = _some_rewritten(base, ["t001"])
    winner.save_execution(won, expected_version=1)
    with pytest.raises(ConflictError, match="at version 2, not 1"):
        loser.save_execution(_some_rewritten(base, ["t002"]), expected_version=1)
    loser.capacity.reset()
    assert_same_execution(loser.get_execution("wide"), won.evolve(changed=frozenset()))
    assert loser.capacity.calls == {"BatchGetItem": 1, "GetItem": 1}  # t001; META, checked after
    again = _some_rewritten(won, ["t002"])
    loser.save_execution(again, expected_version=2)
    later = _some_rewritten(again, ["t003"])
    winner.get_execution("wide")
    winner.save_execution(later, expected_version=3)
    loser.capacity.reset()  # no refusal since: META is read from the table
    assert_same_execution(loser.get_execution("wide"), later.evolve(changed=frozenset()))
    assert loser.capacity.calls == {"BatchGetItem": 1, "GetItem": 2}


# ---------------------------------------------------------------------------- large outputs


def test_large_outputs_are_offloaded_to_s3_and_read_back(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str], s3_endpoint: str
) -> None:
    client, table = dynamodb_table
    store = make_store(offload_bytes=10_000)
    big = {"rows": [f"ряд {i} 🌧" * 10 for i in range(300)]}
    ex = make_execution(
        "off", taskruns=[make_taskrun("small", 0, outputs={"a": 1}), make_taskrun("large", 1, outputs=big)]
    )
    store.create_execution(ex)
    large = client.get_item(TableName=table, Key={"PK": {"S": "EXEC#off"}, "SK": {"S": "TR#large"}})["Item"]
    small = client.get_item(TableName=table, Key={"PK": {"S": "EXEC#off"}, "SK": {"S": "TR#small"}})["Item"]
    assert "o" in large and "ряд" not in large["b"]["S"] and len(large["b"]["S"]) < 1000
    assert "o" not in small
    s3 = _s3(s3_endpoint)
    stored = s3.get_object(Bucket=BUCKET, Key=large["o"]["S"])["Body"].read()
    s3.close()
    assert large["o"]["S"].startswith(f"{table}/off/large/")
    assert json.loads(stored) == big
    assert store.capacity.calls["s3.PutObject"] == 1
    assert_same_execution(
        make_store(offload_bytes=10_000).get_execution("off"), ex.evolve(changed=frozenset())
    )


def test_an_item_over_400_kb_without_a_bucket_is_refused_and_nothing_is_written(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    store = make_store(bucket=None)
    ex = make_execution("no-bucket", taskruns=[make_taskrun("a", 0)])
    store.create_execution(ex)
    nxt = with_taskrun(ex, make_taskrun("huge", 1, task_id="huge", outputs={"blob": "x" * 500_000}))
    with pytest.raises(StoreError, match="no-bucket, task run huge") as info:
        store.save_execution(nxt, expected_version=1, logs=[log("never")], jobs=[make_job("j", "no-bucket")])
    assert "400 KB" in str(info.value) and "bucket" in str(info.value)
    assert not isinstance(info.value, ConflictError)
    fresh = make_store(bucket=None)
    assert_same_execution(fresh.get_execution("no-bucket"), ex.evolve(changed=frozenset()))
    assert fresh.read_logs("no-bucket").items == [] and fresh.get_job("j") is None


# ---------------------------------------------------------------------------- TTL


def _items(client: Any, table: str, execution_id: str) -> dict[str, dict[str, Any]]:
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"EXEC#{execution_id}"}},
    )
    return {item["SK"]["S"]: item for page in pages for item in page["Items"]}


def test_finishing_sets_the_ttl_on_meta_and_on_the_items_of_that_write(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    client, table = dynamodb_table
    now = 1_800_000_000.0
    store = make_store(clock=lambda: now, finished_ttl=timedelta(days=2))
    expiry = str(int(now + 2 * 86_400))
    ex = make_execution("ttl", taskruns=[make_taskrun("a", 0)])
    store.create_execution(ex, logs=[log("start")], jobs=[make_job("ttl-job", "ttl")])
    assert all("ttl" not in item for item in _items(client, table, "ttl").values())
    done = with_taskrun(ex, make_taskrun("b", 1), state=State.SUCCESS, ended=at(5))
    job = store.get_job("ttl-job")
    assert job is not None
    store.save_execution(
        done, expected_version=1, logs=[log("end")], jobs=[replace(job, phase=JobPhase.DONE, updated=at(5))]
    )
    items = _items(client, table, "ttl")
    stamped = {sk for sk, item in items.items() if item.get("ttl") == {"N": expiry}}
    assert stamped == {"META", "TR#b"} | {sk for sk in items if sk.startswith("LOG#0000000002#")}
    assert "TR#a" not in stamped  # written before the end: swept with the execution (docs/dynamodb.md)
    done_job = client.get_item(TableName=table, Key={"PK": {"S": "JOB#ttl-job"}, "SK": {"S": "JOB"}})["Item"]
    assert done_job["ttl"] == {"N": expiry}
    # leaving the terminal state (a restart) takes the TTL off META again
    store.save_execution(
        done.evolve(state=State.RUNNING, ended=None, version=3, changed=frozenset()), expected_version=2
    )
    assert "ttl" not in _items(client, table, "ttl")["META"]
    forever = make_store(finished_ttl=None)
    forever.create_execution(make_execution("kept", state=State.SUCCESS))
    assert "ttl" not in _items(client, table, "kept")["META"]


def _stream_records(dynamodb_local: DynamoDBLocal, client: Any, table: str) -> list[dict[str, Any]]:
    """Every record of the table's stream so far, as DynamoDB Local's Streams API returns them."""
    import boto3

    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = boto3.client(
        "dynamodbstreams",
        endpoint_url=dynamodb_local.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",  # DynamoDB Local keeps one database per key and region
        aws_secret_access_key="local",
    )
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator)
            records += page["Records"]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    streams.close()
    return records


def test_an_expired_split_execution_is_purged_with_its_offloaded_outputs(
    make_store: Callable[..., DynamoDBStore],
    dynamodb_table: tuple[Any, str],
    dynamodb_local: DynamoDBLocal,
    s3_endpoint: str,
) -> None:
    from control_plane.handlers import container, sweeper
    from control_plane.runtime import load_settings, open_runtime

    client, table = dynamodb_table
    store = make_store(offload_bytes=1_000)
    big = {"blob": "x" * 5_000}
    ex = make_execution("gone", taskruns=[make_taskrun(f"t{i}", i) for i in range(40)])
    store.create_execution(ex, logs=[log("start")])
    done = with_taskrun(ex, make_taskrun("big", 40, outputs=big), state=State.SUCCESS, ended=at(9)).evolve(
        changed=frozenset({"big"})
    )
    store.save_execution(done, expected_version=1, logs=[log("end")])
    store.create_execution(make_execution("kept", taskruns=[make_taskrun(f"k{i}", i) for i in range(40)]))
    kept = _items(client, table, "kept")
    before = _items(client, table, "gone")
    assert len(before) > 40 and any("ttl" not in item for item in before.values())  # TTL misses some
    assert store.purge_execution("gone") == 0  # META is still there: nothing is touched
    assert _items(client, table, "gone") == before

    client.delete_item(TableName=table, Key={"PK": {"S": "EXEC#gone"}, "SK": {"S": "META"}})  # "TTL"
    removal = [r for r in _stream_records(dynamodb_local, client, table) if r["eventName"] == "REMOVE"]
    assert [r["dynamodb"]["Keys"]["PK"]["S"] for r in removal] == ["EXEC#gone"]
    by_caller = {"Records": removal}
    assert list(sweeper.expired_executions(by_caller)) == []  # deleted by a caller: not an expiry
    by_ttl = {
        "Records": [
            {**r, "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}
            for r in removal + removal  # delivered twice
        ]
    }
    assert list(sweeper.expired_executions(by_ttl)) == ["gone"]

    settings = load_settings({}, store="dynamodb", table=table)
    container.install(open_runtime(settings, store=make_store(offload_bytes=1_000)))
    try:
        assert sweeper.handler(by_ttl, None) == {"purged": {"gone": len(before) - 1}}
        assert sweeper.handler(by_ttl, None) == {"purged": {"gone": 0}}  # a redelivery finds nothing
    finally:
        container.install(None)
    assert _items(client, table, "gone") == {}
    s3 = _s3(s3_endpoint)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{table}/gone/").get("KeyCount") == 0
    s3.close()
    assert _items(client, table, "kept") == kept  # another execution is untouched


# ---------------------------------------------------------------------------- cost


def test_capacity_is_counted_and_single_item_writes_skip_transactions(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    """Also the figures of docs/dynamodb.md (run with -s to print them)."""
    flow = parse_flow(
        "id: one\nnamespace: t.ddb\ntasks:\n  - id: sh\n"
        '    type: io.kestra.plugin.scripts.shell.Commands\n    commands: ["echo hi"]\n',
        "one.yaml",
    )
    store = make_store(bucket=None)
    started, actions = plan(flow, new_execution(flow, "cost-1", at=T0), Started(T0))
    logs, jobs = _records(started, actions, T0)
    store.capacity.reset()
    store.create_execution(started, logs=logs, jobs=jobs)
    create = (store.capacity.read_units, store.capacity.write_units, dict(store.capacity.calls))
    assert store.capacity.calls == {"TransactWriteItems": 1}

    reader = make_store(bucket=None)
    loaded = reader.get_execution("cost-1")
    cold_read = (reader.capacity.read_units, dict(reader.capacity.calls))
    reader.capacity.reset()
    reader.get_execution("cost-1")
    warm_read = (reader.capacity.read_units, dict(reader.capacity.calls))

    at1 = T0 + timedelta(seconds=3)
    [submit] = [a for a in actions if isinstance(a, SubmitJob)]
    event = JobStatusChanged(
        at1, submit.taskrun_id, submit.attempt, "SUCCEEDED", exit_code=0, outputs={"x": 1}
    )
    finished, acts = plan(flow, loaded, event)
    more_logs, _ = _records(finished, acts, at1)
    done = replace(jobs[0], phase=JobPhase.DONE, updated=at1)
    reader.capacity.reset()
    reader.save_execution(finished, expected_version=loaded.version, logs=more_logs, jobs=[done])
    step = (reader.capacity.write_units, dict(reader.capacity.calls))
    assert finished.state is State.SUCCESS and reader.capacity.calls == {"TransactWriteItems": 1}

    reader.capacity.reset()
    reader.save_execution(
        finished.evolve(version=finished.version + 1, changed=frozenset()), expected_version=finished.version
    )
    assert reader.capacity.calls == {"UpdateItem": 1}  # one item: no transaction
    assert create[1] > 0 and cold_read[0] > 0 and step[0] > 0
    reader.capacity.reset()
    assert (reader.capacity.read_units, reader.capacity.write_units, sum(reader.capacity.calls.values())) == (
        0,
        0,
        0,
    )
    print(f"\ncreate 1-task: {create}\nget cold: {cold_read}\nget warm: {warm_read}\ncompletion step: {step}")


# ---------------------------------------------------------------------------- errors


def test_a_missing_table_is_a_store_error_naming_the_table_and_the_operation(
    dynamodb_local: DynamoDBLocal,
) -> None:
    client = dynamodb_client(dynamodb_local.endpoint)
    store = DynamoDBStore("no-such-table", client=client)
    try:
        for call, operation in [
            (lambda: store.get_execution("x"), "Query"),
            (lambda: store.get_job("x"), "GetItem"),
            (
                lambda: store.create_execution(make_execution("x", taskruns=[make_taskrun("a", 0)])),
                "PutItem",  # a small execution is one document item
            ),
            (lambda: store.list_executions(), "Query"),
            (lambda: store.put_trigger(TriggerRecord("k", {}), expected_version=0), "PutItem"),
        ]:
            with pytest.raises(StoreError, match="no-such-table") as info:
                call()
            assert operation in str(info.value) and "does not exist" in str(info.value)
            assert type(info.value) is StoreError  # not a conflict, not "not found"
    finally:
        client.close()


def test_an_unreachable_endpoint_is_a_store_error() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    store = DynamoDBStore("squall", client=client)
    with pytest.raises(StoreError, match="squall: GetItem failed"):
        store.get_job("anything")
    client.close()


@pytest.mark.parametrize("cursor", ["not base64 !", "bm90IGpzb24", "WzEsMiwzXQ==", "e30="])
def test_an_invalid_cursor_is_a_store_error(make_store: Callable[..., DynamoDBStore], cursor: str) -> None:
    store = make_store()
    for listing in (
        lambda: store.list_flows(cursor=cursor),
        lambda: store.list_executions(cursor=cursor),
        lambda: store.read_logs("ex", cursor=cursor),
    ):
        with pytest.raises(StoreError, match="cursor"):
            listing()


def test_a_log_line_too_long_for_an_item_is_truncated_with_a_note(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    store = make_store()
    store.create_execution(make_execution("ex"))
    store.append_logs("ex", [log("é" * 400_000), log("after")])
    got = store.read_logs("ex").items
    assert [x.message for x in got][1] == "after"
    assert got[0].message.startswith("é" * 1000) and "truncated by the store" in got[0].message


# ---------------------------------------------------------------------------- document mode (ADR 0005)

_ONE_TASK = (
    "id: one\nnamespace: t.ddb\ntasks:\n  - id: sh\n"
    '    type: io.kestra.plugin.scripts.shell.Commands\n    commands: ["echo hi"]\n'
)


def _doc_id(n: int) -> str:
    """An id like every factory makes (22 of [0-9a-z]): job names carry it."""
    return f"doc{n:019d}"


def test_a_one_task_execution_is_one_item_and_each_step_costs_at_most_three_write_units(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """Also the document-mode figures of docs/dynamodb.md (run with -s to print them)."""
    client, table = dynamodb_table
    flow = parse_flow(_ONE_TASK, "one.yaml")
    store = make_store(bucket=None)
    started, actions = plan(flow, new_execution(flow, _doc_id(1), at=T0), Started(T0))
    logs, jobs = _records(started, actions, T0)
    store.capacity.reset()
    store.create_execution(started, logs=logs, jobs=jobs)
    create = (store.capacity.write_units, dict(store.capacity.calls))
    assert store.capacity.calls == {"PutItem": 1} and 0 < store.capacity.write_units <= 3
    assert list(_items(client, table, _doc_id(1))) == ["META"]  # one item: no task run, job or log item
    assert (
        client.get_item(TableName=table, Key={"PK": {"S": f"JOB#{jobs[0].name}"}, "SK": {"S": "JOB"}}).get(
            "Item"
        )
        is None
    )

    reader = make_store(bucket=None)
    loaded = reader.get_execution(_doc_id(1))
    assert_same_execution(loaded, started.evolve(changed=frozenset()))
    cold = (reader.capacity.read_units, dict(reader.capacity.calls))
    assert reader.get_job(jobs[0].name) == replace(jobs[0], version=1)
    assert reader.active_jobs() == [replace(jobs[0], version=1)]
    submitted = reader.update_job(
        replace(jobs[0], phase=JobPhase.SUBMITTED, handle={"id": "j-1"}, version=1), expected_version=1
    )
    assert reader.get_job(jobs[0].name) == submitted

    at1 = T0 + timedelta(seconds=3)
    [submit] = [a for a in actions if isinstance(a, SubmitJob)]
    event = JobStatusChanged(
        at1, submit.taskrun_id, submit.attempt, "SUCCEEDED", exit_code=0, outputs={"x": 1}
    )
    finished, acts = plan(flow, loaded, event)
    more_logs, _ = _records(finished, acts, at1)
    reader.capacity.reset()
    reader.save_execution(
        finished,
        expected_version=loaded.version,
        logs=more_logs,
        jobs=[replace(submitted, phase=JobPhase.DONE, updated=at1)],
    )
    step = (reader.capacity.write_units, reader.capacity.read_units, dict(reader.capacity.calls))
    assert reader.capacity.calls == {"UpdateItem": 1} and 0 < reader.capacity.write_units <= 3
    assert list(_items(client, table, _doc_id(1))) == ["META"]
    assert_same_execution(make_store().get_execution(_doc_id(1)), finished.evolve(changed=frozenset()))
    done = reader.get_job(jobs[0].name)
    assert done is not None and done.phase is JobPhase.DONE and done.handle == {"id": "j-1"}
    assert done.spec == {}  # a finished job's spec is dropped: it kept the document over 1 KB
    assert reader.capacity.write_units == 2  # the document (under 1 KB) + the active-index removal
    assert reader.active_jobs() == []
    assert [x.message for x in reader.read_logs(_doc_id(1)).items] == [x.message for x in logs + more_logs]
    [summary] = reader.list_executions(states=[State.SUCCESS]).items
    assert summary.id == _doc_id(1)
    meta = _items(client, table, _doc_id(1))["META"]
    assert "ttl" in meta and "aq" not in meta  # TTL on the whole execution; gone from the active index
    print(f"\ndocument: create {create}\nget cold {cold}\ncompletion step {step}")


def test_a_foreach_growing_past_the_threshold_switches_to_split_mode_unchanged(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    client, table = dynamodb_table
    flow = _fanout_flow(60)
    store = make_store()
    ex_id = _doc_id(2)
    current = new_execution(flow, ex_id, at=T0)
    store.create_execution(current)
    assert list(_items(client, table, ex_id)) == ["META"]
    started, actions = plan(flow, current, Started(T0))
    logs, jobs = _records(started, actions, T0)
    assert len(started.taskruns) > 32
    store.save_execution(started, expected_version=current.version, logs=logs, jobs=jobs)
    items = _items(client, table, ex_id)
    assert "md" not in items["META"] and "j" not in items["META"]  # split for good
    assert sum(1 for sk in items if sk.startswith("TR#")) == len(started.taskruns)
    fresh = make_store()
    assert_same_execution(fresh.get_execution(ex_id), started.evolve(changed=frozenset()))
    assert {j.name for j in fresh.active_jobs(limit=500)} == {j.name for j in jobs}
    assert fresh.get_job(jobs[0].name) == replace(jobs[0], version=1)
    assert [x.message for x in fresh.read_logs(ex_id).items] == [x.message for x in logs]
    # the next step is an ordinary split-mode step
    action = next(a for a in actions if isinstance(a, SubmitJob))
    at1 = T0 + timedelta(seconds=1)
    event = JobStatusChanged(at1, action.taskrun_id, action.attempt, "SUCCEEDED", exit_code=0)
    nxt, _ = plan(flow, fresh.get_execution(ex_id), event)
    done = replace(jobs[0], phase=JobPhase.DONE, updated=at1)
    fresh.save_execution(nxt, expected_version=started.version, jobs=[done])
    assert_same_execution(make_store().get_execution(ex_id), nxt.evolve(changed=frozenset()))


def test_a_document_outgrowing_its_inline_logs_switches_and_keeps_their_order(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    store = make_store()
    ex = make_execution(_doc_id(3), taskruns=[make_taskrun("a", 0)])
    store.create_execution(ex, logs=[log("first")])
    noisy = [log(secrets_line(i)) for i in range(200)]  # incompressible: past the inline budget
    store.append_logs(_doc_id(3), noisy)
    store.append_logs(_doc_id(3), [log("last")])
    assert [x.message for x in make_store().read_logs(_doc_id(3)).items] == [
        "first",
        *[x.message for x in noisy],
        "last",
    ]
    assert_same_execution(make_store().get_execution(_doc_id(3)), ex.evolve(changed=frozenset()))


def secrets_line(i: int) -> str:
    return f"{i} " + random.Random(i).randbytes(24).hex()


def _document_with_four_jobs(make_store: Callable[..., DynamoDBStore], ex_id: str) -> list[str]:
    """A one-document execution with four jobs of task run ``a``; their names."""
    names = [f"t-ddb-work-{ex_id}-{chr(ord('a') + i) * 8}" for i in range(4)]
    jobs = [replace(make_job(name, ex_id, taskrun_id="a"), spec={"n": i}) for i, name in enumerate(names)]
    ex = make_execution(ex_id, taskruns=[make_taskrun("a", 0)])
    make_store().create_execution(ex, jobs=jobs)
    return names


def _race(
    make_store: Callable[..., DynamoDBStore],
    rounds: int,
    save: Callable[[DynamoDBStore, int], None],
    updated: list[str],
) -> None:
    """``save(store, i)`` for each round in one thread, beside ``update_job`` of each of
    ``updated`` as often in threads of their own; each store instance its own, as each Lambda
    container's is, and every write retried on a conflict until it lands."""
    failures: list[BaseException] = []

    def retried(store: DynamoDBStore, step: Callable[[int], None]) -> None:
        try:
            for i in range(rounds):
                while True:
                    try:
                        step(i)
                        break
                    except ConflictError:
                        continue
        except BaseException as exc:
            failures.append(exc)

    def save_loop() -> None:
        store = make_store()
        retried(store, lambda i: save(store, i))

    def job_loop(name: str) -> None:
        store = make_store()

        def step(i: int) -> None:
            job = store.get_job(name)
            assert job is not None
            store.update_job(replace(job, handle={"n": i}), expected_version=job.version)

        retried(store, step)

    threads = [threading.Thread(target=save_loop)] + [
        threading.Thread(target=job_loop, args=(n,)) for n in updated
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures


def test_update_job_and_save_execution_on_one_document_never_lose_an_update(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    ex_id = _doc_id(4)
    names = _document_with_four_jobs(make_store, ex_id)
    rounds = 15

    def save(store: DynamoDBStore, i: int) -> None:
        current = store.get_execution(ex_id)
        nxt = with_taskrun(current, make_taskrun("a", 0, outputs={"round": i}))
        store.save_execution(nxt, expected_version=current.version)

    _race(make_store, rounds, save, names)
    final = make_store()
    got = final.get_execution(ex_id)
    assert got.version == 1 + rounds and got.taskruns["a"].outputs == {"round": rounds - 1}
    for name in names:
        job = final.get_job(name)
        assert job is not None and job.version == 1 + rounds and job.handle == {"n": rounds - 1}


def test_steps_changing_one_job_and_update_job_of_the_others_never_lose_an_update(
    make_store: Callable[..., DynamoDBStore],
) -> None:
    """The entries are one blob (``jz``): a step writing one job and an ``update_job`` of
    another both rewrite it, and refuse each other through ``jv`` instead of losing a write."""
    ex_id = _doc_id(6)
    names = _document_with_four_jobs(make_store, ex_id)
    rounds = 10

    def save(store: DynamoDBStore, i: int) -> None:
        current = store.get_execution(ex_id)
        job = store.get_job(names[0])
        assert job is not None
        nxt = with_taskrun(current, make_taskrun("a", 0, outputs={"round": i}))
        moved = replace(job, phase=JobPhase.SUBMITTED, handle={"s": i})
        store.save_execution(nxt, expected_version=current.version, jobs=[moved])

    _race(make_store, rounds, save, names[1:])
    final = make_store()
    got = final.get_execution(ex_id)
    assert got.version == 1 + rounds and got.taskruns["a"].outputs == {"round": rounds - 1}
    first = final.get_job(names[0])
    assert first is not None and first.version == 1 + rounds and first.handle == {"s": rounds - 1}
    for name in names[1:]:
        job = final.get_job(name)
        assert job is not None and job.version == 1 + rounds and job.handle == {"n": rounds - 1}


def test_get_job_of_a_name_without_an_execution_id_is_none(make_store: Callable[..., DynamoDBStore]) -> None:
    store = make_store()
    store.create_execution(make_execution(_doc_id(5)))
    assert store.get_job("plain-name-without-id") is None
    assert store.get_job(f"t-ddb-x-{_doc_id(5)}-aaaaaaaa") is None  # its execution, but no such job
    assert store.get_job(f"t-ddb-x-{_doc_id(9)}-aaaaaaaa") is None  # no such execution


# ---------------------------------------------------------------------------- watermark visit (ADR 0005)

_VISIT = timedelta(seconds=60)


def _start_one(store: DynamoDBStore, ex_id: str, created: datetime) -> JobRecord:
    """Create a running one-task document the way the service does; its one SUBMITTING job."""
    flow = parse_flow(_ONE_TASK, "one.yaml")
    started, actions = plan(flow, new_execution(flow, ex_id, at=created), Started(created))
    logs, jobs = _records(started, actions, created)
    store.create_execution(started, logs=logs, jobs=jobs)
    return jobs[0]


def _finish_one(store: DynamoDBStore, ex_id: str, at: datetime) -> None:
    """The job's terminal event, as the ``events`` Lambda stores it: one step."""
    flow = parse_flow(_ONE_TASK, "one.yaml")
    loaded = store.get_execution(ex_id)
    job = next(j for j in [store.get_job(n) for n in _job_names(store, ex_id)] if j is not None)
    [tr] = loaded.taskruns.values()
    event = JobStatusChanged(at, tr.id, job.attempt, "SUCCEEDED", exit_code=0)
    finished, acts = plan(flow, loaded, event)
    logs, _ = _records(finished, acts, at)
    store.save_execution(
        finished,
        expected_version=loaded.version,
        logs=logs,
        jobs=[replace(job, phase=JobPhase.DONE, updated=at)],
    )


def _job_names(store: DynamoDBStore, ex_id: str) -> list[str]:
    item = store._table.get(exec_key(ex_id))
    assert item is not None
    return list(doc_jobs(item))


def _watermark(client: Any, table: str) -> dict[str, Any]:
    item = client.get_item(TableName=table, Key={"PK": {"S": "VISIT"}, "SK": {"S": "STATE"}})["Item"]
    return {k: next(iter(v.values())) for k, v in item.items() if k in ("w", "c", "v")}


def _us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)) / timedelta(microseconds=1))


class _Hooked:
    """A DynamoDB client that records the keys of each ``BatchGetItem`` and may run ``after_read``
    once, right after one returns: a step landing between a visit's read and its write."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.read_keys: list[list[str]] = []
        self.after_read: Callable[[], None] | None = None

    def batch_get_item(self, **kwargs: Any) -> Any:
        response = self._client.batch_get_item(**kwargs)
        self.read_keys.append([k["PK"]["S"] for r in kwargs["RequestItems"].values() for k in r["Keys"]])
        hook, self.after_read = self.after_read, None
        if hook is not None:
            hook()
        return response

    def keys(self) -> list[str]:
        return [key for call in self.read_keys for key in call]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_with_the_visit_a_short_task_costs_three_write_units_and_no_active_index_write(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    client, table = dynamodb_table
    store = make_store(bucket=None, visit_after=_VISIT)
    store.capacity.reset()
    short = _start_one(store, _doc_id(11), T0)
    assert store.capacity.calls == {"PutItem": 1}
    assert store.capacity.write_units == 2  # the document + the listing entry: no active entry
    assert "aq" not in _items(client, table, _doc_id(11))["META"]
    assert store.active_jobs() == []  # not before a visit: the tick needs no job this young

    completer = make_store(bucket=None, visit_after=_VISIT)
    completer.get_execution(_doc_id(11))
    completer.capacity.reset()
    _finish_one(completer, _doc_id(11), at(3))
    writes = {k: v for k, v in completer.capacity.calls.items() if k not in ("GetItem", "Query")}
    assert writes == {"UpdateItem": 1}  # the step (the reads are this helper's loads)
    # REMOVE of absent active keys writes nothing to the index: the document only, 3 WRU in all.
    assert completer.capacity.units_by_call["UpdateItem"] == completer.capacity.write_units == 1
    assert completer.get_execution(_doc_id(11)).state is State.SUCCESS

    running = _start_one(store, _doc_id(12), T0)
    loaded_before = make_store(bucket=None, visit_after=_VISIT)
    loaded_before.get_execution(_doc_id(12))  # it knows the document without its active keys
    store.visit(at(30))  # created 30 s ago: not yet
    assert store.active_jobs() == []
    store.capacity.reset()
    store.visit(at(61))
    assert store.capacity.calls["UpdateItem"] == 1  # the running one only: the finished one costs no write
    assert [j.name for j in store.active_jobs()] == [running.name]
    assert "aq" not in _items(client, table, _doc_id(11))["META"]
    assert short.name not in [j.name for j in make_store(bucket=None).active_jobs()]

    _finish_one(loaded_before, _doc_id(12), at(90))  # its view predates the registration
    assert "aq" not in _items(client, table, _doc_id(12))["META"]  # left the index all the same
    assert store.active_jobs() == []


def test_a_job_added_after_the_visit_may_have_passed_registers_itself(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """A retry or the next task of a long flow: the visit is past its execution, so the step adds the keys."""
    client, table = dynamodb_table
    store = make_store(bucket=None, visit_after=_VISIT)
    ex_id = _doc_id(13)
    ex = make_execution(ex_id, taskruns=[make_taskrun("a", 0)])
    store.create_execution(ex)
    store.visit(at(120))
    nxt = with_taskrun(ex, make_taskrun("b", 1, state=State.RUNNING))
    job = replace(make_job(f"t-ddb-b-{ex_id}-aaaaaaaa", ex_id, taskrun_id="b"), updated=at(120))
    store.save_execution(nxt, expected_version=ex.version, jobs=[job])
    assert "aq" in _items(client, table, ex_id)["META"]
    assert [j.name for j in make_store(bucket=None).active_jobs()] == [job.name]


def test_the_watermark_advances_and_the_next_visit_reads_only_the_overlap_again(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str], dynamodb_local: DynamoDBLocal
) -> None:
    client, table = dynamodb_table
    hooked = _Hooked(dynamodb_client(dynamodb_local.endpoint))
    visitor = DynamoDBStore(table, client=hooked, visit_after=_VISIT)
    try:
        store = make_store(bucket=None, visit_after=_VISIT)
        _start_one(store, _doc_id(14), at(-30))
        _start_one(store, _doc_id(15), at(0))
        visitor.visit(at(61))
        assert sorted(hooked.keys()) == [f"EXEC#{_doc_id(14)}", f"EXEC#{_doc_id(15)}"]
        assert _watermark(client, table) == {"w": str(_us(at(1))), "v": "1"}
        assert len(store.active_jobs()) == 2
        hooked.read_keys.clear()
        visitor.visit(at(75))  # reads (w - 10 s, now - 60 s]: the one created 9 s before w only
        assert hooked.keys() == [f"EXEC#{_doc_id(15)}"]
        assert _watermark(client, table) == {"w": str(_us(at(15))), "v": "2"}
        hooked.read_keys.clear()
        visitor.visit(at(70))  # an older tick's now: nothing past the watermark, no read
        assert hooked.read_keys == [] and _watermark(client, table)["v"] == "2"
    finally:
        visitor.close()
        hooked._client.close()


def test_bounded_visits_resume_where_they_stopped(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    client, table = dynamodb_table
    store = make_store(bucket=None, visit_after=_VISIT)
    jobs = [_start_one(store, _doc_id(20 + i), at(i)) for i in range(5)]
    visitor = make_store(bucket=None, visit_after=_VISIT, visit_limit=2)
    seen = []
    for _ in range(3):
        visitor.visit(at(200))
        seen.append(sorted(j.name for j in store.active_jobs()))
    assert seen == [sorted(j.name for j in jobs[:n]) for n in (2, 4, 5)]
    assert _watermark(client, table) == {"w": str(_us(at(140))), "v": "3"}  # done: no resume key left


def test_a_visit_racing_the_completing_step_loses_nothing_and_leaves_no_entry(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str], dynamodb_local: DynamoDBLocal
) -> None:
    client, table = dynamodb_table
    store = make_store(bucket=None, visit_after=_VISIT)
    _start_one(store, _doc_id(30), T0)
    hooked = _Hooked(dynamodb_client(dynamodb_local.endpoint))
    visitor = DynamoDBStore(table, client=hooked, visit_after=_VISIT)
    try:
        # The visit reads the document running, then the step completes it, then the visit writes.
        hooked.after_read = lambda: _finish_one(
            make_store(bucket=None, visit_after=_VISIT), _doc_id(30), at(70)
        )
        visitor.capacity.reset()
        visitor.visit(at(80))
        assert visitor.capacity.calls["UpdateItem"] == 1  # refused on the version: nothing written
        assert visitor.capacity.units_by_call["UpdateItem"] == 0
        meta = _items(client, table, _doc_id(30))["META"]
        assert "aq" not in meta and meta["st"]["S"] == State.SUCCESS.value
        assert make_store(bucket=None).get_execution(_doc_id(30)).state is State.SUCCESS
        assert store.active_jobs() == []
    finally:
        visitor.close()
        hooked._client.close()


@pytest.mark.slow  # 40 s: a loop of a thousand values completed one by one
def test_a_wide_loops_values_are_written_once_not_with_every_completion(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """A ForEach keeps its values to start lanes; each child's end rewrites the ForEach's task run."""
    client, table = dynamodb_table
    width = 300
    flow = _fanout_flow(width)
    store = make_store()
    started, actions = plan(flow, new_execution(flow, "wide-values-1", at=T0), Started(T0))
    logs, jobs = _records(started, actions, T0)
    store.create_execution(started, logs=logs, jobs=jobs)
    items = _items(client, table, "wide-values-1")
    side = [sk for sk in items if sk.startswith("TRV#")]
    assert len(side) == 1  # the values, once
    [parent] = [tr for tr in started.taskruns.values() if tr.task_id == "each"]
    stored_parent = items[f"TR#{parent.id}"]
    assert "pv" in stored_parent and '"v299"' not in stored_parent["b"]["S"]

    costs = []
    execution = started
    for i, submit in enumerate([a for a in actions if isinstance(a, SubmitJob)][:5]):
        at = T0 + timedelta(seconds=i + 1)
        event = JobStatusChanged(at, submit.taskrun_id, submit.attempt, "SUCCEEDED", exit_code=0)
        new, acts = plan(flow, execution, event)
        more_logs, _ = _records(new, acts, at)
        store.capacity.reset()
        store.save_execution(new, expected_version=execution.version, logs=more_logs)
        costs.append(store.capacity.write_units)
        execution = new.evolve(changed=frozenset())
    assert max(costs) < 10, costs  # a few small items, not the 300 values again
    assert [sk for sk in _items(client, table, "wide-values-1") if sk.startswith("TRV#")] == side

    fresh = make_store()  # another container: reads the values back through the digest
    assert_same_execution(fresh.get_execution("wide-values-1"), execution)


# ---------------------------------------------------------------------------- job entries' layout


def _three_jobs(ex_id: str) -> list[JobRecord]:
    """Three jobs added by one write (so their specs share a ``TRS#`` item), one with a claim."""
    names = [f"t-ddb-work-{ex_id}-{c * 8}" for c in "abc"]
    jobs = [replace(make_job(name, ex_id, taskrun_id="a"), spec={"n": i}) for i, name in enumerate(names)]
    until = T0 + timedelta(seconds=120)
    jobs[0] = replace(jobs[0], claim="vm:1:abc", claim_until=until, since=T0 + timedelta(microseconds=7))
    return jobs


def test_specs_of_jobs_added_together_are_one_item_and_entries_hold_numbers(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    client, table = dynamodb_table
    ex_id = _doc_id(40)
    jobs = _three_jobs(ex_id)
    store = make_store()
    store.create_execution(make_execution(ex_id, taskruns=[make_taskrun("a", 0)]), jobs=jobs)
    items = _items(client, table, ex_id)
    specs = [sk for sk in items if sk.startswith("TRS#")]
    assert len(specs) == 1
    entries = doc_jobs(items["META"])
    first = entries[jobs[0].name]["M"]
    assert "s" not in first and first["sr"]["S"] == specs[0].removeprefix("TRS#")
    assert [list(first[attr]) for attr in ("u", "sx", "s0")] == [["N"], ["N"], ["N"]]
    fresh = make_store()
    for job in jobs:
        assert fresh.get_job(job.name) == replace(job, version=1)
    assert sorted(fresh.active_jobs(), key=lambda j: j.name) == [replace(j, version=1) for j in jobs]
    # a handle naming its own job and runner is stored without them, and read back whole
    handle = {"name": jobs[1].name, "runner": "process", "id": "42", "data": {"q": "x"}}
    fresh.update_job(replace(jobs[1], phase=JobPhase.SUBMITTED, handle=handle), expected_version=1)
    stored = doc_jobs(_items(client, table, ex_id)["META"])[jobs[1].name]["M"]
    assert "h" not in stored and json.loads(stored["hc"]["S"]) == {"id": "42", "data": {"q": "x"}}
    assert stored["sr"] == first["sr"]  # an update keeps the spec's item
    got = make_store().get_job(jobs[1].name)
    assert got == replace(jobs[1], phase=JobPhase.SUBMITTED, handle=handle, version=2)
    # the switch to split mode reads the specs back into JOB# records
    current = fresh.get_execution(ex_id)
    big = current
    for i in range(40):
        big = with_taskrun(big, make_taskrun(f"x{i}", i + 1))
    fresh.save_execution(
        big.evolve(version=current.version + 1, changed=frozenset(big.taskruns.keys())),
        expected_version=current.version,
    )
    assert not {"j", "jz", "jv"} & set(_items(client, table, ex_id)["META"])
    split = make_store()
    assert split.get_job(jobs[0].name) == replace(jobs[0], version=1)
    assert split.get_job(jobs[1].name) == got


def test_a_document_written_by_the_previous_layout_still_loads_moves_on_and_switches(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """Entries as stored before issue 28 (spec inline, times as text, handles whole) on a
    deployed table: read, updated, ended and converted to split mode like new ones."""
    from control_plane.store.codec import dumps
    from control_plane.store.dynamodb.items import compress

    client, table = dynamodb_table
    ex_id = _doc_id(41)
    jobs = _three_jobs(ex_id)
    jobs[2] = replace(jobs[2], phase=JobPhase.SUBMITTED)
    handle = {"name": jobs[2].name, "runner": "process", "id": "7", "data": {"queue": "q"}}
    jobs[2] = replace(jobs[2], handle=handle)
    ex = make_execution(ex_id, taskruns=[make_taskrun("a", 0)])
    make_store().create_execution(ex)

    def old_entry(job: JobRecord) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "v": {"N": "1"},
            "p": {"S": job.phase.value},
            "t": {"S": job.taskrun_id},
            "a": {"N": str(job.attempt)},
            "r": {"S": job.runner},
            "s": {"B": compress(dumps(job.spec))},
        }
        if job.handle is not None:
            entry["h"] = {"S": dumps(job.handle)}
        if job.updated is not None:
            entry["u"] = {"S": job.updated.isoformat()}
        for attr, value in (("sc", job.claim), ("sx", job.claim_until), ("s0", job.since)):
            if value is not None:
                entry[attr] = {"S": value if isinstance(value, str) else value.isoformat()}
        return {"M": entry}

    client.update_item(
        TableName=table,
        Key=exec_key(ex_id),
        # and in the active index, as then; with its entries in a map, not a blob
        UpdateExpression="SET j = :j, aq = :a, ar = :id REMOVE jz, jv",
        ExpressionAttributeValues={
            ":j": {"M": {job.name: old_entry(job) for job in jobs}},
            ":a": {"S": "A"},
            ":id": {"S": ex_id},
        },
    )
    store = make_store()
    for job in jobs:
        assert store.get_job(job.name) == replace(job, version=1)
    assert sorted(store.active_jobs(), key=lambda j: j.name) == [replace(j, version=1) for j in jobs]
    # update_job on an old entry: times become numbers, the inline spec stays
    unclaimed = replace(jobs[0], phase=JobPhase.SUBMITTED, claim=None, claim_until=None, since=None)
    store.update_job(unclaimed, expected_version=1)
    entry = _items(client, table, ex_id)["META"]["j"]["M"][jobs[0].name]["M"]
    assert "N" in entry["u"] and "s" in entry and "sc" not in entry
    assert make_store().get_job(jobs[0].name) == replace(unclaimed, version=2)
    # a step ending an old entry drops its spec and keeps the handle's id
    current = store.get_execution(ex_id)
    done = replace(jobs[2], phase=JobPhase.DONE, handle=None, updated=T0 + timedelta(seconds=5))
    nxt = with_taskrun(current, make_taskrun("a", 0, outputs={"x": 1}))
    store.save_execution(nxt, expected_version=1, jobs=[done])
    meta = _items(client, table, ex_id)["META"]
    assert "j" not in meta and sorted(doc_jobs(meta)) == sorted(job.name for job in jobs)  # now a blob
    ended = make_store().get_job(jobs[2].name)
    assert ended is not None and ended.phase is JobPhase.DONE and ended.spec == {}
    assert ended.handle == {"name": jobs[2].name, "runner": "process", "id": "7"}
    # an old entry's update after the conversion is written into the blob
    reclaimed = replace(unclaimed, claim="tick-1", claim_until=T0 + timedelta(minutes=2), since=T0)
    make_store().update_job(reclaimed, expected_version=2)
    assert make_store().get_job(jobs[0].name) == replace(reclaimed, version=3)
    # and the switch to split mode carries the old entries' specs into JOB# records
    current = store.get_execution(ex_id)
    big = current
    for i in range(40):
        big = with_taskrun(big, make_taskrun(f"x{i}", i + 1))
    big = big.evolve(version=current.version + 1, changed=frozenset(big.taskruns.keys()))
    store.save_execution(big, expected_version=current.version)
    assert not {"j", "jz", "jv"} & set(_items(client, table, ex_id)["META"])
    split = make_store()
    assert split.get_job(jobs[1].name) == replace(jobs[1], version=1)
    assert split.get_job(jobs[0].name) == replace(reclaimed, version=3)


_TEN_BATCH_TASKS = (
    "id: ten\nnamespace: squall.bench\ntasks:\n  - id: each\n    type: io.kestra.plugin.core.flow.ForEach\n"
    "    concurrencyLimit: 0\n    values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n    tasks:\n      - id: work\n"
    '        type: io.kestra.plugin.scripts.shell.Commands\n        commands: ["echo hi"]\n'
)


def test_each_job_end_of_a_ten_job_foreach_costs_two_write_units(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """Workload (b) of benchmarks/cost.py: the entries of ten open Batch jobs (claimed, as the
    outbox writer leaves them) were ~1,950 bytes as a map and kept the document over 2 KB, so
    each job end cost 3 write units; as one compressed blob the document stays under 2 KB."""
    client, table = dynamodb_table
    flow = parse_flow(_TEN_BATCH_TASKS, "ten.yaml")
    ex_id = _doc_id(60)
    store = make_store(bucket=None)
    started, actions = plan(flow, new_execution(flow, ex_id, at=T0), Started(T0))
    logs, jobs = _records(started, actions, T0)
    until = T0 + timedelta(seconds=120)
    jobs = [
        replace(job, runner="aws-batch", claim="2c9f4e8a1b7d:4711:aws", claim_until=until, since=T0)
        for job in jobs
    ]
    assert len(jobs) == 10
    store.create_execution(started, logs=logs, jobs=jobs)
    sizes = [item_size(_items(client, table, ex_id)["META"])]
    current, units = started, []
    for i, job in enumerate(jobs):
        at = T0 + timedelta(seconds=10 + i)
        event = JobStatusChanged(at, job.taskrun_id, job.attempt, "SUCCEEDED", exit_code=0, outputs={"n": i})
        loaded = store.get_execution(ex_id)
        nxt, acts = plan(flow, loaded, event)
        more, _ = _records(nxt, acts, at)
        handle = {"name": job.name, "runner": "aws-batch", "id": str(uuid.UUID(int=i + 2**120))}
        store.capacity.reset()
        store.save_execution(
            nxt,
            expected_version=loaded.version,
            logs=more,
            jobs=[replace(job, phase=JobPhase.DONE, handle=handle, updated=at)],
        )
        units.append(store.capacity.units_by_call["UpdateItem"])
        sizes.append(item_size(_items(client, table, ex_id)["META"]))
        current = nxt
    assert current.state is State.SUCCESS
    assert max(sizes) < 2048, sizes
    # the last also leaves the active index (a write of that index's entry)
    assert units[:9] == [2.0] * 9 and units[9] <= 3, (units, sizes)
    print(f"\nten-job document sizes {sizes}, units per job end {units}")
    assert all(
        j is not None and j.phase is JobPhase.DONE for j in map(make_store().get_job, (j.name for j in jobs))
    )


def test_a_spec_item_is_read_once_by_a_store_instance_for_all_its_jobs(
    make_store: Callable[..., DynamoDBStore], dynamodb_table: tuple[Any, str]
) -> None:
    """The ``events`` function reading the ends of one step's jobs: the spec item is content
    addressed and never rewritten, so the store keeps what it read (not what it wrote)."""
    ex_id = _doc_id(42)
    jobs = _three_jobs(ex_id)
    writer = make_store()
    writer.create_execution(make_execution(ex_id, taskruns=[make_taskrun("a", 0)]), jobs=jobs)
    writer.capacity.reset()
    assert writer.get_job(jobs[0].name) == replace(jobs[0], version=1)
    assert writer.capacity.units_by_call["GetItem"] == 1.5  # a write puts nothing in the keep
    reader = make_store()
    for job in jobs:
        assert reader.get_job(job.name) == replace(job, version=1)
    # three reads of the document's entries (1 RRU each), one of the spec item (0.5)
    assert reader.capacity.calls["GetItem"] == 4 and reader.capacity.read_units == 3.5
    got = reader.get_job(jobs[1].name)
    assert got is not None
    got.spec["n"] = "changed by a caller"
    assert reader.get_job(jobs[1].name) == replace(jobs[1], version=1)  # each read decodes its own

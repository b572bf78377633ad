"""Fan-out without limits (issue 28 part 3, ADR 0015): one N-item ForEach of AWS Batch tasks.

The control plane runs as Lambda containers would: each **separate worker process** holds its
own runtime (warm between invocations, as a container is) and serves one handler call at a
time. One container serves ``api`` and ``tick``; ``--containers`` - 1 others (2 by default)
serve ``events`` concurrently, each event to whichever is free, as Lambda does; they share
only DynamoDB, so their writes race as deployed ones do. Around each call it measures the wall
time and the process's peak resident memory (``VmHWM``, reset before the call through
``/proc/self/clear_refs``), so an invocation that does O(N) work cannot hide inside a loop.
The store is **DynamoDB Local** (read and write units are its own ``ReturnConsumedCapacity``);
AWS Batch is **moto** in server mode, whose jobs really run their trivial command
(``tests/emulators/moto_batch.py``), in this (the parent) process. The parent plays the
platform: it sends the start through API Gateway's event, invokes the tick as long as jobs
remain to be materialised or submitted (the rate rule, back to back), and hands each job's
terminal state-change event to ``events``.

Printed per size: total time, invocations per function, the longest invocation, the largest
peak RSS, WRU and RRU per task, and, when a 1,000-item run was made alongside, the WRU ratio
N / 1,000. Every task run must end SUCCESS exactly once, or the run fails.

Usage: python benchmarks/fanout.py [--items 100000] [--baseline 1000] [--chunk 200] [--batch-rate 1000]
       python benchmarks/fanout.py --items 100000 --containers 1 --batch-rate 1000   # docs/scaling.md's run
       python benchmarks/fanout.py --items 1000            # a quick run (no baseline)
       python benchmarks/fanout.py --items 1000 --baseline 0 --trace-memory 20   # what stays held (slow)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import wait as connection_wait
from pathlib import Path
from typing import Any

REGION = "us-east-1"


def flow(n: int) -> str:
    """The ForEach: values from an expression (a 100,000-value literal would make a 700 KB flow)."""
    return f"""
id: fanout
namespace: squall.bench
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: "{{{{ range(0, {n - 1}) }}}}"
    tasks:
      - id: work
        type: io.kestra.plugin.scripts.shell.Commands
        taskRunner:
          type: io.kestra.plugin.ee.aws.runner.Batch
        commands:
          - "true"
"""


# ------------------------------------------------------------------ the worker ("the container")


def _hwm_kib() -> int:
    match = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _print_heap(top: int) -> None:
    """What the warm container still holds once the loop ended, by allocating line (``--trace-memory``)."""
    import gc
    import tracemalloc

    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    print(f"  heap held after the run (tracemalloc): {total / 2**20:.1f} MiB; top lines:", file=sys.stderr)
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(
            f"    {stat.size / 2**10:9.0f} KiB {stat.count:8d} blocks  {frame.filename}:{frame.lineno}",
            file=sys.stderr,
        )
    for stat in snapshot.statistics("traceback")[:3]:  # where the biggest holders were allocated from
        print(f"  {stat.size / 2**10:.0f} KiB allocated through:", file=sys.stderr)
        for frame in stat.traceback:
            print(f"      {frame.filename}:{frame.lineno}", file=sys.stderr)


def worker(conn: Any, config: dict[str, Any]) -> None:
    """One warm Lambda container: build the runtime once, then one handler call per request."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ["AWS_LAMBDA_LOG_LEVEL"] = "WARNING"
    if config.get("trace_memory"):
        import tracemalloc

        tracemalloc.start(8)
    import boto3

    from control_plane.handlers import api, events, tick
    from control_plane.handlers.container import install
    from control_plane.runtime import load_settings, open_runtime, visit_after
    from control_plane.service.clock import VirtualClock
    from control_plane.store.dynamodb import DynamoDBStore
    from runners.aws_batch import AwsBatchRunner

    settings = load_settings(
        {},
        store="dynamodb",
        table=config["table"],
        auth="gateway",
        data_dir=config["scratch"],
        storage=f"s3://{config['bucket']}/squall/storage",
        storage_endpoint=config["moto"],
        fanout_chunk=config["chunk"],
        submit_budget=config["submit_budget"],
    )
    ddb = boto3.Session(region_name=REGION).client("dynamodb", endpoint_url=config["ddb"])
    store = DynamoDBStore(config["table"], client=ddb, visit_after=visit_after(settings))
    batch = AwsBatchRunner(
        session_factory=lambda **_: boto3.Session(region_name=REGION),
        endpoint_url=config["moto"],
        region=REGION,
        defaults={"jobQueueArn": config["queue"], "bucket": config["bucket"]},
        **({"rate": config["batch_rate"], "logs_rate": config["batch_rate"]} if config["batch_rate"] else {}),
    )
    clock = VirtualClock(datetime.now(UTC))  # the platform moves it past the tick's grace
    rt = open_runtime(settings, clock=clock, store=store, runners={"aws-batch": batch})
    install(rt)
    handlers = {"api": api.handler, "tick": tick.handler, "events": events.handler}
    while True:
        request = conn.recv()
        if request is None:
            break
        kind, payload = request
        if kind == "capacity":
            cap = store.capacity
            conn.send((cap.write_units, cap.read_units))
            if payload == "reset":
                cap.reset()
            continue
        if kind == "units":
            cap = store.capacity
            conn.send((dict(cap.units_by_call), dict(cap.calls)))
            continue
        if kind == "advance":
            clock.sleep_until(clock.now() + timedelta(seconds=payload))
            conn.send(None)
            continue
        if kind == "check":
            if config.get("trace_memory"):
                _print_heap(config["trace_memory"])
            ex = store.get_execution(payload)
            children = [tr for tr in ex.taskruns.values() if tr.task_id == "work"]
            conn.send(
                {
                    "state": ex.state.value,
                    "states": dict(Counter(tr.state.value for tr in children)),
                    "lanes": len({tr.lane for tr in children}),
                    "children": len(children),
                    "attempts": sum(len(tr.attempts) for tr in children),
                }
            )
            continue
        calls, wru = sum(store.capacity.calls.values()), store.capacity.write_units
        _reset_hwm()
        started = time.perf_counter()
        result = handlers[kind](payload, None)
        elapsed = time.perf_counter() - started
        counted = (sum(store.capacity.calls.values()) - calls, store.capacity.write_units - wru)
        conn.send((result, elapsed, _hwm_kib(), counted))
    rt.close()


# ------------------------------------------------------------------ the platform (this process)


@dataclass
class Figures:
    items: int
    total_s: float = 0.0
    start_s: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    max_s: dict[str, float] = field(default_factory=dict)
    max_rss_mib: dict[str, float] = field(default_factory=dict)
    wru: float = 0.0
    rru: float = 0.0
    waited_s: float = 0.0  # virtual time the platform let pass for the tick's grace
    start_counted: tuple[int, float] = (0, 0.0)  # the api start's DynamoDB calls and WRU
    max_calls: dict[str, int] = field(default_factory=dict)  # DynamoDB calls of one invocation
    units: Counter[str] = field(default_factory=Counter)  # capacity units by DynamoDB operation
    ddb_calls: Counter[str] = field(default_factory=Counter)  # calls by DynamoDB operation

    def lines(self) -> list[str]:
        worst = max(self.max_s, key=lambda k: self.max_s[k])
        fattest = max(self.max_rss_mib, key=lambda k: self.max_rss_mib[k])
        return [
            f"items: {self.items}",
            f"  total time: {self.total_s:.1f} s (plus {self.waited_s:.0f} s of virtual time for the"
            f" tick's grace); the api start answered in {self.start_s:.3f} s",
            "  invocations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.calls.items())),
            f"  max invocation duration: {self.max_s[worst]:.2f} s ({worst}); per function: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(self.max_s.items())),
            f"  max memory (peak RSS of one invocation): {self.max_rss_mib[fattest]:.0f} MiB ({fattest})",
            f"  the api start: {self.start_counted[0]} DynamoDB calls, {self.start_counted[1]:.0f} WRU;"
            " most DynamoDB calls in one invocation: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.max_calls.items())),
            f"  WRU per task: {self.wru / self.items:.2f}; RRU per task: {self.rru / self.items:.2f}",
            "  per task by operation (units, calls): "
            + ", ".join(
                f"{op} {self.units[op] / self.items:.2f}, {self.ddb_calls[op] / self.items:.2f}"
                for op in sorted(self.ddb_calls, key=lambda op: -self.units[op])
            ),
        ]


class Container:
    """One warm Lambda container: a worker process and the call in flight on it, if any."""

    def __init__(self, ctx: Any, config: dict[str, Any], name: str) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker, args=(child, config), name=name)
        self.process.start()
        self.kind: str | None = None  # the handler running now

    def send(self, kind: str, payload: Any) -> None:
        self.kind = kind
        self.conn.send((kind, payload))

    def receive(self) -> Any:
        answer = self.conn.recv()
        self.kind = None
        return answer

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(timeout=60)


class Platform:
    """Emulated AWS around the containers: resources, invocations, Batch state-change events.

    Container 0 serves ``api`` and ``tick`` (each its own function: the tick's rule runs one at
    a time); the others serve ``events``, each event to whichever is free, as Lambda runs one
    function's invocations concurrently, one per container. With ``containers=1`` every call
    is made in turn on one container.
    """

    def __init__(
        self,
        ddb: str,
        moto: str,
        scratch: Path,
        chunk: int,
        submit_budget: int,
        trace_memory: int = 0,
        containers: int = 1,
        batch_rate: float = 0.0,
    ) -> None:
        import boto3

        from control_plane.runtime import load_settings
        from control_plane.store.dynamodb_schema import create_table
        from tests.emulators.moto_batch import BatchIndex, create_queues

        session = boto3.Session(region_name=REGION)
        self.table = f"squall-fanout-{uuid.uuid4().hex[:8]}"
        create_table(session.client("dynamodb", endpoint_url=ddb), self.table, stream=False)
        self.batch = session.client("batch", endpoint_url=moto)
        self.queue = create_queues(session.client("iam", endpoint_url=moto), self.batch, "fanout")["run"]
        bucket = f"squall-fanout-{uuid.uuid4().hex[:8]}"
        session.client("s3", endpoint_url=moto).create_bucket(Bucket=bucket)
        config = {
            "table": self.table,
            "ddb": ddb,
            "moto": moto,
            "queue": self.queue,
            "bucket": bucket,
            "scratch": str(scratch),
            "chunk": chunk,
            "submit_budget": submit_budget,
            "trace_memory": trace_memory,
            "batch_rate": batch_rate,
        }
        ctx = multiprocessing.get_context("spawn")
        self.containers = [Container(ctx, config, f"lambda-container-{i}") for i in range(max(1, containers))]
        self.main = self.containers[0]
        self.event_containers = self.containers[1:] or self.containers
        self.grace = load_settings({}).submit_grace
        self.figures: Figures | None = None
        self.index = BatchIndex().install()
        self.delivered: set[str] = set()
        self.queued: deque[Any] = deque()  # events described, not yet handed to a container
        self.last_counted: tuple[int, float] = (0, 0.0)

    def close(self) -> None:
        self._settle()
        for container in self.containers:
            container.close()
        self.index.remove()

    def _record(self, kind: str, answer: Any) -> Any:
        result, elapsed, hwm, counted = answer
        self.last_counted = counted
        if self.figures is not None:
            f = self.figures
            f.max_calls[kind] = max(f.max_calls.get(kind, 0), counted[0])
            f.calls[kind] += 1
            f.max_s[kind] = max(f.max_s.get(kind, 0.0), elapsed)
            f.max_rss_mib[kind] = max(f.max_rss_mib.get(kind, 0.0), hwm / 1024)
        return result, elapsed

    def invoke(self, kind: str, payload: Any) -> Any:
        """One call on the main container, waited for; events go on being handed out meanwhile."""
        if self.main.kind is not None:  # one container: the event in flight ends first
            self._collect(self.main)
        self.main.send(kind, payload)
        while True:
            self._deliver()
            self._feed()
            waiting = [c for c in self.containers if c.kind is not None]
            ready = connection_wait([c.conn for c in waiting], timeout=0.05)
            answer = None
            for container in waiting:
                if container.conn not in ready:
                    continue
                if container is self.main:
                    answer = container.receive()
                else:
                    self._collect(container)
            if answer is not None:
                return self._record(kind, answer)

    def _collect(self, container: Container) -> None:
        kind = container.kind
        assert kind is not None
        self._record(kind, container.receive())

    def _feed(self) -> None:
        for container in self.event_containers:
            if not self.queued:
                return
            if container.kind is None:
                container.send("events", self.queued.popleft())

    def _pump(self, timeout: float) -> None:
        """Hands queued events to free containers; collects the calls that end within ``timeout``."""
        self._feed()
        busy = [c for c in self.event_containers if c.kind is not None]
        if not busy:  # nothing in flight: the jobs are still running
            time.sleep(timeout)
            return
        for ready in connection_wait([c.conn for c in busy], timeout=timeout):
            self._collect(next(c for c in busy if c.conn is ready))
        self._feed()

    def _settle(self) -> None:
        """Waits for every call in flight, so that a broadcast sees no container busy."""
        for container in self.containers:
            if container.kind is not None:
                self._collect(container)

    def ask(self, kind: str, payload: Any = None) -> Any:
        """A question to every container (capacity, the clock) or to the main one (check)."""
        self._settle()
        if kind == "check":
            self.main.send(kind, payload)
            return self.main.receive()
        answers = []
        for container in self.containers:
            container.send(kind, payload)
            answers.append(container.receive())
        if kind == "capacity":
            return tuple(map(sum, zip(*answers, strict=True)))
        if kind == "units":  # (units, calls) by operation, over every container
            units: Counter[str] = Counter()
            calls: Counter[str] = Counter()
            for by_units, by_calls in answers:
                units.update(by_units)
                calls.update(by_calls)
            return units, calls
        return answers[0]

    def api(self, method: str, path: str, body: str, content_type: str = "application/json") -> Any:
        from benchmarks.cost import http_event

        response, elapsed = self.invoke("api", http_event(method, path, body, content_type))
        if response["statusCode"] != 200:
            raise SystemExit(f"{method} {path}: {response['statusCode']} {response.get('body')}")
        return json.loads(response["body"]), elapsed

    def run(self, n: int) -> Figures:
        self.api("POST", "/api/v1/main/flows", flow(n), "application/x-yaml")
        self.ask("capacity", "reset")
        self.figures = figures = Figures(n)
        began = time.perf_counter()
        body, figures.start_s = self.api("POST", "/api/v1/main/executions/squall.bench/fanout", "{}")
        figures.start_counted = self.last_counted
        execution_id = body["id"]
        submitted = self.index.jobs_in(self.queue)
        idle = 0
        while submitted < n:  # the rate rule, back to back: continuations and handed-over jobs
            self.invoke("tick", {})
            now = self.index.jobs_in(self.queue)
            idle = idle + 1 if now == submitted else 0
            if idle == 1:  # what is left waits for its writer's claim to lapse: a minute later...
                self.ask("advance", self.grace + 1)
                figures.waited_s += self.grace + 1
            elif idle > 1:
                raise SystemExit(f"the ticks submitted nothing: {now} of {n} jobs submitted")
            submitted = now
        deadline = time.monotonic() + max(600.0, n * 0.15)  # 100,000 serial tasks, paced: about 3 hours here
        progress = time.monotonic() + 60
        while len(self.delivered) < n or self.queued or any(c.kind for c in self.event_containers):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.delivered)} of {n} Batch jobs ended")
            if time.monotonic() > progress:  # a long run says where it is, on stderr
                progress = time.monotonic() + 60
                print(
                    f"  {time.perf_counter() - began:7.0f} s: {len(self.delivered)} of {n} jobs ended,"
                    f" {len(self.queued)} events queued",
                    file=sys.stderr,
                    flush=True,
                )
            self._deliver()
            self._pump(0.05)
        self._settle()
        figures.total_s = time.perf_counter() - began
        figures.wru, figures.rru = self.ask("capacity")
        figures.units, figures.ddb_calls = self.ask("units")
        check = self.ask("check", execution_id)
        ok = check["state"] == "SUCCESS" and check["states"] == {"SUCCESS": n}
        if not ok or check["lanes"] != n or check["children"] != n or check["attempts"] != n:
            raise SystemExit(f"not every task run ended SUCCESS exactly once: {check}")
        self.figures = None
        return figures

    def _deliver(self) -> int:
        """Queues each job that ended since for ``events``, as DescribeJobs shows it (the event's detail)."""
        from tests.emulators.moto_batch import batch_state_change

        fresh: list[str] = []
        while self.index.stopped:
            job_id = self.index.stopped.popleft()
            if job_id not in self.delivered:
                fresh.append(job_id)
        for chunk in range(0, len(fresh), 100):
            for job in self.batch.describe_jobs(jobs=fresh[chunk : chunk + 100])["jobs"]:
                self.delivered.add(job["jobId"])
                self.queued.append(batch_state_change(job))
        return len(fresh)


@contextlib.contextmanager
def emulators(scratch: Path) -> Iterator[tuple[str, str]]:
    """DynamoDB Local, and moto in server mode whose Batch jobs really run (in this process).

    The jobs' log lines go straight into moto's CloudWatch Logs backend (``direct_logs``), as
    Batch's log driver writes them, not through three API requests per job: at 100,000 jobs
    those requests were a large share of the emulators' CPU, and none of them is Squall's.
    """
    from tests.emulators.dynamodb_local import DynamoDBLocal
    from tests.emulators.moto_batch import BatchExecutor
    from tests.emulators.moto_server import MotoServer

    with DynamoDBLocal() as ddb, MotoServer() as moto:
        executor = BatchExecutor(moto.endpoint, scratch / "batch", direct_logs=True).start()
        try:
            yield ddb.endpoint, moto.endpoint
        finally:
            executor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000, help="values of the ForEach")
    parser.add_argument("--baseline", type=int, default=1000, help="a run for the WRU ratio (0: none)")
    parser.add_argument("--chunk", type=int, help="SQUALL_FANOUT_CHUNK (default: the runtime's)")
    parser.add_argument("--submit-budget", type=int, help="SQUALL_SUBMIT_BUDGET (default: the runtime's)")
    parser.add_argument(
        "--containers",
        type=int,
        default=3,
        help="warm containers: one for api and tick, the others for events (1: every call in turn)",
    )
    parser.add_argument(
        "--batch-rate",
        type=float,
        default=0.0,
        help="AWS Batch and Logs calls per second one container paces itself to (default: the runner's,"
        " 40 and 20, as AWS's quotas call for); a higher rate shortens a long run but lets a tick submit"
        " more, which changes how steps group: compare runs made at one rate",
    )
    parser.add_argument(
        "--trace-memory",
        type=int,
        default=0,
        metavar="TOP",
        help="trace the worker's allocations (slow) and print the TOP lines holding memory at the end",
    )
    args = parser.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from control_plane.runtime import Settings

    chunk = args.chunk or Settings.model_fields["fanout_chunk"].default
    submits = args.submit_budget or Settings.model_fields["submit_budget"].default
    sizes = [args.items] if not args.baseline or args.baseline >= args.items else [args.baseline, args.items]
    results: list[Figures] = []
    with tempfile.TemporaryDirectory() as scratch, emulators(Path(scratch)) as (ddb, moto):
        for n in sizes:
            platform = Platform(
                ddb,
                moto,
                Path(scratch),
                chunk,
                submits,
                args.trace_memory,
                containers=args.containers,
                batch_rate=args.batch_rate,
            )
            try:
                results.append(platform.run(n))
            finally:
                platform.close()
            print("\n".join(results[-1].lines()), flush=True)
    tick = Settings.model_fields["tick_seconds"].default
    print(
        f"SQUALL_FANOUT_CHUNK {chunk}, SQUALL_SUBMIT_BUDGET {submits}, SQUALL_TICK_SECONDS {tick};"
        f" {args.containers} containers"
        + (f"; AWS Batch and Logs paced at {args.batch_rate:g} calls/s" if args.batch_rate else "")
    )
    if len(results) == 2:
        small, big = results
        ratio = (big.wru / big.items) / (small.wru / small.items)
        print(f"WRU per task ratio {big.items}/{small.items}: x{ratio:.3f} (goal <= 1.1)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

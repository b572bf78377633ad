"""What the serverless control plane costs per task: DynamoDB units and Lambda invocations.

Runs the Lambda handlers in-process against **DynamoDB Local** (started here), with the
DynamoDB store asking for ``ReturnConsumedCapacity=TOTAL`` on every call and adding up what
DynamoDB reports. Jobs run on :class:`SimulatedRunner`: the compute is not what is being
measured, and each job's end reaches the control plane the way it does in AWS, as a push
event handled by the ``events`` Lambda.

1. ``--tasks`` (default 10,000) independent single-task executions: each is started through
   the ``api`` handler (``POST /api/v1/main/executions/{namespace}/{id}``), its job ends, and the
   job's terminal event goes through the ``events`` handler.
2. ``--foreach`` (default 1,000 and 10,000): one execution whose ForEach runs that many shell
   tasks (``concurrencyLimit: 0``, every lane started at once), each completed by an event.
   The ``api`` call submits ``SQUALL_SUBMIT_BUDGET`` (100) jobs itself and hands the rest to
   the ``tick``, which is called here until every job is submitted (``SQUALL_TICK_SUBMITS``,
   500 per tick); those ticks are counted with the loop. The units per task must not grow
   with the size of the loop.

Per task it prints write and read request units, invocations per handler, the median
duration of each handler, and the price of a million tasks at on-demand rates: DynamoDB
$0.625 per million WRU and $0.125 per million RRU; Lambda $0.20 per million requests plus
arm64 at 256 MB ($0.0000133334 per GB-second) times the measured duration. The ``tick``
Lambda (once a minute) is a fixed cost, not a per-task one: it is printed per month.

The store is built as the runtime builds it, with the tick's watermark visit (ADR 0005,
point 5): an execution enters the active index only if it still runs ``visit_after`` (120 s
by default) after its creation, and every task here ends at once, so none does. The
benchmark has no clock and never calls the tick, so the visit's own reads are **not
counted**: per execution about 0.5 RRU (one eventually consistent ``BatchGetItem`` item),
plus the listing-index page (about 40 entries per read unit) and the watermark's read and
write per tick, about $0.07 per million tasks. A task still running after the delay adds
one index put when visited and one delete when it ends (2 WRU), as before.

Durations are measured here, against DynamoDB Local on this machine: real DynamoDB answers
in single-digit milliseconds too, but treat the Lambda figure as an estimate. Units are
exact: they are DynamoDB's own accounting.

The last line is the one to track:

    control plane: $<x> per 1M tasks (goal <= $3; Step Functions Standard >= $25)

Usage: python benchmarks/control_plane_cost.py [--tasks 10000] [--foreach 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# One JSON line per request would drown the figures (powertools in api, the standard library elsewhere).
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_LAMBDA_LOG_LEVEL", "WARN")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import boto3

from control_plane.engine.states import State
from control_plane.handlers import api, events, tick
from control_plane.handlers.container import install, reset
from control_plane.runtime import load_settings, open_runtime, visit_after
from control_plane.store.dynamodb import DynamoDBStore
from control_plane.store.dynamodb_schema import create_table
from runners.testing.simulated import SimulatedRunner
from tests.emulators.dynamodb_local import DynamoDBLocal

WRU_PRICE = 0.625 / 1e6
RRU_PRICE = 0.125 / 1e6
REQUEST_PRICE = 0.20 / 1e6
GB_SECOND_PRICE = 0.0000133334  # arm64
MEMORY_GB = 0.25
TICKS_PER_MONTH = 60 * 24 * 30
GOAL = 3.0

SINGLE = """
id: single
namespace: squall.bench
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - python3 process.py
"""


def foreach_flow(n: int) -> str:
    return f"""
id: loop{n}
namespace: squall.bench
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: {json.dumps(list(range(n)))}
    tasks:
      - id: work
        type: io.kestra.plugin.scripts.shell.Commands
        taskRunner:
          type: io.kestra.plugin.core.runner.Process
        commands:
          - python3 process.py {{{{ taskrun.value }}}}
"""


def http_event(
    method: str, path: str, body: str = "", content_type: str = "application/json"
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the ``api`` Lambda receives it."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "bench.execute-api.local"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "authorizer": {"iam": {"userArn": "arn:aws:iam::123456789012:user/bench"}},
            "domainName": "bench.execute-api.local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


@dataclass
class Meter:
    """Lambda invocations and their durations, per handler."""

    durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def call(self, name: str, handler: Callable[[Any, Any], Any], event: Any) -> Any:
        start = time.perf_counter()
        result = handler(event, None)
        self.durations[name].append(time.perf_counter() - start)
        return result

    def reset(self) -> None:
        self.durations.clear()


@dataclass
class Figures:
    label: str
    tasks: int
    wru: float
    rru: float
    invocations: dict[str, int]
    median_ms: dict[str, float]
    breakdown: dict[str, float] = field(default_factory=dict)

    def dollars_per_million(self) -> tuple[float, float]:
        dynamodb = (self.wru * WRU_PRICE + self.rru * RRU_PRICE) / self.tasks * 1e6
        lam = 0.0
        for name, count in self.invocations.items():
            per_call = REQUEST_PRICE + MEMORY_GB * self.median_ms[name] / 1000 * GB_SECOND_PRICE
            lam += count * per_call
        return dynamodb, lam / self.tasks * 1e6

    def show(self) -> None:
        dynamodb, lam = self.dollars_per_million()
        if self.breakdown:
            parts = ", ".join(
                f"{op} {units / self.tasks:.2f}" for op, units in sorted(self.breakdown.items())
            )
            print(f"{self.label}: units per task by call: {parts}")
        calls = ", ".join(
            f"{name} {count / self.tasks:.2f} ({self.median_ms[name]:.1f} ms)"
            for name, count in self.invocations.items()
        )
        print(
            f"{self.label}: per task {self.wru / self.tasks:.2f} WRU, {self.rru / self.tasks:.2f} RRU; "
            f"invocations per task: {calls}"
        )
        print(
            f"{self.label}: $ per 1M tasks: DynamoDB {dynamodb:.2f} + Lambda {lam:.2f} = {dynamodb + lam:.2f}"
        )


class Bench:
    def __init__(self, endpoint: str, scratch: Path) -> None:
        client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self.table = f"squall-bench-{uuid.uuid4().hex[:8]}"
        create_table(client, self.table)
        settings = load_settings(
            {}, store="dynamodb", table=self.table, auth="gateway", data_dir=str(scratch)
        )
        # As the runtime builds it: running executions enter the active index by the tick's
        # visit, after min(submit_grace, reconcile_after) = 120 s with the default settings.
        self.store = DynamoDBStore(self.table, client=client, visit_after=visit_after(settings))
        self.compute = SimulatedRunner()
        self.rt = open_runtime(settings, store=self.store, runners={"process": self.compute})
        install(self.rt)
        self.meter = Meter()

    def deploy(self, source: str) -> None:
        response = api.handler(http_event("POST", "/api/v1/main/flows", source, "application/x-yaml"), None)
        if response["statusCode"] != 200:
            raise SystemExit(f"deploy failed: {response}")

    def measure(self, label: str, tasks: int, work: Callable[[], None]) -> Figures:
        self.store.capacity.reset()
        self.meter.reset()
        work()
        cap = self.store.capacity
        return Figures(
            label,
            tasks,
            cap.write_units,
            cap.read_units,
            {name: len(d) for name, d in self.meter.durations.items()},
            {name: statistics.median(d) * 1000 for name, d in self.meter.durations.items()},
            dict(getattr(cap, "units_by_call", {})),
        )

    def finish(self, name: str, value: Any = 0) -> None:
        self.compute.finish(
            name, lines=[f"processed {value}", f'::{{"outputs":{{"n":{json.dumps(value)}}}}}::']
        )
        self.meter.call("events", events.handler, self.compute.event(name))

    def singles(self, n: int) -> None:
        seen = len(self.compute.names())
        for i in range(n):
            response = self.meter.call(
                "api", api.handler, http_event("POST", "/api/v1/main/executions/squall.bench/single", "{}")
            )
            if response["statusCode"] != 200:
                raise SystemExit(f"start failed: {response}")
            names = self.compute.names()
            (name,) = names[seen:]
            seen = len(names)
            self.finish(name, i)
        failed = [
            s
            for s in self.store.list_executions(namespace="squall.bench", limit=50).items
            if s.state is not State.SUCCESS
        ]
        if failed:
            raise SystemExit(f"executions did not succeed: {failed[:3]}")

    def loop(self, n: int) -> None:
        seen = len(self.compute.names())
        response = self.meter.call(
            "api", api.handler, http_event("POST", f"/api/v1/main/executions/squall.bench/loop{n}", "{}")
        )
        if response["statusCode"] != 200:
            raise SystemExit(f"start failed: {response}")
        execution_id = json.loads(response["body"])["id"]
        while len(self.compute.names()) - seen < n:  # the jobs the api call handed to the tick
            before = len(self.compute.names())
            self.meter.call("tick", tick.handler, {})
            if len(self.compute.names()) == before:
                raise SystemExit(f"the tick submitted nothing; {before - seen} of {n} jobs submitted")
        names = self.compute.names()[seen:]
        if len(names) != n:
            raise SystemExit(f"expected {n} jobs submitted, got {len(names)}")
        for i, name in enumerate(names):
            self.finish(name, i)
        state = self.store.get_execution(execution_id).state
        if state is not State.SUCCESS:
            raise SystemExit(f"loop{n} ended {state}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--foreach", default="1000,10000", help="loop sizes, comma-separated ('' to skip)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.foreach.split(",") if x.strip()]

    with tempfile.TemporaryDirectory() as scratch, DynamoDBLocal() as ddb:
        bench = Bench(ddb.endpoint, Path(scratch))
        try:
            bench.deploy(SINGLE)
            for n in sizes:
                bench.deploy(foreach_flow(n))
            bench.singles(20)  # warm up: flow caches, connections (not counted)
            single = bench.measure("single-task executions", args.tasks, lambda: bench.singles(args.tasks))
            single.show()
            loops = []
            for n in sizes:
                figures = bench.measure(f"ForEach of {n}", n, lambda n=n: bench.loop(n))
                figures.show()
                loops.append(figures)
            if len(loops) > 1:
                small, big = loops[0], loops[-1]
                growth_w = (big.wru / big.tasks) / (small.wru / small.tasks)
                growth_r = (big.rru / big.tasks) / (small.rru / small.tasks)
                print(
                    f"ForEach growth from {small.tasks} to {big.tasks} tasks: "
                    f"WRU/task x{growth_w:.2f}, RRU/task x{growth_r:.2f} (goal: ~1)"
                )
            tick = REQUEST_PRICE + MEMORY_GB * 0.05 * GB_SECOND_PRICE
            print(f"tick (fixed, idle or not): ~${TICKS_PER_MONTH * tick:.3f} per month at one per minute")
            dynamodb, lam = single.dollars_per_million()
            total = dynamodb + lam
            goal = f"goal <= ${GOAL:g}; Step Functions Standard >= $25"
            print(f"control plane: ${total:.2f} per 1M tasks ({goal})")
        finally:
            reset()


if __name__ == "__main__":
    main()

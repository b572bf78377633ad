"""What the serverless control plane costs per task, every billable request counted.

The Lambda handlers run in-process, as the Terraform module deploys them:

- the module is read with python-hcl2 (``infra/modules/squall``): each function's memory
  size (``variables.tf``, ``functions``), the statuses the Batch rule passes to the
  ``events`` function (``events.tf``), the log level, and the deployment storage (the
  module's bucket, so output files and logs live in S3);
- the store is DynamoDB on **DynamoDB Local** (started here): read and write units are
  DynamoDB's own accounting (``ReturnConsumedCapacity``), except ``TransactWriteItems``,
  which DynamoDB Local under-reports (a transaction of 22 new 400-byte items comes back as 2
  units, not 44): its units are counted here as DynamoDB bills them, 2 per item per started
  KB of the larger of the item before and after the write (:class:`TransactionUnits`);
- every other AWS call a handler makes (S3, Batch, CloudWatch Logs, ...) is counted at the
  botocore client (``BaseClient._make_api_call``) while a handler runs; calls made by the
  emulators themselves are not;
- what invokes a handler is counted at its entry: API Gateway HTTP API requests (``api``),
  EventBridge Scheduler invocations (``schedule``), Batch state-change events (``events``:
  every state change Batch publishes is counted, and only those the module's rule matches
  are delivered);
- Lambda duration is measured per invocation (wall time, rounded up to the millisecond as
  Lambda bills) and priced at the function's memory size, arm64;
- CloudWatch Logs ingestion: the bytes the handlers log (stdout, and the standard-library
  records as Lambda's JSON format writes them), Lambda's own START/REPORT lines, and the
  API's access log line per request.

Workloads: (a) ``--singles`` single-task executions started through the API (its job on a
simulated runner: the compute is not what is measured); (b) ``--scheduled`` executions of
a ForEach of 10 AWS Batch tasks, each started by EventBridge Scheduler; (c) one
``--foreach`` item ForEach of AWS Batch tasks started through the API, the tick submitting
what the API call did not. (b) and (c) use the real AWS Batch runner against moto in server
mode, whose jobs really run their command (tests/emulators/moto_batch.py).

Prices are in ``benchmarks/aws_prices.py`` (us-east-1, on-demand, no free tier) and are
printed with the figures. The tick (once a minute, idle or not) is a fixed cost, printed
per month, not per task.

Usage: python benchmarks/cost.py [--singles 300] [--scheduled 20] [--foreach 10000] [--quick]
       [--markdown docs/cost.md]

The last line is the one to track, for workload (b):

    control plane: $<b> per 1M tasks
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODULE = ROOT / "infra" / "modules" / "squall"


import boto3  # noqa: E402
import hcl2  # noqa: E402
from botocore.client import BaseClient  # noqa: E402
from hcl2 import SerializationOptions  # noqa: E402

from benchmarks.aws_prices import PRICES  # noqa: E402

REGION = "us-east-1"
GOAL = 3.0
TICKS_PER_MONTH = 60 * 24 * 30
# Lambda's platform lines per invocation in JSON format at system level INFO: platform.start
# (~130 bytes) and platform.report (~330 bytes with its metrics). Inferred from the lines
# Lambda documents (docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html);
# not measured here. At system level WARN Lambda writes none of them (only warnings and
# errors of its own: a timeout, an out-of-memory), counted as 0.
PLATFORM_LOG_BYTES = 460
# Batch publishes one "Batch Job State Change" per status a job enters after submission:
# RUNNABLE, STARTING, RUNNING, then SUCCEEDED or FAILED; SUBMITTED too (the job's first
# event), PENDING only with dependencies (none here). Inferred from the Batch user guide
# (batch_cwe_events.html: "each time a job's state changes"), not measured (moto publishes none).
PUBLISHED_STATES = ("SUBMITTED", "RUNNABLE", "STARTING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED")


# ----------------------------------------------------------------------------- the module


@dataclass(frozen=True)
class Module:
    """What the Terraform module deploys that the bill depends on."""

    memory_mb: dict[str, int]
    batch_rule_statuses: tuple[str, ...] | None  # None: the rule does not filter on status
    log_level: str
    system_log_level: str  # Lambda writes its START/END/REPORT lines at INFO and DEBUG only
    access_log_format: dict[str, str]
    submit_seconds: dict[str, float]  # SQUALL_SUBMIT_SECONDS of each function that runs flows


def _hcl(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return dict(hcl2.load(fh, serialization_options=SerializationOptions(strip_string_quotes=True)))


def read_module(directory: Path = MODULE) -> Module:
    """Memory sizes, the Batch rule's statuses, the log level, the API access log format and
    each function's submit seconds (``schedule_submit_seconds`` for ``schedule``)."""
    variables = {
        name: body for block in _hcl(directory / "variables.tf")["variable"] for name, body in block.items()
    }
    functions_type = str(variables["functions"]["type"])
    memory = {
        name: int(mb)
        for name, mb in re.findall(
            r"(\w+) = optional\(object\(\{memory_size = optional\(number, (\d+)\)", functions_type
        )
    }
    if not {"api", "events", "schedule", "tick"} <= memory.keys():
        raise SystemExit(f"cannot read the functions' memory sizes from variables.tf: {memory}")
    statuses: tuple[str, ...] | None = None
    for block in _hcl(directory / "events.tf")["resource"]:
        rule = block.get("aws_cloudwatch_event_rule", {}).get("batch")
        if rule is None:
            continue
        pattern = str(rule["event_pattern"])
        found = re.search(r"status = \[([^\]]*)\]", pattern)
        statuses = tuple(re.findall(r'"(\w+)"', found.group(1))) if found else None
    access: dict[str, str] = {}
    for block in _hcl(directory / "api.tf")["resource"]:
        stage = block.get("aws_apigatewayv2_stage", {})
        for body in stage.values():
            for settings in body.get("access_log_settings", []):
                access = dict(re.findall(r"(\w+) = \"?(\$context[\w.]+)", str(settings["format"])))

    def submit(function: str) -> float:  # the schedule function has its own (issue 28)
        own = variables.get(f"{function}_submit_seconds") or variables["submit_seconds"]
        return float(own["default"])

    return Module(
        memory_mb=memory,
        batch_rule_statuses=statuses,
        log_level=str(variables["application_log_level"]["default"]),
        system_log_level=str(variables["system_log_level"]["default"]),
        access_log_format=access,
        submit_seconds={name: submit(name) for name in ("api", "events", "schedule", "tick")},
    )


# --------------------------------------------------------------------------- the counting

_active = threading.local()


@dataclass
class Meter:
    """Invocations, durations, AWS calls and log bytes, per handler, while handlers run."""

    durations: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # the handler thread's CPU seconds
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    log_bytes: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)  # what invoked: api gateway, scheduler, events
    platform_lines: bool = True  # Lambda's START/END/REPORT lines: system log level INFO or DEBUG

    def reset(self) -> None:
        self.durations.clear()
        self.cpu.clear()
        self.calls.clear()
        self.log_bytes.clear()
        self.entries.clear()

    def call(self, name: str, handler: Callable[[Any, Any], Any], event: Any) -> Any:
        _active.label = name
        _active.excluded = [0.0, 0.0]
        start = time.perf_counter()
        cpu = time.thread_time()
        try:
            result = handler(event, None)
        finally:
            wall_out, cpu_out = _active.excluded
            elapsed = time.perf_counter() - start - wall_out
            cpu = time.thread_time() - cpu - cpu_out
            _active.label = None
        self.durations.setdefault(name, []).append(elapsed)
        self.cpu.setdefault(name, []).append(min(cpu, elapsed))
        if self.platform_lines:
            self.log_bytes[f"{name} (platform lines)"] += PLATFORM_LOG_BYTES
        return result


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Time the benchmark spends inside a handler's call for itself: left out of its duration."""
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        excluded = getattr(_active, "excluded", None)
        if excluded is not None:
            excluded[0] += time.perf_counter() - start
            excluded[1] += time.thread_time() - cpu


class _StdoutMeter(io.TextIOBase):
    """Process stdout: while a handler runs, its lines are what Lambda ships to CloudWatch Logs.

    Installed by main() before any handler module is imported, so every logging handler
    (the api's powertools Logger, whose "squall" logger the other handlers' squall.* records
    reach in this process) writes through it. A handler's bytes are counted, not printed; others pass through.
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.meter: Meter | None = None

    def write(self, text: str) -> int:
        label = getattr(_active, "label", None)
        if label is not None and self.meter is not None:
            self.meter.log_bytes[f"{label} (handler lines)"] += len(text.encode())
            return len(text)
        return int(self.real.write(text))

    def flush(self) -> None:
        self.real.flush()


_STDOUT = _StdoutMeter(sys.stdout)


def meter_stdout() -> None:
    """Put :data:`_STDOUT` in front of stdout: before any handler module is imported."""
    if sys.stdout is not _STDOUT:
        _STDOUT.real = sys.stdout
        sys.stdout = _STDOUT


def install_counting(meter: Meter) -> None:
    """Count every botocore call made on a thread that is running a handler."""
    original = BaseClient._make_api_call

    def counted(client: BaseClient, operation: str, params: Any) -> Any:
        if getattr(_active, "label", None) is not None:
            meter.calls[(client.meta.service_model.service_name, operation)] += 1
        return original(client, operation, params)

    BaseClient._make_api_call = counted  # type: ignore[method-assign]
    # The handlers' squall.* records reach the api's powertools Logger ("squall", writing
    # JSON to stdout) in this process: close to what Lambda's JSON log format writes.
    _STDOUT.meter = meter


class TransactionUnits:
    """Write units of ``TransactWriteItems`` as DynamoDB bills them, put in the response.

    DynamoDB bills a transactional write 2 write units per item per started KB of the larger
    of the item before and after it ("Capacity management for transactions" in the DynamoDB
    developer guide). DynamoDB Local reports far less for a transaction of several items
    (see the module docstring), so the figure it returns is replaced: each item is read
    before and after the call through a second client (those reads are not counted), its
    size computed as the store computes it (``item_size``), and the response's
    ``ConsumedCapacity`` rewritten, so the store's own capacity meter adds the billed units.
    A refused transaction keeps DynamoDB Local's figure (the store counts it as it comes).
    """

    def __init__(self, client: Any, reader: Any) -> None:
        self.reader = reader
        client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", self._before)
        client.meta.events.register("after-call.dynamodb.TransactWriteItems", self._after)

    def _keys(self, params: Any) -> list[tuple[str, dict[str, Any]]]:
        keys = []
        for entry in params.get("TransactItems", []):
            ((kind, body),) = entry.items()
            if kind == "ConditionCheck":
                continue  # a check writes nothing; DynamoDB bills it as a read
            key = body.get("Key") or {k: body["Item"][k] for k in ("PK", "SK")}
            keys.append((body["TableName"], key))
        return keys

    def _size(self, table: str, key: dict[str, Any]) -> int:
        from control_plane.store.dynamodb.items import item_size

        item = self.reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return item_size(item) if item else 0

    def _before(self, params: Any, context: Any, **_: Any) -> None:
        with uncounted():
            keys = self._keys(params)
            context["squall_txn"] = (keys, [self._size(table, key) for table, key in keys])

    def _after(self, parsed: Any, context: Any, **_: Any) -> None:
        keys, before = context.pop("squall_txn", ([], []))
        if not keys or "Error" in parsed:
            return
        with uncounted():
            after = [self._size(table, key) for table, key in keys]
        units: Counter[str] = Counter()
        for (table, _key), old, new in zip(keys, before, after, strict=True):
            units[table] += 2 * max(1, math.ceil(max(old, new) / 1024))
        parsed["ConsumedCapacity"] = [
            {"TableName": table, "CapacityUnits": float(count)} for table, count in units.items()
        ]


# ------------------------------------------------------------------------------ the price


def _price(key: str) -> float:
    return PRICES[key].dollars


S3_WRITE_OPS = {
    "PutObject",
    "CopyObject",
    "ListObjectsV2",
    "ListObjects",
    "CreateMultipartUpload",
    "UploadPart",
}


@dataclass
class Line:
    component: str
    what: str
    per_task: float
    dollars_per_million: float


@dataclass
class Figures:
    label: str
    tasks: int
    lines: list[Line]
    median_ms: dict[str, float]
    max_ms: dict[str, float]
    units_by_call: dict[str, float]
    sizing: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.dollars_per_million for line in self.lines)

    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            out[line.component] = out.get(line.component, 0.0) + line.dollars_per_million
        return out

    def table(self) -> list[str]:
        rows = [
            f"### {self.label} ({self.tasks} tasks)",
            "",
            "| component | what | per task | $ per 1M tasks |",
            "|---|---|---:|---:|",
        ]
        for line in self.lines:
            rows.append(
                f"| {line.component} | {line.what} | {line.per_task:.3f} | {line.dollars_per_million:.3f} |"
            )
        for component, dollars in self.by_component().items():
            rows.append(f"| **{component}** | | | **{dollars:.3f}** |")
        rows.append(f"| **total** | | | **{self.total:.2f}** |")
        rows.append("")
        timing = ", ".join(
            f"{name} median {self.median_ms[name]:.1f} ms, max {self.max_ms[name]:.0f} ms"
            for name in self.median_ms
        )
        rows.append(f"Lambda durations: {timing}.")
        rows += self.sizing
        if self.units_by_call:
            parts = ", ".join(
                f"{op} {units / self.tasks:.2f}" for op, units in sorted(self.units_by_call.items())
            )
            rows.append(f"DynamoDB units per task by call: {parts}.")
        rows.append("")
        return rows


def price(
    label: str,
    tasks: int,
    meter: Meter,
    module: Module,
    wru: float,
    rru: float,
    units_by_call: dict[str, float],
    published: Counter[str],
) -> Figures:
    per = 1e6 / tasks
    lines: list[Line] = []

    def add(component: str, what: str, count: float, unit_price: float) -> None:
        lines.append(Line(component, what, count / tasks, count * unit_price * per))

    for name, durations in sorted(meter.durations.items()):
        mb = module.memory_mb[name]
        gb = mb / 1024
        add("Lambda", f"{name} requests", len(durations), _price("lambda.request"))
        # At the deployed size, the CPU part of each duration scaled to the function's CPU
        # share (see sizing()), rounded up to the millisecond as Lambda bills.
        slow = max(1.0, FULL_VCPU_MB / mb)
        billed = sum(
            math.ceil(((d - c) + c * slow) * 1000) / 1000
            for d, c in zip(durations, meter.cpu[name], strict=True)
        )
        lines.append(
            Line(
                "Lambda",
                f"{name} GB-s ({mb} MB x {billed / len(durations) * 1000:.1f} ms mean, predicted)",
                gb * billed / tasks,
                gb * billed * _price("lambda.gb_second.arm64") * per,
            )
        )
    add("DynamoDB", "write request units", wru, _price("dynamodb.wru"))
    add("DynamoDB", "read request units", rru, _price("dynamodb.rru"))
    if meter.entries["apigateway"]:
        add(
            "API Gateway", "HTTP API requests", meter.entries["apigateway"], _price("apigateway.http_request")
        )
    if meter.entries["scheduler"]:
        add("Scheduler", "schedule invocations", meter.entries["scheduler"], _price("scheduler.invocation"))
    for status, count in sorted(published.items()):
        passed = module.batch_rule_statuses is None or status in module.batch_rule_statuses
        add(
            "EventBridge",
            f"Batch {status} events ({'passed to events' if passed else 'dropped by the rule'})",
            count,
            _price("eventbridge.aws_service_event"),
        )
    for (service, operation), count in sorted(meter.calls.items()):
        if service == "dynamodb":
            continue  # priced by the units above
        if service == "s3":
            key = "s3.put_list" if operation in S3_WRITE_OPS else "s3.get"
            add("S3", operation, count, _price(key))
        elif service == "batch":
            add("Batch", operation, count, _price("batch.api"))
        elif service == "logs":
            add("CloudWatch Logs", f"{operation} (API)", count, _price("logs.api"))
        else:
            add(service, operation, count, 0.0)
            print(f"warning: no price for {service}.{operation}; counted at $0", file=sys.stderr)
    for source, size in sorted(meter.log_bytes.items()):
        add("CloudWatch Logs", f"ingested bytes: {source}", size, _price("logs.ingest_gb") / 1e9)
    return Figures(
        label,
        tasks,
        lines,
        {n: statistics.median(d) * 1000 for n, d in meter.durations.items()},
        {n: max(d) * 1000 for n, d in meter.durations.items()},
        units_by_call,
        sizing(meter, module, tasks),
    )


FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB, a share in proportion below
SIZES_MB = (256, 512, 1024, 1769)


def sizing(meter: Meter, module: Module, tasks: int) -> list[str]:
    """$ per 1M tasks of each function's GB-s at other memory sizes, predicted from measurement.

    The handler thread's CPU time was measured on one full core (about 1,769 MB on Lambda);
    at M MB it takes ``cpu x 1769 / M``; the rest of the duration (waiting on DynamoDB, S3,
    Batch) does not change with memory. A prediction, not a measurement on Lambda.
    """
    rows = ["", "| function | CPU share of duration | " + " | ".join(f"{m} MB" for m in SIZES_MB) + " |"]
    rows.append("|---|---:|" + "---:|" * len(SIZES_MB))
    for name, durations in sorted(meter.durations.items()):
        wall, cpu = sum(durations), sum(meter.cpu[name])
        cells = []
        for mb in SIZES_MB:
            seconds = (wall - cpu) + cpu * max(1.0, FULL_VCPU_MB / mb)
            dollars = mb / 1024 * seconds * _price("lambda.gb_second.arm64") * 1e6 / tasks
            mark = " (deployed)" if mb == module.memory_mb[name] else ""
            cells.append(f"${dollars:.3f}, {seconds / len(durations) * 1000:.0f} ms{mark}")
        rows.append(f"| {name} | {cpu / wall:.0%} | " + " | ".join(cells) + " |")
    rows.append("")
    return rows


# --------------------------------------------------------------------------- the workloads

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


def batch_foreach(flow_id: str, n: int, *, scheduled: bool) -> str:
    trigger = (
        """
triggers:
  - id: every
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "* * * * *"
"""
        if scheduled
        else ""
    )
    return f"""
id: {flow_id}
namespace: squall.bench
{trigger}
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: {json.dumps(list(range(n)))}
    tasks:
      - id: work
        type: io.kestra.plugin.scripts.shell.Commands
        taskRunner:
          type: io.kestra.plugin.ee.aws.runner.Batch
        commands:
          - echo '::{{"outputs":{{"n":{{{{ taskrun.value }}}}}}}}::'
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


def access_log_line(module: Module, event: dict[str, Any], status: int, length: int) -> int:
    """Bytes of the API's access log line for one request (the module's format, filled in)."""
    ctx = event["requestContext"]
    values = {
        "$context.requestId": ctx["requestId"][:20] + "=",
        "$context.identity.sourceIp": "203.0.113.10",
        "$context.identity.caller": "-",
        "$context.requestTime": ctx["time"],
        "$context.httpMethod": ctx["http"]["method"],
        "$context.routeKey": "$default",
        "$context.path": ctx["http"]["path"],
        "$context.status": str(status),
        "$context.responseLength": str(length),
        "$context.responseLatency": "25",
        "$context.integrationErrorMessage": "-",
        "$context.authorizer.error": "-",
    }
    line = {key: values.get(var, "-") for key, var in module.access_log_format.items()}
    return len(json.dumps(line)) + 1


class Bench:
    def __init__(self, ddb_endpoint: str, moto_endpoint: str, scratch: Path, module: Module) -> None:
        from control_plane.handlers.container import install
        from control_plane.runtime import load_settings, open_runtime, visit_after
        from control_plane.service.clock import VirtualClock
        from control_plane.store.dynamodb import DynamoDBStore
        from control_plane.store.dynamodb_schema import create_table
        from runners.aws_batch import AwsBatchRunner
        from runners.testing.simulated import SimulatedRunner
        from tests.emulators.moto_batch import create_queues

        self.module = module
        self.moto = moto_endpoint
        self.meter = Meter(platform_lines=module.system_log_level in ("INFO", "DEBUG"))
        install_counting(self.meter)
        session = boto3.Session(region_name=REGION)
        ddb = session.client("dynamodb", endpoint_url=ddb_endpoint)
        TransactionUnits(ddb, session.client("dynamodb", endpoint_url=ddb_endpoint))
        self.table = f"squall-bench-{uuid.uuid4().hex[:8]}"
        create_table(ddb, self.table)
        self.batch = session.client("batch", endpoint_url=moto_endpoint)
        iam = session.client("iam", endpoint_url=moto_endpoint)
        self.queue = create_queues(iam, self.batch, "bench")["run"]
        self.bucket = f"squall-bench-{uuid.uuid4().hex[:8]}"
        session.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=self.bucket)
        os.environ["AWS_LAMBDA_LOG_LEVEL"] = module.log_level
        os.environ["POWERTOOLS_LOG_LEVEL"] = module.log_level
        settings = load_settings(
            {},
            store="dynamodb",
            table=self.table,
            auth="gateway",
            data_dir=str(scratch),
            storage=f"s3://{self.bucket}/squall/storage",  # the module's default: its own bucket
            storage_endpoint=moto_endpoint,
        )
        self.store = DynamoDBStore(self.table, client=ddb, visit_after=visit_after(settings))
        self.compute = SimulatedRunner()
        self.aws_batch = AwsBatchRunner(
            session_factory=lambda **_: boto3.Session(region_name=REGION),
            endpoint_url=moto_endpoint,
            region=REGION,
            defaults={"jobQueueArn": self.queue, "bucket": self.bucket},
        )
        self.clock = VirtualClock(datetime.now(UTC))
        self.rt = open_runtime(
            settings,
            clock=self.clock,
            store=self.store,
            runners={"process": self.compute, "aws-batch": self.aws_batch},
        )
        install(self.rt)
        self.published: Counter[str] = Counter()
        self._delivered: set[str] = set()

    # ------------------------------------------------------------------ entry points

    def call(self, name: str, handler: Callable[[Any, Any], Any], event: Any) -> Any:
        """One invocation of function ``name``, with that function's settings: one runtime plays
        every function here, and the module gives ``schedule`` its own submit seconds."""
        self.rt.service.driver.submit_within = self.module.submit_seconds[name]
        return self.meter.call(name, handler, event)

    def api(self, method: str, path: str, body: str = "", content_type: str = "application/json") -> Any:
        from control_plane.handlers import api

        event = http_event(method, path, body, content_type)
        self.meter.entries["apigateway"] += 1
        response = self.call("api", api.handler, event)
        self.meter.log_bytes["api (access log)"] += access_log_line(
            self.module, event, response["statusCode"], len(response.get("body") or "")
        )
        return response

    def schedule(self, flow_id: str) -> list[str]:
        from control_plane.handlers import schedule

        self.clock.sleep_until(self.clock.now() + timedelta(minutes=1))
        self.meter.entries["scheduler"] += 1
        payload = {"namespace": "squall.bench", "flowId": flow_id, "triggerId": "every"}
        result = self.call("schedule", schedule.handler, payload)
        return list(result.get("started", []))

    def tick(self) -> None:
        from control_plane.handlers import tick

        self.call("tick", tick.handler, {})

    def deliver_batch_events(self, expected: int, deadline_s: float = 600.0) -> None:
        """Wait for Batch's jobs to end; hand each end to ``events`` if the rule passes it.

        Every job contributes the state-change events Batch would publish (counted in
        ``published``); only the statuses the module's rule matches invoke the function.
        """
        from control_plane.handlers import events
        from tests.emulators.moto_batch import batch_state_change

        rule = self.module.batch_rule_statuses
        deadline = time.monotonic() + deadline_s
        while len(self._delivered) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self._delivered)} of {expected} Batch jobs ended")
            ended = []
            for status in TERMINAL:
                pages = self.batch.get_paginator("list_jobs").paginate(jobQueue=self.queue, jobStatus=status)
                ended += [j["jobId"] for page in pages for j in page["jobSummaryList"]]
            fresh = [job_id for job_id in ended if job_id not in self._delivered]
            if not fresh:
                time.sleep(0.05)
                continue
            for chunk in range(0, len(fresh), 100):
                for job in self.batch.describe_jobs(jobs=fresh[chunk : chunk + 100])["jobs"]:
                    self._delivered.add(job["jobId"])
                    for status in (*PUBLISHED_STATES, job["status"]):
                        self.published[status] += 1
                        if rule is not None and status not in rule:
                            continue
                        self.call("events", events.handler, batch_state_change({**job, "status": status}))

    # ------------------------------------------------------------------ workloads

    def deploy(self, source: str) -> None:
        response = self.api("POST", "/api/v1/main/flows", source, "application/x-yaml")
        if response["statusCode"] != 200:
            raise SystemExit(f"deploy failed: {response}")

    def singles(self, n: int) -> None:
        seen = len(self.compute.names())
        for i in range(n):
            response = self.api("POST", "/api/v1/main/executions/squall.bench/single", "{}")
            if response["statusCode"] != 200:
                raise SystemExit(f"start failed: {response}")
            names = self.compute.names()
            (name,) = names[seen:]
            seen = len(names)
            self.compute.finish(name, lines=[f"processed {i}", f'::{{"outputs":{{"n":{i}}}}}::'])
            from control_plane.handlers import events

            self.call("events", events.handler, self.compute.event(name))

    def scheduled(self, n: int, flow_id: str, width: int) -> None:
        started: list[str] = []
        for _ in range(n):
            started += self.schedule(flow_id)
        if len(started) != n:
            raise SystemExit(f"expected {n} scheduled executions, got {len(started)}")
        target = len(self._delivered) + n * width
        self._submit_owed(target)
        self.deliver_batch_events(target)
        self.check(started)

    def loop(self, flow_id: str, n: int) -> None:
        response = self.api("POST", f"/api/v1/main/executions/squall.bench/{flow_id}", "{}")
        if response["statusCode"] != 200:
            raise SystemExit(f"start failed: {response}")
        execution_id = json.loads(response["body"])["id"]
        target = len(self._delivered) + n
        self._submit_owed(target)
        self.deliver_batch_events(target)
        self.check([execution_id])

    def _submit_owed(self, target: int) -> None:
        """Tick until ``target`` jobs are submitted: those a step left to the tick (over its submit
        budget, or out of its ``SQUALL_SUBMIT_SECONDS``: ADR 0015), as the deployed tick would.
        Their submits, handle writes and tick invocations are counted like any other."""
        submitted = self._submitted()
        while submitted < target:
            self.tick()
            now = self._submitted()
            if now == submitted:
                raise SystemExit(f"the tick submitted nothing; {now} of {target} jobs submitted")
            submitted = now

    def _submitted(self) -> int:
        total = 0
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", *TERMINAL):
            pages = self.batch.get_paginator("list_jobs").paginate(jobQueue=self.queue, jobStatus=status)
            total += sum(len(page["jobSummaryList"]) for page in pages)
        return total

    def check(self, execution_ids: list[str]) -> None:
        from control_plane.engine.states import State

        for execution_id in execution_ids:
            state = self.store.get_execution(execution_id).state
            if state is not State.SUCCESS:
                raise SystemExit(f"execution {execution_id} ended {state}")

    def measure(self, label: str, tasks: int, work: Callable[[], None]) -> Figures:
        self.store.capacity.reset()
        self.meter.reset()
        self.published.clear()
        work()
        cap = self.store.capacity
        return price(
            label,
            tasks,
            self.meter,
            self.module,
            cap.write_units,
            cap.read_units,
            dict(cap.units_by_call),
            Counter(self.published),
        )


@contextlib.contextmanager
def emulators(scratch: Path) -> Iterator[tuple[str, str]]:
    """DynamoDB Local, and moto in server mode with its Batch jobs really run (this process)."""
    from tests.emulators.dynamodb_local import DynamoDBLocal
    from tests.emulators.moto_batch import BatchExecutor
    from tests.emulators.moto_server import MotoServer

    with DynamoDBLocal() as ddb, MotoServer() as moto:
        executor = BatchExecutor(moto.endpoint, scratch / "batch").start()
        try:
            yield ddb.endpoint, moto.endpoint
        finally:
            executor.stop()


def prices_table() -> list[str]:
    rows = ["| price | $ | unit | source (read) |", "|---|---:|---|---|"]
    for key, p in PRICES.items():
        note = f"; inferred: {p.inferred}" if p.inferred else ""
        rows.append(f"| {key} | {p.dollars:.10g} | {p.unit} | {p.source} ({p.read}{note}) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--singles", type=int, default=300, help="workload (a): single-task executions")
    parser.add_argument(
        "--scheduled", type=int, default=20, help="workload (b): scheduled executions of 10 tasks"
    )
    parser.add_argument("--foreach", type=int, default=10_000, help="workload (c): items of one ForEach")
    parser.add_argument("--quick", action="store_true", help="workload (c) of 200 items, (a) of 100")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")  # the emulators take any
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    meter_stdout()
    if args.quick:
        args.foreach = min(args.foreach, 200)
        args.singles = min(args.singles, 100)
    module = read_module()
    width = 10
    out: list[str] = []

    def say(lines: list[str]) -> None:
        out.extend(lines)
        print("\n".join(lines), flush=True)

    with tempfile.TemporaryDirectory() as scratch, emulators(Path(scratch)) as (ddb, moto):
        from control_plane.handlers.container import reset

        bench = Bench(ddb, moto, Path(scratch), module)
        try:
            bench.deploy(SINGLE)
            bench.deploy(batch_foreach("scheduled", width, scheduled=True))
            bench.deploy(batch_foreach("loop", args.foreach, scheduled=False))
            bench.schedule("scheduled")  # a new trigger starts counting from now: no fire
            bench.singles(10)  # warm up: flow caches, connections (not counted)
            say(
                [
                    f"module: memory {module.memory_mb} MB; Batch rule statuses "
                    f"{list(module.batch_rule_statuses or ['(all)'])}; log level {module.log_level}, "
                    f"system log level {module.system_log_level}; submit seconds {module.submit_seconds}",
                    "",
                ]
            )
            single = bench.measure(
                "(a) single-task executions via the API", args.singles, lambda: bench.singles(args.singles)
            )
            say(single.table())
            scheduled = bench.measure(
                f"(b) scheduled executions of {width} AWS Batch tasks",
                args.scheduled * width,
                lambda: bench.scheduled(args.scheduled, "scheduled", width),
            )
            say(scheduled.table())
            if args.foreach:
                loop = bench.measure(
                    f"(c) one ForEach of {args.foreach} AWS Batch tasks via the API",
                    args.foreach,
                    lambda: bench.loop("loop", args.foreach),
                )
                say(loop.table())
            tick = _price("lambda.request") + module.memory_mb["tick"] / 1024 * 0.05 * _price(
                "lambda.gb_second.arm64"
            )
            say(
                [
                    "### Prices used",
                    "",
                    *prices_table(),
                    "",
                    f"tick (fixed, idle or not): ~${TICKS_PER_MONTH * tick:.3f} per month at one per minute "
                    "(50 ms assumed), plus its platform log lines",
                    "",
                ]
            )
        finally:
            reset()
    last = f"control plane: ${scheduled.total:.2f} per 1M tasks (workload (b); goal <= ${GOAL:g})"
    print(last)
    if args.markdown:
        command = " ".join(["python", "benchmarks/cost.py", *sys.argv[1:]])
        header = [
            "# What the control plane costs per task",
            "",
            f"Regenerated by `{command}` (see its docstring for what is counted and how).",
            "",
        ]
        marker = "<!-- notes below are kept when the file is regenerated -->"
        kept = ""
        if args.markdown.exists() and marker in (previous := args.markdown.read_text()):
            kept = previous[previous.index(marker) :]
        args.markdown.write_text("\n".join([*header, *out, last, "", kept or marker, ""]).rstrip() + "\n")


if __name__ == "__main__":
    main()

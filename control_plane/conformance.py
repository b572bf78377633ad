"""Run a conformance cases file through the production driver.

A cases file pairs flows with the results Kestra asserts for them; the format is defined in
``shared/conformance/kestra/README.md`` and any file of that shape works, including files
whose flows run script tasks. A case that crashes is reported as failed with the error, never
allowed to stop the run.

Each valid-flow case runs the way ``squall run --virtual-time`` runs a flow, in a runtime of
its own (:func:`scratch_runtime`): :func:`~control_plane.runtime.open_local` on a
SQLite file in a temporary directory, the process runner (script tasks really run, in that
directory) and a :class:`~control_plane.service.clock.VirtualClock` (retry intervals and
Sleeps take no time). The flow is deployed, started and driven by ``Service.run``, which
follows a flow-level retry to the execution it creates: the case is checked against the
last execution, and ``logs_contain`` against the logs of every execution the case produced
(subflows and retried executions included).

Extensions of the shared format (Squall's own cases use them; a file without them runs as
before):

- ``flows: [path, ...]``: more flow files (relative to the cases file) deployed before the
  case's flow, for the flows it calls or that react to it.
- ``start: N`` (default 1): N executions of the case's flow are started one after the other
  before any is driven (a flow ``concurrency`` case), then driven in start order; the case's
  other checks apply to the last one started.
- ``started_states: [STATE, ...]``: the final state of each of those N executions, in start
  order.
- ``triggered: [{flow, state, count, logs_contain}, ...]``: executions of other flows (a Flow
  trigger's) that the case's executions started, driven to their end too: ``count`` of them
  (default 1; 0 = none) of flow id ``flow`` (the case's own flow too: the started ones do
  not count), each ending in ``state`` and, together, logging
  every string of ``logs_contain``.
- ``namespace_files: {namespace: {/path: content}}``: files a namespace holds before the run
  (:func:`_seed_namespace_files`).
- ``http_responses: {path: answer or [answers]}`` and ``polls: N`` (default 1): the case's
  flow has Http triggers; instead of being started, it is polled N times
  (``Service.poll_http_triggers``), the virtual clock moved on by the longest trigger
  ``interval`` between polls, each execution a poll starts driven to its end before the next
  poll (Kestra holds a trigger while its execution runs). Its flows call
  ``http://conformance.invalid``, served locally (control_plane/conformance_http.py). The
  executions the polls started are the case's started ones (``started_states``).
- ``webhook: {key, body}``: the case's execution is started by a POST of ``body`` (JSON) to
  its Webhook trigger's route (``/webhooks/<namespace>/<flow>/<key>``), through the API as a
  client's request would be (:func:`_deliver_webhook`), not by ``Service.start``.
- ``run_first: [path, ...]``: flow files (relative to the cases file, deployed like ``flows``)
  each started once, in order, and driven to its end before the case's flow starts: the
  upstream executions a Flow trigger's ``preconditions`` count.
- ``jobs: N``: the number of runner jobs the execution's task runs ran in (distinct job names
  over every attempt): one for a WorkingDirectory whose children run as one job (ADR 0016).
- ``task_logs_contain: {task: [text, ...]}``: each text is in a log line of that task's own
  task runs (a child of a one-job WorkingDirectory gets its own part of the job's log).
- ``input_files: {input: path}``: a file (relative to the cases file) put in the storage before
  the run, its ``kestra:///file/storage/<name>`` URI given as input ``input``
  (:func:`_seed_input_files`), as Kestra's tests ``storageInterface.put`` a FILE input's file.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from msgspec import Struct, field

from control_plane.errors import FlowValidationError, SquallError
from control_plane.expressions import to_display
from control_plane.flows.loader import load_flow_file, read_flow_file

if TYPE_CHECKING:
    from control_plane.engine.model import Execution, LogLine, TaskRun
    from control_plane.engine.states import State
    from control_plane.runtime import Runtime
    from control_plane.service.clock import Clock
    from runners.base import Runner

__all__ = [
    "CASE_TIMEOUT",
    "CaseResult",
    "FlowRun",
    "execution_logs",
    "load_cases",
    "run_case",
    "run_cases",
    "run_flow",
    "scratch_runtime",
]

CASE_TIMEOUT = 300.0
"""Seconds a case may run (real time: script tasks take what they take) before it fails."""

_MISSING = object()


class CaseResult(Struct):
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return f"PASS {self.name}" if self.passed else f"FAIL {self.name}: " + "; ".join(self.problems)


class FlowRun(Struct):
    """What one started execution came to: the last execution, every one, and their logs.

    ``started``: each execution :func:`run_flow` started, as it ended (in start order);
    ``logs_of``: the logs of each execution, by id.
    """

    execution: Execution
    executions: list[Execution]
    logs: list[LogLine]
    started: list[Execution] = field(default_factory=list)
    logs_of: dict[str, list[LogLine]] = field(default_factory=dict)

    @property
    def state(self) -> State:
        return self.execution.state


@contextmanager
def scratch_runtime(
    *,
    clock: Clock | None = None,
    runners: Mapping[str, Runner] | None = None,
    **service_options: Any,
) -> Iterator[Runtime]:
    """A throwaway local runtime in a temporary directory, removed afterwards.

    The production wiring (``open_local``) on a SQLite file written with ``synchronous=OFF``
    (a scratch database need not survive a power cut, and an fsync per step is most of a
    short flow's time), a :class:`VirtualClock` unless ``clock`` is given, and the process
    runner unless ``runners`` replaces it. For ``squall conformance``, tests and benchmarks.
    """
    from control_plane.runtime import local_settings, open_local
    from control_plane.service.clock import VirtualClock
    from control_plane.store.sqlite import SqliteStore
    from runners.storage import uri_of

    with tempfile.TemporaryDirectory(prefix="squall-") as tmp:
        db = Path(tmp) / "squall.db"
        settings = local_settings(db)
        # Kestra's tests put input files in the storage at /file/storage/ and pass their URIs as
        # FILE inputs; here that area is the operator's shared area (control_plane/service/file_scope.py).
        root = settings.storage or uri_of(Path(settings.data_dir) / "storage", directory=True)
        shared = root.rstrip("/") + "/file/storage/"
        settings = local_settings(db, storage_read=(*settings.storage_read, shared))
        store = SqliteStore(db, synchronous="OFF")
        with open_local(
            settings, clock=clock or VirtualClock(), store=store, runners=runners, **service_options
        ) as runtime:
            yield runtime


def run_flow(
    runtime: Runtime,
    source: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    origin: str = "<flow>",
    timeout: float = CASE_TIMEOUT,
    count: int = 1,
    polls: int = 0,
    webhook: Mapping[str, Any] | None = None,
    **start: Any,
) -> FlowRun:
    """Deploy ``source``, start it (``start``: ``Service.start`` keywords) and drive it to its end.

    It ends when the execution (or the last of its flow-level retries) is terminal, waits
    for a person (PAUSED), or ``timeout`` seconds have passed (it is then killed, and returned
    as it stands). Under a :class:`VirtualClock` nobody comes to resume a paused execution
    and waiting costs nothing, so the timers it still has (a Pause ``timeout``) are fired,
    as the time Kestra's tests wait for them would: ``runtime`` should hold this flow's
    executions alone (:func:`scratch_runtime`).

    ``count`` executions are started before any is driven (a flow ``concurrency`` case),
    then each is driven in start order; the returned ``execution`` is the last one's.
    ``polls``: when set, nothing is started; the flow's Http triggers are polled that many
    times instead (see ``http_responses`` in the module docstring).
    """
    service = runtime.service
    record = service.deploy(source, origin)
    deadline = time.monotonic() + timeout
    if polls:
        ended = _poll(runtime, record.namespace, record.id, polls, deadline)
    elif webhook is not None:
        delivered = _deliver_webhook(runtime, record.namespace, record.id, webhook)
        ended = [_drive(runtime, delivered, deadline)]
    else:
        ids = [
            service.start(record.namespace, record.id, inputs, revision=record.revision, **start).id
            for _ in range(count)
        ]
        ended = [_drive(runtime, execution_id, deadline) for execution_id in ids]
    if not ended:
        raise SquallError(f"no execution of {record.namespace}.{record.id} was started")
    for other in _execution_ids(runtime):  # what they started (a Flow trigger's): to its end too
        if not runtime.store.get_execution(other).state.terminal:
            _drive(runtime, other, deadline)
    every = _execution_ids(runtime)
    executions = [runtime.store.get_execution(i) for i in every]
    logs_of = {i: execution_logs(runtime, i) for i in every}
    logs = [line for i in every for line in logs_of[i]]
    return FlowRun(ended[-1], executions, logs, ended, logs_of)


def _deliver_webhook(runtime: Runtime, namespace: str, flow_id: str, webhook: Mapping[str, Any]) -> str:
    """POST ``webhook['body']`` to the flow's webhook route through the API; the execution's id."""
    import contextlib
    import io
    import json
    from urllib.parse import quote

    from control_plane.api import telemetry
    from control_plane.api.app import Api
    from control_plane.server import LocalContext, api_event

    path = f"/webhooks/{quote(namespace)}/{quote(flow_id)}/{quote(str(webhook['key']))}"
    body = json.dumps(webhook.get("body")).encode()
    event = api_event("POST", path, [("Content-Type", "application/json")], body)
    # The API's request log and metrics lines are the Lambda's CloudWatch output: not the report's.
    level = telemetry.logger.log_level
    telemetry.logger.setLevel("WARNING")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            response = Api(runtime).handle(event, LocalContext(event["requestContext"]["requestId"]))
    finally:
        telemetry.logger.setLevel(level)
    answer = json.loads(response.get("body") or "{}")
    if response.get("statusCode") != 200 or "id" not in answer:
        raise SquallError(f"webhook {path} answered {response.get('statusCode')}: {answer}")
    return str(answer["id"])


def _poll(runtime: Runtime, namespace: str, flow_id: str, polls: int, deadline: float) -> list[Execution]:
    """Poll the flow's Http triggers ``polls`` times, driving what each poll starts to its end."""
    from datetime import timedelta

    from control_plane.flows.models import HttpTrigger
    from control_plane.service.clock import VirtualClock

    service = runtime.service
    flow = service.flow(namespace, flow_id)
    step = max((t.interval for t in flow.triggers or () if isinstance(t, HttpTrigger)), default=timedelta(0))
    ended: list[Execution] = []
    for _ in range(polls):
        for execution_id in service.poll_http_triggers(namespace=namespace, flow_id=flow_id):
            ended.append(_drive(runtime, execution_id, deadline))
        if isinstance(service.clock, VirtualClock):
            service.clock.sleep_until(service.clock.now() + step)
    return ended


def _drive(runtime: Runtime, execution_id: str, deadline: float) -> Execution:
    """Drive one execution to its end (or PAUSED with no timer; at the deadline it is killed)."""
    from control_plane.service.clock import VirtualClock

    service = runtime.service
    execution = service.run(execution_id, deadline=deadline)
    while (
        execution.state.value == "PAUSED"
        and isinstance(service.clock, VirtualClock)
        and (due := runtime.store.next_timer()) is not None
        and time.monotonic() < deadline
    ):
        service.clock.sleep_until(due)
        execution = service.run(execution.id, deadline=deadline)
    if not execution.state.terminal and execution.state.value != "PAUSED":
        service.kill(execution.id)
        execution = service.run(execution.id, deadline=time.monotonic() + 30)
    return execution


def _execution_ids(runtime: Runtime) -> list[str]:
    """Every execution in the runtime's store, oldest first."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = runtime.store.list_executions(limit=500, cursor=cursor)
        ids += [summary.id for summary in page.items]
        cursor = page.cursor
        if cursor is None:
            return ids[::-1]


def execution_logs(runtime: Runtime, execution_id: str) -> list[LogLine]:
    """Every stored log line of an execution, in order (all pages)."""
    lines: list[LogLine] = []
    cursor: str | None = None
    while True:
        page = runtime.store.read_logs(execution_id, limit=5000, cursor=cursor)
        lines += page.items
        cursor = page.cursor
        if cursor is None:
            return lines


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    """The ``cases`` list of a cases file; a malformed file raises SquallError naming it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SquallError(f"{path}: cannot read the cases file: {exc}") from None
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list) or not all(
        isinstance(c, dict) and "name" in c and "flow" in c for c in cases
    ):
        raise SquallError(f"{path}: expected a map with a `cases` list of maps with `name` and `flow`")
    return cases


def run_cases(path: str | Path, *, timeout: float = CASE_TIMEOUT) -> Iterator[CaseResult]:
    base = Path(path).parent
    for case in load_cases(path):
        yield run_case(case, base, timeout=timeout)


def run_case(case: Mapping[str, Any], base: Path, *, timeout: float = CASE_TIMEOUT) -> CaseResult:
    result = CaseResult(str(case["name"]))
    try:
        if case.get("invalid"):
            _check_invalid(case, base, result)
        else:
            _check_valid(case, base, result, timeout)
    except Exception as exc:  # a crash is a failed case, reported with its cause
        result.problems.append(f"crashed: {type(exc).__name__}: {exc}")
    return result


def _check_invalid(case: Mapping[str, Any], base: Path, result: CaseResult) -> None:
    try:
        load_flow_file(base / case["flow"])
    except FlowValidationError as exc:
        text = str(exc).lower()
        for needle in case.get("error_contains") or ():
            if str(needle).lower() not in text:
                result.problems.append(f"error does not mention {needle!r}: {exc}")
        wanted = case.get("violations")
        if wanted is not None and len(exc.violations) < int(wanted):
            result.problems.append(f"expected at least {wanted} violations, got {len(exc.violations)}: {exc}")
        return
    result.problems.append("the flow was accepted; it must be rejected")


def _seed_namespace_files(runtime: Runtime, files: Mapping[str, Mapping[str, str]]) -> None:
    """Extension ``namespace_files: {namespace: {/path: content}}``: files the namespace holds first.

    Written where the namespace files API keeps them (``_files/<namespace>/<path>`` in the
    deployment storage), as Kestra's tests put them with ``storageInterface.put`` before a run.
    """
    from control_plane.service.namespace_files import namespace_file_uri

    storage = runtime.service.storage
    for namespace, entries in files.items():
        for path, content in entries.items():
            uri = namespace_file_uri(storage, namespace, str(path).strip("/").split("/"))
            storage.write(uri, str(content).encode())


def _seed_input_files(runtime: Runtime, files: Mapping[str, str], base: Path) -> dict[str, str]:
    """Extension ``input_files: {input: path}``: each file put in the storage; the inputs naming them."""
    storage = runtime.service.storage
    inputs: dict[str, str] = {}
    for name, relative in files.items():
        uri = f"kestra:///file/storage/{Path(relative).name}"
        storage.write(uri, (base / relative).read_bytes())
        inputs[str(name)] = uri
    return inputs


def _check_valid(case: Mapping[str, Any], base: Path, result: CaseResult, timeout: float) -> None:
    path = base / case["flow"]
    typed = case.get("inputs_mode", "raw") == "typed"
    responses = case.get("http_responses")
    from control_plane.conformance_http import PLACEHOLDER

    with scratch_runtime() as runtime, _endpoint(responses) as url:

        def read(file: Path) -> str:
            source = read_flow_file(file)
            return source.replace(PLACEHOLDER, url) if url is not None else source

        _seed_namespace_files(runtime, case.get("namespace_files") or {})
        files = _seed_input_files(runtime, case.get("input_files") or {}, base)
        for extra in case.get("flows") or ():
            runtime.service.deploy(read(base / extra), str(base / extra))
        for first in case.get("run_first") or ():
            record = runtime.service.deploy(read(base / first), str(base / first))
            started = runtime.service.start(record.namespace, record.id)
            _drive(runtime, started.id, time.monotonic() + timeout)
        run = run_flow(
            runtime,
            read(path),
            {**(case.get("inputs") or {}), **files},
            origin=str(path),
            typed=typed,
            timeout=timeout,
            count=int(case.get("start", 1)),
            polls=int(case.get("polls", 1)) if responses is not None else 0,
            webhook=case.get("webhook"),
        )
    execution = run.execution
    problems = result.problems
    if "started_states" in case:
        states = [str(started.state) for started in run.started]
        if states != [str(state) for state in case["started_states"]]:
            problems.append(f"started executions ended {states}, expected {case['started_states']}")
    if "state" in case and str(execution.state) != case["state"]:
        problems.append(f"state {execution.state}, expected {case['state']}")
    if "taskruns" in case and len(execution.taskruns) != int(case["taskruns"]):
        problems.append(f"{len(execution.taskruns)} task runs, expected {case['taskruns']}")
    for check in case.get("triggered") or ():
        problems.extend(_check_triggered(check, run))
    runs = execution.ordered_taskruns()
    for task_id, state in (case.get("task_states") or {}).items():
        actual = [str(tr.state) for tr in runs if tr.task_id == task_id]
        if not actual or any(s != state for s in actual):
            problems.append(f"task {task_id} states {actual or 'absent'}, expected {state}")
    for task_id, count in (case.get("attempts") or {}).items():
        actual_counts = [len(tr.attempts) for tr in runs if tr.task_id == task_id]
        if actual_counts != [int(count)] * len(actual_counts) or not actual_counts:
            problems.append(f"task {task_id} attempts {actual_counts or 'absent'}, expected {count}")
    for task_id in case.get("absent_tasks") or ():
        if any(tr.task_id == task_id for tr in runs):
            problems.append(f"task {task_id} has a task run; expected none")
    for check in case.get("outputs") or ():
        outputs = _task_outputs(runs, check)
        problems.extend(_check_output(check, outputs, f"outputs of {check.get('task')}"))
    for check in case.get("flow_outputs") or ():
        problems.extend(_check_output(check, execution.outputs, "flow outputs"))
    if "jobs" in case:
        names = {a.job for tr in runs for a in tr.attempts if a.job is not None}
        if len(names) != int(case["jobs"]):
            problems.append(f"{len(names)} runner jobs, expected {case['jobs']}")
    for task_id, needles in (case.get("task_logs_contain") or {}).items():
        own = [line.message for line in run.logs if line.task_id == task_id]
        problems.extend(
            f"no log line of task {task_id} contains {needle!r}"
            for needle in needles
            if not any(needle in message for message in own)
        )
    messages = [line.message for line in run.logs]
    for needle in case.get("logs_contain") or ():
        if not any(needle in message for message in messages):
            problems.append(f"no log line contains {needle!r}")


@contextmanager
def _endpoint(responses: Mapping[str, Any] | None) -> Iterator[str | None]:
    if responses is None:
        yield None
        return
    from control_plane.conformance_http import serve

    with serve(responses) as url:
        yield url


def _check_triggered(check: Mapping[str, Any], run: FlowRun) -> list[str]:
    flow_id = str(check["flow"])
    started = {e.id for e in run.started}
    found = [e for e in run.executions if e.flow_id == flow_id and e.id not in started]
    wanted = int(check.get("count", 1))
    problems = []
    if len(found) != wanted:
        problems.append(f"triggered: {len(found)} executions of {flow_id}, expected {wanted}")
    states = [str(e.state) for e in found]
    if "state" in check and any(state != check["state"] for state in states):
        problems.append(f"triggered: {flow_id} ended {states}, expected {check['state']}")
    messages = [line.message for e in found for line in run.logs_of.get(e.id, ())]
    for needle in check.get("logs_contain") or ():
        if not any(needle in message for message in messages):
            problems.append(f"triggered: no log line of {flow_id} contains {needle!r}")
    return problems


def _task_outputs(runs: list[TaskRun], check: Mapping[str, Any]) -> Mapping[str, Any] | None:
    wanted = check.get("value")
    path = [wanted] if isinstance(wanted, str) else list(wanted) if wanted is not None else None
    for tr in runs:
        if tr.task_id != check.get("task"):
            continue
        if path is None or list(tr.values[-len(path) :]) == [str(v) for v in path]:
            return tr.outputs or {}
    return None


def _check_output(check: Mapping[str, Any], outputs: Mapping[str, Any] | None, where: str) -> list[str]:
    path = str(check.get("path", ""))
    actual: Any = outputs if outputs is not None else _MISSING
    for part in path.split(".") if path else ():
        actual = actual.get(part, _MISSING) if isinstance(actual, Mapping) else _MISSING
    if check.get("absent"):
        return [] if actual is _MISSING else [f"{where}: {path} is {actual!r}, expected absent"]
    if actual is _MISSING:
        return [f"{where}: {path} is missing"]
    text = actual if isinstance(actual, str) else to_display(actual)
    if "equals" in check:
        expected = check["equals"]
        if not (actual == expected or (isinstance(expected, str) and text == expected)):
            return [f"{where}: {path} is {text!r}, expected {expected!r}"]
    if "contains" in check and str(check["contains"]) not in text:
        return [f"{where}: {path} is {text!r}, expected to contain {check['contains']!r}"]
    if "matches" in check and not re.search(str(check["matches"]), text):
        return [f"{where}: {path} is {text!r}, expected to match {check['matches']!r}"]
    return []

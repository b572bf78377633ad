"""Run a conformance cases file: Kestra's own test flows paired with the results Kestra asserts.

The format is defined in ``shared/conformance/kestra/README.md``; any file of that shape works.
A case that crashes is reported as failed with the error, never allowed to stop the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from msgspec import Struct, field

from control_plane.engine.model import TaskRun
from control_plane.errors import FlowValidationError, SquallError
from control_plane.expressions import to_display
from control_plane.flows.loader import load_flow_file
from control_plane.service.memory import InMemoryExecutor, VirtualClock

__all__ = ["CaseResult", "load_cases", "run_case", "run_cases"]

_MISSING = object()


class CaseResult(Struct):
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return f"PASS {self.name}" if self.passed else f"FAIL {self.name}: " + "; ".join(self.problems)


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


def run_cases(path: str | Path) -> Iterator[CaseResult]:
    base = Path(path).parent
    for case in load_cases(path):
        yield run_case(case, base)


def run_case(case: Mapping[str, Any], base: Path) -> CaseResult:
    result = CaseResult(str(case["name"]))
    try:
        if case.get("invalid"):
            _check_invalid(case, base, result)
        else:
            _check_valid(case, base, result)
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


def _check_valid(case: Mapping[str, Any], base: Path, result: CaseResult) -> None:
    flow = load_flow_file(base / case["flow"])
    typed = case.get("inputs_mode", "raw") == "typed"
    run = InMemoryExecutor(clock=VirtualClock()).run(flow, case.get("inputs") or {}, typed=typed)
    execution = run.execution
    problems = result.problems
    if "state" in case and str(execution.state) != case["state"]:
        problems.append(f"state {execution.state}, expected {case['state']}")
    if "taskruns" in case and len(execution.taskruns) != int(case["taskruns"]):
        problems.append(f"{len(execution.taskruns)} task runs, expected {case['taskruns']}")
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
    messages = [line.message for line in run.logs]
    for needle in case.get("logs_contain") or ():
        if not any(needle in message for message in messages):
            problems.append(f"no log line contains {needle!r}")


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

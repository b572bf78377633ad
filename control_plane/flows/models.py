"""Pydantic models of the flow language: Kestra's YAML surface, validated strictly.

Field names are Kestra's own (camelCase) so a flow written for Kestra validates unchanged and
an error path reads like the YAML the user wrote (``tasks[2].retry.maxAttempt``). Every model
forbids unknown properties. A task's ``type`` keeps the spelling the user wrote (it is what
``{{ task.type }}`` renders); the class is chosen through the alias table.

Cross-cutting checks that need the whole tree (duplicate ids, recursive subflows, system
labels) live in :mod:`control_plane.flows.validation`, which runs on the raw YAML so that they
are reported even when some task fails its own validation.

Annotations are evaluated when each class is created (no ``from __future__ import
annotations``): pydantic would otherwise wrap some 800 annotation strings in ``ForwardRef``
objects and compile each one, a sizeable part of this module's import time, which every Lambda
cold start pays. Only names defined further down (``AnyTask``, ``Task``) are quoted.
"""

import math
from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from control_plane.flows.aliases import canonical_trigger_type, canonical_type
from control_plane.flows.durations import java_duration_text, parse_timedelta
from control_plane.levels import Level

__all__ = [
    "ID_PATTERN",
    "NAMESPACE_PATTERN",
    "TASK_ID_PATTERN",
    "AnyTask",
    "AnyTrigger",
    "Flow",
    "FlowableTask",
    "HttpTrigger",
    "Input",
    "InputType",
    "Level",
    "Retry",
    "ScriptTask",
    "Task",
    "TaskKind",
    "task_classes",
]

ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$"
NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
TASK_ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"
INPUT_ID_PATTERN = r"^[a-zA-Z0-9][.a-zA-Z0-9_-]*$"


def _problems(problems: list[str]) -> PydanticCustomError:
    """One validation error carrying several independent problems.

    The message joins them (what a plain ``ValueError`` would say); ``ctx["problems"]`` keeps
    them apart so the loader reports each one as its own violation.
    """
    return PydanticCustomError(
        "value_error", "{message}", {"message": "; ".join(problems), "problems": problems}
    )


def _java_duration(value: Any) -> Any:
    """A duration text parsed as Kestra does (java.time.Duration.parse), not as pydantic would.

    Pydantic accepts ``P1Y``, ``P1W`` and ``01:00:00``, which Kestra rejects, and rejects
    ``pt1m`` and ``PT0.25s``, which Kestra accepts. Numbers are left to pydantic (seconds).
    """
    if not isinstance(value, str):
        return value
    try:
        return parse_timedelta(value)
    except ValueError as exc:
        raise PydanticCustomError("time_delta_parsing", str(exc)) from None


Duration = Annotated[timedelta, BeforeValidator(_java_duration)]
"""A task or trigger property holding a duration: ``timeout``, retry intervals, Sleep, Pause..."""


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise PydanticCustomError("duration_negative", "must not be a negative duration")
    return value


NonNegativeDuration = Annotated[timedelta, BeforeValidator(_java_duration), AfterValidator(_not_negative)]
"""A duration Kestra bounds below by zero (``@DurationMin``, kestra-io/kestra#18676): a task's
``timeout``, Sleep's ``duration``, Pause's, retry intervals and ``maxDuration``, a Schedule's
``lateMaximumDelay``. A negative one is rejected when the flow is validated, naming the field."""


class _Strict(BaseModel):
    # Jackson reads `format: 42` into a String property as "42"; numbers are accepted as text too.
    # ``defer_build``: validators are built on first use, not at import, so a Lambda cold
    # start does not pay for every task type's schema before it serves a request.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, coerce_numbers_to_str=True, defer_build=True
    )


class TaskKind(StrEnum):
    """How the engine runs a task: the only thing the engine needs to know about a class."""

    INLINE = "inline"  # evaluated inside plan(): pure functions of the context
    TIMER = "timer"  # waits for a TimerFired event (Sleep)
    FLOWABLE = "flowable"  # owns child task runs
    SUBFLOW = "subflow"  # starts another execution
    JOB = "job"  # handed to a runner
    EFFECT = "effect"  # I/O done by the control plane itself (KV, HTTP, storage): RunInline


# --------------------------------------------------------------------------- retry


class RetryBehavior(StrEnum):
    RETRY_FAILED_TASK = "RETRY_FAILED_TASK"
    CREATE_NEW_EXECUTION = "CREATE_NEW_EXECUTION"
    RETRY_FLOWABLE = "RETRY_FLOWABLE"


_MILLI = timedelta(milliseconds=1)


class _RetryBase(_Strict):
    maxAttempt: int | None = Field(default=None, ge=1, validation_alias="maxAttempt")
    maxAttempts: int | None = Field(default=None, ge=1, exclude=True)
    maxDuration: NonNegativeDuration | None = None
    warningOnRetry: bool = False
    behavior: RetryBehavior | None = None

    @property
    def max_attempts(self) -> int | None:
        """Kestra counts every attempt, the first included; both spellings are accepted."""
        return self.maxAttempt if self.maxAttempt is not None else self.maxAttempts

    def delay(self, attempt: int, draw: float = 0.5) -> timedelta:
        """Wait before attempt ``attempt + 1`` after ``attempt`` attempts; ``draw`` in [0, 1)."""
        raise NotImplementedError

    def _ordered(self, *pairs: tuple[str, timedelta | None, str, timedelta | None]) -> Self:
        """Kestra's Constant/Exponential/RandomRetryValidator: each (smaller, larger) pair must
        be strictly ordered when both are set, with Kestra's message naming the smaller one."""
        problems = [
            f"'{low}' must be less than '{high}' but is {java_duration_text(low_value)}"
            for low, low_value, high, high_value in pairs
            if low_value is not None and high_value is not None and low_value >= high_value
        ]
        if problems:
            raise _problems(problems)
        return self


class ConstantRetry(_RetryBase):
    type: Literal["constant"]
    interval: NonNegativeDuration

    def delay(self, attempt: int, draw: float = 0.5) -> timedelta:
        return self.interval

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        return self._ordered(("interval", self.interval, "maxDuration", self.maxDuration))


class ExponentialRetry(_RetryBase):
    type: Literal["exponential"]
    interval: NonNegativeDuration
    maxInterval: NonNegativeDuration
    delayFactor: float | None = None

    def delay(self, attempt: int, draw: float = 0.5) -> timedelta:
        """Kestra's Exponential.nextRetryDate (kestra-io/kestra#17031), in its milliseconds:
        interval * delayFactor^(attempts - 1), Math.round'ed, capped by maxInterval."""
        factor = self.delayFactor if self.delayFactor is not None else 2.0
        cap = self.maxInterval // _MILLI
        try:
            millis = (self.interval // _MILLI) * factor ** max(attempt - 1, 0)
        except OverflowError:  # Java's double becomes Infinity, which the cap handles
            millis = math.inf
        return _MILLI * (cap if millis >= cap else math.floor(millis + 0.5))

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        return self._ordered(
            ("interval", self.interval, "maxDuration", self.maxDuration),
            ("interval", self.interval, "maxInterval", self.maxInterval),
        )


class RandomRetry(_RetryBase):
    type: Literal["random"]
    minInterval: NonNegativeDuration
    maxInterval: NonNegativeDuration

    def delay(self, attempt: int, draw: float = 0.5) -> timedelta:
        """Kestra's Random.nextRetryDate: whole milliseconds in [minInterval, maxInterval)."""
        low, high = self.minInterval // _MILLI, self.maxInterval // _MILLI
        return _MILLI * (low + math.floor((high - low) * draw))

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        return self._ordered(
            ("minInterval", self.minInterval, "maxDuration", self.maxDuration),
            ("maxInterval", self.maxInterval, "maxDuration", self.maxDuration),
            ("minInterval", self.minInterval, "maxInterval", self.maxInterval),
        )


Retry = Annotated[ConstantRetry | ExponentialRetry | RandomRetry, Field(discriminator="type")]


# --------------------------------------------------------------------------- inputs / outputs


class InputType(StrEnum):
    STRING = "STRING"
    ENUM = "ENUM"
    SELECT = "SELECT"
    MULTISELECT = "MULTISELECT"
    INT = "INT"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    BOOL = "BOOL"
    DATETIME = "DATETIME"
    DATE = "DATE"
    TIME = "TIME"
    DURATION = "DURATION"
    FILE = "FILE"
    JSON = "JSON"
    YAML = "YAML"
    URI = "URI"
    SECRET = "SECRET"
    ARRAY = "ARRAY"
    EMAIL = "EMAIL"


class Input(_Strict):
    id: str = Field(pattern=INPUT_ID_PATTERN, max_length=100)
    type: InputType
    description: str | None = None
    displayName: str | None = None
    required: bool = True
    defaults: Any = None
    prefill: Any = None
    validator: str | None = None
    min: Any = None
    max: Any = None
    minLength: int | None = None
    maxLength: int | None = None
    values: list[Any] | None = None
    expression: str | None = None
    itemType: InputType | None = None
    allowCustomValue: bool = False
    allowedFileExtensions: list[str] | None = None
    autoSelectFirst: bool = False
    isRadio: bool = False
    dependsOn: dict[str, Any] | None = None

    @field_validator("validator")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import regex  # the engine inputs are matched with (it takes a timeout; ``re`` does not)

            try:
                regex.compile(value)
            except regex.error as exc:
                raise ValueError(f"invalid pattern [{value}]: {exc}") from None
        return value

    @model_validator(mode="after")
    def _type_rules(self) -> Self:
        problems: list[str] = []
        if self.type is InputType.FILE and self.defaults is not None:
            problems.append(f"{self.id}: no `defaults` can be set for inputs of type 'FILE'")
        if self.type is InputType.ARRAY:
            if self.itemType is None:
                problems.append(f"{self.id}: `itemType` is required for inputs of type 'ARRAY'")
            elif self.itemType is InputType.ARRAY:
                problems.append(f"{self.id}: `itemType` cannot be `ARRAY`")
        if self.type in (InputType.SELECT, InputType.MULTISELECT, InputType.ENUM) and (
            not self.values and not self.expression
        ):
            problems.append(
                f"{self.id}: `values` (or `expression`) is required for inputs of type {self.type}"
            )
        if problems:
            raise _problems(problems)
        return self


class FlowOutput(_Strict):
    id: str = Field(pattern=INPUT_ID_PATTERN)
    type: InputType = InputType.STRING
    value: Any
    description: str | None = None
    displayName: str | None = None
    required: bool = True


# --------------------------------------------------------------------------- small shared blocks


class Label(_Strict):
    key: str
    value: str


def _labels_to_dict(value: Any) -> Any:
    """Kestra accepts labels as a map or as a list of key/value pairs; Squall keeps a map."""
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            if isinstance(item, dict) and set(item) == {"key", "value"} and isinstance(item["key"], str):
                out[item["key"]] = item["value"]
            else:
                raise ValueError("each label in a list must be a map with exactly `key` and `value`")
        value = out
    if isinstance(value, dict):
        bad = [str(k) for k, v in value.items() if v is None or isinstance(v, dict | list)]
        if bad:  # str() of a map or of null would silently become a label value
            raise ValueError(f"label values must be text, numbers or booleans: {', '.join(bad)}")
        return {str(k): v if isinstance(v, str) else _scalar_text(v) for k, v in value.items()}
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Concurrency(_Strict):
    limit: int = Field(ge=1)
    behavior: Literal["QUEUE", "CANCEL", "FAIL"] = "QUEUE"


class PluginDefault(_Strict):
    type: str
    values: dict[str, Any] = Field(default_factory=dict)
    forced: bool = False


class WorkerGroup(_Strict):
    key: str
    fallback: Literal["FAIL", "WAIT", "CANCEL"] | None = None


class Condition(BaseModel):
    """Trigger and listener conditions: accepted and kept, evaluated by the trigger layer."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    type: str


class TaskRunnerSpec(BaseModel):
    """The ``taskRunner`` block: its options are validated by the runner it names."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    type: str


# --------------------------------------------------------------------------- tasks


class Task(_Strict):
    """Fields every Kestra task has. Subclasses set ``kind`` and their own properties."""

    kind: ClassVar[TaskKind] = TaskKind.INLINE
    canonical: ClassVar[str] = ""

    id: str = Field(pattern=TASK_ID_PATTERN, max_length=100)
    type: str
    description: str | None = None
    retry: Retry | None = None
    timeout: NonNegativeDuration | None = None
    disabled: bool = False
    allowFailure: bool = False
    allowWarning: bool = False
    runIf: str | bool | None = None
    logLevel: Level | None = None
    logToFile: bool = False
    workerGroup: WorkerGroup | None = None

    timeout_honoured: ClassVar[bool] = True
    """Whether ``timeout`` bounds this task. Kestra applies it to runnable tasks only: on a
    flowable or a Subflow it is accepted and ignored (kestra-io/kestra#9967, which turns it into
    a validation error). Squall refuses it there rather than ignore it."""

    @field_validator("timeout")
    @classmethod
    def _timeout_honoured(cls, value: Any) -> Any:
        if value is not None and not cls.timeout_honoured:
            raise PydanticCustomError(
                "timeout_not_honoured",
                "is not honoured on this task: as in Kestra, a timeout bounds runnable tasks only;"
                " set it on the tasks inside",
            )
        return value

    def child_lists(self) -> Iterator[tuple[str, list["Task"]]]:
        """Every (property, tasks) pair this task owns; runnable tasks own none."""
        return iter(())


class Log(Task):
    canonical: ClassVar[str] = "squall.core.Log"
    message: str | list[str]
    level: Level = Level.INFO


class Echo(Task):
    canonical: ClassVar[str] = "squall.core.Echo"
    format: str
    level: Level = Level.INFO


class Return(Task):
    canonical: ClassVar[str] = "squall.core.Return"
    format: str | None = None


class OutputValues(Task):
    canonical: ClassVar[str] = "squall.core.OutputValues"
    values: dict[str, Any] = Field(default_factory=dict)


class Fail(Task):
    canonical: ClassVar[str] = "squall.core.Fail"
    condition: str | bool | None = None
    errorMessage: str = "Task failure"


class SetLabels(Task):
    canonical: ClassVar[str] = "squall.core.Labels"
    labels: dict[str, str]

    _normalize = field_validator("labels", mode="before")(lambda cls, v: _labels_to_dict(v))


EXIT_STATES = ("SUCCESS", "WARNING", "KILLED", "FAILED", "CANCELED")
"""Kestra's Exit.ExitState, in its spelling (CANCELED ends the execution CANCELLED)."""


class Exit(Task):
    """Ends the execution now, in ``state`` (Kestra's io.kestra.plugin.core.execution.Exit)."""

    canonical: ClassVar[str] = "squall.core.Exit"
    state: str = "SUCCESS"

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str) -> str:
        if "{{" not in value and "{%" not in value and value not in EXIT_STATES:
            raise PydanticCustomError(
                "exit_state", "must be one of {states}", {"states": ", ".join(EXIT_STATES)}
            )
        return value


class SetVariables(Task):
    """Merges rendered ``variables`` into the execution's ``{{ vars }}`` for the tasks after it."""

    canonical: ClassVar[str] = "squall.core.SetVariables"
    variables: dict[str, Any]
    overwrite: bool | str = True


class UnsetVariables(Task):
    """Removes execution variables by name; a missing one fails unless ``ignoreMissing``."""

    canonical: ClassVar[str] = "squall.core.UnsetVariables"
    variables: list[str]
    ignoreMissing: bool | str = False


class Sleep(Task):
    kind: ClassVar[TaskKind] = TaskKind.TIMER
    canonical: ClassVar[str] = "squall.core.Sleep"
    duration: NonNegativeDuration


class FlowableTask(Task):
    """A task that owns children: ``tasks`` plus the local ``errors`` and ``finally`` branches."""

    kind: ClassVar[TaskKind] = TaskKind.FLOWABLE
    timeout_honoured: ClassVar[bool] = False
    errors: list["AnyTask"] | None = None
    finally_: list["AnyTask"] | None = Field(default=None, alias="finally")

    def main_lists(self) -> Iterator[tuple[str, list[Task]]]:
        """The lists whose tasks are the flowable's own work (not errors/finally)."""
        tasks = getattr(self, "tasks", None)
        if tasks:
            yield "tasks", tasks

    def child_lists(self) -> Iterator[tuple[str, list[Task]]]:
        yield from self.main_lists()
        if self.errors:
            yield "errors", self.errors
        if self.finally_:
            yield "finally", self.finally_


def _not_empty(value: list[Any] | None) -> list[Any]:
    if not value:
        raise ValueError("must not be empty")
    return value


class _WithTasks(FlowableTask):
    tasks: list["AnyTask"] | None = Field(default=None, validate_default=True)

    _tasks_not_empty = field_validator("tasks")(lambda cls, v: _not_empty(v))


class Sequential(_WithTasks):
    canonical: ClassVar[str] = "squall.flow.Sequential"


class AllowFailure(_WithTasks):
    canonical: ClassVar[str] = "squall.flow.AllowFailure"


class Parallel(_WithTasks):
    canonical: ClassVar[str] = "squall.flow.Parallel"
    concurrent: int = Field(default=0, ge=0)


class ForEach(_WithTasks):
    canonical: ClassVar[str] = "squall.flow.ForEach"
    values: str | list[Any]
    concurrencyLimit: int = Field(default=1, ge=0)

    @property
    def loop_values(self) -> str | list[Any]:
        return self.values

    @property
    def limit(self) -> int:
        return self.concurrencyLimit


class EachSequential(_WithTasks):
    """Deprecated Kestra loop, run as a ForEach with ``concurrencyLimit: 1``."""

    canonical: ClassVar[str] = "squall.flow.EachSequential"
    value: str | list[Any]

    @property
    def loop_values(self) -> str | list[Any]:
        return self.value

    @property
    def limit(self) -> int:
        return 1


class EachParallel(_WithTasks):
    """Deprecated Kestra loop, run as a ForEach whose limit is ``concurrent`` (0: unlimited)."""

    canonical: ClassVar[str] = "squall.flow.EachParallel"
    value: str | list[Any]
    concurrent: int = Field(default=0, ge=0)

    @property
    def loop_values(self) -> str | list[Any]:
        return self.value

    @property
    def limit(self) -> int:
        return self.concurrent


class Switch(FlowableTask):
    canonical: ClassVar[str] = "squall.flow.Switch"
    value: str | int | bool
    cases: dict[str, list["AnyTask"]] | None = None
    defaults: list["AnyTask"] | None = None

    @model_validator(mode="after")
    def _has_tasks(self) -> Self:
        if not any(self.cases.values() if self.cases else ()) and not self.defaults:
            raise ValueError(f"{self.id}: No task defined, neither cases or defaults have any tasks")
        return self

    def main_lists(self) -> Iterator[tuple[str, list[Task]]]:
        for key, tasks in (self.cases or {}).items():
            if tasks:
                yield f"cases.{key}", tasks
        if self.defaults:
            yield "defaults", self.defaults


class If(FlowableTask):
    canonical: ClassVar[str] = "squall.flow.If"
    condition: str | bool | int
    then: list["AnyTask"] | None = Field(default=None, validate_default=True)
    else_: list["AnyTask"] | None = Field(default=None, alias="else")

    _then_not_empty = field_validator("then")(lambda cls, v: _not_empty(v))

    def main_lists(self) -> Iterator[tuple[str, list[Task]]]:
        if self.then:
            yield "then", self.then
        if self.else_:
            yield "else", self.else_


class DagTask(_Strict):
    task: "AnyTask"
    dependsOn: list[str] | None = None


class Dag(FlowableTask):
    canonical: ClassVar[str] = "squall.flow.Dag"
    tasks: list[DagTask] | None = Field(default=None, validate_default=True)
    concurrent: int = Field(default=0, ge=0)

    _tasks_not_empty = field_validator("tasks")(lambda cls, v: _not_empty(v))

    @model_validator(mode="after")
    def _graph_is_sound(self) -> Self:
        ids = [node.task.id for node in self.tasks or ()]
        known = set(ids)
        problems = [
            f"{self.id}: Not existing task id in dependency: {dep}"
            for node in self.tasks or ()
            for dep in node.dependsOn or ()
            if dep not in known
        ]
        problems += [f"{self.id}: Cyclic dependency detected: {', '.join(c)}" for c in _cycles(self)]
        if problems:
            raise _problems(problems)
        return self

    def main_lists(self) -> Iterator[tuple[str, list[Task]]]:
        if self.tasks:
            yield "tasks", [node.task for node in self.tasks]


def _cycles(dag: Dag) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each in declaration order."""
    order = [node.task.id for node in dag.tasks or ()]
    edges = {node.task.id: [d for d in node.dependsOn or () if d in order] for node in dag.tasks or ()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component, key=order.index))

    for v in order:
        if v not in index:
            visit(v)
    return found


class CheckFrequency(_Strict):
    """LoopUntil's (WaitFor's) bounds, with Kestra's defaults since 0.23: no iteration or
    duration cap, one minute between iterations
    (kestra.io/docs/migration-guide/0.23.0/loop-until-defaults)."""

    maxIterations: int | None = Field(default=None, ge=1)
    maxDuration: Duration | None = None
    interval: Duration = timedelta(minutes=1)


class WaitFor(_WithTasks):
    """Runs ``tasks`` again while ``condition`` is truthy, within the check-frequency bounds."""

    canonical: ClassVar[str] = "squall.flow.WaitFor"
    condition: str | bool
    failOnMaxReached: bool = False
    checkFrequency: CheckFrequency = Field(default_factory=CheckFrequency)  # not built at import
    maxIterations: int | None = Field(default=None, ge=1)
    maxDuration: Duration | None = None

    @property
    def bounds(self) -> CheckFrequency:
        """Top-level ``maxIterations``/``maxDuration`` override ``checkFrequency``'s."""
        update = {
            k: v for k, v in (("maxIterations", self.maxIterations), ("maxDuration", self.maxDuration)) if v
        }
        return self.checkFrequency.model_copy(update=update) if update else self.checkFrequency


class Pause(FlowableTask):
    canonical: ClassVar[str] = "squall.flow.Pause"
    timeout_honoured: ClassVar[bool] = True  # its own: how long it waits for a resume
    delay: NonNegativeDuration | None = None
    pauseDuration: NonNegativeDuration | None = None
    timeout: NonNegativeDuration | None = None
    behavior: Literal["RESUME", "WARN", "FAIL", "CANCEL"] = "RESUME"
    onResume: list[Input] | None = None
    tasks: list["AnyTask"] | None = None

    @property
    def auto_resume_after(self) -> timedelta | None:
        return self.pauseDuration or self.delay


class _CallsFlow(Task):
    """What a task that starts executions of another flow says about the call: Subflow, and the
    ``<id>_items`` part of a ForEachItem (the engine's one SUBFLOW kind handles both)."""

    kind: ClassVar[TaskKind] = TaskKind.SUBFLOW
    timeout_honoured: ClassVar[bool] = False
    namespace: str
    flowId: str
    revision: int | None = None
    inputs: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    wait: bool = True
    transmitFailed: bool = True
    inheritLabels: bool = False


class Subflow(_CallsFlow):
    canonical: ClassVar[str] = "squall.flow.Subflow"
    outputs: dict[str, Any] | None = None
    # Kestra's scheduleDate (start the child later) is not modelled: Squall has no delayed start
    # of an execution, so the property is an unknown-property error rather than ignored.

    _normalize = field_validator("labels", mode="before")(lambda cls, v: _labels_to_dict(v))


class ForEachItemBatch(_Strict):
    """How ForEachItem cuts its file (Kestra's ``ForEachItem.Batch``, ``StorageSplitInterface``).

    Kestra's precedence, not an exclusive choice: ``bytes`` if set, else ``partitions``, else
    ``rows`` (default 1). ``separator`` is what ends each line written to a batch file.
    """

    rows: int | str | None = 1
    bytes: str | None = None
    partitions: int | str | None = None
    separator: str = "\n"


FOR_EACH_ITEM_PARTS = ("_split", "_items", "_merge")
"""Suffixes of the three task runs a ForEachItem owns (Kestra's ``ForEachItem.getTasks()``)."""


class ForEachItem(FlowableTask):
    """Kestra's ForEachItem: one subflow execution per batch of lines of a file.

    It owns three tasks that Kestra generates (``getTasks()``) and runs in turn, with its ids:
    ``<id>_split`` cuts ``items`` into batch files (:class:`ForEachItemSplit`, I/O done by the
    control plane), ``<id>_items`` starts one execution of the subflow per batch and, with
    ``wait``, counts their ends (:class:`ForEachItemExecutable`), ``<id>_merge`` gathers the
    subflows' outputs into one file (:class:`ForEachItemMergeOutputs`). ``scheduleDate`` is
    refused: Squall cannot start an execution later yet.
    """

    canonical: ClassVar[str] = "squall.flow.ForEachItem"
    items: str
    batch: ForEachItemBatch = Field(default_factory=ForEachItemBatch)
    namespace: str
    flowId: str
    revision: int | None = None
    inputs: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    wait: bool = True
    transmitFailed: bool = True
    inheritLabels: bool = False

    _normalize = field_validator("labels", mode="before")(lambda cls, v: _labels_to_dict(v))

    def main_lists(self) -> Iterator[tuple[str, list[Task]]]:
        yield "tasks", self.parts()

    def parts(self) -> list[Task]:
        """The three generated tasks; built unvalidated (their ids may pass 100 characters)."""
        split_type, items_type, merge_type = (f"{_KESTRA_FOR_EACH_ITEM}${n}" for n in _PART_CLASSES)
        split, items, merge = (f"{self.id}{suffix}" for suffix in FOR_EACH_ITEM_PARTS)
        return [
            ForEachItemSplit.model_construct(id=split, type=split_type, items=self.items, batch=self.batch),
            ForEachItemExecutable.model_construct(
                id=items,
                type=items_type,
                namespace=self.namespace,
                flowId=self.flowId,
                revision=self.revision,
                inputs=self.inputs,
                labels=self.labels,
                wait=self.wait,
                transmitFailed=self.transmitFailed,
                inheritLabels=self.inheritLabels,
            ),
            ForEachItemMergeOutputs.model_construct(id=merge, type=merge_type),
        ]


_PART_CLASSES = ("ForEachItemSplit", "ForEachItemExecutable", "ForEachItemMergeOutputs")
_KESTRA_FOR_EACH_ITEM = "io.kestra.plugin.core.flow.ForEachItem"  # the parts' types: Kestra's inner classes


class ForEachItemExecutable(_CallsFlow):
    """``<id>_items``: one subflow execution per batch (the engine's ``foreach_item`` module)."""

    canonical: ClassVar[str] = "squall.flow.ForEachItem$ForEachItemExecutable"


class NamespaceFiles(_Strict):
    """Kestra's ``NamespaceFiles``: which namespace files a task's working directory receives.

    Only Kestra's ``enabled``/``include``/``exclude`` are honoured
    (:mod:`control_plane.service.namespace_files`); later properties (``namespaces``,
    ``folderPerNamespace``, ``ifExists``) are refused as unknown rather than ignored.
    """

    enabled: bool | str = True
    include: list[str] | None = None
    exclude: list[str] | None = None


class WorkingDirectory(_WithTasks):
    """Kestra's WorkingDirectory: children run in turn in one directory.

    Its script children run as one job (ADR 0016, :mod:`control_plane.engine.working_directory`)
    when they can all be rendered before it starts; otherwise each job child is its own job and
    the directory is carried from one to the next through the storage (ADR 0012,
    :mod:`control_plane.service.workspace`). ``inputFiles`` and
    ``namespaceFiles`` are staged into the first job child's directory, as Kestra writes them
    before the first child (``preExecuteTasks``); ``outputFiles`` are collected from the last
    job child's directory (``postExecuteTasks``). ``cache`` is not honoured: not declared, it
    is a validation error rather than silently ignored.
    """

    canonical: ClassVar[str] = "squall.flow.WorkingDirectory"
    inputFiles: dict[str, str] | str | None = None
    outputFiles: list[str] | None = None
    namespaceFiles: NamespaceFiles | None = None

    @field_validator("tasks")
    @classmethod
    def _runnable_only(cls, value: list[Task] | None) -> list[Task] | None:
        if not value:
            raise ValueError("The 'tasks' property cannot be empty")
        # Kestra's WorkingDirectoryTaskValidator: a Subflow is no RunnableTask either.
        if any(isinstance(t, FlowableTask) or t.kind is TaskKind.SUBFLOW for t in value):
            raise ValueError("Only runnable tasks are allowed as children of a WorkingDirectory task")
        if any(t.workerGroup is not None for t in value):
            raise ValueError(
                "Cannot set a Worker Group in any WorkingDirectory sub-tasks,"
                " it is only supported at the WorkingDirectory level"
            )
        if any(t.canonical == "squall.storage.LocalFiles" for t in value):
            # LocalFiles runs in the control plane: its files could not reach the jobs that share
            # the directory, so it is refused rather than made where no sibling sees them.
            raise ValueError(
                "LocalFiles inside a WorkingDirectory is not supported: use the WorkingDirectory's"
                " or the scripts' inputFiles"
            )
        return value

    @model_validator(mode="after")
    def _files_need_a_job_child(self) -> "WorkingDirectory":
        """The directory exists only in the job children's jobs (:mod:`control_plane.service.workspace`).

        Kestra has one even for a WorkingDirectory of Log tasks; Squall has none to put
        ``inputFiles`` in or collect ``outputFiles`` from, so it says so instead of dropping them.
        """
        given = [f for f in ("inputFiles", "outputFiles", "namespaceFiles") if getattr(self, f) is not None]
        children: list[Task] = list(self.tasks or ())
        if given and not any(t.kind is TaskKind.JOB and not t.disabled for t in children):
            raise ValueError(
                f"{', '.join(given)}: a WorkingDirectory's files live in its script tasks' jobs,"
                " and this one has no enabled script task"
            )
        return self


# --------------------------------------------------------------------------- tasks with I/O
# Run by the control plane (TaskKind.EFFECT, control_plane/tasks/): properties as in Kestra.


class EffectTask(Task):
    """A core task whose I/O the control plane does (KV, HTTP, storage, namespace files)."""

    kind: ClassVar[TaskKind] = TaskKind.EFFECT
    unrendered: ClassVar[frozenset[str]] = frozenset()  # Kestra's non-dynamic templates (per item)


KvType = Literal["STRING", "NUMBER", "BOOLEAN", "DATETIME", "DATE", "DURATION", "JSON"]


class KvSet(EffectTask):
    canonical: ClassVar[str] = "squall.kv.Set"
    key: str
    value: Any = Field()  # required; Kestra renders it typed (renderTyped)
    namespace: str | None = None  # Kestra's default: {{ flow.namespace }}
    overwrite: bool = True
    ttl: Duration | None = None
    kvType: KvType | None = None


class KvGet(EffectTask):
    canonical: ClassVar[str] = "squall.kv.Get"
    key: str
    namespace: str | None = None
    errorOnMissing: bool = False


class KvDelete(EffectTask):
    canonical: ClassVar[str] = "squall.kv.Delete"
    key: str
    namespace: str | None = None
    errorOnMissing: bool = False


class KvGetKeys(EffectTask):
    canonical: ClassVar[str] = "squall.kv.GetKeys"
    prefix: str | None = None
    namespace: str | None = None


class HttpRequestOptions(_Strict):
    """Kestra's HttpInterface.RequestOptions (control_plane/tasks/http.py says how each applies)."""

    connectTimeout: Duration | None = None
    readTimeout: Duration | None = None
    readIdleTimeout: Duration | None = None
    connectionPoolIdleTimeout: Duration | None = None
    maxContentLength: int | None = Field(default=None, ge=1)
    proxyType: Literal["DIRECT", "HTTP"] = "DIRECT"  # SOCKS needs a library Squall does not ship
    proxyAddress: str | None = None
    proxyPort: int | None = Field(default=None, ge=1, le=65535)
    proxyUsername: str | None = None
    proxyPassword: str | None = None
    defaultCharset: str | None = None
    followRedirects: bool = True
    basicAuthUser: str | None = None
    basicAuthPassword: str | None = None
    logLevel: None = Field(default=None, description="Micronaut's HTTP client logging: not available")

    @model_validator(mode="after")
    def _proxy_has_address(self) -> Self:
        if self.proxyType == "HTTP" and not self.proxyAddress:
            raise ValueError("proxyType HTTP needs proxyAddress (and proxyPort)")
        return self

    @field_validator("defaultCharset")
    @classmethod
    def _known_charset(cls, value: str | None) -> str | None:
        import codecs

        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown charset {value!r}") from None
        return value


class HttpSslOptions(_Strict):
    insecureTrustAllCertificates: bool | None = None


class _Http(EffectTask):
    uri: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"] = "GET"
    body: str | None = None
    formData: dict[str, Any] | None = None
    contentType: str | None = None
    headers: dict[str, str] | None = None
    options: HttpRequestOptions | None = None
    sslOptions: HttpSslOptions | None = None
    allowFailed: bool = False


class HttpRequest(_Http):
    canonical: ClassVar[str] = "squall.http.Request"
    encryptBody: Literal[False] = Field(
        default=False, description="encrypted outputs are not available: the body is an output in clear"
    )


class HttpDownload(_Http):
    canonical: ClassVar[str] = "squall.http.Download"
    failOnEmptyResponse: bool = True


class StorageWrite(EffectTask):
    canonical: ClassVar[str] = "squall.storage.Write"
    content: str
    extension: str | None = None


class StorageConcat(EffectTask):
    canonical: ClassVar[str] = "squall.storage.Concat"
    files: list[str] | str
    separator: str | None = None
    extension: str = ".tmp"


class StorageSplit(EffectTask):
    canonical: ClassVar[str] = "squall.storage.Split"
    from_: str = Field(alias="from")
    bytes: str | None = None
    partitions: int | str | None = None
    rows: int | str | None = None
    separator: str = "\n"

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        chosen = [name for name in ("bytes", "partitions", "rows") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError("exactly one of 'bytes', 'partitions' or 'rows' is required")
        return self


class ForEachItemSplit(EffectTask):
    """``<id>_split``: cuts ``items`` into batch files (control_plane/tasks/foreach_item.py)."""

    canonical: ClassVar[str] = "squall.flow.ForEachItem$ForEachItemSplit"
    items: str
    batch: ForEachItemBatch = Field(default_factory=ForEachItemBatch)


class ForEachItemMergeOutputs(EffectTask):
    """``<id>_merge``: the subflows' outputs in one file (control_plane/tasks/foreach_item.py).

    It has no property of its own: the engine hands it where the batches' outputs are.
    """

    canonical: ClassVar[str] = "squall.flow.ForEachItem$ForEachItemMergeOutputs"


class StorageSize(EffectTask):
    canonical: ClassVar[str] = "squall.storage.Size"
    uri: str


class StorageDelete(EffectTask):
    canonical: ClassVar[str] = "squall.storage.Delete"
    uri: str
    errorOnMissing: bool = False


class StorageReverse(EffectTask):
    canonical: ClassVar[str] = "squall.storage.Reverse"
    from_: str = Field(alias="from")
    separator: str = "\n"
    charset: str = "UTF-8"


class StorageFilterItems(EffectTask):
    canonical: ClassVar[str] = "squall.storage.FilterItems"
    unrendered: ClassVar[frozenset[str]] = frozenset({"filterCondition"})
    from_: str = Field(alias="from")
    filterCondition: str
    filterType: Literal["INCLUDE", "EXCLUDE"] = "INCLUDE"
    errorOrNullBehavior: Literal["FAIL", "INCLUDE", "EXCLUDE"] = "FAIL"


class StorageDeduplicateItems(EffectTask):
    canonical: ClassVar[str] = "squall.storage.DeduplicateItems"
    unrendered: ClassVar[frozenset[str]] = frozenset({"expr"})
    from_: str = Field(alias="from")
    expr: str


class StorageLocalFiles(EffectTask):
    canonical: ClassVar[str] = "squall.storage.LocalFiles"
    inputs: dict[str, str | None] | str | None = None
    outputs: list[str] | None = None


class StoragePurgeCurrentExecutionFiles(EffectTask):
    canonical: ClassVar[str] = "squall.storage.PurgeCurrentExecutionFiles"


class NamespaceUploadFiles(EffectTask):
    canonical: ClassVar[str] = "squall.namespace.UploadFiles"
    namespace: str | None = None
    files: None = Field(
        default=None, description="globs a working directory, which the control plane has not: use filesMap"
    )
    filesMap: dict[str, str] | str
    destination: str = "/"
    conflict: Literal["OVERWRITE", "ERROR", "SKIP"] = "OVERWRITE"


class NamespaceDownloadFiles(EffectTask):
    canonical: ClassVar[str] = "squall.namespace.DownloadFiles"
    namespace: str
    files: list[str] | str
    destination: str = ""


class NamespaceDeleteFiles(EffectTask):
    canonical: ClassVar[str] = "squall.namespace.DeleteFiles"
    namespace: str
    files: list[str] | str


class CountFlow(_Strict):
    namespace: str
    flowId: str


class ExecutionCount(EffectTask):
    canonical: ClassVar[str] = "squall.execution.Count"
    flows: list[CountFlow] | None = None
    states: list[Literal[
        "CREATED", "RUNNING", "PAUSED", "RESTARTED", "KILLING", "SUCCESS", "WARNING", "FAILED",
        "KILLED", "CANCELLED", "QUEUED", "RETRYING", "RETRIED", "SKIPPED",
    ]] | None = None  # fmt: skip
    startDate: str
    endDate: str | None = None
    expression: str
    namespaces: list[str] | None = None
    unrendered: ClassVar[frozenset[str]] = frozenset({"expression"})  # rendered per count

    @model_validator(mode="after")
    def _flows_or_namespaces(self) -> Self:
        if self.flows is None and self.namespaces is None:
            raise ValueError("You must provide a list of flows or namespaces")
        return self


class ExecutionResume(EffectTask):
    canonical: ClassVar[str] = "squall.execution.Resume"
    namespace: str | None = None
    flowId: str | None = None
    executionId: str | None = None
    inputs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _ids(self) -> Self:
        """PluginUtilsService.executionFromTaskParameters' rules, with its words."""
        either = self.namespace is not None or self.flowId is not None
        if self.executionId is not None and either and (self.namespace is None or self.flowId is None):
            raise ValueError("Both `namespace` and `flowId` must be set when `executionId` is set.")
        if self.executionId is None and either:
            raise ValueError("`namespace` and `flowId` should only be set when `executionId` is set.")
        return self


_EFFECT_CLASSES: list[type[Task]] = [
    ExecutionCount,
    ExecutionResume,
    NamespaceUploadFiles,
    NamespaceDownloadFiles,
    NamespaceDeleteFiles,
    KvSet,
    KvGet,
    KvDelete,
    KvGetKeys,
    HttpRequest,
    HttpDownload,
    StorageWrite,
    StorageConcat,
    StorageSplit,
    StorageSize,
    StorageDelete,
    StorageReverse,
    StorageFilterItems,
    StorageDeduplicateItems,
    StoragePurgeCurrentExecutionFiles,
    StorageLocalFiles,
]


class ScriptTask(Task):
    """Kestra's script tasks: what runners execute."""

    kind: ClassVar[TaskKind] = TaskKind.JOB
    containerImage: str | None = None
    beforeCommands: list[str] | None = None
    interpreter: list[str] | None = None
    env: dict[str, str] | None = None
    inputFiles: dict[str, str] | str | None = None
    outputFiles: list[str] | None = None
    namespaceFiles: NamespaceFiles | None = None
    taskRunner: TaskRunnerSpec | None = None
    warningOnStdErr: bool = False
    targetOS: Literal["LINUX", "WINDOWS", "AUTO"] = "AUTO"
    failFast: bool = True


class _Commands(ScriptTask):
    commands: list[str] = Field(min_length=1)


class _Script(ScriptTask):
    script: str


def _script_class(language: str, kind: str) -> type[ScriptTask]:
    base = _Commands if kind == "Commands" else _Script
    name = f"{language.capitalize()}{kind}"
    cls = type(name, (base,), {"__module__": __name__, "canonical": f"squall.script.{language}.{kind}"})
    globals()[name] = cls  # found by name, as pickle looks a class up (flows/flow_cache.py)
    return cls


_SCRIPT_CLASSES = [
    _script_class(lang, kind) for lang in ("shell", "python", "node") for kind in ("Commands", "Script")
]

_TASK_CLASSES: list[type[Task]] = [
    Log,
    Echo,
    Return,
    OutputValues,
    Fail,
    SetLabels,
    Exit,
    SetVariables,
    UnsetVariables,
    Sleep,
    Sequential,
    AllowFailure,
    Parallel,
    ForEach,
    EachSequential,
    EachParallel,
    Switch,
    If,
    Dag,
    WaitFor,
    Pause,
    Subflow,
    ForEachItem,
    WorkingDirectory,
    *_SCRIPT_CLASSES,
    *_EFFECT_CLASSES,
]


def task_classes() -> dict[str, type[Task]]:
    """Canonical type name -> model class."""
    return {cls.canonical: cls for cls in _TASK_CLASSES}


def _task_tag(value: Any) -> str | None:
    raw = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return canonical_type(raw) if isinstance(raw, str) else None


AnyTask = TypeAliasType(
    "AnyTask",
    Annotated[
        Annotated[Log, Tag("squall.core.Log")]
        | Annotated[Echo, Tag("squall.core.Echo")]
        | Annotated[Return, Tag("squall.core.Return")]
        | Annotated[OutputValues, Tag("squall.core.OutputValues")]
        | Annotated[Fail, Tag("squall.core.Fail")]
        | Annotated[SetLabels, Tag("squall.core.Labels")]
        | Annotated[Exit, Tag("squall.core.Exit")]
        | Annotated[SetVariables, Tag("squall.core.SetVariables")]
        | Annotated[UnsetVariables, Tag("squall.core.UnsetVariables")]
        | Annotated[Sleep, Tag("squall.core.Sleep")]
        | Annotated[Sequential, Tag("squall.flow.Sequential")]
        | Annotated[AllowFailure, Tag("squall.flow.AllowFailure")]
        | Annotated[Parallel, Tag("squall.flow.Parallel")]
        | Annotated[ForEach, Tag("squall.flow.ForEach")]
        | Annotated[EachSequential, Tag("squall.flow.EachSequential")]
        | Annotated[EachParallel, Tag("squall.flow.EachParallel")]
        | Annotated[Switch, Tag("squall.flow.Switch")]
        | Annotated[If, Tag("squall.flow.If")]
        | Annotated[Dag, Tag("squall.flow.Dag")]
        | Annotated[WaitFor, Tag("squall.flow.WaitFor")]
        | Annotated[Pause, Tag("squall.flow.Pause")]
        | Annotated[Subflow, Tag("squall.flow.Subflow")]
        | Annotated[ForEachItem, Tag("squall.flow.ForEachItem")]
        | Annotated[WorkingDirectory, Tag("squall.flow.WorkingDirectory")]
        | Annotated[_SCRIPT_CLASSES[0], Tag("squall.script.shell.Commands")]  # type: ignore[valid-type]
        | Annotated[_SCRIPT_CLASSES[1], Tag("squall.script.shell.Script")]  # type: ignore[valid-type]
        | Annotated[_SCRIPT_CLASSES[2], Tag("squall.script.python.Commands")]  # type: ignore[valid-type]
        | Annotated[_SCRIPT_CLASSES[3], Tag("squall.script.python.Script")]  # type: ignore[valid-type]
        | Annotated[_SCRIPT_CLASSES[4], Tag("squall.script.node.Commands")]  # type: ignore[valid-type]
        | Annotated[_SCRIPT_CLASSES[5], Tag("squall.script.node.Script")]  # type: ignore[valid-type]
        | Annotated[KvSet, Tag("squall.kv.Set")]
        | Annotated[KvGet, Tag("squall.kv.Get")]
        | Annotated[KvDelete, Tag("squall.kv.Delete")]
        | Annotated[KvGetKeys, Tag("squall.kv.GetKeys")]
        | Annotated[HttpRequest, Tag("squall.http.Request")]
        | Annotated[HttpDownload, Tag("squall.http.Download")]
        | Annotated[StorageWrite, Tag("squall.storage.Write")]
        | Annotated[StorageConcat, Tag("squall.storage.Concat")]
        | Annotated[StorageSplit, Tag("squall.storage.Split")]
        | Annotated[StorageSize, Tag("squall.storage.Size")]
        | Annotated[StorageDelete, Tag("squall.storage.Delete")]
        | Annotated[StorageReverse, Tag("squall.storage.Reverse")]
        | Annotated[StorageFilterItems, Tag("squall.storage.FilterItems")]
        | Annotated[StorageDeduplicateItems, Tag("squall.storage.DeduplicateItems")]
        | Annotated[StoragePurgeCurrentExecutionFiles, Tag("squall.storage.PurgeCurrentExecutionFiles")]
        | Annotated[StorageLocalFiles, Tag("squall.storage.LocalFiles")]
        | Annotated[NamespaceUploadFiles, Tag("squall.namespace.UploadFiles")]
        | Annotated[NamespaceDownloadFiles, Tag("squall.namespace.DownloadFiles")]
        | Annotated[NamespaceDeleteFiles, Tag("squall.namespace.DeleteFiles")]
        | Annotated[ExecutionCount, Tag("squall.execution.Count")]
        | Annotated[ExecutionResume, Tag("squall.execution.Resume")],
        Discriminator(
            _task_tag,
            custom_error_type="unknown_type",
            custom_error_message="unknown task type",
        ),
    ],
)


# --------------------------------------------------------------------------- triggers


class Trigger(_Strict):
    canonical: ClassVar[str] = ""
    id: str = Field(pattern=TASK_ID_PATTERN, max_length=100)
    type: str
    description: str | None = None
    disabled: bool = False
    conditions: list[Condition] | None = None
    stopAfter: list[str] | None = None
    logToFile: bool = False


class Backfill(_Strict):
    start: str | None = None
    end: str | None = None
    labels: dict[str, str] | None = None


class Schedule(Trigger):
    canonical: ClassVar[str] = "squall.trigger.Schedule"
    cron: str
    withSeconds: bool = False
    timezone: str = "Etc/UTC"
    inputs: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    backfill: Backfill | None = None
    recoverMissedSchedules: Literal["ALL", "NONE", "LAST"] | None = None
    lateMaximumDelay: NonNegativeDuration | None = None
    scheduleConditions: list[Condition] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value

    @model_validator(mode="after")
    def _cron_parses(self) -> Self:
        fields = len(self.cron.split())
        expected = 6 if self.withSeconds else 5
        nickname = self.cron.startswith("@")
        if not nickname and fields != expected:
            raise ValueError(
                f"invalid cron expression '{self.cron}': expected {expected} fields, got {fields}"
            )
        from croniter import croniter  # only flows with a Schedule pay for importing it

        if not croniter.is_valid(self.cron, second_at_beginning=self.withSeconds):
            raise ValueError(f"invalid cron expression '{self.cron}'")
        return self


class Webhook(Trigger):
    canonical: ClassVar[str] = "squall.trigger.Webhook"
    key: str = Field(min_length=1)
    inputs: dict[str, Any] | None = None


class FlowTrigger(Trigger):
    canonical: ClassVar[str] = "squall.trigger.Flow"
    inputs: dict[str, Any] | None = None
    preconditions: dict[str, Any] | None = None
    states: list[str] | None = None


class HttpTrigger(Trigger):
    """Kestra's ``io.kestra.plugin.core.http.Trigger``: polls ``uri`` every ``interval``
    (control_plane/triggers/http.py says when it fires, service/http_triggers.py how)."""

    canonical: ClassVar[str] = "squall.trigger.Http"
    uri: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"] = "GET"
    body: str | None = None
    formData: dict[str, Any] | None = None
    contentType: str | None = None
    headers: dict[str, str] | None = None
    options: HttpRequestOptions | None = None
    sslOptions: HttpSslOptions | None = None
    encryptBody: Literal[False] = Field(
        default=False, description="encrypted outputs are not available: the body is a variable in clear"
    )
    interval: Duration = timedelta(seconds=60)  # Kestra's @Builder.Default Duration.ofSeconds(60)
    responseCondition: str = "{{ response.statusCode < 400 }}"
    labels: dict[str, str] | None = None

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("interval must be a positive duration")
        return value

    @field_validator("uri")
    @classmethod
    def _http_uri(cls, value: str) -> str:
        from urllib.parse import urlsplit

        if "{{" in value or "{%" in value:
            return value  # rendered at each poll; a bad result is the poll's error
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


def _trigger_tag(value: Any) -> str | None:
    raw = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return canonical_trigger_type(raw) if isinstance(raw, str) else None


AnyTrigger = Annotated[
    Annotated[Schedule, Tag("squall.trigger.Schedule")]
    | Annotated[Webhook, Tag("squall.trigger.Webhook")]
    | Annotated[FlowTrigger, Tag("squall.trigger.Flow")]
    | Annotated[HttpTrigger, Tag("squall.trigger.Http")],
    Discriminator(
        _trigger_tag, custom_error_type="unknown_type", custom_error_message="unknown trigger type"
    ),
]


# --------------------------------------------------------------------------- flow


class Listener(_Strict):
    """Deprecated Kestra listeners: validated (their task ids count) but not run."""

    description: str | None = None
    conditions: list[Condition] | None = None
    tasks: list[AnyTask] | None = Field(default=None, validate_default=True)

    _tasks_not_empty = field_validator("tasks")(lambda cls, v: _not_empty(v))


class Flow(_Strict):
    id: str = Field(pattern=ID_PATTERN, min_length=1, max_length=100)
    namespace: str = Field(pattern=NAMESPACE_PATTERN, min_length=1, max_length=150)
    revision: int | None = None
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: list[Input] | None = None
    variables: dict[str, Any] | None = None
    tasks: list[AnyTask] | None = Field(default=None, validate_default=True)
    errors: list[AnyTask] | None = None
    finally_: list[AnyTask] | None = Field(default=None, alias="finally")
    afterExecution: list[AnyTask] | None = None
    listeners: list[Listener] | None = None
    outputs: list[FlowOutput] | None = None
    triggers: list[AnyTrigger] | None = None
    concurrency: Concurrency | None = None
    retry: Retry | None = None
    pluginDefaults: list[PluginDefault] | None = None
    taskDefaults: list[PluginDefault] | None = None
    disabled: bool = False
    deleted: bool = False
    workerGroup: WorkerGroup | None = None

    _tasks_not_empty = field_validator("tasks")(lambda cls, v: _not_empty(v))
    _normalize = field_validator("labels", mode="before")(lambda cls, v: _labels_to_dict(v) if v else {})

    @property
    def uid(self) -> str:
        return f"{self.namespace}.{self.id}"

    def child_lists(self) -> Iterator[tuple[str, list[Task]]]:
        yield "tasks", list(self.tasks or ())
        if self.errors:
            yield "errors", self.errors
        if self.finally_:
            yield "finally", self.finally_
        if self.afterExecution:
            yield "afterExecution", self.afterExecution

    def walk(self) -> Iterator[Task]:
        """Every task in the flow, depth first in declaration order (listeners excluded)."""
        stack: list[Task] = []
        for _, tasks in reversed(list(self.child_lists())):
            stack.extend(reversed(tasks))
        while stack:
            task = stack.pop()
            yield task
            for _, children in reversed(list(task.child_lists())):
                stack.extend(reversed(children))

"""A WorkingDirectory in the engine: its children as one runner job, or one job each.

Theory of operation
-------------------
Kestra's worker runs a WorkingDirectory's children one after the other in one directory
(``Worker.handleTask``): a disabled child is skipped, a failing child stops the rest unless it
has ``allowFailure``, and each child gets its own task run. Squall does the same in **one**
runner job (ADR 0016) when every child can be handed over before the job starts
(:func:`one_job_refusal` says why not otherwise):

* every enabled child is a job task (a script/command task): an inline or I/O task runs in the
  control plane, which cannot step in between two children of one container;
* they share ``taskRunner`` and ``containerImage`` (one job runs on one runner, in one image;
  without an image on the Docker runner, the language too: each has its own default image);
* no child has ``timeout``, ``retry`` or ``runIf``: each is a decision taken between two
  children (kill this one, run it again, skip it), which only the per-child jobs of ADR 0012
  can take;
* no child reads a sibling's outputs (``outputs.<sibling>``): its properties are rendered
  before the job starts, when no sibling has any. A property that fails to render then falls
  back too (:func:`one_job`, at run time).

The lane machinery of the planner is kept: the first child's ``SubmitJob`` carries every child
(:func:`one_job`); when its job ends (:func:`job_ended`), the first child ends with its own part
(:data:`~control_plane.engine.actions.WORKSPACE_CHILDREN`) and each later child, started by the
lane in the same transaction, ends at once from its part (:func:`end_from_job`) instead of
being submitted. Otherwise the WorkingDirectory runs one job per child (ADR 0012): :func:`hint`
names the previous job child whose directory the shell stages, and :func:`collected` moves the
files the WorkingDirectory collects onto its outputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from control_plane.engine.actions import WORKSPACE_CHILDREN, WORKSPACE_OUTPUT_FILES
from control_plane.engine.events import INFRA_FAILURES, JobFailure, JobOutcome, JobStatusChanged
from control_plane.engine.ids import taskrun_id
from control_plane.engine.model import Attempt, Phase, TaskRun
from control_plane.engine.states import State
from control_plane.errors import ExpressionError
from control_plane.expressions import render_value
from control_plane.flows.aliases import DEFAULT_RUNNER, canonical_type, runner_name
from control_plane.flows.models import Task, TaskKind, WorkingDirectory
from control_plane.levels import Level

if TYPE_CHECKING:
    from control_plane.engine.planner import _Transaction

__all__ = [
    "ChildResult",
    "JobEnd",
    "children_results",
    "collected",
    "end_from_job",
    "hint",
    "job_ended",
    "one_job",
    "one_job_refusal",
    "ran_as_one_job",
    "ran_in_job",
]


def _reads_sibling(text: str, sibling: str) -> bool:
    name = re.escape(sibling)
    return re.search(rf"outputs\s*(?:\.\s*{name}\b|\[\s*['\"]{name}['\"])", text) is not None


def one_job_refusal(children: Sequence[Task], retries: Mapping[str, object]) -> str | None:
    """Why these (enabled) children cannot run as one job; None when they can."""
    placement: dict[str, Any] | None = None
    ids = [t.id for t in children]
    for task in children:
        if task.kind is not TaskKind.JOB:
            return f"'{task.id}' is not a script task"
        if task.timeout is not None:
            return f"'{task.id}' has a timeout"
        if retries.get(task.id) is not None:
            return f"'{task.id}' has a retry"
        if task.runIf is not None:
            return f"'{task.id}' has runIf"
        dumped = task.model_dump(by_alias=True, exclude_none=True)
        where = _placement(task, dumped)
        if placement is None:
            placement = where
        elif where != placement:
            return f"'{task.id}' has another taskRunner or containerImage than '{ids[0]}'"
        text = json.dumps(dumped)
        for sibling in ids:
            if sibling != task.id and _reads_sibling(text, sibling):
                return f"'{task.id}' reads the outputs of '{sibling}'"
    return None


def _placement(task: Task, dumped: Mapping[str, Any]) -> dict[str, Any]:
    """Where a child runs: its runner (by entry-point name, the process runner when none is
    given), that runner's options and its image; without an image on the Docker runner, its
    language too (each language has its own default image there, as in Kestra)."""
    block = dumped.get("taskRunner")
    block = dict(block) if isinstance(block, Mapping) else {}
    runner = runner_name(str(block.pop("type", DEFAULT_RUNNER)))
    where = {"runner": runner, "options": block, "containerImage": dumped.get("containerImage")}
    if where["containerImage"] is None and runner == "docker":
        canonical = canonical_type(task.type) or task.type
        where["language"] = canonical.split(".")[2] if canonical.count(".") == 3 else canonical
    return where


class ChildResult:
    """One child's part of the job, as the shell cut it out of the job's log and files.

    ``exit_code`` is None when the child started and never ended (the job died or was
    stopped during it); a child that never started has no result at all.
    """

    __slots__ = ("ended", "error", "exit_code", "outputs", "started")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        code = raw.get("exitCode")
        self.exit_code: int | None = code if isinstance(code, int) else None
        outputs = raw.get("outputs")
        self.outputs: dict[str, Any] | None = dict(outputs) if isinstance(outputs, Mapping) else None
        error = raw.get("error")
        self.error: str | None = str(error) if error else None
        self.started = _epoch(raw.get("started"))
        self.ended = _epoch(raw.get("ended"))


def _epoch(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


Parts = dict[str, ChildResult]


def children_results(outputs: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, Parts | None]:
    """A job's outputs without the children's parts, and ``{task run id: part}`` (None: not one job)."""
    if not outputs or WORKSPACE_CHILDREN not in outputs:
        return outputs, None
    raw = outputs[WORKSPACE_CHILDREN]
    rest = {k: v for k, v in outputs.items() if k != WORKSPACE_CHILDREN}
    if not isinstance(raw, Mapping):
        return rest, {}
    return rest, {str(k): ChildResult(v) for k, v in raw.items() if isinstance(v, Mapping)}


class JobEnd:
    """How a one-job WorkingDirectory's job ended: each child's part, and why it stopped."""

    __slots__ = ("attempt", "killed", "reason", "results")

    def __init__(self, results: dict[str, ChildResult], reason: str, attempt: Attempt, killed: bool) -> None:
        self.results = results
        self.reason = reason
        self.attempt = attempt  # the first child's, which ran the job
        self.killed = killed  # the execution was being killed: a child it stopped ends KILLED


# ---------------------------------------------------------------- one job (ADR 0016)


def refusal(tx: _Transaction, wd: WorkingDirectory) -> str | None:
    """Why ``wd``'s children cannot run as one job; None if they can (once per plan call)."""
    if wd.id not in tx.one_job_refusals:
        tx.one_job_refusals[wd.id] = one_job_refusal(tx.c.list_of(wd.id, "tasks"), tx.c.retries)
    return tx.one_job_refusals[wd.id]


def one_job(tx: _Transaction, first: TaskRun, properties: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Every child of a WorkingDirectory, rendered for one job; None: one job each (ADR 0012).

    Called for its first child. A later child's properties are rendered in the context its
    task run will have (derived id, same parents), before any sibling ran; one that does
    not render makes the WorkingDirectory fall back to a job per child, where it fails at its
    turn, after the children before it ran, as in Kestra. The fallback is said in the
    WorkingDirectory's log.
    """
    owner = tx.owner(first.parent_id)
    wd = tx.c.tasks[owner.task_id] if owner is not None else None
    if owner is None or not isinstance(wd, WorkingDirectory) or first.position != 0:
        return None
    why = refusal(tx, wd)
    children: list[dict[str, Any]] = []
    for position, task in enumerate(tx.lane_tasks(owner.id, Phase.TASKS, first.lane)):
        if why is not None:
            break
        tr, rendered = first, properties
        if position:
            tr = replace(
                first,
                id=taskrun_id(tx.ex.id, owner.id, Phase.TASKS, first.lane, task.id, first.iteration),
                task_id=task.id,
                task_type=task.type,
                position=position,
                attempts=(Attempt(State.RUNNING, tx.now),),
            )
            try:
                rendered = tx.job_properties(tr, task)
            except ExpressionError as exc:
                why = f"'{task.id}' cannot be rendered before the job starts ({exc})"
                break
        children.append(
            {
                "taskrun": tr.id,
                "attempt": tr.attempt,
                "task_id": task.id,
                "task_type": task.type,
                "allowFailure": bool(task.allowFailure),
                "properties": rendered,
            }
        )
    if why is not None:
        if first.attempt == 1:
            tx.log(owner, Level.INFO, f"one job per child (ADR 0012): {why}", wd)
        return None
    return children


def job_ended(
    tx: _Transaction, tr: TaskRun, task: Task, event: JobStatusChanged, results: dict[str, ChildResult]
) -> bool:
    """The one job (``tr``: its first child's run) ended: keep each child's part; True if ``tr`` ended.

    An infrastructure failure is left to the planner (the whole job runs again under ``tr``'s
    next attempt). Otherwise ``tr`` ends with its own part when it has one; the later children
    find theirs when the lane starts them, in this transaction (:func:`end_from_job`).
    """
    killing = tr.state is State.KILLING
    infra = event.failure is not None and JobFailure(event.failure) in INFRA_FAILURES
    if tr.parent_id is None or (infra and not killing):
        return False
    status = JobOutcome(event.status)
    code = event.exit_code
    reason = event.reason or (f"exit code {code}" if code is not None else status.lower())
    tx.one_job_ends[tr.parent_id] = JobEnd(results, reason, tr.attempts[-1], killing)
    own = results.get(tr.id)
    if own is None or own.exit_code is None:
        return False
    _end_child(tx, tr, task, own, tr.attempts[-1])
    return True


def end_from_job(tx: _Transaction, tr: TaskRun, task: Task, ended: JobEnd) -> None:
    """A later child of a one-job WorkingDirectory starts after the job ended: it ends at once.

    Its attempt names the job it ran in. A child that started and never ended (the job died
    during it), or that the job never reached although the child before it ended well (its
    log lost its end), fails with the job's reason; KILLED if the execution was being killed.
    """
    job = ended.attempt
    tr = tx.with_last_attempt(tr, job=job.job, runner=job.runner, job_id=job.job_id, job_url=job.job_url)
    result = ended.results.get(tr.id)
    if result is not None and result.exit_code is not None:
        _end_child(tx, tr, task, result, job)
        return
    outputs = result.outputs if result is not None else None
    if ended.killed:  # it was running when the job was killed
        tx.end_attempt(tr, task, State.KILLED, outputs, None, retry=False)
        return
    why = "it started and never ended" if result is not None else "the job ended before it started"
    tx.end_attempt(tr, task, State.FAILED, outputs, f"{why} ({ended.reason})", retry=False)


def _end_child(tx: _Transaction, tr: TaskRun, task: Task, result: ChildResult, job: Attempt) -> None:
    """End a child with its part of the job: its exit code, outputs and times.

    Its times are the job's start and end lines (whole seconds, the job's clock), kept within
    when the job was submitted (``job``'s start) and now, so that a clock apart from the
    control plane's (or a virtual one) never puts a child before its job or in the future.
    """
    code = result.exit_code
    state = State.SUCCESS if code == 0 else State.FAILED
    error = result.error or (None if code == 0 else f"exit code {code}")
    tx.end_attempt(tr, task, state, result.outputs, error, retry=False)
    if result.started is None or result.ended is None:
        return
    begin = min(max(datetime.fromtimestamp(result.started, UTC), job.started), tx.now)
    end = min(max(datetime.fromtimestamp(result.ended, UTC), begin), tx.now)
    done = tx.get(tr.id)
    last = replace(done.attempts[-1], started=begin, ended=end)
    created = begin if len(done.attempts) == 1 and done.created > begin else done.created
    tx.put(done.evolve(created=created, ended=end, attempts=(*done.attempts[:-1], last)))


def ran_in_job(tx: _Transaction, child: TaskRun, task: Task) -> bool:
    """Whether ``task``, next after ``child``, started in the one job that just ended (killed)."""
    ended = tx.one_job_ends.get(child.parent_id or "")
    if ended is None:
        return False
    tr_id = taskrun_id(tx.ex.id, child.parent_id, child.phase, child.lane, task.id, child.iteration)
    return tr_id in ended.results


def ran_as_one_job(tx: _Transaction, tr: TaskRun) -> bool:
    """Whether ``tr`` is a WorkingDirectory whose children ran as one job (a restart reruns it whole)."""
    wd = tx.c.tasks.get(tr.task_id)
    if not isinstance(wd, WorkingDirectory) or refusal(tx, wd) is not None:
        return False
    jobs = {a.job for child in tx.taskruns() if child.parent_id == tr.id for a in child.attempts}
    return len(jobs) == 1 and None not in jobs


# ---------------------------------------------------------------- both ways


def hint(tx: _Transaction, tr: TaskRun) -> dict[str, Any] | None:
    """For a job child of a WorkingDirectory: the earlier job child whose directory it continues.

    The shell makes the directory shared by staging the previous job child's whole working
    directory (captured when it ended) before this one's files (ADR 0012); the first job child
    gets the WorkingDirectory's rendered ``inputFiles`` and ``namespaceFiles`` (and, run as one
    job, every child: :func:`one_job`). That child is the latest earlier sibling with a job
    attempt (inline, skipped and disabled siblings touch no file); its last attempt is the one
    that left the directory. The ``errors`` and ``finally`` tasks run outside the directory,
    as Kestra's do (Sequential's resolveNexts). Ids are derived, so this costs one lookup per
    earlier sibling.
    """
    owner = tx.owner(tr.parent_id)
    if owner is None or tr.phase is not Phase.TASKS:
        return None
    wd = tx.c.tasks[owner.task_id]
    if not isinstance(wd, WorkingDirectory):
        return None
    collect: dict[str, Any] = {}
    if wd.outputFiles:
        collect = {"outputFiles": render_value(list(wd.outputFiles), tx.context(owner, wd))}
    for sibling in reversed(tx.lane_tasks(owner.id, Phase.TASKS, tr.lane)[: tr.position]):
        if sibling.kind is not TaskKind.JOB:
            continue
        sid = taskrun_id(tx.ex.id, owner.id, Phase.TASKS, tr.lane, sibling.id, tr.iteration)
        run = tx.trs.get(sid)
        if run is not None and run.attempts:
            return {"previous": {"taskrun": run.id, "attempt": run.attempt}, **collect}
    # The first job child: the WorkingDirectory's own files start its directory.
    first: dict[str, Any] = {"previous": None, **collect}
    own = wd.model_dump(by_alias=True, exclude_none=True, include={"inputFiles", "namespaceFiles"})
    if own:
        first.update(render_value(own, tx.context(owner, wd)))
    return first


def collected(
    tx: _Transaction, tr: TaskRun, outputs: Mapping[str, Any] | None, ok: bool
) -> Mapping[str, Any] | None:
    """A WorkingDirectory child's outputs without the files collected for its parent.

    When the job succeeded, those files (:data:`WORKSPACE_OUTPUT_FILES`) become the
    WorkingDirectory's ``outputs.outputFiles`` (the last job child to succeed wins), which
    ``end_flowable`` keeps when the WorkingDirectory ends.
    """
    if not outputs or WORKSPACE_OUTPUT_FILES not in outputs:
        return outputs
    rest = {k: v for k, v in outputs.items() if k != WORKSPACE_OUTPUT_FILES}
    files = outputs[WORKSPACE_OUTPUT_FILES]
    owner = tx.owner(tr.parent_id)
    if ok and owner is not None and isinstance(files, Mapping) and files:
        kept = {**(owner.outputs or {}), "outputFiles": dict(files)}
        owner = tx.put(owner.evolve(outputs=kept))
        tx.index_outputs(owner, kept)
    return rest

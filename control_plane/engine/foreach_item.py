"""Kestra's ForEachItem in the engine: one subflow execution per batch, counted on one task run.

Theory of operation
-------------------
A ForEachItem is a flowable whose lane runs three generated tasks in turn
(:meth:`~control_plane.flows.models.ForEachItem.parts`), as Kestra's ``getTasks()`` does:

``<id>_split``
    an effect (the control plane cuts the file, ``control_plane/tasks/foreach_item.py``). Its
    result carries :data:`~control_plane.engine.actions.BATCHES_KEY` (how many batch files,
    where), which :func:`split_result` moves from its outputs to its task run's ``batches``.
``<id>_items``
    one task run for every batch, as in Kestra: :func:`start` asks for the subflow executions
    of at most :data:`CHUNK` batches per step, and a timer due at once (``foreach-item:``)
    asks for the next chunk, so a step's work is bounded whatever the number of batches. With
    ``wait``, each child's end also asks for the next chunk: the cloud's tick fires timers
    once a minute, and 100 batches a minute would take hours for a big file.
    Each child's id is derived from (execution, task run, attempt, batch), so starting one
    twice (a recovered step) is refused by the store. With ``wait`` each child's end comes
    back as a ``TaskResult`` carrying its batch number; :func:`on_result` counts it once
    (a watermark and a bitmap above it) in Kestra's ``iterations`` output, and the task run
    ends when every batch has: in Kestra's terminal state (``ExecutableUtils.manageIterations``)
    under ``transmitFailed``, else SUCCESS. Without ``wait`` a started batch counts as
    SUCCESS at once and the task run ends once all are started.
``<id>_merge``
    an effect that concatenates the outputs file the shell wrote for each ended child
    (``StartSubflow.outputs_uri``); :func:`merge_properties` tells it where they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from control_plane.engine.actions import BATCHES_KEY, StartSubflow, StartTimer
from control_plane.engine.events import TaskResult
from control_plane.engine.ids import short_hash, taskrun_id
from control_plane.engine.labels import child_labels
from control_plane.engine.model import Batches, Phase, TaskRun
from control_plane.engine.states import State
from control_plane.errors import ExpressionError
from control_plane.expressions import render, render_value
from control_plane.flows.models import FOR_EACH_ITEM_PARTS, ForEachItemExecutable
from control_plane.levels import Level

if TYPE_CHECKING:
    from control_plane.engine.planner import _Transaction

__all__ = ["CHUNK", "TIMER", "merge_properties", "on_result", "on_timer", "recover", "split_result", "start"]

CHUNK = 100
"""Subflow executions asked for in one step: bounds a step's actions (and a Lambda's time)."""

TIMER = "foreach-item"
"""Kind of the timer that asks for the next chunk: ``foreach-item:<task run>:<started>``."""


def split_result(outputs: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, Batches | None]:
    """The ``_split`` result's outputs without the batches hint, and the hint as :class:`Batches`."""
    if not outputs or BATCHES_KEY not in outputs:
        return outputs, None
    hint = outputs[BATCHES_KEY]
    rest = {k: v for k, v in outputs.items() if k != BATCHES_KEY}
    return rest, Batches(int(hint["total"]), str(hint["prefix"]), str(hint["extension"]))


def sibling(tx: _Transaction, tr: TaskRun, suffix: str) -> TaskRun | None:
    """The task run of another part of the same ForEachItem run (ids are derived)."""
    base = next((tr.task_id[: -len(s)] for s in FOR_EACH_ITEM_PARTS if tr.task_id.endswith(s)), tr.task_id)
    sid = taskrun_id(tx.ex.id, tr.parent_id, Phase.TASKS, tr.lane, base + suffix, tr.iteration)
    return tx.trs.get(sid)


def start(tx: _Transaction, tr: TaskRun, task: ForEachItemExecutable) -> None:
    """A new attempt of ``_items``: count the batches the split wrote, ask for the first chunk."""
    split = sibling(tx, tr, "_split")
    if split is None or split.batches is None:
        tx.end_attempt(tr, task, State.FAILED, None, "The split of the items wrote no batch list")
        return
    if split.batches.total == 0:  # Kestra: no subflow execution, no outputs
        tx.end_attempt(tr, task, State.SUCCESS, None, None)
        return
    batches = Batches(split.batches.total, split.batches.prefix, split.batches.extension)
    iterations = {"CREATED": 0, "RUNNING": 0} if task.wait else {"RUNNING": 0}
    outputs = {"numberOfBatches": batches.total, "iterations": iterations}
    tr = tx.put(tr.evolve(batches=batches, outputs=outputs))
    tx.index_outputs(tr, outputs)
    start_more(tx, tr, task)


def start_more(tx: _Transaction, tr: TaskRun, task: ForEachItemExecutable) -> None:
    """Ask for the next :data:`CHUNK` subflow executions; end when no batch is left (no wait)."""
    batches = tr.batches
    assert batches is not None
    until = min(batches.started + CHUNK, batches.total)
    try:
        for n in range(batches.started + 1, until + 1):
            tx.actions.append(subflow_action(tx, tr, task, batches, n))
    except ExpressionError as exc:
        tx.end_attempt(tr, task, State.FAILED, tr.outputs, str(exc))
        return
    count = until - batches.started
    iterations = dict((tr.outputs or {}).get("iterations") or {})
    if task.wait:
        iterations["RUNNING"] = iterations.get("RUNNING", 0) + count
    else:  # Kestra: a child not waited for counts as SUCCESS once created
        iterations["SUCCESS"] = iterations.get("SUCCESS", 0) + count
    outputs = {**(tr.outputs or {}), "iterations": iterations}
    tr = tx.put(tr.evolve(batches=batches_with(batches, started=until), outputs=outputs))
    tx.index_outputs(tr, outputs)
    if until < batches.total:
        tx.actions.append(StartTimer(f"{TIMER}:{tr.id}:{until}", tx.now))
    elif not task.wait:
        tx.end_attempt(tr, task, State.SUCCESS, final_outputs(tr), None)


def batches_with(batches: Batches, *, started: int) -> Batches:
    return replace(batches, started=started)


def subflow_action(
    tx: _Transaction, tr: TaskRun, task: ForEachItemExecutable, batches: Batches, n: int
) -> StartSubflow:
    """Batch ``n``'s child: ``taskrun.items`` and ``taskrun.iteration`` set for its inputs."""
    ctx = tx.context(tr, task)
    ctx["taskrun"] = {**ctx["taskrun"], "items": batches.batch_uri(n), "iteration": n}
    inputs = render_value(dict(task.inputs or {}), ctx)
    labels = render_value(dict(task.labels or {}), ctx)
    labels = child_labels(tx.labels, tx.ex.id, labels, inherit=task.inheritLabels)
    return StartSubflow(
        tr.id,
        tr.attempt,
        render(task.namespace, ctx),
        render(task.flowId, ctx),
        task.revision,
        inputs,
        tx.mask_data(labels),
        task.wait,
        short_hash(tx.ex.id, tr.id, tr.attempt, n, size=15),
        iteration=n,
        outputs_uri=batches.outputs_uri(n) if task.wait else None,
    )


def on_timer(tx: _Transaction, tr: TaskRun, task: ForEachItemExecutable, started: int) -> None:
    if tr.state is State.RUNNING and tr.batches is not None and tr.batches.started == started:
        start_more(tx, tr, task)


def on_result(tx: _Transaction, tr: TaskRun, task: ForEachItemExecutable, event: TaskResult) -> None:
    """Batch ``event.iteration``'s child ended: count it once; the last one ends the task run."""
    batches = tr.batches
    n = event.iteration
    if not task.wait:  # only a child that could not start answers (no such flow, bad inputs)
        if event.error:
            tx.end_attempt(tr, task, State.FAILED, tr.outputs, f"Batch {n}: {event.error}")
        return
    if batches is None or n is None or not 1 <= n <= batches.started or batches.has_ended(n):
        return  # not one of this attempt's children, or already counted
    if event.error:
        tx.log(tr, Level.ERROR, f"Batch {n}: {tx.mask(event.error)}", task)
    state = State(event.state)
    iterations = dict((tr.outputs or {}).get("iterations") or {})
    iterations["RUNNING"] = iterations.get("RUNNING", 0) - 1
    iterations[state.value] = iterations.get(state.value, 0) + 1
    batches = batches.mark_ended(n)
    outputs = {**(tr.outputs or {}), "iterations": iterations}
    tr = tx.put(tr.evolve(batches=batches, outputs=outputs))
    if batches.done < batches.total:
        tx.index_outputs(tr, outputs)
        if batches.started < batches.total:  # the cloud fires timers once a minute: go on now
            start_more(tx, tr, task)
        return
    final = terminal_state(iterations) if task.transmitFailed else State.SUCCESS
    error = None
    if final is State.FAILED:
        error = f"{iterations.get('FAILED', 0)} of {batches.total} subflow executions failed"
    tx.end_attempt(tr, task, final, final_outputs(tr), error)


def terminal_state(iterations: Mapping[str, int]) -> State:
    """``ExecutableUtils.findTerminalState`` (the generated task allows neither failure nor warning)."""
    for state in (State.FAILED, State.KILLED, State.WARNING):
        if iterations.get(state.value, 0) > 0:
            return state
    return State.SUCCESS


def final_outputs(tr: TaskRun) -> dict[str, Any]:
    """Kestra's outputs of an ended ``_items`` task run (``manageIterations``)."""
    assert tr.batches is not None
    return {
        "iterations": dict((tr.outputs or {}).get("iterations") or {}),
        "numberOfBatches": tr.batches.total,
        "subflowOutputsBaseUri": f"{tr.batches.prefix}outputs/",
    }


def recover(tx: _Transaction, tr: TaskRun, task: ForEachItemExecutable) -> None:
    """Ask again for children whose start may have died with the driver (refused if they exist).

    With ``wait``: every started batch not yet counted. Without: the last chunk, the only one
    whose start may not have been done (the next chunk is asked for only after it was).
    """
    batches = tr.batches
    if batches is None or batches.started == 0:
        return
    if task.wait:
        if tr.state is not State.RUNNING:
            return
        todo = [n for n in range(1, batches.started + 1) if not batches.has_ended(n)]
    else:
        first = (batches.started - 1) // CHUNK * CHUNK + 1
        todo = list(range(first, batches.started + 1))
    for n in todo:
        try:
            tx.actions.append(subflow_action(tx, tr, task, batches, n))
        except ExpressionError:  # it rendered when it started; now it may not
            continue


def merge_properties(tx: _Transaction, tr: TaskRun) -> dict[str, Any]:
    """Where ``_merge`` finds the children's outputs: none when no child was waited for."""
    items = sibling(tx, tr, "_items")
    task = tx.c.tasks.get(items.task_id) if items is not None else None
    if items is None or items.batches is None or not isinstance(task, ForEachItemExecutable) or not task.wait:
        return {"total": 0}
    return {"total": items.batches.total, "prefix": items.batches.prefix}

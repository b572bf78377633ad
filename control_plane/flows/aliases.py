"""The one table that maps every accepted type name to Squall's canonical short name.

Kestra renamed its core plugins twice (``io.kestra.core.tasks.*`` -> ``io.kestra.plugin.core.*``)
and keeps the old names working; flows written for any Kestra version must run unchanged here.
Everything that needs to know "which task is this" goes through :func:`canonical_type`, so an
alias is added in exactly one place.
"""

from __future__ import annotations

__all__ = [
    "ALIASES",
    "CONDITION_ALIASES",
    "DEFAULT_RUNNER",
    "RUNNER_ALIASES",
    "TRIGGER_ALIASES",
    "canonical_condition_type",
    "canonical_trigger_type",
    "canonical_type",
    "known_names",
    "runner_name",
]

_CORE = "io.kestra.plugin.core"
_OLD = "io.kestra.core.tasks"

# canonical short name -> every other accepted spelling
_TASKS: dict[str, tuple[str, ...]] = {
    "squall.core.Log": (f"{_CORE}.log.Log", f"{_OLD}.log.Log"),
    "squall.core.Echo": (f"{_CORE}.debug.Echo", f"{_OLD}.debugs.Echo", f"{_OLD}.log.Echo"),
    "squall.core.Return": (f"{_CORE}.debug.Return", f"{_OLD}.debugs.Return"),
    "squall.core.OutputValues": (f"{_CORE}.output.OutputValues", f"{_OLD}.outputs.OutputValues"),
    "squall.core.Fail": (f"{_CORE}.execution.Fail", f"{_OLD}.executions.Fail"),
    "squall.core.Labels": (f"{_CORE}.execution.Labels", f"{_OLD}.executions.Labels"),
    "squall.core.Exit": (f"{_CORE}.execution.Exit",),
    "squall.core.SetVariables": (f"{_CORE}.execution.SetVariables",),
    "squall.core.UnsetVariables": (f"{_CORE}.execution.UnsetVariables",),
    "squall.core.Sleep": (f"{_CORE}.flow.Sleep", f"{_OLD}.flows.Sleep"),
    "squall.flow.Sequential": (f"{_CORE}.flow.Sequential", f"{_OLD}.flows.Sequential"),
    "squall.flow.Parallel": (f"{_CORE}.flow.Parallel", f"{_OLD}.flows.Parallel"),
    "squall.flow.Switch": (f"{_CORE}.flow.Switch", f"{_OLD}.flows.Switch"),
    "squall.flow.If": (f"{_CORE}.flow.If", f"{_OLD}.flows.If"),
    "squall.flow.ForEach": (f"{_CORE}.flow.ForEach", f"{_OLD}.flows.ForEach"),
    "squall.flow.EachSequential": (f"{_CORE}.flow.EachSequential", f"{_OLD}.flows.EachSequential"),
    "squall.flow.EachParallel": (f"{_CORE}.flow.EachParallel", f"{_OLD}.flows.EachParallel"),
    "squall.flow.Dag": (f"{_CORE}.flow.Dag", f"{_OLD}.flows.Dag"),
    "squall.flow.AllowFailure": (f"{_CORE}.flow.AllowFailure", f"{_OLD}.flows.AllowFailure"),
    "squall.flow.WaitFor": (f"{_CORE}.flow.WaitFor", f"{_CORE}.flow.LoopUntil"),
    "squall.flow.Pause": (f"{_CORE}.flow.Pause", f"{_OLD}.flows.Pause"),
    "squall.flow.Subflow": (
        f"{_CORE}.flow.Subflow",
        f"{_OLD}.flows.Subflow",
        f"{_OLD}.flows.Flow",
        f"{_CORE}.flow.Flow",
    ),
    "squall.flow.WorkingDirectory": (f"{_CORE}.flow.WorkingDirectory", f"{_OLD}.flows.WorkingDirectory"),
    "squall.flow.ForEachItem": (f"{_CORE}.flow.ForEachItem", f"{_OLD}.flows.ForEachItem"),
}

# Tasks with I/O, run by the control plane (control_plane/tasks/); old names from each class's
# @Plugin(aliases = ...) in Kestra's sources.
_TASKS.update(
    {
        "squall.kv.Set": (f"{_CORE}.kv.Set",),
        "squall.kv.Get": (f"{_CORE}.kv.Get",),
        "squall.kv.Delete": (f"{_CORE}.kv.Delete",),
        "squall.kv.GetKeys": (f"{_CORE}.kv.GetKeys",),
        "squall.http.Request": (f"{_CORE}.http.Request", "io.kestra.plugin.fs.http.Request"),
        "squall.http.Download": (f"{_CORE}.http.Download", "io.kestra.plugin.fs.http.Download"),
        "squall.storage.Write": (f"{_CORE}.storage.Write",),
        "squall.execution.Count": (f"{_CORE}.execution.Count", f"{_OLD}.executions.Counts"),
        "squall.execution.Resume": (f"{_CORE}.execution.Resume",),
        "squall.namespace.UploadFiles": (f"{_CORE}.namespace.UploadFiles",),
        "squall.namespace.DownloadFiles": (f"{_CORE}.namespace.DownloadFiles",),
        "squall.namespace.DeleteFiles": (f"{_CORE}.namespace.DeleteFiles",),
        "squall.storage.Concat": (f"{_CORE}.storage.Concat", f"{_OLD}.storages.Concat"),
        "squall.storage.Split": (f"{_CORE}.storage.Split", f"{_OLD}.storages.Split"),
        "squall.storage.Size": (f"{_CORE}.storage.Size", f"{_OLD}.storages.Size"),
        "squall.storage.Delete": (f"{_CORE}.storage.Delete", f"{_OLD}.storages.Delete"),
        "squall.storage.Reverse": (f"{_CORE}.storage.Reverse", f"{_OLD}.storages.Reverse"),
        "squall.storage.LocalFiles": (f"{_CORE}.storage.LocalFiles", f"{_OLD}.storages.LocalFiles"),
        "squall.storage.FilterItems": (f"{_CORE}.storage.FilterItems", f"{_OLD}.storages.FilterItems"),
        "squall.storage.DeduplicateItems": (
            f"{_CORE}.storage.DeduplicateItems",
            f"{_OLD}.storages.DeduplicateItems",
        ),
        "squall.storage.PurgeCurrentExecutionFiles": (
            f"{_CORE}.storage.PurgeCurrentExecutionFiles",
            f"{_OLD}.storages.PurgeExecution",
            f"{_CORE}.storage.PurgeExecution",
        ),
    }
)

_SCRIPT_LANGUAGES = ("shell", "python", "node")
for _lang in _SCRIPT_LANGUAGES:
    for _kind in ("Commands", "Script"):
        _TASKS[f"squall.script.{_lang}.{_kind}"] = (f"io.kestra.plugin.scripts.{_lang}.{_kind}",)

_TRIGGERS: dict[str, tuple[str, ...]] = {
    "squall.trigger.Schedule": (
        f"{_CORE}.trigger.Schedule",
        "io.kestra.core.models.triggers.types.Schedule",
        "schedule",
    ),
    "squall.trigger.Webhook": (f"{_CORE}.trigger.Webhook", "io.kestra.core.models.triggers.types.Webhook"),
    "squall.trigger.Flow": (f"{_CORE}.trigger.Flow", "io.kestra.core.models.triggers.types.Flow"),
    "squall.trigger.Http": (f"{_CORE}.http.Trigger", "io.kestra.plugin.fs.http.Trigger"),
}

# trigger conditions Squall evaluates (a Flow trigger's ``conditions``); each Kestra class keeps
# its ``...Condition`` names of older releases as aliases
_CONDITIONS: dict[str, tuple[str, ...]] = {
    f"squall.condition.{name}": (
        f"{_CORE}.condition.{name}",
        f"{_CORE}.condition.{name}Condition",
        f"io.kestra.core.models.conditions.types.{name}Condition",
    )
    for name in ("ExecutionStatus", "ExecutionFlow", "ExecutionNamespace", "ExecutionLabels")
}
# the deprecated multi-flow condition, counted in a window like `preconditions`
_CONDITIONS["squall.condition.MultipleCondition"] = (
    f"{_CORE}.condition.MultipleCondition",
    "io.kestra.core.models.conditions.types.MultipleCondition",
)

# entry-point name in the ``squall.runners`` group -> every type name a ``taskRunner`` may use
_RUNNERS: dict[str, tuple[str, ...]] = {
    "process": ("squall.runner.Process", "io.kestra.plugin.core.runner.Process"),
    "aws-batch": (
        "squall.runner.aws.Batch",
        "io.kestra.plugin.ee.aws.runner.Batch",
        "io.kestra.plugin.aws.runner.Batch",
    ),
    "google-batch": (
        "squall.runner.gcp.Batch",
        "io.kestra.plugin.ee.gcp.runner.Batch",
        "io.kestra.plugin.gcp.runner.Batch",
    ),
    "cloud-run": (
        "squall.runner.gcp.CloudRun",
        "io.kestra.plugin.ee.gcp.runner.CloudRun",
        "io.kestra.plugin.gcp.runner.CloudRun",
    ),
    "kubernetes": (
        "squall.runner.Kubernetes",
        "io.kestra.plugin.ee.kubernetes.runner.Kubernetes",
        "io.kestra.plugin.kubernetes.runner.Kubernetes",
    ),
    "docker": (
        "squall.runner.Docker",
        "io.kestra.plugin.scripts.runner.docker.Docker",
        "io.kestra.plugin.scripts.runner.docker.DockerTaskRunner",
    ),
    "azure-batch": (
        "squall.runner.azure.Batch",
        "io.kestra.plugin.ee.azure.runner.Batch",
        "io.kestra.plugin.azure.runner.Batch",
    ),
}


def _flatten(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for canonical, others in table.items():
        flat[canonical] = canonical
        for other in others:
            flat[other] = canonical
    return flat


ALIASES: dict[str, str] = _flatten(_TASKS)
TRIGGER_ALIASES: dict[str, str] = _flatten(_TRIGGERS)
RUNNER_ALIASES: dict[str, str] = _flatten(_RUNNERS)
CONDITION_ALIASES: dict[str, str] = _flatten(_CONDITIONS)


def canonical_type(name: str) -> str | None:
    """Squall's short name for a task type as written in a flow, or None when unknown."""
    return ALIASES.get(name)


def canonical_trigger_type(name: str) -> str | None:
    """Squall's short name for a trigger type as written in a flow, or None when unknown."""
    return TRIGGER_ALIASES.get(name)


def canonical_condition_type(name: str) -> str | None:
    """Squall's short name for a condition type Squall evaluates, or None (not supported)."""
    return CONDITION_ALIASES.get(name)


DEFAULT_RUNNER = "process"
"""The ``squall.runners`` entry point of a script task without a ``taskRunner`` block."""


def runner_name(type_name: str) -> str:
    """The ``squall.runners`` entry-point name for a ``taskRunner.type``.

    Names not in the table are taken as entry-point names as they are, so a third-party
    runner is usable by its own name without editing this table.
    """
    return RUNNER_ALIASES.get(type_name, type_name)


def known_names(canonical: str) -> list[str]:
    """Every spelling accepted for one canonical task or trigger type (for the JSON Schema)."""
    table = _TASKS if canonical in _TASKS else _TRIGGERS
    return [canonical, *table.get(canonical, ())]

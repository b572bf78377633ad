"""Kestra's core plugin types and their properties: the reference Squall's support is measured by.

Read from Kestra's sources (Apache-2.0, github.com/kestra-io/kestra, snapshot of December 2024):
every concrete class of the ``io.kestra.plugin.core`` package (dashboard charts left out, they
are UI objects) and the properties each declares, its in-package parents' included. Types
added to Kestra after that snapshot and named in Kestra's docs are listed in
:data:`NEWER_TYPES` without their properties.

Beside it, :data:`UNSUPPORTED_TYPES` and :data:`UNSUPPORTED_PROPERTIES` hold the one written
reason for each thing Squall does not do. Whether a type *is* supported is never written
here: it is read from the alias table (:mod:`control_plane.flows.aliases`), so a type another
change adds there is reported as supported without touching this file (its reason is then
simply no longer used). ``docs/kestra-compatibility.md`` is generated from both
(:mod:`control_plane.flows.compat_doc`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CORE_PREFIX",
    "HONOURED_ON",
    "KESTRA_CORE_TYPES",
    "NEWER_TYPES",
    "NOT_HONOURED_PROPERTIES",
    "TASK_BASE_PROPERTIES",
    "TRIGGER_BASE_PROPERTIES",
    "UNSUPPORTED_PROPERTIES",
    "UNSUPPORTED_TYPES",
]

CORE_PREFIX: Final = "io.kestra.plugin.core."

#: properties every task has (Kestra's ``io.kestra.core.models.tasks.Task``)
TASK_BASE_PROPERTIES: Final = (
    "id",
    "type",
    "description",
    "retry",
    "timeout",
    "disabled",
    "workerGroup",
    "logLevel",
    "allowFailure",
    "logToFile",
    "runIf",
    "allowWarning",
)

#: properties every trigger has (Kestra's ``io.kestra.core.models.triggers.AbstractTrigger``)
TRIGGER_BASE_PROPERTIES: Final = (
    "id",
    "type",
    "description",
    "conditions",
    "disabled",
    "workerGroup",
    "logLevel",
    "labels",
    "stopAfter",
    "logToFile",
)

#: type (after ``io.kestra.plugin.core.``) -> (Kestra base class, properties it declares)
KESTRA_CORE_TYPES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "condition.DateTimeBetween": ("Condition", ("after", "before", "date")),
    "condition.DayWeek": ("Condition", ("date", "dayOfWeek")),
    "condition.DayWeekInMonth": ("Condition", ("date", "dayInMonth", "dayOfWeek")),
    "condition.ExecutionFlow": ("Condition", ("flowId", "namespace")),
    "condition.ExecutionLabels": ("Condition", ("labels",)),  # a package-private field in Kestra
    "condition.ExecutionNamespace": ("Condition", ("comparison", "namespace", "prefix")),
    "condition.ExecutionOutputs": ("Condition", ("expression",)),
    "condition.ExecutionStatus": ("Condition", ("in", "notIn")),
    "condition.Expression": ("Condition", ("expression",)),
    "condition.FlowCondition": ("Condition", ("flowId", "namespace")),
    "condition.FlowNamespaceCondition": ("Condition", ("namespace", "prefix")),
    "condition.HasRetryAttempt": ("Condition", ("in", "notIn")),
    "condition.MultipleCondition": (
        "Condition",
        ("conditions", "id", "resetOnSuccess", "timeWindow", "window", "windowAdvance"),
    ),
    "condition.Not": ("Condition", ("conditions",)),
    "condition.Or": ("Condition", ("conditions",)),
    "condition.PublicHoliday": ("Condition", ("country", "date", "subDivision")),
    "condition.TimeBetween": ("Condition", ("after", "before", "date")),
    "condition.Weekend": ("Condition", ("date",)),
    "debug.Echo": ("Task", ("format", "level")),
    "debug.Return": ("Task", ("format",)),
    "execution.Count": ("Task", ("endDate", "expression", "flows", "namespaces", "startDate", "states")),
    "execution.Fail": ("Task", ("condition", "errorMessage")),
    "execution.Labels": ("Task", ("labels",)),
    "execution.PurgeExecutions": (
        "Task",
        (
            "endDate",
            "flowId",
            "namespace",
            "purgeExecution",
            "purgeLog",
            "purgeMetric",
            "purgeStorage",
            "startDate",
            "states",
        ),
    ),
    "execution.Resume": ("Task", ("executionId", "flowId", "inputs", "namespace")),
    "flow.AllowFailure": ("Task", ("errors", "tasks")),
    "flow.Dag": ("Task", ("concurrent", "errors", "tasks")),
    "flow.EachParallel": ("Task", ("concurrent", "errors", "tasks", "value")),
    "flow.EachSequential": ("Task", ("errors", "tasks", "value")),
    "flow.ForEach": ("Task", ("concurrencyLimit", "errors", "tasks", "values")),
    "flow.ForEachItem": (
        "Task",
        (
            "batch",
            "errors",
            "flowId",
            "inheritLabels",
            "inputs",
            "items",
            "labels",
            "namespace",
            "revision",
            "scheduleDate",
            "transmitFailed",
            "wait",
        ),
    ),
    "flow.If": ("Task", ("condition", "else", "errors", "then")),
    "flow.Parallel": ("Task", ("concurrent", "errors", "tasks")),
    "flow.Pause": ("Task", ("delay", "errors", "onResume", "tasks", "timeout")),
    "flow.Sequential": ("Task", ("errors", "tasks")),
    "flow.Sleep": ("Task", ("duration",)),
    "flow.Subflow": (
        "Task",
        (
            "flowId",
            "inheritLabels",
            "inputs",
            "labels",
            "namespace",
            "outputs",
            "revision",
            "scheduleDate",
            "transmitFailed",
            "wait",
        ),
    ),
    "flow.Switch": ("Task", ("cases", "defaults", "errors", "value")),
    "flow.Template": ("Task", ("args", "errors", "namespace", "templateId", "tenantId")),
    "flow.WaitFor": ("Task", ("checkFrequency", "condition", "errors", "failOnMaxReached", "tasks")),
    "flow.WorkingDirectory": (
        "Task",
        ("cache", "cacheDownloadedTime", "errors", "inputFiles", "namespaceFiles", "outputFiles", "tasks"),
    ),
    "http.Download": (
        "Task",
        (
            "allowFailed",
            "body",
            "contentType",
            "failOnEmptyResponse",
            "formData",
            "headers",
            "method",
            "options",
            "sslOptions",
            "uri",
        ),
    ),
    "http.Request": (
        "Task",
        (
            "allowFailed",
            "body",
            "contentType",
            "encryptBody",
            "formData",
            "headers",
            "method",
            "options",
            "sslOptions",
            "uri",
        ),
    ),
    "http.Trigger": (
        "AbstractTrigger",
        (
            "body",
            "contentType",
            "encryptBody",
            "formData",
            "headers",
            "interval",
            "method",
            "options",
            "responseCondition",
            "sslOptions",
            "uri",
        ),
    ),
    "kv.Delete": ("Task", ("errorOnMissing", "key", "namespace")),
    "kv.Get": ("Task", ("errorOnMissing", "key", "namespace")),
    "kv.GetKeys": ("Task", ("namespace", "prefix")),
    "kv.Set": ("Task", ("key", "kvType", "namespace", "overwrite", "ttl", "value")),
    "log.Fetch": ("Task", ("executionId", "flowId", "level", "namespace", "tasksId")),
    "log.Log": ("Task", ("level", "message")),
    "log.PurgeLogs": ("Task", ("endDate", "flowId", "logLevels", "namespace", "startDate")),
    "namespace.DeleteFiles": ("Task", ("files", "namespace")),
    "namespace.DownloadFiles": ("Task", ("destination", "files", "namespace")),
    "namespace.UploadFiles": ("Task", ("conflict", "destination", "files", "filesMap", "namespace")),
    "output.OutputValues": ("Task", ("values",)),
    "runner.Process": ("TaskRunner", ()),
    "state.Delete": ("Task", ("errorOnMissing", "name", "namespace", "taskrunValue")),
    "state.Get": ("Task", ("errorOnMissing", "name", "namespace", "taskrunValue")),
    "state.Set": ("Task", ("data", "name", "namespace", "taskrunValue")),
    "storage.Concat": ("Task", ("extension", "files", "separator")),
    "storage.DeduplicateItems": ("Task", ("expr", "from")),
    "storage.Delete": ("Task", ("errorOnMissing", "uri")),
    "storage.FilterItems": ("Task", ("errorOrNullBehavior", "filterCondition", "filterType", "from")),
    "storage.LocalFiles": ("Task", ("inputs", "outputs")),
    "storage.PurgeCurrentExecutionFiles": ("Task", ()),
    "storage.Reverse": ("Task", ("charset", "from", "separator")),
    "storage.Size": ("Task", ("uri",)),
    "storage.Split": ("Task", ("bytes", "from", "partitions", "rows", "separator")),
    "templating.TemplatedTask": ("Task", ("spec",)),
    "trigger.Flow": ("AbstractTrigger", ("inputs", "preconditions", "states")),
    "trigger.Schedule": (
        "AbstractTrigger",
        (
            "backfill",
            "cron",
            "inputs",
            "interval",
            "lateMaximumDelay",
            "recoverMissedSchedules",
            "scheduleConditions",
            "timezone",
            "withSeconds",
        ),
    ),
    "trigger.ScheduleOnDates": (
        "AbstractTrigger",
        ("dates", "inputs", "interval", "recoverMissedSchedules", "timezone"),
    ),
    "trigger.Toggle": ("Task", ("enabled", "flowId", "namespace", "trigger")),
    "trigger.Webhook": ("AbstractTrigger", ("key",)),
}

#: core types newer than the snapshot, from kestra.io/plugins/core (properties not recorded)
NEWER_TYPES: Final[dict[str, str]] = {
    "execution.Exit": "Task",
    "execution.SetVariables": "Task",
    "execution.UnsetVariables": "Task",
    "flow.LoopUntil": "Task",
}

_STORAGE = "reads or writes Kestra's internal storage; Squall has no such storage task yet"
_CONDITION = (
    "not evaluated by Squall's trigger layer yet: a Flow trigger evaluates ExecutionStatus, "
    "ExecutionFlow, ExecutionNamespace, ExecutionLabels and MultipleCondition; a flow using "
    "another is refused at validation"
)
_ADMIN = "administers a Kestra server's own database; Squall's store has no such operation"

#: why Squall does not support a type; used only while the alias table does not name it
UNSUPPORTED_TYPES: Final[dict[str, str]] = {
    **{
        f"condition.{name}": _CONDITION
        for name in [
            "DateTimeBetween",
            "DayWeek",
            "DayWeekInMonth",
            "ExecutionOutputs",
            "Expression",
            "FlowCondition",
            "FlowNamespaceCondition",
            "HasRetryAttempt",
            "Not",
            "Or",
            "PublicHoliday",
            "TimeBetween",
            "Weekend",
        ]
    },
    "execution.Count": "counts executions across flows: no query over the store is exposed to tasks yet",
    "execution.PurgeExecutions": _ADMIN,
    "execution.Resume": "resumes another execution from a task: not implemented yet",
    "execution.Exit": "not implemented yet",
    "execution.SetVariables": "not implemented yet",
    "execution.UnsetVariables": "not implemented yet",
    "flow.Template": "deprecated in Kestra (templates were replaced by subflows)",
    "http.Download": "HTTP tasks are not implemented yet",
    "http.Request": "HTTP tasks are not implemented yet",
    "kv.Delete": "the KV store tasks are not implemented yet",
    "kv.Get": "the KV store tasks are not implemented yet",
    "kv.GetKeys": "the KV store tasks are not implemented yet",
    "kv.Set": "the KV store tasks are not implemented yet",
    "log.Fetch": "reading an execution's logs from a task is not implemented yet",
    "log.PurgeLogs": _ADMIN,
    "namespace.DeleteFiles": "namespace files are not implemented yet",
    "namespace.DownloadFiles": "namespace files are not implemented yet",
    "namespace.UploadFiles": "namespace files are not implemented yet",
    "state.Delete": "deprecated in Kestra (replaced by the KV store)",
    "state.Get": "deprecated in Kestra (replaced by the KV store)",
    "state.Set": "deprecated in Kestra (replaced by the KV store)",
    "storage.Concat": _STORAGE,
    "storage.DeduplicateItems": _STORAGE,
    "storage.Delete": _STORAGE,
    "storage.FilterItems": _STORAGE,
    "storage.LocalFiles": "deprecated in Kestra (replaced by WorkingDirectory inputFiles/outputFiles)",
    "storage.PurgeCurrentExecutionFiles": _STORAGE,
    "storage.Reverse": _STORAGE,
    "storage.Size": _STORAGE,
    "storage.Split": _STORAGE,
    "templating.TemplatedTask": "builds a task from a rendered YAML spec at run time: not implemented",
    "trigger.ScheduleOnDates": "not implemented yet",
    "trigger.Toggle": "enables or disables another flow's trigger: not implemented yet",
}

#: property -> why Squall refuses it on every type that has it (a validation error names it)
UNSUPPORTED_PROPERTIES: Final[dict[str, str]] = {
    "workerGroup": "Squall has no worker groups; `taskRunner` chooses where a task runs",
}

#: ``type.property`` exceptions to a property-wide entry of NOT_HONOURED_PROPERTIES: honoured there
HONOURED_ON: Final[frozenset[str]] = frozenset({"http.Trigger.stopAfter"})

#: properties the flow model reads that no Squall code acts on yet (``type.property`` or a
#: property of every type): validation refuses them (flows/validation.py), and the page says why.
NOT_HONOURED_PROPERTIES: Final[dict[str, str]] = {
    "stopAfter": "refused at validation on all but http.Trigger: no other Squall trigger stops itself yet",
    "trigger.Schedule.conditions": "refused at validation: only Flow triggers evaluate conditions",
    "trigger.Webhook.conditions": "refused at validation: only Flow triggers evaluate conditions",
    "http.Trigger.conditions": "refused at validation: only Flow triggers evaluate conditions",
    "trigger.Schedule.scheduleConditions": "refused at validation: the scheduler does not evaluate them yet",
}

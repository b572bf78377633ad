"""A WorkingDirectory's children as one runner job: its command, and each child's part of its end.

The engine hands the first child's ``SubmitJob`` every child, rendered (ADR 0016,
:data:`control_plane.engine.actions.WORKSPACE_KEY`). This module builds one
:class:`runners.base.JobSpec` running them one after the other in one working directory, with
nothing but ``/bin/sh`` (the job's command is a shell script, like a ``Commands`` task's, so
every runner runs it through the wrapper or the process runner unchanged), and cuts the
ended job's log and files back into one part per child::

    spec = combine(job_name, parts, wd_files, wd_globs)      # at submit (scripts.build_job_spec)
    split = ChildLogs(job_name, [(taskrun, attempt, task_id), ...], make_line, limits)
    for record in records:                                     # at completion (the supervisor)
        split.add(record.stream, record.text, record.partial)
    results, logs, error = split.finish(status.output_files)

In the job, per child ``i``:

* a start line ``::squall-child:<job name>:<i>:start:<epoch s>::`` on stdout and stderr, so
  each stream's lines are given to the child that printed them;
* its own files (script, ``inputFiles``, ``namespaceFiles``) were staged under
  ``.squall-wd/in/<i>/`` (the first child's straight into the directory, after the
  WorkingDirectory's own) and are copied into the directory now, as Kestra stages a child's
  files when it starts (a file an earlier child wrote is overwritten then, not before);
* its command runs in a subshell with its own ``env``; the files its ``outputFiles`` globs
  match are copied to ``.squall-wd/out/<i>/`` right after it (what it left, not what a later
  child made of them);
* an end line with its exit code; a failure stops the job (exit code kept) unless the child
  has ``allowFailure``, as Kestra's worker breaks out of the loop.

The job's output globs are ``.squall-wd/out/**/*`` and the WorkingDirectory's ``outputFiles``
(collected at the end, as Kestra's ``postExecuteTasks``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from control_plane.engine.model import LogLine
from control_plane.levels import Level
from control_plane.service.capture import Capture, LogLimits
from runners.base import JobSpec

__all__ = ["HIDDEN", "ChildLogs", "Part", "combine", "is_delimiter", "split_output_files"]

HIDDEN = ".squall-wd"
"""Where a later child's files wait for its turn and each child's output files are kept."""
_OUT = f"{HIDDEN}/out/"


class Part(Struct, frozen=True):
    """One child as the job runs it: its own JobSpec (built as for a job of its own) and flags."""

    taskrun: str
    attempt: int
    task_id: str
    spec: JobSpec
    allow_failure: bool
    own_globs: tuple[str, ...] = ()


def _delimiter(name: str, index: int, what: str) -> str:
    return f"::squall-child:{name}:{index}:{what}"


def _snapshot(index: int, globs: Sequence[str]) -> list[str]:
    """Shell lines copying the files ``globs`` match to ``.squall-wd/out/<index>/``."""
    if not globs:
        return []
    from runners.wrapper import glob_to_ere  # the wrapper's dataclasses stay out of the handlers' cold start

    ere = "^(" + "|".join(glob_to_ere(g) for g in globs) + ")$"
    target = f"{_OUT}{index}"
    return [
        f"find . -path ./{HIDDEN} -prune -o -type f -print | sed 's|^\\./||' | grep -E {shlex.quote(ere)}"
        f' | while IFS= read -r f; do mkdir -p "{target}/$(dirname "$f")" && cp "$f" "{target}/$f"; done',
    ]


def combine(
    name: str,
    parts: Sequence[Part],
    wd_files: tuple[dict[str, bytes], dict[str, str]],
    wd_globs: Sequence[str],
) -> JobSpec:
    """One JobSpec running ``parts`` in turn; ``wd_files``: the WorkingDirectory's own (inline, refs)."""
    first = parts[0].spec
    files, refs = dict(wd_files[0]), dict(wd_files[1])
    lines = ["set +e", f"mkdir -p {HIDDEN}/out"]
    for index, part in enumerate(parts):
        prefix = "" if index == 0 else f"{HIDDEN}/in/{index}/"
        for path, content in part.spec.input_files.items():
            refs.pop(prefix + path, None)
            files[prefix + path] = content
        for path, uri in part.spec.input_uris.items():
            files.pop(prefix + path, None)
            refs[prefix + path] = uri
        start = _delimiter(name, index, "start")
        lines.append(f'echo "{start}:$(date +%s 2>/dev/null)::"; echo "{start}::" >&2')
        if index:
            staged = f"{HIDDEN}/in/{index}"
            lines.append(f"if [ -d {staged} ]; then cp -RL {staged}/. . && rm -rf {staged}; fi")
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in part.spec.env.items())
        lines.append(f"( {exports}exec {shlex.join(part.spec.command)} )")
        lines.append("rc=$?")
        lines += _snapshot(index, part.own_globs)
        end = _delimiter(name, index, "end")
        lines.append(f'echo "{end}:$rc:$(date +%s 2>/dev/null)::"; echo "{end}:$rc::" >&2')
        if not part.allow_failure:
            lines.append('if [ "$rc" -ne 0 ]; then exit "$rc"; fi')
    lines.append("exit 0")
    return JobSpec(
        name=name,
        command=("/bin/sh", "-c", "\n".join(lines)),
        image=first.image,
        env={},
        input_files=files,
        input_uris=refs,
        output_files=(f"{_OUT}**/*", *wd_globs),
        output_prefix=first.output_prefix,
        timeout=None,
        labels=dict(first.labels),
        options=dict(first.options),
    )


def split_output_files(files: Mapping[str, str]) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
    """(each child's ``{path: uri}``, the rest) of the job's output files."""
    per_child: dict[int, dict[str, str]] = {}
    rest: dict[str, str] = {}
    for path, uri in files.items():
        if path.startswith(_OUT):
            index, _, own = path[len(_OUT) :].partition("/")
            if index.isdigit() and own:
                per_child.setdefault(int(index), {})[own] = uri
        elif not path.startswith(HIDDEN + "/"):
            rest[path] = uri
    return per_child, rest


_LINE = re.compile(r"^::squall-child:(?P<name>[^:]+):(?P<index>\d+):(?P<what>start|end)(?::[^:]*)*::$")


def is_delimiter(text: str) -> bool:
    """Whether a log line is a child's start or end line (hidden from the live display too)."""
    return _LINE.match(text.strip()) is not None


class _Child:
    """One child's part of the log: its lines and markers, when it started and ended, its exit code."""

    __slots__ = ("capture", "ended", "exit_code", "seen", "started")

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.started: int | None = None
        self.ended: int | None = None
        self.exit_code: int | None = None
        self.seen = False  # its start line was read (on stdout)


class ChildLogs:
    """Routes one job's log records to its children by the start lines, each into its own Capture.

    ``parts``: (task run id, attempt, task id) of each child, in order; ``make`` builds one
    child's log line from those and (level, message).
    """

    def __init__(
        self,
        name: str,
        parts: Sequence[tuple[str, int, str]],
        make: Callable[[str, int, str, Level, str], LogLine],
        limits: LogLimits,
        shown: int = 0,
        allow: Sequence[bool] = (),
    ) -> None:
        self.name = name
        self.parts = parts
        self.allow = allow  # each child's allowFailure
        self.current: dict[str, int] = {}  # per stream: the child printing now
        self.records = 0
        self.children = [
            _Child(Capture(limits, partial(make, taskrun, attempt, task_id), shown))
            for taskrun, attempt, task_id in parts
        ]

    @property
    def displayed(self) -> set[int]:
        """Ids of the lines already shown live (see :class:`Capture`)."""
        return set().union(*(child.capture.displayed for child in self.children))

    def add(self, stream: str, text: str, partial: bool = False) -> None:
        """One record of the job's log, as :meth:`Capture.add` takes it."""
        self.records += 1  # the job's records, as the live display counted those it showed
        at = -1 if partial else text.find(f"::squall-child:{self.name}:")
        if at > 0:  # a child's last line without its newline: the delimiter ends it
            self._to_child(stream, text[:at], False)
            text = text[at:]
        match = _LINE.match(text.strip()) if at >= 0 else None
        if match is not None and match["name"] == self.name and int(match["index"]) < len(self.children):
            index = int(match["index"])
            child = self.children[index]
            self.current[stream] = index
            fields = text.strip()[:-2].split(":")[6:]
            if stream == "stdout":
                child.seen = True
                if match["what"] == "start":
                    child.started = _int(fields[0] if fields else None)
                else:
                    child.exit_code = _int(fields[0] if fields else None)
                    child.ended = _int(fields[1] if len(fields) > 1 else None)
            return
        self._to_child(stream, text, partial)

    def _to_child(self, stream: str, text: str, partial: bool) -> None:
        capture = self.children[self.current.get(stream, 0)].capture
        capture.records = self.records - 1  # so that its "shown live" test counts the job's records
        capture.add(stream, text, partial)

    def whose(self, stream: str, text: str) -> tuple[str, int, str] | None:
        """(task run, attempt, task id) of the child that printed ``text``; None for a delimiter.

        For the live display, which shows lines as they come without storing them.
        """
        at = text.find(f"::squall-child:{self.name}:")
        match = _LINE.match(text[at:].strip()) if at >= 0 else None
        if match is not None and int(match["index"]) < len(self.parts):
            self.current[stream] = int(match["index"])
            return None if at == 0 else self.parts[self.current[stream]]
        return self.parts[self.current.get(stream, 0)]

    def finish(self, output_files: Mapping[str, str]) -> tuple[dict[str, Any], list[LogLine], str | None]:
        """(``{task run id: result}`` for the engine, every child's log lines, the first capture error).

        A child whose outputs were refused (over ``SQUALL_MAX_OUTPUTS_BYTES``) fails, though its
        code went on: unless it may fail, the engine stops there, so what the job ran after it
        is logged under it (saying so) rather than under task runs that will never exist.
        """
        per_child, _ = split_output_files(output_files)
        results: dict[str, Any] = {}
        logs: list[LogLine] = []
        error: str | None = None
        stopped: tuple[str, int, str] | None = None  # the child the engine will stop at
        for index, (part, child) in enumerate(zip(self.parts, self.children, strict=True)):
            lines = child.capture.finish()
            if stopped is not None:
                taskrun, attempt, task_id = stopped
                logs += [replace(x, taskrun_id=taskrun, attempt=attempt, task_id=task_id) for x in lines]
                continue
            logs += lines
            if not child.seen and index:
                continue
            outputs: dict[str, Any] = {"vars": dict(child.capture.outputs), "exitCode": child.exit_code}
            if files := per_child.get(index, {}):
                outputs["outputFiles"] = files
            result: dict[str, Any] = {
                "exitCode": child.exit_code,
                "outputs": outputs,
                "started": child.started,
                "ended": child.ended,
            }
            if child.capture.error is not None:
                result["error"] = child.capture.error
                result["exitCode"] = child.exit_code if child.exit_code else 1
                error = error or child.capture.error
                after = zip(self.parts[index + 1 :], self.children[index + 1 :], strict=True)
                later = [p[2] for p, c in after if c.seen]
                if index < len(self.allow) and not self.allow[index] and later:
                    stopped = part
                    message = (
                        f"the job went on with {', '.join(later)} (their lines follow),"
                        " which do not run after this task's failure"
                    )
                    logs.append(child.capture.make(Level.WARN, message))
            results[part[0]] = result
        return results, logs, error


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None

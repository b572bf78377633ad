"""control_plane/service/one_job.py: a WorkingDirectory's children as one /bin/sh job, run for real.

The job's command runs in a temporary directory with its inline files staged, as a runner
would; its log goes through :class:`ChildLogs` as the supervisor feeds it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.actions import WORKSPACE_KEY
from control_plane.engine.model import LogLine
from control_plane.levels import Level
from control_plane.service.capture import LogLimits
from control_plane.service.one_job import ChildLogs, is_delimiter, split_output_files
from control_plane.service.scripts import ScriptError, build_job_spec
from control_plane.service.storage import LocalStorage
from runners.base import JobSpec
from runners.storage import path_of

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def child(index: int, task_id: str, properties: dict[str, Any], allow: bool = False) -> dict[str, Any]:
    return {
        "taskrun": f"tr{index}",
        "attempt": 1,
        "task_id": task_id,
        "task_type": SHELL,
        "allowFailure": allow,
        "properties": properties,
    }


def build(
    storage: LocalStorage,
    children: list[dict[str, Any]],
    schemes: frozenset[str] = frozenset({"file"}),
    **wd: Any,
) -> JobSpec:
    hint = {"previous": None, "children": children, **wd}
    _, spec = build_job_spec(
        name="job-1",
        task_type=SHELL,
        properties={**children[0]["properties"], WORKSPACE_KEY: hint},
        timeout=None,
        output_prefix=storage.prefix("t", "f", "e", "tr0", 1),
        labels={},
        storage=storage,
        storage_schemes=schemes,
    )
    return spec


def run(spec: JobSpec, work: Path) -> tuple[int, ChildLogs, dict[str, str]]:
    """Stage, run and split the job as a runner and the supervisor would; its output files too."""
    for name, content in spec.input_files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(content)
    for name, uri in spec.input_uris.items():  # staged by reference, as the process runner does
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(path_of(uri).read_bytes())
    done = subprocess.run(spec.command, cwd=work, capture_output=True, text=True, timeout=30, check=False)
    parts = [("tr0", 1, "a"), ("tr1", 1, "b"), ("tr2", 1, "c")]

    def make(taskrun: str, attempt: int, task_id: str, level: Level, message: str) -> LogLine:
        return LogLine(None, level, message, task_id, taskrun, attempt)  # type: ignore[arg-type]

    split = ChildLogs("job-1", parts, make, LogLimits())
    for line in done.stdout.splitlines():
        split.add("stdout", line)
    for line in done.stderr.splitlines():
        split.add("stderr", line)
    import re

    from runners.wrapper import glob_to_ere  # the runner's matching of output globs

    ere = re.compile("^(" + "|".join(glob_to_ere(g) for g in spec.output_files) + ")$")
    files = {
        p.relative_to(work).as_posix(): p.read_text()
        for p in sorted(work.rglob("*"))
        if p.is_file() and ere.match(p.relative_to(work).as_posix())
    }
    return done.returncode, split, files


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def test_children_share_the_directory_each_with_its_own_files_log_and_outputs(
    storage: LocalStorage, tmp_path: Path
) -> None:
    spec = build(
        storage,
        [
            child(
                0,
                "a",
                {
                    "commands": ["cat seed.txt", "echo mine > data.txt", "echo one > a.txt", "echo oops >&2"],
                    "outputFiles": ["a.txt"],
                    "inputFiles": {"zero.txt": "0"},
                },
            ),
            child(
                1,
                "b",
                {
                    "commands": ["cat data.txt", 'echo "$WHO"', 'echo \'::{"outputs":{"y":2}}::\''],
                    "inputFiles": {"data.txt": "given\n"},
                    "env": {"WHO": "it's b"},
                },
            ),
            child(2, "c", {"commands": ["echo two > a.txt", "ls zero.txt"], "outputFiles": ["*.txt"]}),
        ],
        inputFiles={"seed.txt": "from the WorkingDirectory"},
        outputFiles=["a.txt"],
    )
    assert spec.output_files == (".squall-wd/out/**/*", "a.txt")
    assert set(spec.input_files) == {"seed.txt", "zero.txt"}  # the WorkingDirectory's and the first child's
    # a later child's inline files go through the storage (under the job's output prefix):
    # inline, they would add up past what a runner carries in a job's command
    prefix = storage.prefix("t", "f", "e", "tr0", 1)
    assert dict(spec.input_uris) == {".squall-wd/in/1/data.txt": f"{prefix}.squall-wd/in/1/data.txt"}
    code, split, files = run(spec, tmp_path)
    assert code == 0
    results, logs, error = split.finish({name: f"file:///{name}" for name in files})
    assert error is None
    by_child = {t: [line.message for line in logs if line.taskrun_id == t] for t in ("tr0", "tr1", "tr2")}
    assert by_child["tr0"] == ["from the WorkingDirectory", "oops"]
    assert by_child["tr1"] == ["given", "it's b"]  # its inputFiles overwrote a's file at its turn
    assert by_child["tr2"] == ["zero.txt"]
    assert [line.level for line in logs if line.message == "oops"] == [Level.ERROR]
    assert not any(is_delimiter(line.message) for line in logs)
    assert results["tr1"]["outputs"]["vars"] == {"y": 2} and results["tr1"]["exitCode"] == 0
    assert results["tr0"]["outputs"]["outputFiles"] == {"a.txt": "file:///.squall-wd/out/0/a.txt"}
    assert files[".squall-wd/out/0/a.txt"] == "one\n"  # what a left, not what c made of it
    assert files["a.txt"] == "two\n"  # the WorkingDirectory's collects after the last child
    assert set(results["tr2"]["outputs"]["outputFiles"]) == {"a.txt", "data.txt", "seed.txt", "zero.txt"}
    assert all(isinstance(results[t]["started"], int) for t in ("tr0", "tr1", "tr2"))
    per_child, rest = split_output_files({name: "u" for name in files})
    assert set(rest) == {"a.txt"} and set(per_child) == {0, 2}


def test_a_failing_child_stops_the_job_unless_it_may_fail(storage: LocalStorage, tmp_path: Path) -> None:
    children = [
        child(0, "a", {"commands": ["echo a"]}),
        child(1, "b", {"commands": ["echo b", "exit 3"]}),
        child(2, "c", {"commands": ["echo c"]}),
    ]
    (tmp_path / "stop").mkdir()
    code, split, _ = run(build(storage, children), tmp_path / "stop")
    results, logs, _ = split.finish({})
    assert code == 3
    assert results["tr1"]["exitCode"] == 3 and "tr2" not in results
    assert [line.message for line in logs] == ["a", "b"]
    children[1]["allowFailure"] = True
    (tmp_path / "go").mkdir()
    code, split, _ = run(build(storage, children), tmp_path / "go")
    results, logs, _ = split.finish({})
    assert code == 0 and results["tr1"]["exitCode"] == 3 and results["tr2"]["exitCode"] == 0


def test_a_childs_bad_input_names_the_child(storage: LocalStorage) -> None:
    with pytest.raises(ScriptError, match=r"^b: inputFiles"):
        build(
            storage,
            [child(0, "a", {"commands": ["true"]}), child(1, "b", {"commands": ["true"], "inputFiles": 3})],
        )


def test_another_jobs_or_a_users_delimiter_lines_are_ordinary_lines() -> None:
    def make(taskrun: str, attempt: int, task_id: str, level: Level, message: str) -> LogLine:
        return LogLine(None, level, message, task_id, taskrun, attempt)  # type: ignore[arg-type]

    split = ChildLogs("job-1", [("tr0", 1, "a"), ("tr1", 1, "b")], make, LogLimits())
    split.add("stdout", "::squall-child:job-2:1:start:5::")
    split.add("stdout", "::squall-child:job-1:7:start:5::")
    _, logs, _ = split.finish({})
    assert [line.taskrun_id for line in logs] == ["tr0", "tr0"]


def test_lines_shown_live_are_counted_over_the_whole_job() -> None:
    """``shown``: records the live display already showed, counted over the job's whole log."""

    def make(taskrun: str, attempt: int, task_id: str, level: Level, message: str) -> LogLine:
        return LogLine(None, level, message, task_id, taskrun, attempt)  # type: ignore[arg-type]

    split = ChildLogs("job-1", [("tr0", 1, "a"), ("tr1", 1, "b")], make, LogLimits(), shown=3)
    for text in ("::squall-child:job-1:0:start:5::", "a1", "::squall-child:job-1:1:start:6::", "b1", "b2"):
        split.add("stdout", text)
    _, logs, _ = split.finish({})
    assert [line.message for line in logs if id(line) in split.displayed] == ["a1"]


def test_a_runner_that_cannot_read_the_storage_gets_every_file_inline(storage: LocalStorage) -> None:
    later = child(1, "b", {"commands": ["true"], "inputFiles": {"x": "1"}})
    children = [child(0, "a", {"commands": ["true"]}), later]
    spec = build(storage, children, frozenset({"s3"}))
    assert dict(spec.input_files) == {".squall-wd/in/1/x": b"1"} and not spec.input_uris


def test_what_runs_after_a_child_whose_outputs_are_refused_is_logged_under_it() -> None:
    def make(taskrun: str, attempt: int, task_id: str, level: Level, message: str) -> LogLine:
        return LogLine(None, level, message, task_id, taskrun, attempt)  # type: ignore[arg-type]

    parts = [("tr0", 1, "a"), ("tr1", 1, "b")]
    split = ChildLogs("job-1", parts, make, LogLimits(max_outputs_bytes=10), allow=[False, False])
    for text in (
        "::squall-child:job-1:0:start:5::",
        '::{"outputs":{"big":"far over ten bytes"}}::',
        "::squall-child:job-1:0:end:0:6::",
        "::squall-child:job-1:1:start:6::",
        "b ran",
        "::squall-child:job-1:1:end:0:7::",
    ):
        split.add("stdout", text)
    results, logs, error = split.finish({})
    assert error is not None and results["tr0"]["exitCode"] == 1 and "tr1" not in results
    assert {line.taskrun_id for line in logs} == {"tr0"}
    assert [line.message for line in logs][-2:] == [
        "the job went on with b (their lines follow), which do not run after this task's failure",
        "b ran",
    ]

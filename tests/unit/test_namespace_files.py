"""namespace_files.py and workspace.py: Kestra's include/exclude globs, a WorkingDirectory's shared files."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.engine.actions import WORKSPACE_KEY
from control_plane.service.namespace_files import NamespaceFilesError, matches, namespace_files
from control_plane.service.scripts import ScriptError, build_job_spec, job_outputs
from control_plane.service.storage import LocalStorage
from control_plane.service.workspace import own_output_files, workspace_files
from runners.base import JobSpec, JobState, JobStatus


@pytest.mark.parametrize(
    ("path", "include", "exclude", "expected"),
    [
        ("/a.txt", None, None, True),  # no filter: everything (PathMatcherPredicate.Builder)
        ("/scripts/etl.py", ["/scripts/**"], None, True),
        ("/etl.py", ["/scripts/**"], None, False),
        ("/deep/config.json", ["config.json"], None, True),  # word start: **/ prefixed
        ("/config.json", ["config.json"], None, True),
        ("/deep/x.py", ["*.py"], None, False),  # * stays in one segment, no prefix added
        ("/x.py", ["/*.py"], None, True),
        ("/deep/x.py", ["**.py"], None, True),
        ("/a/b.tmp", None, ["**.tmp"], False),
        ("/a/b.txt", ["/a/**"], ["**.tmp"], True),
        ("/a/b.tmp", ["/a/**"], ["**.tmp"], False),
        ("/a/b.csv", ["/a/*.{csv,json}"], None, True),
        ("/a/b.xml", ["/a/*.{csv,json}"], None, False),
        ("/a/b1", ["/a/b[0-9]"], None, True),
        ("/a/bx", ["/a/b[!0-9]"], None, True),
        ("/a/b1", ["/a/b[!0-9]"], None, False),
        ("/a/b1", ["regex:/a/b\\d"], None, True),
        ("/a/b1", ["glob:/a/?1"], None, True),
        ("/a.b", ["/a?b"], None, True),
        ("/a+b", ["/a+b"], None, True),  # regex metacharacters are literal in a glob
        ("/aab", ["/a+b"], None, False),
    ],
)
def test_kestra_globs_match_the_absolute_path(
    path: str, include: list[str] | None, exclude: list[str] | None, expected: bool
) -> None:
    assert matches(path, include, exclude) is expected


@pytest.mark.parametrize("pattern", ["/a/[bc", "/a/{b,c", "regex:(unclosed"])
def test_a_bad_pattern_is_an_error_naming_it(pattern: str) -> None:
    with pytest.raises(NamespaceFilesError, match=r"pattern|glob"):
        matches("/a/b", [pattern], None)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "storage")
    for relative, text in {
        "_files/ns/scripts/run.sh": "echo run",
        "_files/ns/scripts/old.tmp": "old",
        "_files/ns/top.txt": "top",
        "_files/ns.sub/elsewhere.txt": "other namespace",
        "_files/other/scripts/run.sh": "not ours",
    }.items():
        storage.write(storage.uri(relative), text.encode())
    return storage


def test_only_the_flows_namespace_files_are_selected(storage: LocalStorage) -> None:
    assert sorted(namespace_files({}, "ns", storage)) == ["scripts/old.tmp", "scripts/run.sh", "top.txt"]
    assert sorted(namespace_files({"exclude": ["**.tmp"]}, "ns", storage)) == ["scripts/run.sh", "top.txt"]
    assert namespace_files({"enabled": False}, "ns", storage) == {}
    assert namespace_files({"enabled": "false"}, "ns", storage) == {}
    assert namespace_files(None, "ns", storage) == {}
    with pytest.raises(NamespaceFilesError, match="include"):
        namespace_files({"include": "/scripts/**"}, "ns", storage)


def spec_of(storage: LocalStorage, properties: dict[str, object], schemes: frozenset[str]) -> JobSpec:
    _, spec = build_job_spec(
        name="job-1",
        task_type="io.kestra.plugin.scripts.shell.Commands",
        properties={"commands": ["true"], **properties},
        timeout=None,
        output_prefix=storage.prefix("ns", "f", "e", "tr", 1),
        labels={},
        storage=storage,
        storage_schemes=schemes,
        namespace="ns",
    )
    return spec


def test_namespace_files_are_staged_like_input_files_and_input_files_win(storage: LocalStorage) -> None:
    block = {"include": ["/scripts/**"], "exclude": ["**.tmp"]}
    # A runner that cannot read the storage's scheme gets the bytes.
    inline = spec_of(storage, {"namespaceFiles": block, "inputFiles": {"top.txt": "given"}}, frozenset())
    assert dict(inline.input_files) == {"scripts/run.sh": b"echo run", "top.txt": b"given"}
    assert dict(inline.input_uris) == {}
    # One that reads it gets references; an inputFiles entry of the same path replaces it.
    refs = spec_of(
        storage, {"namespaceFiles": block, "inputFiles": {"scripts/run.sh": "echo mine"}}, frozenset({"file"})
    )
    assert dict(refs.input_files) == {"scripts/run.sh": b"echo mine"}
    assert dict(refs.input_uris) == {}
    both = spec_of(storage, {"namespaceFiles": {}}, frozenset({"file"}))
    assert dict(both.input_uris) == {
        p: storage.uri(f"_files/ns/{p}") for p in ("scripts/old.tmp", "scripts/run.sh", "top.txt")
    }


def test_a_bad_namespace_files_block_fails_the_task_naming_it(storage: LocalStorage) -> None:
    with pytest.raises(ScriptError, match="namespaceFiles"):
        spec_of(storage, {"namespaceFiles": {"include": ["/[x"]}}, frozenset())


def test_a_working_directory_child_stages_the_shared_directory_first_and_captures_it(
    storage: LocalStorage,
) -> None:
    """The previous child's files, then the WorkingDirectory's and its own files over them."""
    previous = storage.prefix("ns", "f", "e", "tr0", 2)
    storage.write(previous + "out/a.txt", b"from the previous child")
    storage.write(previous + "top.txt", b"old top")
    workspace = workspace_files(
        {WORKSPACE_KEY: {"previous": {"taskrun": "tr0", "attempt": 2}}}, storage, "ns", "f", "e"
    )
    assert workspace == {"out/a.txt": previous + "out/a.txt", "top.txt": previous + "top.txt"}
    _, spec = build_job_spec(
        name="job-2",
        task_type="io.kestra.plugin.scripts.shell.Commands",
        properties={"commands": ["true"], "inputFiles": {"top.txt": "new top"}, "outputFiles": ["out/*"]},
        timeout=None,
        output_prefix=storage.prefix("ns", "f", "e", "tr1", 1),
        labels={},
        storage=storage,
        storage_schemes=frozenset({"file"}),
        namespace="ns",
        workspace=workspace,
    )
    # By reference (the runner reads the storage), the child's own top.txt replacing the old one.
    assert dict(spec.input_uris) == {"out/a.txt": previous + "out/a.txt"}
    assert dict(spec.input_files) == {"top.txt": b"new top"}
    assert spec.output_files == ("**/*",)  # the whole directory, for the next child
    # Outside a WorkingDirectory nothing is staged; the first child starts empty.
    assert workspace_files({}, storage, "ns", "f", "e") is None
    assert workspace_files({WORKSPACE_KEY: {"previous": None}}, storage, "ns", "f", "e") == {}


def test_a_child_outputs_list_only_its_own_globs() -> None:
    captured = {
        "out/a.txt": "file:///s/out/a.txt",
        "b.txt": "file:///s/b.txt",
        "script.sh": "file:///s/script.sh",
    }
    status = JobStatus(state=JobState.SUCCEEDED, exit_code=0, output_files=captured)
    assert job_outputs(status, {}, ["out/*"])["outputFiles"] == {"out/a.txt": "file:///s/out/a.txt"}
    assert "outputFiles" not in job_outputs(status, {}, [])
    assert job_outputs(status, {}, None)["outputFiles"] == captured  # not a WorkingDirectory child
    assert own_output_files(captured, ["**.txt"]) == {k: v for k, v in captured.items() if k.endswith(".txt")}


def test_a_working_directory_child_on_a_runner_that_cannot_write_the_storage_fails_naming_it(
    storage: LocalStorage,
) -> None:
    with pytest.raises(ScriptError, match=r"runner 'kubernetes' to write the deployment storage \(file://\)"):
        build_job_spec(
            name="job-3",
            task_type="io.kestra.plugin.scripts.shell.Commands",
            properties={
                "commands": ["true"],
                "taskRunner": {"type": "io.kestra.plugin.ee.kubernetes.runner.Kubernetes"},
            },
            timeout=None,
            output_prefix=storage.prefix("ns", "f", "e", "tr1", 1),
            labels={},
            storage=storage,
            storage_schemes=frozenset({"s3"}),
            namespace="ns",
            workspace={},
        )


@pytest.mark.parametrize(
    ("block", "refused"),
    [
        ("inputFiles:\n      a.txt: hello", "inputFiles"),
        ("outputFiles: [a.txt]", "outputFiles"),
        ("namespaceFiles:\n      enabled: true", "namespaceFiles"),
    ],
)
def test_working_directory_files_without_an_enabled_script_child_are_refused(
    block: str, refused: str
) -> None:
    """Squall's directory lives in the script children's jobs: with none, the files have nowhere to go."""
    from control_plane.errors import FlowValidationError
    from control_plane.flows import parse_flow

    source = f"""
id: wd
namespace: t
tasks:
  - id: workingDir
    type: io.kestra.plugin.core.flow.WorkingDirectory
    {block}
    tasks:
      - id: say
        type: io.kestra.plugin.core.log.Log
        message: no script here
      - id: off
        type: io.kestra.plugin.scripts.shell.Commands
        disabled: true
        commands: ["true"]
"""
    with pytest.raises(
        FlowValidationError, match=f"{refused}: a WorkingDirectory's files live in its script"
    ):
        parse_flow(source)
    parse_flow(source.replace("disabled: true", "disabled: false"))  # an enabled script child: accepted

"""control_plane/service/namespace_files.py: Kestra's include/exclude globs, and staging into a JobSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.service.namespace_files import NamespaceFilesError, matches, namespace_files
from control_plane.service.scripts import ScriptError, build_job_spec
from control_plane.service.storage import LocalStorage
from runners.base import JobSpec


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

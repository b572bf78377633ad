"""core.namespace tasks over the namespace files the API stores, on a real storage directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from control_plane.errors import FlowValidationError
from control_plane.flows.loader import parse_flow
from control_plane.service.namespace_files import NamespaceFiles, matcher
from control_plane.tasks import EffectContext
from tests.unit.effect_helpers import effect_context, run_family


@pytest.fixture
def ctx(tmp_path: Path) -> EffectContext:
    return effect_context(tmp_path, "t.ns")


def _run(kind: str, ctx: EffectContext, **props: Any) -> tuple[Any, str | None]:
    return run_family("namespace", kind, ctx, **props)


def _source(ctx: EffectContext, name: str, text: str) -> str:
    uri = ctx.storage.uri(f"t.ns/f/ex0/tr0/1/{name}")
    ctx.storage.write(uri, text.encode())
    return uri


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/scripts/**", "/scripts/a/b.py", True),
        ("/scripts/*.py", "/scripts/a/b.py", False),
        ("/scripts/*.py", "/scripts/b.py", True),
        ("b.py", "/scripts/a/b.py", True),  # a bare name matches at any depth
        ("b.py", "/b.py", True),
        ("**.{sql,py}", "/x/q.sql", True),
        ("regex:/x/[0-9]+\\.txt", "/x/12.txt", True),
        ("regex:/x/[0-9]+\\.txt", "/x/a.txt", False),
    ],
)
def test_patterns_match_as_kestra_path_matcher(pattern: str, path: str, hit: bool) -> None:
    assert bool(matcher([pattern]).fullmatch(path)) is hit


def test_upload_download_delete_round_trip(ctx: EffectContext) -> None:
    a, b = _source(ctx, "a.py", "print(1)"), _source(ctx, "b.sql", "select 1")
    out, error = _run("UploadFiles", ctx, filesMap={"a.py": a, "sql/b.sql": b}, destination="/scripts/")
    assert (out, error) == ({}, None)
    files = NamespaceFiles(ctx.storage)
    assert sorted(files.all("t.ns")) == ["/scripts/a.py", "/scripts/sql/b.sql"]
    out, error = _run("DownloadFiles", ctx, namespace="t.ns", files=["/scripts/**.sql"], destination="in")
    assert error is None and list(out["files"]) == ["/scripts/sql/b.sql"]
    assert out["files"]["/scripts/sql/b.sql"].endswith("/t.ns/f/ex1/tr1/1/in/scripts/sql/b.sql")
    assert ctx.storage.read(out["files"]["/scripts/sql/b.sql"]) == b"select 1"
    assert _run("DeleteFiles", ctx, namespace="t.ns", files="a.py") == ({}, None)
    assert sorted(files.all("t.ns")) == ["/scripts/sql/b.sql"]


def test_upload_conflicts_as_kestra(ctx: EffectContext) -> None:
    a, b = _source(ctx, "a.txt", "one"), _source(ctx, "b.txt", "two")
    assert _run("UploadFiles", ctx, filesMap={"x.txt": a}) == ({}, None)
    _, error = _run("UploadFiles", ctx, filesMap={"x.txt": b}, conflict="ERROR")
    assert error == "File '/x.txt' already exists in namespace 't.ns' and conflict is set to ERROR"
    assert _run("UploadFiles", ctx, filesMap={"x.txt": b}, conflict="SKIP") == ({}, None)
    uri = NamespaceFiles(ctx.storage).uri("t.ns", ["x.txt"])
    assert ctx.storage.read(uri) == b"one"
    assert _run("UploadFiles", ctx, filesMap={"x.txt": b}) == ({}, None)
    assert ctx.storage.read(uri) == b"two"


def test_bad_paths_and_sources_fail_naming_the_property(ctx: EffectContext) -> None:
    a = _source(ctx, "a.txt", "one")
    _, error = _run("UploadFiles", ctx, filesMap={"../escape.txt": a})
    assert error is not None and error.startswith("property 'filesMap':")
    _, error = _run("UploadFiles", ctx, filesMap={"x.txt": "file:///etc/passwd"})
    assert error is not None and error.startswith("property 'filesMap':")
    _, error = _run("DownloadFiles", ctx, namespace="Bad NS", files="x")
    assert error is not None and error.startswith("property 'namespace':")
    _, error = _run("DownloadFiles", ctx, namespace="t.ns", files=[1])
    assert error == "The files property must be a string or a list of strings"


def test_upload_with_working_directory_globs_is_a_validation_error() -> None:
    source = """
id: n
namespace: t.ns
tasks:
  - id: up
    type: io.kestra.plugin.core.namespace.UploadFiles
    namespace: t.ns
    files: ["glob:**/*.py"]
    filesMap: {}
"""
    with pytest.raises(FlowValidationError, match="files"):
        parse_flow(source, "n.yaml")

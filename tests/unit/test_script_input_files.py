"""control_plane/service/scripts.py: which ``inputFiles`` values are URIs, and what a bad URI does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from control_plane.service.scripts import ScriptError, build_job_spec
from control_plane.service.storage import LocalStorage, is_uri
from runners.base import JobSpec


def spec_of(storage: LocalStorage, input_files: Any, schemes: frozenset[str] = frozenset()) -> JobSpec:
    """The JobSpec for a runner staging ``schemes`` itself (none: the control plane reads every URI)."""
    _, spec = build_job_spec(
        name="job-1",
        task_type="io.kestra.plugin.scripts.shell.Commands",
        properties={"commands": ["true"], "inputFiles": input_files},
        timeout=None,
        output_prefix=storage.prefix("t", "f", "e", "tr", 1),
        labels={},
        storage=storage,
        storage_schemes=schemes,
    )
    return spec


def files(storage: LocalStorage, input_files: Any) -> dict[str, bytes]:
    return dict(spec_of(storage, input_files).input_files)


def test_a_runner_that_stages_the_scheme_gets_a_reference_not_the_bytes(storage: LocalStorage) -> None:
    storage.root.mkdir(parents=True)
    (storage.root / "big.bin").write_bytes(b"x" * 1024)
    spec = spec_of(storage, {"in/big.bin": "kestra:///big.bin", "note.txt": "hello"}, frozenset({"file"}))
    assert dict(spec.input_uris) == {"in/big.bin": (storage.root / "big.bin").as_uri()}
    assert dict(spec.input_files) == {"note.txt": b"hello"}
    assert spec.output_prefix == storage.prefix("t", "f", "e", "tr", 1)
    # The guard still applies to references: nothing outside the store is handed to a runner.
    with pytest.raises(ScriptError, match="outside the storage directory"):
        spec_of(storage, {"x": "file:///etc/passwd"}, frozenset({"file"}))
    # A runner that cannot write the storage's scheme keeps outputs itself (copied in later).
    assert spec_of(storage, {}, frozenset({"s3"})).output_prefix is None


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("file:///etc/passwd", "outside the storage directory"),
        ("kestra:///../../../etc/passwd", "outside the storage directory"),
        ("  kestra:///../..  ", "outside the storage directory"),
        ("s3://bucket/key.csv", "the scheme 's3'"),
        ("gs://bucket/key.csv", "the scheme 'gs'"),
        ("az://container/key.csv", "the scheme 'az'"),
        ("https://example.com/data.csv", "the scheme 'https'"),
        ("kestra:///t/f/gone/tr/1/missing.csv", "No such file or directory"),
    ],
)
def test_a_uri_the_store_cannot_read_fails_naming_the_file_the_uri_and_why(
    storage: LocalStorage, value: str, why: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        files(storage, {"data.csv": value})
    message = str(caught.value)
    assert message.startswith("inputFiles.data.csv: ")
    assert value.strip() in message
    assert why in message


def test_a_symlink_in_the_store_leading_outside_is_refused(storage: LocalStorage, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    storage.root.mkdir(parents=True)
    (storage.root / "link.txt").symlink_to(secret)
    with pytest.raises(ScriptError, match="outside the storage directory"):
        files(storage, {"a.txt": "kestra:///link.txt"})


def test_uris_inside_the_store_are_read(storage: LocalStorage) -> None:
    target = storage.root / "t" / "f" / "e" / "tr" / "1" / "out.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"a,b\n")
    got = files(
        storage,
        {"by-file.csv": storage.uri(target), "by-kestra.csv": " kestra:///t/f/e/tr/1/out.csv\n"},
    )
    assert got == {"by-file.csv": b"a,b\n", "by-kestra.csv": b"a,b\n"}


@pytest.mark.parametrize(
    "value",
    [
        "see https://example.com for details",
        "curl -sf https://example.com/data.csv -o data.csv\n",
        "import urllib.request\nurllib.request.urlopen('https://example.com')\n",
        "line one\nfile:///etc/passwd\n",
        "::not a uri",
        "plain text",
        "",
    ],
)
def test_text_that_merely_contains_a_uri_stays_inline_content(storage: LocalStorage, value: str) -> None:
    assert not is_uri(value)
    assert files(storage, {"a.txt": value}) == {"a.txt": value.encode()}


def test_non_string_values_are_json_content(storage: LocalStorage) -> None:
    assert files(storage, {"a.json": {"url": "s3://bucket/key"}}) == {"a.json": b'{"url": "s3://bucket/key"}'}

"""SQUALL_STORAGE / SQUALL_STORAGE_READ: a bad value stops the start, naming the variable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.runtime import SettingsError, load_settings, task_storage
from control_plane.service.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://host/dir", "unknown storage scheme 'ftp'"),
        ("s3://", "names no bucket"),
        ("s3:///key/only", "names no bucket"),
        ("gs://", "names no bucket"),
        ("az://account", "names no container"),
        ("az:///container/x", "names no storage account"),
        ("s3://bucket/a/../b", "'.' or '..'"),
        ("file://host/dir", "not a local file:// URI"),
        ("bucket/prefix", "unknown storage scheme ''"),
    ],
)
def test_a_malformed_storage_url_is_a_settings_error_naming_the_variable(url: str, why: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"SQUALL_STORAGE": url})
    assert "SQUALL_STORAGE:" in str(caught.value) and why in str(caught.value)


def test_a_malformed_read_allowlist_entry_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"SQUALL_STORAGE_READ": "s3://shared/public/, https://example.com/x"})
    assert "SQUALL_STORAGE_READ:" in str(caught.value) and "'https'" in str(caught.value)


def test_storage_settings_are_read_from_the_environment() -> None:
    settings = load_settings(
        {
            "SQUALL_STORAGE": "s3://squall-data/prod",
            "SQUALL_STORAGE_READ": "s3://shared/public/, gs://datasets/open/",
            "SQUALL_STORAGE_ENDPOINT": "http://127.0.0.1:5000",
        }
    )
    assert settings.storage == "s3://squall-data/prod"
    assert settings.storage_read == ("s3://shared/public/", "gs://datasets/open/")
    storage = task_storage(settings)
    assert storage.url == "s3://squall-data/prod/"
    assert storage.storage.read_allowlist == ("s3://shared/public/", "gs://datasets/open/")
    assert storage.prefix("ns", "f", "e", "tr", 2) == "s3://squall-data/prod/ns/f/e/tr/2/"


def test_the_default_storage_is_a_directory_under_the_data_dir(tmp_path: Path) -> None:
    storage = task_storage(load_settings({}, data_dir=str(tmp_path)))
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path.resolve() / "storage"
    assert storage.url == (tmp_path.resolve() / "storage").as_uri() + "/"


def test_opening_a_cloud_storage_imports_no_sdk() -> None:
    # The control plane pays for an SDK only when it reads or writes through it.
    code = (
        "import json, sys\n"
        "from runners.storage import open_storage\n"
        "open_storage('s3://b/p', read=['gs://g/x/', 'az://acct/container/'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure')"
        " or m.startswith('google.cloud'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(result.stdout) == []

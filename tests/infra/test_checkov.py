"""checkov over infra/, from its own virtualenv, against the committed skip list.

checkov pins its own boto3 and friends, so it never goes into the project's environment: it
is installed once into a cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``), keyed by
version, and reused. The test fails on a failed check that ``infra/.checkov.yaml`` does not
skip, and on a skip that no longer fails (a stale reason is a lie in the config).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import INFRA

# checkov takes half a minute; its virtualenv is installed by one worker, its report made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("checkov")]

CHECKOV_VERSION = "3.3.30"
CONFIG = INFRA / ".checkov.yaml"


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / f"squall-checkov-venv-{CHECKOV_VERSION}"


def checkov_executable() -> Path:
    """The checkov of a dedicated virtualenv, created on first use (about a minute)."""
    home = _cache_dir()
    exe = home / "bin" / "checkov"
    ready = home / ".installed"
    if ready.exists() and exe.exists():
        return exe
    shutil.rmtree(home, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    install = subprocess.run(
        [
            str(home / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            f"checkov=={CHECKOV_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, f"installing checkov {CHECKOV_VERSION} failed:\n{install.stderr[-3000:]}"
    ready.write_text(CHECKOV_VERSION)
    return exe


def skip_list() -> dict[str, str]:
    """Skipped check id -> its reason (the comment on its line)."""
    ids = yaml.safe_load(CONFIG.read_text())["skip-check"]
    reasons = dict(re.findall(r"^\s*-\s*(CKV2?_\w+)\s*#\s*(.+?)\s*$", CONFIG.read_text(), flags=re.M))
    assert sorted(reasons) == sorted(ids), "every skip-check entry needs a `# reason` on its line"
    return reasons


def test_every_skip_has_a_reason() -> None:
    reasons = skip_list()
    assert reasons
    short = {check: reason for check, reason in reasons.items() if len(reason.split()) < 8}
    assert short == {}, "say why the check does not apply"


# Session, not module: under xdist the worker runs other modules' tests between these, and a
# module fixture is torn down at each switch (checkov ran twice, 15 s each).
@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's JSON report on a copy of infra/ without the skip list, so every failure shows."""
    exe = checkov_executable()
    work = tmp_path_factory.mktemp("checkov")
    # checkov reads .checkov.yaml from the scanned directory and its cwd: scan a copy without it.
    copy = work / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".checkov.yaml", ".terraform", "dist"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BC_", "PRISMA_", "CKV_"))}
    result = subprocess.run(
        [str(exe), "-d", str(copy), "--framework", "terraform", "--skip-download", "--quiet", "-o", "json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # checkov exits 1 when a check fails; anything else is checkov itself failing.
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture(scope="session")
def checkov_failures(checkov_report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(checkov_report["results"]["failed_checks"])


def test_checkov_parsed_the_whole_module(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["checkov_version"] == CHECKOV_VERSION
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 30  # the module's resources, through both examples
    assert summary["passed"] >= 100


def test_checkov_finds_nothing_beyond_the_skip_list(checkov_failures: list[dict[str, Any]]) -> None:
    reasons = skip_list()
    unexpected = [
        f"{c['check_id']} {c.get('check_name', '')}: {c.get('resource')} ({c.get('file_path')})"
        for c in checkov_failures
        if c["check_id"] not in reasons
    ]
    assert unexpected == [], "fix these, or skip them in infra/.checkov.yaml with a reason:\n" + "\n".join(
        unexpected
    )


def test_every_skip_is_still_needed(checkov_failures: list[dict[str, Any]]) -> None:
    failing = {c["check_id"] for c in checkov_failures}
    assert sorted(set(skip_list()) - failing) == [], "these skips no longer fail: remove them"


def test_checkov_runs_in_its_own_environment() -> None:
    assert not Path(sys.executable).resolve().is_relative_to(_cache_dir().resolve())
    assert checkov_executable().exists()

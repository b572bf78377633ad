"""Shared helpers for the Terraform checks: run terraform offline, read HCL with python-hcl2.

Terraform never runs inside the repository tree: modules are copied (or referenced by
absolute path) into a temporary directory, and ``TF_DATA_DIR`` points there too, so no
``.terraform`` directory, lock file or state is left next to the sources.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULE = INFRA / "modules" / "squall"
SUBMODULES = MODULE / "modules"

_HCL_OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=False)


def terraform_path() -> str:
    found = shutil.which("terraform")
    assert found, "terraform must be on PATH for the infra checks (see infra/README.md)"
    return found


def terraform_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
    env.update(
        TF_CLI_CONFIG_FILE="/dev/null",  # no user plugin cache or credentials
        TF_DATA_DIR=str(data_dir),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",  # no version check over the network
        NO_COLOR="1",
    )
    return env


def run_terraform(args: list[str], cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [terraform_path(), *args, *(["-no-color"] if args[0] not in ("fmt", "version") else [])],
        cwd=cwd,
        env=terraform_env(cwd / ".tfdata"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    if check:
        assert result.returncode == 0, (
            f"terraform {' '.join(args)} in {cwd}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def load_hcl(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return hcl2.load(fh, serialization_options=_HCL_OPTIONS)


def load_module(directory: Path) -> dict[str, list[Any]]:
    """All top-level blocks of a module's *.tf files, merged by block kind."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in load_hcl(path).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(module: Mapping[str, list[Any]], kind: str = "resource") -> dict[str, dict[str, Any]]:
    """``{"aws_lambda_function.this": body}`` for every resource (or data source) of a module."""
    found: dict[str, dict[str, Any]] = {}
    for block in module.get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                found[f"{rtype}.{name}"] = body
    return found


def named_blocks(module: Mapping[str, list[Any]], kind: str) -> dict[str, dict[str, Any]]:
    """``{"name": body}`` of ``variable``/``output``/``module`` blocks."""
    return {name: body for block in module.get(kind, []) for name, body in block.items()}


def locals_of(module: Mapping[str, list[Any]]) -> dict[str, Any]:
    return {k: v for block in module.get("locals", []) for k, v in block.items() if k != "__is_block__"}


def walk(value: Any) -> Iterator[Any]:
    """Every dict, list and scalar nested in ``value``."""
    yield value
    if isinstance(value, Mapping):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


@pytest.fixture(scope="session")
def squall_module() -> dict[str, list[Any]]:
    return load_module(MODULE)

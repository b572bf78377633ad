"""Shared helpers for the Terraform checks: run terraform offline, read HCL with python-hcl2.

Terraform never runs inside the repository tree: modules are copied (or referenced by
absolute path) into a temporary directory, and ``TF_DATA_DIR`` points there too, so no
``.terraform`` directory, lock file or state is left next to the sources.

The registry cannot be reached. The hashicorp/aws provider comes from a filesystem mirror on
the machine (``/opt/tf-plugins``, or ``SQUALL_TF_PROVIDER_MIRROR``), through a CLI
configuration file the ``aws_provider`` fixture writes in a temporary directory; a machine
without the mirror skips those tests with one line saying so, except in CI (``CI`` set),
where that is a failure.
"""

from __future__ import annotations

import functools
import json
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

PROVIDER_MIRROR = Path(os.environ.get("SQUALL_TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"


def terraform_path() -> str:
    found = shutil.which("terraform")
    assert found, "terraform must be on PATH for the infra checks (see infra/README.md)"
    return found


def terraform_env(data_dir: Path, cli_config: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
    env.update(
        # No user plugin cache or credentials: only the tests' own configuration, if any.
        TF_CLI_CONFIG_FILE=str(cli_config) if cli_config is not None else "/dev/null",
        TF_DATA_DIR=str(data_dir),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",  # no version check over the network
        NO_COLOR="1",
    )
    return env


def run_terraform(
    args: list[str], cwd: Path, *, check: bool = True, cli_config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [terraform_path(), *args, *(["-no-color"] if args[0] not in ("fmt", "version") else [])],
        cwd=cwd,
        env=terraform_env(cwd / ".tfdata", cli_config),
        capture_output=True,
        text=True,
        timeout=240,
    )
    if check:
        assert result.returncode == 0, (
            f"terraform {' '.join(args)} in {cwd}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@functools.cache
def terraform_platform() -> str:
    """``linux_amd64`` and the like: the directory a mirror keeps this machine's providers in."""
    result = subprocess.run(
        [terraform_path(), "version", "-json"],
        env=terraform_env(Path("/nonexistent")),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return str(json.loads(result.stdout)["platform"])


def mirrored_aws_versions(mirror: Path = PROVIDER_MIRROR) -> list[str]:
    """Versions of hashicorp/aws the mirror holds for this platform (unpacked layout)."""
    versions = mirror / AWS_PROVIDER
    if not versions.is_dir():
        return []
    platform = terraform_platform()
    return sorted(v.name for v in versions.iterdir() if any((v / platform).glob("terraform-provider-aws_*")))


def provider_cli_config(directory: Path, mirror: Path = PROVIDER_MIRROR) -> Path:
    """A CLI configuration that installs hashicorp/aws from ``mirror`` only, never the registry.

    The mirror doubles as the plugin cache: ``init`` then links the provider (about 700 MB)
    into each working directory instead of copying it. Without a lock file to check it
    against (none is kept), Terraform uses a cached provider only when told it may.
    """
    path = directory / "terraform.tfrc"
    path.write_text(
        f"""plugin_cache_dir = {json.dumps(str(mirror))}
plugin_cache_may_break_dependency_lock_file = true

provider_installation {{
  filesystem_mirror {{
    path    = {json.dumps(str(mirror))}
    include = ["{AWS_PROVIDER}"]
  }}
  direct {{
    exclude = ["{AWS_PROVIDER}"]
  }}
}}
"""
    )
    return path


@pytest.fixture(scope="session")
def aws_provider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI configuration file for tests that need hashicorp/aws (skips, or fails in CI, without it)."""
    if not mirrored_aws_versions():
        missing = (
            f"no hashicorp/aws provider for {terraform_platform()} in the filesystem mirror "
            f"{PROVIDER_MIRROR} (set SQUALL_TF_PROVIDER_MIRROR)"
        )
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return provider_cli_config(tmp_path_factory.mktemp("terraform-cli"))


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

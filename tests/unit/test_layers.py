"""Which package may import which (DESIGN.md section 1), checked by parsing every import.

Dependencies point one way: the engine is a pure core (no store, service, API, handlers or
runners, and no module that does I/O); the HTTP API is given its runtime and never reaches
for the Lambda handlers; runners never import the control plane. Imports are read with
``ast`` (``if TYPE_CHECKING:`` blocks and function-level imports included), so an import
hidden in a function body breaks the rule as surely as one at the top.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IO_MODULES = (
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "subprocess",
    "socket",
    "sqlite3",
    "threading",
    "asyncio",
    "urllib",
    "http",
    "boto3",
    "botocore",
    "httpx",
    "requests",
    "runners",
)
"""Modules that read or write the world; ``runners`` (the runner packages' I/O) among them."""

RULES: dict[str, tuple[str, ...]] = {
    # package: module prefixes it must not import
    "control_plane/engine": (
        "control_plane.service",
        "control_plane.store",
        "control_plane.api",
        "control_plane.handlers",
        "control_plane.runtime",
        "control_plane.server",
        "control_plane.cli",
        "control_plane.secrets",
        *IO_MODULES,
        # the engine never reads a clock or draws a random number: events carry the time, the
        # shell the ids, so replaying the same events gives the same execution and actions
        "time",
        "random",
        "uuid",
        "secrets",
    ),
    "control_plane/api": ("control_plane.handlers", "control_plane.server", "control_plane.cli"),
    "runners": ("control_plane",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, source: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (or ``source``, read as if there)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the module's package
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # ``from control_plane import handlers`` names a module too
                yield node.lineno, f"{base}.{alias.name}"


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imports(path):
            for prefix in forbidden:
                if _matches(name, prefix):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_a_layer_imports_nothing_it_must_not(package: str) -> None:
    assert violations(package, RULES[package]) == []


def test_the_import_reader_sees_every_kind_of_import() -> None:
    # The rule is only as good as the reader: a relative import, one under TYPE_CHECKING and
    # one in a function body are all seen, with the module a from-import names.
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..handlers import container\n"
        "from . import common\n"
        "if TYPE_CHECKING:\n    from control_plane.handlers.api import handler\n"
        "def f():\n    import control_plane.server\n"
    )
    found = {name for _, name in imports(ROOT / "control_plane" / "api" / "probe.py", source)}
    assert {
        "control_plane.handlers.container",
        "control_plane.api.common",
        "control_plane.handlers.api.handler",
        "control_plane.server",
    } <= found
    assert violations_in(found, RULES["control_plane/api"]) == [
        "control_plane.handlers",
        "control_plane.handlers.api",
        "control_plane.handlers.api.handler",
        "control_plane.handlers.container",
        "control_plane.server",
    ]


def violations_in(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(_matches(n, prefix) for prefix in forbidden))


def test_importing_the_handlers_leaves_the_environment_alone() -> None:
    # Configuration (PYDANTIC_DISABLE_PLUGINS among it) is the deployment's: the Terraform
    # module sets it on every function. Importing a handler must not write os.environ.
    code = (
        "import json, os; before = dict(os.environ); "
        "import control_plane.handlers, control_plane.handlers.api, control_plane.handlers.tick, "
        "control_plane.handlers.events, control_plane.handlers.schedule, control_plane.handlers.sweeper; "
        "after = dict(os.environ); "
        "print(json.dumps({k: after.get(k) for k in set(before) ^ set(after) | "
        "{k for k in before if before[k] != after.get(k)}}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {}

"""The UI's files ship in both artifacts: the wheel (pyproject package-data) and the Lambda zip.

A file added under ``control_plane/ui/static/`` in a folder deeper than the package-data
globs reach would be served from a checkout and missing from an install: these tests build
what each artifact would hold and compare it with the folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from control_plane.packaging import _source_entries, project_root

ROOT = project_root()
STATIC = ROOT / "control_plane" / "ui" / "static"


def _static_names() -> set[str]:
    names = {p.relative_to(ROOT).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert "control_plane/ui/static/index.html" in names
    return names


def test_the_wheel_build_copies_every_ui_file(tmp_path: Path) -> None:
    """setuptools' build_py (what a wheel is made of) over a copy of the sources."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("control_plane", "runners"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "lib"
    done = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "--build-lib", lib],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shipped = (lib / "control_plane/ui/static").rglob("*")
    built = {p.relative_to(lib).as_posix() for p in shipped if p.is_file()}
    assert built == _static_names()


def test_the_lambda_zip_takes_every_ui_file_from_the_source_tree() -> None:
    entries = {entry.name for entry in _source_entries(ROOT, "squall")}
    assert _static_names() <= entries

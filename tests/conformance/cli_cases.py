"""Running a cases file through the ``squall conformance`` command, as a user would."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from control_plane.cli import app
from control_plane.conformance import load_cases

__all__ = ["assert_all_pass"]


def assert_all_pass(cases: Path, at_least: int) -> None:
    """Every case of ``cases`` prints ``PASS``, and the last line is ``N passed, 0 failed``."""
    names = [case["name"] for case in load_cases(cases)]
    result = CliRunner().invoke(app, ["conformance", str(cases)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:-1] == [f"PASS {name}" for name in names]
    assert lines[-1] == f"{len(names)} passed, 0 failed"
    assert len(names) >= at_least

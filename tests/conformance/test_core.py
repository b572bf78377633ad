"""The project's own core conformance corpus through ``squall conformance``: always runs, needs no shared/.

``core/cases.yaml`` must pass as a whole. ``core/differences.yaml`` holds Kestra behaviour Squall
does not reproduce yet; each of its cases is a strict expected failure, so a fix shows up as an
unexpected pass and the case moves to ``cases.yaml``. See core/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from control_plane.conformance import load_cases, run_case
from tests.conformance.cli_cases import assert_all_pass

CORE = Path(__file__).resolve().parent / "core"
CASES = CORE / "cases.yaml"
DIFFERENCES = CORE / "differences.yaml"
cli = CliRunner()


def test_the_core_cases_pass_through_the_cli() -> None:
    assert_all_pass(CASES, at_least=40)


def _difference(case: dict[str, Any]) -> Any:
    reason = " ".join(str(case.get("note", "Kestra behaves differently")).split())
    return pytest.param(case, id=case["name"], marks=pytest.mark.xfail(strict=True, reason=reason))


@pytest.mark.parametrize("case", [_difference(c) for c in load_cases(DIFFERENCES)])
def test_known_difference_from_kestra(case: dict[str, Any]) -> None:
    result = run_case(case, CORE)
    assert result.passed, result.line()


def test_every_flow_has_a_case_and_names_are_unique() -> None:
    cases = load_cases(CASES) + load_cases(DIFFERENCES)
    names = [case["name"] for case in cases]
    assert len(names) == len(set(names))
    used = {(CORE / case["flow"]).resolve() for case in cases}
    assert {path.resolve() for path in (CORE / "flows").rglob("*.yaml")} <= used
    assert all(path.exists() for path in used)

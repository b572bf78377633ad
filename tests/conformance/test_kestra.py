"""Every case of Kestra's conformance suite (shared/conformance/kestra) must pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from control_plane.conformance import load_cases, run_case

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(
    os.environ.get(
        "SQUALL_CONFORMANCE_CASES", ROOT.parent / "shared" / "conformance" / "kestra" / "cases.yaml"
    )
)

if not CASES.exists():  # pragma: no cover - the shared folder is cloned beside the repository
    pytest.fail(f"conformance cases not found at {CASES}; set SQUALL_CONFORMANCE_CASES", pytrace=False)

_cases = load_cases(CASES)


@pytest.mark.parametrize("case", _cases, ids=[c["name"] for c in _cases])
def test_case(case: dict) -> None:
    result = run_case(case, CASES.parent)
    assert result.passed, result.line()


def test_all_invalid_flows_are_covered() -> None:
    invalid = {Path(c["flow"]).name for c in _cases if c.get("invalid")}
    assert invalid == {p.name for p in (CASES.parent / "flows" / "invalid").iterdir()}
    assert len(invalid) == 22

"""Every case of Kestra's conformance suite (shared/conformance/kestra) must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.conformance import run_case
from tests.shared_suite import CASES, CONFORMANCE, needs_suite

_cases = CASES


@pytest.mark.parametrize("case", _cases, ids=[c["name"] for c in _cases])
def test_case(case: dict) -> None:
    result = run_case(case, CONFORMANCE)
    assert result.passed, result.line()


@needs_suite
def test_all_invalid_flows_are_covered() -> None:
    invalid = {Path(c["flow"]).name for c in _cases if c.get("invalid")}
    assert invalid == {p.name for p in (CONFORMANCE / "flows" / "invalid").iterdir()}
    assert len(invalid) == 22

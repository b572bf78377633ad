"""Issue 24's Kestra compatibility cases through ``squall conformance``: one file per area.

Each ``compat/<area>.cases.yaml`` must pass as a whole through the CLI, and every flow under
``compat/flows/`` must be used by a case (a flow nobody runs proves nothing).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.conformance import load_cases
from tests.conformance.cli_cases import assert_all_pass

COMPAT = Path(__file__).resolve().parent / "compat"
FILES = sorted(COMPAT.glob("*.cases.yaml"))


@pytest.mark.parametrize("cases", FILES, ids=[f.name.removesuffix(".cases.yaml") for f in FILES])
def test_the_compat_cases_pass_through_the_cli(cases: Path) -> None:
    assert_all_pass(cases, at_least=1)


def test_every_compat_flow_has_a_case_and_names_are_unique() -> None:
    cases = [case for path in FILES for case in load_cases(path)]
    names = [case["name"] for case in cases]
    assert len(names) == len(set(names))
    used = {(COMPAT / case["flow"]).resolve() for case in cases if "flow" in case}
    used |= {(COMPAT / f).resolve() for case in cases for f in case.get("flows", ())}
    assert {path.resolve() for path in (COMPAT / "flows").rglob("*.yaml")} <= used

"""The suite's own machinery does what pyproject.toml says it does."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("probe")
def test_xdist_groups_are_honoured(request: pytest.FixtureRequest) -> None:
    """Tests that must not overlap (one port, one plugin cache, one expensive session fixture)
    share an ``xdist_group``. Under pytest 9, xdist 3.8 could no longer tag their node ids and
    every group was silently ignored: checkov ran twice, and two README blocks could bind port
    8080 at once. This fails when an upgrade breaks it again."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under pytest-xdist's --dist loadgroup (-n 0 runs in one process)")
    assert request.node.nodeid.endswith("@probe"), request.node.nodeid

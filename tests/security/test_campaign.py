"""Issue 17's bad-input campaign as a test: it prints its figures line and every count must be 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.campaign import run_campaign
from tests.security.http_campaign import http_campaign

pytestmark = pytest.mark.slow  # about a minute: thousands of bad inputs, in process and over HTTP


def test_bad_input_campaign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tally = run_campaign(tmp_path, http=lambda t: http_campaign(t, tmp_path))
    with capsys.disabled():
        print(f"\n{tally.line()}")
    assert tally.ok(), tally.details()
    assert tally.bad_inputs >= 2000, tally.line()

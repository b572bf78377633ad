"""A short crash campaign (issue 18): 12 mixed trials through the code of the full one, every counter 0.

The full campaign (300 trials, docs/reliability.md) is ``python -m tests.reliability.crash_campaign``;
this one covers each scenario (sequential, parallel, foreach, two runs on one database) three
times, with ``kill -9``, SIGTERM and SIGHUP, in under a minute on two cores. The seed is fixed so
a failure names trials that ``--seed 2024 --only N`` reruns; timing still varies from run to run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.reliability.crash_campaign import COUNTERS, EXTRA_COUNTERS, Options, run_campaign

DEFAULT_SEED = 2024  # its 12 plans: every scenario, 3 SIGTERM, 3 SIGHUP, every recovery, a kill at 0
SEED = int(os.environ.get("SQUALL_CRASH_SEED", DEFAULT_SEED))


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(sys.platform != "linux", reason="signals, process groups and /proc")
def test_a_short_crash_campaign_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = run_campaign(
        12,
        seed=SEED,
        workers=2,
        options=Options(recovery_deadline=30.0, workdir=tmp_path),
        progress=lines.append,
    )
    report = "\n".join([*lines, *summary.breakdown(), summary.final_line()])
    assert len(summary.results) == 12, report
    assert {r.plan.scenario for r in summary.results} == {"sequential", "parallel", "foreach", "concurrent"}
    if SEED == DEFAULT_SEED:
        assert {r.plan.signal for r in summary.results} == {"KILL", "TERM", "HUP"}, report
        assert {r.plan.recovery for r in summary.results} == {"resume", "list", "show"}, report
    totals = {name: summary.total(name) for name in (*COUNTERS, *EXTRA_COUNTERS)}
    assert totals == dict.fromkeys(totals, 0), report
    assert summary.ok, report
    assert summary.final_line() == (
        "crash trials: 12, tasks run twice: 0, lost: 0, stuck: 0, orphans after recovery: 0"
    )

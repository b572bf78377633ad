"""``squall run`` in its own process drives a Pause's timers until the execution ends.

Kestra moves a paused execution on by itself when its Pause has ``pauseDuration`` (resume) or
``timeout`` (which fails the task: ExecutorService.handlePausedDelay); only a Pause with
neither waits for a person. ``squall run`` must behave the same: wait (really, or not at all
with ``--virtual-time``), never exit PAUSED.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def squall_run(tmp_path: Path, pause: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    flow = tmp_path / "pause.yaml"
    flow.write_text(
        "id: pause\nnamespace: squall.compat.service\ntasks:\n"
        f"  - id: wait\n    type: io.kestra.plugin.core.flow.Pause\n{pause}"
        "  - id: after\n    type: io.kestra.plugin.core.log.Log\n    message: went on\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "control_plane.cli", "run", str(flow), "--db", str(tmp_path / "s.db"), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    ("field", "code", "state"), [("pauseDuration", 0, "SUCCESS"), ("timeout", 1, "FAILED")]
)
def test_an_hour_long_pause_timer_is_skipped_with_virtual_time(
    tmp_path: Path, field: str, code: int, state: str
) -> None:
    done, took = squall_run(tmp_path, f"    {field}: PT1H\n", "--virtual-time")
    assert done.returncode == code, done.stdout + done.stderr
    assert state in done.stdout and "PAUSED" not in done.stdout
    assert ("went on" in done.stdout) is (field == "pauseDuration")
    assert took < 60


def test_a_pause_timeout_is_really_waited_then_its_behavior_applies(tmp_path: Path) -> None:
    done, took = squall_run(tmp_path, "    timeout: PT1S\n")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED" in done.stdout and "went on" not in done.stdout
    assert took >= 1.0  # the second was waited, not skipped


def test_a_pause_without_a_timer_exits_paused_saying_how_to_resume(tmp_path: Path) -> None:
    done, _ = squall_run(tmp_path, "", "--virtual-time")
    assert done.returncode == 1
    assert "PAUSED" in done.stdout and "squall executions resume" in done.stdout

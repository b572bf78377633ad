"""What ``squall run`` shows while it runs: the live block on a terminal (a pseudo-terminal
here), plain lines through a pipe, and a flow retry said as such."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control_plane.cli import app

ROOT = Path(__file__).resolve().parents[2]
VALUES = 60


def foreach_flow(tmp_path: Path, values: int = VALUES) -> Path:
    items = ", ".join(f'"v{i}"' for i in range(values))
    flow = tmp_path / "fanout.yaml"
    flow.write_text(
        "id: fanout\nnamespace: t\ntasks:\n"
        f"  - id: each\n    type: io.kestra.plugin.core.flow.ForEach\n    values: [{items}]\n"
        "    concurrencyLimit: 8\n    tasks:\n"
        "      - id: planet\n        type: io.kestra.plugin.scripts.shell.Commands\n"
        "        commands: ['echo hello {{ taskrun.value }}']\n"
    )
    return flow


def squall(*args: str) -> list[str]:
    return [sys.executable, "-m", "control_plane.cli", *args]


def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
        "SQUALL_DB": str(tmp_path / "p.db"),
    }


@pytest.mark.skipif(sys.platform != "linux", reason="a pseudo-terminal")
def test_on_a_terminal_the_live_block_counts_done_over_total(tmp_path: Path) -> None:
    flow = foreach_flow(tmp_path)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env_ = {k: v for k, v in env(tmp_path).items() if k not in ("COLUMNS", "NO_COLOR")}
    proc = subprocess.Popen(
        squall("run", str(flow)), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env_
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([master], [], [], left)[0]:
                break  # the deadline passed: the assertions below say what was seen
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    finally:
        proc.kill()
        os.close(master)
    out = b"".join(chunks).decode()
    assert "\x1b[1A" in out  # the block is redrawn in place
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # what the terminal shows, less colours and moves
    total = VALUES + 1
    counts = [int(m) for m in re.findall(rf"(\d+)/{total} done", text)]
    assert counts, text[-3000:]
    assert any(0 < n < total for n in counts), counts  # drawn while it ran, not only at the end
    assert counts == sorted(counts) and counts[-1] == total
    assert re.search(r"running: planet \(v\d+\)", text)  # the running tasks by name
    assert "INFO  planet: hello v59" in text  # the logs go above the block
    assert "planet x60: 60 SUCCESS" in text  # the final tree, collapsed
    assert re.search(r"Execution \w+ SUCCESS in [\d.]+s, 61 task runs", text)


def test_through_a_pipe_it_writes_plain_lines(tmp_path: Path) -> None:
    flow = foreach_flow(tmp_path, 20)
    done = subprocess.run(
        squall("run", str(flow)), env=env(tmp_path), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\x1b" not in out and "\r" not in out  # no colour, no cursor movement
    assert sum(1 for line in out.splitlines() if re.fullmatch(r"INFO  planet: hello v\d+", line)) == 20
    assert "planet x20: 20 SUCCESS" in out
    assert re.search(r"^Execution \w+ SUCCESS in [\d.]+s, 21 task runs$", out, re.M)


def test_a_flow_retry_says_a_new_execution_was_made(tmp_path: Path) -> None:
    flow = tmp_path / "retry.yaml"
    flow.write_text(
        "id: flaky\nnamespace: t\n"
        "retry:\n  type: constant\n  interval: PT1S\n  maxAttempts: 2\n  behavior: CREATE_NEW_EXECUTION\n"
        "tasks:\n  - id: boom\n    type: io.kestra.plugin.core.execution.Fail\n"
    )
    result = CliRunner().invoke(app, ["run", str(flow), "--virtual-time", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 1, result.output
    first, second = re.findall(
        r"execution (\w+) RETRIED: the flow's retry made a new execution, (\w+)", result.output
    )[0]
    assert first != second
    assert (
        f"execution {first} RETRIED, retried as execution {second}" in result.output
    )  # above the final tree
    assert re.search(rf"Execution {second} FAILED", result.output)

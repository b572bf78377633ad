"""Script tasks through ``squall conformance``: the production driver, with the process runner."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from control_plane.cli import app
from tests.conformance.cli_cases import assert_all_pass

SCRIPTS = Path(__file__).resolve().parent / "scripts"
CASES = SCRIPTS / "cases.yaml"
cli = CliRunner()


def test_the_script_cases_pass_through_the_cli() -> None:
    assert_all_pass(CASES, at_least=5)


def test_a_script_case_that_does_not_hold_fails_the_run(tmp_path: Path) -> None:
    shutil.copytree(SCRIPTS / "flows", tmp_path / "flows")
    (tmp_path / "cases.yaml").write_text(
        "cases:\n"
        "  - name: wrong-output\n"
        "    flow: flows/shell-files.yaml\n"
        "    outputs:\n"
        "      - {task: consume, path: vars.last, equals: LINUX}\n"
        "  - name: right-output\n"
        "    flow: flows/shell-files.yaml\n"
        "    outputs:\n"
        "      - {task: consume, path: vars.last, equals: LINUS}\n",
        encoding="utf-8",
    )
    result = cli.invoke(app, ["conformance", str(tmp_path / "cases.yaml")])
    assert result.exit_code == 1, result.output
    assert "FAIL wrong-output: outputs of consume: vars.last is 'LINUS', expected 'LINUX'" in result.output
    assert "PASS right-output" in result.output
    assert result.output.splitlines()[-1] == "1 passed, 1 failed"


def test_a_case_over_its_time_is_killed_and_fails(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(
        "id: slow\nnamespace: t\ntasks:\n"
        "  - id: nap\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands: ['sleep 60']\n",
        encoding="utf-8",
    )
    (tmp_path / "cases.yaml").write_text(
        "cases:\n  - name: slow\n    flow: slow.yaml\n    state: SUCCESS\n", encoding="utf-8"
    )
    result = cli.invoke(app, ["conformance", str(tmp_path / "cases.yaml"), "--case-timeout", "1"])
    assert result.exit_code == 1, result.output
    assert "FAIL slow: state KILLED, expected SUCCESS" in result.output

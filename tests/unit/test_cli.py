"""The ``squall`` command, driven in-process through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from control_plane.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_run_hello_sample_succeeds_with_outputs() -> None:
    result = runner.invoke(app, ["run", str(ROOT / "samples" / "hello.yaml"), "--input", "name=Ada"])
    assert result.exit_code == 0, result.output
    assert "Hello, Ada!" in result.output
    assert "SUCCESS" in result.output
    assert "Ada visited 3 planets, last EARTH" in result.output


def test_run_reports_bad_inputs_without_traceback(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "id: f\nnamespace: t\ninputs:\n  - id: n\n    type: INT\ntasks:\n"
        "  - id: l\n    type: io.kestra.plugin.core.log.Log\n    message: '{{ inputs.n }}'\n"
    )
    result = runner.invoke(app, ["run", str(flow), "--input", "n=abc"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "`n`" in result.output


def test_run_failed_flow_exits_1(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "id: f\nnamespace: t\ntasks:\n  - id: x\n    type: io.kestra.plugin.core.execution.Fail\n"
    )
    result = runner.invoke(app, ["run", str(flow), "--quiet"])
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_run_refuses_a_disabled_flow_and_stores_nothing(tmp_path: Path) -> None:
    """Kestra refuses to create an execution of a disabled flow; so does ``squall run``."""
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "id: off\nnamespace: t\ndisabled: true\ntasks:\n"
        "  - id: l\n    type: io.kestra.plugin.core.log.Log\n    message: ran\n"
    )
    db = tmp_path / "squall.db"
    result = runner.invoke(app, ["run", str(flow), "--db", str(db)])
    assert result.exit_code == 1
    assert "flow t.off is disabled" in result.output
    assert "ran" not in result.output and "Traceback" not in result.output
    assert not db.exists()


def test_validate_lists_every_violation_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: b\nnamespace: t\ntasks:\n  - id: x\n    type: io.kestra.plugin.core.log.Log\n"
        "    message: hi\n    bogus: 1\n  - id: x\n    type: nope.Task\n"
    )
    good = ROOT / "samples" / "hello.yaml"
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert "bogus" in result.output and "nope.Task" in result.output and "Duplicate" in result.output
    assert f"{bad}:7:" in result.output
    assert runner.invoke(app, ["validate", str(good)]).exit_code == 0


def test_validate_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml" in result.output and "Traceback" not in result.output


def test_schema_is_json(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "-o", str(out)]).exit_code == 0
    schema = json.loads(out.read_text())
    assert "io.kestra.plugin.core.log.Log" in json.dumps(schema)


def test_conformance_command_on_a_custom_cases_file(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(
        "id: ok\nnamespace: t\ntasks:\n  - id: r\n"
        "    type: io.kestra.plugin.core.debug.Return\n    format: hi\n"
    )
    (tmp_path / "cases.yaml").write_text(
        "cases:\n"
        "  - {name: good, flow: ok.yaml, state: SUCCESS, taskruns: 1,"
        " outputs: [{task: r, path: value, equals: hi}]}\n"
        "  - {name: wrong, flow: ok.yaml, state: FAILED}\n"
    )
    result = runner.invoke(app, ["conformance", str(tmp_path / "cases.yaml")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == "PASS good"
    assert lines[1].startswith("FAIL wrong: state SUCCESS, expected FAILED")
    assert lines[-1] == "1 passed, 1 failed"

"""``squall run FILE`` runs without typer (control_plane/cli.py) and behaves as through it.

Each case runs the real command twice in new processes: ``run FILE`` (the direct path) and
``run -- FILE`` (the same command line, parsed by typer), each on a new database, and compares
the exit status, stderr, and stdout with the execution ids and durations masked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.cli import _plain_run

ROOT = Path(__file__).resolve().parents[2]

FLOWS = {
    "outputs": (
        "id: ok\nnamespace: t\ntasks:\n"
        "  - id: a\n    type: io.kestra.plugin.core.debug.Return\n    format: '1'\n"
        "  - id: b\n    type: io.kestra.plugin.core.log.Log\n    message: 'b got {{ outputs.a.value }}'\n"
        "outputs:\n  - id: result\n    type: STRING\n    value: '{{ outputs.a.value }}'\n"
    ),
    "fails": (
        "id: bad\nnamespace: t\ntasks:\n"
        "  - id: boom\n    type: io.kestra.plugin.core.execution.Fail\n    errorMessage: 'no [luck]'\n"
    ),
    "invalid": (
        "id: inv\nnamespace: t\ntasks:\n  - id: x\n    type: io.kestra.plugin.core.log.Log\n    nope: 1\n"
    ),
    "disabled": (
        "id: off\nnamespace: t\ndisabled: true\ntasks:\n"
        "  - id: x\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n"
    ),
    "secret": (
        "id: sec\nnamespace: t\ntasks:\n"
        "  - id: x\n    type: io.kestra.plugin.core.log.Log\n    message: \"token {{ secret('TOKEN') }}\"\n"
    ),
    "missing": None,
}


def _squall(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "control_plane.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def _masked(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{22}\b", "<id>", text)
    return re.sub(r"\b\d+\.\d\ds\b", "<s>", text)


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_run_file_prints_and_exits_as_typer_does(case: str, tmp_path: Path) -> None:
    flow = tmp_path / f"{case}.yaml"
    if FLOWS[case] is not None:
        flow.write_text(FLOWS[case] or "")
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("TOKEN: s3cr3t\n")
    secrets.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SQUALL_SECRETS_FILE": str(secrets)}
    env.pop("SQUALL_DATA_DIR", None)
    results = []
    for way, args in (("direct", ["run", str(flow)]), ("typer", ["run", "--", str(flow)])):
        results.append(_squall(args, {**env, "SQUALL_DB": str(tmp_path / way / "s.db")}, tmp_path))
    direct, typed = results
    assert direct.returncode == typed.returncode, (direct.stderr, typed.stderr)
    assert _masked(direct.stderr) == _masked(typed.stderr)
    assert _masked(direct.stdout) == _masked(typed.stdout)
    assert (tmp_path / "direct" / "s.db").exists() == (tmp_path / "typer" / "s.db").exists()
    expected = {"outputs": 0, "secret": 0}.get(case, 1)
    assert direct.returncode == expected, direct.stdout + direct.stderr
    if case == "secret":
        assert "s3cr3t" not in direct.stdout and "token" in direct.stdout  # read and masked
    if case == "outputs":
        assert '"result": "1"' in direct.stdout


def test_run_file_imports_no_typer(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(FLOWS["outputs"] or "")
    script = (
        "import sys\n"
        "from control_plane.cli import main\n"
        f"sys.argv = ['squall', 'run', {str(flow)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('exit', code, sorted(m for m in sys.modules if m.partition('.')[0] in ('typer', 'click')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SQUALL_DB": str(tmp_path / "s.db")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "exit 0 []", done.stdout


@pytest.mark.parametrize(
    ("args", "direct"),
    [
        (["run", "f.yaml"], "f.yaml"),
        (["run", "dir with space/f.yaml"], "dir with space/f.yaml"),
        (["run", "f.yaml", "-q"], None),
        (["run", "-q", "f.yaml"], None),
        (["run", "--", "f.yaml"], None),
        (["run", "--help"], None),
        (["run", "-"], None),
        (["run", ""], None),
        (["run"], None),
        (["validate", "f.yaml"], None),
        (["--version", "run"], None),
        (["run", "f\udcff.yaml"], None),  # bytes that are not UTF-8: typer's conversion decides
    ],
)
def test_only_the_plain_form_skips_typer(args: list[str], direct: str | None) -> None:
    assert _plain_run(args) == direct


def test_a_completion_request_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_SQUALL_COMPLETE", "bash_complete")
    assert _plain_run(["run", "f.yaml"]) is None

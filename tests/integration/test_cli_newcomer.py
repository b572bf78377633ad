"""The ``squall`` command as a newcomer meets it, run as installed (a subprocess, stdout a pipe).

Piped output must stay machine-readable (one record a line, full ids, no markup, no wrapping);
mistakes must be errors that say what to type instead; no command may end in a traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "samples" / "hello.yaml"


def squall(*args: str, db: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``squall ARGS`` with stdout and stderr pipes, as a script or CI runs it."""
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
    if db is not None:
        env["SQUALL_DB"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "control_plane.cli", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        cwd=cwd,
        timeout=120,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SELECT_FLOW = """\
id: pick
namespace: t
inputs:
  - id: color
    type: SELECT
    values: [red, green]
  - id: count
    type: INT
    defaults: 1
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "{{ inputs.color }} x{{ inputs.count }}"
"""


def test_list_piped_gives_full_ids_that_show_accepts(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    for _ in range(2):
        assert squall("run", str(HELLO), "-q", db=db).returncode == 0
    listed = squall("executions", "list", db=db)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all(line == line.rstrip() for line in lines)
    ids = [line.split("\t")[0] for line in lines]  # `| cut -f1`
    assert all(len(i) == 22 and "…" not in i for i in ids)
    for execution_id in ids:
        shown = squall("executions", "show", execution_id, db=db)
        assert shown.returncode == 0 and execution_id in shown.stdout
        assert "[red]" not in shown.stdout and "\x1b[" not in shown.stdout


def test_any_unique_prefix_of_an_id_works_and_an_ambiguous_one_is_named(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    ids = []
    for _ in range(2):
        assert squall("run", str(HELLO), "-q", db=db).returncode == 0
    ids = [line.split("\t")[0] for line in squall("executions", "list", db=db).stdout.splitlines()]
    common = next((ids[0][:i] for i in range(len(ids[0])) if ids[0][i] != ids[1][i]), ids[0])
    unique = ids[0][: len(common) + 1]
    shown = squall("executions", "show", unique, "--output", "json", db=db)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == ids[0]
    logs = squall("executions", "logs", unique, db=db)
    assert logs.returncode == 0 and "Hello, world!" in logs.stdout
    if common:
        ambiguous = squall("executions", "show", common, db=db)
        assert ambiguous.returncode == 1 and "ambiguous" in ambiguous.stderr
        assert all(i in ambiguous.stderr for i in ids)


def test_json_output_is_the_apis_views(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    assert squall("run", str(HELLO), "-q", "-i", "name=Ada", db=db).returncode == 0
    [summary] = json.loads(squall("executions", "list", "--output", "json", db=db).stdout)
    assert summary["flowId"] == "hello" and summary["state"]["current"] == "SUCCESS"
    execution = json.loads(squall("executions", "show", summary["id"], "--output", "json", db=db).stdout)
    assert execution["inputs"] == {"name": "Ada"} and execution["taskRunList"]
    [flow] = json.loads(squall("flows", "list", "--output", "json", db=db).stdout)
    assert (flow["namespace"], flow["id"], flow["revision"]) == ("squall.samples", "hello", 1)
    table = squall("flows", "list", "--output", "table", db=db)
    assert table.returncode == 0 and "namespace" in table.stdout and "squall.samples" in table.stdout


def test_validate_piped_keeps_each_violation_on_one_line_and_has_json(tmp_path: Path) -> None:
    long_id = "a-task-id-long-enough-to-push-the-violation-well-past-eighty-columns"
    bad = write(
        tmp_path / "bad.yaml",
        f"id: b\nnamespace: t\ntasks:\n  - id: {long_id}\n    type: io.kestra.plugin.core.log.Log\n"
        "    message: hi\n    bogusPropertyWithAVeryLongName: 1\n",
    )
    result = squall("validate", str(bad))
    assert result.returncode == 1
    [header, violation] = result.stderr.splitlines()
    assert header == f"{bad}: 1 violation"
    assert violation.startswith(f"{bad}:7:5: tasks[0]") and "bogusPropertyWithAVeryLongName" in violation
    assert len(violation) > 80 and violation == violation.rstrip()
    as_json = squall("validate", str(bad), str(HELLO), "--output", "json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert [r["valid"] for r in report] == [False, True]
    assert report[0]["violations"][0]["line"] == 7 and report[1]["violations"] == []


def test_unknown_inputs_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    flow = write(tmp_path / "pick.yaml", SELECT_FLOW)
    typo = squall("run", str(flow), "-i", "colr=red", db=db)
    assert typo.returncode == 2 and "unknown input 'colr'; did you mean 'color'?" in typo.stderr
    stranger = squall("run", str(HELLO), "-i", "zzz=1", db=db)
    assert stranger.returncode == 2 and "flow squall.samples.hello declares name" in stranger.stderr
    assert squall("executions", "list", "--output", "json", db=db).stdout.strip() == "[]"  # nothing started


def test_input_errors_name_the_allowed_values_once(tmp_path: Path) -> None:
    flow = write(tmp_path / "pick.yaml", SELECT_FLOW)
    result = squall("run", str(flow), "-i", "color=blue", "-i", "count=abc", db=tmp_path / "s.db")
    assert result.returncode == 1
    assert "Invalid input for `color`, it must match the values `[red, green]`, but received `blue`" in (
        result.stderr
    )
    assert "Invalid input for `count`, Expected `INT` but received `abc`" in result.stderr
    assert result.stderr.count("but received `abc`") == 1


def test_resume_refuses_an_input_the_pause_does_not_declare(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    flow = write(
        tmp_path / "gate.yaml",
        "id: gate\nnamespace: t\ntasks:\n  - id: wait\n    type: io.kestra.plugin.core.flow.Pause\n"
        "    onResume:\n      - id: approved\n        type: BOOLEAN\n"
        "  - id: after\n    type: io.kestra.plugin.core.log.Log\n"
        '    message: "{{ outputs.wait.onResume.approved }}"\n',
    )
    paused = squall("run", str(flow), "-q", db=db)
    assert "PAUSED" in paused.stdout, paused.stdout + paused.stderr
    execution_id = squall("executions", "list", db=db).stdout.split("\t")[0]
    typo = squall("executions", "resume", execution_id, "-i", "aproved=true", db=db)
    assert typo.returncode == 2 and "unknown input 'aproved'; did you mean 'approved'?" in typo.stderr
    done = squall("executions", "resume", execution_id[:8], "-i", "approved=true", "-q", db=db)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_version_and_help_without_types_after_flags() -> None:
    version = squall("--version")
    assert version.returncode == 0 and version.stdout.startswith("squall ")
    helped = squall("run", "--help")
    assert helped.returncode == 0 and "<bool>" not in helped.stdout and "-q, --quiet" in helped.stdout
    assert "-i, --input KEY=VALUE" in helped.stdout


def test_a_timeout_is_logged_once_without_pythons_timedelta(tmp_path: Path) -> None:
    """Squall's timer says Kestra's ``Timeout after 00:00:01.000``; if the process runner's own
    limit ends the command first, ``timed out after 1s``. Either way, once."""
    db = tmp_path / "s.db"
    flow = write(
        tmp_path / "slow.yaml",
        "id: slow\nnamespace: t\ntasks:\n  - id: nap\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    timeout: PT1S\n    commands: ['sleep 30']\n",
    )
    result = squall("run", str(flow), "-q", db=db)
    assert result.returncode == 1
    logs = squall("executions", "logs", squall("executions", "list", db=db).stdout.split("\t")[0], db=db)
    said = re.findall(r"Timeout after 00:00:01\.000|timed out after 1s", logs.stdout)
    assert len(said) == 1, logs.stdout
    assert not re.search(r"after \d:\d\d:\d\d\b", logs.stdout), logs.stdout


def test_a_flow_output_of_the_wrong_type_says_so_in_kestras_shape(tmp_path: Path) -> None:
    flow = write(
        tmp_path / "out.yaml",
        "id: out\nnamespace: t\ntasks:\n  - id: r\n    type: io.kestra.plugin.core.debug.Return\n"
        "    format: not-a-number\noutputs:\n  - id: n\n    type: INT\n"
        '    value: "{{ outputs.r.value }}"\n',
    )
    result = squall("run", str(flow), db=tmp_path / "s.db")
    assert result.returncode == 1
    assert "Invalid output for `n`, Expected `INT` but received `not-a-number`" in result.stdout
    assert "invalid literal" not in result.stdout + result.stderr


BAD_COMMANDS = [
    pytest.param(["run", "missing.yaml"], id="run-missing-file"),
    pytest.param(["run", "{hello}", "-i", "name"], id="run-input-without-value"),
    pytest.param(["run", "{hello}", "-i", "name=\udcff"], id="run-input-not-utf8"),
    pytest.param(["run", "{hello}", "--db", "/proc/no/such.db"], id="run-db-unwritable"),
    pytest.param(["executions", "list", "--state", "BOGUS"], id="list-bad-state"),
    pytest.param(["executions", "list", "--limit", "0"], id="list-bad-limit"),
    pytest.param(["executions", "list", "--output", "xml"], id="list-bad-output"),
    pytest.param(["executions", "show", "nope"], id="show-unknown"),
    pytest.param(["executions", "logs", "nope", "--task", "x"], id="logs-unknown"),
    pytest.param(["executions", "kill", "nope"], id="kill-unknown"),
    pytest.param(["executions", "restart", "nope"], id="restart-unknown"),
    pytest.param(["executions", "resume", "nope", "-i", "a=1"], id="resume-unknown"),
    pytest.param(["executions", "replay", "nope", "--task", "x"], id="replay-unknown"),
    pytest.param(["executions", "purge", "--older-than", "soon"], id="purge-bad-age"),
    pytest.param(["flows", "deploy", "missing.yaml"], id="deploy-missing-file"),
    pytest.param(["flows", "list", "--db", "{notdb}"], id="flows-list-not-a-database"),
    pytest.param(["validate", "{binary}"], id="validate-binary"),
    pytest.param(["schema", "-o", "/missing/dir/x.json"], id="schema-unwritable"),
    pytest.param(["conformance", "missing.yaml"], id="conformance-missing"),
    pytest.param(["server", "--port", "99999"], id="server-bad-port"),
    pytest.param(["server", "--store", "redis"], id="server-bad-store"),
    pytest.param(["package", "--arch", "sparc"], id="package-bad-arch"),
    pytest.param(["package", "--extra", "nope"], id="package-bad-extra"),
    pytest.param(["nosuchcommand"], id="unknown-command"),
]


@pytest.mark.parametrize("args", BAD_COMMANDS)
def test_every_command_with_bad_arguments_says_one_clear_thing(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "s.db"
    assert squall("run", str(HELLO), "-q", db=db).returncode == 0  # a database to act on
    (tmp_path / "not.db").write_text("not sqlite " * 100)
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    names = {"hello": str(HELLO), "notdb": str(tmp_path / "not.db"), "binary": str(tmp_path / "binary.yaml")}
    result = squall(*(arg.format(**names) if "{" in arg else arg for arg in args), db=db, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.stdout
    assert len(lines) <= 3, result.stderr  # the error (click adds a usage line and a hint)


SCRIPT_FLOW = """\
id: files
namespace: t
tasks:
  - id: make
    type: io.kestra.plugin.scripts.shell.Commands
    outputFiles: [out.txt]
    commands: ['echo made > out.txt']
"""


def test_job_directories_go_once_stored_unless_kept(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    flow = write(tmp_path / "files.yaml", SCRIPT_FLOW)
    assert squall("run", str(flow), "-q", db=db).returncode == 0
    assert list((tmp_path / "jobs").iterdir()) == []  # log and outputs are in the store and storage
    assert squall("run", str(flow), "-q", "--keep-jobs", db=db).returncode == 0
    [kept] = list((tmp_path / "jobs").iterdir())
    assert kept.name.startswith("t-files-make-") and any(kept.iterdir())  # its log and status


def test_purge_deletes_old_finished_executions_and_their_files(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    flow = write(tmp_path / "files.yaml", SCRIPT_FLOW)
    for _ in range(2):
        assert squall("run", str(flow), "-q", db=db).returncode == 0
    ids = [line.split("\t")[0] for line in squall("executions", "list", db=db).stdout.splitlines()]
    stored = tmp_path / "storage" / "t" / "files"
    assert sorted(p.name for p in stored.iterdir()) == sorted(ids)
    kept = squall("executions", "purge", "--older-than", "30d", db=db)
    assert kept.returncode == 0 and "0 finished executions older than 30d purged" in kept.stderr
    dry = squall("executions", "purge", "--older-than", "0s", "--dry-run", db=db)
    assert sorted(line.split()[2] for line in dry.stdout.splitlines()) == sorted(ids)
    assert len(squall("executions", "list", db=db).stdout.splitlines()) == 2
    purged = squall("executions", "purge", "--older-than", "P0D", db=db)
    assert purged.returncode == 0 and "2 finished executions older than P0D purged" in purged.stderr
    assert squall("executions", "list", db=db).stdout == ""
    assert not stored.exists() or list(stored.iterdir()) == []
    gone = squall("executions", "show", ids[0], db=db)
    assert gone.returncode == 1 and "not found" in gone.stderr


def test_server_without_the_aws_extra_names_it_at_start(tmp_path: Path) -> None:
    """The base install has no Powertools: the server says so at once instead of accepting
    connections it then drops."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'aws_lambda_powertools':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from control_plane.cli import main\n"
        "sys.argv = ['squall', 'server', '--port', '0', '--db', sys.argv[1]]\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker, str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "squall server needs the aws extra" in result.stderr and "squall[aws]" in result.stderr

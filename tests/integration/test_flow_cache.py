"""Validated flows kept on disk across real processes: reuse, damaged entries, errors, code changes.

Each "process" is a Python subprocess that validates a flow through ``parse_flow`` with the
cache in use, as ``squall run`` does, and reports how many validations it really ran (the
loader's ``_parse`` counted, not replaced) and a digest of the flow it got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control_plane.flows import flow_cache

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
from pathlib import Path
from control_plane.errors import FlowValidationError
from control_plane.flows import loader
from control_plane.flows.flow_cache import FlowCache

validations = []
original = loader._parse
def counting(*args, **kwargs):
    validations.append(1)
    return original(*args, **kwargs)
loader._parse = counting
loader.use_flow_cache(FlowCache(Path(sys.argv[1])))
try:
    flow = loader.parse_flow(Path(sys.argv[2]).read_text(), sys.argv[2])
except FlowValidationError as exc:
    print(json.dumps({"validations": len(validations), "error": str(exc)}))
else:
    print(json.dumps({"validations": len(validations), "flow": flow.model_dump(mode="json", by_alias=True)}))
"""

FLOW = """id: cached
namespace: test.cache
inputs:
  - id: who
    type: STRING
    defaults: world
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ inputs.who }}"
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: [1, 2]
    tasks:
      - id: sh
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo {{ taskrun.value }}"]
"""


def _run(cache: Path, flow: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache), str(flow)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _entries(cache: Path) -> list[Path]:
    return sorted(p for d in cache.iterdir() for p in d.iterdir())


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    return path


def test_a_flow_validated_by_one_process_is_read_by_the_next(tmp_path: Path, flow: Path) -> None:
    cache = tmp_path / "flows"
    first = _run(cache, flow)
    assert first["validations"] == 1 and first["flow"]["tasks"][1]["tasks"][0]["commands"]
    second = _run(cache, flow)
    assert second == {**first, "validations": 0}  # the same flow, not validated again


def test_a_damaged_entry_is_validated_again_and_rewritten(tmp_path: Path, flow: Path) -> None:
    cache = tmp_path / "flows"
    expected = _run(cache, flow)["flow"]
    (entry,) = _entries(cache)
    whole = entry.read_bytes()
    for damaged in (whole[:-30], whole[:-1] + bytes([whole[-1] ^ 1]), b"", b"junk" * 10):
        entry.write_bytes(damaged)
        assert _run(cache, flow) == {"validations": 1, "flow": expected}
        rewritten = entry.read_bytes()  # whole again (pickles of one flow may differ in byte order)
        assert rewritten != damaged and rewritten[:24] == whole[:24] and len(rewritten) == len(whole)
    assert _run(cache, flow)["validations"] == 0


def test_an_entry_of_another_text_under_this_name_is_not_used(tmp_path: Path, flow: Path) -> None:
    cache = tmp_path / "flows"
    _run(cache, flow)
    other = tmp_path / "other.yaml"
    other.write_text(FLOW.replace("world", "there"))
    _run(cache, other)
    mine, theirs = (e for e in _entries(cache))
    mine.write_bytes(theirs.read_bytes())  # one of them now holds the other's text
    results = [_run(cache, f) for f in (flow, other)]
    assert sorted(r["validations"] for r in results) == [0, 1]
    assert results[0]["flow"]["inputs"][0]["defaults"] == "world"
    assert results[1]["flow"]["inputs"][0]["defaults"] == "there"


def test_an_invalid_flow_is_never_kept_and_each_error_names_its_file(tmp_path: Path) -> None:
    cache = tmp_path / "flows"
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLOW.replace("type: io.kestra.plugin.core.log.Log", "type: io.kestra.plugin.core.log.Lgo"))
    for _ in range(2):
        result = _run(cache, bad)
        assert result["validations"] == 1 and str(bad) in result["error"] and "Lgo" in result["error"]
    assert not cache.exists() or _entries(cache) == []


def test_a_flow_naming_a_task_runner_is_validated_every_time(tmp_path: Path) -> None:
    # Its validity depends on the runners installed, not only on the text and Squall's code.
    cache = tmp_path / "flows"
    runner = tmp_path / "runner.yaml"
    runner.write_text(
        FLOW.replace('commands: ["echo', 'taskRunner:\n          type: process\n        commands: ["echo')
    )
    results = [_run(cache, runner) for _ in range(2)]
    assert [r["validations"] for r in results] == [1, 1]
    assert results[1]["flow"]["tasks"][1]["tasks"][0]["taskRunner"]["type"] == "process"


def test_the_fingerprint_changes_with_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "control_plane"
    (package / "flows").mkdir(parents=True)
    module = package / "flows" / "models.py"
    module.write_text("A = 1\n")
    monkeypatch.setattr(flow_cache, "_PACKAGE", package)
    monkeypatch.setattr(flow_cache, "_RUNNERS", tmp_path / "runners")
    before = flow_cache.code_fingerprint()
    assert flow_cache.code_fingerprint() == before
    module.write_text("A = 22\n")  # another size
    assert flow_cache.code_fingerprint() != before
    edited = flow_cache.code_fingerprint()
    os.utime(module, ns=(1, 1))  # the same size, another modification time
    assert flow_cache.code_fingerprint() != edited
    (package / "new.py").write_text("")
    assert len({before, edited, flow_cache.code_fingerprint()}) == 3


def test_squall_run_validates_an_unchanged_flow_once(tmp_path: Path, flow: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "control_plane.cli",
        "run",
        str(flow),
        "-q",
        "--db",
        str(tmp_path / "s.db"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    (entry,) = _entries(tmp_path / "cache" / "flows")
    written = entry.stat().st_mtime_ns
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert entry.stat().st_mtime_ns == written  # read, not validated and written again

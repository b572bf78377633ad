"""The compiled-template cache across real processes: reuse, damaged entries, concurrent writers.

Each "process" is a real Python subprocess that loads the cache, renders, and saves, as a
``squall run`` does; it reports how many templates it had to compile (Jinja's ``compile``
counted, not replaced).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
from pathlib import Path
from control_plane.expressions import environment, render
from control_plane.expressions.code_cache import TemplateCodeCache

compiled = []
original = environment._ENV.compile
def counting(source, *args, **kwargs):
    compiled.append(1)
    return original(source, *args, **kwargs)
environment._ENV.compile = counting
cache = TemplateCodeCache(Path(sys.argv[1]))
templates = json.loads(sys.argv[2])
loaded = cache.load(templates)
out = [render(t, {"x": 2, "items": [1, 2, 3]}) for t in templates]
saved = cache.save()
print(json.dumps({"loaded": loaded, "compiled": len(compiled), "saved": saved, "out": out}))
"""

TEMPLATES = [
    "{{ x + 1 }}",
    "{% for i in items %}{{ i * x }},{% endfor %}",
    "{{ items | length > 2 ? 'many' : 'few' }}",
    "{{ missing ?? 'fallback' }} {{ x }}",
]
EXPECTED = ["3", "2,4,6,", "many", "fallback 2"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _child(directory: Path, templates: list[str] = TEMPLATES) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), json.dumps(templates)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _run(directory: Path, templates: list[str] = TEMPLATES) -> dict[str, Any]:
    return _result(_child(directory, templates))


def _entries(directory: Path) -> list[Path]:
    """The one-template entries (the sets live in ``sets/`` beside them)."""
    (fingerprinted,) = directory.iterdir()
    return sorted(p for p in fingerprinted.iterdir() if p.is_file())


def _sets(directory: Path) -> list[Path]:
    (fingerprinted,) = directory.iterdir()
    return sorted((fingerprinted / "sets").iterdir())


def test_a_template_compiled_by_one_process_is_loaded_by_the_next(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first == {"loaded": 0, "compiled": 4, "saved": 4, "out": EXPECTED}
    assert len(_entries(tmp_path)) == 4
    second = _run(tmp_path)
    assert second == {"loaded": 4, "compiled": 0, "saved": 0, "out": EXPECTED}


def test_a_damaged_entry_is_ignored_compiled_again_and_rewritten(tmp_path: Path) -> None:
    _run(tmp_path)
    truncated, flipped, swapped, emptied = _entries(tmp_path)
    (kept_set,) = _sets(tmp_path)
    kept_set.write_bytes(kept_set.read_bytes()[:-40])  # else the set is read, not the entries
    truncated.write_bytes(truncated.read_bytes()[:-40])
    blob = bytearray(flipped.read_bytes())
    blob[-10] ^= 0xFF
    flipped.write_bytes(bytes(blob))
    swapped.write_bytes(_other_entry(tmp_path))
    emptied.write_bytes(b"")
    repaired = _run(tmp_path)
    assert repaired == {"loaded": 0, "compiled": 4, "saved": 4, "out": EXPECTED}
    assert _run(tmp_path)["loaded"] == 4  # rewritten whole


def _other_entry(tmp_path: Path) -> bytes:
    """A valid entry of another template: the right format under the wrong name."""
    other = tmp_path / "other"
    _run(other, ["{{ x * 100 }}"])
    (entry,) = _entries(other)
    return entry.read_bytes()


def test_the_templates_of_one_load_are_read_from_one_set_file(tmp_path: Path) -> None:
    """A flow's templates come back from its set alone; a damaged set falls back to the
    one-template entries, and is written whole again."""
    first = _run(tmp_path)
    assert first["saved"] == 4 and len(_sets(tmp_path)) == 1
    entries = {e: e.read_bytes() for e in _entries(tmp_path)}
    for entry in entries:
        entry.unlink()
    assert _run(tmp_path) == {"loaded": 4, "compiled": 0, "saved": 0, "out": EXPECTED}
    for entry, blob in entries.items():
        entry.write_bytes(blob)
    (kept_set,) = _sets(tmp_path)
    kept_set.write_bytes(b"squall-template-set 1\n" + b"\0" * 40)
    assert _run(tmp_path) == {"loaded": 4, "compiled": 0, "saved": 0, "out": EXPECTED}
    for entry in entries:
        entry.unlink()
    assert _run(tmp_path)["loaded"] == 4  # the set was rewritten whole from the entries


def test_processes_writing_the_same_entries_at_once_leave_whole_files(tmp_path: Path) -> None:
    templates = [f"{{{{ x + {i} }}}}" for i in range(20)]
    children = [_child(tmp_path, templates) for _ in range(4)]
    for child in children:
        assert _result(child)["out"] == [str(2 + i) for i in range(20)]
    entries = _entries(tmp_path)
    assert len(entries) == 20 and not [e for e in entries if e.name.startswith(".tmp-")]
    assert len(_sets(tmp_path)) == 1 and not _sets(tmp_path)[0].name.startswith(".tmp-")
    assert _run(tmp_path, templates) == {
        "loaded": 20,
        "compiled": 0,
        "saved": 0,
        "out": [str(2 + i) for i in range(20)],
    }


def test_a_cache_that_cannot_be_written_only_costs_the_compilations(tmp_path: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the directory would go")
    assert _run(blocked) == {"loaded": 0, "compiled": 4, "saved": 0, "out": EXPECTED}


def test_squall_run_leaves_its_templates_compiled_for_the_next_run(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: cached\nnamespace: test.cache\ntasks:\n"
        '  - id: a\n    type: io.kestra.plugin.core.debug.Return\n    format: "{{ 20 + 1 }}"\n'
        '  - id: b\n    type: io.kestra.plugin.core.debug.Return\n    format: "{{ outputs.a.value }}!"\n'
        'outputs:\n  - id: r\n    type: STRING\n    value: "{{ outputs.b.value }}"\n'
    )
    command = [sys.executable, "-m", "control_plane.cli", "run", str(flow), "--db", str(tmp_path / "s.db")]
    first = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    cache = tmp_path / "cache" / "templates"
    entries = _entries(cache)
    assert len(entries) == 3  # both tasks' and the flow output's
    written = {e.name: e.stat().st_mtime_ns for e in [*entries, *_sets(cache)]}
    second = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "21!" in second.stdout
    kept = [*_entries(cache), *_sets(cache)]
    assert {e.name: e.stat().st_mtime_ns for e in kept} == written  # loaded, not rewritten

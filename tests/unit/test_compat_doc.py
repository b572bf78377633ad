"""docs/kestra-compatibility.md is generated from the code and must not go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from control_plane.flows import compat_doc, kestra_core
from control_plane.flows.aliases import ALIASES, RUNNER_ALIASES, TRIGGER_ALIASES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "kestra-compatibility.md"


def test_checked_in_page_matches_the_generator() -> None:
    expected = compat_doc.render()
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/kestra-compatibility.md is stale: run "
        "`python -m control_plane.flows.compat_doc > docs/kestra-compatibility.md`"
    )


def test_the_module_prints_the_page() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "control_plane.flows.compat_doc"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert result.stdout == compat_doc.render()


def test_every_unsupported_core_type_has_a_written_reason() -> None:
    missing = [row[0] for row in compat_doc.type_rows() if row[2] != "supported" and "no reason" in row[3]]
    assert missing == []


def test_reasons_name_only_types_of_the_reference_lists() -> None:
    known = set(kestra_core.KESTRA_CORE_TYPES) | set(kestra_core.NEWER_TYPES)
    assert set(kestra_core.UNSUPPORTED_TYPES) <= known


def test_a_type_added_to_the_alias_table_shows_as_supported_without_editing_reasons() -> None:
    removed = {k: v for k, v in ALIASES.items() if not v.startswith("squall.kv.")}
    added = {**removed, "io.kestra.plugin.core.kv.Get": "squall.kv.Get"}
    rows = {row[0]: row for row in compat_doc.type_rows(added, TRIGGER_ALIASES, RUNNER_ALIASES)}
    assert rows["io.kestra.plugin.core.kv.Get"][1:3] == ("squall.kv.Get", "supported")
    assert rows["io.kestra.plugin.core.kv.Set"][2] == "not supported"


def test_a_core_type_with_neither_alias_nor_reason_is_still_listed() -> None:
    rows = compat_doc.type_rows({}, {}, {}, {})
    assert all(row[2] == "not supported" for row in rows)
    assert any("no reason recorded" in row[3] for row in rows)  # Log has no reason: it is supported


def test_known_facts_of_this_build() -> None:
    page = compat_doc.render()
    assert "| io.kestra.plugin.core.log.Log | squall.core.Log | supported |  |" in page
    assert "| workerGroup | not supported |" in page
    assert "| function | kv | Kestra | implemented |" in page
    assert "| filter | numberformat | Pebble | implemented |" in page
    assert "| filter | toIon | Kestra | not supported |" in page

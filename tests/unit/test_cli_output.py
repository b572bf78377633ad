"""What ``squall run`` writes without rich (cli_output) is what rich would print, and only
where rich would print plain text."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from control_plane.cli_output import literal, plain_json

ROOT = Path(__file__).resolve().parents[2]

# In a new process, stdout as given: plain_stdout() beside what make_console's rich console says.
PROBE = """
import json
from control_plane.cli_output import make_console, plain_stdout
plain = plain_stdout()
console = make_console()
seen = {
    "plain": None if plain is None else list(plain),
    "color_system": console.color_system,
    "is_terminal": console.is_terminal,
    "is_interactive": console.is_interactive,
    "width": console.width,
    "ascii_only": console.options.ascii_only,
    "legacy_windows": console.legacy_windows,
}
with open(PATH, "w") as out:
    json.dump(seen, out)
"""


RICH_READS = ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")  # set by each case


def _probe(tmp_path: Path, env: dict[str, str], *, terminal: bool = False) -> dict[str, Any]:
    result = tmp_path / "seen.json"
    script = f"PATH = {str(result)!r}\n" + PROBE
    full = {k: v for k, v in os.environ.items() if k not in RICH_READS}
    full.update(env, PYTHONPATH=str(ROOT))
    if terminal:
        primary, secondary = pty.openpty()
        try:
            command = [sys.executable, "-c", script]
            subprocess.run(command, env=full, stdout=secondary, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(primary)
            os.close(secondary)
    else:
        pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        subprocess.run([sys.executable, "-c", script], env=full, timeout=60, check=True, **pipes)
    seen: dict[str, Any] = json.loads(result.read_text())
    return seen


@pytest.mark.parametrize(
    ("env", "plain", "terminal"),
    [
        ({}, [80, True], False),
        ({"COLUMNS": "123"}, [123, True], False),
        ({"COLUMNS": "wide"}, [80, True], False),
        ({"PYTHONIOENCODING": "latin-1"}, [80, False], False),
        ({"TERM": "dumb", "NO_COLOR": "1"}, [80, True], False),
        ({"FORCE_COLOR": "1"}, None, True),
        ({"FORCE_COLOR": ""}, None, False),  # rich's own reading; left to rich all the same
        ({"TTY_COMPATIBLE": "1"}, None, True),
    ],
)
def test_plain_stdout_is_what_rich_knows_of_a_pipe(
    tmp_path: Path, env: dict[str, str], plain: Any, terminal: bool
) -> None:
    seen = _probe(tmp_path, env)
    assert seen["plain"] == plain
    assert seen["is_terminal"] is terminal
    if plain is not None:  # rich agrees on every point the plain writer relies on
        assert seen["color_system"] is None and not seen["is_interactive"] and not seen["legacy_windows"]
        assert seen["width"] == plain[0] and seen["ascii_only"] is (not plain[1])


def test_a_terminal_is_left_to_rich(tmp_path: Path) -> None:
    seen = _probe(tmp_path, {}, terminal=True)
    assert seen["plain"] is None and seen["is_terminal"] and seen["color_system"] is not None


def _rich(print_it: Any) -> str:
    """What make_console's console writes to a pipe (no colour, soft wrap, no highlighting)."""
    out = io.StringIO()
    print_it(Console(file=out, soft_wrap=True, highlight=False))
    return out.getvalue()


@pytest.mark.parametrize(
    "value",
    [
        {"result": "200"},
        {"a": 1, "b": 2.5, "c": None, "d": True, "e": [], "f": {}, "g": [1, [2, {"h": "i"}]]},
        {"long": "x" * 300, "quote": 'say "hi" \\ there', "markup": "[bold]no[/bold]", "emoji": ":smile:"},
        {"control": "tab\there\nnew line\r\x07bell"},  # escaped by JSON
        {"z": 1, "a": 2},  # the order kept
    ],
)
def test_plain_json_is_rich_print_json(value: dict[str, Any]) -> None:
    text = json.dumps(value, default=str)
    shown = plain_json(text)
    assert shown is not None
    assert shown == _rich(lambda console: console.print_json(text))


@pytest.mark.parametrize(
    "value", [{"name": "Ada Lovelace — née Byron"}, {"wide": "日本"}, {"emoji": "😀"}, {"delete": "\x7f"}]
)
def test_plain_json_leaves_non_ascii_text_to_rich(value: dict[str, Any]) -> None:
    assert plain_json(json.dumps(value)) is None


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Execution 0123456789abcdef012345 SUCCESS in 0.57s, 200 task runs", True),
        ("Execution x FAILED, 3 task runs" + " pad" * 40, True),
        ("a [bold] b", False),
        ("a :smile: b", False),
        ("caf\u00e9", False),
        ("tab\there", False),
    ],
)
def test_literal_text_is_printed_by_rich_as_it_is(text: str, plain: bool) -> None:
    assert literal(text) is plain
    if plain:
        assert _rich(lambda console: console.print(text)) == text + "\n"


def test_the_console_is_made_on_first_use_and_works_as_rich_s(capsys: pytest.CaptureFixture[str]) -> None:
    from control_plane.cli_output import make_console

    console = make_console()
    assert console.__dict__["_console"] is None  # nothing imported or built yet
    with console:  # rich's Live holds its console this way: a special method, not an attribute
        console.print("[bold]held[/bold] then printed")
    assert capsys.readouterr().out == "held then printed\n"

"""How ``squall`` prints what a script may read: tables on a terminal, stable lines elsewhere.

Piped or redirected, rich would wrap at 80 columns, pad with trailing spaces and crop table
cells with "…", which breaks ``grep``, ``cut -f1`` and CI logs. So every listing has three
forms: ``table`` (a terminal's default), ``tsv`` (the default when stdout is not a terminal:
one row a line, tab-separated, no header, full values, no markup) and ``json`` (the API's own
views, so a script gets the same fields from the CLI as from the HTTP API).
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

__all__ = ["Format", "chosen", "emit_json", "emit_rows", "make_console"]


class Format(enum.StrEnum):
    table = "table"
    tsv = "tsv"
    json = "json"


def make_console(*, stderr: bool = False) -> Console:
    """A console that never wraps or pads a line it writes to a file or a pipe.

    On a terminal, rich's layout; elsewhere soft wrap (a long line stays one line, as the
    ``file:line:column: path: message`` format needs) and no colour codes.
    """
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(stderr=stderr, soft_wrap=not terminal or stderr, highlight=False)


def chosen(fmt: Format | None, console: Console) -> Format:
    """``fmt`` as given, else a table on a terminal and tab-separated lines elsewhere."""
    if fmt is not None:
        return fmt
    return Format.table if console.is_terminal else Format.tsv


def emit_rows(console: Console, fmt: Format, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``rows`` (strings, or rich ``Text`` for a coloured cell) as a table or tab-separated lines.

    A tab or a newline inside a value would break the line format, so both become a space.
    """
    if fmt is Format.tsv:
        for row in rows:
            sys.stdout.write("\t".join(" ".join(_plain(v).split()) for v in row) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table

    table = Table(*headers, box=None)
    for column in table.columns:
        column.no_wrap = True  # an id cut with "…" is an id no command accepts
    for row in rows:
        table.add_row(*(v if hasattr(v, "plain") else str(v) for v in row))
    console.print(table)


def _plain(value: Any) -> str:
    return str(value.plain) if hasattr(value, "plain") else str(value)


def emit_json(value: Any) -> None:
    """One JSON document on stdout (pydantic models as the API sends them)."""
    if isinstance(value, list):
        value = [_dumped(v) for v in value]
    sys.stdout.write(json.dumps(_dumped(value), indent=2, default=str) + "\n")
    sys.stdout.flush()


def _dumped(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_none=True) if hasattr(value, "model_dump") else value

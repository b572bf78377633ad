"""How ``squall`` prints what a script may read: tables on a terminal, stable lines elsewhere.

Piped or redirected, rich would wrap at 80 columns, pad with trailing spaces and crop table
cells with "…", which breaks ``grep``, ``cut -f1`` and CI logs. So every listing has three
forms: ``table`` (a terminal's default), ``tsv`` (the default when stdout is not a terminal:
one row a line, tab-separated, no header, full values, no markup) and ``json`` (the API's own
views, so a script gets the same fields from the CLI as from the HTTP API).

rich is imported when a console is first used, not with this module: where nothing needs its
layout, ``squall run`` writes its final tree and summary itself (:func:`plain_stdout`,
:func:`literal`), and rich.console's import is ~10 ms, ~5% of a cached 200-task run.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "Format",
    "Plain",
    "chosen",
    "emit_json",
    "emit_rows",
    "literal",
    "make_console",
    "plain_json",
    "plain_stdout",
]


class Format(enum.StrEnum):
    table = "table"
    tsv = "tsv"
    json = "json"


def make_console(*, stderr: bool = False) -> Console:
    """A console that never wraps or pads a line it writes to a file or a pipe.

    On a terminal, rich's layout; elsewhere soft wrap (a long line stays one line, as the
    ``file:line:column: path: message`` format needs) and no colour codes. Made on first use
    (:class:`_LazyConsole`), with the stream as it is then.
    """
    return cast("Console", _LazyConsole(stderr))


class _LazyConsole:
    """A rich ``Console`` created, and rich imported, by the first attribute read."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            terminal = stream.isatty()
            soft_wrap = not terminal or self._stderr
            self._console = Console(stderr=self._stderr, soft_wrap=soft_wrap, highlight=False)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    # Special methods are looked up on the type, not through __getattr__: a Console's only
    # ones are the context manager's (rich's Live uses ``with console:``).
    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._made().__exit__(*exc)


class Plain(NamedTuple):
    """How rich lays out stdout where it prints no colour: the width it crops at, and whether
    it may use non-ASCII box characters (a UTF encoding)."""

    width: int
    unicode: bool


_RICH_DECIDES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def plain_stdout() -> Plain | None:
    """What :func:`make_console`'s console would know of stdout where it writes plain text (a
    pipe, a file: no colour, no cursor codes, no wrapping), found without importing rich;
    None wherever rich might decide otherwise, or where that is not certain: a terminal,
    ``FORCE_COLOR``, ``TTY_COMPATIBLE`` or ``TTY_INTERACTIVE`` set, IPython, Windows.

    The width is rich's: the first of stdin, stdout and stderr that is a terminal, else 80,
    ``COLUMNS`` over either (``tests/unit/test_cli_output.py`` checks it against rich's
    console in several environments).
    """
    environ = os.environ
    if sys.platform == "win32" or any(v in environ for v in _RICH_DECIDES):
        return None
    import builtins

    if hasattr(builtins, "get_ipython"):
        return None
    try:
        if sys.stdout.isatty():
            return None
    except ValueError:  # closed
        return None
    width: int | None = None
    for descriptor in (0, 1, 2):
        try:
            width = os.get_terminal_size(descriptor).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    columns = environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        width = int(columns)
    encoding = (getattr(sys.stdout, "encoding", "utf-8") or "utf-8").lower()
    return Plain(width or 80, encoding.startswith("utf"))


_EMOJI_CODE = re.compile(r":\S*:")  # what rich could take for an emoji code (:smile:)


def literal(text: str) -> bool:
    """Whether rich prints markup ``text`` as it is (no colour): printable ASCII with no ``[``
    (a markup tag) and nothing like an emoji code."""
    return text.isascii() and text.isprintable() and "[" not in text and not _EMOJI_CODE.search(text)


def plain_json(text: str) -> str | None:
    """What ``Console.print_json(text)`` writes where it prints no colour: the JSON indented
    by 2, keys in their order; None unless every line is printable ASCII (then rich prints
    it, as it may measure or alter other characters)."""
    shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    if not all(line.isascii() and line.isprintable() for line in shown.split("\n")):
        return None
    return shown + "\n"


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

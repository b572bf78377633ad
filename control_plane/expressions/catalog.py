"""Every filter, function and test that Pebble or Kestra defines, and what Squall does with it.

Why a table: a flow written for Kestra may name any of them, and Squall must either run it or
say at ``squall validate`` time, with the file and line, that it cannot. The reference lists
below are read from Pebble 3.2's ``CoreExtension`` and from Kestra's
``io.kestra.core.runners.pebble.Extension`` (Apache-2.0, snapshot of December 2024), plus the
names Kestra's expression docs (kestra.io/docs/expressions, functions reference: "Workflow
helpers", "Date and calendar", which ends its list with "and more") list for newer releases;
those newer lists are as complete as the docs excerpt read, no more.

Whether a name is *implemented* is never written here: it is read from the runtime tables
(:data:`~control_plane.expressions.filters.FILTERS`, ``TESTS``,
:data:`~control_plane.expressions.functions.GLOBALS`), so this table cannot drift from the
code. What is written here is the reason for every name Squall does not implement, and the
names another part of Squall provides at render time (``kv``: the engine's built-ins).
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import Final

from msgspec import Struct

__all__ = ["Entry", "Kind", "Origin", "Status", "entries", "is_internal", "lookup"]


class Kind(Enum):
    FILTER = "filter"
    FUNCTION = "function"
    TEST = "test"


class Origin(Enum):
    PEBBLE = "Pebble"
    KESTRA = "Kestra"
    SQUALL = "Squall"


class Status(Enum):
    IMPLEMENTED = "implemented"
    PROVIDED = "provided elsewhere"  # accepted; another module supplies it when rendering
    UNSUPPORTED = "not supported"


class Entry(Struct, frozen=True):
    name: str
    kind: Kind
    origin: Origin
    status: Status
    reason: str = ""


_PEBBLE_DOC = "Pebble 3.2 CoreExtension"
_KESTRA_SRC = "Kestra core/runners/pebble/Extension.java"
_KESTRA_DOC = "kestra.io/docs/expressions"

#: name -> where it is defined (the reference lists; credited above)
_REFERENCE: Final[dict[Kind, dict[str, str]]] = {
    Kind.FILTER: {
        **dict.fromkeys(
            [
                "abbreviate",
                "abs",
                "base64decode",
                "base64encode",
                "capitalize",
                "date",
                "default",
                "escape",
                "first",
                "join",
                "last",
                "length",
                "lower",
                "merge",
                "numberformat",
                "raw",
                "replace",
                "reverse",
                "rsort",
                "sha256",
                "slice",
                "sort",
                "split",
                "title",
                "trim",
                "upper",
                "urlencode",
            ],
            _PEBBLE_DOC,
        ),
        **dict.fromkeys(
            [
                "chunk",
                "className",
                "date",
                "dateAdd",
                "timestamp",
                "timestampMicro",
                "timestampNano",
                "jq",
                "escapeChar",
                "json",
                "toJson",
                "keys",
                "number",
                "urldecode",
                "slugify",
                "substringBefore",
                "substringBeforeLast",
                "substringAfter",
                "substringAfterLast",
                "flatten",
                "indent",
                "nindent",
                "yaml",
                "startsWith",
                "endsWith",
                "values",
                "toIon",
                "sha1",
                "sha512",
                "md5",
            ],
            _KESTRA_SRC,
        ),
        **dict.fromkeys(["timestampMilli", "distinct", "string", "toYaml"], _KESTRA_DOC),
    },
    Kind.FUNCTION: {
        **dict.fromkeys(["max", "min", "range", "parent", "block", "i18n"], _PEBBLE_DOC),
        **dict.fromkeys(
            [
                "now",
                "json",
                "fromJson",
                "currentEachOutput",
                "secret",
                "kv",
                "read",
                "fileURI",
                "render",
                "renderOnce",
                "encrypt",
                "decrypt",
                "yaml",
                "printContext",
                "fetchContext",
                "uuid",
                "id",
                "fromIon",
                "fileSize",
                "errorLogs",
                "randomInt",
            ],
            _KESTRA_SRC,
        ),
        **dict.fromkeys(["ksuid", "nanoId", "randomPort", "http", "fileExists", "isFileEmpty"], _KESTRA_DOC),
        **dict.fromkeys(
            [
                "credential",
                "tasksWithState",
                "iterationOutput",
                "parentOutput",
                "appLink",
                "isWeekend",
                "isPublicHoliday",
                "isDayWeekInMonth",
                "dayOfWeek",
                "dayOfMonth",
                "monthOfYear",
                "hourOfDay",
            ],
            _KESTRA_DOC,
        ),
    },
    Kind.TEST: {
        **dict.fromkeys(
            ["defined", "divisibleby", "empty", "even", "iterable", "map", "null", "odd", "sameas"],
            _PEBBLE_DOC,
        ),
        "json": _KESTRA_SRC,
    },
}

_STORAGE = "reads Kestra's internal storage from a template; Squall templates do no I/O"
_NEWER = "added in Kestra releases after the December 2024 sources Squall follows; not implemented yet"

#: why Squall does not implement a name; every unimplemented reference name must be here
_UNSUPPORTED: Final[dict[tuple[Kind, str], str]] = {
    (Kind.FILTER, "className"): "prints a Java class name; Squall values are not Java objects",
    (Kind.FILTER, "toIon"): "Amazon Ion output is not implemented",
    (Kind.FUNCTION, "parent"): "template inheritance (extends/blocks) has no meaning in a flow property",
    (Kind.FUNCTION, "block"): "template inheritance (extends/blocks) has no meaning in a flow property",
    (Kind.FUNCTION, "i18n"): "needs Java resource bundles",
    (Kind.FUNCTION, "read"): _STORAGE,
    (Kind.FUNCTION, "fileURI"): _STORAGE,
    (Kind.FUNCTION, "fileSize"): _STORAGE,
    (Kind.FUNCTION, "fileExists"): _STORAGE,
    (Kind.FUNCTION, "isFileEmpty"): _STORAGE,
    (Kind.FUNCTION, "encrypt"): "needs Kestra's server-side encryption key",
    (Kind.FUNCTION, "decrypt"): "needs Kestra's server-side encryption key",
    (Kind.FUNCTION, "fromIon"): "Amazon Ion input is not implemented",
    (Kind.FUNCTION, "randomPort"): "picks a free port on Kestra's worker; Squall renders elsewhere",
    (Kind.FUNCTION, "http"): "makes an HTTP call from a template; Squall templates do no I/O",
    (Kind.FUNCTION, "credential"): "Enterprise Edition managed credentials; Squall has none (use secret())",
    (Kind.FUNCTION, "appLink"): "links to a page of Kestra's UI, which Squall does not have",
    (Kind.FUNCTION, "tasksWithState"): _NEWER,
    (Kind.FUNCTION, "iterationOutput"): _NEWER,
    (Kind.FUNCTION, "parentOutput"): _NEWER,
    (Kind.FUNCTION, "isPublicHoliday"): "needs a public-holiday calendar, which Squall does not ship",
}

#: names that are accepted by validation because another part of Squall supplies them at render time
_PROVIDED: Final[dict[tuple[Kind, str], str]] = {}

#: Squall's internal tests: the two halves of ``??`` and ``???``, never written by users
_INTERNAL: Final[frozenset[tuple[Kind, str]]] = frozenset({(Kind.TEST, "present")})


def is_internal(kind: Kind, name: str) -> bool:
    """Squall's own names that the parser inserts (``??`` is a test named ``present``)."""
    return (kind, name) in _INTERNAL


def _implemented(kind: Kind) -> frozenset[str]:
    from control_plane.expressions.filters import FILTERS, TESTS
    from control_plane.expressions.functions import GLOBALS

    table = {Kind.FILTER: FILTERS, Kind.FUNCTION: GLOBALS, Kind.TEST: TESTS}[kind]
    return frozenset(name for name in table if (kind, name) not in _INTERNAL)


def lookup(kind: Kind, name: str) -> Entry | None:
    """What Squall does with one name; None when neither Pebble, Kestra nor Squall defines it."""
    reference = _REFERENCE[kind].get(name)
    origin = Origin.PEBBLE if reference == _PEBBLE_DOC else Origin.KESTRA if reference else Origin.SQUALL
    if name in _implemented(kind):
        return Entry(name, kind, origin, Status.IMPLEMENTED)
    if (kind, name) in _PROVIDED:
        return Entry(name, kind, origin, Status.PROVIDED, _PROVIDED[kind, name])
    if reference is not None:
        reason = _UNSUPPORTED.get((kind, name), "not implemented yet")
        return Entry(name, kind, origin, Status.UNSUPPORTED, reason)
    return None


def entries() -> Iterator[Entry]:
    """Every known name, reference lists and Squall's own, sorted by kind then name."""
    for kind in Kind:
        names = set(_REFERENCE[kind]) | _implemented(kind) | {n for k, n in _PROVIDED if k is kind}
        for name in sorted(names, key=str.lower):
            entry = lookup(kind, name)
            assert entry is not None
            yield entry

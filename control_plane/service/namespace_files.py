"""A task's ``namespaceFiles``: which of its namespace's files are staged into its working directory.

Kestra (``NamespaceFiles``, ``PathMatcherPredicate``, ``InternalNamespace.findAllFilesMatching``)
loads every file of the flow's namespace when ``namespaceFiles.enabled`` is true (its default
once the block is there), filtered by ``include`` then ``exclude`` globs matched against the
file's absolute path (``/scripts/etl.py``). A pattern starting with a word character gets
``**/`` in front (``*.py`` stays as written, ``etl.py`` matches at any depth); ``glob:`` and
``regex:`` prefixes select the syntax, as Java's ``FileSystem.getPathMatcher`` does. Files keep
their path, relative, in the working directory.

The namespace files API (:mod:`control_plane.api.kestra_namespace_files`) keeps them under
``_files/<namespace>/`` in the deployment storage; :func:`namespace_files` turns the matches
into ``inputFiles``-like ``{path: storage URI}`` pairs, staged exactly as ``inputFiles`` URIs
are (by reference on a runner that reads the storage's scheme, inline otherwise), so every
runner sees them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from control_plane.service.storage import TaskStorage

__all__ = ["NamespaceFilesError", "glob_regex", "matches", "namespace_file_uri", "namespace_files"]

_WORD_START = re.compile(r"\w")


def namespace_file_uri(
    storage: TaskStorage, namespace: str, segments: Iterable[str], *, directory: bool = False
) -> str:
    """Where the namespace file (or directory) of ``segments`` lives: ``_files/<namespace>/...``.

    The one place that layout is written: the API stores files there, tasks read them there.
    """
    relative = "/".join(["_files", namespace, *segments])
    return storage.uri(relative + ("/" if directory else ""))


class NamespaceFilesError(ValueError):
    """A ``namespaceFiles`` block that cannot be honoured (bad pattern, not a map)."""


def glob_regex(glob: str) -> str:
    """Java's glob grammar (``FileSystem.getPathMatcher("glob:...")``) as a Python regex.

    ``*`` and ``?`` stay within one path segment, ``**`` crosses segments, ``{a,b}`` is an
    alternative, ``[...]`` a class (``[!...]`` negated); everything else is literal.
    """
    out: list[str] = []
    i, n, group = 0, len(glob), 0
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            group += 1
            out.append("(?:")
        elif c == "}" and group:
            group -= 1
            out.append(")")
        elif c == "," and group:
            out.append("|")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                raise NamespaceFilesError(f"unclosed '[' in glob {glob!r}")
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    if group:
        raise NamespaceFilesError(f"unclosed '{{' in glob {glob!r}")
    return "".join(out)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        if pattern.startswith("regex:"):
            return re.compile(pattern[len("regex:") :])
        if pattern.startswith("glob:"):
            return re.compile(glob_regex(pattern[len("glob:") :]))
        return re.compile(glob_regex("**/" + pattern if _WORD_START.match(pattern) else pattern))
    except re.error as exc:
        raise NamespaceFilesError(f"bad pattern {pattern!r}: {exc}") from None


def matches(path: str, include: Iterable[str] | None, exclude: Iterable[str] | None) -> bool:
    """Whether the absolute ``path`` passes Kestra's include-then-exclude filter."""
    inc, exc = list(include or ()), list(exclude or ())
    if inc and not any(_compiled(p).fullmatch(path) for p in inc):
        return False
    return not any(_compiled(p).fullmatch(path) for p in exc)


def _patterns(block: Mapping[str, Any], key: str) -> list[str] | None:
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise NamespaceFilesError(f"namespaceFiles.{key}: must be a list of glob patterns")
    return [str(p) for p in value]


def namespace_files(block: Any, namespace: str, storage: TaskStorage) -> dict[str, str]:
    """``{relative path: storage URI}`` of the namespace files ``block`` selects (none when off)."""
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise NamespaceFilesError("namespaceFiles: must be a map (enabled, include, exclude)")
    enabled = block.get("enabled", True)
    if enabled is False or str(enabled).lower() == "false":
        return {}
    include, exclude = _patterns(block, "include"), _patterns(block, "exclude")
    found = storage.list_prefix(namespace_file_uri(storage, namespace, (), directory=True))
    return {
        relative: uri
        for relative, uri in sorted(found.items())
        if not relative.endswith("/") and matches("/" + relative, include, exclude)
    }

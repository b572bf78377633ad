"""Namespace files: one layout for the API and the ``core.namespace`` tasks.

A namespace's files live in the deployment storage at ``_files/<namespace>/<path>`` under
its root, so every container of a deployment sees the same ones. Object stores have no
directories: a directory is the common prefix of the files under it. A path is absolute
(``/scripts/etl.py``), of non-empty segments, none ``.`` or ``..``.

Kestra's tasks select files with glob patterns (PathMatcherPredicate.java): ``glob:`` or
``regex:`` prefixes as Java's PathMatcher reads them; a bare pattern starting with a word
character matches at any depth (``**/`` is put in front of it).

A script task's or a WorkingDirectory's ``namespaceFiles`` block (Kestra's ``NamespaceFiles``:
``enabled``, its default once the block is there, then ``include`` and ``exclude`` matched
against the absolute path) selects files that are staged into the job's working directory
like ``inputFiles`` URIs (:func:`namespace_files`), keeping their path, relative.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from control_plane.service.storage import TaskStorage

__all__ = [
    "NamespaceFiles",
    "NamespaceFilesError",
    "PathError",
    "matcher",
    "matches",
    "namespace_file_uri",
    "namespace_files",
    "segments",
]


class PathError(ValueError):
    """A namespace file path that is not absolute plain segments."""


def segments(path: str) -> list[str]:
    """The segments of an absolute path; PathError naming it otherwise."""
    parts = path.split("/")
    if parts[0] != "" or len(parts) < 2 or any(p in ("", ".", "..") or "\\" in p for p in parts[1:]):
        raise PathError(f"{path!r} is not an absolute path of plain segments")
    return parts[1:]


def _glob(pattern: str) -> str:
    """Java's glob syntax as a regular expression (``**`` crosses ``/``, ``*`` does not)."""
    out: list[str] = []
    i = 0
    in_group = False
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            in_group = True
            out.append("(?:")
        elif c == "}" and in_group:
            in_group = False
            out.append(")")
        elif c == "," and in_group:
            out.append("|")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise PathError(f"unclosed '[' in pattern {pattern!r}")
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    if in_group:
        raise PathError(f"unclosed '{{' in pattern {pattern!r}")
    return "".join(out)


def matcher(patterns: list[str]) -> re.Pattern[str]:
    """One regular expression matching a path when any of ``patterns`` does."""
    alternatives: list[str] = []
    for pattern in patterns:
        if pattern.startswith("regex:"):
            alternatives.append(pattern.removeprefix("regex:"))
            continue
        if pattern.startswith("glob:"):
            pattern = pattern.removeprefix("glob:")
        elif re.match(r"\w", pattern):
            pattern = "**/" + pattern
        alternatives.append(_glob(pattern.replace("\\", "/")))
    try:
        return re.compile("|".join(f"(?:{a})" for a in alternatives) or "(?!)")
    except re.error as exc:
        raise PathError(f"invalid pattern: {exc}") from None


class NamespaceFiles:
    """The files of every namespace, on the deployment storage."""

    def __init__(self, storage: TaskStorage) -> None:
        self.storage = storage

    def uri(self, namespace: str, parts: list[str], *, directory: bool = False) -> str:
        relative = "/".join(["_files", namespace, *parts])
        return self.storage.uri(relative + ("/" if directory else ""))

    def children(self, namespace: str, parts: list[str]) -> dict[str, str]:
        """Every file under a directory: {path relative to it: URI}."""
        return dict(self.storage.list_prefix(self.uri(namespace, parts, directory=True)))

    def all(self, namespace: str) -> dict[str, str]:
        """Every file of a namespace: {absolute path: URI}, sorted by path."""
        return {"/" + rel: uri for rel, uri in sorted(self.children(namespace, []).items())}

    def matching(self, namespace: str, patterns: list[str]) -> dict[str, str]:
        compiled = matcher(patterns)
        return {path: uri for path, uri in self.all(namespace).items() if compiled.fullmatch(path)}


def namespace_file_uri(
    storage: TaskStorage, namespace: str, parts: Iterable[str], *, directory: bool = False
) -> str:
    """Where a namespace file (or directory) lives: :meth:`NamespaceFiles.uri` without an instance."""
    return NamespaceFiles(storage).uri(namespace, list(parts), directory=directory)


class NamespaceFilesError(PathError):
    """A ``namespaceFiles`` block that cannot be honoured (bad pattern, not a map)."""


def matches(path: str, include: Iterable[str] | None, exclude: Iterable[str] | None) -> bool:
    """Whether the absolute ``path`` passes Kestra's include-then-exclude filter."""
    try:
        inc, exc = list(include or ()), list(exclude or ())
        if inc and not matcher(inc).fullmatch(path):
            return False
        return not (exc and matcher(exc).fullmatch(path))
    except PathError as error:
        raise NamespaceFilesError(str(error)) from None


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
    return {
        path.removeprefix("/"): uri
        for path, uri in NamespaceFiles(storage).all(namespace).items()
        if not path.endswith("/") and matches(path, include, exclude)
    }

"""Read a flow file strictly and report every problem with its file, line, column and path.

Theory of operation
-------------------
1. **YAML** is read as an *event stream* (libyaml when available) and turned into plain data by
   a small iterative builder, not by PyYAML's constructor. That gives three things the
   constructor cannot: the start mark of every node (so any problem points at a line and column),
   duplicate-key detection at any depth, and Kestra's scalar typing. Kestra reads flows with
   Jackson, which follows the YAML 1.2 core schema: only ``true``/``false`` are booleans,
   ``yes``/``no``/``on``/``off`` and dates stay strings, and mapping keys are always text. The
   builder is iterative and bounded (nesting depth, alias expansion), so no input can exhaust
   the stack or memory. A YAML-level problem (syntax, duplicate key, bad tag) is reported alone:
   the data it would produce is not the data the author meant.
2. **Plugin defaults** (``pluginDefaults`` and the deprecated ``taskDefaults``) are merged into
   the raw task mappings (:mod:`control_plane.flows.defaults`), as Kestra does before it
   deserializes a flow.
3. **Models**: ``Flow.model_validate``; each pydantic error becomes a :class:`Violation` whose
   path is rebuilt by walking the raw data alongside the error's ``loc`` (union tags skipped).
4. **Whole-tree checks** (:mod:`control_plane.flows.validation`) run on the raw data too, so a
   duplicate id is reported even when a sibling task failed its own validation.

All violations are deduplicated, sorted by position and raised together as one
:class:`~control_plane.errors.FlowValidationError`. Nothing else ever escapes for user input.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field
from pydantic import ValidationError

from control_plane.errors import FlowValidationError
from control_plane.flows import validation
from control_plane.flows.aliases import canonical_trigger_type, canonical_type
from control_plane.flows.defaults import apply_plugin_defaults
from control_plane.flows.flow_cache import FlowCache
from control_plane.flows.inputs import default_problems
from control_plane.flows.models import Flow
from control_plane.flows.template_checks import check_templates

if TYPE_CHECKING:
    import yaml  # imported by the first read_yaml: a run of a cached flow reads no YAML (~10 ms)

__all__ = ["FlowValidationError", "Violation", "load_flow_file", "parse_flow", "read_flow_file"]

PathTuple = tuple[str | int, ...]

# Bounds that keep hostile documents cheap: real flows are far below both.
MAX_DEPTH = 200
MAX_NODES = 500_000


class Violation(Struct, frozen=True):
    """One problem in a flow file; ``line`` and ``column`` are 1-based."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


def format_path(path: Iterable[str | int]) -> str:
    """Kestra's spelling of a path: ``tasks[2].then[0].retry.maxAttempt``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --------------------------------------------------------------------------- YAML -> data


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")

_TAG = "tag:yaml.org,2002:"
_TEXT_TAGS = frozenset({"!", f"{_TAG}str", f"{_TAG}binary", f"{_TAG}timestamp"})
_TYPED_TAGS = {f"{_TAG}int": int, f"{_TAG}float": float, f"{_TAG}bool": bool, f"{_TAG}null": type(None)}
_MAP_TAGS = frozenset({f"{_TAG}map", f"{_TAG}set", f"{_TAG}omap"})
_SEQ_TAGS = frozenset({f"{_TAG}seq", f"{_TAG}omap", f"{_TAG}pairs"})


def resolve_plain(text: str) -> Any:
    """Type a plain (unquoted) scalar by the YAML 1.2 core schema, as Kestra's Jackson does."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT10.fullmatch(text):
        return int(text)
    if _INT8.fullmatch(text):
        return int(text[2:], 8)
    if _INT16.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text


class _YamlProblem(Exception):
    """Internal: stops the builder at the first problem that makes the document unusable."""


class _Frame(Struct):
    container: dict[str, Any] | list[Any]
    path: PathTuple | None  # None: a collection used as a mapping key (positions not recorded)
    anchor: str | None
    size: int = 1
    key: str | None = None  # a mapping's key waiting for its value
    has_key: bool = False


class Document(Struct):
    """Plain data read from YAML plus the 1-based position of every node by path."""

    data: Any
    values: dict[PathTuple, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathTuple, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathTuple, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path`` (its key when ``key``), else of its deepest recorded ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            where = self.values.get(path[:end])
            if where is not None:
                return where
        return (1, 1)


class _Builder:
    """Turns PyYAML events into data and positions; iterative, so depth cannot crash it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.doc = Document(data=None)
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.violations: list[Violation] = []
        self.nodes = 0
        self.documents = 0
        self.done = False

    def fail(self, mark: Any, path: PathTuple | None, message: str, *, fatal: bool = True) -> None:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.violations.append(Violation(self.source, line, column, format_path(path or ()), message))
        if fatal:
            raise _YamlProblem

    # -- where the next node goes

    def _child_path(self) -> tuple[PathTuple | None, bool]:
        """(path of the node starting now, whether it is a mapping key)."""
        if not self.stack:
            return (), False
        top = self.stack[-1]
        if top.path is None:
            return None, False
        if isinstance(top.container, list):
            return (*top.path, len(top.container)), False
        if not top.has_key:
            return None, True
        return (*top.path, top.key if top.key is not None else ""), False

    def _record(self, path: PathTuple | None, mark: Any) -> None:
        if path is not None and mark is not None:
            self.doc.values.setdefault(path, (mark.line + 1, mark.column + 1))

    def _attach(self, value: Any, size: int, mark: Any) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            self.fail(mark, None, f"document too large: more than {MAX_NODES} nodes once aliases expand")
        if not self.stack:
            self.doc.data = value
            return
        top = self.stack[-1]
        top.size += size
        if isinstance(top.container, list):
            top.container.append(value)
            return
        if not top.has_key:
            self._take_key(top, value, mark)
            return
        top.container[top.key if top.key is not None else ""] = value
        top.key, top.has_key = None, False

    def _take_key(self, top: _Frame, value: Any, mark: Any) -> None:
        if isinstance(value, (dict, list)):
            self.fail(mark, top.path, "a mapping key must be a scalar, not a mapping or a list")
        key = value if isinstance(value, str) else _scalar_text(value)
        if top.path is not None:
            path = (*top.path, key)
            if key in top.container:
                first = self.doc.keys.get(path)
                since = f" (first defined at line {first[0]})" if first else ""
                self.fail(mark, top.path, f"duplicate key '{key}'{since}", fatal=False)
            else:
                self.doc.keys[path] = (mark.line + 1, mark.column + 1)
        top.key, top.has_key = key, True

    # -- events

    def feed(self, event: yaml.Event) -> None:
        import yaml

        mark = event.start_mark
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.fail(mark, None, "a flow file must hold a single YAML document")
        elif isinstance(event, yaml.ScalarEvent):
            self._scalar(event, mark)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event, mark)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self._start(event, mark)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = self.stack.pop()
            if frame.anchor is not None:
                self.anchors[frame.anchor] = (frame.container, frame.size)
                self.open_anchors.discard(frame.anchor)
            self._attach(frame.container, 0, mark)  # its size was counted as it grew
            if self.stack:
                self.stack[-1].size += frame.size

    def _scalar(self, event: yaml.ScalarEvent, mark: Any) -> None:
        path, is_key = self._child_path()
        tag = event.tag
        if is_key:
            value: Any = event.value  # keys are text, whatever they look like (Jackson field names)
        elif tag is None and event.implicit[0]:
            value = resolve_plain(event.value)
        elif tag is None or tag in _TEXT_TAGS:
            value = event.value
        elif tag in _TYPED_TAGS:
            value = resolve_plain(event.value)
            wanted = _TYPED_TAGS[tag]
            if wanted is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not wanted:
                self.fail(mark, path, f"'{event.value}' is not a valid {tag.removeprefix(_TAG)}")
        else:
            self.fail(mark, path, f"unsupported YAML tag '{tag}' (only standard YAML types are allowed)")
        if not is_key:
            self._record(path, mark)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)
        self._attach(value, 1, mark)

    def _alias(self, event: yaml.AliasEvent, mark: Any) -> None:
        path, _ = self._child_path()
        name = event.anchor or ""
        if name in self.open_anchors:
            self.fail(mark, path, f"recursive alias '*{name}' (an anchor cannot contain itself)")
        if name not in self.anchors:
            self.fail(mark, path, f"unknown alias '*{name}' (no anchor '&{name}' before it)")
        value, size = self.anchors[name]
        self._record(path, mark)
        self._attach(value, size, mark)

    def _start(self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent, mark: Any) -> None:
        import yaml

        path, _ = self._child_path()
        if len(self.stack) >= MAX_DEPTH:
            self.fail(mark, path, f"document nested too deeply (more than {MAX_DEPTH} levels)")
        is_map = isinstance(event, yaml.MappingStartEvent)
        tag = event.tag
        if tag not in (None, "!") and tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
            self.fail(mark, path, f"unsupported YAML tag '{tag}' (only standard YAML types are allowed)")
        self._record(path, mark)
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        container: dict[str, Any] | list[Any] = {} if is_map else []
        self.stack.append(_Frame(container, path, event.anchor))


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def import_yaml() -> None:
    """Import PyYAML now. ``read_yaml`` imports it on first use, so that a ``squall run`` of a
    cached flow (no YAML read) skips it; a Lambda handler parses every flow it loads from its
    text (no flow cache there), so it calls this at init instead of in its first request
    (ADR 0006)."""
    import yaml  # noqa: F401


def read_yaml(text: str, source: str = "<string>") -> tuple[Document, list[Violation]]:
    """Plain data and positions of a YAML text, or the YAML-level violations that stop reading."""
    import yaml

    builder = _Builder(source)
    loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
    try:
        for event in yaml.parse(text, Loader=loader):
            builder.feed(event)
    except _YamlProblem:
        pass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        builder.fail(mark, None, f"invalid YAML: {problem}", fatal=False)
    except yaml.reader.ReaderError as exc:
        before = text[: max(exc.position, 0)]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        builder.violations.append(
            Violation(
                source, line, column, "", f"invalid YAML: {exc.reason} (character #x{exc.character:04x})"
            )
        )
    except (yaml.YAMLError, UnicodeError, ValueError) as exc:  # libyaml's non-YAML failures
        builder.violations.append(Violation(source, 1, 1, "", f"invalid YAML: {exc}"))
    return builder.doc, builder.violations


# --------------------------------------------------------------------------- pydantic -> violations


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "time_delta_type": "an ISO-8601 duration (PT5M)",
    "time_delta_parsing": "an ISO-8601 duration (PT5M)",
    "none_required": "null",
}

_TAG_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "list[str]": "a list of strings",
    "list[any]": "a list",
    "dict[str,any]": "a mapping",
    "dict[str,str]": "a mapping of strings",
    "timedelta": "an ISO-8601 duration (PT5M)",
    "none": "null",
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"number {value}"
    text = str(value)
    return f"'{text[:60]}...'" if len(text) > 60 else f"'{text}'"


class _Mapped(Struct):
    path: PathTuple
    at_key: bool
    kind: str
    message: str
    union_at: PathTuple | None = None
    union_tag: str | None = None
    expected: str | None = None
    text_line: int = 0


def _walk_loc(
    data: Any, loc: tuple[str | int, ...], kind: str
) -> tuple[PathTuple, PathTuple | None, str | None]:
    """Follow ``loc`` through the raw data; returns (path, union path, union tag).

    Segments the data does not have are union tags (``squall.core.Log``, ``str``,
    ``function-after[...]``) and are skipped, except a missing field's own name (the last
    segment of a ``missing`` error), which is kept so the path names what is missing.
    """
    path: list[str | int] = []
    node = data
    union_at: PathTuple | None = None
    union_tag: str | None = None
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if (isinstance(node, dict) and isinstance(part, str) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]  # type: ignore[index]  # narrowed by the test above
        elif last and isinstance(part, str) and isinstance(node, dict) and _is_field_name(part, node, kind):
            path.append(part)  # a missing field (or one validated by default), named by its key
            node = None
        elif part == "[key]":
            continue
        else:
            union_at, union_tag = tuple(path), str(part)  # the innermost union decides the wording
    return tuple(path), union_at, union_tag


def _is_field_name(part: str, node: Mapping[str, Any], kind: str) -> bool:
    """Whether an absent last ``loc`` segment names a field rather than a union member's tag.

    Tags are the canonical or written type of a discriminated union's member (``squall.core.Log``,
    ``constant``) or a type description (``str``, ``list[str]``, ``function-after[...]``).
    """
    if kind == "missing":
        return True
    written = node.get("type")
    if isinstance(written, str) and part in (
        written,
        canonical_type(written),
        canonical_trigger_type(written),
    ):
        return False
    return _normal_tag(part) not in _TAG_WORDS and not any(c in part for c in "[](),")


def _message(error: Mapping[str, Any], path: PathTuple) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "`type` is required" if path and path[-1] == "type" else "must not be null"
    if kind == "extra_forbidden":
        return f"unknown property '{path[-1] if path else '?'}'"
    if kind == "unknown_type":
        what = "trigger" if "trigger" in str(error.get("msg", "")) else "task"
        if not isinstance(value, dict):
            return f"expected a {what} mapping, got {_describe(value)}"
        if "type" not in value or value["type"] is None:
            return f"`type` is required (the {what} type, e.g. io.kestra.plugin.core.log.Log)"
        if not isinstance(value["type"], str):
            return f"`type` must be a string, got {_describe(value['type'])}"
        return f"unknown {what} type '{value['type']}'"
    if kind == "string_pattern_mismatch":
        return f'must match "{str(ctx.get("pattern", "")).removesuffix("$")}"'
    if kind == "value_error":
        return str(error.get("msg", "")).removeprefix("Value error, ")
    if kind in ("enum", "literal_error"):
        expected = ctx.get("expected", "")
        return f"invalid value {_describe(value)}, expected one of {expected}"
    if kind in ("too_short", "string_too_short"):
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind in ("too_long", "string_too_long"):
        return f"must have at most {ctx.get('max_length')} {'characters' if 'string' in kind else 'items'}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "greater than or equal to",
            "greater_than": "greater than",
            "less_than_equal": "less than or equal to",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {words} {bound}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_describe(value)}"
    return str(error.get("msg", kind))


def _from_validation_error(exc: ValidationError, data: Any) -> list[_Mapped]:
    mapped: list[_Mapped] = []
    for error in exc.errors(include_url=False):
        kind = error["type"]
        loc = tuple(error["loc"])
        path, union_at, union_tag = _walk_loc(data, loc, kind)
        problems = (error.get("ctx") or {}).get("problems")
        messages = (
            [str(p) for p in problems] if kind == "value_error" and isinstance(problems, list) else []
        ) or [_message(error, path)]
        for message in messages:
            mapped.append(
                _Mapped(
                    path=path,
                    at_key=kind == "extra_forbidden",
                    kind=kind if len(messages) == 1 else f"{kind}:{message}",
                    message=message,
                    union_at=union_at,
                    union_tag=union_tag,
                    expected=_EXPECTED.get(kind),
                )
            )
    return _merge_unions(mapped, data)


_SCALAR_TAGS = frozenset(_TAG_WORDS)


def _merge_unions(mapped: list[_Mapped], data: Any) -> list[_Mapped]:
    """``str | list[str]`` fails once per member: say it once ("expected a string or a list ...").

    Only type mismatches of scalar-ish members are merged; a task's discriminated union tries a
    single member, so its errors are left alone.
    """
    groups: dict[PathTuple, list[_Mapped]] = {}
    for item in mapped:
        tag = _normal_tag(item.union_tag)
        if item.union_at is not None and tag in _SCALAR_TAGS:
            groups.setdefault(item.union_at, []).append(item)
    out: list[_Mapped] = []
    merged: set[PathTuple] = set()
    for item in mapped:
        group = groups.get(item.union_at) if item.union_at is not None else None
        if not group or len({_normal_tag(g.union_tag) for g in group}) < 2:
            out.append(item)
            continue
        actual = _lookup(data, item.union_at)  # type: ignore[arg-type]
        shaped = _same_shape(actual)
        if shaped and any(_normal_tag(g.union_tag).startswith(shaped) for g in group):
            # a list given where a list is accepted: its items are what is wrong, say which
            if _normal_tag(item.union_tag).startswith(shaped):
                out.append(item)
            continue
        if item.union_at in merged:
            continue
        merged.add(item.union_at)  # type: ignore[arg-type]
        words: list[str] = []
        for g in group:
            word = _TAG_WORDS[_normal_tag(g.union_tag)]
            if word not in words:
                words.append(word)
        expected = ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
        out.append(
            _Mapped(item.union_at, False, "union", f"expected {expected}, got {_describe(actual)}")  # type: ignore[arg-type]
        )
    return out


def _same_shape(value: Any) -> str:
    return "list[" if isinstance(value, list) else "dict[" if isinstance(value, dict) else ""


def _normal_tag(tag: str | None) -> str:
    return (tag or "").replace(" ", "").lower()


def _lookup(data: Any, path: PathTuple) -> Any:
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


# --------------------------------------------------------------------------- the public API


def parse_flow(text: str, source: str = "<string>", *, lint: bool = False) -> Flow:
    """Validate a flow's YAML text; raise :class:`FlowValidationError` listing every problem.

    ``lint`` (``squall validate``) adds what Kestra accepts and fails only at run time: template
    syntax errors, ``outputs``/``inputs`` keys the flow does not declare, input defaults that
    do not fit their type (:mod:`control_plane.flows.template_checks`).
    """
    if not isinstance(text, str):
        raise FlowValidationError([Violation(source, 1, 1, "", "a flow must be text")], source)
    parsed = _PARSED.get((text, lint))
    if parsed is not None:
        return parsed
    disk = _DISK
    parsed = disk.get(text, lint) if disk is not None else None
    if parsed is None:
        try:
            parsed = _parse(text, source, lint)
        except FlowValidationError:
            raise
        except RecursionError:
            violation = Violation(source, 1, 1, "", "document nested too deeply")
            raise FlowValidationError([violation], source) from None
        if disk is not None:
            disk.put(text, lint, parsed)
    with _PARSED_LOCK:  # the server validates on several threads
        if len(_PARSED) >= _PARSED_MAX:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[(text, lint)] = parsed
    return parsed


#: Flows this process validated, by text: ``squall run`` reads a flow, deploys it and plans it,
#: and each step would otherwise validate the same text again (10-20 ms each for 200 tasks).
#: A frozen Flow is safe to share; only successes are kept, so every error still names its
#: own origin. Nothing but the text decides the result. The oldest entry goes first.
_PARSED: dict[tuple[str, bool], Flow] = {}
_PARSED_MAX = 64
_PARSED_LOCK = threading.Lock()
_DISK: FlowCache | None = None


def use_flow_cache(cache: FlowCache | None) -> None:
    """Keep validated flows in ``cache`` too, for the next processes (local runtimes set it:
    ``runtime.use_local_caches``); None: this process's memory only."""
    global _DISK
    _DISK = cache


def _parse(text: str, source: str, lint: bool) -> Flow:
    doc, problems = read_yaml(text, source)
    if problems:
        raise FlowValidationError(problems, source)
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        message = f"a flow must be a YAML mapping (id, namespace, tasks, ...), got {_describe(data)}"
        raise FlowValidationError([Violation(source, 1, 1, "", message)], source)

    data = apply_plugin_defaults(data)
    tasks = validation.task_index(data)
    found: list[_Mapped] = []
    flow: Flow | None = None
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        found += _from_validation_error(exc, data)
    except (RecursionError, MemoryError):
        raise
    except Exception as exc:  # a validator crashed: a Squall bug, still reported as data, never a traceback
        message = f"internal error while validating the flow (please report it): {type(exc).__name__}: {exc}"
        found.append(_Mapped((), False, "internal", message))
    found += [_Mapped(i.path, i.at_key, i.kind, i.message) for i in validation.check_tree(data, doc.locate)]
    found += [
        _Mapped(i.path, i.at_key, i.kind, i.message, text_line=i.text_line)
        for i in check_templates(data, lint=lint)
    ]
    if lint and flow is not None:
        for index, spec in enumerate(flow.inputs or ()):
            for message in default_problems(spec):
                found.append(_Mapped(("inputs", index, "defaults"), False, f"defaults:{message}", message))

    violations = _to_violations(found, doc, tasks, source, text)
    if violations:
        raise FlowValidationError(violations, source)
    assert flow is not None
    return flow


def _to_violations(
    found: list[_Mapped],
    doc: Document,
    tasks: Mapping[PathTuple, Mapping[str, Any]],
    source: str,
    text: str = "",
) -> list[Violation]:
    seen: set[tuple[PathTuple, str]] = set()
    out: list[Violation] = []
    for item in found:
        if (item.path, item.kind) in seen:
            continue
        seen.add((item.path, item.kind))
        line, column = doc.locate(item.path, key=item.at_key)
        if item.text_line:
            line, column = _in_literal_block(text, line, column, item.text_line)
        message = item.message + _task_context(item, tasks)
        out.append(Violation(source, line, column, format_path(item.path), message))
    out.sort(key=lambda v: (v.line, v.column, v.path, v.message))
    return out


def _in_literal_block(text: str, line: int, column: int, text_line: int) -> tuple[int, int]:
    """The file position of line ``text_line`` of a literal block scalar (``|``) starting at
    (line, column): its lines are the file's lines one for one. Other styles fold or escape
    lines, so their position stays the value's start."""
    lines = text.splitlines()
    if not 0 < line <= len(lines) or lines[line - 1][column - 1 : column] != "|":
        return line, column
    target = line + text_line
    if target > len(lines):
        return line, column
    content = lines[target - 1]
    return target, len(content) - len(content.lstrip(" ")) + 1


def _task_context(item: _Mapped, tasks: Mapping[PathTuple, Mapping[str, Any]]) -> str:
    """`` (task 'para2')``: the innermost task holding the path, so the user finds it by id."""
    for end in range(len(item.path), -1, -1):
        task = tasks.get(item.path[:end])
        if task is None:
            continue
        task_id = task.get("id")
        if not isinstance(task_id, str) or not task_id:
            return ""
        if item.kind.startswith("duplicate") or item.message.startswith(f"{task_id}: "):
            return ""
        if item.kind == "extra_forbidden" and isinstance(task.get("type"), str):
            return f" (task '{task_id}', type {task['type']})"
        return f" (task '{task_id}')"
    return ""


def load_flow_file(path: str | os.PathLike[str], *, lint: bool = False) -> Flow:
    """Read and validate a flow file; unreadable files are violations too, never OSErrors."""
    return parse_flow(read_flow_file(path), os.fspath(path), lint=lint)


def read_flow_file(path: str | os.PathLike[str]) -> str:
    """A flow file's text (UTF-8, BOM allowed); FlowValidationError, with the position, if unreadable."""
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FlowValidationError(
            [Violation(source, 1, 1, "", f"cannot read the flow file: {reason}")], source
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        message = f"the flow file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})"
        raise FlowValidationError([Violation(source, line, column, "", message)], source) from None
    return text

"""Kestra's filters and tests (the subset flows use), with Kestra's names and semantics.

Every filter is bounded (see :mod:`control_plane.expressions.limits`): the ones that can
multiply their input (``replace``, ``indent``, ``join``, ``split``) check the size of their
result before building it; regular expressions run in the ``regex`` engine with the render's
remaining time as their timeout; ``jq`` runs in :mod:`~control_plane.expressions.jq_sandbox`;
``yaml``/``toYaml`` check the deadline at every node.

Names are camelCase and case-sensitive like Kestra's. Where Pebble and Jinja disagree (``capitalize``
keeps the rest of the string, ``split`` is literal and drops trailing empty parts like Java's
``String.split``, ``default`` also replaces blank strings and empty collections) Pebble wins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence, Set
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from jinja2.runtime import Undefined

from control_plane.errors import ExpressionError, ExpressionLimitError
from control_plane.expressions import dates, limits
from control_plane.expressions.display import check_data, plain, to_display, to_json

__all__ = ["FILTERS", "TESTS"]


def _text(value: Any) -> str:
    """A filter's string input; an undefined value fails here, naming the variable."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return to_display(check_data(value))


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence | Set) and not isinstance(value, str | bytes | bytearray)


def _is_empty(value: Any) -> bool:
    """Pebble's EmptyTest: null, a blank string, an empty collection or map."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping) or _is_list(value):
        return len(value) == 0
    return False


def _jq_filter(value: Any, expression: str) -> list[Any] | None:
    """Kestra's jq: every result in a list; a string input is parsed as JSON first."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ExpressionError(f"Unable to parse jq value '{value}': {exc}") from None
    else:
        data = plain(limits.check_value(value, "the jq input"))
    from control_plane.expressions import jq_sandbox

    return jq_sandbox.run(_text(expression), data)


def _from_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ExpressionError(f"fromJson: invalid JSON '{value}': {exc}") from None


def _default(value: Any, fallback: Any = "") -> Any:
    if isinstance(value, Undefined) or _is_empty(value):
        return fallback
    return value


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> Any:
    # ``regex`` (Java-like syntax, a match timeout) costs ~30 ms to import: only templates
    # that use a regular expression pay for it, not every ``squall run``.
    import regex as _regex

    try:
        return _regex.compile(pattern, _regex.VERSION0)
    except _regex.error as exc:
        raise ExpressionError(f"invalid regular expression '{pattern}': {exc}") from None


def _regex_error() -> type[Exception]:
    import regex as _regex

    return _regex.error


def regex_timeout(what: str) -> ExpressionLimitError:
    settings = limits.current_limits()
    return ExpressionLimitError(
        f"{what} took longer than the expression's {settings.timeout:g} s limit (SQUALL_EXPRESSION_TIMEOUT)"
    )


def _regex_replace(text: str, search: str, replacement: str) -> str:
    """Java's ``replaceAll``: ``$1`` for groups; the result's size is counted while it is built."""
    template = re.sub(r"\$(\d+)", r"\\g<\1>", replacement)
    pattern = _pattern(search)
    budget = limits.current_limits().max_string - len(text)
    grown = 0

    def expand(match: Any) -> str:
        nonlocal grown
        piece = str(match.expand(template))
        grown += len(piece) - (match.end() - match.start())
        if grown > budget:
            limits.check_string(len(text) + grown, "the result of replace")
        return piece

    try:
        return str(pattern.sub(expand, text, timeout=limits.remaining()))
    except TimeoutError:
        raise regex_timeout(f"replace with the regular expression '{search}'") from None
    except (_regex_error(), IndexError) as exc:
        raise ExpressionError(f"replace: invalid replacement '{replacement}': {exc}") from None


def _plain_replace(text: str, search: str, replacement: str) -> str:
    if search and len(replacement) > len(search):
        growth = text.count(search) * (len(replacement) - len(search))
        limits.check_string(len(text) + growth, "the result of replace")
    elif not search:
        limits.check_string(len(text) + (len(text) + 1) * len(replacement), "the result of replace")
    return text.replace(search, replacement)


def _replace(value: Any, old: Any, new: Any = None, regexp: bool = False) -> str:
    """Pebble's ``replace({'a': 'b'})`` (``regexp=true`` for patterns) and ``replace(old, new)``."""
    text = _text(value)
    if isinstance(old, Mapping) and isinstance(new, bool):  # replace(pairs, true): Pebble's positional form
        regexp, new = new, None
    pairs = list(old.items()) if isinstance(old, Mapping) else [(old, "" if new is None else new)]
    for search, replacement in pairs:
        if regexp:
            text = _regex_replace(text, _text(search), _text(replacement))
        else:
            text = _plain_replace(text, _text(search), _text(replacement))
    return text


def _split(value: Any, delimiter: str, limit: int | None = None) -> list[str]:
    """Java's ``String.split(Pattern.quote(delimiter))``: trailing empty parts dropped."""
    text, delimiter = _text(value), _text(delimiter)
    if delimiter:
        parts_at_most = text.count(delimiter) + 1
        limits.check_items(min(parts_at_most, limit) if limit and limit > 0 else parts_at_most, "split")
    if limit is not None and limit > 0:
        return text.split(delimiter, limit - 1)
    parts = text.split(delimiter)
    if limit is None or limit == 0:
        if len(parts) == 1:
            return parts
        while parts and parts[-1] == "":
            parts.pop()
    return parts


def _slugify(value: Any) -> str:
    text = unicodedata.normalize("NFKD", _text(value)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _number(value: Any, type: str | None = None) -> int | float | Decimal:
    """Kestra's ``number``: an int when the text is integral, else a float (or the named type)."""
    if isinstance(value, bool):
        raise ExpressionError(f"'{to_display(value)}' is not a number")
    if isinstance(value, int | float | Decimal) and type is None:
        return value
    text = _text(value).strip()
    try:
        if type is not None:
            kind = str(type).upper()
            if kind in {"INT", "INTEGER", "LONG", "BIGINTEGER", "SHORT", "BYTE"}:
                number = Decimal(text)
                if number.is_finite() and number.adjusted() > 0:
                    limits.check_bits(int(number.adjusted() * 3.33) + 1, "number")
                return int(number)
            if kind in {"FLOAT", "DOUBLE"}:
                return float(text)
            if kind == "BIGDECIMAL":
                return Decimal(text)
            raise ExpressionError(f"unknown number type '{type}'")
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if text.lower().startswith(("0x", "-0x", "+0x")):
            return int(text, 16)
        return float(text)
    except (ValueError, InvalidOperation):
        raise ExpressionError(f"'{text}' is not a number") from None


def _numeric(value: Any) -> int | float | Decimal:
    return (
        value if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else _number(value)
    )


def _round(value: Any, precision: int = 0) -> int | float:
    """Half-up like Java's ``Math.round``, not Python's banker's rounding."""
    if not -1000 <= int(precision) <= 1000:
        raise ExpressionError(f"round: precision {precision} is out of range (-1000 to 1000)")
    number = Decimal(str(_numeric(value)))
    rounded = number.quantize(Decimal(1).scaleb(-int(precision)), rounding=ROUND_HALF_UP)
    return int(rounded) if precision <= 0 else float(rounded)


def _abbreviate(value: Any, length: int) -> str:
    text = _text(value)
    return text if len(text) <= length else text[: max(int(length) - 3, 0)] + "..."


def _capitalize(value: Any) -> str:
    text = _text(value)
    return text[:1].upper() + text[1:]


def _title(value: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), _text(value))


def _length(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str | Mapping) or _is_list(value):
        return len(value)
    return len(_text(value))


def _join(value: Any, separator: str = "") -> str:
    if not _is_list(value):
        return _text(value)
    glue = _text(separator)
    parts = [to_display(item) for item in value]
    limits.check_string(sum(map(len, parts)) + len(glue) * max(len(parts) - 1, 0), "the result of join")
    return glue.join(parts)


def _keys(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.keys())
    if _is_list(value):
        return list(range(len(value)))
    raise ExpressionError(f"keys: expected a map or a list, got '{_text(value)}'")


def _values(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if _is_list(value):
        return list(value)
    raise ExpressionError(f"values: expected a map or a list, got '{_text(value)}'")


def _first(value: Any) -> Any:
    if isinstance(value, str):
        return value[:1]
    items = list(value.values()) if isinstance(value, Mapping) else list(value)
    return items[0] if items else None


def _last(value: Any) -> Any:
    if isinstance(value, str):
        return value[-1:]
    items = list(value.values()) if isinstance(value, Mapping) else list(value)
    return items[-1] if items else None


def _sorted(value: Any, reverse: bool = False) -> list[Any]:
    try:
        return sorted(value, reverse=reverse)
    except TypeError as exc:
        raise ExpressionError(f"cannot sort {to_display(value)}: {exc}") from None


def _reverse(value: Any) -> Any:
    if isinstance(value, str):
        return value[::-1]
    return list(reversed(list(value)))


def _slice(value: Any, start: int = 0, end: int | None = None) -> Any:
    if isinstance(value, str):
        return value[start:end]
    return list(value)[start:end]


def _urlencode(value: Any) -> str:
    """Java's ``URLEncoder.encode(s, UTF_8)``: space as ``+``, only ``.-*_`` left alone."""
    return quote_plus(_text(value), safe="*").replace("~", "%7E")


def _base64decode(value: Any) -> str:
    try:
        return base64.b64decode(_text(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ExpressionError(f"base64decode: invalid input: {exc}") from None


def _hash(algorithm: str) -> Callable[[Any], str]:
    def digest(value: Any) -> str:
        return hashlib.new(algorithm, _text(value).encode()).hexdigest()

    return digest


def _date(
    value: Any,
    format: str = "iso",
    timeZone: str | None = None,
    existingFormat: str | None = None,
    locale: str | None = None,
) -> str | None:
    """Kestra's ``date``: parse (``existingFormat``), move to ``timeZone`` (UTC), print ``format``."""
    del locale  # English names only
    if value is None:
        return None
    tz = dates.zone(timeZone)
    moment = dates.parse_date(value, existingFormat, tz)
    return dates.format_date(moment.astimezone(tz), format)


def _date_add(
    value: Any,
    amount: int,
    unit: str,
    format: str = "iso",
    timeZone: str | None = None,
    existingFormat: str | None = None,
) -> str | None:
    if value is None:
        return None
    tz = dates.zone(timeZone)
    moment = dates.add(dates.parse_date(value, existingFormat, tz), int(amount), unit)
    return dates.format_date(moment.astimezone(tz), format)


def _timestamp(scale: int) -> Callable[..., int | None]:
    def timestamp(value: Any, timeZone: str | None = None, existingFormat: str | None = None) -> int | None:
        if value is None:
            return None
        moment = dates.parse_date(value, existingFormat, dates.zone(timeZone))
        seconds = int(moment.timestamp() // 1)
        return seconds * scale + moment.microsecond * scale // 1_000_000

    return timestamp


def _escape_char(value: Any, type: str = "single") -> str:
    """Kestra's ``escapeChar``: backslash-escape quotes, or make a shell-safe single-quoted body."""
    text = _text(value)
    match str(type).lower():
        case "single":
            return text.replace("\\", "\\\\").replace("'", "\\'")
        case "double":
            return text.replace("\\", "\\\\").replace('"', '\\"')
        case "shell":
            return text.replace("'", "'\\''")
    raise ExpressionError(f"escapeChar: unknown type '{type}', expected single, double or shell")


@lru_cache(maxsize=1)
def _yaml_classes() -> tuple[Any, type[Any], type[Any]]:
    """PyYAML with its safe loader and dumper checking the render's deadline at each node.

    Built by the first ``yaml``/``toYaml`` filter: importing PyYAML costs ~10 ms that a run of
    a flow using neither (the common case, as the CLI no longer reads YAML for a cached flow)
    does not pay."""
    import yaml

    class YamlLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            limits.tick()
            return super().compose_node(parent, index)

    class YamlDumper(yaml.SafeDumper):
        def represent_data(self, data: Any) -> Any:
            limits.tick()
            return super().represent_data(data)

    return yaml, YamlLoader, YamlDumper


def _yaml_parse(value: Any) -> Any:
    """Anchors and aliases are kept (Kestra reads YAML with them), and the result is measured as
    it would print: an alias bomb fails on its size instead of exploding later."""
    yaml, loader, _ = _yaml_classes()
    try:
        return yaml.load(_text(value), Loader=loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ExpressionError(f"yaml: invalid YAML: {exc}") from None


def _to_yaml(value: Any) -> str:
    yaml, _, dumper = _yaml_classes()
    return yaml.dump(
        plain(limits.check_value(value, "the toYaml input")),
        Dumper=dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )


def _indent(value: Any, amount: int, prefix: str = " ") -> str:
    text, prefix = _text(value), _text(prefix)
    limits.check_string(len(prefix) * int(amount), "indent")
    pad = prefix * int(amount)
    limits.check_string(len(text) + text.count("\n") * len(pad), "the result of indent")
    return text.replace("\n", "\n" + pad)


def _nindent(value: Any, amount: int, prefix: str = " ") -> str:
    indented = _indent(value, amount, prefix)
    limits.check_string(len(indented) + 1 + len(_text(prefix)) * int(amount), "the result of nindent")
    return "\n" + _text(prefix) * int(amount) + indented


def _distinct(value: Any) -> list[Any]:
    """First occurrences, in order; maps and lists are compared by their JSON (linear, not quadratic)."""
    seen: set[Any] = set()
    kept: list[Any] = []
    for item in value:
        key = (type(item) is bool, item) if isinstance(item, str | int | float | None) else to_json(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _chunk(value: Any, size: int) -> list[list[Any]]:
    if int(size) < 1:
        raise ExpressionError(f"chunk: size must be at least 1, got {size}")
    items = list(value)
    return [items[i : i + int(size)] for i in range(0, len(items), int(size))]


def _substring(before: bool, last: bool) -> Callable[[Any, str], str]:
    def cut(value: Any, separator: str) -> str:
        text = _text(value)
        index = text.rfind(separator) if last else text.find(separator)
        if index < 0:
            return text if before else ""
        return text[:index] if before else text[index + len(separator) :]

    return cut


def _merge(value: Any, items: Any) -> Any:
    """Pebble's ``merge``: a map merged with a map (the argument's keys win), a list extended by a list."""
    if isinstance(value, Mapping) and isinstance(items, Mapping):
        return {**value, **items}
    if _is_list(value) and _is_list(items):
        return [*value, *items]
    raise ExpressionError(
        f"merge: cannot merge {to_display(items)!r} into {to_display(value)!r}: "
        "expected two maps or two lists"
    )


_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def _escape(value: Any, strategy: str = "html") -> Any:
    """Pebble's ``escape`` with its default ``html`` strategy (``& < > " '``); other strategies fail."""
    if value is None:
        return None
    if str(strategy) != "html":
        raise ExpressionError(f"escape: strategy '{strategy}' is not supported by Squall (only 'html')")
    text = _text(value)
    limits.check_string(len(text) * 6, "the result of escape")
    return "".join(_HTML_ESCAPES.get(ch, ch) for ch in text)


def _flatten(value: Any) -> list[Any] | None:
    """Kestra's ``flatten``: one level of nested lists spliced into the outer list."""
    if value is None:
        return None
    if not _is_list(value):
        raise ExpressionError("The 'flatten' filter can only be applied to lists.")
    flat: list[Any] = []
    for item in value:
        if _is_list(item):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


_DECIMAL_PATTERN = re.compile(r"([^#0,.]*)([#0,]*)(?:\.([0#]*))?([^#0,.]*)")


def _number_format(value: Any, format: str | None = None) -> str:
    """Pebble's ``numberformat``: Java's ``DecimalFormat`` (English symbols, HALF_EVEN rounding).

    The pattern subset every example uses is honoured: literal prefix and suffix, ``#``/``0``
    integer digits, ``,`` grouping, ``.`` with ``0``/``#`` fraction digits. Without a pattern,
    Java's default ``#,##0.###``. Exponents, percent, quoting and negative sub-patterns fail
    with a message naming the pattern, instead of printing something Java would not.
    """
    pattern = "#,##0.###" if format is None else _text(format)
    match = _DECIMAL_PATTERN.fullmatch(pattern)
    if match is None or not match.group(2) or any(c in pattern for c in "E%\u2030\u00a4';"):
        raise ExpressionError(f"numberformat: pattern '{pattern}' is not supported by Squall")
    prefix, integer, fraction, suffix = match.group(1), match.group(2), match.group(3) or "", match.group(4)
    number = Decimal(str(_numeric(value)))
    if not number.is_finite():
        raise ExpressionError(f"numberformat: cannot format {to_display(value)}")
    limits.check_bits(max(number.adjusted(), 0) * 4, "numberformat")
    rounded = number.quantize(Decimal(1).scaleb(-len(fraction)), rounding=ROUND_HALF_EVEN)
    whole, _, decimals = f"{abs(rounded):f}".partition(".")
    decimals = decimals.rstrip("0").ljust(fraction.count("0"), "0")
    whole = whole.lstrip("0").rjust(integer.count("0"), "0")
    if "," in integer:
        size = len(integer) - integer.rindex(",") - 1
        if size > 0:
            groups = [whole[max(i - size, 0) : i] for i in range(len(whole), 0, -size)]
            whole = ",".join(reversed(groups))
    body = f"{whole}.{decimals}" if decimals else (whole or "0")
    sign = "-" if rounded < 0 else ""
    return f"{sign}{prefix}{body}{suffix}"


FILTERS: dict[str, Callable[..., Any]] = {
    "json": to_json,
    "toJson": to_json,
    "jq": _jq_filter,
    "fromJson": _from_json,
    "date": _date,
    "dateAdd": _date_add,
    "timestamp": _timestamp(1),
    "timestampMilli": _timestamp(1_000),
    "timestampMicro": _timestamp(1_000_000),
    "timestampNano": _timestamp(1_000_000_000),
    "default": _default,
    "upper": lambda value: _text(value).upper(),
    "lower": lambda value: _text(value).lower(),
    "capitalize": _capitalize,
    "title": _title,
    "trim": lambda value: _text(value).strip(),
    "abbreviate": _abbreviate,
    "length": _length,
    "join": _join,
    "split": _split,
    "replace": _replace,
    "keys": _keys,
    "values": _values,
    "first": _first,
    "last": _last,
    "slugify": _slugify,
    "startsWith": lambda value, prefix: _text(value).startswith(_text(prefix)),
    "endsWith": lambda value, suffix: _text(value).endswith(_text(suffix)),
    "sort": _sorted,
    "rsort": lambda value: _sorted(value, reverse=True),
    "reverse": _reverse,
    "slice": _slice,
    "number": _number,
    "abs": lambda value: abs(_numeric(value)),
    "round": _round,
    "string": _text,
    "urlencode": _urlencode,
    "urldecode": lambda value: unquote_plus(_text(value)),
    "base64encode": lambda value: base64.b64encode(_text(value).encode()).decode(),
    "base64decode": _base64decode,
    "md5": _hash("md5"),
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
    "escapeChar": _escape_char,
    "yaml": _yaml_parse,
    "toYaml": _to_yaml,
    "indent": _indent,
    "nindent": _nindent,
    "distinct": _distinct,
    "chunk": _chunk,
    "substringBefore": _substring(before=True, last=False),
    "substringBeforeLast": _substring(before=True, last=True),
    "substringAfter": _substring(before=False, last=False),
    "substringAfterLast": _substring(before=False, last=True),
    "merge": _merge,
    "escape": _escape,
    "raw": lambda value: value,
    "numberformat": _number_format,
    "flatten": _flatten,
}


def _even(value: Any) -> bool:
    return int(_numeric(value)) % 2 == 0


def _defined(value: Any) -> bool:
    return not isinstance(value, Undefined)


def _divisible_by(value: Any, divisor: Any) -> bool:
    """Pebble's ``divisibleby(n)``: integer remainder zero; dividing by zero is an error, as in Java."""
    number, by = int(_numeric(value)), int(_numeric(divisor))
    if by == 0:
        raise ExpressionError("divisibleby: division by zero")
    return number % by == 0


def _is_json(value: Any) -> bool:
    """Kestra's ``json`` test: a string Jackson can read as JSON."""
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


TESTS: dict[str, Callable[..., bool]] = {
    "defined": _defined,
    "divisibleby": _divisible_by,
    "sameas": lambda value, other: value is other,  # Java's ``==``: the same object
    "json": _is_json,
    "null": lambda value: value is None,
    "empty": lambda value: _is_empty(value) if not isinstance(value, Undefined) else len(value) == 0,
    "even": _even,
    "odd": lambda value: not _even(value),
    "map": lambda value: isinstance(value, Mapping),
    "iterable": lambda value: isinstance(value, Mapping) or _is_list(value),
    # the two halves of ``??`` and ``???``
    "present": lambda value: not isinstance(value, Undefined) and value is not None,
}

"""Execution inputs: Kestra's typing, validation and messages, and the masking of SECRET inputs.

An execution's inputs arrive as loose data (form fields, a JSON body, CLI ``key=value`` pairs, a
parent flow's ``Subflow.inputs``). :func:`resolve_inputs` turns them into the typed values the
templates see, following Kestra's ``FlowInputOutput`` (the source read was kestra-io/kestra at the
end of 2024, ``runners/FlowInputOutput.java`` and ``models/flows/input/*.java``):

- each declared input takes the provided value, else its ``defaults`` (a provided ``null`` counts
  as missing); a missing required input is an error, a missing optional one is ``None``;
- the value is converted by type, then checked against the input's constraints;
- undeclared provided inputs are dropped;
- ids with dots (``user.name``) become nested maps (``{"user": {"name": ...}}``), as Kestra's
  ``MapUtils.flattenToNestedMap`` does, so that ``{{ inputs.user.name }}`` works.

Every message has Kestra's shape, ``Invalid input for `id`, <reason>, but received `<value>```, with
the received value printed the way Java prints it (``null``, ``true``, ``[a, b]``, ``{k=v}``).
Unlike Kestra, which stops at the first bad input, all problems are collected and raised once as
one :class:`~control_plane.errors.InputError`; no other exception escapes for a bad value.

Values of temporal types are stored as the text Java's ``toString`` gives, because that is what a
Kestra template prints for them: DATETIME as ``Instant`` (UTC, ``Z``, fraction only when non-zero,
in groups of three digits: ``2024-01-02T03:04:05Z``), TIME as ``LocalTime`` (``10:00`` for
``10:00:00``), DURATION as ``Duration`` (``PT1M`` for ``PT60S``, ``PT24H`` for ``P1D``), DATE as
``YYYY-MM-DD``. Keeping text (not ``datetime`` objects) keeps executions JSON-serialisable.

Deliberate differences from Kestra (each because Kestra's behaviour is an accident of Java, not a
rule a flow relies on):

- BOOLEAN rejects strings other than ``true``/``false`` (Java's ``Boolean.valueOf`` turns ``yes``
  into ``false``);
- a conversion failure reads ``Expected `INT` but received `abc``` (Kestra's own wording, used by
  its URI check and as the head of its generic wrapper) instead of Java exception text;
- SELECT/ENUM values are checked for optional inputs too (Kestra skips the check when
  ``required: false``);
- URI accepts Kestra's pattern or any ``scheme://authority...`` (Kestra's pattern rejects hosts
  without a dot such as ``localhost``);
- STRING ``minLength``/``maxLength`` exist in Squall's model, not in Kestra; their wording is ours;
- DATE/TIME/DATETIME bounds come from ``min``/``max`` (Kestra calls them ``after``/``before``) and
  keep Kestra's ``it must be after/before`` wording;
- the received value of a SECRET input is printed as ``********``, never in clear;
- inputs with ``expression``-valued choices, ``dependsOn`` conditions or templated ``defaults`` are
  not rendered here (that needs the expression engine): such choices are not checked.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from msgspec import Struct

from control_plane.errors import InputError
from control_plane.flows.durations import NANOS, fraction_nanos, parse_nanos
from control_plane.flows.models import Flow, Input, InputType
from control_plane.masking import MASK, mask_paths, mask_secrets, mask_value

__all__ = [
    "MASK",
    "default_problems",
    "mask_secrets",
    "mask_value",
    "masked_inputs",
    "resolve_inputs",
    "secret_paths",
    "secret_values",
]


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # Kestra's INT is a Java Integer
_MAX_RENDER_DEPTH = 20

# Kestra's FlowInputOutput.URI_PATTERN, verbatim.
_KESTRA_URI = re.compile(
    r"^[a-z]+:\/\/(?:www\.)?[-a-zA-Z0-9@:%._\+~#=]{1,256}\.[a-zA-Z0-9()]{1,6}\b"
    r"(?:[-a-zA-Z0-9()@:%_\+.~#?&\/=]*)$"
)
_GENERIC_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#]+(?:[/?#]\S*)?")
# Kestra's EmailInput.EMAIL_PATTERN, verbatim: the empty string is valid there too, and the class
# holds a typographic apostrophe (U+2019) where an ASCII one was surely meant; both are kept.
_EMAIL = re.compile("^$|^[a-zA-Z0-9_!#$%&\u2019*+/=?`{|}~^.-]+@[a-zA-Z0-9.-]+$")

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME_TEXT = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?")
_INSTANT_TEXT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)"
)


# --------------------------------------------------------------------------- public API


def resolve_inputs(
    flow: Flow,
    provided: Mapping[str, Any] | None,
    *,
    typed: bool = True,
    file_scope: Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """The execution's ``inputs``: typed and validated (API, CLI), or raw (Kestra's own tests).

    Raw mode (``typed=False``) returns the provided map unchanged plus the ``defaults`` of declared
    inputs whose key is absent, which is what Kestra's ``RunVariables`` shows templates when an
    execution is created without going through ``FlowInputOutput``.

    ``file_scope`` says why a storage URI given for a FILE input (or an ARRAY of FILE) may not
    be read by this execution, or None when it may: whoever starts an execution must not name
    another execution's files through it (:mod:`control_plane.service.file_scope`). Values the
    flow itself supplies (its ``defaults``) are the flow author's and are not checked.

    Raises :class:`InputError` with one message per problem; nothing else for bad values.
    """
    if provided is not None and not isinstance(provided, Mapping):
        raise InputError(
            [f"Invalid inputs, expected a map of input ids to values, but received `{_jtext(provided)}`"]
        )
    given: dict[Any, Any] = dict(provided or {})
    declared = list(flow.inputs or ())
    if not typed:
        for spec in declared:
            if spec.id not in given and spec.defaults is not None:
                given[spec.id] = spec.defaults
        return given

    problems: list[str] = []
    flat: dict[str, Any] = {}
    for spec in declared:
        raw = given.get(spec.id)
        supplied = raw is not None
        if raw is None:
            raw = spec.defaults
        if raw is None:
            if spec.required:
                problems.append(_message(spec, "missing required input", None))
            else:
                flat[spec.id] = None
            continue
        try:
            flat[spec.id] = _resolve_one(spec, raw)
            if supplied and file_scope is not None:
                _check_file_scope(spec, flat[spec.id], file_scope)
        except _Invalid as exc:
            problems.extend(_message(spec, _hide_secret(spec, reason), raw) for reason in exc.reasons)
    if problems:
        raise InputError(problems)
    return _nest(flat)


def trigger_inputs(
    flow: Flow, inputs: Mapping[str, Any] | None, trigger: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A trigger's ``inputs`` rendered with its variables, as Kestra renders them: a Webhook's
    ``{{ trigger.body.ref ?? 'main' }}``, a Schedule's ``{{ trigger.date }}``. Passed literally,
    they reached the flow as the template's text. A template that fails is an InputError naming
    the input (the webhook answers 422, a schedule logs it and skips the date)."""
    if inputs is None:
        return None
    from control_plane.errors import ExpressionError
    from control_plane.expressions import render_value

    context = {
        "trigger": dict(trigger),
        "flow": {"id": flow.id, "namespace": flow.namespace, "revision": flow.revision},
    }
    rendered: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in inputs.items():
        try:
            rendered[name] = render_value(value, context)
        except ExpressionError as exc:
            problems.append(f"trigger input `{name}` could not be rendered: {exc}")
    if problems:
        raise InputError(problems)
    return rendered


def secret_values(flow: Flow, inputs: Mapping[str, Any]) -> list[str]:
    """The text of every SECRET input's value, so the log pipeline can mask it wherever it appears.

    An ARRAY/MULTISELECT whose ``itemType`` is SECRET contributes each of its items.

    Works on typed (nested) and raw (flat) input maps alike; empty values are left out since
    masking an empty string would mean nothing.
    """
    found: list[str] = []
    for spec in flow.inputs or ():
        if not _holds_secret(spec):
            continue
        present, value = _lookup(inputs, spec.id)
        if not present or value is None:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            text = item if isinstance(item, str) else _jtext(item)
            if item is not None and text and text not in found:
                found.append(text)
    return found


def secret_paths(flow: Flow) -> tuple[str, ...]:
    """The ids of the flow's SECRET inputs (and ARRAYs of SECRET items): what displays mask."""
    return tuple(spec.id for spec in flow.inputs or () if _holds_secret(spec))


def masked_inputs(flow: Flow, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``inputs`` for display, logs and the API: SECRET inputs' values become ``********``."""
    return mask_paths(inputs, secret_paths(flow))


# --------------------------------------------------------------------------- resolution


def default_problems(spec: Input) -> list[str]:
    """Why ``spec.defaults`` could never be the input's value: every execution that relies on it
    would be refused (Kestra finds that only when one is created). A templated default is
    rendered per execution and is not judged here."""
    raw = spec.defaults
    if raw is None or _has_template(raw):
        return []
    try:
        _resolve_one(spec, raw)
    except _Invalid as exc:
        return [f"invalid defaults: {_hide_secret(spec, reason)}" for reason in exc.reasons]
    return []


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_has_template(k) or _has_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_template(item) for item in value)
    return False


class _Invalid(Exception):
    """One input's problems, each a Kestra ``reason`` that goes between the id and the value."""

    def __init__(self, *reasons: str) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(reasons))


def _holds_secret(spec: Input) -> bool:
    return spec.type is InputType.SECRET or spec.itemType is InputType.SECRET


def _message(spec: Input, reason: str, received: Any) -> str:
    """Kestra's shape; a conversion reason already says what was received, so it is not repeated
    (``Invalid input for `n`, Expected `INT` but received `abc```)."""
    if " but received `" in reason:
        return f"Invalid input for `{spec.id}`, {reason}"
    shown = MASK if _holds_secret(spec) and received is not None else _jtext(received)
    return f"Invalid input for `{spec.id}`, {reason}, but received `{shown}`"


def _hide_secret(spec: Input, reason: str) -> str:
    """Conversion reasons quote the value; for a secret that would print it, so they are replaced.

    Constraint reasons (``it must ...``) quote only the flow's own bounds and are kept.
    """
    if not _holds_secret(spec) or reason.startswith("it must"):
        return reason
    return f"Expected `{spec.type}` but received `{MASK}`"


def _expected(kind: InputType | str, value: Any, detail: str | None = None) -> _Invalid:
    reason = f"Expected `{kind}` but received `{_jtext(value)}`"
    if detail:
        reason += f" with errors: {detail}"
    return _Invalid(reason)


def _resolve_one(spec: Input, raw: Any) -> Any:
    """Convert then check one input; any unexpected Python error on odd data is a bad value too."""
    try:
        return _RESOLVERS[spec.type](spec, raw)
    except _Invalid:
        raise
    except _conversion_errors() as exc:
        raise _expected(spec.type, raw) from exc


VALIDATOR_TIMEOUT = 1.0
"""Seconds a ``validator`` pattern may take on one value: inputs come from whoever starts an
execution, so a pattern that backtracks catastrophically must not hold the request."""


def _matches(pattern: str, value: str) -> bool:
    import regex  # like ``re``, but a match can be given a timeout

    try:
        return regex.fullmatch(pattern, value, timeout=VALIDATOR_TIMEOUT) is not None
    except TimeoutError:
        raise _Invalid(
            f"the pattern `{pattern}` took longer than {VALIDATOR_TIMEOUT:g} s on this value"
        ) from None


def _resolve_string(spec: Input, raw: Any) -> str:
    value = _to_text(raw)
    reasons: list[str] = []
    if spec.minLength is not None and len(value) < spec.minLength:
        reasons.append(f"it must have at least `{spec.minLength}` characters")
    if spec.maxLength is not None and len(value) > spec.maxLength:
        reasons.append(f"it must have at most `{spec.maxLength}` characters")
    if spec.validator is not None and not _matches(spec.validator, value):
        reasons.append(f"it must match the pattern `{spec.validator}`")
    if reasons:
        raise _Invalid(*reasons)
    return value


def _resolve_secret(spec: Input, raw: Any) -> str:
    value = _to_text(raw, kind=InputType.SECRET, containers=False)
    if spec.validator is not None and not _matches(spec.validator, value):
        raise _Invalid(f"it must match the pattern `{spec.validator}`")
    return value


def _resolve_int(spec: Input, raw: Any) -> int:
    value = _to_int(raw, spec.type)
    _check_range(spec, value, lambda b: _to_int(b, spec.type), str)
    return value


def _resolve_float(spec: Input, raw: Any) -> float:
    value = _to_float(raw, spec.type)
    _check_range(spec, value, lambda b: _to_float(b, spec.type), repr)
    return value


def _resolve_bool(spec: Input, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise _expected(spec.type, raw)


def _resolve_datetime(spec: Input, raw: Any) -> str:
    value = _to_instant(raw)
    _check_range(spec, value, _to_instant, _Instant.text, after_before=True)
    return value.text()


def _resolve_date(spec: Input, raw: Any) -> str:
    value = _to_date(raw)
    _check_range(spec, value, _to_date, date.isoformat, after_before=True)
    return value.isoformat()


def _resolve_time(spec: Input, raw: Any) -> str:
    value = _to_time(raw)
    _check_range(spec, value, _to_time, _LocalTime.text, after_before=True)
    return value.text()


def _resolve_duration(spec: Input, raw: Any) -> str:
    nanos = _to_duration(raw)
    reasons: list[str] = []
    # DurationInput is the one Kestra class whose messages start with a capital letter.
    if spec.min is not None and nanos < (low := _bound(spec, "min", _to_duration)):
        reasons.append(f"It must be more than `{_duration_text(low)}`")
    if spec.max is not None and nanos > (high := _bound(spec, "max", _to_duration)):
        reasons.append(f"It must be less than `{_duration_text(high)}`")
    if reasons:
        raise _Invalid(*reasons)
    return _duration_text(nanos)


def _resolve_json(spec: Input, raw: Any) -> Any:
    if isinstance(raw, dict | list):
        return _plain(raw, spec.type)
    if not isinstance(raw, str):
        raise _expected(spec.type, raw)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _expected(spec.type, raw, str(exc)) from exc


def _resolve_yaml(spec: Input, raw: Any) -> Any:
    if isinstance(raw, dict | list):
        return _plain(raw, spec.type)
    if not isinstance(raw, str):
        raise _expected(spec.type, raw)
    import yaml

    try:
        loaded = yaml.load(raw, Loader=_plain_yaml_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _expected(spec.type, raw, str(exc)) from exc
    return _plain(loaded, spec.type)


def _resolve_uri(spec: Input, raw: Any) -> str:
    if isinstance(raw, str) and (_KESTRA_URI.match(raw) or _GENERIC_URI.fullmatch(raw)):
        return raw
    raise _expected(InputType.URI, raw)


def _resolve_email(spec: Input, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _expected(spec.type, raw)
    if _EMAIL.match(raw) is None:
        raise _Invalid("The input must be a valid email")
    return raw


def _resolve_file(spec: Input, raw: Any) -> str:
    """A ``kestra://`` URI or a path, kept as text: uploading is the API's job, not this module's."""
    if not isinstance(raw, str):
        raise _expected(spec.type, raw)
    return raw


def _check_file_scope(spec: Input, value: Any, scope: Callable[[str], str | None]) -> None:
    """Every storage URI among a FILE input's values (one, or an ARRAY of FILE's items) in scope."""
    if spec.type is InputType.FILE:
        values = [value]
    elif spec.type is InputType.ARRAY and spec.itemType is InputType.FILE:
        values = list(value)
    else:
        return
    reasons = [reason for item in values if isinstance(item, str) and (reason := scope(item)) is not None]
    if reasons:
        raise _Invalid(*reasons)


def _resolve_select(spec: Input, raw: Any) -> str:
    if isinstance(raw, dict | list):
        if spec.values is None or spec.allowCustomValue:
            raise _expected(spec.type, raw)
        raise _Invalid(_values_reason(spec.values))
    value = _to_text(raw)
    if (
        spec.values is not None
        and not spec.allowCustomValue
        and value not in [_to_text(v) for v in spec.values]
    ):
        raise _Invalid(_values_reason(spec.values))
    return value


def _resolve_multiselect(spec: Input, raw: Any) -> list[Any]:
    items = _resolve_array_items(spec, raw, spec.itemType or InputType.STRING)
    if spec.values is not None and not spec.allowCustomValue:
        allowed = [_to_text(v) for v in spec.values]
        if any(_item_text(item) not in allowed for item in items):
            raise _Invalid(_values_reason(spec.values))
    return items


def _resolve_array(spec: Input, raw: Any) -> list[Any]:
    return _resolve_array_items(spec, raw, spec.itemType or InputType.STRING)


_RESOLVERS: dict[InputType, Callable[[Input, Any], Any]] = {
    InputType.STRING: _resolve_string,
    InputType.SECRET: _resolve_secret,
    InputType.INT: _resolve_int,
    InputType.FLOAT: _resolve_float,
    InputType.BOOLEAN: _resolve_bool,
    InputType.BOOL: _resolve_bool,
    InputType.DATETIME: _resolve_datetime,
    InputType.DATE: _resolve_date,
    InputType.TIME: _resolve_time,
    InputType.DURATION: _resolve_duration,
    InputType.JSON: _resolve_json,
    InputType.YAML: _resolve_yaml,
    InputType.URI: _resolve_uri,
    InputType.EMAIL: _resolve_email,
    InputType.FILE: _resolve_file,
    InputType.SELECT: _resolve_select,
    InputType.ENUM: _resolve_select,
    InputType.MULTISELECT: _resolve_multiselect,
    InputType.ARRAY: _resolve_array,
}


def _values_reason(values: list[Any]) -> str:
    return f"it must match the values `{_jtext(values)}`"


def _resolve_array_items(spec: Input, raw: Any, item_type: InputType) -> list[Any]:
    """A list, or a JSON array in a string; each item converted (not constrained) by ``item_type``.

    Kestra stops at the first bad item and names it by value; Squall reports every bad item and
    adds its index, which is what a user needs to find it in a long list.
    """
    if isinstance(raw, list | tuple):
        items = list(raw)
    elif isinstance(raw, str):
        try:
            items = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:
            raise _expected(spec.type, raw, str(exc)) from exc
        if not isinstance(items, list):
            raise _expected(spec.type, raw)
    else:
        raise _expected(spec.type, raw)
    converted: list[Any] = []
    reasons: list[str] = []
    convert = _ITEM_CONVERTERS[item_type]
    for index, item in enumerate(items):
        try:
            if item is None:
                raise _expected(item_type, item)
            converted.append(convert(item, item_type))
        except _conversion_errors(_Invalid):
            reasons.append(
                f"Unable to parse array element as `{item_type}` on `{_jtext(item)}` at index `{index}`"
            )
    if reasons:
        raise _Invalid(*reasons)
    return converted


def _no_nested_array(value: Any, item_type: InputType) -> Any:
    """The model rejects ``itemType: ARRAY``; this keeps the table total all the same."""
    raise _expected(item_type, value)


def _item_spec(item_type: InputType) -> Input:
    return Input.model_construct(id="item", type=item_type)


_ITEM_CONVERTERS: dict[InputType, Callable[[Any, InputType], Any]] = {
    InputType.STRING: lambda v, t: _to_text(v),
    InputType.SECRET: lambda v, t: _to_text(v, kind=t, containers=False),
    InputType.SELECT: lambda v, t: _to_text(v, kind=t, containers=False),
    InputType.ENUM: lambda v, t: _to_text(v, kind=t, containers=False),
    InputType.MULTISELECT: lambda v, t: _to_text(v, kind=t, containers=False),
    InputType.INT: lambda v, t: _to_int(v, t),
    InputType.FLOAT: lambda v, t: _to_float(v, t),
    InputType.BOOLEAN: lambda v, t: _resolve_bool(_item_spec(t), v),
    InputType.BOOL: lambda v, t: _resolve_bool(_item_spec(t), v),
    InputType.DATETIME: lambda v, t: _to_instant(v).text(),
    InputType.DATE: lambda v, t: _to_date(v).isoformat(),
    InputType.TIME: lambda v, t: _to_time(v).text(),
    InputType.DURATION: lambda v, t: _duration_text(_to_duration(v)),
    InputType.JSON: lambda v, t: _resolve_json(_item_spec(t), v),
    InputType.YAML: lambda v, t: _resolve_yaml(_item_spec(t), v),
    InputType.URI: lambda v, t: _resolve_uri(_item_spec(t), v),
    InputType.EMAIL: lambda v, t: _resolve_email(_item_spec(t), v),
    InputType.FILE: lambda v, t: _resolve_file(_item_spec(t), v),
    InputType.ARRAY: _no_nested_array,
}


# --------------------------------------------------------------------------- bounds


def _bound(spec: Input, name: str, parse: Callable[[Any], Any]) -> Any:
    """A ``min``/``max`` bound parsed like a value; a bad bound is reported, not raised as a bug."""
    raw = getattr(spec, name)
    try:
        return parse(raw)
    except (_Invalid, ValueError, TypeError, OverflowError) as exc:
        raise _Invalid(f"the `{name}` bound `{_jtext(raw)}` is not a valid `{spec.type}`") from exc


def _check_range(
    spec: Input,
    value: Any,
    parse: Callable[[Any], Any],
    render: Callable[[Any], str],
    *,
    after_before: bool = False,
) -> None:
    """Kestra's ``it must be more/less than`` (numbers) or ``after/before`` (dates and times)."""
    low_word, high_word = ("be after", "be before") if after_before else ("be more than", "be less than")
    reasons: list[str] = []
    if spec.min is not None and value < (low := _bound(spec, "min", parse)):
        reasons.append(f"it must {low_word} `{render(low)}`")
    if spec.max is not None and value > (high := _bound(spec, "max", parse)):
        reasons.append(f"it must {high_word} `{render(high)}`")
    if reasons:
        raise _Invalid(*reasons)


# --------------------------------------------------------------------------- scalar conversions


def _to_text(raw: Any, kind: InputType = InputType.STRING, *, containers: bool = True) -> str:
    """A STRING value: strings as they are, scalars as Kestra prints them, maps/lists as JSON."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict | list | tuple):
        if not containers:
            raise _expected(kind, raw)
        return json.dumps(_plain(raw, kind), separators=(",", ":"), ensure_ascii=False)
    if raw is None:
        raise _expected(kind, raw)
    return _jtext(raw)


def _item_text(item: Any) -> str:
    return item if isinstance(item, str) else _jtext(item)


def _to_int(raw: Any, kind: InputType = InputType.INT) -> int:
    """A Java ``Integer``: ints, integral floats and decimal digits; never a bool, never 2**31."""
    if isinstance(raw, bool):
        raise _expected(kind, raw)
    if isinstance(raw, int):
        value = raw
    elif (isinstance(raw, float) and math.isfinite(raw) and raw.is_integer()) or (
        isinstance(raw, str) and _INT_TEXT.fullmatch(raw)
    ):
        value = int(raw)
    else:
        raise _expected(kind, raw)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _expected(kind, raw)
    return value


def _to_float(raw: Any, kind: InputType = InputType.FLOAT) -> float:
    """A finite number: ints, floats and decimal text (NaN/Infinity would not survive JSON)."""
    if isinstance(raw, bool):
        raise _expected(kind, raw)
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str) and _FLOAT_TEXT.fullmatch(raw.strip()):
        value = float(raw.strip())
    else:
        raise _expected(kind, raw)
    if not math.isfinite(value):
        raise _expected(kind, raw)
    return value


class _Instant(Struct, frozen=True, order=True):
    """A UTC instant with nanoseconds (Python's datetime stops at microseconds, Java's does not)."""

    utc: datetime  # naive, UTC, whole seconds
    nanos: int

    def text(self) -> str:
        """``Instant.toString()``: seconds always, the fraction only when non-zero, by 3 digits."""
        return self.utc.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(self.nanos) + "Z"


def _fraction(nanos: int) -> str:
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def _to_instant(raw: Any) -> _Instant:
    """``Instant.parse``: ISO-8601 with seconds and a ``Z`` or ``±HH:MM`` offset, normalised to UTC."""
    if isinstance(raw, datetime):
        if raw.tzinfo is None or raw.utcoffset() is None:
            raise _expected(InputType.DATETIME, raw)
        utc = raw.astimezone(UTC).replace(tzinfo=None)
        return _Instant(utc.replace(microsecond=0), utc.microsecond * 1000)
    match = _INSTANT_TEXT.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise _expected(InputType.DATETIME, raw)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m, off_s = match.groups()
    offset = timedelta(0)
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m), seconds=int(off_s or 0))
        if offset > timedelta(hours=18) or int(off_m) > 59 or int(off_s or 0) > 59:
            raise _expected(InputType.DATETIME, raw)
        if sign == "-":
            offset = -offset
    local = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset)
    )
    utc = local.astimezone(UTC).replace(tzinfo=None)
    return _Instant(utc, fraction_nanos(fraction))


def _to_date(raw: Any) -> date:
    """``LocalDate.parse``: exactly ``YYYY-MM-DD`` and a real calendar day."""
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    match = _DATE_TEXT.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise _expected(InputType.DATE, raw)
    return date(*(int(part) for part in match.groups()))


class _LocalTime(Struct, frozen=True, order=True):
    """A time of day with nanoseconds, printed like ``LocalTime.toString()``."""

    hour: int
    minute: int
    second: int
    nanos: int

    def text(self) -> str:
        out = f"{self.hour:02d}:{self.minute:02d}"
        if self.second or self.nanos:
            out += f":{self.second:02d}" + _fraction(self.nanos)
        return out


def _to_time(raw: Any) -> _LocalTime:
    """``LocalTime.parse``: ``HH:MM``, ``HH:MM:SS`` or ``HH:MM:SS.fraction``, no offset."""
    if isinstance(raw, time):
        if raw.tzinfo is not None:
            raise _expected(InputType.TIME, raw)
        return _LocalTime(raw.hour, raw.minute, raw.second, raw.microsecond * 1000)
    match = _TIME_TEXT.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise _expected(InputType.TIME, raw)
    hour, minute, second = (int(part or 0) for part in match.groups()[:3])
    if hour > 23 or minute > 59 or second > 59:
        raise _expected(InputType.TIME, raw)
    return _LocalTime(hour, minute, second, fraction_nanos(match.group(4)))


def _to_duration(raw: Any) -> int:
    """``Duration.parse`` as a signed number of nanoseconds (the one parser: flows/durations.py)."""
    if isinstance(raw, timedelta):
        return (raw // timedelta(microseconds=1)) * 1000
    if not isinstance(raw, str):
        raise _expected(InputType.DURATION, raw)
    try:
        return parse_nanos(raw)
    except ValueError:
        raise _expected(InputType.DURATION, raw) from None


def _duration_text(total_nanos: int) -> str:
    """``Duration.toString()``: ``PT0S``, days folded into hours, Java's truncating arithmetic."""
    if total_nanos == 0:
        return "PT0S"
    seconds, nanos = divmod(total_nanos, NANOS)  # Java keeps 0 <= nanos < 1e9, seconds floored
    effective = seconds + 1 if seconds < 0 and nanos > 0 else seconds
    hours = int(effective / 3600) if effective >= 0 else -((-effective) // 3600)
    rest = effective - hours * 3600  # sign follows the dividend, as Java's % does
    minutes = int(rest / 60) if rest >= 0 else -((-rest) // 60)
    secs = rest - minutes * 60
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if secs == 0 and nanos == 0 and len(out) > 2:
        return out
    if seconds < 0 and nanos > 0:
        out += "-0" if secs == 0 else str(secs)
        digits = str(2 * NANOS - nanos)
    else:
        out += str(secs)
        digits = str(nanos + NANOS)
    if nanos > 0:
        out += "." + digits[1:].rstrip("0")
    return out + "S"


# --------------------------------------------------------------------------- structured values


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _conversion_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """What converting an input's value raises on odd data; PyYAML's error only once a YAML
    input imported PyYAML (none can be raised before), so that a flow without one does not pay
    PyYAML's import (~10 ms of a cached ``squall run``)."""
    errors = (*more, ValueError, TypeError, OverflowError, RecursionError)
    yaml = sys.modules.get("yaml")
    return errors if yaml is None else (*errors, yaml.YAMLError)


@functools.cache
def _plain_yaml_loader() -> type[Any]:
    """SafeLoader that leaves timestamps as text, as Jackson's YAML reader does for an Object."""
    import yaml

    class PlainYamlLoader(yaml.SafeLoader):
        pass

    PlainYamlLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return PlainYamlLoader


def _plain(value: Any, kind: InputType, depth: int = 0) -> Any:
    """JSON-compatible data only: string keys, lists not tuples or sets, finite numbers."""
    if depth > 200:
        raise _Invalid(f"Expected `{kind}` but received a value nested too deeply")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _expected(kind, value)
        return value
    if isinstance(value, dict):
        return {_item_text(k): _plain(v, kind, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, kind, depth + 1) for v in value]
    raise _expected(kind, value)


# --------------------------------------------------------------------------- rendering and shape


def _jtext(value: Any, depth: int = 0) -> str:
    """A value as Java's ``toString`` prints it in Kestra's messages: ``null``, ``true``, ``[a, b]``."""
    if depth > _MAX_RENDER_DEPTH:
        return "..."
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_jtext(v, depth + 1) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{_jtext(k, depth + 1)}={_jtext(v, depth + 1)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    try:
        return str(value)
    except Exception:  # a caller's exotic object must not turn a message into a crash
        return object.__repr__(value)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Kestra's ``flattenToNestedMap``: ``a.b`` goes under ``a``; a clash is an input problem."""
    result: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InputError([_conflict(".".join(parts[: depth + 1]), flat)])
            node = child
        if parts[-1] in node:
            raise InputError([_conflict(key, flat)])
        node[parts[-1]] = value
    return result


def _conflict(key: str, flat: Mapping[str, Any]) -> str:
    return f"Conflict at key: '{key}', Map keys are: [{', '.join(flat)}]"


def _lookup(inputs: Mapping[str, Any], input_id: str) -> tuple[bool, Any]:
    """An input's value in a flat (raw) or nested (typed) inputs map."""
    if input_id in inputs:
        return True, inputs[input_id]
    node: Any = inputs
    for part in input_id.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node

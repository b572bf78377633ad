"""Execution inputs: Kestra's conversions and exact messages, raw mode, and secret masking.

Where Kestra's own ``InputsTest`` asserts a message, the same value and bound are used here so
the two can be compared line by line.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.errors import InputError
from control_plane.flows.inputs import MASK, mask_secrets, masked_inputs, resolve_inputs, secret_values
from control_plane.flows.models import Flow

LOG = {"id": "log", "type": "io.kestra.plugin.core.log.Log", "message": "hi"}


def make_flow(*inputs: dict[str, Any]) -> Flow:
    return Flow.model_validate(
        {"id": "f", "namespace": "io.kestra.tests", "inputs": list(inputs), "tasks": [LOG]}
    )


def one(spec: dict[str, Any], value: Any) -> Any:
    """The typed value of a single input ``x`` given ``value``."""
    return resolve_inputs(make_flow({"id": "x", **spec}), {"x": value})["x"]


def errors(spec: dict[str, Any], value: Any) -> list[str]:
    """The messages for a single input ``x`` given ``value``; fails if it is accepted."""
    with pytest.raises(InputError) as info:
        resolve_inputs(make_flow({"id": "x", **spec}), {"x": value})
    return info.value.messages


# --------------------------------------------------------------------------- STRING / SECRET


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", "hello"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (5, "5"),
        (1.5, "1.5"),
        ({"a": 1}, '{"a":1}'),
    ],
)
def test_string_keeps_text_and_prints_scalars_as_kestra_does(value: Any, expected: str) -> None:
    assert one({"type": "STRING"}, value) == expected


def test_string_validator_is_a_full_match() -> None:
    spec = {"type": "STRING", "validator": "^[A-Z]+"}
    assert one(spec, "ABC") == "ABC"
    assert errors(spec, "ABCd") == [
        "Invalid input for `x`, it must match the pattern `^[A-Z]+`, but received `ABCd`"
    ]


def test_string_lengths() -> None:
    spec = {"type": "STRING", "minLength": 2, "maxLength": 4}
    assert one(spec, "abcd") == "abcd"
    assert errors(spec, "a") == [
        "Invalid input for `x`, it must have at least `2` characters, but received `a`"
    ]
    assert errors(spec, "abcde") == [
        "Invalid input for `x`, it must have at most `4` characters, but received `abcde`"
    ]


def test_string_reports_every_broken_constraint() -> None:
    assert errors({"type": "STRING", "minLength": 3, "validator": "[0-9]+"}, "a") == [
        "Invalid input for `x`, it must have at least `3` characters, but received `a`",
        "Invalid input for `x`, it must match the pattern `[0-9]+`, but received `a`",
    ]


def test_secret_is_kept_and_never_printed_in_an_error() -> None:
    spec = {"type": "SECRET", "validator": "[0-9]{4}"}
    assert one(spec, "1234") == "1234"
    assert one({"type": "SECRET"}, 1234) == "1234"
    assert errors(spec, "hunter2") == [
        "Invalid input for `x`, it must match the pattern `[0-9]{4}`, but received `********`"
    ]
    assert errors(spec, {"pin": "hunter2"}) == [
        "Invalid input for `x`, Expected `SECRET` but received `********`"
    ]
    assert errors({"type": "ARRAY", "itemType": "SECRET"}, ["ok", ["hunter2"]]) == [
        "Invalid input for `x`, Expected `ARRAY` but received `********`"
    ]


# --------------------------------------------------------------------------- numbers and booleans


@pytest.mark.parametrize(("value", "expected"), [("42", 42), ("-7", -7), ("+3", 3), (42, 42), (5.0, 5)])
def test_int_accepts_ints_digits_and_integral_floats(value: Any, expected: int) -> None:
    result = one({"type": "INT"}, value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", "abc"),
        ("1.5", "1.5"),
        (1.5, "1.5"),
        (True, "true"),
        ("", ""),
        (2**31, "2147483648"),
        ([1], "[1]"),
    ],
)
def test_int_rejects_anything_else(value: Any, shown: str) -> None:
    assert errors({"type": "INT"}, value) == [f"Invalid input for `x`, Expected `INT` but received `{shown}`"]


def test_int_bounds_use_kestras_wording() -> None:
    spec = {"type": "INT", "min": 10, "max": 20}
    assert one(spec, "10") == 10
    assert errors(spec, "9") == ["Invalid input for `x`, it must be more than `10`, but received `9`"]
    assert errors(spec, "21") == ["Invalid input for `x`, it must be less than `20`, but received `21`"]


def test_the_briefs_age_example() -> None:
    flow = make_flow({"id": "age", "type": "INT", "min": 18})
    with pytest.raises(InputError) as info:
        resolve_inputs(flow, {"age": 10})
    assert info.value.messages == ["Invalid input for `age`, it must be more than `18`, but received `10`"]


@pytest.mark.parametrize(("value", "expected"), [("0.25", 0.25), ("1e2", 100.0), (2, 2.0), (0.5, 0.5)])
def test_float(value: Any, expected: float) -> None:
    result = one({"type": "FLOAT"}, value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", ["abc", "nan", "Infinity", True, float("inf")])
def test_float_rejects_non_numbers(value: Any) -> None:
    [message] = errors({"type": "FLOAT"}, value)
    assert message.startswith("Invalid input for `x`, Expected `FLOAT` but received `")


def test_float_bounds_use_kestras_wording() -> None:
    spec = {"type": "FLOAT", "min": 0.1, "max": 0.5}
    assert errors(spec, "0.01") == ["Invalid input for `x`, it must be more than `0.1`, but received `0.01`"]
    assert errors(spec, "1.01") == ["Invalid input for `x`, it must be less than `0.5`, but received `1.01`"]


@pytest.mark.parametrize("kind", ["BOOLEAN", "BOOL"])
@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("true", True), ("FALSE", False)]
)
def test_boolean(kind: str, value: Any, expected: bool) -> None:
    assert one({"type": kind}, value) is expected


@pytest.mark.parametrize("kind", ["BOOLEAN", "BOOL"])
def test_boolean_rejects_other_words_instead_of_reading_them_as_false(kind: str) -> None:
    assert errors({"type": kind}, "yes") == [f"Invalid input for `x`, Expected `{kind}` but received `yes`"]
    assert len(errors({"type": kind}, 1)) == 1


# --------------------------------------------------------------------------- dates, times, durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05+02:00", "2024-01-02T01:04:05Z"),
        ("2024-01-02T03:04:05.120Z", "2024-01-02T03:04:05.120Z"),
        ("2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.1234Z", "2024-01-02T03:04:05.123400Z"),
        ("2024-01-02T03:04:05.123456789-01:30", "2024-01-02T04:34:05.123456789Z"),
        (datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC), "2024-01-02T03:04:05.500Z"),
        (datetime(2024, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=1))), "2024-01-02T02:04:00Z"),
    ],
)
def test_datetime_is_printed_like_a_java_instant_in_utc(value: Any, expected: str) -> None:
    assert one({"type": "DATETIME"}, value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-02T03:04:05",
        "2024-01-02T03:04Z",
        "2024-01-02",
        "2024-13-02T03:04:05Z",
        "now",
        datetime(2024, 1, 2),
    ],
)
def test_datetime_needs_seconds_and_an_offset(value: Any) -> None:
    [message] = errors({"type": "DATETIME"}, value)
    assert message.startswith("Invalid input for `x`, Expected `DATETIME` but received `")


def test_datetime_bounds_use_kestras_after_before_wording() -> None:
    spec = {"type": "DATETIME", "min": "2023-01-01T00:00:00Z", "max": "2023-12-31T23:59:59Z"}
    assert errors(spec, "2022-01-01T00:00:00Z") == [
        "Invalid input for `x`, it must be after `2023-01-01T00:00:00Z`, but received `2022-01-01T00:00:00Z`"
    ]
    assert errors(spec, "2024-01-01T00:00:00Z") == [
        "Invalid input for `x`, it must be before `2023-12-31T23:59:59Z`, but received `2024-01-01T00:00:00Z`"
    ]
    assert one(spec, "2023-06-01T12:00:00+02:00") == "2023-06-01T10:00:00Z"


def test_date() -> None:
    assert one({"type": "DATE"}, "2024-02-29") == "2024-02-29"
    assert one({"type": "DATE"}, date(2024, 3, 1)) == "2024-03-01"
    for bad in ("2023-02-29", "20240101", "2024-1-1", "2024-01-01T00:00:00Z"):
        assert errors({"type": "DATE"}, bad) == [
            f"Invalid input for `x`, Expected `DATE` but received `{bad}`"
        ]


def test_date_bounds() -> None:
    spec = {"type": "DATE", "min": "2023-01-01", "max": "2023-12-31"}
    assert errors(spec, "2022-01-01") == [
        "Invalid input for `x`, it must be after `2023-01-01`, but received `2022-01-01`"
    ]
    assert errors(spec, "2024-01-01") == [
        "Invalid input for `x`, it must be before `2023-12-31`, but received `2024-01-01`"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10:00", "10:00"),
        ("10:00:00", "10:00"),
        ("10:00:01", "10:00:01"),
        ("10:00:00.5", "10:00:00.500"),
        (time(9, 30), "09:30"),
    ],
)
def test_time_is_printed_like_a_java_local_time(value: Any, expected: str) -> None:
    assert one({"type": "TIME"}, value) == expected


@pytest.mark.parametrize("value", ["24:00", "10", "10:60", "10:00Z", "1:00"])
def test_time_rejects_non_times(value: str) -> None:
    assert errors({"type": "TIME"}, value) == [
        f"Invalid input for `x`, Expected `TIME` but received `{value}`"
    ]


def test_time_bounds() -> None:
    spec = {"type": "TIME", "min": "01:00", "max": "11:59:59"}
    assert errors(spec, "00:00:01") == [
        "Invalid input for `x`, it must be after `01:00`, but received `00:00:01`"
    ]
    assert errors(spec, "14:00:00") == [
        "Invalid input for `x`, it must be before `11:59:59`, but received `14:00:00`"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT5M", "PT5M"),
        ("PT60S", "PT1M"),
        ("P1DT2H", "PT26H"),
        ("pt1.5s", "PT1.5S"),
        ("PT0S", "PT0S"),
        ("-PT6H3M", "PT-6H-3M"),
        (timedelta(minutes=5, seconds=3), "PT5M3S"),
    ],
)
def test_duration_is_printed_like_a_java_duration(value: Any, expected: str) -> None:
    assert one({"type": "DURATION"}, value) == expected


@pytest.mark.parametrize("value", ["5 minutes", "P1Y", "P1W", "PT", "P", "PT1"])
def test_duration_rejects_what_java_rejects(value: str) -> None:
    assert errors({"type": "DURATION"}, value) == [
        f"Invalid input for `x`, Expected `DURATION` but received `{value}`"
    ]


def test_duration_bounds_keep_kestras_capital_letter() -> None:
    spec = {"type": "DURATION", "min": "PT10S", "max": "PT20S"}
    assert errors(spec, "PT1S") == [
        "Invalid input for `x`, It must be more than `PT10S`, but received `PT1S`"
    ]
    assert errors(spec, "PT30S") == [
        "Invalid input for `x`, It must be less than `PT20S`, but received `PT30S`"
    ]
    assert one(spec, "PT15S") == "PT15S"


def test_an_unusable_bound_is_reported_not_raised() -> None:
    assert errors({"type": "INT", "min": "ten"}, 5) == [
        "Invalid input for `x`, the `min` bound `ten` is not a valid `INT`, but received `5`"
    ]


# --------------------------------------------------------------------------- structured types


def test_json() -> None:
    assert one({"type": "JSON"}, '{"a": [1, 2]}') == {"a": [1, 2]}
    assert one({"type": "JSON"}, {"a": 1}) == {"a": 1}
    assert one({"type": "JSON"}, [1, "b"]) == [1, "b"]
    assert one({"type": "JSON"}, "3") == 3
    assert errors({"type": "JSON"}, "{bad") == [
        "Invalid input for `x`, Expected `JSON` but received `{bad` with errors: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)"
    ]
    assert errors({"type": "JSON"}, 5) == ["Invalid input for `x`, Expected `JSON` but received `5`"]


def test_yaml_keeps_dates_as_text() -> None:
    assert one({"type": "YAML"}, "a: 1\nb: [x, y]\nd: 2024-01-01\n") == {
        "a": 1,
        "b": ["x", "y"],
        "d": "2024-01-01",
    }
    assert one({"type": "YAML"}, {"k": "v"}) == {"k": "v"}
    [message] = errors({"type": "YAML"}, "a: [unclosed")
    assert message.startswith(
        "Invalid input for `x`, Expected `YAML` but received `a: [unclosed` with errors: "
    )
    assert message.count("but received") == 1  # said once, not repeated after the parser's errors


def test_uri() -> None:
    assert one({"type": "URI"}, "https://kestra.io/docs?x=1") == "https://kestra.io/docs?x=1"
    assert one({"type": "URI"}, "http://localhost:8080/api") == "http://localhost:8080/api"
    assert errors({"type": "URI"}, "http:/bla") == [
        "Invalid input for `x`, Expected `URI` but received `http:/bla`"
    ]
    assert len(errors({"type": "URI"}, "not a uri")) == 1


def test_email() -> None:
    assert one({"type": "EMAIL"}, "jane.doe@example.com") == "jane.doe@example.com"
    assert errors({"type": "EMAIL"}, "not-an-email") == [
        "Invalid input for `x`, The input must be a valid email, but received `not-an-email`"
    ]


def test_file_is_kept_as_given() -> None:
    uri = "kestra:///io/kestra/tests/f/executions/e/inputs/x/data.csv"
    assert one({"type": "FILE"}, uri) == uri
    assert one({"type": "FILE"}, "/tmp/data.csv") == "/tmp/data.csv"
    assert errors({"type": "FILE"}, 5) == ["Invalid input for `x`, Expected `FILE` but received `5`"]


def test_array_converts_items_by_item_type() -> None:
    assert one({"type": "ARRAY", "itemType": "INT"}, '["1", 2]') == [1, 2]
    assert one({"type": "ARRAY", "itemType": "INT"}, [3, "4"]) == [3, 4]
    assert one({"type": "ARRAY", "itemType": "STRING"}, [1, True]) == ["1", "true"]
    assert one({"type": "ARRAY", "itemType": "DURATION"}, ["PT60S"]) == ["PT1M"]
    assert one({"type": "ARRAY", "itemType": "INT"}, "[]") == []


def test_array_names_each_bad_item_and_its_index() -> None:
    assert errors({"type": "ARRAY", "itemType": "INT"}, '["s1", "s2"]') == [
        "Invalid input for `x`, Unable to parse array element as `INT` on `s1` at index `0`, "
        'but received `["s1", "s2"]`',
        "Invalid input for `x`, Unable to parse array element as `INT` on `s2` at index `1`, "
        'but received `["s1", "s2"]`',
    ]
    assert errors({"type": "ARRAY", "itemType": "INT"}, [1, None]) == [
        "Invalid input for `x`, Unable to parse array element as `INT` on `null` at index `1`, "
        "but received `[1, null]`"
    ]


@pytest.mark.parametrize("value", ['{"a": 1}', "1, 2", 5])
def test_array_needs_a_list(value: Any) -> None:
    [message] = errors({"type": "ARRAY", "itemType": "STRING"}, value)
    assert message.startswith(f"Invalid input for `x`, Expected `ARRAY` but received `{value}`")


@pytest.mark.parametrize("kind", ["SELECT", "ENUM"])
def test_select_and_enum(kind: str) -> None:
    spec = {"type": kind, "values": ["ENUM_VALUE", "OTHER_ONE"]}
    assert one(spec, "OTHER_ONE") == "OTHER_ONE"
    assert errors(spec, "INVALID") == [
        "Invalid input for `x`, it must match the values `[ENUM_VALUE, OTHER_ONE]`, but received `INVALID`"
    ]
    assert one({**spec, "allowCustomValue": True}, "INVALID") == "INVALID"


def test_select_compares_the_text_of_values() -> None:
    assert one({"type": "SELECT", "values": [1, 2]}, 2) == "2"


def test_multiselect() -> None:
    spec = {"type": "MULTISELECT", "values": ["A", "B", "C"]}
    assert one(spec, ["A", "C"]) == ["A", "C"]
    assert one(spec, '["B"]') == ["B"]
    assert errors(spec, ["A", "Z"]) == [
        "Invalid input for `x`, it must match the values `[A, B, C]`, but received `[A, Z]`"
    ]
    assert one({**spec, "allowCustomValue": True}, ["Z"]) == ["Z"]
    [message] = errors(spec, "A")
    assert message.startswith("Invalid input for `x`, Expected `MULTISELECT` but received `A`")


# --------------------------------------------------------------------------- presence, defaults, shape


def test_missing_required_input() -> None:
    flow = make_flow({"id": "x", "type": "STRING"})
    expected = ["Invalid input for `x`, missing required input, but received `null`"]
    for provided in ({}, {"x": None}, None):
        with pytest.raises(InputError) as info:
            resolve_inputs(flow, provided)
        assert info.value.messages == expected


def test_missing_optional_input_is_present_as_null() -> None:
    flow = make_flow({"id": "x", "type": "INT", "required": False})
    assert resolve_inputs(flow, {}) == {"x": None}


def test_defaults_are_converted_and_validated_like_provided_values() -> None:
    flow = make_flow(
        {"id": "n", "type": "INT", "defaults": "10"},
        {"id": "d", "type": "DURATION", "defaults": "PT120S"},
        {"id": "s", "type": "STRING", "defaults": "amazing"},
        {"id": "b", "type": "BOOLEAN", "defaults": True},
    )
    assert resolve_inputs(flow, {}) == {"n": 10, "d": "PT2M", "s": "amazing", "b": True}
    assert resolve_inputs(flow, {"n": 3, "s": None})["n"] == 3
    assert resolve_inputs(flow, {"s": None})["s"] == "amazing"
    with pytest.raises(InputError) as info:
        resolve_inputs(make_flow({"id": "n", "type": "INT", "defaults": "ten"}), {})
    assert info.value.messages == ["Invalid input for `n`, Expected `INT` but received `ten`"]


def test_every_problem_is_reported_at_once_in_declaration_order() -> None:
    flow = make_flow(
        {"id": "a", "type": "STRING"},
        {"id": "b", "type": "INT"},
        {"id": "c", "type": "BOOLEAN", "required": False},
        {"id": "d", "type": "EMAIL"},
    )
    with pytest.raises(InputError) as info:
        resolve_inputs(flow, {"b": "x", "d": "nope"})
    assert info.value.messages == [
        "Invalid input for `a`, missing required input, but received `null`",
        "Invalid input for `b`, Expected `INT` but received `x`",
        "Invalid input for `d`, The input must be a valid email, but received `nope`",
    ]
    assert "; " in str(info.value)


def test_undeclared_inputs_are_dropped_in_typed_mode() -> None:
    flow = make_flow({"id": "x", "type": "STRING"})
    assert resolve_inputs(flow, {"x": "a", "extra": 1}) == {"x": "a"}


def test_a_flow_without_inputs_gives_no_inputs() -> None:
    flow = Flow.model_validate({"id": "f", "namespace": "n", "tasks": [LOG]})
    assert resolve_inputs(flow, {"x": 1}) == {}
    assert resolve_inputs(flow, {"x": 1}, typed=False) == {"x": 1}


def test_dotted_ids_become_nested_maps_like_kestra() -> None:
    flow = make_flow(
        {"id": "user.name", "type": "STRING"},
        {"id": "user.age", "type": "INT"},
        {"id": "top", "type": "STRING", "required": False},
    )
    assert resolve_inputs(flow, {"user.name": "jane", "user.age": "33"}) == {
        "user": {"name": "jane", "age": 33},
        "top": None,
    }


def test_a_dotted_id_clashing_with_a_plain_one_is_an_input_error() -> None:
    flow = make_flow({"id": "a", "type": "STRING"}, {"id": "a.b", "type": "STRING"})
    with pytest.raises(InputError) as info:
        resolve_inputs(flow, {"a": "x", "a.b": "y"})
    assert info.value.messages == ["Conflict at key: 'a', Map keys are: [a, a.b]"]


def test_a_provided_value_that_is_not_a_map_is_an_input_error() -> None:
    flow = make_flow({"id": "x", "type": "STRING"})
    with pytest.raises(InputError):
        resolve_inputs(flow, ["x"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- raw mode


def test_raw_mode_keeps_values_as_given_and_adds_absent_defaults() -> None:
    flow = make_flow(
        {"id": "param", "type": "STRING"},
        {"id": "def", "type": "STRING", "defaults": "amazing"},
        {"id": "n", "type": "INT", "defaults": 5},
        {"id": "missing", "type": "INT"},
    )
    provided = {"param": True, "n": None, "undeclared": [1, 2]}
    assert resolve_inputs(flow, provided, typed=False) == {
        "param": True,
        "n": None,
        "undeclared": [1, 2],
        "def": "amazing",
    }
    assert provided == {"param": True, "n": None, "undeclared": [1, 2]}


def test_raw_mode_never_validates() -> None:
    flow = make_flow({"id": "n", "type": "INT", "min": 10}, {"id": "s", "type": "SELECT", "values": ["A"]})
    assert resolve_inputs(flow, {"n": "not a number", "s": "Z"}, typed=False) == {
        "n": "not a number",
        "s": "Z",
    }
    assert resolve_inputs(flow, None, typed=False) == {}


# --------------------------------------------------------------------------- secrets


SECRET_FLOW = make_flow(
    {"id": "password", "type": "SECRET"},
    {"id": "db.token", "type": "SECRET", "required": False},
    {"id": "user", "type": "STRING"},
    {"id": "empty", "type": "SECRET", "required": False},
)


def test_secret_values_finds_flat_and_nested_secrets() -> None:
    typed = resolve_inputs(
        SECRET_FLOW, {"password": "p4ss", "db.token": "t0k3n", "user": "jane", "empty": ""}
    )
    assert secret_values(SECRET_FLOW, typed) == ["p4ss", "t0k3n"]
    assert secret_values(SECRET_FLOW, {"password": "p4ss", "db.token": "t0k3n"}) == ["p4ss", "t0k3n"]
    assert secret_values(SECRET_FLOW, {"user": "jane"}) == []


def test_mask_secrets_masks_every_occurrence() -> None:
    line = "connecting with p4ss as jane; retry with p4ss"
    assert mask_secrets(line, ["p4ss"]) == "connecting with ******** as jane; retry with ********"
    assert mask_secrets("This is my secret: abc", ["abc"]) == "This is my secret: ********"


def test_mask_secrets_prefers_the_longest_secret_and_ignores_empty_ones() -> None:
    assert mask_secrets("abcdef and abc", ["abc", "abcdef", ""]) == "******** and ********"
    assert mask_secrets("a*b", ["*"]) == "a********b"
    assert mask_secrets("nothing here", []) == "nothing here"
    assert mask_secrets("nothing here", [""]) == "nothing here"


def test_masked_inputs_hides_secrets_without_touching_the_original() -> None:
    typed = resolve_inputs(SECRET_FLOW, {"password": "p4ss", "db.token": "t0k3n", "user": "jane"})
    shown = masked_inputs(SECRET_FLOW, typed)
    assert shown == {"password": MASK, "db": {"token": MASK}, "user": "jane", "empty": None}
    assert typed["password"] == "p4ss"
    assert typed["db"] == {"token": "t0k3n"}
    assert masked_inputs(SECRET_FLOW, {"password": "p4ss", "db.token": None}) == {
        "password": MASK,
        "db.token": None,
    }


def test_an_array_of_secrets_is_masked_item_by_item_in_logs_and_whole_in_displays() -> None:
    flow = make_flow({"id": "keys", "type": "ARRAY", "itemType": "SECRET"})
    typed = resolve_inputs(flow, {"keys": ["k1", "k2"]})
    assert secret_values(flow, typed) == ["k1", "k2"]
    assert masked_inputs(flow, typed) == {"keys": MASK}


# --------------------------------------------------------------------------- property


EVERY_TYPE = make_flow(
    {
        "id": "string",
        "type": "STRING",
        "validator": "[a-z]*",
        "minLength": 1,
        "maxLength": 5,
        "required": False,
    },
    {"id": "secret", "type": "SECRET", "required": False},
    {"id": "int", "type": "INT", "min": 1, "max": 10, "defaults": 5},
    {"id": "float", "type": "FLOAT", "min": 0.5, "required": False},
    {"id": "boolean", "type": "BOOLEAN", "required": False},
    {"id": "bool", "type": "BOOL", "required": False},
    {"id": "datetime", "type": "DATETIME", "min": "2020-01-01T00:00:00Z", "required": False},
    {"id": "date", "type": "DATE", "max": "2030-01-01", "required": False},
    {"id": "time", "type": "TIME", "min": "01:00", "required": False},
    {"id": "duration", "type": "DURATION", "max": "PT1H", "required": False},
    {"id": "json", "type": "JSON", "required": False},
    {"id": "yaml", "type": "YAML", "required": False},
    {"id": "uri", "type": "URI", "required": False},
    {"id": "email", "type": "EMAIL", "required": False},
    {"id": "file", "type": "FILE", "required": False},
    {"id": "array", "type": "ARRAY", "itemType": "DATETIME", "required": False},
    {"id": "select", "type": "SELECT", "values": ["A", "B"], "required": False},
    {"id": "enum", "type": "ENUM", "values": ["A", "B"], "required": False},
    {"id": "multi", "type": "MULTISELECT", "values": ["A", "B"], "required": False},
    {"id": "nested.value", "type": "INT", "required": False},
)

INTERESTING_TEXT = st.sampled_from(
    [
        "",
        "1",
        "-5",
        "1.5",
        "1e999",
        "true",
        "nan",
        "2024-01-01",
        "2024-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-18:00",
        "10:00",
        "PT5M",
        "P99999999999999999999D",
        "[]",
        '["A"]',
        "{}",
        '{"a": [1]}',
        "a: [",
        "- x",
        "http://a.b",
        "x@y",
        "[" * 5000,
        "9" * 5000,
        "!!binary aGk=",
        "!!set {a}",
        "A",
        "kestra:///x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    INTERESTING_TEXT,
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
    st.dates(),
    st.times(),
    st.timedeltas(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.one_of(st.sampled_from([spec.id for spec in EVERY_TYPE.inputs or ()]), st.text(max_size=8))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(provided=st.dictionaries(KEYS, VALUES, max_size=12), typed=st.booleans())
def test_resolve_inputs_returns_or_raises_input_error_and_nothing_else(
    provided: dict[str, Any], typed: bool
) -> None:
    try:
        result = resolve_inputs(EVERY_TYPE, provided, typed=typed)
    except InputError as exc:
        assert exc.messages
        assert all(isinstance(m, str) and m for m in exc.messages)
        return
    assert isinstance(result, dict)
    if typed:
        assert set(result) <= {spec.id.split(".")[0] for spec in EVERY_TYPE.inputs or ()}
        shown = masked_inputs(EVERY_TYPE, result)
        assert all(
            mask_secrets(str(v), secret_values(EVERY_TYPE, result)) is not None for v in shown.values()
        )


# --------------------------------------------------------------------------- FILE scope


def _scope(value: str) -> str | None:
    return None if value.startswith("kestra:///mine/") else f"`{value}` is not mine"


def test_a_file_scope_checks_each_given_file_and_array_item_not_the_flows_defaults() -> None:
    flow = make_flow(
        {"id": "one", "type": "FILE", "required": False},
        {"id": "many", "type": "ARRAY", "itemType": "FILE", "required": False},
        {"id": "dflt", "type": "ARRAY", "itemType": "FILE", "defaults": ["kestra:///elsewhere/d.txt"]},
        {"id": "text", "type": "STRING", "required": False},
    )
    given = {
        "one": "kestra:///mine/a",
        "many": ["kestra:///mine/b", "kestra:///mine/c"],
        "text": "kestra:///x",
    }
    resolved = resolve_inputs(flow, given, file_scope=_scope)
    assert resolved["many"] == ["kestra:///mine/b", "kestra:///mine/c"]
    assert resolved["dflt"] == ["kestra:///elsewhere/d.txt"]  # the author's default is not checked
    with pytest.raises(InputError) as info:
        theirs = {"one": "kestra:///theirs/a", "many": ["kestra:///mine/b", "kestra:///theirs/c"]}
        resolve_inputs(flow, theirs, file_scope=_scope)
    assert info.value.messages == [
        "Invalid input for `one`, `kestra:///theirs/a` is not mine, but received `kestra:///theirs/a`",
        "Invalid input for `many`, `kestra:///theirs/c` is not mine, but received `[kestra:///mine/b, kestra:///theirs/c]`",
    ]

"""Pebble-compatible templates: operators, filters, functions, strictness and the sandbox."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import immutables
import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.errors import ExpressionError, ExpressionSecurityError
from control_plane.expressions import is_truthy, render, render_value, to_display

CTX = {
    "inputs": {"name": "Ada", "n": 3, "nothing": None},
    "taskrun": {"attemptsCount": 3, "value": "b"},
    "outputs": immutables.Map(
        {"return": {"value": "x"}, "loop": immutables.Map({"a": {"v": 1}, "b": {"v": 2}})}
    ),
    "@now": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    "@loop_values": ("b",),
    "@error_logs": [{"taskId": "failed", "message": "Task failure"}],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.name }}", "Ada"),
        ("{{ taskrun.attemptsCount == 3 ? 'ok' : ko }}", "ok"),
        ("{{ inputs.n > 5 ? 'big' : inputs.n > 1 ? 'mid' : 'small' }}", "mid"),
        ("{{ inputs.missing ?? 'd' }}", "d"),
        ("{{ inputs.nothing ?? 'd' }}", "d"),
        ("{{ outputs.x.y.z ?? 'deep' }}", "deep"),
        ("{{ inputs.missing is defined }}", "false"),
        ("{{ inputs.name is defined }}", "true"),
        ("{{ inputs.nothing is null }}", "true"),
        ("{{ inputs.name ~ '!' }}", "Ada!"),
        ("{{ outputs.return }}", '{"value":"x"}'),
        ("{{ outputs.loop['a'].v }}", "1"),
        ("{{ currentEachOutput(outputs.loop).v }}", "2"),
        ("{{ [1, 2] }}", "[1,2]"),
        ("{{ {'a': true} }}", '{"a":true}'),
        ("{{ now() }}", "2026-01-02T03:04:05.678Z"),
        ("{{ '{\"a\": [1, 2]}' | fromJson | jq('.a[1]') | first }}", "2"),
        ("{{ fromJson('{\"k\": 5}').k }}", "5"),
        ("{{ '2026-01-02T03:04:05Z' | date('yyyy-MM-dd HH:mm') }}", "2026-01-02 03:04"),
        ("{{ '2026-01-31T00:00:00Z' | dateAdd(1, 'MONTHS') | date('yyyy-MM-dd') }}", "2026-02-28"),
        ("{{ inputs.nothing | default('x') }}", "x"),
        ("{{ 'a b' | upper | replace({'A': 'x'}) }}", "x B"),
        ("{{ 'a,b' | split(',') | join('-') }}", "a-b"),
        ("{{ {'k': 1, 'j': 2} | keys | length }}", "2"),
        ("{{ 'Hello World!' | slugify }}", "hello-world"),
        ("{{ 'abc' | startsWith('ab') }}", "true"),
        ("{{ render('{{ inputs.name }}') }}", "Ada"),
        (
            "{%- for log in errorLogs() -%}\n"
            "- task: {{ log.taskId }}, message: {{ log.message }}\n"
            "{%- endfor -%}\n",
            "- task: failed, message: Task failure",
        ),
    ],
)
def test_renders(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ ko }}",
        "{{ taskrun.attemptsCount == 2 ? 'ok' : ko }}",
        "{{ outputs.notexists == 2 }}",
        "{{ 1 +",
        "{{ ko.a }}",
    ],
)
def test_strict_failures(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CTX)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ ''.join }}",
        "{{ ''.upper() }}",
        "{{ request }}",
        "{{ config }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ range.__class__ }}",
    ],
)
def test_sandbox_escapes_fail_cleanly(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CTX)


def test_dunder_access_is_a_security_error() -> None:
    with pytest.raises(ExpressionSecurityError):
        render("{{ inputs.name.__class__ }}", CTX)


def test_any_mapping_is_a_map() -> None:
    ctx = {"m": MappingProxyType({"a": immutables.Map({"b": "c"})})}
    assert render("{{ m.a.b }}-{{ m['a']['b'] }}", ctx) == "c-c"


def test_render_value_and_truthiness() -> None:
    assert render_value({"{{ inputs.name }}": ["{{ inputs.n }}", 1, None]}, CTX) == {"Ada": ["3", 1, None]}
    assert [is_truthy(v) for v in (None, "", "false", "FALSE", "0", "-0", 0, False)] == [False] * 8
    assert [is_truthy(v) for v in ("true", "1", "x", 1, True)] == [True] * 5
    assert to_display(True) == "true" and to_display(None) == "" and to_display([1, "a"]) == '[1,"a"]'


@given(st.text().filter(lambda s: "{" not in s))
def test_plain_text_is_unchanged(text: str) -> None:
    assert render(text, {}) == text


# --- operators ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ true ? 'a' : 'b' }}", "a"),
        ("{{ false ? 'a' : false ? 'b' : 'c' }}", "c"),  # right-associative
        ("{{ null ?? false ? 'a' : 'b' }}", "b"),  # ?? binds tighter than ?:
        ("{{ false or null ?? 'd' }}", "d"),  # ?? is looser than or: (false or null) ?? 'd'
        ("{{ inputs.n ?? 'd' }}", "3"),
        ("{{ inputs.nothing ??? 'd' }}", ""),  # ??? only replaces undefined, not null
        ("{{ inputs.missing ??? 'd' }}", "d"),
        ("{{ inputs.missing ?? inputs.gone ?? 'third' }}", "third"),
        ("{{ inputs.n == 3 ? 'three' : ko }}", "three"),
        ("{{ 'x' if inputs.n == 3 else 'y' }}", "x"),
        ("{{ inputs.n equals 3 }}", "true"),
        ("{{ [1, 2, 3] contains 2 }}", "true"),
        ("{{ [1, 2, 3] contains 5 }}", "false"),
        ("{{ 'hello' contains 'ell' }}", "true"),
        ("{{ {'k': 1} contains 'k' }}", "true"),
        ("{{ 2 in [1, 2] }}", "true"),
        ("{{ 3 not in [1, 2] }}", "true"),
        ("{{ inputs.nothing is null }}", "true"),
        ("{{ inputs.name is not null }}", "true"),
        ("{{ inputs.missing is not defined }}", "true"),
        (
            "{{ '  ' is empty }}-{{ [] is empty }}-{{ {} is empty }}-{{ 'a' is empty }}",
            "true-true-true-false",
        ),
        ("{{ 4 is even }}-{{ 3 is odd }}-{{ 3 is even }}", "true-true-false"),
        ("{{ true }}-{{ false }}-{{ null }}-{{ none }}", "true-false--"),
        ("{{ 7 / 2 }} {{ -7 / 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7.0 / 2 }} {{ 6 / 3 }}", "3 -3 1 -1 3.5 2"),
        ("{{ 'n=' + 1 }}", "n=1"),
        ("{{ 1 + 2 * 3 }}", "7"),
        ("{{ 2 ** 10 }}", "1024"),
        ("{{ inputs.name ~ '-' ~ inputs.n }}", "Ada-3"),
        ("{% set x = 5 %}{{ x * 2 }}", "10"),
        ("{% if inputs.n > 2 %}big{% else %}small{% endif %}", "big"),
    ],
)
def test_operators(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_ternary_only_evaluates_the_taken_branch() -> None:
    ctx = {"taskrun": {"attemptsCount": 3}}
    assert render("{{ taskrun.attemptsCount == 3 ? 'ok' : ko }}", ctx) == "ok"
    with pytest.raises(ExpressionError, match="'ko' is undefined"):
        render("{{ taskrun.attemptsCount == 3 ? ko : 'ok' }}", ctx)
    assert render("{{ true ? 'ok' : secret('missing') }}", ctx) == "ok"
    assert render("{{ 'set' ?? secret('missing') }}", ctx) == "set"


# --- strict undefined ------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ko == 1 }}",
        "{{ ko != 1 }}",
        "{{ ko < 1 }}",
        "{{ ko + 1 }}",
        "{{ ko ~ 'a' }}",
        "{% for x in ko %}{% endfor %}",
        "{% if ko %}{% endif %}",
        "{{ ko ? 1 : 2 }}",
        "{{ ko | upper }}",
        "{{ ko | length }}",
        "{{ inputs.missing.deeper }}",
        "{{ [1][5] }}",
    ],
)
def test_using_an_undefined_value_fails(template: str) -> None:
    with pytest.raises(ExpressionError, match="undefined"):
        render(template, CTX)


def test_error_messages_quote_the_template_and_name_the_variable() -> None:
    with pytest.raises(ExpressionError) as info:
        render("{{ ko }}", {})
    assert str(info.value) == "Unable to render \"{{ ko }}\": 'ko' is undefined"
    with pytest.raises(ExpressionError, match="'notexists' is undefined"):
        render("{{ outputs.notexists == 2 }}", {"outputs": {}})


@pytest.mark.parametrize(
    "template", ["{{ 1 +", "{% if %}", "{{ a ? }}", "{% for %}", "{{ 'open }}", "{% endfor %}"]
)
def test_syntax_errors_are_expression_errors(template: str) -> None:
    with pytest.raises(ExpressionError, match="Unable to parse"):
        render(template, {})


def test_chained_access_on_undefined_is_allowed() -> None:
    assert render("{{ a.b.c is defined }}", {}) == "false"
    assert render("{{ a.b ?? 'x' }}", {}) == "x"
    assert render("{{ a['b'][0] is defined }}", {}) == "false"
    assert render("{{ inputs.name.length is defined }}", CTX) == "false"  # strings have no keys


# --- sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ self }}",
        "{{ range }}",
        "{{ now }}",
        "{{ [].__class__ }}",
        "{{ {}.__class__.__init__ }}",
        "{{ inputs.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ self | string }}",
        "{{ self._TemplateReference__context }}",
    ],
)
def test_internals_are_security_errors(template: str) -> None:
    with pytest.raises(ExpressionSecurityError):
        render(template, CTX)


@pytest.mark.parametrize(
    "template",
    [
        "{{ namespace() }}",
        "{{ dict(a=1) }}",
        "{{ joiner() }}",
        "{{ cycler(1, 2) }}",
        "{{ lipsum() }}",
        "{{ inputs.name.upper() }}",
        "{{ inputs.items() }}",
        "{{ {} | attr('items') }}",
        "{{ 'x' | format(1) }}",
        "{{ 'a' * 100000000 }}",
        "{{ 10 ** 1000000 }}",
        "{{ (2 ** 1000) ** 1000 }}",
    ],
)
def test_jinja_escape_hatches_are_closed(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CTX)


def test_nothing_runs_from_a_payload(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    payload = f"{{{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}}}"
    with pytest.raises(ExpressionError):
        render(payload, {"lipsum": {"x": 1}})
    assert not marker.exists()


def test_a_key_named_like_a_dunder_is_still_data() -> None:
    assert render("{{ m['__init__'] }}", {"m": {"__init__": "data"}}) == "data"


# --- output ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        (1, "1"),
        (1.0, "1.0"),
        (2.5, "2.5"),
        (1e20, "1.0E20"),
        (1.5e-7, "1.5E-7"),
        (12345678.9, "1.23456789E7"),
        ({"b": 1, "a": [True, None, "é"]}, '{"b":1,"a":[true,null,"é"]}'),
        ((1, 2), "[1,2]"),
        (immutables.Map({"k": "v"}), '{"k":"v"}'),
        (MappingProxyType({"k": (1,)}), '{"k":[1]}'),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
    ],
)
def test_to_display(value: Any, expected: str) -> None:
    assert to_display(value) == expected


def test_values_print_through_to_display() -> None:
    ctx = {"outputs": {"return": {"value": "x"}}, "f": 1.0, "b": False, "l": immutables.Map({"a": (1, 2)})}
    assert (
        render("{{ outputs.return }}|{{ f }}|{{ b }}|{{ l }}", ctx) == '{"value":"x"}|1.0|false|{"a":[1,2]}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (0.0, False),
        (-0.0, False),
        (2, True),
        (" False ", False),
        ("-0", False),
        ("  ", False),
        ("no", True),
        ({}, True),
        ([], True),
    ],
)
def test_is_truthy(value: Any, expected: bool) -> None:
    assert is_truthy(value) is expected


def test_render_value_renders_keys_and_nested_strings() -> None:
    value = {"{{ inputs.name }}": {"k": ("{{ inputs.n }}", 2.5, True)}, 3: None}
    assert render_value(value, CTX) == {"Ada": {"k": ["3", 2.5, True]}, 3: None}
    assert render_value(7, CTX) == 7


# --- loops -----------------------------------------------------------------------------


def test_loops_follow_pebble() -> None:
    assert render("{% for x in ['a', 'b'] %}{{ loop.index }}{{ x }}{% endfor %}", {}) == "0a1b"
    assert render(
        "{% for x in [1, 2, 3] %}{{ loop.first }}{{ loop.last }}{{ loop.length }},{% endfor %}", {}
    ) == ("truefalse3,falsefalse3,falsetrue3,")
    maps = {"m": MappingProxyType({"a": 1, "b": 2})}  # immutables.Map has no order
    assert render("{% for e in m %}{{ e.key }}={{ e.value }};{% endfor %}", maps) == "a=1;b=2;"
    assert render("{% for k, v in m %}{{ k }}{{ v }}{% endfor %}", maps) == "a1b2"
    assert render("{% for x in [] %}x{% else %}empty{% endfor %}", {}) == "empty"
    assert render("{% for i in range(1, 3) %}{{ i }}{% endfor %}", {}) == "123"  # Pebble's range is inclusive


def test_error_logs_example() -> None:
    template = (
        "{%- for log in errorLogs() -%}\n"
        "- task: {{ log.taskId }}, message: {{ log.message }}\n"
        "{%- endfor -%}\n"
    )
    logs = [{"taskId": "failed", "message": "Task failure"}, {"taskId": "t2", "message": "boom"}]
    assert render(template, {"@error_logs": logs[:1]}) == "- task: failed, message: Task failure"
    assert (
        render(template, {"@error_logs": logs})
        == "- task: failed, message: Task failure- task: t2, message: boom"
    )
    assert render("{{ errorLogs() }}", {}) == "[]"


# --- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ {'a': [1, 'é']} | json }}", '{"a":[1,"é"]}'),
        ("{{ 'foo' | toJson }}", '"foo"'),
        ("{{ null | toJson }}", "null"),
        ("{{ outputs.return | toJson }}", '{"value":"x"}'),
        ("{{ outputs.loop | jq('[.[].v] | add') }}", "[3]"),
        ("{{ [1, 2, 3] | jq('.[0]') | first }}", "1"),
        ("{{ '{\"a\": {\"b\": 4}}' | jq('.a.b * 2') | first }}", "8"),
        ("{{ x | default('d') }}", "d"),
        ("{{ '' | default('d') }}", "d"),
        ("{{ [] | default('d') }}", "d"),
        ("{{ 'v' | default('d') }}", "v"),
        ("{{ 0 | default('d') }}", "0"),
        ("{{ 'aBc' | upper }}-{{ 'aBc' | lower }}", "ABC-abc"),
        ("{{ 'hello wORLD' | capitalize }}", "Hello wORLD"),
        ("{{ 'article title' | title }}", "Article Title"),
        ("{{ '  padded \n' | trim }}", "padded"),
        ("{{ 'this is a long sentence.' | abbreviate(7) }}", "this..."),
        ("{{ 'short' | abbreviate(7) }}", "short"),
        ("{{ 'abc' | length }}-{{ [1, 2] | length }}-{{ {'a': 1} | length }}", "3-2-1"),
        ("{{ [1, 'a', true] | join(', ') }}", "1, a, true"),
        ("{{ 'a.b.c' | split('.') }}", '["a","b","c"]'),
        ("{{ 'a,b,,' | split(',') }}", '["a","b"]'),
        ("{{ 'a,b,c' | split(',', 2) }}", '["a","b,c"]'),
        ("{{ 'I like %this% and %that%.' | replace({'%this%': 'x', '%that%': 'y'}) }}", "I like x and y."),
        ("{{ 'a1b22' | replace({'[0-9]+': '#'}, regexp=true) }}", "a#b#"),
        ("{{ 'a b a' | replace('a', 'z') }}", "z b z"),
        ("{{ {'k': 1, 'j': 2} | keys }}-{{ {'k': 1, 'j': 2} | values }}", '["k","j"]-[1,2]'),
        ("{{ ['x', 'y'] | keys }}", "[0,1]"),
        ("{{ [1, 2, 3] | first }}-{{ [1, 2, 3] | last }}-{{ 'abc' | first }}-{{ 'abc' | last }}", "1-3-a-c"),
        ("{{ 'Héllo, World! 2' | slugify }}", "hello-world-2"),
        (
            "{{ 'abc' | startsWith('ab') }}-{{ 'abc' | endsWith('bc') }}-{{ 'abc' | endsWith('x') }}",
            "true-true-false",
        ),
        ("{{ [3, 1, 2] | sort }}-{{ [3, 1, 2] | rsort }}-{{ [1, 2] | reverse }}", "[1,2,3]-[3,2,1]-[2,1]"),
        ("{{ 'abcdef' | slice(1, 3) }}-{{ [1, 2, 3, 4] | slice(2) }}", "bc-[3,4]"),
        ("{{ '42' | number + 1 }}-{{ '2.5' | number }}-{{ '7' | number('FLOAT') }}", "43-2.5-7.0"),
        ("{{ -3 | abs }}-{{ '-2.5' | abs }}", "3-2.5"),
        ("{{ 2.5 | round }}-{{ 3.14159 | round(2) }}", "3-3.14"),
        ("{{ 'a b&c~' | urlencode }}", "a+b%26c%7E"),
        ("{{ 'test' | base64encode }}-{{ 'dGVzdA==' | base64decode }}", "dGVzdA==-test"),
        ("{{ 'abc' | md5 }}", "900150983cd24fb0d6963f7d28e17f72"),
        ("{{ 'abc' | sha256 | slice(0, 8) }}", "ba7816bf"),
        ("{{ \"it's\" | escapeChar('single') }}", "it\\'s"),
        ("{{ 'a: 1' | yaml }}-{{ {'a': [1]} | toYaml }}", '{"a":1}-a:\n- 1\n'),
        ("{{ 'a.b.c' | substringAfter('.') }}-{{ 'a.b.c' | substringBeforeLast('.') }}", "b.c-a.b"),
        ("{{ [1, 1, 2] | distinct }}-{{ [1, 2, 3] | chunk(2) }}", "[1,2]-[[1,2],[3]]"),
        ("{{ 42 | string ~ '!' }}", "42!"),
    ],
)
def test_filters(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' | number }}",
        "{{ '!!' | base64decode }}",
        "{{ {} | jq('.[') }}",
        "{{ 'not json' | jq('.') }}",
        "{{ 'x' | dateAdd(1, 'FORTNIGHTS') }}",
        "{{ '2026-01-01' | dateAdd(1, 'FORTNIGHTS') }}",
        "{{ 'not a date' | date }}",
        "{{ '2026-01-01T00:00:00Z' | date('yyyy-qq') }}",
        "{{ 1 | unknownFilter }}",
        "{{ 'a' | escapeChar('nope') }}",
    ],
)
def test_filter_failures_are_expression_errors(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CTX)


# --- dates -----------------------------------------------------------------------------

STAMP = "2026-03-04T05:06:07.891234Z"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ d | date }}", "2026-03-04T05:06:07.891234Z"),  # Kestra's default "iso"
        ("{{ d | date(\"yyyy-MM-dd'T'HH:mm:ss.SSSXXX\") }}", "2026-03-04T05:06:07.891Z"),
        ("{{ d | date('yyyy/M/d H:m:s') }}", "2026/3/4 5:6:7"),
        ("{{ d | date('yy MMM MMMM EEE EEEE a hh') }}", "26 Mar March Wed Wednesday AM 05"),
        ("{{ d | date(\"'literal' ''yyyy''\") }}", "literal '2026'"),
        ("{{ d | date('iso_date') }}", "2026-03-04Z"),
        ("{{ d | date('iso_local_date') }}", "2026-03-04"),
        ("{{ d | date('sql_date_time') }}", "2026-03-04 05:06:07"),
        ("{{ d | date('iso_date_time') }}", "2026-03-04T05:06:07.891234Z"),
        ("{{ d | date('HH:mm XXX Z', timeZone='Europe/Paris') }}", "06:06 +01:00 +0100"),
        ("{{ d | date('HH:mm X z', timeZone='America/New_York') }}", "00:06 -05 EST"),
        ("{{ '2026-03-04T07:00:00+02:00' | date('HH:mm') }}", "05:00"),  # printed in UTC by default
        (
            "{{ '04/03/2026 10:30' | date('yyyy-MM-dd HH:mm', existingFormat='dd/MM/yyyy HH:mm') }}",
            "2026-03-04 10:30",
        ),
        ("{{ d | dateAdd(1, 'DAYS') | date('yyyy-MM-dd') }}", "2026-03-05"),
        ("{{ d | dateAdd(-2, 'HOURS') | date('HH') }}", "03"),
        ("{{ d | dateAdd(90, 'MINUTES') | date('HH:mm') }}", "06:36"),
        ("{{ d | dateAdd(1, 'WEEKS') | date('dd') }}", "11"),
        ("{{ d | dateAdd(1, 'YEARS') | date('yyyy') }}", "2027"),
        ("{{ d | dateAdd(30, 'SECONDS') | date('ss') }}", "37"),
        ("{{ '2024-01-31T00:00:00Z' | dateAdd(1, 'MONTHS') | date('yyyy-MM-dd') }}", "2024-02-29"),
        ("{{ '2026-01-01T00:00:10Z' | timestamp }}", "1767225610"),
        ("{{ '2026-01-01T00:00:10.5Z' | timestampMilli }}", "1767225610500"),
        ("{{ 1767225610 | date('yyyy-MM-dd') }}", "2026-01-01"),
        ("{{ now() | date('yyyy') }}", "2026"),
    ],
)
def test_dates_use_java_patterns(template: str, expected: str) -> None:
    assert render(template, {"d": STAMP}) == expected


def test_dates_accept_datetimes_and_keep_the_wall_clock_across_dst() -> None:
    paris = datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))  # DST starts on the 29th
    ctx = {"d": paris}
    assert (
        render("{{ d | dateAdd(1, 'DAYS') | date('HH:mm XXX', timeZone='Europe/Paris') }}", ctx)
        == "12:00 +02:00"
    )
    assert (
        render("{{ d | dateAdd(24, 'HOURS') | date('HH:mm XXX', timeZone='Europe/Paris') }}", ctx)
        == "13:00 +02:00"
    )


# --- functions -------------------------------------------------------------------------


def test_now_comes_from_the_engine_clock() -> None:
    moment = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    assert render("{{ now() }}", {"@now": moment}) == "2026-11-25T10:00:00.123Z"
    assert render("{{ now(timeZone='Europe/Paris') }}", {"@now": moment}) == "2026-11-25T11:00:00.123+01:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", render("{{ now() }}", {}))


def test_json_functions() -> None:
    assert render("{{ fromJson('[1, {\"a\": null}]')[1] }}", {}) == '{"a":null}'
    assert render("{{ json('{\"a\": 1}').a }}", {}) == "1"
    assert render("{{ yaml('k: [1, 2]').k[1] }}", {}) == "2"
    with pytest.raises(ExpressionError, match="invalid JSON"):
        render("{{ fromJson('{') }}", {})


def test_render_function_renders_with_the_same_context() -> None:
    ctx = {
        "vars": {"greeting": "hi {{ inputs.name }}", "twice": "{{ vars.greeting }}"},
        "inputs": {"name": "Ada"},
    }
    assert render("{{ render(vars.greeting) }}", ctx) == "hi Ada"
    assert render("{{ render(vars.twice) }}", ctx) == "hi Ada"  # recursive by default
    assert render("{{ render(vars.twice, recursive=false) }}", ctx) == "hi {{ inputs.name }}"
    assert render("{{ render(5) }}", ctx) == "5"


def test_render_function_stops_infinite_recursion() -> None:
    ctx = {"vars": {"loop": "{{ render(vars.loop) }}"}}
    with pytest.raises(ExpressionError, match="deeper than 10"):
        render("{{ render(vars.loop) }}", ctx)


def test_current_each_output_follows_the_loop_values() -> None:
    outputs = {"t": {"a": {"x": {"v": 1}}, "b": {"x": {"v": 2}, "y": {"v": 3}}}}
    assert (
        render("{{ currentEachOutput(outputs.t).v }}", {"outputs": outputs, "@loop_values": ("b", "y")})
        == "3"
    )
    assert (
        render("{{ currentEachOutput(outputs.t) }}", {"outputs": outputs, "@loop_values": ("a",)})
        == '{"x":{"v":1}}'
    )
    # without the engine's hint, taskrun.value and parents (closest first) are used
    ctx = {"outputs": outputs, "taskrun": {"value": "x"}, "parents": [{"taskrun": {"value": "a"}}]}
    assert render("{{ currentEachOutput(outputs.t).v }}", ctx) == "1"


def test_secret() -> None:
    ctx = {"@secrets": {"TOKEN": "s3cr3t"}}
    assert render("{{ secret('TOKEN') }}", ctx) == "s3cr3t"
    with pytest.raises(ExpressionError, match="secret 'NOPE' not found"):
        render("{{ secret('NOPE') }}", ctx)


def test_at_keys_are_not_reachable_from_templates() -> None:
    with pytest.raises(ExpressionError):
        render("{{ @secrets }}", {"@secrets": {"a": "b"}})


def test_range_min_max() -> None:
    assert render("{{ range(0, 6, 2) }}-{{ range(3, 1, -1) }}", {}) == "[0,2,4,6]-[3,2,1]"
    assert render("{{ max(1, 5, 2) }}-{{ min([4, 2]) }}", {}) == "5-2"
    with pytest.raises(ExpressionError):
        render("{{ range(0, 10000000) }}", {})


# --- mappings and performance ----------------------------------------------------------


def test_non_dict_mappings_as_context_and_values() -> None:
    ctx = MappingProxyType(
        {"outputs": immutables.Map({"t": MappingProxyType({"value": [1, 2]})}), "@now": CTX["@now"]}
    )
    assert (
        render("{{ outputs.t.value[1] }} {{ outputs.t }} {{ outputs['t'] | keys }}", ctx)
        == '2 {"value":[1,2]} ["value"]'
    )
    assert render("{{ outputs.t.missing ?? 'd' }} {{ now() }}", ctx) == "d 2026-01-02T03:04:05.678Z"
    assert render("{{ outputs | jq('.t.value | add') | first }}", ctx) == "3"


class _CountingMapping(Mapping[str, Any]):
    """A lazy context: proves the engine's Mapping is read, not copied."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data, self.reads = data, 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the context must not be copied or iterated")

    def __len__(self) -> int:
        raise AssertionError("the context must not be copied")


def test_the_context_is_not_copied() -> None:
    ctx = _CountingMapping({"task": {"id": "t"}, "taskrun": {"value": "v"}})
    assert render("{{ task.id }} > {{ taskrun.value }}", ctx) == "t > v"
    assert ctx.reads == 2


def test_a_template_is_parsed_once_however_often_it_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    # What keeps rendering cheap (a ForEach renders one template per value) is the cache of
    # compiled templates: counted here, since a timing would only be informative on CI.
    from control_plane.expressions import environment

    parsed: list[str] = []
    compile_ = environment._ENV.compile

    def counting(source: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(source)
        return compile_(source, *args, **kwargs)

    monkeypatch.setattr(environment._ENV, "compile", counting)
    template = f"{{{{ task.id }}}} > {{{{ taskrun.value }}}} ({uuid.uuid4().hex})"  # not cached yet
    for i in range(1000):
        ctx = {"task": {"id": "t"}, "taskrun": {"value": str(i)}}
        assert render(template, ctx).startswith(f"t > {i} (")
    assert parsed == [template]


@given(st.text(alphabet=st.characters(blacklist_characters="{")))
def test_text_without_braces_is_returned_as_is(text: str) -> None:
    assert render(text, {}) is text

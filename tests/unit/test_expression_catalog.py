"""The table of Pebble's and Kestra's filters, functions and tests, and the names added for it.

Expected values are Pebble's and Kestra's documented results (pebbletemplates.io tests and
filters pages; Kestra's FlattenFilter, JsonTest and RenderOnceFunction sources).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from control_plane.errors import ExpressionError
from control_plane.expressions import render
from control_plane.expressions.catalog import Kind, Origin, Status, entries, lookup
from control_plane.expressions.filters import FILTERS, TESTS
from control_plane.expressions.functions import GLOBALS


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Pebble tests
        ("{{ 21 is divisibleby(3) }}", "true"),
        ("{{ 22 is divisibleby(3) }}", "false"),
        ("{{ 21 is divisible by(3) }}", "true"),  # Pebble's two-word spelling (docs: "is divisible by()")
        ("{{ 22 is not divisible by(3) }}", "true"),
        ("{{ x is same as(x) }}", "true"),
        ("{{ missing is defined }}", "false"),
        ("{{ missing is not defined }}", "true"),
        ("{{ null is null }}", "true"),
        ("{{ '' is empty }}", "true"),
        ("{{ [1] is iterable }}", "true"),
        ("{{ {'a': 1} is map }}", "true"),
        ("{{ 3 is odd }}", "true"),
        ("{{ 4 is even }}", "true"),
        ("{{ x is sameas(x) }}", "true"),
        ("{{ [1] is sameas([1]) }}", "false"),
        # Kestra's json test: a string Jackson can read
        ("{{ '{\"a\": 1}' is json }}", "true"),
        ("{{ '{a: 1' is json }}", "false"),
        ("{{ 12 is json }}", "false"),
        # Pebble filters added here
        ("{{ {'a': 1, 'b': 2} | merge({'b': 3}) }}", '{"a":1,"b":3}'),
        ("{{ [1, 2] | merge([3]) }}", "[1,2,3]"),
        (
            "{{ '<b>\"Tom\" & \\'Jerry\\'</b>' | escape }}",
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;",
        ),
        ("{{ '<b>' | raw }}", "<b>"),
        # Pebble's numberformat: Java DecimalFormat, HALF_EVEN, English symbols
        ("{{ 3.141592653 | numberformat('#.##') }}", "3.14"),
        ("{{ 1234.5 | numberformat('#,##0.00') }}", "1,234.50"),
        ("{{ 0.5 | numberformat('#.##') }}", ".5"),
        ("{{ 0 | numberformat('#.##') }}", "0"),
        ("{{ 0.125 | numberformat('0.00') }}", "0.12"),
        ("{{ 2.5 | numberformat('0') }}", "2"),
        ("{{ 1234567.891 | numberformat }}", "1,234,567.891"),
        ("{{ 42 | numberformat('$#,##0.00 USD') }}", "$42.00 USD"),
        # Kestra's flatten: one level only
        ("{{ [[1, 2], [3, [4]], 5] | flatten }}", "[1,2,3,[4],5]"),
        ("{{ null | flatten is null }}", "true"),
        # Kestra's filters the other tests do not cover (Sha512Filter, Timestamp*Filter, UrlDecoderFilter)
        (
            "{{ 'test' | sha512 }}",
            "ee26b0dd4af7e749aa1a8ee3c10ae9923f618980772e473f8819a5d4940e0db2"
            "7ac185f8a0e1d5f84f88bc887fd67b143732c304cc5fa9ad8e6f57f50028a8ff",
        ),
        ("{{ '2024-01-01T00:00:00Z' | timestampMicro }}", "1704067200000000"),
        ("{{ '2024-01-01T00:00:00Z' | timestampNano }}", "1704067200000000000"),
        ("{{ 'The+string+%C3%BC%40foo-bar' | urldecode }}", "The string ü@foo-bar"),
        # Pebble's elseif
        ("{% if 2 == 1 %}one{% elseif 2 == 2 %}two{% else %}other{% endif %}", "two"),
        # Kestra's renderOnce: a single pass, where render goes on while the text changes
        ("{{ renderOnce(vars.outer) }}", "{{ vars.inner }}"),
        ("{{ render(vars.outer) }}", "done"),
    ],
)
def test_pebble_and_kestra_results(template: str, expected: str) -> None:
    context = {"x": [1], "vars": {"outer": "{{ '{{ vars.inner }}' }}", "inner": "done"}}
    assert render(template, context) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 3 is divisibleby(0) }}", "division by zero"),
        ("{{ 'a' | merge([1]) }}", "expected two maps or two lists"),
        ("{{ 'a' | escape('js') }}", "strategy 'js' is not supported"),
        ("{{ 'abc' | flatten }}", "can only be applied to lists"),
        ("{{ 0.5 | numberformat('0.0E0') }}", "pattern '0.0E0' is not supported"),
        ("{{ 'abc' | numberformat('0') }}", "not a number"),
        ("{{ 1 is string }}", "string"),  # a Jinja test, neither Pebble's nor Kestra's
    ],
)
def test_bad_inputs_fail_with_a_message(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        render(template, {})


def test_every_reference_name_is_implemented_provided_or_has_a_reason() -> None:
    for entry in entries():
        if entry.status is Status.UNSUPPORTED:
            assert entry.reason and entry.reason != "not implemented yet", entry


def test_the_table_reads_implemented_from_the_runtime_tables() -> None:
    listed = {(e.kind, e.name) for e in entries() if e.status is Status.IMPLEMENTED}
    assert {(Kind.FILTER, n) for n in FILTERS} <= listed
    assert {(Kind.FUNCTION, n) for n in GLOBALS} <= listed
    assert {(Kind.TEST, n) for n in TESTS if n != "present"} <= listed
    assert (Kind.TEST, "present") not in {(e.kind, e.name) for e in entries()}


def test_lookup_says_where_a_name_comes_from_and_what_squall_does() -> None:
    assert lookup(Kind.TEST, "divisibleby") == lookup(Kind.TEST, "divisibleby")
    divisible = lookup(Kind.TEST, "divisibleby")
    assert divisible is not None and divisible.origin is Origin.PEBBLE
    assert divisible.status is Status.IMPLEMENTED
    kv = lookup(Kind.FUNCTION, "kv")  # in the runtime table since the KV tasks landed
    assert kv is not None and kv.status is Status.IMPLEMENTED
    ion = lookup(Kind.FILTER, "toIon")
    assert ion is not None and ion.status is Status.UNSUPPORTED and "Ion" in ion.reason
    assert lookup(Kind.FILTER, "frobnicate") is None


RUN = {"execution": {"id": "exec-1"}, "taskrun": {"id": "tr-1", "attemptsCount": 0}}
UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_seeded_functions_have_kestras_shapes() -> None:
    assert re.fullmatch(UUID_TEXT, render("{{ uuid() }}", RUN))
    assert re.fullmatch(r"[0-9A-Za-z]{1,22}", render("{{ id() }}", RUN))
    values = {int(render(f"{{{{ randomInt(1, 4) }}}}{'x' * i}", RUN).rstrip("x")) for i in range(60)}
    assert values == {1, 2, 3}  # upper bound excluded, as Math.random() * (upper - lower) + lower
    assert render("{{ randomInt(5, 5) }}", RUN) == "5"


def test_seeded_functions_replay_identically_and_differ_per_call_run_and_execution() -> None:
    template = "{{ uuid() }} {{ uuid() }}"
    first, second = render(template, RUN).split()
    assert first != second
    assert render(template, RUN) == f"{first} {second}"
    other_run = {**RUN, "taskrun": {"id": "tr-2", "attemptsCount": 0}}
    retried = {**RUN, "taskrun": {"id": "tr-1", "attemptsCount": 1}}
    other_execution = {**RUN, "execution": {"id": "exec-2"}}
    seen = {render("{{ uuid() }}", ctx) for ctx in (RUN, other_run, retried, other_execution)}
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ randomInt(3, 1) }}", "upper is less than lower"),
        ("{{ randomInt(1) }}", "expects an argument upper"),
        ("{{ randomInt('a', 2) }}", "expects an integer as lower"),
    ],
)
def test_random_int_refuses_bad_bounds(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        render(template, RUN)


def test_seeded_functions_need_an_execution() -> None:
    with pytest.raises(ExpressionError, match=r"uuid\(\) is only available while an execution runs"):
        render("{{ uuid() }}", {})


def test_nano_id_and_ksuid_have_kestras_shapes() -> None:
    clock = {**RUN, "@now": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    assert re.fullmatch(r"[A-Za-z0-9_-]{21}", render("{{ nanoId() }}", clock))
    assert re.fullmatch(r"[xy]{12}", render("{{ nanoId(length=12, alphabet='xy') }}", clock))
    ksuid = render("{{ ksuid() }}", clock)
    assert re.fullmatch(r"[0-9A-Za-z]{27}", ksuid)
    later = render("{{ ksuid() }}", {**clock, "@now": datetime(2027, 1, 1, tzinfo=UTC)})
    assert later > ksuid  # K-sortable: the timestamp comes first
    with pytest.raises(ExpressionError, match="length must be an integer"):
        render("{{ nanoId(0) }}", clock)
    with pytest.raises(ExpressionError, match="needs the engine's clock"):
        render("{{ ksuid() }}", RUN)


def test_fetch_context_lists_the_variables_without_squall_internals() -> None:
    context = {"execution": {"id": "e"}, "inputs": {"a": 1}, "@now": datetime(2026, 1, 1, tzinfo=UTC)}
    assert render("{{ printContext() }}", context) == '{"execution":{"id":"e"},"inputs":{"a":1}}'
    assert render("{% set z = 2 %}{{ fetchContext() | keys | join(',') }}", context) == "execution,inputs,z"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ "Hello, #{name}!" }}', "Hello, Ada!"),
        ('{{ "#{n + 1} items, #{n * 2} pairs" }}', "3 items, 4 pairs"),
        ("{{ 'single quotes stay #{literal}' }}", "single quotes stay #{literal}"),
        ("{{ \"nested #{ {'k': name}.k } map\" }}", "nested Ada map"),
        ('{% if "#{name}" == "Ada" %}yes{% endif %}', "yes"),
        ('{{ "no interpolation" }}', "no interpolation"),
    ],
)
def test_pebble_string_interpolation_in_double_quotes(template: str, expected: str) -> None:
    assert render(template, {"name": "Ada", "n": 2}) == expected


def test_an_unclosed_interpolation_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionError, match=r"unclosed #\{"):
        render('{{ "#{name" }}', {"name": "Ada"})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for i in 0..3 %}{{ i }}{% endfor %}", "0123"),
        ("{{ 1..n }}", "[1,2,3]"),
        ("{{ (0..n - 1) | length }}", "3"),
        ("{{ 2 in 1..3 }}", "true"),
        ("{{ 1.5 + 1 }}", "2.5"),  # a float literal is not a range
    ],
)
def test_pebble_range_operator_includes_both_ends(template: str, expected: str) -> None:
    assert render(template, {"n": 3}) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% verbatim %}{{ x }}{% endverbatim %}!", "{{ x }}!"),
        ("a{%- verbatim -%} {{ x }} {%- endverbatim -%}b", "a{{ x }}b"),
        ("{% raw %}{{ x }}{% endraw %}", "{{ x }}"),
    ],
)
def test_pebble_verbatim_keeps_its_body_as_text(template: str, expected: str) -> None:
    assert render(template, {}) == expected


def test_every_implemented_name_is_exercised_by_a_test_or_a_compat_flow() -> None:
    """A name in the table as implemented must have a test comparing it with Pebble or Kestra."""
    tests = Path(__file__).resolve().parents[1]  # any test may be the one (others add names too)
    sources = [*sorted((tests / "unit").glob("*.py")), *sorted((tests / "conformance").rglob("*.y*ml"))]
    text = "".join(path.read_text(encoding="utf-8") for path in sources)
    shapes = {Kind.FILTER: r"\|\s*{}\b", Kind.FUNCTION: r"\b{}\(", Kind.TEST: r"\bis\s+(not\s+)?{}\b"}
    untested = [
        (entry.kind.value, entry.name)
        for entry in entries()
        if entry.status is Status.IMPLEMENTED
        and not re.search(shapes[entry.kind].format(re.escape(entry.name)), text)
    ]
    assert untested == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ isWeekend('2024-01-06T10:00:00Z') }}", "true"),  # a Saturday
        ("{{ isWeekend('2024-01-08T10:00:00Z') }}", "false"),
        ("{{ dayOfWeek('2024-01-01T10:00:00Z') }}", "MONDAY"),
        ("{{ dayOfMonth('2024-01-31T10:00:00Z') }}", "31"),
        ("{{ monthOfYear('2024-03-01T00:00:00Z') }}", "3"),
        ("{{ hourOfDay('2024-01-01T23:30:00+01:00') }}", "23"),  # in the date's own zone
        ("{{ isDayWeekInMonth('2024-01-01T00:00:00Z', 'MONDAY', 'FIRST') }}", "true"),
        ("{{ isDayWeekInMonth('2024-01-08T00:00:00Z', 'MONDAY', 'SECOND') }}", "true"),
        ("{{ isDayWeekInMonth('2024-01-29T00:00:00Z', 'MONDAY', 'LAST') }}", "true"),
        ("{{ isDayWeekInMonth('2024-01-22T00:00:00Z', 'MONDAY', 'LAST') }}", "false"),
        ("{{ isDayWeekInMonth('2024-01-02T00:00:00Z', 'MONDAY', 'FIRST') }}", "false"),
    ],
)
def test_kestra_calendar_functions(template: str, expected: str) -> None:
    assert render(template, {}) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ dayOfWeek(null) }}", "needs a date"),
        ("{{ isDayWeekInMonth('2024-01-01T00:00:00Z', 'MONDAY', 'FIFTH') }}", "unknown position"),
        ("{{ isDayWeekInMonth('2024-01-01T00:00:00Z', 'FUNDAY', 'FIRST') }}", "unknown day of week"),
    ],
)
def test_calendar_functions_refuse_bad_arguments(template: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        render(template, {})

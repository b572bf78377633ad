"""The expression sandbox under attack: nothing reads the environment or the disk, every render ends.

Each case was reproduced against the sandbox before it was bounded (issue 17); here each must
fail cleanly, with an ``ExpressionError`` naming what was refused, within the deadline plus a
grace for the machine's load.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.errors import ExpressionError, ExpressionLimitError
from control_plane.expressions import jq_sandbox, limits, render

TIMEOUT = 0.5
GRACE = 2.5  # regex's timeout and a killed worker overshoot a little on a loaded 2-core machine
CANARY = "squall-canary-7f3a9"


@pytest.fixture(autouse=True)
def tight_limits() -> Iterator[None]:
    limits.configure(limits.Limits(timeout=TIMEOUT, max_output=1 << 20, max_string=1 << 20))
    try:
        yield
    finally:
        limits.configure(None)


@pytest.fixture
def roomy() -> None:
    """For renders that must succeed: a deadline no loaded machine misses, and no quadratic
    algorithm meets (100,000 items squared is minutes)."""
    limits.configure(limits.Limits(timeout=30, max_output=1 << 20, max_string=1 << 20))


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SQUALL_TEST_CANARY", CANARY)
    return CANARY


def _fails(template: str, error: type[Exception] = ExpressionError, match: str | None = None) -> str:
    started = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        render(template, {})
    took = time.monotonic() - started
    assert took < TIMEOUT + GRACE, f"{template!r} took {took:.2f} s"
    return str(caught.value)


@pytest.mark.parametrize(
    "program",
    ["$ENV", "env", "$ENV.SQUALL_TEST_CANARY", "env.SQUALL_TEST_CANARY", "[env[]]", "$ENV | tostring"],
)
def test_jq_cannot_read_the_environment(canary: str, program: str) -> None:
    out = render("{{ {} | jq('" + program + "') }}", {})
    assert canary not in out
    assert "SQUALL" not in out


@pytest.mark.parametrize(
    "program",
    [
        'import "secret" as $s {search: "DIR"}; $s',
        '  # a comment\nimport "secret" as $s {search: "DIR"}; $s',
        '# a comment that goes on \\\nimport "secret" as $s {search: "DIR"}; $s',
        'include "secret" {search: "DIR"}; .',
        '"secret" | modulemeta',
    ],
)
def test_jq_cannot_read_files(tmp_path: Path, program: str) -> None:
    (tmp_path / "secret.json").write_text(f'"{CANARY}"')
    (tmp_path / "secret.jq").write_text(f'def leak: "{CANARY}";')
    template = "{{ {} | jq('" + program.replace("DIR", str(tmp_path)).replace("'", "\\'") + "') }}"
    message = _fails(template, match="not allowed")
    assert CANARY not in message


def test_jq_keeps_working_for_ordinary_programs(roomy: None) -> None:
    assert render("{{ {'a': [1, 2, 3]} | jq('.a | map(. * 2)') }}", {}) == "[[2,4,6]]"
    assert render("{{ '{\"import\": 1}' | jq('.import') }}", {}) == "[1]"
    assert render("{{ {'env': 'x'} | jq('.env') }}", {}) == '["x"]'


@pytest.mark.parametrize(
    "template",
    [
        "{{ {} | jq('repeat(.)') }}",
        "{{ {} | jq('def f: f; f') }}",
        "{{ {} | jq('[range(1e10)] | length') }}",
        "{{ {} | jq('last(range(1e12))') }}",
    ],
)
def test_a_runaway_jq_program_is_killed_at_the_deadline(template: str) -> None:
    _fails(template, ExpressionLimitError, "SQUALL_EXPRESSION_TIMEOUT|characters")
    assert render("{{ [1, 2] | jq('add') }}", {}) == "[3]"  # a fresh worker answers the next call


def test_jq_worker_is_shared_by_threads_without_mixing_answers(roomy: None) -> None:
    results: dict[int, str] = {}

    def work(n: int) -> None:
        results[n] = render("{{ {'n': n} | jq('.n * 10') }}", {"n": n})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {n: f"[{n * 10}]" for n in range(8)}


def test_a_jq_worker_that_dies_is_replaced(roomy: None) -> None:
    render("{{ 1 | jq('.') }}", {})
    proc = jq_sandbox._worker._proc
    assert proc is not None
    proc.kill()
    proc.wait()
    assert render("{{ 2 | jq('.') }}", {}) == "[2]"


LOOPS = "{% for a in range(1,100000) %}{% for b in range(1,100000) %}{% endfor %}{% endfor %}"
ALIAS_BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True)
)


@pytest.mark.parametrize(
    ("template", "match"),
    [
        (
            "{% for a in range(1,100000) %}{% for b in range(1,100000) %}x{% endfor %}{% endfor %}",
            "limit|exceed",
        ),
        ("{% for a in range(1,100000) %}{% for b in range(1,100000) %}{% endfor %}{% endfor %}", "limit"),
        (
            "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
            "limit",
        ),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested too deeply"),
        ("{{ yaml(bomb) }}", "characters"),
        ("{{ yaml(bomb) | jq('.') }}", "characters"),
        ("{{ yaml(bomb) | toYaml }}", "characters"),
        ("{{ yaml(bomb) | json }}", "characters"),
        ("{{ '%2000000000s' % 'a' }}", "'%' needs two numbers"),
        ("{{ ('a' * 1000000) | replace('a', 'aaaaaaaaaa') }}", "replace"),
        ("{{ ('a' * 100000) | replace('', 'bbbbbbbbbbbb') }}", "replace"),
        ("{{ ('a' * 100000) | replace('a', '$0$0$0$0$0$0$0$0$0$0$0$0', true) }}", "replace"),
        ("{{ ('a\n' * 100000) | indent(1000) }}", "indent"),
        ("{{ 'x' | indent(10000000000) }}", "indent"),
        ("{{ 'x' | nindent(10000000000) }}", "indent"),
        ("{{ ([('a' * 100000)] * 100) | join(',') }}", "join"),
        ("{{ [('a' * 1000)] * 1000000 }}", "characters"),
        ("{{ ['a'] * 10000000 }}", "items"),
        ("{{ 'a' * 100000000 }}", "characters"),
        ("{% set x = 2 ** 90000 %}{{ x * x * x * x * x * x }}", "bits"),
        ("{{ 2 ** 100000000 }}", "bits"),
        ("{{ '1e999999999' | number('INT') }}", "bits"),
        ("{{ 1.5 | round(1000000000) }}", "precision"),
        ("{% set a = 'a' * 100000 %}{% set b %}" + "{{a}}" * 60 + "{% endset %}{{ b | length }}", "printed"),
        ("{% set a = 'a' * 600000 %}{% set b = a ~ a %}{{ b | length }}", "~"),
        ("{% set a = 'a' * 600000 %}{{ a + a }}", r"\+"),
        ("{{ (',' * 1000000) | split(',') | length }}", "items"),
        ("{{ ('a' * 40 ~ '!') | replace('^(a|aa)+$', 'z', true) }}", "SQUALL_EXPRESSION_TIMEOUT"),
        ("{{ ('x' * 5000) | replace('(x+x+)+y', 'z', true) }}", "SQUALL_EXPRESSION_TIMEOUT"),
        ("{% for i in range(1, 100000) %}{{ 'a' * 1000 }}{% endfor %}", "characters|limit"),
        ("{{ range(1, 100000) | chunk(0) }}", "chunk"),
    ],
)
def test_amplifiers_fail_cleanly_and_in_time(template: str, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=match):
        render(template, {"bomb": ALIAS_BOMB})
    assert time.monotonic() - started < TIMEOUT + GRACE


def test_the_limit_names_its_setting() -> None:
    message = _fails("{% for a in range(1,100000) %}{% for b in range(1,100000) %}{% endfor %}{% endfor %}")
    assert "SQUALL_EXPRESSION_TIMEOUT" in message and f"{TIMEOUT:g} s" in message
    message = _fails("{{ 'a' * 2000000 }}")
    assert "SQUALL_EXPRESSION_MAX_OUTPUT" in message


def test_a_huge_context_value_is_not_printed() -> None:
    huge = {"items": [{"value": "x" * 100} for _ in range(20_000)]}
    with pytest.raises(ExpressionLimitError, match="printed value"):
        render("{{ outputs }}", {"outputs": huge})
    assert render("{{ outputs['items'] | length }}", {"outputs": huge}) == "20000"


def test_nested_render_shares_the_deadline() -> None:
    slow = "{% for a in range(1,100000) %}{% for b in range(1,100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(ExpressionLimitError):
        render("{{ render(t) }}{{ render(t) }}{{ render(t) }}", {"t": slow})
    assert time.monotonic() - started < TIMEOUT + GRACE


def test_distinct_is_linear(roomy: None) -> None:
    assert render("{{ range(1, 100000) | distinct | length }}", {}) == "100000"
    assert (
        render("{{ [{'a': 1}, {'a': 1}, [1], [1], 1, '1', true] | distinct }}", {})
        == '[{"a":1},[1],1,"1",true]'
    )


def test_ordinary_templates_are_unchanged(roomy: None) -> None:
    assert render("{{ 7 % 3 }} {{ 7.5 % 2 }}", {}) == "1 1.5"
    assert render("{{ 'a' ~ one ~ yes }}", {"one": 1, "yes": True}) == "a1true"
    assert render("{{ 'a-b' | replace('-(\\\\w)', '+$1', true) }}", {}) == "a+b"
    assert render("{{ yaml('a: &x [1]\\nb: *x') | json }}", {}) == '{"a":[1],"b":[1]}'
    assert render("{{ 'l1\\nl2' | indent(2) }}", {}) == "l1\n  l2"


def test_the_environment_variable_stays_out_of_every_filter(canary: str) -> None:
    """No filter or function takes a name it would look up in the environment."""
    from control_plane.expressions.filters import FILTERS
    from control_plane.expressions.functions import GLOBALS

    for name in [*FILTERS, *GLOBALS]:
        for arg in ("SQUALL_TEST_CANARY", "$ENV.SQUALL_TEST_CANARY", "env"):
            try:
                out = render("{{ '" + arg + "' | " + name + " }}", {}) if name in FILTERS else ""
                out += render("{{ " + name + "('" + arg + "') }}", {}) if name in GLOBALS else ""
            except ExpressionError:
                continue
            assert canary not in out, name
    assert os.environ["SQUALL_TEST_CANARY"] == canary


def test_closing_the_jq_worker_removes_its_directory_and_a_later_call_starts_afresh() -> None:
    render("{{ 1 | jq('.') }}", {})
    home = jq_sandbox._worker._home
    assert home and Path(home).is_dir()
    jq_sandbox._worker.close()
    assert not Path(home).exists() and jq_sandbox._worker._proc is None
    assert render("{{ 3 | jq('.') }}", {}) == "[3]"

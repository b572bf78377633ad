"""The bad-input campaign of issue 17: known attacks plus hypothesis, tallied into one line.

::

    python -m tests.security.campaign            # the whole campaign, then its line:
    bad inputs: N, escapes: 0, hangs over the deadline: 0, unhandled errors: 0, server unavailable: 0

Each bad input goes through the code that would meet it in production and is judged:

escape
    the answer holds something the sandbox must never reach: the value of an environment
    variable planted for the run, the content of a file planted next to the process, a
    secret's value, or the text of a Python internal (``<function``, ``object at 0x``...);
hang
    the answer took longer than the expression deadline plus :data:`GRACE` (expressions), or
    :data:`SLOW` (flows, inputs, HTTP requests);
unhandled
    an exception other than the one the entry point promises (``ExpressionError`` for a
    template, ``FlowValidationError`` for a flow, ``InputError`` for inputs), or an HTTP
    answer that is a 5xx or not a JSON object with a ``message``;
server unavailable
    after a bad request, ``GET /openapi.json`` on a new connection did not answer 200 within
    :data:`SLOW`.

Hypothesis runs derandomized, so a run is reproducible; the figures go in docs/security.md.
"""

from __future__ import annotations

import gc
import json
import os
import re
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.errors import ExpressionError, FlowValidationError, InputError
from control_plane.expressions import limits, render
from control_plane.expressions.filters import FILTERS
from control_plane.expressions.functions import GLOBALS
from control_plane.flows.inputs import resolve_inputs
from control_plane.flows.loader import parse_flow

__all__ = ["CANARY", "Tally", "explore", "run_campaign"]

TIMEOUT = 0.25
"""The expression deadline the campaign configures (the default is 2 s; a small one keeps it fast)."""
GRACE = 1.5
"""Past the deadline, how late an expression may end before it counts as a hang (a loaded machine)."""
SLOW = 5.0
"""How long a flow, an input set or an HTTP request may take before it counts as a hang."""
CANARY = "squall-campaign-canary-5e1f"
_INTERNALS = re.compile(r"<(function|class|module|built-in|bound method|jinja2\.)|object at 0x|__globals__")
ROOT = Path(__file__).resolve().parents[2]


class Tally:
    """The campaign's counters, and the first few examples of each failure kind for the report."""

    def __init__(self) -> None:
        self.bad_inputs = 0
        self.escapes: list[str] = []
        self.hangs: list[str] = []
        self.unhandled: list[str] = []
        self.unavailable: list[str] = []

    def line(self) -> str:
        return (
            f"bad inputs: {self.bad_inputs}, escapes: {len(self.escapes)},"
            f" hangs over the deadline: {len(self.hangs)}, unhandled errors: {len(self.unhandled)},"
            f" server unavailable: {len(self.unavailable)}"
        )

    def ok(self) -> bool:
        return not (self.escapes or self.hangs or self.unhandled or self.unavailable)

    def details(self) -> str:
        parts = []
        for name in ("escapes", "hangs", "unhandled", "unavailable"):
            found = getattr(self, name)
            if found:
                parts.append(f"{name}: " + "; ".join(found[:5]))
        return "\n".join(parts)

    def leaked(self, text: str, secrets: tuple[str, ...] = (), *, rendered: bool = True) -> bool:
        """Whether ``text`` shows what must stay hidden; an error message may quote the template."""
        if CANARY in text or any(s in text for s in secrets):
            return True
        return rendered and bool(_INTERNALS.search(text))


@contextmanager
def planted(tmp: Path) -> Iterator[None]:
    """A canary in the environment and in files the process could name; the deadline of the run."""
    previous = os.environ.get("SQUALL_CAMPAIGN_CANARY")
    os.environ["SQUALL_CAMPAIGN_CANARY"] = CANARY
    (tmp / "canary.json").write_text(json.dumps(CANARY))
    (tmp / "canary.jq").write_text(f'def canary: "{CANARY}";')
    (tmp / "canary.txt").write_text(CANARY)
    limits.configure(limits.Limits(timeout=TIMEOUT))
    # What this process held before the campaign (a test worker's heap from earlier tests: a
    # million objects) is left out of the collector's scans, as a squall process does after
    # start-up: a full collection over it, set off by a template that builds 100,000 lists,
    # took 1.8 s in one CI run and counted as the template's own hang.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        limits.configure(None)
        if previous is None:
            os.environ.pop("SQUALL_CAMPAIGN_CANARY", None)
        else:
            os.environ["SQUALL_CAMPAIGN_CANARY"] = previous


def explore(strategy: st.SearchStrategy[Any], examples: int, check: Callable[[Any], None]) -> None:
    """``check`` on ``examples`` values drawn from ``strategy``, derandomized: a run is reproducible."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    run()


# ================================================================== expressions

KNOWN_TEMPLATES = [
    # reading the environment and the disk
    "{{ {} | jq('$ENV') }}",
    "{{ {} | jq('env') }}",
    "{{ {} | jq('$ENV.SQUALL_CAMPAIGN_CANARY') }}",
    "{{ {} | jq('[env[]] | join(\",\")') }}",
    "{{ {} | jq('$__loc__') }}",
    "{{ {} | jq('input_filename') }}",
    "{{ {} | jq('get_search_list') }}",
    '{{ {} | jq(\'import "canary" as $c {search: "TMP"}; $c\') }}',
    '{{ {} | jq(\'include "canary" {search: "TMP"}; canary\') }}',
    '{{ {} | jq(\'# comment \\\\\nimport "canary" as $c {search: "TMP"}; $c\') }}',
    "{{ {} | jq('\"canary\" | modulemeta') }}",
    "{{ {} | jq('input') }}",
    "{{ {} | jq('halt_error') }}",
    "{{ {} | jq('\"x\" | debug') }}",
    "{{ yaml('!!python/object/apply:os.getenv [SQUALL_CAMPAIGN_CANARY]') }}",
    "{{ yaml('!!python/name:os.environ') }}",
    "{{ fromJson('{\"a\": 1}').__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ range.__globals__ }}",
    "{{ now.__globals__['os'].environ }}",
    "{{ self }}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler }}",
    "{{ lipsum() }}",
    "{{ namespace() }}",
    "{{ dict(a=1) }}",
    "{{ joiner }}",
    "{{ 'a' | attr('__class__') }}",
    "{{ 'a' | map('upper') | list }}",
    "{% include 'TMP/canary.txt' %}",
    "{% import 'TMP/canary.txt' as c %}",
    "{% extends 'TMP/canary.txt' %}",
    "{% from 'TMP/canary.txt' import x %}",
    "{{ read('TMP/canary.txt') }}",
    "{{ read('file://TMP/canary.txt') }}",
    "{{ secret('SQUALL_CAMPAIGN_CANARY') }}",
    "{{ secret('../canary') }}",
    '{{ render(\'{{ "{" ~ "{ 1 }" ~ "}" }}\') }}',
    "{% for x in range(1,3) %}{{ loop.__class__ }}{% endfor %}",
    "{% for x in range(1,3) %}{{ loop.cycle }}{% endfor %}",
    "{% macro m() %}{{ caller }}{% endmacro %}{{ m() }}",
    "{% macro m() %}x{% endmacro %}{{ m._func }}",
    "{{ '%s' % 'a' }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ 'a'.upper() }}",
    # time and size
    "{% for a in range(1,100000) %}{% for b in range(1,100000) %}{% endfor %}{% endfor %}",
    "{% for a in range(1,100000) %}{% for b in range(1,100000) %}x{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ render(t) }}",
    "{{ {} | jq('repeat(.)') }}",
    "{{ {} | jq('def f: f; f') }}",
    "{{ {} | jq('[range(1e9)] | length') }}",
    "{{ {} | jq('[limit(1e8; repeat(1))] | length') }}",
    "{{ {} | jq('\"a\" * 1e9') }}",
    '{{ {} | jq(\'"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" | test("^(a|aa)+$")\') }}',
    "{{ ('a' * 40 ~ '!') | replace('^(a|aa)+$', 'z', true) }}",
    "{{ ('x' * 5000) | replace('(x+x+)+y', 'z', true) }}",
    "{{ ('a' * 3000) | replace('(.*a){30}$', 'z', true) }}",
    "{{ yaml(bomb) }}",
    "{{ yaml(bomb) | jq('.') }}",
    "{{ yaml(bomb) | toYaml }}",
    "{{ yaml(bomb) | length }}",
    "{{ '%2000000000s' % 'a' }}",
    "{{ ('a' * 1000000) | replace('a', 'aaaaaaaaaa') }}",
    "{{ ('a' * 1000000) | replace('', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb') }}",
    "{{ ('a' * 100000) | replace('a', '" + "$0" * 40 + "', true) }}",
    "{{ ('a\n' * 1000000) | indent(1000) }}",
    "{{ 'x' | indent(10000000000) }}",
    "{{ 'x' | nindent(10000000000) }}",
    "{{ 'x' | indent(2, 'p' * 10000000) }}",
    "{{ ([('a' * 1000000)] * 1000000) | join(',') }}",
    "{{ [('a' * 1000)] * 1000000 }}",
    "{{ ['a'] * 100000000 }}",
    "{{ 'a' * 100000000 }}",
    "{{ 'a' * -1 }}",
    "{% set x = 2 ** 90000 %}{{ x * x * x * x * x * x }}",
    "{{ 2 ** 100000000 }}",
    "{{ 10 ** 10 ** 10 }}",
    "{{ 9 ** 9 ** 9 ** 9 }}",
    "{{ '1e999999999' | number('INT') }}",
    "{{ '9' * 1000000 | number }}",
    "{{ 1.5 | round(1000000000) }}",
    "{{ 1.5 | round(-1000000000) }}",
    "{{ now() | dateAdd(10000000000000, 'DAYS') }}",
    "{{ '2020-01-01' | date('y' * 1000000) }}",
    "{% set a = 'a' * 1000000 %}{% set b %}" + "{{a}}" * 40 + "{% endset %}{{ b | length }}",
    "{% set a = 'a' * 1000000 %}{% set b = a ~ a ~ a ~ a ~ a %}{{ b | length }}",
    "{% set a = 'a' * 3000000 %}{{ a + a }}",
    "{{ range(1, 100000) | distinct | length }}",
    "{{ range(1, 100000) | sort | reverse | length }}",
    "{{ (',' * 3000000) | split(',') | length }}",
    "{{ range(1, 100000) | chunk(1) | length }}",
    "{{ range(1, 100000) | chunk(0) }}",
    "{% for i in range(1, 100000) %}{{ 'a' * 1000 }}{% endfor %}",
    "{{ ('[' * 100000) ~ (']' * 100000) | fromJson }}",
    "{{ fromJson('[' * 100000 ~ ']' * 100000) }}",
    "{{ yaml('[' * 100000 ~ ']' * 100000) }}",
    "{{ yaml('a: ' ~ ('- ' * 10000)) }}",
    "{{ ('a' * 4000000) | base64encode | base64decode | length }}",
    "{{ ('%F0%9F' * 1000000) | urldecode | length }}",
    "{{ 'a' | slugify | title | capitalize | abbreviate(-5) }}",
    "{{ range(1, 10, 0) }}",
    "{{ range(-100000000, 100000000) }}",
    "{{ max(range(1,100000)) ~ min([]) }}",
    "{{ ('x' * 1000000) in ('y' * 4000000) }}",
    "{{ {'a': 1} | jq('.a') | jq('.[0]') | jq('tostring * 100000000') }}",
    "{{ 1 / 0 }}{{ 1 // 0 }}{{ 1 % 0 }}",
    "{{ '\\ud800' | upper }}",
    "{{ '\x00\x01' | urlencode }}",
    "{{",
    "{% for %}",
    "{{ a ? }}",
    "{{ } }}",
    "{% raw %}{{ x }}",
    "{{ " + "(" * 60 + "1" + ")" * 60 + " }}",
    "{{ " + "[" * 5000 + "]" * 5000 + " }}",
    "{{ " + "-" * 5000 + "1 }}",
    "{{ " + "not " * 5000 + "true }}",
]

ALIAS_BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True)
)


def _context(tmp: Path) -> dict[str, Any]:
    return {
        "inputs": {"name": "Ada", "n": 3, "items": [1, 2, 3], "blob": "x" * 1000},
        "outputs": {"a": {"value": "v", "vars": {"k": [1, {"x": "y"}]}}},
        "vars": {"greeting": "{{ inputs.name }}", "loop": "{{ render(vars.loop) }}"},
        "bomb": ALIAS_BOMB,
        "t": KNOWN_TEMPLATES[45],
        "tmp": str(tmp),
        "@now": None,
    }


def judge_template(tally: Tally, template: str, context: dict[str, Any]) -> None:
    tally.bad_inputs += 1
    started = time.monotonic()
    rendered = False
    try:
        out: str = render(template, context)
        rendered = True
    except ExpressionError as exc:
        out = str(exc)  # may quote the template, so Python names in it are not an escape
    except Exception as exc:  # what the campaign looks for: anything but the promised error
        tally.unhandled.append(f"{template[:80]!r}: {type(exc).__name__}: {str(exc)[:120]}")
        out = ""
    took = time.monotonic() - started
    if took > TIMEOUT + GRACE:
        tally.hangs.append(f"{template[:80]!r}: {took:.2f} s")
    if tally.leaked(out, rendered=rendered):
        tally.escapes.append(f"{template[:80]!r} -> {out[:120]!r}")


_SCALAR = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(["0", "-1", "10000000", "99999999999999999999", "1e308", "2.5", "null", "true", "false"]),
    st.text(alphabet=string.printable.replace("'", "").replace("\\", ""), max_size=12).map(
        lambda s: f"'{s}'"
    ),
    st.sampled_from(["'\\ud800'", "'{{'", "'}}'", "'%s'", "'$ENV'", "'.*'", "'(a+)+$'", "'a' * 1000"]),
)
_PATH = st.sampled_from(
    [
        "inputs.name",
        "inputs.items",
        "inputs.blob",
        "outputs.a.vars",
        "outputs.a.value",
        "vars.greeting",
        "vars.loop",
        "inputs.missing.deeper",
        "outputs['a']['vars']['k'][1]",
        "bomb",
        "tmp",
    ]
)
_FILTERS = sorted(FILTERS)
_FUNCTIONS = sorted(GLOBALS)


@st.composite
def _expression(draw: st.DrawFn, depth: int = 0) -> str:
    choice = draw(st.integers(min_value=0, max_value=9 if depth < 3 else 2))
    if choice == 0:
        return draw(_SCALAR)
    if choice in (1, 2):
        return draw(_PATH)
    if choice == 3:
        items = draw(st.lists(_expression(depth + 1), max_size=3))
        return "[" + ", ".join(items) + "]"
    if choice == 4:
        keys = draw(st.lists(_SCALAR, max_size=2))
        values = [draw(_expression(depth + 1)) for _ in keys]
        return "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + "}"
    if choice in (5, 6):
        name = draw(st.sampled_from(_FILTERS))
        args = draw(st.lists(_expression(depth + 1), max_size=2))
        call = f"({', '.join(args)})" if args else ""
        return f"({draw(_expression(depth + 1))}) | {name}{call}"
    if choice == 7:
        name = draw(st.sampled_from(_FUNCTIONS))
        args = draw(st.lists(_expression(depth + 1), max_size=2))
        return f"{name}({', '.join(args)})"
    if choice == 8:
        op = draw(st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "==", "and", "or", "??", "in"]))
        return f"({draw(_expression(depth + 1))}) {op} ({draw(_expression(depth + 1))})"
    return f"({draw(_expression(depth + 1))}) ? ({draw(_expression(depth + 1))}) : ({draw(_SCALAR)})"


@st.composite
def _template(draw: st.DrawFn) -> str:
    kind = draw(st.integers(min_value=0, max_value=5))
    expr = draw(_expression())
    if kind == 0:
        return "{{ " + expr + " }}"
    if kind == 1:
        body = "{{ " + draw(st.sampled_from(["x", "loop.index", "x | json", "loop.length"])) + " }}"
        return "{% for x in " + expr + " %}" + body + "{% endfor %}"
    if kind == 2:
        return "{% set z = " + expr + " %}{{ z }}{{ z | length }}"
    if kind == 3:
        return "{% if " + expr + " %}yes{% else %}no{% endif %}"
    if kind == 4:  # raw fuzz: braces and keywords in any order
        pieces = draw(
            st.lists(st.sampled_from(["{{", "}}", "{%", "%}", "for", "in", "if", "x", "(", ")", "|", "'"]))
        )
        return " ".join(pieces)
    return "prefix {{ " + expr + " }} middle {{ " + draw(_expression()) + " }} suffix"


def expression_campaign(tally: Tally, tmp: Path, examples: int) -> None:
    context = _context(tmp)
    for template in KNOWN_TEMPLATES:
        judge_template(tally, template.replace("TMP", str(tmp)), context)

    explore(_template(), examples, lambda template: judge_template(tally, template, context))


# ================================================================== flows

FLOW_BASES = [p.read_text() for p in sorted((ROOT / "samples").glob("*.yaml"))]

KNOWN_FLOWS = [
    "",
    "null",
    "[]",
    "id: x",
    "id: x\nnamespace: y\ntasks: []",
    "id: x\nnamespace: y\ntasks:\n  - id: t\n    type: nope.Nope",
    "id: x\nnamespace: y\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.log.Log\n    message: '{{'",
    "id: x\nid: y\nnamespace: z\ntasks: []",
    "id: a\nnamespace: b\ntasks:\n  - &t {id: t, type: io.kestra.plugin.core.log.Log, message: m}\n  - *t",
    "id: ../../etc\nnamespace: ../..\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: m}",
    "!!python/object/apply:os.system ['echo pwned']",
    "id: x\nnamespace: y\ntasks: !!python/name:os.environ",
    "id: x\nnamespace: y\nvariables: {a: " + "[" * 2000 + "]" * 2000 + "}\ntasks: []",
    "id: x\nnamespace: y\ntasks:\n"
    + "".join(f"  - {{id: t{i}, type: io.kestra.plugin.core.log.Log, message: m}}\n" for i in range(3000)),
    "id: x\nnamespace: y\ninputs:\n  - {id: v, type: STRING, validator: '(a+)+$'}\ntasks: []",
    "id: x\nnamespace: y\ninputs:\n  - {id: v, type: STRING, validator: '(unclosed'}\ntasks: []",
    "id: \ud800\nnamespace: y\ntasks: []",
    "id: x\nnamespace: y\ntasks:\n  - {id: t, type: io.kestra.plugin.scripts.shell.Commands, commands: [ls],"
    " taskRunner: {type: io.kestra.plugin.ee.aws.runner.Batch, jobQueueArn: q, endpointOverride: 'http://169.254.169.254'}}",
    "id: x\nnamespace: y\ntasks:\n  - {id: t, type: io.kestra.plugin.scripts.shell.Commands, commands: [ls],"
    " taskRunner: {type: io.kestra.plugin.core.runner.Process, unknownOption: 1}}",
    "id: x\nnamespace: y\ntriggers:\n  - {id: s, type: io.kestra.plugin.core.trigger.Schedule,"
    " cron: '* * * * * * * *'}\ntasks: []",
    "\t\x00\x01",
    "id: x\nnamespace: y\ntasks:\n  - {id: t, type: io.kestra.plugin.core.flow.Sleep,"
    " duration: P99999999999D}",
    "id: x\nnamespace: y\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log,"
    " message: m, timeout: PT-1S}",
    "id: x\nnamespace: y\nretry: {type: constant, interval: PT0S, maxAttempts: 1000000000}\ntasks: []",
]

_YAML_NOISE = st.sampled_from(
    [
        "x",
        "{",
        "[",
        ": ",
        "- ",
        "&a ",
        "*a",
        "!!python/object:os.system",
        "\t",
        "'",
        '"',
        "\\ud800",
        "{{ secret('X') }}",
        "99999999999999999999999",
        "id",
        "tasks",
        "type",
        "\n  ",
        "\n",
        "null",
        "~",
        "<<: *a",
    ]
)


@st.composite
def _mutated_flow(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(FLOW_BASES))
    lines = base.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not lines:
            break
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        action = draw(st.integers(min_value=0, max_value=3))
        if action == 0:
            del lines[at]
        elif action == 1:
            lines.insert(at, "".join(draw(st.lists(_YAML_NOISE, min_size=1, max_size=5))))
        elif action == 2:
            cut = draw(st.integers(min_value=0, max_value=len(lines[at])))
            lines[at] = lines[at][:cut] + "".join(draw(st.lists(_YAML_NOISE, max_size=3))) + lines[at][cut:]
        else:
            lines.insert(at, lines[draw(st.integers(min_value=0, max_value=len(lines) - 1))])
    return "\n".join(lines)


def judge_flow(tally: Tally, source: str) -> None:
    tally.bad_inputs += 1
    started = time.monotonic()
    try:
        parse_flow(source, "campaign.yaml")
    except FlowValidationError as exc:
        if "campaign.yaml" not in str(exc):
            tally.unhandled.append(f"{source[:60]!r}: error does not name the file: {str(exc)[:100]}")
    except Exception as exc:
        tally.unhandled.append(f"{source[:60]!r}: {type(exc).__name__}: {str(exc)[:120]}")
    took = time.monotonic() - started
    if took > SLOW:
        tally.hangs.append(f"flow {source[:60]!r}: {took:.2f} s")


def flow_campaign(tally: Tally, examples: int) -> None:
    for source in KNOWN_FLOWS:
        judge_flow(tally, source)

    explore(_mutated_flow(), examples, lambda source: judge_flow(tally, source))


# ================================================================== inputs

INPUTS_FLOW = parse_flow(
    """
id: inputs
namespace: campaign
inputs:
  - {id: s, type: STRING, required: false, validator: '^(a+)+$'}
  - {id: i, type: INT, required: false, min: 0, max: 10}
  - {id: f, type: FLOAT, required: false}
  - {id: b, type: BOOLEAN, required: false}
  - {id: dt, type: DATETIME, required: false}
  - {id: d, type: DATE, required: false}
  - {id: t, type: TIME, required: false}
  - {id: dur, type: DURATION, required: false}
  - {id: j, type: JSON, required: false}
  - {id: y, type: YAML, required: false}
  - {id: u, type: URI, required: false}
  - {id: e, type: EMAIL, required: false}
  - {id: sec, type: SECRET, required: false}
  - {id: en, type: ENUM, values: [A, B], required: false}
  - {id: ms, type: MULTISELECT, values: [A, B], required: false}
  - {id: arr, type: ARRAY, itemType: INT, required: false}
  - {id: file, type: FILE, required: false}
tasks:
  - {id: t, type: io.kestra.plugin.core.log.Log, message: m}
""",
    "campaign-inputs.yaml",
)

_JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
        st.sampled_from(["a" * 40 + "!", "\ud800", "9" * 5000, "1e999999", "P99999999999999D", "2026-13-45"]),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def judge_inputs(tally: Tally, provided: Any) -> None:
    tally.bad_inputs += 1
    started = time.monotonic()
    try:
        resolve_inputs(INPUTS_FLOW, provided, typed=True)
    except InputError as exc:
        secret = provided.get("sec") if isinstance(provided, dict) else None
        if isinstance(secret, str) and len(secret) > 3 and secret in str(exc):
            tally.escapes.append(f"a SECRET input's value in the error: {str(exc)[:100]}")
    except Exception as exc:
        tally.unhandled.append(f"inputs {str(provided)[:60]!r}: {type(exc).__name__}: {str(exc)[:120]}")
    took = time.monotonic() - started
    if took > SLOW:
        tally.hangs.append(f"inputs {str(provided)[:60]!r}: {took:.2f} s")


def input_campaign(tally: Tally, examples: int) -> None:
    names = [spec.id for spec in INPUTS_FLOW.inputs or ()]

    explore(
        st.one_of(st.dictionaries(st.sampled_from(names), _JSONISH, max_size=6), _JSONISH),
        examples,
        lambda provided: judge_inputs(tally, provided),
    )


# ================================================================== the whole campaign


def run_campaign(
    tmp: Path,
    *,
    expressions: int = 1200,
    flows: int = 400,
    inputs: int = 300,
    http: Callable[[Tally], None] | None = None,
) -> Tally:
    tally = Tally()
    with planted(tmp):
        expression_campaign(tally, tmp, expressions)
        flow_campaign(tally, flows)
        input_campaign(tally, inputs)
        if http is not None:
            http(tally)
    return tally


def main() -> None:
    import tempfile

    from tests.security.http_campaign import http_campaign

    with tempfile.TemporaryDirectory(prefix="squall-campaign-") as tmp:
        started = time.monotonic()
        tally = run_campaign(Path(tmp), http=lambda t: http_campaign(t, Path(tmp)))
        print(f"campaign took {time.monotonic() - started:.0f} s")
        if not tally.ok():
            print(tally.details())
        print(tally.line())
        raise SystemExit(0 if tally.ok() else 1)


if __name__ == "__main__":
    main()

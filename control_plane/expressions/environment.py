"""The sandboxed Jinja environment that speaks Pebble: theory of operation.

Lexer
    Jinja's, plus one rule in tags for ``?``, ``??``, ``???`` and ``..`` (token type ``pebble_op``),
    and Pebble's ``{% verbatim %}...{% endverbatim %}`` read as Jinja's ``raw`` block.
Parser
    Jinja's, with Pebble's operators placed by precedence, loosest first::

        a ? b : c        ternary, right-associative, only the taken branch is evaluated
        a ?? b, a ??? b  null- and undefined-coalescing (CondExpr over the ``present``/``defined`` tests)
        or, and, not     Jinja's
        == equals != < contains in ...   comparisons (``equals``/``contains`` are Pebble's words)
        a .. b           Pebble's range, both ends included

    plus the ``null`` literal, and ``for`` loops over maps yield entries with ``key``/``value``.
Lookup
    ``a.b`` and ``a['b']`` read keys of any ``Mapping`` and indexes of any ``Sequence``; nothing
    else is reachable (no Python attribute, no method), so templates cannot escape the sandbox.
    Missing names and keys give a chainable strict undefined: navigating it is fine
    (``a.b.c is defined``), using it (printing, comparing, iterating, arithmetic) fails.
Context
    The caller's Mapping is used as is (never copied); functions come after it.
Limits
    Every render runs under a :mod:`~control_plane.expressions.limits` budget: loops, calls,
    filters and prints check the deadline; values an operation returns, and the output, are
    checked by size. ``~`` joins through :meth:`PebbleEnvironment.tilde` (a code generator
    hook) so it is bounded like ``+``.
"""

from __future__ import annotations

import functools
import operator
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import CodeType
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.lexer import TOKEN_OPERATOR, Lexer, _Rule
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from control_plane.errors import ExpressionError, ExpressionLimitError, ExpressionSecurityError
from control_plane.expressions import limits, seeded
from control_plane.expressions.display import MapEntry, check_data, to_display
from control_plane.expressions.filters import (
    FILTERS,
    TESTS,
    _text,  # a value as text, undefined ones failing
)
from control_plane.expressions.functions import GLOBALS

__all__ = ["PebbleEnvironment", "fingerprint", "install", "is_compiled", "keep_tree", "render", "take_fresh"]

_PEBBLE_OP = "pebble_op"
_MAX_TEMPLATE_IN_MESSAGE = 300

# Pebble's loop variable is zero-based; Jinja's ``loop.index`` is one-based.
_LOOP_FIELDS: dict[str, Callable[[LoopContext], Any]] = {
    "index": lambda loop: loop.index0,
    "index0": lambda loop: loop.index0,
    "revindex": lambda loop: loop.revindex0,
    "revindex0": lambda loop: loop.revindex0,
    "first": lambda loop: loop.first,
    "last": lambda loop: loop.last,
    "length": lambda loop: loop.length,
    "depth": lambda loop: loop.depth0,
}


class PebbleUndefined(ChainableUndefined, StrictUndefined):
    """Strict when used, chainable when only navigated, as Pebble's strict variables are."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        # Built lazily: most undefined values only feed ``is defined`` or ``??``.
        if self._undefined_hint:
            return self._undefined_hint
        name, owner = self._undefined_name, self._undefined_obj
        if owner is missing:
            return f"'{name}' is undefined"
        if isinstance(owner, Mapping):
            keys = ", ".join(str(k) for k, _ in zip(owner, range(10), strict=False))
            more = ", ..." if len(owner) > 10 else ""
            return f"'{name}' is undefined: no such key in the map (keys: {keys}{more})"
        if isinstance(owner, Sequence) and not isinstance(owner, str):
            return f"'{name}' is undefined: index out of range for a list of {len(owner)}"
        return f"'{name}' is undefined: a {_kind(owner)} value has no keys"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


class _Lexer(Lexer):
    """Jinja's lexer, with ``?``, ``??`` and ``???`` recognized inside tags."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        # Pebble spells Jinja's ``raw`` block ``verbatim``: both open and close the literal block
        for rules in self.rules.values():
            for i, existing in enumerate(rules):
                pattern = existing.pattern.pattern
                if r"\s*raw\s*" in pattern or r"\s*endraw\s*" in pattern:
                    pattern = pattern.replace(r"\s*raw\s*", r"\s*(?:raw|verbatim)\s*")
                    pattern = pattern.replace(r"\s*endraw\s*", r"\s*(?:endraw|endverbatim)\s*")
                    rules[i] = _Rule(
                        re.compile(pattern, existing.pattern.flags), existing.tokens, existing.command
                    )
        rule = _Rule(re.compile(r"\?\?\?|\?\?|\?|\.\.(?!\.)"), _PEBBLE_OP, None)
        for state, rules in self.rules.items():
            for i, existing in enumerate(rules):
                if existing.tokens == TOKEN_OPERATOR:
                    self.rules[state] = [*rules[:i], rule, *rules[i:]]
                    break

    def wrap(self, stream: Any, name: str | None = None, filename: str | None = None) -> Any:
        """Jinja's token conversion, after Pebble's string interpolation is rewritten."""
        return super().wrap(_two_word_tests(self._interpolate(stream, name, filename)), name, filename)

    def _interpolate(self, stream: Any, name: str | None, filename: str | None) -> Any:
        """Pebble interpolates ``#{expr}`` in double-quoted strings: ``"a#{x}b"`` is read as
        ``("a" ~ (x) ~ "b")``. Single-quoted strings stay literal, as in Pebble."""
        for lineno, token, value in stream:
            if token != "string" or not value.startswith('"') or "#{" not in value:
                yield lineno, token, value
                continue
            parts = _interpolation_parts(value[1:-1])
            if parts is None:  # an unclosed ``#{``: Pebble fails, so does the literal check below
                raise TemplateSyntaxError("unclosed #{ in a string", lineno, name, filename)
            yield lineno, "operator", "("
            for index, (literal, code) in enumerate(parts):
                if index:
                    yield lineno, "operator", "~"
                if literal:
                    yield lineno, "string", f'"{code}"'
                    continue
                yield lineno, "operator", "("
                inner = list(self.tokeniter("{{ " + code + " }}", name, filename))
                for _, inner_token, inner_value in inner[1:-1]:
                    yield lineno, inner_token, inner_value
                yield lineno, "operator", ")"
            yield lineno, "operator", ")"


_TWO_WORD_TESTS = {("divisible", "by"): "divisibleby", ("same", "as"): "sameas"}


def _two_word_tests(stream: Any) -> Any:
    """Pebble (like Twig) also spells two tests in two words: ``is divisible by(3)``,
    ``is not same as(x)``; they are read as ``divisibleby`` and ``sameas``."""
    tokens = list(stream)
    significant = [i for i, (_, token, _) in enumerate(tokens) if token != "whitespace"]
    skip: set[int] = set()
    for k in range(1, len(significant) - 1):
        before, here, after = (tokens[significant[k + d]] for d in (-1, 0, 1))
        merged = _TWO_WORD_TESTS.get((here[2], after[2]))
        if merged and here[1] == after[1] == before[1] == "name" and before[2] in ("is", "not"):
            tokens[significant[k]] = (here[0], "name", merged)
            skip.add(significant[k + 1])
    return (token for i, token in enumerate(tokens) if i not in skip)


def _interpolation_parts(body: str) -> list[tuple[bool, str]] | None:
    """``a#{x}b`` -> [(literal, "a"), (code, "x"), (literal, "b")]; None if a ``#{`` never closes."""
    parts: list[tuple[bool, str]] = []
    i = start = 0
    while i < len(body):
        if body.startswith("#{", i):
            if i > start:
                parts.append((True, body[start:i]))
            depth, j = 1, i + 2
            while j < len(body) and depth:
                depth += {"{": 1, "}": -1}.get(body[j], 0)
                j += 1
            if depth:
                return None
            parts.append((False, body[i + 2 : j - 1]))
            i = start = j
        else:
            i += 2 if body[i] == "\\" else 1
    if start < len(body) or not parts:
        parts.append((True, body[start:]))
    return parts


class _Parser(Parser):
    """Pebble's operators on top of Jinja's grammar; see the module docstring for precedence."""

    def parse_expression(self, with_condexpr: bool = True) -> nodes.Expr:
        return self.parse_condexpr() if with_condexpr else self.parse_coalesce()

    def parse_condexpr(self) -> nodes.Expr:
        lineno = self.stream.current.lineno
        expr = self.parse_coalesce()
        if self.stream.skip_if(f"{_PEBBLE_OP}:?"):
            then = self.parse_condexpr()
            self.stream.expect("colon")
            return nodes.CondExpr(expr, then, self.parse_condexpr(), lineno=lineno)
        while self.stream.skip_if("name:if"):  # Jinja's ``a if c else b`` keeps working
            test = self.parse_coalesce()
            otherwise = self.parse_condexpr() if self.stream.skip_if("name:else") else None
            expr = nodes.CondExpr(test, expr, otherwise, lineno=lineno)
            lineno = self.stream.current.lineno
        return expr

    def parse_coalesce(self) -> nodes.Expr:
        lineno = self.stream.current.lineno
        left = self.parse_or()
        while self.stream.current.type == _PEBBLE_OP and self.stream.current.value in ("??", "???"):
            test = "present" if next(self.stream).value == "??" else "defined"
            right = self.parse_or()
            present = nodes.Test(left, test, [], [], None, None, lineno=lineno)
            left = nodes.CondExpr(present, left, right, lineno=lineno)
        return left

    def parse_compare(self) -> nodes.Expr:
        lineno = self.stream.current.lineno
        expr = self.parse_range()
        ops: list[nodes.Operand] = []
        while True:
            token = self.stream.current
            if token.type in ("eq", "ne", "lt", "lteq", "gt", "gteq"):
                next(self.stream)
                ops.append(nodes.Operand(token.type, self.parse_range()))
            elif self.stream.skip_if("name:equals"):
                ops.append(nodes.Operand("eq", self.parse_range()))
            elif self.stream.skip_if("name:in"):
                ops.append(nodes.Operand("in", self.parse_range()))
            elif token.test("name:not") and self.stream.look().test("name:in"):
                self.stream.skip(2)
                ops.append(nodes.Operand("notin", self.parse_range()))
            elif self.stream.skip_if("name:contains"):
                left = nodes.Compare(expr, ops, lineno=lineno) if ops else expr
                expr, ops = nodes.Compare(self.parse_range(), [nodes.Operand("in", left)], lineno=lineno), []
            else:
                break
            lineno = self.stream.current.lineno
        return nodes.Compare(expr, ops, lineno=lineno) if ops else expr

    def parse_range(self) -> nodes.Expr:
        """Pebble's range operator: ``1..3`` is ``range(1, 3)`` (both ends included)."""
        lineno = self.stream.current.lineno
        left = self.parse_math1()
        if self.stream.skip_if(f"{_PEBBLE_OP}:.."):
            right = self.parse_math1()
            return nodes.Filter(left, "_range_to", [right], [], None, None, lineno=lineno)
        return left

    def parse_primary(self, *args: Any, **kwargs: Any) -> nodes.Expr:
        token = self.stream.current
        if token.test("name:null"):
            next(self.stream)
            return nodes.Const(None, lineno=token.lineno)
        return super().parse_primary(*args, **kwargs)

    def parse_if(self) -> nodes.If:
        """Jinja's ``if``, also closing a branch on Pebble's ``elseif`` (Jinja spells it ``elif``)."""
        node = result = nodes.If(lineno=self.stream.expect("name:if").lineno)
        while True:
            node.test = self.parse_tuple(with_condexpr=False)
            node.body = self.parse_statements(("name:elif", "name:elseif", "name:else", "name:endif"))
            node.elif_ = []
            node.else_ = []
            token = next(self.stream)
            if token.test("name:elif") or token.test("name:elseif"):
                node = nodes.If(lineno=self.stream.current.lineno)
                result.elif_.append(node)
                continue
            if token.test("name:else"):
                result.else_ = self.parse_statements(("name:endif",), drop_needle=True)
            break
        return result

    def parse_for(self) -> nodes.For:
        node = super().parse_for()
        node.iter = nodes.Filter(node.iter, "_entries", [], [], None, None, lineno=node.lineno)
        return node


class _Ticking(Sequence[Any]):
    """A loop's items, checking the render's deadline before each one."""

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]

    def __iter__(self) -> Any:
        tick = limits.tick
        for item in self._items:
            tick()
            yield item


def _entries(value: Any) -> Any:
    """Pebble iterates a map as entries (``entry.key``/``entry.value``; ``k, v`` unpacking works)."""
    if isinstance(value, Mapping):
        return _Ticking([MapEntry((k, v)) for k, v in value.items()])
    if isinstance(value, Sequence):
        return _Ticking(value)
    return value


class _Context(Context):
    """The caller's Mapping first, the functions after it; ``@`` keys are only for functions."""

    def resolve_or_missing(self, key: str) -> Any:
        if self.vars and key in self.vars:
            return self.vars[key]
        try:  # one read: ``in`` then ``[]`` would compute a lazy Mapping's value twice
            return self.parent[key]
        except KeyError:
            return GLOBALS.get(key, missing)


def _finalize(value: Any) -> str:
    """Every ``{{ }}`` prints through ``to_display``; functions and Jinja internals never print."""
    if type(value) is not str:
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        value = to_display(limits.check_value(check_data(value), "the printed value"))
    limits.charge_print(len(value))
    return value


def _repeat(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if isinstance(times, int) and not isinstance(times, bool):
            if isinstance(seq, str):
                limits.check_string(len(seq) * times, "the result of *")
            elif isinstance(seq, list | tuple):
                limits.check_items(len(seq) * times, "the result of *")
                return limits.check_value(seq * times, "the result of *")
    if isinstance(left, int) and isinstance(right, int):
        limits.check_bits(left.bit_length() + right.bit_length(), "the result of *")
    return left * right


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        limits.check_bits((left.bit_length() - 1) * right, "the result of **")
    return left**right


def _divide(left: Any, right: Any) -> Any:
    """Pebble divides two integers like Java: truncating toward zero."""
    if type(left) is int and type(right) is int:
        quotient = abs(left) // abs(right)
        return quotient if (left >= 0) == (right >= 0) else -quotient
    return left / right


def _modulo(left: Any, right: Any) -> Any:
    """Pebble's ``%`` is the remainder only: Python's ``'%s' % x`` string formatting is not reachable."""
    if isinstance(left, str | bytes) or not isinstance(left, int | float | Decimal):
        raise ExpressionError(f"'%' needs two numbers, got {to_display(left)!r}")
    if type(left) is int and type(right) is int:
        return left - right * _divide(left, right)
    return left % right


def _add(left: Any, right: Any) -> Any:
    """Pebble's ``+`` concatenates as soon as one side is a string."""
    if isinstance(left, str) or isinstance(right, str):
        left_text, right_text = to_display(left), to_display(right)
        limits.check_string(len(left_text) + len(right_text), "the result of +")
        return left_text + right_text
    result = left + right
    if isinstance(result, list | tuple):
        return limits.check_value(result, "the result of +")
    return limits.check_int(result) if type(result) is int else result


def _tilde(parts: Sequence[Any]) -> str:
    """Jinja's ``~``: every operand as text, joined; bounded like ``+``."""
    texts = [part if type(part) is str else _text(part) for part in parts]
    limits.check_string(sum(map(len, texts)), "the result of ~")
    return "".join(texts)


def _guarded(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``function`` as templates call it: after the deadline check, its result checked by size."""

    @functools.wraps(function)  # keeps Jinja's pass_context marks, if a filter ever has one
    def call(*args: Any, **kwargs: Any) -> Any:
        limits.tick()
        return limits.check_value(function(*args, **kwargs), f"the result of {name}")

    return call


class _CodeGenerator(CodeGenerator):
    """Jinja's compiler, with ``~`` routed through the environment so its size is checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.tilde((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class PebbleEnvironment(SandboxedEnvironment):
    """Attribute access reads map keys and list indexes only: Python objects stay out of reach."""

    intercepted_binops = frozenset({"+", "*", "**", "/", "%"})
    context_class = _Context
    code_generator_class = _CodeGenerator

    _binops: dict[str, Callable[[Any, Any], Any]] = {
        "+": _add,
        "*": _repeat,
        "**": _power,
        "/": _divide,
        "%": _modulo,
        "-": operator.sub,
        "//": operator.floordiv,
    }

    def __init__(self) -> None:
        super().__init__(
            undefined=PebbleUndefined,
            finalize=_finalize,
            autoescape=False,
            keep_trailing_newline=True,
            cache_size=0,  # we cache compiled templates ourselves, by source
        )
        self.globals.clear()
        self.globals.update(GLOBALS)
        self.filters.clear()
        self.filters.update({name: _guarded(f, name) for name, f in FILTERS.items()})
        self.filters["_entries"] = _entries
        self.filters["_range_to"] = _guarded(GLOBALS["range"], "..")
        self.tests.clear()  # Pebble's and Kestra's tests only: see expressions/catalog.py
        self.tests.update(TESTS)
        self.tilde = _tilde
        self._pebble_lexer = _Lexer(self)

    @property
    def lexer(self) -> Lexer:
        return self._pebble_lexer

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Parser(self, source, name, filename).parse()

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return self._binops[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every function and macro call: after the deadline check, its result checked by size."""
        limits.tick()
        result = super().call(__context, __obj, *args, **kwargs)
        return limits.check_value(result, "the result of a call")

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                pass
            if isinstance(argument, str) and argument.startswith("__"):
                return self.undefined(obj=obj, name=argument, exc=SecurityError)
            return self.undefined(obj=obj, name=argument)
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, Sequence):
            if isinstance(argument, int | slice) and not isinstance(argument, bool):
                try:
                    return obj[argument]
                except IndexError:
                    return self.undefined(obj=obj, name=str(argument))
            if isinstance(obj, MapEntry) and argument in ("key", "value"):
                return obj[argument == "value"]
        elif isinstance(obj, LoopContext) and argument in _LOOP_FIELDS:
            return _LOOP_FIELDS[argument](obj)
        if isinstance(argument, str) and argument.startswith("_"):
            return self.undefined(
                f"access to '{argument}' of a {_kind(obj)} value is not allowed",
                obj=obj,
                name=argument,
                exc=SecurityError,
            )
        return self.undefined(obj=obj, name=argument)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:  # the common case, first
            value = obj.get(attribute, missing)
            if value is not missing:
                return value
        return self.getitem(obj, attribute)

    def render_string(self, source: str, context: Mapping[str, Any]) -> str:
        """Render ``source`` against ``context`` (used by ``render()`` inside templates)."""
        return render(source, context)


_ENV = PebbleEnvironment()


#: Compiled templates by source, the oldest dropped past the bound (a long-lived server).
_TEMPLATES: dict[str, Any] = {}
#: Trees :func:`parse_tree` made for a load-time check and nothing compiled yet: compiling one
#: reuses it (a parse is ~0.25 ms of a template's ~1 ms). Taken when compiled, as Jinja's
#: constant folding rewrites the tree it compiles.
_TREES: dict[str, nodes.Template] = {}
#: Code objects compiled by this process and not loaded: what a code cache may store.
_FRESH: dict[str, CodeType] = {}
_MAX_CACHED = 4096
_LOCK = threading.Lock()  # the server renders on several threads


def _bounded_put(cache: dict[str, Any], key: str, value: Any) -> None:
    with _LOCK:
        if len(cache) >= _MAX_CACHED:
            cache.pop(next(iter(cache)), None)
        cache[key] = value


def keep_tree(source: str, tree: nodes.Template) -> None:
    """Keep the tree a load-time check parsed from ``source`` (once done reading it): a later
    render of the same source compiles this tree instead of parsing the text again."""
    if source not in _TEMPLATES:
        _bounded_put(_TREES, source, tree)


def _compile(source: str) -> Any:
    template = _TEMPLATES.get(source)
    if template is None:
        tree = _TREES.pop(source, None)
        code = _ENV.compile(source if tree is None else tree)
        template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)
        _bounded_put(_FRESH, source, code)
        _bounded_put(_TEMPLATES, source, template)
    return template


def install(source: str, code: CodeType) -> None:
    """Use ``code`` (what :func:`compiled_code` gave for ``source``, maybe in another process)
    as the compiled form of ``source``: a code cache's way in."""
    if source not in _TEMPLATES:
        template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)
        _bounded_put(_TEMPLATES, source, template)
        _TREES.pop(source, None)


def is_compiled(source: str) -> bool:
    return source in _TEMPLATES


def take_fresh() -> dict[str, CodeType]:
    """The code objects compiled since the last call (and not installed): for a code cache to store."""
    with _LOCK:
        fresh = dict(_FRESH)
        _FRESH.clear()
    return fresh


def fingerprint() -> str:
    """What a compiled template's code depends on besides its source: Jinja's and Python's
    versions, this module's code generator, and the names of the filters and tests it binds."""
    import hashlib
    import importlib.util

    import jinja2

    digest = hashlib.sha256()
    digest.update(jinja2.__version__.encode())
    digest.update(importlib.util.MAGIC_NUMBER)
    digest.update(Path(__file__).read_bytes())
    for names in (_ENV.filters, _ENV.tests, _ENV.globals):
        digest.update("\0".join(sorted(names)).encode() + b"\1")
    return digest.hexdigest()[:24]


def _quote(template: str) -> str:
    if len(template) > _MAX_TEMPLATE_IN_MESSAGE:
        template = template[:_MAX_TEMPLATE_IN_MESSAGE] + "..."
    return f'"{template}"'


def _render(template: str, context: Mapping[str, Any]) -> str:
    with limits.budget() as budget, seeded.render_scope(template):
        compiled = _compile(template)
        pieces: list[str] = []
        size, most = 0, budget.limits.max_output
        for piece in compiled.root_render_func(
            _Context(_ENV, context, None, compiled.blocks)  # type: ignore[arg-type]  # a Mapping: never copied
        ):
            size += len(piece)
            if size > most:
                raise ExpressionLimitError(
                    f"the output would exceed {most} characters (SQUALL_EXPRESSION_MAX_OUTPUT)"
                )
            pieces.append(piece)
        return "".join(pieces)


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one template against ``context`` (any Mapping, used as is, never copied).

    Called by :func:`control_plane.expressions.render`, which has already returned strings
    that are not templates. Every failure is an ``ExpressionError`` quoting the template.
    """
    try:
        return _render(template, context)
    except SecurityError as exc:
        raise ExpressionSecurityError(f"Unable to render {_quote(template)}: {exc}") from None
    except TemplateSyntaxError as exc:
        raise ExpressionError(
            f"Unable to parse {_quote(template)}: {exc.message} (line {exc.lineno})"
        ) from None
    except ExpressionError as exc:
        raise type(exc)(f"Unable to render {_quote(template)}: {exc}") from None
    except RecursionError:
        raise ExpressionError(f"Unable to render {_quote(template)}: expression nested too deeply") from None
    except MemoryError:
        raise ExpressionLimitError(f"Unable to render {_quote(template)}: out of memory") from None
    except Exception as exc:  # a user's expression failing is reported, never a crash
        raise ExpressionError(f"Unable to render {_quote(template)}: {exc}") from None

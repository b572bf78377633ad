"""The sandboxed Jinja environment with Pebble's ``?:`` and ``??`` operators."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, nodes
from jinja2.lexer import TOKEN_OPERATOR, Lexer
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from control_plane.errors import ExpressionError, ExpressionSecurityError
from control_plane.expressions.display import to_display
from control_plane.expressions.functions import FILTERS, GLOBALS, TESTS

__all__ = ["render", "render_value"]

_PEBBLE_OP = "pebble_op"
_PEBBLE_RE = re.compile(r"\?\?|\?")


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict when used (printed, compared, iterated), chainable when only navigated."""

    __slots__ = ()


class _Lexer(Lexer):
    """Jinja's lexer, plus ``?`` and ``??`` tokens inside tags."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        rule = type(next(iter(self.rules.values()))[0])(_PEBBLE_RE, _PEBBLE_OP, None)
        for state, rules in self.rules.items():
            for i, existing in enumerate(rules):
                if existing.tokens == TOKEN_OPERATOR:
                    self.rules[state] = [*rules[:i], rule, *rules[i:]]
                    break


class _Parser(Parser):
    """Pebble's ternary (lowest, right-associative) and ``??`` (just above it)."""

    def parse_condexpr(self) -> nodes.Expr:
        lineno = self.stream.current.lineno
        expr = self.parse_coalesce()
        if self.stream.current.test(f"{_PEBBLE_OP}:?"):
            next(self.stream)
            then = self.parse_condexpr()
            self.stream.expect("colon")
            otherwise = self.parse_condexpr()
            return nodes.CondExpr(expr, then, otherwise, lineno=lineno)
        while self.stream.skip_if("name:if"):
            test = self.parse_or()
            otherwise = self.parse_condexpr() if self.stream.skip_if("name:else") else None
            expr = nodes.CondExpr(test, expr, otherwise, lineno=lineno)
        return expr

    def parse_coalesce(self) -> nodes.Expr:
        lineno = self.stream.current.lineno
        left = self.parse_or()
        while self.stream.current.test(f"{_PEBBLE_OP}:??"):
            next(self.stream)
            right = self.parse_or()
            present = nodes.Test(left, "present", [], [], None, None, lineno=lineno)
            left = nodes.CondExpr(present, left, right, lineno=lineno)
        return left


class _Environment(SandboxedEnvironment):
    """Attribute access reads map keys and list indexes only: Python objects stay out of reach."""

    @property
    def lexer(self) -> Lexer:  # type: ignore[override]
        return _lexer(self)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Parser(self, source, name, filename).parse()

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        if isinstance(obj, Sequence) and isinstance(argument, int | slice) and not isinstance(argument, bool):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(obj=obj, name=str(argument))
        return self.undefined(
            f"{argument!r} is not a key of a {type(obj).__name__} value", obj=obj, name=str(argument)
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping | Undefined):
            return self.getitem(obj, attribute)
        if attribute.startswith("_"):
            return self.undefined(
                f"access to {attribute!r} is not allowed", name=attribute, exc=SecurityError
            )
        return self.undefined(
            f"{attribute!r} is not a key of a {type(obj).__name__} value", obj=obj, name=attribute
        )


@lru_cache(maxsize=1)
def _lexer(env: _Environment) -> Lexer:
    return _Lexer(env)


def _finalize(value: Any) -> Any:
    return value if isinstance(value, str) else to_display(value)


_ENV = _Environment(undefined=_Undefined, finalize=_finalize, autoescape=False, keep_trailing_newline=True)
_ENV.globals.clear()
_ENV.globals.update(GLOBALS)
_ENV.filters.update(FILTERS)
_ENV.tests.update(TESTS)


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _ENV.from_string(source)


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one template; any failure is an ExpressionError that quotes the template."""
    if "{" not in template or ("{{" not in template and "{%" not in template and "{#" not in template):
        return template
    try:
        return _compile(template).render(context)
    except SecurityError as exc:
        raise ExpressionSecurityError(f"Unable to render {template!r}: {exc}") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, AttributeError, RecursionError) as exc:
        if isinstance(exc, ExpressionError):
            raise
        raise ExpressionError(f"Unable to render {template!r}: {exc}") from None


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in a structure (map keys too); other scalars stay as they are."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {render(str(k), context): render_value(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context) for v in value]
    return value

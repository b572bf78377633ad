"""What every route needs: its runtime, and from the raw event the body, its type, repeated parameters.

A route takes its runtime as a parameter, ``rt: common.Served``: powertools' dependency
injection calls :func:`served_runtime`, which reads the runtime :class:`~control_plane.api.app.Api`
put in the request's resolver context. No route finds a runtime anywhere else.

Bodies are read here rather than through powertools' ``Body()`` parameters because the API
takes YAML and multipart as well as JSON, and because each way a body can be wrong has its
own status with a message that says how to fix it: 400 for bytes that do not parse (with the
JSON parser's line and column), 415 for a content type the route does not take (naming the
ones it does), 413 for a body over ``max_body_bytes`` (checked before any route runs).

API Gateway base64-encodes bodies it considers binary (``isBase64Encoded``); they are decoded
to bytes here, never to text first, so a file upload survives byte for byte.

JSON is refused (400) when it nests deeper than ``MAX_JSON_DEPTH`` or holds a lone UTF-16
surrogate (``"\ud800"``): the first would exhaust the recursion of whatever later walks the
value (the store's encoder, the views), the second cannot be written as UTF-8; either way the
execution it started could never be read back.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.request import Request
from msgspec import Struct, field

from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.runtime import Runtime

__all__ = [
    "MAX_JSON_DEPTH",
    "RUNTIME_KEY",
    "ApiError",
    "FormPart",
    "JsonRefused",
    "Served",
    "body_bytes",
    "body_size",
    "body_text",
    "cursor_errors",
    "header",
    "json_body",
    "json_problem",
    "media_type",
    "multipart",
    "parse_json",
    "query_values",
    "require_media_type",
    "served_runtime",
]

RUNTIME_KEY = "squall.runtime"
"""The resolver-context key under which :meth:`control_plane.api.app.Api.handle` passes its runtime."""


def served_runtime(request: Request) -> Runtime:
    """The runtime of the :class:`~control_plane.api.app.Api` serving this request (a route dependency)."""
    rt: Runtime | None = request.context.get(RUNTIME_KEY)
    if rt is None:
        raise RuntimeError("no runtime for this request: resolve it through Api.handle")
    return rt


Served = Annotated[Runtime, Depends(served_runtime)]
"""A route parameter receiving the runtime its request is served by."""


class ApiError(Exception):
    """A request the API refuses: becomes ``status`` with ``{"message": ..., **extra}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def body_size(event: Mapping[str, Any]) -> int:
    """The decoded size of the body in bytes, without decoding it (the 413 check runs first)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4 - body[-2:].count("=")
    return len(body.encode("utf-8", "surrogatepass"))


def body_bytes(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return body.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the request body is marked isBase64Encoded but is not valid base64") from None


def body_text(event: Mapping[str, Any]) -> str:
    """The body as UTF-8 text (a BOM is dropped); 400 when the bytes are not UTF-8."""
    raw = body_bytes(event)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the request body is not valid UTF-8 (byte {exc.start})") from None


def media_type(event: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """``("application/json", {"charset": "utf-8"})`` from the Content-Type header; ``""`` when absent."""
    raw = header(event, "content-type") or ""
    kind, _, rest = raw.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, sep, value = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


def require_media_type(event: Mapping[str, Any], accepted: Sequence[str], *, empty_ok: bool = False) -> str:
    """The request's media type if the route takes it, else 415 naming the accepted ones.

    With ``empty_ok`` a request without a body needs no Content-Type (starting a flow that has
    no inputs is a bare POST).
    """
    kind, _ = media_type(event)
    if empty_ok and not event.get("body"):
        return kind
    if kind not in accepted:
        got = f"'{kind}'" if kind else "no Content-Type"
        raise ApiError(
            415,
            f"unsupported media type: {got}; this endpoint accepts {', '.join(accepted)}",
            extra={"accepted": list(accepted)},
        )
    return kind


MAX_JSON_DEPTH = 64  # arrays and objects nested in a request body; Kestra's own flows need a handful
_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_problem(value: Any) -> str | None:
    """Why a parsed JSON value cannot be accepted (too deep, a lone surrogate), or None.

    Iterative, so it walks values of any depth without recursion of its own.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "it holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text"
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return f"it nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((key, depth + 1) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


class JsonRefused(ValueError):
    """Valid JSON that Squall does not take: nested too deep, or a lone surrogate."""


def parse_json(text: str) -> Any:
    """``json.loads`` without NaN/Infinity, bounded in depth, text only.

    Malformed JSON raises JSONDecodeError (line and column), NaN/Infinity a ValueError, and
    JSON refused by :func:`json_problem` a :class:`JsonRefused`.
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # the C parser's own limit (about 1,000 levels) comes before ours
        raise JsonRefused(f"it nests arrays and objects deeper than {MAX_JSON_DEPTH} levels") from None
    problem = json_problem(value)
    if problem is not None:
        raise JsonRefused(problem)
    return value


def json_body(event: Mapping[str, Any]) -> Any:
    """The parsed JSON body (None when empty); 400 with the parser's line and column when malformed."""
    text = body_text(event)
    if not text.strip():
        return None
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}",
            extra={"line": exc.lineno, "column": exc.colno},
        ) from None
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None


class FormPart(Struct, frozen=True):
    """One part of a multipart/form-data body: a field (``filename`` None) or a file."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, f"form field {self.name!r} is not valid UTF-8 text") from None


def multipart(event: Mapping[str, Any]) -> list[FormPart]:
    """The parts of a multipart/form-data body, in order; 400 when it cannot be parsed.

    Parsed with the standard library's MIME parser (imported here: most requests never need it).
    """
    from email.parser import BytesParser
    from email.policy import HTTP

    _, params = media_type(event)
    boundary = params.get("boundary")
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary parameter in the Content-Type")
    raw = body_bytes(event)
    if raw.strip() in (b"", f"--{boundary}--".encode()):
        return []  # a form with no field (a browser's empty FormData): Kestra takes it as no inputs
    head = f'Content-Type: multipart/form-data; boundary="{boundary}"\r\nMIME-Version: 1.0\r\n\r\n'
    message = BytesParser(policy=HTTP).parsebytes(head.encode("latin-1") + raw)
    if not message.is_multipart() or message.defects:
        raise ApiError(400, "malformed multipart/form-data body")
    parts: list[FormPart] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "a multipart/form-data part has no name in its Content-Disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        ctype = part.get("content-type")
        parts.append(FormPart(name, content, filename, str(ctype) if ctype else None))
    return parts


def query_values(event: Mapping[str, Any], name: str) -> list[str]:
    """Every value of a repeated query parameter, from ``rawQueryString``.

    API Gateway joins repeats with commas in ``queryStringParameters``, which cannot tell
    ``labels=a:1,2`` from ``labels=a:1&labels=2``; the raw query string can.
    """
    raw = event.get("rawQueryString") or ""
    return [value for key, value in parse_qsl(raw, keep_blank_values=True) if key == name]


@contextlib.contextmanager
def cursor_errors(cursor: str | None) -> Iterator[None]:
    """A store that cannot read a page cursor says so with a plain StoreError: 422 naming ``cursor``.

    Without a cursor the same error is the store failing, which stays a 500.
    """
    try:
        yield
    except (ConflictError, NotFoundError):
        raise
    except StoreError as exc:
        if cursor is None:
            raise
        raise ApiError(
            422,
            f"invalid query parameter 'cursor': {exc}",
            extra={"errors": [{"name": "cursor", "in": "query", "message": str(exc)}]},
        ) from None

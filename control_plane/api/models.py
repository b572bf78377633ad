"""Request and response bodies of the HTTP API that are not views of a stored record.

Every error is one JSON shape, ``{"message": ...}`` plus fields that locate the problem
(``errors`` for flow validation and query parameters, ``line``/``column`` for malformed JSON,
``executionId`` for a replayed webhook), so a client needs one error decoder. The OpenAPI
document served at ``/openapi.json`` is generated from these models and the views.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "InputProblem",
    "ParameterError",
    "Violation",
    "WebhookAccepted",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Violation(_Model):
    """One problem in a deployed flow, 1-based ``line``/``column`` into the YAML that was sent."""

    line: int
    column: int
    path: str
    message: str


class ParameterError(_Model):
    """A query or path parameter that does not validate; ``in`` is ``query`` or ``path``."""

    name: str
    in_: str = Field(alias="in")
    message: str


class InputProblem(_Model):
    """One rejected execution input, in Kestra's wording."""

    message: str


class ErrorBody(_Model):
    """Every 4xx and 5xx response (documents the shape; the handlers build it as a dict).

    ``errors`` lists flow violations, bad parameters or bad inputs; other fields say where
    the problem is: ``line``/``column`` (malformed JSON), ``executionId`` (replayed webhook),
    ``accepted`` (415), ``requestId`` (500), ``size``/``limit`` (a response too large to send).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    message: str
    errors: list[Violation | ParameterError | InputProblem] | None = None
    line: int | None = None
    column: int | None = None
    executionId: str | None = None
    accepted: list[str] | None = None
    requestId: str | None = None
    size: int | None = None
    limit: int | None = None


class WebhookAccepted(_Model):
    """What an unauthenticated webhook caller learns: the id to quote, not the execution's data."""

    id: str
    namespace: str
    flowId: str
    state: str

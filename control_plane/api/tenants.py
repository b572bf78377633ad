"""Kestra's tenant segment (``/api/v1/{tenant}/...``): one tenant, ``main``, decided in one place.

Kestra's open-source edition serves a single tenant named ``main``, and its clients put it in
every path. Squall has no tenants either, so ``main`` is the only one it serves; any other
name is a 404 that says so (``{"message": "tenant 'acme' not found: ..."}``), before the route
reads anything. Mapping other tenant names onto namespaces was considered and left out: a
tenant is a whole namespace tree in Kestra, and a prefix mapping would make the same flow
reachable under two names, with two sets of executions to search.

Every tenant-scoped route is declared with :data:`SCOPED` (``**tenants.SCOPED`` in its
decorator), which adds :func:`guard` as its middleware and the ``kestra`` tag;
``tests/integration/test_kestra_client.py`` checks that no ``{tenant}`` route lacks it.

Errors on these routes also carry Micronaut's error envelope, which Kestra sends
(``_links.self.href`` and ``_embedded.errors[].message``) next to Squall's ``message``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response

from control_plane.api import common

__all__ = ["DEFAULT_TENANT", "SCOPED", "guard", "is_scoped", "kestra_envelope"]

DEFAULT_TENANT = "main"


def guard(app: Any, next_middleware: Callable[[Any], Response[Any]]) -> Response[Any]:
    """Route middleware: 404 for any tenant but ``main``, before the route runs."""
    tenant = (app.context.get("_route_args") or {}).get("tenant")
    if tenant != DEFAULT_TENANT:
        raise common.ApiError(
            404,
            f"tenant {tenant!r} not found: this server has the single tenant {DEFAULT_TENANT!r}"
            f" (Kestra's open-source default); use /api/v1/{DEFAULT_TENANT}/...",
        )
    return next_middleware(app)


SCOPED: dict[str, Any] = {"middlewares": [guard]}
"""Keyword arguments every ``/api/v1/<tenant>/...`` route is declared with."""


def is_scoped(route: Any) -> bool:
    """Whether a powertools route is a tenant-scoped one (its middlewares include :func:`guard`)."""
    return guard in (getattr(route, "middlewares", None) or [])


def kestra_envelope(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the fields Kestra's error responses have (Micronaut's ``JsonError``)."""
    errors = body.get("errors")
    embedded = (
        [{"message": str(e.get("message", e))} for e in errors if isinstance(e, dict)]
        if isinstance(errors, list)
        else [{"message": body.get("message", "")}]
    )
    return {
        **body,
        "_links": {"self": {"href": path, "templated": False}},
        "_embedded": {"errors": embedded},
    }

"""The ``api`` Lambda behind API Gateway (HTTP API, payload 2.0).

The API itself is :class:`control_plane.api.app.Api`, a component given the runtime it serves;
this module only hands it the container's runtime (:mod:`control_plane.handlers.container`),
built from the environment on the first request and kept while the container is warm.
``squall server`` builds its own ``Api`` over its own runtime and does not come through here.

Where init is off every request's path, under SnapStart (the snapshot holds what init
imported) or provisioned concurrency (init runs ahead of traffic), the service module is
imported at init: no request pays for it. Otherwise a read never imports it (ADR 0006).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from control_plane.api.app import Api, unserved
from control_plane.handlers.container import runtime
from control_plane.tasks import limit_to_invocation

__all__ = ["handler"]

PRELOADED_INITS = ("snap-start", "provisioned-concurrency")  # AWS_LAMBDA_INITIALIZATION_TYPE
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in PRELOADED_INITS:
    importlib.import_module("control_plane.service.service")
    importlib.import_module("control_plane.flows.loader").import_yaml()

_api: Api | None = None


def _container_api() -> Api:
    """The API over the container's runtime (a new one when a test installed another runtime)."""
    global _api
    rt = runtime()
    if _api is None or _api.runtime is not rt:
        _api = Api(rt)
    return _api


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: one API Gateway request."""
    limit_to_invocation(context)
    try:
        api = _container_api()
    except Exception:  # bad settings, an unreachable store: a JSON 500, the reason in the log
        return unserved(event, context)
    return api.handle(event, context)

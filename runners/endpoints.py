"""Endpoint overrides a flow may name: only those the deployment lists.

A runner signs its requests with the deployment's credentials (an AWS signature, a Google
bearer token). If a flow could point a runner at any URL, it would send those credentials
to a host of its choosing. So a task's endpoint option is accepted only when the deployment
named it, in the runner's defaults or its allow-list, compared in one canonical form.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from runners.base import RunnerOptionsError

__all__ = ["allowed_endpoint", "canonical_endpoint"]


def canonical_endpoint(raw: str) -> str:
    """``raw`` as one canonical endpoint URL (scheme and host lowercased, no trailing ``/``).

    Raises ``ValueError`` unless it is an ``http``/``https`` URL with a host and no
    credentials, query or fragment: what an endpoint override may be.
    """
    parts = urlsplit(raw.strip())
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{raw!r} is not an http(s) endpoint URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{raw!r}: an endpoint URL has no credentials, query or fragment")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def allowed_endpoint(
    runner: str,
    option: str,
    requested: str,
    *,
    allowed: Iterable[str],
    default: object,
    what: str,
    setting: str,
) -> str:
    """``requested`` (a task's ``option``), canonical, if ``allowed`` or ``default`` names it.

    Otherwise a RunnerOptionsError that names the option, the allowed values and the
    deployment ``setting`` that lists them.
    """
    permitted = {canonical_endpoint(url) for url in allowed}
    if isinstance(default, str) and default:
        permitted.add(canonical_endpoint(default))
    try:
        endpoint = canonical_endpoint(requested)
    except ValueError as exc:
        problem = str(exc)
    else:
        if endpoint in permitted:
            return endpoint
        problem = f"{requested!r} is not an endpoint this deployment allows"
    shown = ", ".join(sorted(permitted)) or "none"
    raise RunnerOptionsError(
        runner,
        [
            f"taskRunner.{option}: {problem}; allowed values: {shown} (a flow cannot choose where Squall "
            f"sends {what}: the deployment lists them, in the runner's defaults or allowed_endpoints, "
            f"{setting})"
        ],
    )

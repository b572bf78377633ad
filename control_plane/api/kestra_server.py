"""``/api/v1/configs``: what a Kestra client reads to learn which server it talks to.

Kestra's UI and tools read ``GET /api/v1/configs`` before anything else (``kestrapy``'s
``misc.configuration()``). Squall answers with its own version, ``edition: OSS`` (the
edition whose API it follows: one tenant, ``main``) and the few settings that describe it;
every other field of Kestra's configuration is about features Squall does not have and is
left out (the client's model makes them all optional).

Squall adds ``uiOidc``: where the web UI logs in (``SQUALL_UI_OIDC``, :mod:`control_plane.ui.oidc`),
or null when it does not use OIDC. The route is public, so the browser reads it before it has
any credential; Kestra's client keeps unknown fields aside (``additional_properties``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ConfigDict

from control_plane.api import common

__all__ = ["ServerConfiguration", "router"]

router = Router()


class ServerConfiguration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    edition: str
    tenants: dict[str, bool]
    isCustomDashboardsEnabled: bool
    isAnonymousUsageEnabled: bool
    isUiAnonymousUsageEnabled: bool
    isAiEnabled: bool
    pluginManagementEnabled: bool
    features: list[str]
    uiOidc: dict[str, Any] | None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("squall")
    except PackageNotFoundError:
        return "0.0.0"


@router.get(
    "/api/v1/configs",
    summary="The server's configuration, as Kestra's clients read it first",
    tags=["kestra server"],
)
def configs(rt: common.Served) -> ServerConfiguration:
    oidc = rt.settings.ui_oidc
    return ServerConfiguration(
        version=_version(),
        edition="OSS",
        tenants={"storageByTenant": False, "secretByTenant": False},
        isCustomDashboardsEnabled=False,
        isAnonymousUsageEnabled=False,
        isUiAnonymousUsageEnabled=False,
        isAiEnabled=False,
        pluginManagementEnabled=False,
        features=[],
        uiOidc=None if oidc is None else oidc.public(),
    )

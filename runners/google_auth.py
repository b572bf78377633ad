"""Credentials for Google clients: application default, a service-account key, impersonation.

One place for every Google runner (Batch, Cloud Run), with Kestra's option names: a task's
``serviceAccount`` is the JSON key itself (``{{ secret('GCP_KEY') }}``), as in Kestra's GCP
plugins, ``impersonatedServiceAccount`` an account those credentials may act as, ``scopes``
the OAuth scopes. With none of them, the deployment's ``config`` (a credential configuration
document: workload identity federation from AWS, what a Lambda uses, keyless) when it has
one, else the application default credentials (the attached service account on Google
Cloud, ``GOOGLE_APPLICATION_CREDENTIALS``).

google-auth is imported inside :func:`google_credentials`: a control plane that never runs a
Google task never imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from runners.base import RunnerOptionsError

__all__ = ["CLOUD_PLATFORM", "google_credentials"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def google_credentials(
    runner: str,
    *,
    key: str | None,
    impersonate: str | None,
    scopes: Sequence[str],
    anonymous: bool = False,
    config: Mapping[str, Any] | None = None,
) -> tuple[Any, str | None]:
    """``(credentials, project of the key or of the default chain)``.

    ``anonymous``: an emulator endpoint and no key; nothing is signed (and no token is
    fetched from Google). A key that is not a service-account JSON key is a
    :class:`RunnerOptionsError` naming ``taskRunner.serviceAccount``, without its content.
    """
    if key is None and anonymous:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), None
    project: str | None
    if key is not None:
        from google.oauth2 import service_account

        try:
            info = json.loads(key)
            base = service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
        except (ValueError, TypeError, KeyError) as exc:
            problem = type(exc).__name__ if isinstance(exc, KeyError) else "not a service-account JSON key"
            raise RunnerOptionsError(runner, [f"taskRunner.serviceAccount: {problem}"]) from None
        project = info.get("project_id")
    elif config is not None:
        base, project = _external_account(runner, config, scopes), None
    else:
        import google.auth

        base, project = google.auth.default(scopes=list(scopes))
    if impersonate:
        from google.auth import impersonated_credentials

        base = impersonated_credentials.Credentials(
            source_credentials=base, target_principal=impersonate, target_scopes=list(scopes)
        )
    return base, project


def _external_account(runner: str, config: Mapping[str, Any], scopes: Sequence[str]) -> Any:
    """Workload identity federation credentials from their configuration document.

    Built directly (google.auth.aws / identity_pool), not through ``load_credentials_from_dict``,
    which warns that it is deprecated for external accounts and looks the project up over the
    network each time it is called.
    """
    if config.get("type") != "external_account":
        raise RunnerOptionsError(
            runner, ["credentials_config: not an external_account credential configuration (type)"]
        )
    source = config.get("credential_source") or {}
    try:
        if str(source.get("environment_id", "")).startswith("aws"):
            from google.auth import aws

            return aws.Credentials.from_info(dict(config), scopes=list(scopes))
        from google.auth import identity_pool

        return identity_pool.Credentials.from_info(dict(config), scopes=list(scopes))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunnerOptionsError(runner, [f"credentials_config: {exc}"]) from None

"""Kestra's open-source secrets: ``SECRET_<NAME>`` environment variables holding base64 text.

The value is base64 so that any bytes (newlines, a PEM key) survive a ``.env`` file or a
container definition; Kestra documents the same convention, so a deployment moves over with its
variables unchanged.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from control_plane.secrets import SecretError

__all__ = ["EnvSecrets"]

PREFIX = "SECRET_"


class EnvSecrets:
    name = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def get(self, name: str) -> str | None:
        raw = self._environ.get(PREFIX + name)
        if raw is None:
            return None
        try:
            return base64.b64decode(raw.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SecretError(
                f"environment variable {PREFIX}{name} is not base64-encoded UTF-8"
                f" (Kestra's convention: {PREFIX}{name}=$(printf '%s' VALUE | base64 -w0))"
            ) from None

    def where(self, name: str) -> str:
        return f"environment variable {PREFIX}{name}"

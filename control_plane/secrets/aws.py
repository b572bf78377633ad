"""Secrets from AWS: Secrets Manager and Systems Manager Parameter Store, through real boto3.

boto3 is imported when the first secret is asked for, so a deployment that never uses one does
not pay for the client. The clients use boto3's standard retry mode (throttling and 5xx are
retried with backoff by botocore); "not found" means "ask the next backend", and any other
error stops the lookup with the service's code and message.
"""

from __future__ import annotations

import threading
from typing import Any

from control_plane.secrets import SecretError

__all__ = ["ParameterStoreSecrets", "SecretsManagerSecrets"]


class _Client:
    """One boto3 client, built on first use (or injected: tests pass one bound to moto)."""

    service = ""

    def __init__(self, *, prefix: str = "squall/", region: str | None = None, client: Any = None) -> None:
        self.prefix = prefix
        self._region = region
        self._client = client
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        self.service,
                        region_name=self._region,
                        config=Config(
                            retries={"mode": "standard", "max_attempts": 5},
                            connect_timeout=5,
                            read_timeout=10,
                        ),
                    )
        return self._client

    def _call(self, label: str, missing: tuple[str, ...], call: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in missing:
                return None
            raise SecretError(f"{label}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from None
        except BotoCoreError as exc:
            raise SecretError(f"{label}: {exc}") from None


class SecretsManagerSecrets(_Client):
    name = "secretsmanager"
    service = "secretsmanager"

    def get(self, name: str) -> str | None:
        secret_id = self.prefix + name
        answer = self._call(
            f"Secrets Manager secret {secret_id}",
            ("ResourceNotFoundException",),
            self.client().get_secret_value,
            SecretId=secret_id,
        )
        if answer is None:
            return None
        if "SecretString" in answer:
            return str(answer["SecretString"])
        try:
            return bytes(answer["SecretBinary"]).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            raise SecretError(
                f"Secrets Manager secret {secret_id}: its binary value is not UTF-8 text"
            ) from None

    def where(self, name: str) -> str:
        return f"Secrets Manager {self.prefix}{name}"


class ParameterStoreSecrets(_Client):
    name = "ssm"
    service = "ssm"

    def parameter(self, name: str) -> str:
        return "/" + self.prefix.lstrip("/") + name

    def get(self, name: str) -> str | None:
        parameter = self.parameter(name)
        answer = self._call(
            f"SSM parameter {parameter}",
            ("ParameterNotFound",),
            self.client().get_parameter,
            Name=parameter,
            WithDecryption=True,
        )
        return None if answer is None else str(answer["Parameter"]["Value"])

    def where(self, name: str) -> str:
        return f"SSM parameter {self.parameter(name)}"

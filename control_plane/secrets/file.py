"""Secrets from a local file, for ``squall run`` and ``squall server``: a YAML map of name to value.

::

    # ~/.config/squall/secrets.yaml   (chmod 600)
    DB_PASSWORD: s3cr3t
    API_KEY: |
      multi-line values work too

The file must be readable by its owner only (like an SSH key): a secret in a file everyone on
the machine can read is not one. It is read again when it changes, so a running server picks up
an edit. Values are scalars (numbers and booleans become their YAML text); a map or a list is an
error naming the key.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

from control_plane.secrets import SecretError, check_name

__all__ = ["FileSecrets"]


class FileSecrets:
    name = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._values: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            info = self.path.stat()
        except OSError as exc:
            raise SecretError(f"secrets file {self.path}: {exc.strerror or exc}") from None
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise SecretError(
                f"secrets file {self.path} can be read by others (mode {stat.S_IMODE(info.st_mode):o}):"
                f" chmod 600 {self.path}"
            )
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._seen:
            return
        import yaml

        try:
            data: Any = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"secrets file {self.path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise SecretError(f"secrets file {self.path}: not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SecretError(f"secrets file {self.path}: expected a map of name to value")
        values: dict[str, str] = {}
        for key, value in data.items():
            try:
                check_name(key)
            except SecretError as exc:
                raise SecretError(f"secrets file {self.path}: {exc}") from None
            if isinstance(value, dict | list):
                raise SecretError(f"secrets file {self.path}: {key}: a secret is text, not a map or a list")
            if value is None:
                continue
            values[key] = (
                value if isinstance(value, str) else yaml.safe_dump(value).strip().removesuffix("...").strip()
            )
        self._values, self._seen = values, stamp

    def get(self, name: str) -> str | None:
        with self._lock:
            self._load()
            return self._values.get(name)

    def where(self, name: str) -> str:
        return f"{self.path}"

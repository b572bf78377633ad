"""Cache entries on disk: one file each, checked when read, replaced whole when written.

The local command's caches (compiled templates, validated flows) live in the data directory,
which several ``squall`` processes share and a crash or a full disk may leave a file of half.
So an entry is ``header + blake2b(payload) + payload``, written to a temporary file and renamed
over the old one: a reader sees a whole entry or none, and anything that does not check out
(another format's header, a short or altered file) reads as a miss, never as an error.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["read_entry", "write_entry"]

_DIGEST = 32


def read_entry(path: Path, header: bytes) -> bytes | None:
    """The payload stored at ``path`` under ``header``; None if absent, foreign or damaged."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    start = len(header) + _DIGEST
    if not blob.startswith(header) or len(blob) <= start:
        return None
    payload = blob[start:]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != blob[len(header) : start]:
        return None
    return payload


def write_entry(path: Path, header: bytes, payload: bytes) -> None:
    """Store ``payload`` at ``path`` at once (its directory must exist); OSError if it cannot."""
    blob = header + hashlib.blake2b(payload, digest_size=_DIGEST).digest() + payload
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(blob)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

"""Storage: one seam over ``file://``, ``s3://``, ``gs://`` and ``az://`` object stores.

Under ``runners/`` because both sides use it (the control plane for uploads and inputs,
runners for their files) and runners never import ``control_plane``. See
:mod:`runners.storage.base` for the protocol and the URI rules, and
:mod:`runners.storage.deployment` for the deployment-wide root and read allowlist. Each
cloud backend imports its SDK on first use, so importing this package costs no SDK.
"""

from runners.storage.base import (
    URI_PATTERN,
    Reason,
    Storage,
    StorageError,
    is_uri,
    join,
    parse,
    path_of,
    uri_of,
)
from runners.storage.deployment import SCHEMES, DeploymentStorage, check_root, make_backend, open_storage

__all__ = [
    "SCHEMES",
    "URI_PATTERN",
    "DeploymentStorage",
    "Reason",
    "Storage",
    "StorageError",
    "check_root",
    "is_uri",
    "join",
    "make_backend",
    "open_storage",
    "parse",
    "path_of",
    "uri_of",
]

"""Serve the UI's files as payload-2.0 responses: content types, ETags, no path traversal.

Why a fixed table rather than opening the requested path: the files are read once, on the
first UI request of a process, into a mapping from URL name to bytes, built by listing this
package's ``static/`` folder. A request is answered only when its name is a key of that
mapping, so ``..``, encoded slashes, absolute paths and symlinks cannot reach anything else:
there is no path joined from user input at all.

Caching: each file's ETag is a hash of its bytes; a request whose ``If-None-Match`` holds it
gets ``304`` with no body. ``Cache-Control: no-cache`` makes the browser revalidate on every
load, so a new Squall version is picked up at once while an unchanged file costs one small
round trip. The pages are one ``index.html`` with hash routes (``/ui/#/flows``), so no deep
link ever needs a server-side fallback.

One file is generated rather than shipped: ``schema/flow.json``, the flow language's JSON
Schema (:func:`control_plane.flows.schema.flow_json_schema`), which the editor completes keys
and task types from. It is built from the models and the task plugins installed in this
process, so it can never lag behind what the server validates; the flow language is imported
only when that file is first asked for (the API's cold start does not pay for it, ADR 0006).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

__all__ = [
    "CONTENT_TYPES",
    "SCHEMA_NAME",
    "UI_PREFIX",
    "StaticFile",
    "files",
    "flow_schema",
    "is_ui_path",
    "respond",
]

UI_PREFIX = "/ui"

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
_TEXT = (".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt")

# The pages run only their own scripts and talk only to this origin (no CDN, no inline script),
# and, with an OIDC login, to the IdP's discovery and token endpoints (``connect``).
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src {connect}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP.format(connect="'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _security_headers(connect: Sequence[str]) -> dict[str, str]:
    if not connect:
        return _SECURITY_HEADERS
    allowed = " ".join(("'self'", *connect))
    return {**_SECURITY_HEADERS, "Content-Security-Policy": _CSP.format(connect=allowed)}


class StaticFile:
    """One shipped file: its bytes, content type and ETag."""

    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


_files: dict[str, StaticFile] | None = None
_lock = threading.Lock()
SCHEMA_NAME = "schema/flow.json"
_schema: StaticFile | None = None


def _load() -> dict[str, StaticFile]:
    table: dict[str, StaticFile] = {}
    root = resources.files("control_plane.ui") / "static"

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if suffix in CONTENT_TYPES:
                table[prefix + child.name] = StaticFile(child.read_bytes(), CONTENT_TYPES[suffix])

    walk(root, "")
    return table


def files() -> Mapping[str, StaticFile]:
    """Every servable file by its name under ``/ui/`` (``index.html``, ``app.js``, ...)."""
    global _files
    if _files is None:
        with _lock:
            if _files is None:
                _files = _load()
    return _files


def flow_schema() -> StaticFile:
    """``schema/flow.json``: the flow language's JSON Schema, compact, built once per process."""
    global _schema
    if _schema is None:
        from control_plane.flows.schema import flow_json_schema

        body = json.dumps(flow_json_schema(), separators=(",", ":"), sort_keys=True).encode()
        _schema = StaticFile(body, CONTENT_TYPES[".json"])
    return _schema


def is_ui_path(path: str) -> bool:
    """Whether ``path`` is the UI's (``/ui`` or below it), not the API's."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def _plain(status: int, body: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "text/plain; charset=utf-8", **_SECURITY_HEADERS, **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
        "cookies": [],
    }


def respond(
    path: str, method: str, headers: Mapping[str, str], connect: Sequence[str] = ()
) -> dict[str, Any]:
    """The response to ``method path`` under ``/ui``; ``headers`` are the request's, lowercased.

    ``connect`` lists the origins besides this one the page may fetch from (the OIDC IdP's,
    :meth:`control_plane.ui.oidc.UiOidc.connect_origins`): they join the CSP's ``connect-src``.

    ``/ui`` redirects to ``ui/``, that is ``/ui/`` (relative asset URLs need the slash); ``/ui/`` is
    ``index.html``; any name not shipped is 404, whatever it contains.
    """
    if method not in ("GET", "HEAD"):
        return _plain(405, "the UI's files are read with GET or HEAD\n", {"Allow": "GET, HEAD"})
    if path == UI_PREFIX:
        # Relative, so that behind a named API Gateway stage (/prod/ui) it stays under the stage.
        return _plain(308, "", {"Location": "ui/"})
    name = path[len(UI_PREFIX) + 1 :] or "index.html"
    found = flow_schema() if name == SCHEMA_NAME else files().get(name)
    if found is None:
        return _plain(404, f"no UI file {name!r}\n")
    common = {"ETag": found.etag, "Cache-Control": "no-cache", **_security_headers(connect)}
    given = headers.get("if-none-match", "")
    if found.etag in {tag.strip() for tag in given.split(",")} or given.strip() == "*":
        return {"statusCode": 304, "headers": common, "body": "", "isBase64Encoded": False, "cookies": []}
    text = name.endswith(_TEXT)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": found.content_type, **common},
        "body": found.body.decode("utf-8") if text else base64.b64encode(found.body).decode(),
        "isBase64Encoded": not text,
        "cookies": [],
    }

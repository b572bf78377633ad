"""Kestra's namespace files over HTTP: ``/api/v1/{tenant}/namespaces/{namespace}/files...``.

The files live in the deployment storage, as KV pairs do (:mod:`control_plane.api.kestra_kv`):
``_files/<namespace>/<path>`` under ``SQUALL_STORAGE``'s root (the layout is
:mod:`control_plane.service.namespace_files`, shared with the ``core.namespace`` tasks), so
every container of a deployment sees the same ones. Object stores have no directories: a
directory is the common prefix of the files under it, exists while one does, and is listed
from them.

A ``path`` is absolute (``/scripts/etl.py``), made of non-empty segments, none ``.`` or
``..``; anything else is a 422 naming it, so no request reaches outside its namespace.

Served: upload (multipart ``fileContent``), download, stats, directory listing, delete (a
file, or a directory with everything under it). Not yet: creating an empty directory,
moving, revisions, search, export. Script tasks' ``namespaceFiles`` read these files
(:mod:`control_plane.service.namespace_files`).
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from control_plane.api import common, tenants
from control_plane.api.kestra_kv import check_namespace
from control_plane.runtime import Runtime
from control_plane.service.namespace_files import NamespaceFiles

__all__ = ["router"]

router = Router()
_TAGS = ["kestra namespace files"]
_UPLOAD_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"fileContent": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
_PATH = Query(description="absolute, e.g. /scripts/etl.py")


class FileAttributes(BaseModel):
    fileName: str
    type: str  # File or Directory, Kestra's names
    size: int


def _segments(path: str | None, *, root_ok: bool = False) -> list[str]:
    """``path``'s segments, or 422 naming the parameter; ``/`` alone only where a directory is meant."""
    if path is None or path in ("", "/"):
        if root_ok:
            return []
        raise common.ApiError(422, "query parameter 'path' is required: an absolute file path")
    parts = path.split("/")
    if parts[0] != "" or any(p in ("", ".", "..") or "\\" in p for p in parts[1:]):
        raise common.ApiError(
            422,
            f"invalid query parameter 'path': {path!r} is not an absolute path of plain segments",
            extra={
                "errors": [{"name": "path", "in": "query", "message": "absolute, no empty, . or .. segment"}]
            },
        )
    return parts[1:]


def _uri(rt: Runtime, namespace: str, segments: list[str], *, directory: bool = False) -> str:
    return NamespaceFiles(rt.service.storage).uri(namespace, segments, directory=directory)


def _children(rt: Runtime, namespace: str, segments: list[str]) -> dict[str, str]:
    return NamespaceFiles(rt.service.storage).children(namespace, segments)


@router.post(
    "/api/v1/<tenant>/namespaces/<namespace>/files",
    summary="Upload a namespace file (multipart part fileContent; none: an empty file)",
    tags=_TAGS,
    openapi_extensions=_UPLOAD_BODY,
    **tenants.SCOPED,
)
def upload(
    rt: common.Served, tenant: str, namespace: str, path: Annotated[str | None, _PATH] = None
) -> Response[None]:
    check_namespace(namespace)
    segments = _segments(path)
    event = router.current_event.raw_event
    content = b""
    if event.get("body"):
        common.require_media_type(event, ("multipart/form-data",))
        parts = [p for p in common.multipart(event) if p.name == "fileContent"]
        if len(parts) != 1:
            raise common.ApiError(422, "send the file as one multipart part named 'fileContent'")
        content = parts[0].content
    rt.service.storage.write(_uri(rt, namespace, segments), content)
    return Response(status_code=200, body=None)


@router.get(
    "/api/v1/<tenant>/namespaces/<namespace>/files",
    summary="Download a namespace file",
    tags=_TAGS,
    enable_validation=False,  # the body is bytes (see executions' file download)
    **tenants.SCOPED,
)
def download(
    rt: common.Served, tenant: str, namespace: str, path: Annotated[str | None, _PATH] = None
) -> Response[bytes]:
    check_namespace(namespace)
    given = common.query_values(router.current_event.raw_event, "path")
    if "revision" in _query_names():
        raise common.ApiError(
            400, "unsupported query parameter 'revision': namespace files have no revisions yet"
        )
    segments = _segments(given[0] if len(given) == 1 else None)
    uri = _uri(rt, namespace, segments)
    if not rt.service.storage.exists(uri):
        raise common.ApiError(404, f"no file {given[0]!r} in namespace {namespace!r}")
    return Response(
        status_code=200, content_type="application/octet-stream", body=rt.service.storage.read(uri)
    )


def _query_names() -> list[str]:
    from urllib.parse import parse_qsl

    raw = str(router.current_event.raw_event.get("rawQueryString") or "")
    return [name for name, _ in parse_qsl(raw, keep_blank_values=True)]


@router.get(
    "/api/v1/<tenant>/namespaces/<namespace>/files/stats",
    summary="A namespace file's or directory's name, type and size",
    tags=_TAGS,
    **tenants.SCOPED,
)
def stats(
    rt: common.Served, tenant: str, namespace: str, path: Annotated[str | None, _PATH] = None
) -> FileAttributes:
    check_namespace(namespace)
    segments = _segments(path)
    uri = _uri(rt, namespace, segments)
    if rt.service.storage.exists(uri):
        return FileAttributes(fileName=segments[-1], type="File", size=len(rt.service.storage.read(uri)))
    if _children(rt, namespace, segments):
        return FileAttributes(fileName=segments[-1], type="Directory", size=0)
    raise common.ApiError(404, f"nothing at {path!r} in namespace {namespace!r}")


@router.get(
    "/api/v1/<tenant>/namespaces/<namespace>/files/directory",
    summary="What a namespace directory holds (files and subdirectories), by name",
    description="path: the directory (default /).",
    tags=_TAGS,
    **tenants.SCOPED,
)
def list_directory(
    rt: common.Served, tenant: str, namespace: str, path: Annotated[str | None, _PATH] = None
) -> list[FileAttributes]:
    check_namespace(namespace)
    segments = _segments(path, root_ok=True)
    entries: dict[str, FileAttributes] = {}
    for relative, uri in sorted(_children(rt, namespace, segments).items()):
        first, sep, _ = relative.partition("/")
        if sep:
            entries.setdefault(first, FileAttributes(fileName=first, type="Directory", size=0))
        else:
            entries[first] = FileAttributes(
                fileName=first, type="File", size=len(rt.service.storage.read(uri))
            )
    if not entries and segments:
        raise common.ApiError(404, f"no directory {path!r} in namespace {namespace!r}")
    return list(entries.values())


@router.delete(
    "/api/v1/<tenant>/namespaces/<namespace>/files",
    summary="Delete a namespace file, or a directory with everything under it",
    tags=_TAGS,
    status_code=204,
    **tenants.SCOPED,
)
def delete(
    rt: common.Served, tenant: str, namespace: str, path: Annotated[str | None, _PATH] = None
) -> Response[None]:
    check_namespace(namespace)
    segments = _segments(path)
    uri = _uri(rt, namespace, segments)
    storage = rt.service.storage
    if storage.exists(uri):
        storage.delete([uri])
    elif _children(rt, namespace, segments):
        storage.delete_prefix(_uri(rt, namespace, segments, directory=True))
    else:
        raise common.ApiError(404, f"nothing at {path!r} in namespace {namespace!r}")
    return Response(status_code=204, body=None)

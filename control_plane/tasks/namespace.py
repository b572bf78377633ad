"""``io.kestra.plugin.core.namespace``: UploadFiles, DownloadFiles, DeleteFiles.

Over the namespace files the API serves (:mod:`control_plane.service.namespace_files`), with
Kestra's properties and outputs (namespace/*.java). ``files`` are glob patterns over a
namespace's paths (PathMatcherPredicate). UploadFiles takes ``filesMap`` (target path ->
storage URI); its ``files`` property globs a task's working directory, which Squall's
control plane does not have, so it is refused when the flow is validated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from control_plane.levels import Level
from control_plane.service.namespace_files import NamespaceFiles, PathError, segments
from control_plane.service.storage import StorageError
from control_plane.tasks import TaskFailure

if TYPE_CHECKING:
    from control_plane.tasks import EffectContext, Handler

__all__ = ["HANDLERS"]


def _namespace(props: Mapping[str, Any], ctx: EffectContext) -> str:
    from control_plane.service.kv import KvStore

    namespace = str(props.get("namespace") or ctx.namespace)
    try:
        KvStore.check(namespace)
    except Exception as exc:
        raise TaskFailure(f"property 'namespace': {exc}") from None
    return namespace


def _patterns(props: Mapping[str, Any]) -> list[str]:
    files = props.get("files")
    if isinstance(files, str):
        return [files]
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return files
    raise TaskFailure("The files property must be a string or a list of strings")


def _matching(files: NamespaceFiles, namespace: str, patterns: list[str]) -> dict[str, str]:
    try:
        return files.matching(namespace, patterns)
    except PathError as exc:
        raise TaskFailure(f"property 'files': {exc}") from None


def upload_files(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    namespace = _namespace(props, ctx)
    destination = str(props.get("destination") or "/")
    if not destination.startswith("/"):
        destination = "/" + destination  # Kestra's checkLeadingSlash
    conflict = props.get("conflict", "OVERWRITE")
    mapping = props.get("filesMap")
    if isinstance(mapping, str):
        try:
            mapping = json.loads(mapping)
        except ValueError:
            raise TaskFailure("property 'filesMap': a JSON object of path -> URI expected") from None
    if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
        raise TaskFailure("filesMap must be a Map<String, String>")
    files = NamespaceFiles(ctx.storage)
    for target, source in mapping.items():
        path = re.sub("/+", "/", destination + str(target))  # Path.of(destination + target), as Kestra
        try:
            uri = files.uri(namespace, segments(path))
        except PathError as exc:
            raise TaskFailure(f"property 'filesMap': {exc}") from None
        try:
            if not ctx.storage.exists(source):
                continue  # Kestra skips a source that does not exist
            data = ctx.storage.read(source)
        except StorageError as exc:
            raise TaskFailure(f"property 'filesMap': {exc}") from None
        if ctx.storage.exists(uri):
            message = (
                f"File '{path}' already exists in namespace '{namespace}' and conflict is set to {conflict}"
            )
            if conflict == "ERROR":
                raise TaskFailure(message)  # InternalNamespace.putFile's words
            if conflict == "SKIP":
                ctx.log(Level.DEBUG, message + ". Skipping.")
                continue
        ctx.storage.write(uri, data)
    return {}


def download_files(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    namespace = _namespace(props, ctx)
    destination = str(props.get("destination") or "").strip("/")
    downloaded: dict[str, str] = {}
    for path, uri in _matching(NamespaceFiles(ctx.storage), namespace, _patterns(props)).items():
        target = ctx.output_uri("/".join(p for p in (destination, path.lstrip("/")) if p))
        ctx.storage.write(target, ctx.storage.read(uri))
        downloaded[path] = target
    return {"files": downloaded}


def delete_files(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    namespace = _namespace(props, ctx)
    matched = _matching(NamespaceFiles(ctx.storage), namespace, _patterns(props))
    ctx.storage.delete(matched.values())
    return {}


HANDLERS: dict[str, Handler] = {
    "squall.namespace.UploadFiles": upload_files,
    "squall.namespace.DownloadFiles": download_files,
    "squall.namespace.DeleteFiles": delete_files,
}

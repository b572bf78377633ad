"""Storage bindings for :class:`tests.emulators.executor.Mount`: a directory synced with a bucket.

A cloud fake mounts a bucket into a job (GCS FUSE in Google Batch and Cloud Run, a blob
container in Azure Batch) with ``Mount(path, binding.download, binding.upload)``. The executor
knows only those two callables, so a GCS or Azure binding is one more class here with the same
two methods, and the executor does not change.

::

    data = S3Prefix(moto.client("s3"), "bucket", "inputs/")
    executor.start(..., env={"DATA": "/mnt/data"}, mounts=[data.mount("/mnt/data")])

:class:`S3Prefix` works through a boto3 client, :class:`GcsPrefix` through a
google-cloud-storage client (``runners.storage.gcs.make_client(endpoint, project)`` for
fake-gcs-server). Both behave like a FUSE mount as the job sees it: every object under the
prefix is a file before the command starts, and what the command left is written back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.emulators.executor import Mount

__all__ = ["GcsPrefix", "S3Prefix"]


class _Prefix:
    """A directory synced with the objects under ``bucket/prefix``; subclasses say how to call
    their SDK (:meth:`_objects`, :meth:`_read`, :meth:`_put`, :meth:`_delete`).

    ``download`` writes every object under the prefix as a file (its key minus the prefix);
    ``upload`` then works like a FUSE mount's writes: new and changed files are put, and the
    objects of files the job deleted are deleted; unchanged files cost no call. It remembers
    what it downloaded, so use one binding per job.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._downloaded: dict[str, str] = {}  # relative path -> md5 of what download wrote

    def mount(self, path_in_job: str, *, read_only: bool = False) -> Mount:
        return Mount(path_in_job, self.download, None if read_only else self.upload)

    def download(self, directory: Path) -> None:
        self._downloaded = {}
        for key in self._objects():
            relative = key[len(self.prefix) :]
            if not relative or relative.endswith("/"):  # the "folder" placeholders of consoles
                continue
            target = directory / relative
            if directory.resolve() not in target.resolve().parents:
                raise ValueError(f"object {key!r} escapes the mount")
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self._read(key)
            target.write_bytes(data)
            self._downloaded[relative] = hashlib.md5(data).hexdigest()

    def upload(self, directory: Path) -> None:
        present = {}
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                relative = path.relative_to(directory).as_posix()
                data = path.read_bytes()
                present[relative] = hashlib.md5(data).hexdigest()
                if self._downloaded.get(relative) != present[relative]:
                    self._put(self.prefix + relative, data)
        for relative in sorted(set(self._downloaded) - set(present)):
            self._delete(self.prefix + relative)
        self._downloaded = present

    def _objects(self) -> Iterator[str]:
        raise NotImplementedError

    def _read(self, key: str) -> bytes:
        raise NotImplementedError

    def _put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError


class S3Prefix(_Prefix):
    """Syncs a directory with the objects under ``s3://bucket/prefix`` through a boto3 S3 client."""

    def _objects(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"])

    def _read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


class GcsPrefix(_Prefix):
    """Syncs a directory with the objects under ``gs://bucket/prefix``, as a gcsfuse mount would.

    Over a google-cloud-storage client. Every call passes ``retry=None``: a storage failure
    fails the job at once (the executor reports it as a failed mount), as the caller's own
    retries expect. ``prefix`` is used as given; :meth:`from_remote_path` turns Google Batch's
    ``gcs.remotePath`` (``bucket`` or ``bucket/dir``) into a bucket and a ``dir/`` prefix.
    """

    @classmethod
    def from_remote_path(cls, client: Any, remote_path: str) -> GcsPrefix:
        bucket, _, rest = remote_path.strip("/").partition("/")
        return cls(client, bucket, f"{rest.strip('/')}/" if rest.strip("/") else "")

    def _objects(self) -> Iterator[str]:
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix or None, retry=None):
            yield str(blob.name)

    def _read(self, key: str) -> bytes:
        return bytes(self.client.bucket(self.bucket).blob(key).download_as_bytes(retry=None))

    def _put(self, key: str, data: bytes) -> None:
        self.client.bucket(self.bucket).blob(key).upload_from_string(data, retry=None)

    def _delete(self, key: str) -> None:
        self.client.bucket(self.bucket).blob(key).delete(retry=None)

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
from pathlib import Path
from typing import Any

from tests.emulators.executor import Mount

__all__ = ["GcsPrefix", "S3Prefix"]


class S3Prefix:
    """Syncs a directory with the objects under ``s3://bucket/prefix`` through a boto3 S3 client.

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
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(self.prefix) :]
                if not relative or relative.endswith("/"):  # the "folder" placeholders of consoles
                    continue
                target = directory / relative
                if directory.resolve() not in target.resolve().parents:
                    raise ValueError(f"key {item['Key']!r} escapes the mount")
                target.parent.mkdir(parents=True, exist_ok=True)
                data = self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
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
                    self.client.put_object(Bucket=self.bucket, Key=self.prefix + relative, Body=data)
        for relative in sorted(set(self._downloaded) - set(present)):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + relative)
        self._downloaded = present


class GcsPrefix:
    """Syncs a directory with the objects under ``gs://bucket/prefix``, as a gcsfuse mount would.

    The twin of :class:`S3Prefix` over a google-cloud-storage client: ``download`` writes every
    object under the prefix as a file, ``upload`` puts new and changed files and deletes the
    objects of deleted ones. Every call passes ``retry=None``: a storage failure fails the job
    at once (the executor reports it as a failed mount), as the caller's own retries expect.
    ``prefix`` is used as given; :meth:`from_remote_path` turns Google Batch's
    ``gcs.remotePath`` (``bucket`` or ``bucket/dir``) into a bucket and a ``dir/`` prefix.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._downloaded: dict[str, str] = {}  # relative path -> md5 of what download wrote

    @classmethod
    def from_remote_path(cls, client: Any, remote_path: str) -> GcsPrefix:
        bucket, _, rest = remote_path.strip("/").partition("/")
        return cls(client, bucket, f"{rest.strip('/')}/" if rest.strip("/") else "")

    def mount(self, path_in_job: str, *, read_only: bool = False) -> Mount:
        return Mount(path_in_job, self.download, None if read_only else self.upload)

    def download(self, directory: Path) -> None:
        self._downloaded = {}
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix or None, retry=None):
            relative = blob.name[len(self.prefix) :]
            if not relative or relative.endswith("/"):  # directory placeholder objects
                continue
            target = directory / relative
            if directory.resolve() not in target.resolve().parents:
                raise ValueError(f"object {blob.name!r} escapes the mount")
            target.parent.mkdir(parents=True, exist_ok=True)
            data = blob.download_as_bytes(retry=None)
            target.write_bytes(data)
            self._downloaded[relative] = hashlib.md5(data).hexdigest()

    def upload(self, directory: Path) -> None:
        bucket = self.client.bucket(self.bucket)
        present = {}
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                relative = path.relative_to(directory).as_posix()
                data = path.read_bytes()
                present[relative] = hashlib.md5(data).hexdigest()
                if self._downloaded.get(relative) != present[relative]:
                    bucket.blob(self.prefix + relative).upload_from_string(data, retry=None)
        for relative in sorted(set(self._downloaded) - set(present)):
            bucket.blob(self.prefix + relative).delete(retry=None)
        self._downloaded = present

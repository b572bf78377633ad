"""Storage bindings for :class:`tests.emulators.executor.Mount`: a directory synced with a bucket.

A cloud fake mounts a bucket into a job (GCS FUSE in Google Batch and Cloud Run, a blob
container in Azure Batch) with ``Mount(path, binding.download, binding.upload)``. The executor
knows only those two callables, so a GCS or Azure binding is one more class here with the same
two methods, and the executor does not change.

::

    data = S3Prefix(moto.client("s3"), "bucket", "inputs/")
    executor.start(..., env={"DATA": "/mnt/data"}, mounts=[data.mount("/mnt/data")])
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.emulators.executor import Mount

__all__ = ["S3Prefix"]


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

"""One attempt's folder in a Cloud Storage bucket, mounted into the job: what Google's runners share.

Google Batch and Cloud Run jobs both mount a GCS volume (gcsfuse), so a job's files and log
travel the same way whatever runs it::

    gs://<bucket>/<staging prefix>/<job>/
        in/<rel>       inputs, copied there server-side before the job (create-only)
        out/<rel>      what the wrapper kept (outputs), copied on to the control plane's prefix
        log/stdout     each stream as the wrapper tees it, ending with its sentinel
        log/stderr
        final.json     the tombstone: how the job ended, kept after the job itself is deleted

:class:`JobFolder` does the storage calls (through the runner's retried ``call``), and
:func:`read_log` turns the two log objects into :class:`~runners.base.LogChunk` pages by byte
ranges, complete at both sentinels or, after a grace, truncated. :func:`wrapper_for` builds the
container command for a folder mounted at some path. The runner keeps what is its own: the
job API, the taxonomy, the clients.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runners.base import (
    Failure,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    RunnerError,
    TransientRunnerError,
)
from runners.wrapper import (
    INLINE_LIMIT,
    STDERR_PREFIX,
    VolumeStaging,
    check_relative,
    sentinel_token,
    split_sentinel,
    wrapper_command,
)

__all__ = [
    "LOG_PAGE_BYTES",
    "LOG_PAGE_LINES",
    "JobFolder",
    "LogSource",
    "always_reattach",
    "bucket_name",
    "output_prefix",
    "parse_log_page",
    "read_log",
    "staging_prefix",
    "wrapper_for",
]

LOG_PAGE_BYTES = 1 << 20
LOG_PAGE_LINES = 10_000
_CURSOR = "gbl1:"


def bucket_name(value: str) -> str:
    """An option's bucket: a name, ``gs://`` tolerated, no path (ValueError otherwise)."""
    value = value.removeprefix("gs://").strip("/")
    if "/" in value or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", value):
        raise ValueError("a bucket name, without gs:// or a path (the path is stagingPrefix)")
    return value


def staging_prefix(value: str) -> str:
    """An option's folder in the bucket: a relative path (ValueError otherwise)."""
    value = value.strip("/")
    if not value or ".." in value.split("/"):
        raise ValueError("a relative path inside the bucket")
    return value


def always_reattach(value: bool) -> bool:
    """Kestra's ``resume``: Squall always reattaches to the attempt's job (ValueError for false)."""
    if not value:
        raise ValueError(
            "Squall always reattaches to the attempt's job so that it runs once; false cannot be honoured"
        )
    return value


def output_prefix(spec: JobSpec, runner: str) -> str | None:
    """The control plane's output prefix for ``spec`` (a ``gs://`` URI ending in ``/``), if any."""
    if spec.output_prefix is None:
        return None
    if not spec.output_prefix.startswith("gs://"):
        raise RunnerError(
            f"output prefix {spec.output_prefix} is not in Cloud Storage (gs://)", runner=runner
        )
    return spec.output_prefix if spec.output_prefix.endswith("/") else spec.output_prefix + "/"


Call = Callable[..., Any]
"""The runner's retried call: ``call(fn, *args, **kwargs)``, errors as RunnerError."""


@dataclass(frozen=True)
class JobFolder:
    """``gs://bucket/prefix/``: one attempt's files. ``storage`` is a google-cloud-storage client."""

    storage: Any
    bucket: str
    prefix: str
    call: Call
    runner: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    def _blob(self, name: str) -> Any:
        return self.storage.bucket(self.bucket).blob(f"{self.prefix}/{name}")

    def create_only(
        self, fn: Callable[..., Any], /, *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> None:
        """``fn(*args, if_generation_match=0)``: an object already there is left as it is."""
        from google.api_core import exceptions

        tolerated: tuple[type[Exception], ...] = (exceptions.NotFound,) if missing_ok else ()

        def write() -> None:
            with contextlib.suppress(exceptions.PreconditionFailed, *tolerated):
                fn(*args, if_generation_match=0, retry=None, **kwargs)

        self.call(write)

    # -- inputs

    def stage_inputs(self, spec: JobSpec) -> tuple[dict[str, bytes], dict[str, str]]:
        """Small inline files stay in the command; the rest go to ``in/``, create-only.

        Returns the inline files and ``{rel: what it came from}`` for the wrapper. Create-only:
        a second submit of the same attempt never rewrites an object a running job may be
        reading. An input URI that does not exist is not an error here: the job starts, its
        wrapper finds no file and fails naming it (CONFIG), as for any runner.
        """
        for rel in (*spec.input_files, *spec.input_uris):
            try:
                check_relative(rel, "input file")
            except ValueError as exc:
                raise RunnerError(str(exc), runner=self.runner) from None
        inline: dict[str, bytes] = {}
        budget = INLINE_LIMIT
        staged: dict[str, str] = {}
        target = self.storage.bucket(self.bucket)
        for rel, data in sorted(spec.input_files.items(), key=lambda kv: len(kv[1])):
            if len(data) <= budget:
                inline[rel] = data
                budget -= len(data)
                continue
            self.create_only(
                self._blob(f"in/{rel}").upload_from_string, data, content_type="application/octet-stream"
            )
            staged[rel] = rel
        for rel, uri in sorted(spec.input_uris.items()):
            src_bucket, _, key = uri.removeprefix("gs://").partition("/")
            if not uri.startswith("gs://") or not src_bucket or not key:
                raise RunnerError(
                    f"input {rel}: {uri} is not a gs:// URI this runner can stage", runner=self.runner
                )
            source = self.storage.bucket(src_bucket)
            self.create_only(
                source.copy_blob, source.blob(key), target, f"{self.prefix}/in/{rel}", missing_ok=True
            )
            staged[rel] = uri
        return inline, staged

    def delete_inputs(self) -> None:
        from google.api_core import exceptions

        def staged() -> list[Any]:
            return list(self.storage.list_blobs(self.bucket, prefix=f"{self.prefix}/in/", retry=None))

        for blob in self.call(staged):
            try:
                self.call(blob.delete, retry=None)
            except RunnerError as exc:
                if not isinstance(exc.__cause__, exceptions.NotFound):
                    raise

    # -- outputs and what the wrapper said

    def deliver_outputs(self, dest: str) -> tuple[dict[str, str], list[str]]:
        """The job's outputs (``out/``) where the control plane wants them (``dest``), server-side.

        Copies overwrite: another runner instance may deliver the same files again, with the
        same bytes. A file that cannot be copied is named, with the error, and the others are
        still delivered.
        """
        kept = f"{self.prefix}/out/"

        def names() -> list[str]:
            return [b.name for b in self.storage.list_blobs(self.bucket, prefix=kept, retry=None)]

        rels = [name[len(kept) :] for name in self.call(names)]
        if dest == f"gs://{self.bucket}/{kept}":
            return {rel: f"{dest}{rel}" for rel in rels}, []
        dest_bucket, _, dest_key = dest.removeprefix("gs://").partition("/")
        source, target = self.storage.bucket(self.bucket), self.storage.bucket(dest_bucket)
        delivered: dict[str, str] = {}
        failed: list[str] = []
        for rel in rels:
            try:
                self.call(source.copy_blob, source.blob(kept + rel), target, dest_key + rel, retry=None)
            except TransientRunnerError:
                raise
            except RunnerError as exc:
                failed.append(f"output {rel} to {dest}{rel}: {exc}")
                continue
            delivered[rel] = f"{dest}{rel}"
        return delivered, failed

    def wrapper_says(self) -> str | None:
        """What the job wrapper said it failed at (``squall: ...`` lines at the end of stderr)."""
        blob = self.call(self.storage.bucket(self.bucket).get_blob, f"{self.prefix}/log/stderr", retry=None)
        if blob is None or not blob.size:
            return None
        tail = self.call(blob.download_as_bytes, start=max(0, blob.size - 16384), retry=None)
        said = [
            line.removeprefix(STDERR_PREFIX).removeprefix("squall: ")
            for line in bytes(tail).decode("utf-8", "replace").splitlines()
            if line.startswith(f"{STDERR_PREFIX}squall: ")
        ]
        return "; ".join(said) or None

    def logged(self) -> bool:
        """Whether the wrapper ran at all (it creates its log first thing)."""
        return bool(self.call(self._blob("log/stdout").exists, retry=None))

    # -- the tombstone

    def final(self, uid: str) -> JobStatus | None:
        """How job ``uid`` ended, as written by :meth:`write_final`; None without one (or another job's)."""
        from google.api_core import exceptions

        blob = self._blob("final.json")

        def read() -> bytes | None:
            try:
                return bytes(blob.download_as_bytes(retry=None))
            except exceptions.NotFound:
                return None

        raw = self.call(read)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("uid") not in (None, uid):
                return None  # another attempt's job of the same name
            return JobStatus(
                JobState(doc["state"]),
                Failure(doc["failure"]) if doc.get("failure") else None,
                doc.get("exit_code"),
                doc.get("reason"),
                output_files=doc.get("output_files") or {},
            )
        except (ValueError, KeyError, TypeError):
            return None

    def write_final(self, uid: str, status: JobStatus, *, create_only: bool = False) -> None:
        doc = {
            "uid": uid,
            "state": status.state.value,
            "failure": status.failure.value if status.failure else None,
            "exit_code": status.exit_code,
            "reason": status.reason,
            "output_files": dict(status.output_files),
        }
        blob = self._blob("final.json")
        write = functools.partial(blob.upload_from_string, json.dumps(doc), content_type="application/json")
        if create_only:
            self.create_only(write)
        else:
            self.call(write, retry=None)

    # -- the log

    def read_stream(
        self, stream: str, offset: int, token: str, budget: int
    ) -> tuple[list[LogRecord], int, bool]:
        """Lines of one stream from byte ``offset``: (records, next offset, sentinel seen)."""
        from google.api_core import exceptions

        blob = self._blob(f"log/{stream}")

        def read() -> bytes:
            try:
                return bytes(
                    blob.download_as_bytes(start=offset, end=offset + LOG_PAGE_BYTES - 1, retry=None)
                )
            except (exceptions.NotFound, exceptions.RequestRangeNotSatisfiable):
                return b""

        return parse_log_page(self.call(read), stream, offset, token, budget)


def parse_log_page(
    data: bytes, stream: str, offset: int, token: str, budget: int
) -> tuple[list[LogRecord], int, bool]:
    """Lines of one stream's log object read from byte ``offset`` (at most :data:`LOG_PAGE_BYTES`):
    (records, next offset, sentinel seen). A last line without its newline is read again from
    its start next time, unless it alone fills the page (then it comes as a ``partial`` piece).
    Shared by every runner whose wrapper tees its log to an object store (Google's, Kubernetes)."""
    records: list[LogRecord] = []
    position = 0
    while position < len(data) and len(records) < budget:
        newline = data.find(b"\n", position)
        if newline < 0:
            if len(data) < LOG_PAGE_BYTES or position > 0:
                break  # an unfinished last line: read again from its start
            piece = data[position:].decode("utf-8", "replace")  # one line longer than a page
            records.append(LogRecord(stream, piece, partial=True))
            return records, offset + len(data), False
        raw = data[position:newline].decode("utf-8", "replace")
        position = newline + 1
        text = raw.removeprefix(STDERR_PREFIX) if stream == "stderr" else raw
        found = split_sentinel(text, token, stream)
        if found is not None:
            if found.before:
                records.append(LogRecord(stream, found.before))
            return records, offset + position, True
        records.append(LogRecord(stream, text))
    return records, offset + position, False


class LogSource(Protocol):
    """Where :func:`read_log` reads a job's two log streams from (a :class:`JobFolder`, an S3
    folder, Azure's node files)."""

    def read_stream(
        self, stream: str, offset: int, token: str, budget: int
    ) -> tuple[list[LogRecord], int, bool]: ...


def read_log(
    folder: LogSource,
    cursor: str | None,
    token: str,
    status: Callable[[], JobStatus | None],
    *,
    now: float,
    grace: float,
) -> LogChunk:
    """One page of the job's log after ``cursor``; ``status()`` is asked only when nothing new came.

    Complete once both streams' sentinels were read. A job that ended without them (killed,
    preempted) is complete ``grace`` seconds after its end, truncated; one that never started
    is complete at once (nothing can come).
    """
    offsets, since = _parse_cursor(cursor)
    lines: list[LogRecord] = []
    budget = LOG_PAGE_LINES
    for stream in ("stdout", "stderr"):
        offset = offsets[stream]
        if offset < 0:  # its sentinel came
            continue
        records, offset, ended = folder.read_stream(stream, offset, token, budget)
        lines += records
        budget -= len(records)
        offsets[stream] = -1 if ended else offset
    if offsets["stdout"] < 0 and offsets["stderr"] < 0:
        return LogChunk(tuple(lines), _cursor(offsets, since), complete=True)
    if lines:
        return LogChunk(tuple(lines), _cursor(offsets, since), complete=False)
    found = status()
    if found is None or not found.terminal:
        return LogChunk((), _cursor(offsets, None), complete=False)
    if found.started is None and not any(o > 0 for o in offsets.values()) and since is None:
        since = now - grace  # never ran: nothing can come, no wait
    since = since if since is not None else (found.ended.timestamp() if found.ended else now)
    if now - since >= grace:
        done = {"stdout": -1, "stderr": -1}
        return LogChunk((), _cursor(done, since), complete=True, truncated=found.started is not None)
    return LogChunk((), _cursor(offsets, since), complete=False)


def wrapper_for(
    spec: JobSpec,
    mount: str,
    *,
    nonce: str,
    inline: Mapping[str, bytes],
    staged: Mapping[str, str],
    keep: bool,
    runner: str,
) -> list[str]:
    """The container command for a folder mounted at ``mount``: the wrapper (runners/wrapper.py)
    fetching ``staged`` from ``in/``, keeping outputs in ``out/`` when ``keep``, teeing to ``log/``."""
    staging = VolumeStaging(f"{mount}/in", f"{mount}/out")
    try:
        return wrapper_command(
            list(spec.command),
            log_dir=f"{mount}/log",
            sentinel=sentinel_token(spec.name, nonce),
            inline_files=inline,
            inputs=dict(staged),
            fetch=staging,
            output_globs=spec.output_files if keep else (),
            upload=staging if keep else None,
        )
    except ValueError as exc:
        raise RunnerError(str(exc), runner=runner) from None


def _parse_cursor(cursor: str | None) -> tuple[dict[str, int], float | None]:
    if not cursor or not cursor.startswith(_CURSOR):
        return {"stdout": 0, "stderr": 0}, None
    try:
        out, err, since = cursor.removeprefix(_CURSOR).split(":")
        return {"stdout": int(out), "stderr": int(err)}, float(since) if since else None
    except ValueError:
        return {"stdout": 0, "stderr": 0}, None


def _cursor(offsets: Mapping[str, int], since: float | None) -> str:
    return f"{_CURSOR}{offsets['stdout']}:{offsets['stderr']}:{'' if since is None else round(since, 3)}"

"""What the tools image runs beside the task's container: ``python -m runners.kubernetes.tools``.

A pod has no Squall agent and the task's image need not have any storage tool, so two
containers in the tools image (``toolsImage``, Squall's own image) move the files, sharing an
``emptyDir`` volume with the task's container::

    stage-in   (init container)  fetches each input from the object store into <dir>/in/<rel>
    stage-out  (sidecar)         copies <dir>/log/{stdout,stderr} to the object store as they
                                 grow; once <dir>/rc exists (the task's container ended), copies
                                 the log a last time and every file under <dir>/out/ to the
                                 output prefix, then exits

The task's container runs the shared wrapper (runners/wrapper.py) with ``log_dir`` in the
volume, so the log in the object store ends with the wrapper's sentinel and is the source of
truth; pod logs die with the pod. A transfer that fails exits 97 (the wrapper's STAGING code)
with a message naming the file, written to the container's termination message
(``--termination-log``), which Kubernetes shows in the pod's status: the runner reports CONFIG
with it. The sidecar copies the log a last time on SIGTERM too (a pod deleted on cancel or
timeout gets one before SIGKILL). Nothing here runs ``kubectl exec`` or ``cp``.

Credentials are the pod's own: the service account's (IRSA, workload identity) or what the
deployment puts in the tools containers' environment (``tools_env``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from runners.wrapper import WrapperExit

__all__ = ["main"]

_INTERVAL = 0.5
"""Seconds between two copies of a growing log (S3 has no append: each copy is the whole file)."""


def _s3() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", config=Config(retries={"max_attempts": 5, "mode": "standard"})
    )


def _where(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri} is not an s3:// URI")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _fail(message: str, termination_log: str | None) -> int:
    print(f"squall: {message}", file=sys.stderr, flush=True)
    if termination_log:
        with contextlib.suppress(OSError):
            Path(termination_log).write_text(message[-4000:])
    return int(WrapperExit.STAGING)


def stage_in(directory: Path, inputs: Sequence[str], termination_log: str | None, s3: Any) -> int:
    for item in inputs:
        rel, _, uri = item.partition("=")
        target = directory / rel
        try:
            bucket, key = _where(uri)
            target.parent.mkdir(parents=True, exist_ok=True)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            target.write_bytes(body)
        except Exception as exc:
            return _fail(f"cannot fetch input {rel} from {uri}: {exc}", termination_log)
    return 0


class _Log:
    """The two log files and what of them is already in the object store."""

    def __init__(self, directory: Path, prefix: str, s3: Any) -> None:
        self.directory, self.prefix, self.s3 = directory, prefix, s3
        self.copied: dict[str, int] = {}

    def sync(self) -> None:
        for stream in ("stdout", "stderr"):
            path = self.directory / "log" / stream
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if self.copied.get(stream) == len(data):
                continue
            bucket, key = _where(self.prefix + stream)
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
            self.copied[stream] = len(data)


def stage_out(
    directory: Path,
    log_prefix: str,
    outputs: str | None,
    termination_log: str | None,
    s3: Any,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    log = _Log(directory, log_prefix, s3)

    def last_copy(_signum: int, _frame: FrameType | None) -> None:
        log.sync()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, last_copy)
    while not (directory / "rc").exists():
        try:
            log.sync()
        except Exception as exc:  # a copy that fails now is tried again; the last one must work
            print(f"squall: copying the log failed for now: {exc}", file=sys.stderr, flush=True)
        sleep(_INTERVAL)
    try:
        log.sync()
    except Exception as exc:
        return _fail(f"cannot keep the job's log under {log_prefix}: {exc}", termination_log)
    if outputs is None:
        return 0
    failed: list[str] = []
    out = directory / "out"
    for path in sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else []:
        rel = path.relative_to(out).as_posix()
        try:
            bucket, key = _where(outputs + rel)
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        except Exception as exc:
            failed.append(f"cannot upload output {rel} to {outputs}{rel}: {exc}")
    if failed:
        return _fail("; ".join(failed), termination_log)
    return 0


def main(argv: Sequence[str] | None = None, s3: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.kubernetes.tools")
    parser.add_argument("--termination-log", default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("stage-in")
    fetch.add_argument("--dir", required=True, type=Path)
    fetch.add_argument("inputs", nargs="*", help="rel=s3://bucket/key")
    keep = commands.add_parser("stage-out")
    keep.add_argument("--dir", required=True, type=Path)
    keep.add_argument("--log", required=True, help="s3:// prefix of the log objects")
    keep.add_argument("--outputs", default=None, help="s3:// prefix the outputs go under")
    args = parser.parse_args(argv)
    client = s3 if s3 is not None else _s3()
    if args.command == "stage-in":
        return stage_in(args.dir, args.inputs, args.termination_log, client)
    return stage_out(args.dir, args.log, args.outputs, args.termination_log, client)


if __name__ == "__main__":
    sys.exit(main())

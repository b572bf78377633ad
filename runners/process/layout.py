"""The job directory: where everything the runner knows about one job lives, and its lock.

``<base_dir>/<spec.name>/`` holds the files the package docstring lists. Everything a
``ProcessRunner`` needs to find, poll, read or cancel a job is there, so any runner on the
same ``base_dir`` (after a restart, or in another process) can take over. This module names
those files, checks what may become a path in them (job names, input files, output
patterns), holds the directory's flock (:class:`Claim`), and copies output files out of it.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from runners.base import RunnerError
from runners.process.files import nonempty_dir
from runners.process.shim import CANCELLED, LOG, PID, RESULT

__all__ = [
    "CANCELLED",
    "EXIT",
    "JOB",
    "LOG",
    "NAME",
    "OUT",
    "OUTPUTS",
    "PID",
    "RESULT",
    "WORK",
    "Claim",
    "check_name",
    "claim_busy",
    "copy_outputs",
    "default_base_dir",
    "path_from_file_uri",
    "relative",
    "started",
]

NAME = "process"
"""The runner's entry-point name, in every error it raises."""

JOB, EXIT = "job.json", "exit"  # PID, LOG, RESULT, CANCELLED: named in .shim, which writes or reads them
WORK, OUT, OUTPUTS = "work", "out", "outputs"

_NAME_MAX = 200
_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{_NAME_MAX - 1}}}")


def default_base_dir() -> Path:
    """``<user data dir>/squall/jobs``: platformdirs when installed, else the XDG rule."""
    try:  # optional: used when something else installed it, never required
        platformdirs = importlib.import_module("platformdirs")
    except ImportError:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # the XDG rule
        return root / "squall" / "jobs"
    return Path(platformdirs.user_data_dir("squall")) / "jobs"


def path_from_file_uri(uri: str) -> Path:
    """The local path of a ``file://`` URI; :class:`RunnerError` for any other scheme."""
    if uri.startswith("file:///") and not any(c in uri for c in "%?#;"):
        return Path(uri[7:])  # the usual URI, as urlparse would read it (twice a job: skip it)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise RunnerError(
            f"unsupported output prefix {uri!r}: the process runner only writes file:// URIs",
            runner=NAME,
        )
    if parsed.netloc not in ("", "localhost"):
        raise RunnerError(f"file URI {uri!r} names a remote host", runner=NAME)
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise RunnerError(f"file URI {uri!r} is not absolute", runner=NAME)
    return path


def check_name(name: str) -> None:
    if not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise RunnerError(
            f"invalid job name {name!r}: use at most {_NAME_MAX} ASCII letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            runner=NAME,
        )


def relative(path: str, what: str) -> PurePosixPath:
    pure = PurePosixPath(path)
    if not path or "\0" in path or pure.is_absolute() or ".." in pure.parts or pure == PurePosixPath("."):
        raise RunnerError(
            f"{what} {path!r} must be a relative path inside the working directory",
            runner=NAME,
        )
    return pure


class Claim:
    """An flock(2) on the job directory: serialises submit/cancel/find of one job across processes."""

    def __init__(self, job_dir: str, *, blocking: bool = True) -> None:
        self.path = job_dir
        self.blocking = blocking
        self.fd: int | None = None
        self.held = False

    def __enter__(self) -> Claim:
        # O_CLOEXEC matters: a spawned job must never inherit the lock.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
            self.held = True
        except BlockingIOError:
            self.held = False
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def claim_busy(job_dir: str) -> bool:
    """Whether someone holds the job's claim right now (a submit is preparing or spawning)."""
    try:
        with Claim(job_dir, blocking=False) as claim:
            return not claim.held
    except OSError:
        return False


def started(job_dir: str) -> bool:
    """Whether a submit went through: ``pid`` (spawned) or ``exit`` (ended without a process) exists."""
    return os.path.exists(f"{job_dir}/{PID}") or os.path.exists(f"{job_dir}/{EXIT}")


def copy_outputs(job_dir: str, patterns: Sequence[str], prefix_dir: Path | None) -> dict[str, str]:
    """Copy matching files of work/ and everything under out/ below ``prefix_dir``; name -> URI.

    Only regular files whose real path stays inside work/ (or out/) are copied: a symlink to
    elsewhere is skipped. A name found in both places takes the OUTPUT_DIR file.
    """
    if not patterns and not nonempty_dir(f"{job_dir}/{OUT}"):
        return {}  # the usual case: nothing to look for
    work, out = Path(job_dir, WORK), Path(job_dir, OUT)
    if prefix_dir is None:
        prefix_dir = Path(job_dir, OUTPUTS)
    found: dict[str, Path] = {}
    if patterns and work.is_dir():
        root = work.resolve()
        for pattern in patterns:
            for path in sorted(work.glob(pattern)):
                if path.is_file() and path.resolve().is_relative_to(root):
                    found[path.relative_to(work).as_posix()] = path
    if out.is_dir():
        root = out.resolve()
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.resolve().is_relative_to(root):
                found[path.relative_to(out).as_posix()] = path
    copied: dict[str, str] = {}
    for name, source in found.items():
        target = prefix_dir / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:  # the job's failure names the file it could not deliver
            message = f"output file {name} to {target.as_uri()}: {exc.strerror or exc}"
            raise RunnerError(message, runner=NAME) from exc
        copied[name] = target.as_uri()
    return copied

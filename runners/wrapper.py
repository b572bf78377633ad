"""The job wrapper every container runner uses: one POSIX ``sh`` script around the task's argv.

A container on a cloud batch service has no Squall agent in it, so the working-directory
contract of :class:`~runners.base.JobSpec` (inputs first, ``WORKING_DIR`` and ``OUTPUT_DIR``,
outputs after) and the end of the log are the work of a script generated here and passed as
the container's command::

    command = wrapper_command(argv, sentinel=token, inline_files=..., inputs=..., fetch=...,
                              output_globs=..., upload=...)
    # -> ["sh", "-c", <script>, "squall", *argv]

What the script does, in order:

1. makes ``$base/work`` (the cwd, ``WORKING_DIR``) and ``$base/outputs`` (``OUTPUT_DIR``);
2. writes small inputs from base64 embedded in the script (:data:`INLINE_LIMIT`), then fetches
   the others through the ``fetch`` backend (:class:`CopyBackend`); an input that is not there
   afterwards fails the job: a message naming it, exit :attr:`WrapperExit.STAGING`;
3. checks that the argv's first word is a command (``command -v``), else a message and exit
   :attr:`WrapperExit.NOT_FOUND`: the runner reports both as CONFIG, never retried;
4. runs the argv with every stderr line prefixed by :data:`STDERR_PREFIX` (still written to
   stderr, so the runtime assembles each stream's lines on its own): log drivers such as
   awslogs merge both streams into one, and the prefix tells them apart again. The exit code
   is kept in a file (POSIX ``sh`` has no ``pipefail``) and is the script's own at the end;
5. puts files matching ``output_globs`` (one ERE for ``grep -E``: ``sh`` globs have no
   ``**``) and everything under ``OUTPUT_DIR`` through the ``upload`` backend; a file that
   cannot be put fails the job with :attr:`WrapperExit.STAGING` after the others were tried;
6. prints the end-of-log sentinel (:func:`sentinel_lines`) on stdout and on stderr, each the
   very last line of its stream, and exits.

The sentinel is how a runner reading a cloud log service (which ingests late and pages
emptily) knows it has the whole log: ``::squall-end:<token>:<stream>:<rc>::``, where the token
is :func:`sentinel_token` of the job's name and a nonce the runner recorded on the job (a tag):
a user's output cannot match it by accident. It is printed on both streams because each stream
keeps its order but the two interleave as the runtime reads them; when the runner has both,
nothing of either stream is still on its way. The wrapper writes no newline before it, so a
last line without a newline (an outputs marker) ends in the sentinel: :func:`split_sentinel`
gives that line back.

Tools the script needs in the image: ``sh``, ``mkdir``, ``cp``, ``find``, ``sed``, ``grep``,
``cat`` and, for inline inputs, ``base64``: busybox, coreutils and every Debian or Alpine base
image have them. Copy backends may need more (:attr:`CopyBackend.tools`): the mounted-volume
and native backends need nothing else; the CLI backends (``aws``, ``gsutil``) are opt-in,
because the whole point is that nothing is required in the user's image.

Exit codes: the command's own, or :class:`WrapperExit` (96, 97) for what the wrapper failed
at. A command that itself exits 96 or 97 is read as a wrapper failure by a runner that has
only the exit code to go by; the message in the log says which it was.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

__all__ = [
    "INLINE_LIMIT",
    "STDERR_PREFIX",
    "AwsCli",
    "CopyBackend",
    "GsutilCli",
    "NativeStaging",
    "Sentinel",
    "VolumeStaging",
    "WrapperExit",
    "check_relative",
    "glob_to_ere",
    "sentinel_lines",
    "sentinel_token",
    "split_sentinel",
    "wrapper_command",
    "wrapper_script",
]

STDERR_PREFIX = "[stderr] "
INLINE_LIMIT = 6 * 1024
"""Input bytes (all files together) that travel inside the command; cloud APIs cap a job's
command (AWS Batch's SubmitJob at about 30 KiB), and base64 grows them by a third."""

_SENTINEL = re.compile(r"::squall-end:(?P<token>[0-9a-f]{16,64}):(?P<stream>out|err):(?P<rc>\d{1,3})::$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WrapperExit(IntEnum):
    """Exit codes of the wrapper's own failures (the command's code is passed through otherwise)."""

    NOT_FOUND = 96
    """The argv's first word is not a command in the image (or not executable)."""
    STAGING = 97
    """An input could not be fetched or written, or an output could not be put; the log names it."""


# -- the sentinel


def sentinel_token(job_name: str, nonce: str) -> str:
    """The per-job token of the end sentinel: the job's name and a nonce the runner recorded."""
    return hashlib.sha256(f"{job_name}\0{nonce}".encode()).hexdigest()[:32]


def sentinel_lines(token: str, rc: int) -> tuple[str, str]:
    """The two sentinel lines (stdout, stderr) the script prints for exit code ``rc``."""
    return (f"::squall-end:{token}:out:{rc}::", f"{STDERR_PREFIX}::squall-end:{token}:err:{rc}::")


@dataclass(frozen=True, slots=True)
class Sentinel:
    """A sentinel found at the end of a log line."""

    stream: str
    """``stdout`` or ``stderr``: which stream it ended."""
    rc: int
    """The exit code the wrapper exits with."""
    before: str
    """What the line held before it: a last line written without a newline, or ``""``."""


def split_sentinel(text: str, token: str, stream: str) -> Sentinel | None:
    """The sentinel of ``token`` ending ``text`` (one log line, its stream prefix removed), if any.

    ``stream`` is the line's stream as the runner read it (the stderr sentinel comes through
    the same prefix as every stderr line). Another job's sentinel, or one a user printed
    without knowing the token, is not this job's: None.
    """
    found = _SENTINEL.search(text)
    if found is None or found.group("token") != token:
        return None
    kind = "stdout" if found.group("stream") == "out" else "stderr"
    if kind != stream:
        return None  # each sentinel comes through its own stream, never echoed through the other
    before = text[: found.start()]
    if kind == "stderr":
        # The wrapper writes the prefix itself; a last stderr line without a newline ends in it.
        before = before.removesuffix(STDERR_PREFIX)
    return Sentinel(kind, int(found.group("rc")), before)


# -- copy backends


class CopyBackend(Protocol):
    """How the script moves a file between the working directory and where it is kept.

    Each method returns ``sh`` text run in the working directory, whose exit status says
    whether it worked (the script checks the file is there too). ``rel`` is a relative path,
    not yet quoted.
    """

    tools: tuple[str, ...]
    """Commands the image must have for it (checked by the script before the first use)."""

    def fetch(self, uri: str, rel: str) -> str:
        """Put the input ``uri`` (what the runner gave for it) at ``rel`` (its directory exists)."""
        ...

    def put(self) -> str:
        """Put the output ``"$f"`` (a path relative to the cwd) where outputs go, under the same path."""
        ...


def _q(text: str) -> str:
    return shlex.quote(text)


def _mkdir_parent(rel: str) -> str:
    parent = rel.rpartition("/")[0]
    return f"mkdir -p -- {_q(parent)}" if parent else ":"


@dataclass(frozen=True)
class VolumeStaging:
    """A mounted directory that another container or the platform fills before the job and empties after.

    Input ``rel`` is read from ``inputs_dir/<rel>`` (whoever filled the volume put it there;
    its URI only names it in messages); outputs are copied to ``outputs_dir/<path>``.
    Needs nothing beyond ``cp`` and ``mkdir``: the copying to and from storage is somebody
    else's (an init and a sidecar container, a FUSE mount).
    """

    inputs_dir: str
    outputs_dir: str
    tools: tuple[str, ...] = ()

    def fetch(self, uri: str, rel: str) -> str:
        return f"cp -- {_q(self.inputs_dir.rstrip('/') + '/' + rel)} {_q(rel)}"

    def put(self) -> str:
        out = _q(self.outputs_dir.rstrip("/"))
        mkdir = f'case "$f" in */*) mkdir -p -- {out}/"${{f%/*}}" ;; *) mkdir -p -- {out} ;; esac'
        return f'{mkdir} && cp -- "$f" {out}/"$f"'


@dataclass(frozen=True)
class NativeStaging(VolumeStaging):
    """The cloud's own file staging (Azure Batch resource and output files): the platform downloads
    each input to a path before the command and uploads matching files after it.

    To the script that is a directory like :class:`VolumeStaging`; the runner describes the
    transfers in its own API (Azure's ``resourceFiles``/``outputFiles``) with the same paths.
    """


@dataclass(frozen=True)
class AwsCli:
    """``aws s3 cp``, run inside the job. Opt-in only: it needs the AWS CLI in the user's image."""

    output_prefix: str | None = None
    tools: tuple[str, ...] = ("aws",)

    def fetch(self, uri: str, rel: str) -> str:
        return f"aws s3 cp --only-show-errors {_q(uri)} {_q(rel)}"

    def put(self) -> str:
        if self.output_prefix is None:
            raise ValueError("AwsCli needs output_prefix to put outputs")
        return f'aws s3 cp --only-show-errors "$f" {_q(self.output_prefix)}"$f"'


@dataclass(frozen=True)
class GsutilCli:
    """``gsutil cp``, run inside the job. Opt-in only: it needs the Cloud SDK in the user's image."""

    output_prefix: str | None = None
    tools: tuple[str, ...] = ("gsutil",)

    def fetch(self, uri: str, rel: str) -> str:
        return f"gsutil -q cp {_q(uri)} {_q(rel)}"

    def put(self) -> str:
        if self.output_prefix is None:
            raise ValueError("GsutilCli needs output_prefix to put outputs")
        return f'gsutil -q cp "$f" {_q(self.output_prefix)}"$f"'


# -- the script


def glob_to_ere(pattern: str) -> str:
    """A POSIX ERE matching the relative paths that the glob matches (``**`` spans directories)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(r"\[")
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(ch) if ch in r".^$+(){}|\\" else ch)
        i += 1
    return "".join(out)


def check_relative(path: str, what: str) -> None:
    """Raise ``ValueError`` unless ``path`` stays inside the working directory."""
    if not path or path.startswith("/") or ".." in path.split("/") or "\0" in path:
        raise ValueError(f"{what} {path!r} must be a relative path inside the working directory")


def _fail(message_sh: str, code: int) -> str:
    return f"{{ _squall_say {message_sh}; _squall_end {code}; }}"


def wrapper_script(
    *,
    sentinel: str,
    inline_files: Mapping[str, bytes] = {},
    inputs: Mapping[str, str] = {},
    fetch: CopyBackend | None = None,
    output_globs: Sequence[str] = (),
    upload: CopyBackend | None = None,
    env: Mapping[str, str] = {},
) -> str:
    """The script (see the module docstring); the argv comes after it as ``$@``.

    ``inline_files`` are written from base64; ``inputs`` maps a relative path to what
    ``fetch`` takes (a URI, a path in a volume); ``upload`` puts outputs, None to put nothing
    (``OUTPUT_DIR`` is still made). ``env`` is exported by the script itself, for platforms
    whose job API cannot carry every value; a runner that can set the environment should.
    ``sentinel`` is the job's :func:`sentinel_token`.
    """
    if not re.fullmatch(r"[0-9a-f]{16,64}", sentinel):
        raise ValueError("sentinel must be a sentinel_token()")
    for rel in (*inline_files, *inputs):
        check_relative(rel, "input file")
    for glob in output_globs:
        check_relative(glob, "output file pattern")
    if inputs and fetch is None:
        raise ValueError("inputs to fetch need a fetch backend")
    out_line, err_line = sentinel_lines(sentinel, 0)
    out_head, err_head = out_line.rsplit(":0::", 1)[0], err_line.rsplit(":0::", 1)[0]
    lines = [
        # fd 4 is the container's stderr, also inside the blocks whose stderr goes through sed.
        "exec 4>&2",
        f"_squall_say() {{ printf '{STDERR_PREFIX}squall: %s\\n' \"$1\" >&4; }}",
        # The sentinels end both streams: stderr's first, then stdout's, then the exit.
        f"_squall_end() {{ printf '%s:%s::\\n' {_q(err_head)} \"$1\" >&2; "
        f"printf '%s:%s::\\n' {_q(out_head)} \"$1\"; "
        '[ -z "${SQUALL_RC_FILE:-}" ] || echo "$1" > "$SQUALL_RC_FILE"; exit "$1"; }',
        'base=$(mktemp -d 2>/dev/null) || { base="${TMPDIR:-/tmp}/squall-$$"; mkdir -p "$base"; }',
        'mkdir -p "$base/work" "$base/outputs" || '
        + _fail('"cannot make the working directory in $base"', WrapperExit.STAGING),
        'WORKING_DIR="$base/work"; OUTPUT_DIR="$base/outputs"; export WORKING_DIR OUTPUT_DIR',
        'cd "$WORKING_DIR" || ' + _fail('"cannot enter $WORKING_DIR"', WrapperExit.STAGING),
    ]
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a shell name")
        lines.append(f"{name}={_q(value)}; export {name}")
    for rel, data in sorted(inline_files.items()):
        dest = _q(rel)
        encoded = base64.b64encode(data).decode()
        lines.append(
            f"{{ {_mkdir_parent(rel)} && printf '%s' {_q(encoded)} | base64 -d > {dest}; }} || "
            + _fail(_q(f"cannot write input {rel}"), WrapperExit.STAGING)
        )
    lines.append(
        '_squall_need() { command -v "$1" >/dev/null 2>&1 || '
        "{ _squall_say \"staging needs '$1' in the image, which has none\"; return 1; }; }"
    )
    if inputs and fetch is not None:
        for tool in fetch.tools:
            lines.append(f"_squall_need {_q(tool)} || _squall_end {int(WrapperExit.STAGING)}")
    for rel, uri in sorted(inputs.items()):
        assert fetch is not None
        dest = _q(rel)
        lines.append(
            f"{{ {_mkdir_parent(rel)} && {fetch.fetch(uri, rel)}; }} 2>&1 | sed 's/^/{STDERR_PREFIX}/' >&2; "
            f"[ -f {dest} ] || " + _fail(_q(f"cannot fetch input {rel} from {uri}"), WrapperExit.STAGING)
        )
    lines += [
        'case "$1" in */*) [ -f "$1" ] && [ -x "$1" ] ;; *) command -v "$1" >/dev/null 2>&1 ;; esac || '
        + _fail('"command not found: $1"', WrapperExit.NOT_FOUND),
        # stdout goes around the pipe on fd 3; the command does not inherit fd 4
        f'{{ {{ "$@" 4>&-; echo "$?" > "$base/rc"; }} 2>&1 1>&3 3>&- | '
        f"sed 's/^/{STDERR_PREFIX}/' >&2; }} 3>&1",
        'rc=$(cat "$base/rc" 2>/dev/null) || rc=1',
    ]
    if upload is not None:
        # A file that cannot be put is named and noted; the others are still tried.
        # The pipeline's status is sed's: a failed put leaves its path in a file instead.
        put = " && ".join([*(f"_squall_need {_q(tool)}" for tool in upload.tools), upload.put()])
        lines.append(
            "_squall_put() { while IFS= read -r f; do "
            f'{{ {{ {put}; }} || echo "$f" >> "$base/failed"; }} 2>&1 | sed \'s/^/{STDERR_PREFIX}/\' >&2; '
            "done; }"
        )
        if output_globs:
            ere = "^(" + "|".join(glob_to_ere(g) for g in output_globs) + ")$"
            lines.append(
                f"cd \"$WORKING_DIR\" && find . -type f | sed 's|^\\./||' | grep -E {_q(ere)} | _squall_put"
            )
        lines += [
            "cd \"$OUTPUT_DIR\" && find . -type f | sed 's|^\\./||' | _squall_put",
            'if [ -s "$base/failed" ]; then while IFS= read -r f; do _squall_say "cannot upload output $f"; '
            f'done < "$base/failed"; rc={int(WrapperExit.STAGING)}; fi',
        ]
    lines.append('_squall_end "$rc"')
    return "\n".join(lines)


def wrapper_command(argv: Sequence[str], *, log_dir: str | None = None, **script: object) -> list[str]:
    """The container command: ``["sh", "-c", <wrapper_script(**script)>, "squall", *argv]``.

    ``log_dir``: a directory (in a mounted bucket) that also gets each stream as the container
    writes it, in ``stdout`` and ``stderr`` (stderr lines prefixed as on the container's
    stderr), each ending with its sentinel: a runner without a log service it can trust reads
    them back (Google Batch reads them from GCS, by byte ranges). One file per stream, because
    a line one stream leaves without a newline must not swallow the other stream's next line.
    The script is then run by an outer one that pipes each stream through ``tee`` (the image
    needs ``tee`` too) and exits with the script's code.
    """
    if not argv:
        raise ValueError("empty command")
    inner = wrapper_script(**script)  # type: ignore[arg-type]
    if log_dir is None:
        return ["sh", "-c", inner, "squall", *argv]
    if not log_dir.startswith("/") or "\0" in log_dir or "\n" in log_dir:
        raise ValueError("log_dir must be an absolute path")
    out, err = _q(log_dir.rstrip("/") + "/stdout"), _q(log_dir.rstrip("/") + "/stderr")
    outer = "\n".join(
        [
            'SQUALL_RC_FILE=$(mktemp 2>/dev/null) || SQUALL_RC_FILE="${TMPDIR:-/tmp}/squall-rc-$$"',
            "export SQUALL_RC_FILE",
            f"mkdir -p -- {_q(log_dir)} 2>/dev/null",
            # stdout goes around the stderr pipe on fd 3, as in the script itself
            f'{{ sh -c {_q(inner)} squall "$@" 2>&1 1>&3 3>&- | tee -- {err} >&2; }} 3>&1 | tee -- {out}',
            'rc=$(cat "$SQUALL_RC_FILE" 2>/dev/null) || rc=1',
            'exit "${rc:-1}"',
        ]
    )
    return ["sh", "-c", outer, "squall", *argv]

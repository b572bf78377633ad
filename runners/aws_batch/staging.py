"""The command a Batch container really runs: a small POSIX ``sh`` wrapper around the task's argv.

A container on Batch has no Squall agent, so file staging and the working-directory contract
(``WORKING_DIR``, ``OUTPUT_DIR``, inputs written first, outputs copied after) are done by a
script generated here and passed as the job's command::

    sh -c <wrapper> squall <argv...>

What it does, in order:

1. makes ``$base/work`` (cwd, ``WORKING_DIR``) and ``$base/outputs`` (``OUTPUT_DIR``);
2. writes small input files from base64 embedded in the script (no S3, no tools needed: a
   Kestra ``Script`` task's script is such a file) and fetches larger ones from S3 with the
   AWS CLI (``aws s3 cp``), exiting with :data:`STAGING_EXIT` if one cannot be fetched;
3. runs the argv with stderr lines prefixed by :data:`STDERR_PREFIX` (still written to
   stderr, so the container runtime assembles each stream's lines on its own): the awslogs
   driver sends stdout and stderr to one CloudWatch stream, and the prefix is how
   :meth:`logs` tells them apart again. Its exit code is kept in a file (POSIX sh has no ``pipefail``);
4. uploads files matching ``output_files`` (translated to one ERE for ``grep -E``, since
   POSIX ``sh`` globs have no ``**``) and everything under ``OUTPUT_DIR`` to the output prefix;
5. exits with the argv's exit code.

Staging messages go to stderr with the prefix too, so a script's last stdout line without a
newline stays intact (the AWS CLI runs with ``--only-show-errors``).
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Mapping, Sequence

__all__ = ["INLINE_LIMIT", "STAGING_EXIT", "STDERR_PREFIX", "glob_to_ere", "wrapper_command"]

STDERR_PREFIX = "[stderr] "
STAGING_EXIT = 97
INLINE_LIMIT = 6 * 1024
"""Input files up to this many bytes in all travel inside the command (SubmitJob allows ~30 KiB)."""


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


def _q(text: str) -> str:
    return shlex.quote(text)


def wrapper_command(
    argv: Sequence[str],
    *,
    inline_files: Mapping[str, bytes],
    s3_files: Mapping[str, str],
    output_globs: Sequence[str],
    output_prefix: str | None,
) -> list[str]:
    """The container command: ``["sh", "-c", <wrapper>, "squall", *argv]``.

    ``s3_files`` maps a relative path to the ``s3://`` URI to fetch; ``output_prefix`` (an
    ``s3://`` URI ending in ``/``) is where outputs go, None to upload nothing.
    """
    err = f"printf '{STDERR_PREFIX}squall: %s\\n' >&2"
    lines = [
        'base=$(mktemp -d 2>/dev/null) || { base="/tmp/squall-$$"; mkdir -p "$base"; }',
        'mkdir -p "$base/work" "$base/outputs"',
        'WORKING_DIR="$base/work"; OUTPUT_DIR="$base/outputs"; export WORKING_DIR OUTPUT_DIR',
        'cd "$WORKING_DIR" || exit ' + str(STAGING_EXIT),
    ]
    for rel, data in sorted(inline_files.items()):
        parent = rel.rpartition("/")[0]
        if parent:
            lines.append(f"mkdir -p {_q(parent)}")
        encoded = base64.b64encode(data).decode()
        lines.append(
            f"printf '%s' {_q(encoded)} | base64 -d > {_q(rel)} || "
            f"{{ {err} {_q('cannot write input ' + rel)}; exit {STAGING_EXIT}; }}"
        )
    for rel, uri in sorted(s3_files.items()):
        parent = rel.rpartition("/")[0]
        if parent:
            lines.append(f"mkdir -p {_q(parent)}")
        lines.append(
            f"aws s3 cp --only-show-errors {_q(uri)} {_q(rel)} 2>&1 | sed 's/^/{STDERR_PREFIX}/' >&2; "
            f"[ -f {_q(rel)} ] || {{ {err} {_q('cannot fetch input ' + uri)}; exit {STAGING_EXIT}; }}"
        )
    lines += [
        f'{{ {{ "$@"; echo "$?" > "$base/rc"; }} 2>&1 1>&3 3>&- | sed \'s/^/{STDERR_PREFIX}/\' >&2; }} 3>&1',
        'rc=$(cat "$base/rc" 2>/dev/null) || rc=1',
    ]
    if output_prefix is not None:
        put = f'aws s3 cp --only-show-errors "$f" {_q(output_prefix)}"$f"'
        lines.append(
            f"_squall_put() {{ while IFS= read -r f; do {put} 2>&1 | sed 's/^/{STDERR_PREFIX}/' >&2; done; }}"
        )
        if output_globs:
            ere = "^(" + "|".join(glob_to_ere(g) for g in output_globs) + ")$"
            lines.append(
                f"cd \"$WORKING_DIR\" && find . -type f | sed 's|^\\./||' | grep -E {_q(ere)} | _squall_put"
            )
        lines.append("cd \"$OUTPUT_DIR\" && find . -type f | sed 's|^\\./||' | _squall_put")
    lines.append('exit "$rc"')
    return ["sh", "-c", "\n".join(lines), "squall", *argv]

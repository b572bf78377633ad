"""The job wrapper's script, run for real by each POSIX shell on this machine in a temp dir.

Each test generates a script with :func:`runners.wrapper.wrapper_command` and runs it with
``dash`` (and ``busybox sh`` when installed), as a container would run ``sh -c``: the files,
exit codes, stream marking and sentinels below are what the shell really did.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runners.wrapper import (
    INLINE_LIMIT,
    STDERR_PREFIX,
    AwsCli,
    Sentinel,
    VolumeStaging,
    WrapperExit,
    glob_to_ere,
    sentinel_lines,
    sentinel_token,
    split_sentinel,
    wrapper_command,
    wrapper_script,
)

SHELLS = [
    pytest.param(("dash",), id="dash", marks=pytest.mark.skipif(not shutil.which("dash"), reason="no dash")),
    pytest.param(
        ("busybox", "sh"),
        id="busybox",
        marks=pytest.mark.skipif(not shutil.which("busybox"), reason="no busybox"),
    ),
    pytest.param(("sh",), id="sh"),
]
TOKEN = sentinel_token("etl-crunch-3k2j4h5a", "nonce-1")
PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    volume: Path

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.split("\n")

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.split("\n")

    def output(self, rel: str) -> bytes:
        return (self.volume / "out" / rel).read_bytes()


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return tuple(request.param)


@pytest.fixture
def run(shell: tuple[str, ...], tmp_path: Path) -> Callable[..., Ran]:
    """Runs the wrapper around ``sh -c <script>``; ``proc_env`` is the container's environment."""

    def go(
        script: str, *, proc_env: Mapping[str, str] | None = None, remote: Mapping[str, bytes] = {}, **kw: Any
    ) -> Ran:
        volume = tmp_path / "volume"
        for rel, data in remote.items():
            (volume / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
            (volume / "in" / rel).write_bytes(data)
        (volume / "in").mkdir(parents=True, exist_ok=True)
        staging = VolumeStaging(str(volume / "in"), str(volume / "out"))
        kw.setdefault("inputs", {rel: rel for rel in remote})
        kw.setdefault("fetch", staging)
        kw.setdefault("upload", staging)
        command = wrapper_command(("sh", "-c", script), sentinel=TOKEN, **kw)
        assert command[:2] == ["sh", "-c"]
        proc = subprocess.run(
            [*shell, *command[1:]],
            env={"PATH": PATH, "TMPDIR": str(tmp_path), **(proc_env or {})},
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), volume)

    return go


def assert_ends_with_sentinels(ran: Ran, rc: int) -> None:
    out, err = sentinel_lines(TOKEN, rc)
    assert ran.stdout.endswith(out + "\n"), ran.stdout[-200:]
    assert ran.stderr.endswith(err + "\n"), ran.stderr[-200:]
    assert ran.code == rc


# -- files


def test_inputs_with_awkward_names_arrive_byte_for_byte(run: Callable[..., Ran]) -> None:
    names = ["with space.txt", "new\nline.txt", "ünïcødé/日本.txt", 'quote\'s "$HOME".txt', "-dash.txt"]
    inline = {name: f"inline {i}\n".encode() for i, name in enumerate(names)}
    remote = {f"remote/{name}": f"remote {i}\n".encode() for i, name in enumerate(names)}
    script = 'for f in *.txt */*.txt; do cp -- "$f" "$OUTPUT_DIR/$(printf %s "$f" | tr "\\n/" "_+")"; done'
    ran = run(script, inline_files=inline, remote=remote)
    assert_ends_with_sentinels(ran, 0)
    for name, data in inline.items():
        if "/" not in name:
            assert ran.output(name.replace("\n", "_")) == data
    assert ran.output("ünïcødé+日本.txt") == b"inline 2\n"
    for name, data in remote.items():
        assert (Path(ran.volume) / "in" / name).read_bytes() == data
    ran = run("cat 'remote/new\nline.txt' remote/ünïcødé/日本.txt", inline_files={}, remote=remote)
    assert ran.out_lines[:2] == ["remote 1", "remote 2"]


def test_output_globs_and_output_dir_are_put_and_nothing_else(run: Callable[..., Ran]) -> None:
    script = (
        "mkdir -p sub/deeper a; echo r > result.txt; echo g > sub/deeper/g.txt; echo x > skip.log;"
        ' echo no > a/result.txt; echo d > "$OUTPUT_DIR/d.txt";'
        ' mkdir "$OUTPUT_DIR/n"; echo n > "$OUTPUT_DIR/n/e w"'
    )
    ran = run(script, output_globs=("result.txt", "sub/**/*.txt"))
    assert_ends_with_sentinels(ran, 0)
    found = sorted(
        str(p.relative_to(ran.volume / "out")) for p in (ran.volume / "out").rglob("*") if p.is_file()
    )
    assert found == ["d.txt", "n/e w", "result.txt", "sub/deeper/g.txt"]
    assert ran.output("n/e w") == b"n\n"


def test_a_64_kib_script_runs(run: Callable[..., Ran]) -> None:
    data = random.Random(64).randbytes(48 * 1024)  # base64: 64 KiB inside the script
    script = wrapper_script(sentinel=TOKEN, inline_files={"blob.bin": data})
    assert len(script) > 64 * 1024
    ran = run('cp blob.bin "$OUTPUT_DIR/"', inline_files={"blob.bin": data})
    assert_ends_with_sentinels(ran, 0)
    assert hashlib.sha256(ran.output("blob.bin")).digest() == hashlib.sha256(data).digest()


# -- environment


AWKWARD = {
    "QUOTES": 'it\'s "quoted" `tick`',
    "DOLLAR": "$HOME ${PATH} $(echo no) \\n",
    "NEWLINES": "one\ntwo\n\nthree\n",
    "UNICODE": "ünïcødé 日本 🚀",
    "EMPTY": "",
}


@pytest.mark.parametrize("where", ["script", "process"])
def test_env_values_arrive_verbatim(run: Callable[..., Ran], where: str) -> None:
    names = " ".join(AWKWARD)
    script = f'for n in {names}; do eval "printf %s \\"\\$$n\\"" > "$OUTPUT_DIR/$n"; done'
    ran = run(script, env=AWKWARD) if where == "script" else run(script, proc_env=AWKWARD)
    assert_ends_with_sentinels(ran, 0)
    for name, value in AWKWARD.items():
        assert ran.output(name).decode() == value, name


def test_env_names_must_be_shell_names() -> None:
    with pytest.raises(ValueError, match="not a shell name"):
        wrapper_script(sentinel=TOKEN, env={"BAD-NAME": "x"})


def test_working_and_output_dirs_are_set_and_the_cwd_is_the_working_dir(run: Callable[..., Ran]) -> None:
    ran = run('[ "$PWD" = "$WORKING_DIR" ] && [ -d "$OUTPUT_DIR" ] && [ -w "$OUTPUT_DIR" ] && echo ok')
    assert ran.out_lines[0] == "ok"
    assert_ends_with_sentinels(ran, 0)


# -- exit codes, streams, sentinels


@pytest.mark.parametrize("code", [0, 1, 137])
def test_the_commands_exit_code_is_kept(run: Callable[..., Ran], code: int) -> None:
    script = "kill -9 $$" if code == 137 else f"exit {code}"
    ran = run(f"echo before; {script}")
    assert ran.out_lines[0] == "before"
    assert_ends_with_sentinels(ran, code)


def test_stderr_lines_are_marked_and_stdout_lines_are_not(run: Callable[..., Ran]) -> None:
    ran = run("echo out1; echo err1 >&2; echo out2; printf 'err2 no newline' >&2")
    assert ran.out_lines[:2] == ["out1", "out2"]
    assert ran.err_lines[0] == f"{STDERR_PREFIX}err1"
    # The last stderr line had no newline: the sentinel ends it, and gives it back whole.
    last = ran.err_lines[1].removeprefix(STDERR_PREFIX)
    found = split_sentinel(last, TOKEN, "stderr")
    assert found == Sentinel("stderr", 0, "err2 no newline")


def test_the_sentinel_is_the_last_line_and_returns_a_last_line_without_newline(
    run: Callable[..., Ran],
) -> None:
    marker = '::{"outputs":{"k":"v"}}::'
    ran = run(f"echo first; printf '%s' '{marker}'", output_globs=("*.txt",))
    assert_ends_with_sentinels(ran, 0)
    assert ran.out_lines[0] == "first"
    assert ran.out_lines[-1] == ""  # the sentinel's own newline
    assert split_sentinel(ran.out_lines[1], TOKEN, "stdout") == Sentinel("stdout", 0, marker)
    assert split_sentinel(ran.out_lines[0], TOKEN, "stdout") is None


def test_only_this_jobs_sentinel_counts() -> None:
    other = sentinel_token("etl-crunch-3k2j4h5a", "nonce-2")
    out, _ = sentinel_lines(other, 0)
    assert split_sentinel(out, TOKEN, "stdout") is None
    assert split_sentinel("::squall-end:deadbeef:out:0::", TOKEN, "stdout") is None
    mine_out, mine_err = sentinel_lines(TOKEN, 3)
    assert split_sentinel(mine_out, TOKEN, "stdout") == Sentinel("stdout", 3, "")
    assert split_sentinel(mine_err.removeprefix(STDERR_PREFIX), TOKEN, "stderr") == Sentinel("stderr", 3, "")
    # A user echoing this job's stderr sentinel on stdout does not end the stderr stream.
    assert split_sentinel(mine_err.removeprefix(STDERR_PREFIX), TOKEN, "stdout") is None
    assert split_sentinel("x" + mine_err.removeprefix(STDERR_PREFIX), TOKEN, "stdout") is None
    assert split_sentinel(mine_out, TOKEN, "stderr") is None
    assert other != TOKEN and re.fullmatch(r"[0-9a-f]{32}", TOKEN)


# -- the wrapper's own failures


def test_an_input_that_cannot_be_fetched_fails_with_staging_naming_it(run: Callable[..., Ran]) -> None:
    ran = run("echo never", inputs={"data/missing file.csv": "s3://bucket/missing file.csv"})
    assert "never" not in ran.stdout
    assert (
        f"{STDERR_PREFIX}squall: cannot fetch input data/missing file.csv from s3://bucket/missing file.csv"
        in (ran.err_lines)
    )
    assert_ends_with_sentinels(ran, WrapperExit.STAGING)


def test_an_output_that_cannot_be_put_fails_with_staging_naming_it(
    run: Callable[..., Ran], tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the outputs directory should be")
    staging = VolumeStaging(str(tmp_path / "in"), str(blocked))
    ran = run("echo r > result.txt; exit 0", output_globs=("result.txt",), upload=staging)
    assert f"{STDERR_PREFIX}squall: cannot upload output result.txt" in ran.err_lines
    assert_ends_with_sentinels(ran, WrapperExit.STAGING)


def test_a_cli_backend_needs_its_cli_in_the_image(run: Callable[..., Ran], tmp_path: Path) -> None:
    ran = run("echo ran", upload=AwsCli("s3://bucket/out/"), proc_env={"PATH": "/usr/bin:/bin"})
    assert_ends_with_sentinels(ran, 0)  # nothing to put: the CLI is not needed
    ran = run(
        "echo r > result.txt", output_globs=("*.txt",), upload=AwsCli("s3://b/out/"), proc_env={"PATH": PATH}
    )
    assert f"{STDERR_PREFIX}squall: staging needs 'aws' in the image, which has none" in ran.err_lines
    assert f"{STDERR_PREFIX}squall: cannot upload output result.txt" in ran.err_lines
    assert_ends_with_sentinels(ran, WrapperExit.STAGING)


@pytest.mark.parametrize("argv0", ["no-such-command-xyz", "./missing.sh", "./not-executable.sh"])
def test_a_command_that_is_not_found_fails_before_running(
    shell: tuple[str, ...], tmp_path: Path, argv0: str
) -> None:
    volume_in = {"not-executable.sh": b"echo hi\n"}
    staging = VolumeStaging(str(tmp_path / "volume" / "in"), str(tmp_path / "volume" / "out"))
    command = wrapper_command((argv0, "arg"), sentinel=TOKEN, inline_files=volume_in, upload=staging)
    proc = subprocess.run(
        [*shell, *command[1:]], env={"PATH": PATH, "TMPDIR": str(tmp_path)}, capture_output=True, timeout=30
    )
    stderr = proc.stderr.decode()
    assert f"{STDERR_PREFIX}squall: command not found: {argv0}\n" in stderr
    assert proc.returncode == WrapperExit.NOT_FOUND
    assert proc.stdout.decode().endswith(sentinel_lines(TOKEN, WrapperExit.NOT_FOUND)[0] + "\n")


def test_bad_paths_are_refused_before_any_script() -> None:
    for bad in ("/etc/passwd", "../up", "a/../../b", ""):
        with pytest.raises(ValueError, match="relative path"):
            wrapper_script(sentinel=TOKEN, inline_files={bad: b""})
    with pytest.raises(ValueError, match="relative path"):
        wrapper_script(sentinel=TOKEN, output_globs=("../*.txt",))
    with pytest.raises(ValueError, match="sentinel"):
        wrapper_script(sentinel="not-a-token")
    with pytest.raises(ValueError, match="fetch backend"):
        wrapper_script(sentinel=TOKEN, inputs={"a": "s3://b/a"})
    assert INLINE_LIMIT < 30 * 1024 * 3 // 4


def test_glob_to_ere() -> None:
    def matches(glob: str, path: str) -> bool:
        return re.fullmatch(glob_to_ere(glob), path) is not None

    assert matches("sub/**/*.txt", "sub/deeper/g.txt") and matches("sub/**/*.txt", "sub/g.txt")
    assert not matches("*.txt", "a/b.txt") and matches("*.txt", "b.txt")
    assert matches("**", "a/b/c") and matches("data_?.csv", "data_1.csv")
    assert not matches("result.txt", "resultxtxt")
    assert matches("[!a]*.log", "b.log") and not matches("[!a]*.log", "a.log")


def test_the_sentinel_token_depends_on_name_and_nonce() -> None:
    assert sentinel_token("a", "n") == sentinel_token("a", "n")
    assert len({sentinel_token("a", "n"), sentinel_token("a", "m"), sentinel_token("b", "n")}) == 3

"""Every ``bash`` block of the README and docs/ works exactly as written on a fresh clone.

A block runs with ``bash -e`` in a scratch directory that holds what a clone has (``.venv``,
``samples/``, ``benchmarks/``...), so what it writes (``secrets.yaml``) lands there. A block
that needs a cloud account, PyPI, or minutes of running says so in an HTML comment just above
it (``<!-- not run by the tests: why -->``) and is checked statically only: each of its
commands must name an interpreter of the clone's ``.venv`` (a bare ``squall`` or ``python``
fails on a machine where the venv is not activated, which is how the README installs it).
The README's first two blocks are the install itself (``.ci/run`` runs the second).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP = re.compile(r"<!-- not run by the tests: (?P<why>[^>]*\S)\s*-->\s*\n```bash\n")
BLOCK = re.compile(r"```bash\n(?P<body>.*?)```", re.S)
STANDARD = {"printf", "curl", "until", "do", "done", "kill", "chmod", "sleep", "cd", "export", "echo"}
EXPECTED = {  # a block that names ... must print ... (and never the secret's value)
    "samples/secrets.yaml": ["connecting as app with password ********", "SUCCESS"],
    "/api/v1/main/executions/squall.samples/hello": ['"flowId":"hello"'],
}


@dataclass
class Block:
    doc: Path
    line: int
    body: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        skipped = {m.end() - len("```bash\n"): m.group("why") for m in SKIP.finditer(text)}
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append(Block(doc, line, match.group("body"), skipped.get(match.start())))
    install = [b for b in found if b.doc.name == "README.md"][:2]
    for block in install:
        block.skip = "the install itself"
    return found


def commands(body: str) -> list[str]:
    """Each command of a block (continuation lines joined, comments dropped), split on ``&&``,
    ``;`` and ``|``."""
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        out += [part.strip() for part in re.split(r"&&|;|\|", line) if part.strip()]
    return out


ALL = blocks()


def test_the_docs_have_blocks_to_check() -> None:
    assert len([b for b in ALL if b.skip is None]) >= 3
    assert {b.doc.name for b in ALL} >= {"README.md", "api.md", "packaging.md"}


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_every_command_names_the_clones_venv(block: Block) -> None:
    for command in commands(block.body):
        words = shlex.split(command, comments=True)
        if not words:
            continue
        program = words[0]
        if program in STANDARD or program.startswith("-"):
            continue
        if words[:3] == ["python3", "-m", "venv"]:
            continue
        assert program.startswith(".venv/bin/"), f"{block.id}: `{command}`: .venv/bin/{program}"
        for word in words[1:]:  # a script or flow it names is in the clone (or the block writes it)
            named = word.endswith((".py", ".yaml")) and not word.startswith(("@", "-"))
            if named and f"> {word}" not in block.body:
                assert (ROOT / word).exists(), f"{block.id}: `{command}` names {word}, not in the clone"


def _scratch(tmp_path: Path) -> Path:
    """A directory that looks like the clone's root: its venv and its files, by symlink."""
    venv = ROOT / ".venv" if (ROOT / ".venv").is_dir() else Path(sys.prefix)
    (tmp_path / ".venv").symlink_to(venv)
    for name in ("samples", "benchmarks", "tests", "control_plane", "runners", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


RUN = [b for b in ALL if b.skip is None]


@pytest.mark.xdist_group("doc-commands")  # two blocks serve on the README's port 8080
@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_the_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    cwd = _scratch(tmp_path)
    env = {
        **os.environ,
        "SQUALL_DB": str(tmp_path / "data" / "squall.db"),  # not the user's own database
        "PYTHONPATH": str(ROOT),
    }
    env.pop("SQUALL_API_TOKEN", None)
    result = subprocess.run(
        ["bash", "-e", "-c", block.body],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{block.id} failed:\n{output}"
    assert "Traceback" not in output
    for needle, wanted in EXPECTED.items():
        if needle in block.body:
            for text in wanted:
                said = text in output or text in output.replace(" ", "")
                assert said, f"{block.id}: no {text!r} in\n{output}"
    assert "s3cr3t" not in output  # the secrets block's value, masked wherever it is shown

"""Build the Lambda deployment zip, reproducibly: what ``squall package`` runs.

Theory of operation
-------------------
The zip is a function of four inputs: Squall's source tree, the runtime dependencies in
``pyproject.toml``, the lock file (exact versions) and the target (Lambda's Python version and
architecture). The same inputs give a byte-identical zip, so a Terraform plan shows no change
when nothing changed, and a reviewer can rebuild a deployed artefact and compare hashes::

    pyproject deps  ─┐                      ┌─ pip install --target TREE --platform ... -c LOCK
    (- CLI, - boto3) ├─ runtime_requirements ┤     (wheels only, no bytecode, for the target)
    LOCK ────────────┘                      └─ every installed distribution must be pinned
    TREE + control_plane/ + runners/ + squall dist-info ─ select ─ + unchecked hash-based .pyc
                              (when this Python is the target's) ─ sorted entries, fixed time
                                                                    and mode, deflate 9 ─ zip

- **What goes in.** The handlers need the core dependencies and the ``aws`` extra
  (aws-lambda-powertools) and ``ingress`` (PyJWT and rsa, pure Python, for Pub/Sub pushes).
  Left out: typer and rich, which only the ``squall`` command imports,
  and boto3/botocore, which Lambda's Python runtime provides (``include_boto3`` pins them for
  teams that want their own). pip resolves the rest, so their transitive deps leave with them.
  A runner whose SDK is an optional extra is added on request (``extras``, ``--extra gcp``),
  from an allow-list (:data:`OPTIONAL_EXTRAS`); without one the zip is what it always was.
- **Pinned.** The lock is a pip constraints file resolved for every supported target at once
  (:func:`update_lock`), with every optional extra, so one lock serves every zip; a build
  passes it with ``-c`` and then checks that each distribution
  pip installed is pinned there, so a dependency added to pyproject without a new lock is an
  error, never a silently floating version. The lock records a fingerprint of the pyproject
  requirements it was resolved from (the optional extras' included); a mismatch says "stale
  lock" before pip even runs.
- **Platform.** Lambda's runtimes are manylinux (glibc 2.26 for python3.11 on Amazon Linux 2,
  2.34 for 3.12+ on AL2023), so pip is given every manylinux tag the runtime can load,
  newest first, exactly as pip would choose on the runtime itself (pip older than 24 does not
  expand ``manylinux_2_34`` to the lower tags on its own).
- **Deterministic zip.** Entries are sorted by name, every timestamp is 1980-01-01 (or
  ``SOURCE_DATE_EPOCH``), every mode is 0644, there are no directory entries, and the data is
  deflated at level 9 by zlib (same zlib, same bytes). Files Lambda never reads are dropped
  (:func:`keep`): pip's bytecode, console scripts and installer bookkeeping (their content
  names the build machine's interpreter), type stubs, C sources and test suites. Licences stay.
- **Bytecode** (:func:`_bytecode`): ``/var/task`` is read-only, so without ``.pyc`` files
  Lambda compiles every module it imports at each cold start (``tick`` imported in 614 ms
  instead of 270). Each ``.py`` gets a PEP 552 *unchecked hash-based* pyc in ``__pycache__``
  (no timestamp, no build path: reproducible; loaded without reading the source), written
  by a CPython of the target's version (:func:`find_compiler`): ``--bytecode-python``, the
  one running the build, ``python3.X`` on ``PATH``, or one pyenv or uv installed. Another
  version cannot make valid bytecode: without one the zip has none, and the report says
  what to install (:func:`bytecode_problem`).
- **Squall itself** comes from the source tree, not from an installed copy, with a generated
  ``squall-<version>.dist-info`` so that ``importlib.metadata`` finds its version and,
  crucially, its ``squall.runners`` entry points: without them no runner can be found in Lambda.

Errors are :class:`PackagingError` with a message meant for a person: an unknown Python
version lists the known ones, an unwritable output names the path, a pip failure quotes pip's
own ``ERROR:`` lines (which name the package).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from msgspec import Struct, field
from msgspec.structs import replace

from control_plane.errors import PackagingError

__all__ = [
    "ARCHITECTURES",
    "CLI_ONLY",
    "DEFAULT_LOCK",
    "LAMBDA_GLIBC",
    "OPTIONAL_EXTRAS",
    "RUNTIME_PROVIDED",
    "BuildReport",
    "Compiler",
    "Lock",
    "PackageSize",
    "PackagingError",
    "Target",
    "build",
    "bytecode_problem",
    "check_lock",
    "download_wheels",
    "find_compiler",
    "keep",
    "optional_extras",
    "project_root",
    "runtime_requirements",
    "update_lock",
]

LAMBDA_GLIBC: Mapping[str, tuple[int, int]] = {"3.11": (2, 26), "3.12": (2, 34), "3.13": (2, 34)}
"""Lambda's Python runtimes Squall supports (``requires-python >= 3.11``) and their glibc:
python3.11 runs on Amazon Linux 2, python3.12 and 3.13 on Amazon Linux 2023."""

ARCHITECTURES: Mapping[str, str] = {"arm64": "aarch64", "x86_64": "x86_64"}
"""Lambda's architecture names and the machine names in wheel platform tags."""

DEFAULT_PYTHON = "3.12"
DEFAULT_ARCH = "arm64"
DEFAULT_LOCK = PurePosixPath("packaging/lambda-requirements.txt")
"""Where the lock lives, relative to the project root."""

CLI_ONLY = frozenset({"typer", "rich"})
"""Core dependencies only ``control_plane.cli`` imports; the handlers never do (a test imports
every handler from a zip without them)."""

RUNTIME_PROVIDED = frozenset({"boto3", "botocore"})
"""Provided by Lambda's Python runtime; shipped only with ``include_boto3``."""
LAMBDA_EXTRAS = ("aws", "ingress")
"""The pyproject extras the Lambda zip always installs beside the core dependencies."""
OPTIONAL_EXTRAS: Mapping[str, str] = {
    "gcp": "the google-batch and cloud-run runners' SDKs",
    "azure": "the azure-batch runner's SDKs",
    "k8s": "the kubernetes runner's client",
}
"""The pyproject extras a zip may add (``--extra``): runners whose SDK only some deployments
need. The lock pins them too; any other extra is refused."""
BOTO3_OPTION = "--include-boto3"

MANYLINUX_FLOOR = (2, 17)  # manylinux2014, the oldest tag current wheels use
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
LICENCE = re.compile(r"^(licen[cs]e|copying|notice|authors|copyright)", re.IGNORECASE)
STRIPPED_SUFFIXES = frozenset({".pyc", ".pyo", ".pyi", ".c", ".h", ".cpp", ".pyx", ".pxd", ".pxi"})
INSTALLER_FILES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
TEST_DIRS = frozenset({"tests", "testing"})
LOCK_BOTO3_SECTION = "# only with --include-boto3 (the Lambda runtime provides these):"
LOCK_SECTION = re.compile(r"# only with (.+?)(?: \(.*\))?:")
"""A lock section's header: the options (``--extra gcp``, ``--include-boto3``) its pins are for."""
SOURCE_PACKAGES = ("control_plane", "runners")


# ---------------------------------------------------------------- target


class Target(Struct, frozen=True):
    """A Lambda runtime: Python version and architecture. Invalid values cannot be built."""

    python_version: str = DEFAULT_PYTHON
    arch: str = DEFAULT_ARCH

    def __post_init__(self) -> None:
        if self.python_version not in LAMBDA_GLIBC:
            known = ", ".join(LAMBDA_GLIBC)
            raise PackagingError(
                f"unknown Python version {self.python_version!r}: Squall's Lambda runtimes are {known}"
            )
        if self.arch not in ARCHITECTURES:
            known = ", ".join(ARCHITECTURES)
            raise PackagingError(f"unknown architecture {self.arch!r}: Lambda's are {known}")

    @property
    def label(self) -> str:
        return f"python{self.python_version} {self.arch}"

    def platforms(self) -> list[str]:
        """Every manylinux tag the runtime's glibc can load, best first (as pip ranks them)."""
        machine = ARCHITECTURES[self.arch]
        major, newest = LAMBDA_GLIBC[self.python_version]
        tags = [f"manylinux_{major}_{minor}_{machine}" for minor in range(newest, MANYLINUX_FLOOR[1] - 1, -1)]
        return [*tags, f"manylinux2014_{machine}"]

    def pip_args(self) -> list[str]:
        args = [arg for tag in self.platforms() for arg in ("--platform", tag)]
        return [*args, "--python-version", self.python_version, "--implementation", "cp"]


def all_targets() -> list[Target]:
    """What the lock is resolved for; the default target first (its pins lead)."""
    default = Target()
    rest = [
        Target(v, a)
        for v in LAMBDA_GLIBC
        for a in ARCHITECTURES
        if (v, a) != (default.python_version, default.arch)
    ]
    return [default, *rest]


# ---------------------------------------------------------------- requirements and lock


def normalize(name: str) -> str:
    """PEP 503 name: ``PyYAML`` and ``pyyaml``, ``typing_extensions`` and ``typing-extensions`` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise PackagingError(f"cannot read the package name in requirement {requirement!r}")
    return normalize(match.group(1))


def project_root() -> Path:
    """The source checkout this module runs from: the zip is built from source, not from site-packages."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise PackagingError(
            f"no pyproject.toml in {root}: `squall package` runs from a Squall source checkout"
        )
    return root


def _pyproject(root: Path) -> dict[str, object]:
    with (root / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f).get("project", {})
    if not isinstance(project, dict):
        raise PackagingError(f"{root / 'pyproject.toml'} has no [project] table")
    return project


def optional_extras(extras: Iterable[str]) -> tuple[str, ...]:
    """``extras`` checked against :data:`OPTIONAL_EXTRAS`, without repeats, in a fixed order
    (so that ``--extra`` given twice or in another order builds the same zip)."""
    wanted = set(extras)
    for extra in sorted(wanted):
        if extra not in OPTIONAL_EXTRAS:
            allowed = ", ".join(OPTIONAL_EXTRAS)
            always = f" ({' and '.join(LAMBDA_EXTRAS)} are always in it)" if extra in LAMBDA_EXTRAS else ""
            raise PackagingError(
                f"unknown extra {extra!r} for the Lambda zip{always}: --extra takes {allowed}"
            )
    return tuple(e for e in OPTIONAL_EXTRAS if e in wanted)


def extra_option(extra: str) -> str:
    """How a lock section and the command name an optional extra."""
    return f"--extra {extra}"


def runtime_requirements(root: Path, *, include_boto3: bool = False, extras: Iterable[str] = ()) -> list[str]:
    """The requirements the handlers need, as written in pyproject: core minus CLI-only, plus
    [aws] and [ingress] (the events function's token verification), plus the optional
    ``extras`` asked for (a runner's SDK: ``gcp``)."""
    chosen = optional_extras(extras)
    project = _pyproject(root)
    core = list(project.get("dependencies", []))  # type: ignore[call-overload]
    declared = project.get("optional-dependencies", {})
    declared = declared if isinstance(declared, dict) else {}
    for extra in chosen:
        if extra not in declared:
            raise PackagingError(f"{root / 'pyproject.toml'} has no [{extra}] extra")
    lambda_extras = [r for extra in (*LAMBDA_EXTRAS, *chosen) for r in declared.get(extra, [])]
    wanted = [r for r in core if _requirement_name(r) not in CLI_ONLY]
    wanted += [r for r in lambda_extras if include_boto3 or _requirement_name(r) not in RUNTIME_PROVIDED]
    return wanted


def _fingerprint(root: Path) -> str:
    """What the lock was resolved from: a change to any of it makes the lock stale."""
    requirements = runtime_requirements(root, include_boto3=True, extras=OPTIONAL_EXTRAS)
    text = "\n".join([*sorted(requirements), *sorted(t.label for t in all_targets())])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _section_header(options: frozenset[str]) -> str:
    if options == {BOTO3_OPTION}:
        return LOCK_BOTO3_SECTION
    return f"# only with {' or '.join(sorted(options))}:"


class Lock(Struct, frozen=True):
    """Exact versions for every distribution a zip may contain, by normalized name."""

    pins: Mapping[str, str]
    only_with: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """The pins the default zip does not install, by name: the options that do (``--extra
    gcp``, ``--include-boto3``); the lock lists them last, under a comment naming those options."""
    fingerprint: str = ""

    def needed_with(self, option: str) -> frozenset[str]:
        """The pins only ``option`` (``--include-boto3``, ``--extra gcp``) adds to the default zip."""
        return frozenset(name for name, options in self.only_with.items() if option in options)

    @property
    def boto3_only(self) -> frozenset[str]:
        return self.needed_with(BOTO3_OPTION)

    @classmethod
    def read(cls, path: Path) -> Lock:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PackagingError(
                f"no lock file at {path}: create it with `squall package --update-lock`"
            ) from None
        pins: dict[str, str] = {}
        only_with: dict[str, frozenset[str]] = {}
        fingerprint = ""
        section: frozenset[str] = frozenset()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            header = LOCK_SECTION.fullmatch(line)
            if line.startswith("# inputs:"):
                fingerprint = line.removeprefix("# inputs:").strip()
            elif header is not None:
                section = frozenset(header.group(1).split(" or "))
            elif line and not line.startswith("#"):
                match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
                if match is None:
                    raise PackagingError(f"{path}:{number}: expected NAME==VERSION, got {line!r}")
                name = normalize(match.group(1))
                pins[name] = match.group(2)
                if section:
                    only_with[name] = section
        return cls(pins, only_with, fingerprint)

    def render(self) -> str:
        targets = f"python {', '.join(LAMBDA_GLIBC)} on {' and '.join(ARCHITECTURES)}"
        lines = [
            "# Squall's Lambda dependencies, pinned so that the same source gives the same zip.",
            "# Generated by `squall package --update-lock` (docs/packaging.md); do not edit by hand.",
            f"# Resolved, wheels only, for {targets}.",
            f"# inputs: {self.fingerprint}",
        ]
        lines += [f"{n}=={v}" for n, v in sorted(self.pins.items()) if n not in self.only_with]
        sections: dict[frozenset[str], list[str]] = {}
        for name, options in self.only_with.items():
            if name in self.pins:
                sections.setdefault(options, []).append(name)
        for options in sorted(sections, key=sorted):  # --extra sections first, --include-boto3 last
            lines.append(_section_header(options))
            lines += [f"{n}=={self.pins[n]}" for n in sorted(sections[options])]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pip


def _pip_env(offline: bool) -> dict[str, str]:
    """Offline builds ignore the user's pip configuration: only the given wheels may be used."""
    env = dict(os.environ)
    if offline:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull  # pip's documented switch: no config file at all
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _pip(args: Sequence[str], doing: str, *, offline: bool = False) -> None:
    """Run pip with this interpreter; on failure raise with pip's own error lines (they name the package).

    pip runs without ``--quiet``: its explanation of a conflict ("The conflict is caused by")
    is not an ERROR line, and it is the part that says which pin to change.
    """
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_pip_env(offline),
        check=False,
    )
    if result.returncode == 0:
        return
    output = result.stdout.strip()  # stderr merged in, so ERROR lines stay next to their explanation
    if "No module named pip" in output:
        raise PackagingError(f"pip is not installed for {sys.executable}: `squall package` runs pip")
    lines = output.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("ERROR:")]
    shown = lines[errors[0] :] if errors else lines[-20:]
    raise PackagingError(f"pip failed while {doing}:\n" + "\n".join(shown[:40]))


def _source_args(wheels: Path | None) -> list[str]:
    return ["--no-index", "--find-links", str(wheels)] if wheels is not None else []


def _resolve(
    requirements: Sequence[str], target: Target, constraints: Mapping[str, str], wheels: Path | None
) -> dict[str, str]:
    """What pip would install for ``target`` (a dry run), as normalized name -> version."""
    with tempfile.TemporaryDirectory(prefix="squall-lock-") as tmp:
        report = Path(tmp) / "report.json"
        pinned = Path(tmp) / "constraints.txt"
        pinned.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())), encoding="utf-8")
        _pip(
            [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--only-binary=:all:",
                "--target",
                str(Path(tmp) / "target"),
                "--report",
                str(report),
                *target.pip_args(),
                *_source_args(wheels),
                "-c",
                str(pinned),
                *requirements,
            ],
            f"resolving the dependencies for {target.label}",
            offline=wheels is not None,
        )
        installed = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in installed}


def update_lock(root: Path, lock_path: Path, *, wheels: Path | None = None) -> Lock:
    """Resolve the newest versions pyproject allows, for every target, and write the lock.

    Everything any zip may hold is resolved together: the default zip's requirements, boto3
    and every optional extra, so one version of each package serves every combination of
    options. The default target is resolved first and its pins constrain the others, so
    every target shares one version of each package; a package only some targets need (an
    environment marker) is added with the version its target resolved. Resolving for every
    target, wheels only, is also what checks that each one has a wheel of everything (grpcio
    and protobuf for ``gcp``): a missing one fails here, naming the target and the package.

    Which option needs a package that the default zip does not hold is read from the default
    target (``--include-boto3`` alone, and each ``--extra`` alone), for the lock's sections.
    """
    full = runtime_requirements(root, include_boto3=True, extras=OPTIONAL_EXTRAS)
    lean = runtime_requirements(root, include_boto3=False)
    options = {BOTO3_OPTION: runtime_requirements(root, include_boto3=True)}
    options.update({extra_option(e): runtime_requirements(root, extras=(e,)) for e in OPTIONAL_EXTRAS})
    default, *others = all_targets()
    pins = _resolve(full, default, {}, wheels)
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = [(t, pool.submit(_resolve, full, t, pins, wheels)) for t in others]
        lean_pending = pool.submit(_resolve, lean, default, pins, wheels)
        option_pending = {o: pool.submit(_resolve, r, default, pins, wheels) for o, r in options.items()}
        results = [(t, future.result()) for t, future in pending]
        lean_pins = lean_pending.result()
        option_pins = {o: future.result() for o, future in option_pending.items()}
    only_with = {
        name: frozenset(o for o, found in option_pins.items() if name in found)
        for name in set(pins) - set(lean_pins)
    }
    merged = dict(pins)
    for target, found in results:
        for name, version in found.items():
            if merged.setdefault(name, version) != version:
                raise PackagingError(
                    f"{name} resolves to {merged[name]} and to {version} ({target.label}):"
                    " pin it in pyproject so one version fits every target"
                )
    lock = Lock(merged, {n: o for n, o in only_with.items() if o}, _fingerprint(root))
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path.write_text(lock.render(), encoding="utf-8")
    return lock


def check_lock(root: Path, lock_path: Path) -> Lock:
    """The lock, refused when it was resolved from other requirements than pyproject's current ones."""
    lock = Lock.read(lock_path)
    if lock.fingerprint != _fingerprint(root):
        raise PackagingError(
            f"{lock_path} is stale: pyproject's runtime dependencies (or the supported targets) changed"
            " since it was generated; run `squall package --update-lock`"
        )
    return lock


def download_wheels(
    dest: Path,
    *,
    target: Target,
    root: Path | None = None,
    lock_path: Path | None = None,
    include_boto3: bool = False,
    extras: Iterable[str] = (),
) -> None:
    """Save the pinned wheels for ``target`` (and ``extras``) in ``dest`` (a cache for offline builds)."""
    root = root or project_root()
    lock_path = lock_path or root / DEFAULT_LOCK
    check_lock(root, lock_path)
    dest.mkdir(parents=True, exist_ok=True)
    _pip(
        [
            "download",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            *target.pip_args(),
            "-c",
            str(lock_path),
            *runtime_requirements(root, include_boto3=include_boto3, extras=extras),
        ],
        f"downloading the wheels for {target.label}",
    )


def _install(
    tree: Path, target: Target, lock_path: Path, requirements: Sequence[str], wheels: Path | None
) -> None:
    _pip(
        [
            "install",
            "--only-binary=:all:",
            "--no-compile",  # pip's pycs hold timestamps; _bytecode makes reproducible ones
            "--no-warn-script-location",
            "--target",
            str(tree),
            *target.pip_args(),
            *_source_args(wheels),
            "-c",
            str(lock_path),
            *requirements,
        ],
        f"installing the dependencies for {target.label}",
        offline=wheels is not None,
    )


# ---------------------------------------------------------------- selecting files


def keep(path: PurePosixPath) -> bool:
    """Whether a file of the installed tree belongs in the zip. Why each rule:

    - pip's bytecode (pip runs with ``--no-compile`` anyway): timestamped, so not
      reproducible; :func:`_bytecode` adds reproducible pycs to the zip instead;
    - ``bin/``: console scripts, whose shebang names the build machine's interpreter;
    - ``RECORD`` & co: installer bookkeeping (RECORD hashes those very scripts);
    - stubs and C/Cython sources: read by type checkers and compilers, never at run time;
    - ``tests``/``testing`` packages inside a distribution: never imported by the handlers.

    Licence files are always kept, wherever they are.
    """
    parts = path.parts
    if LICENCE.match(path.name):
        return True
    if parts[0] == "bin" or "__pycache__" in parts:
        return False
    if path.suffix in STRIPPED_SUFFIXES:
        return False
    if parts[0].endswith(".dist-info"):
        return path.name not in INSTALLER_FILES
    return not any(part in TEST_DIRS for part in parts[1:-1])


class _Entry(Struct, frozen=True):
    name: str  # path inside the zip
    source: Path | None  # file to copy, or None for generated ``data``
    distribution: str
    data: bytes = b""

    def read(self) -> bytes:
        return self.source.read_bytes() if self.source is not None else self.data


def _dist_metadata(dist_info: Path) -> tuple[str, str]:
    headers = HeaderParser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
    return str(headers["Name"]), str(headers["Version"])


def _tree_entries(tree: Path) -> tuple[list[_Entry], dict[str, str]]:
    """The installed dependencies, each file labelled with its distribution (from RECORD)."""
    owner: dict[str, str] = {}
    installed: dict[str, str] = {}
    for dist_info in sorted(tree.glob("*.dist-info")):
        name, version = _dist_metadata(dist_info)
        installed[name] = version
        label = f"{name} {version}"
        record = dist_info / "RECORD"
        if record.is_file():
            with record.open(newline="", encoding="utf-8") as f:
                for row in csv.reader(f):
                    if row:
                        owner[row[0]] = label
        for file in dist_info.rglob("*"):
            owner[file.relative_to(tree).as_posix()] = label
    entries = []
    for file in sorted(tree.rglob("*")):
        rel = PurePosixPath(file.relative_to(tree).as_posix())
        if file.is_file() and keep(rel):
            entries.append(_Entry(str(rel), file, owner.get(str(rel), rel.parts[0])))
    return entries, installed


def _source_entries(root: Path, label: str) -> list[_Entry]:
    """Squall's own packages, from the source tree (what the wheel would hold, minus bytecode)."""
    entries = []
    for package in SOURCE_PACKAGES:
        for file in sorted((root / package).rglob("*")):
            rel = PurePosixPath(file.relative_to(root).as_posix())
            hidden = any(part.startswith(".") for part in rel.parts)
            if (
                file.is_file()
                and not hidden
                and "__pycache__" not in rel.parts
                and rel.suffix not in {".pyc", ".pyo"}
            ):
                entries.append(_Entry(str(rel), file, label))
    return entries


def _squall_dist_info(root: Path) -> list[_Entry]:
    """A minimal dist-info for Squall: its version for the API, its entry points for the runners."""
    project = _pyproject(root)
    name, version = str(project["name"]), str(project["version"])
    label = f"{name} {version}"
    base = f"{name}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
    ]
    licence = project.get("license")
    if isinstance(licence, dict) and "text" in licence:
        metadata.append(f"License: {licence['text']}")
    if "requires-python" in project:
        metadata.append(f"Requires-Python: {project['requires-python']}")
    groups = project.get("entry-points", {})
    points: list[str] = []
    if isinstance(groups, dict):
        for group, items in groups.items():
            points.append(f"[{group}]")
            points += [f"{key} = {value}" for key, value in items.items()]
            points.append("")
    return [
        _Entry(f"{base}/METADATA", None, label, ("\n".join(metadata) + "\n").encode()),
        _Entry(f"{base}/entry_points.txt", None, label, "\n".join(points).encode()),
        _Entry(f"{base}/top_level.txt", None, label, ("\n".join(SOURCE_PACKAGES) + "\n").encode()),
    ]


# ---------------------------------------------------------------- bytecode

_COMPILE = """
import json, py_compile, sys
failed = []
for source, cfile, dfile in json.load(sys.stdin):
    try:
        py_compile.compile(
            source, cfile=cfile, dfile=dfile, doraise=True, optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except py_compile.PyCompileError:
        failed.append(dfile)
json.dump(failed, sys.stdout)
"""
"""Run by a fresh interpreter: see :func:`_bytecode`."""


def _running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


class Compiler(Struct, frozen=True):
    """A CPython interpreter of the target's version: the only one that can write its bytecode."""

    executable: str
    """The interpreter itself (a pyenv shim or a symlink on PATH resolved to the real binary)."""
    cache_tag: str
    """``sys.implementation.cache_tag`` (``cpython-312``): names each ``__pycache__`` file."""


_PROBE = (
    "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2],"
    " sys.implementation.cache_tag, sys.executable)"
)


def _probe(executable: str) -> tuple[str, str, Compiler] | None:
    """``(implementation, version, compiler)`` of the interpreter at ``executable``; None if it fails."""
    try:
        result = subprocess.run(
            [executable, "-S", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = result.stdout.split(maxsplit=3)
    if result.returncode != 0 or len(fields) != 4:
        return None
    implementation, version, cache_tag, real = fields
    return implementation, version, Compiler(real.strip(), cache_tag)


def find_compiler(target: Target, python: str | None = None) -> Compiler | None:
    """The interpreter that writes ``target``'s bytecode, or None when none is at hand.

    A ``.pyc`` is valid only for the Python version (and implementation) that wrote it: its
    magic number changes with every minor version, and Lambda would ignore, then fail to
    rewrite (``/var/task`` is read-only), bytecode made by another one. So the build looks
    for CPython ``target.python_version``: ``python`` when given (anything else is an
    error), else the interpreter running the build, else ``python3.X`` on ``PATH``
    (deadsnakes and Homebrew install one) or in pyenv's or uv's directories, so a machine
    whose default Python is another version still ships bytecode.
    """
    wanted = target.python_version
    if python is not None:
        found = _probe(python)
        if found is None:
            raise PackagingError(f"--bytecode-python {python}: not a Python interpreter that runs here")
        implementation, version, compiler = found
        if (implementation, version) != ("cpython", wanted):
            raise PackagingError(
                f"--bytecode-python {python} is {implementation} {version}; python{wanted} bytecode"
                f" needs CPython {wanted}"
            )
        return compiler
    if sys.implementation.name == "cpython" and _running_python() == wanted:
        return Compiler(sys.executable, sys.implementation.cache_tag)
    for candidate in _installed_pythons(wanted):
        found = _probe(candidate)
        if found is not None and found[:2] == ("cpython", wanted):
            return found[2]
    return None


def _installed_pythons(version: str) -> Iterator[str]:
    """Where a ``python<version>`` may be, most likely first; each is probed before it is used.

    ``PATH`` first, then the version managers' own directories, where an interpreter lives
    even when it is not the active one (a pyenv shim for an inactive version does not run):
    pyenv's ``$PYENV_ROOT/versions/<version>.*`` and uv's managed Pythons, newest patch first.
    """
    on_path = shutil.which(f"python{version}")
    if on_path:
        yield on_path
    home = Path.home()
    roots = [
        Path(os.environ.get("PYENV_ROOT") or home / ".pyenv") / "versions",
        Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or home / ".local/share/uv/python"),
    ]
    patterns = [f"{version}.*/bin/python{version}", f"cpython-{version}.*/bin/python{version}"]
    found: list[tuple[int, str]] = []
    for root in roots:
        for pattern in patterns:
            for path in root.glob(pattern) if root.is_dir() else ():
                patch = re.match(rf"(?:cpython-)?{re.escape(version)}\.(\d+)", path.parent.parent.name)
                found.append((int(patch.group(1)) if patch else -1, str(path)))
    yield from (path for _, path in sorted(found, reverse=True))


def bytecode_problem(target: Target, compiler: Compiler | None) -> str | None:
    """Why the zip has no bytecode (a sentence to print), or None when ``compiler`` can write it."""
    if compiler is not None:
        return None
    wanted = target.python_version
    return (
        f"no bytecode in the zip: bytecode for python{wanted} needs CPython {wanted}, and this is"
        f" {sys.implementation.name} {_running_python()}, with no python{wanted}"
        f" on PATH or in pyenv's or uv's directories, so Lambda will compile every module it imports at"
        f" each cold start. To include it,"
        f" install Python {wanted} (or pass --bytecode-python PATH); --no-bytecode silences this warning"
    )


def _pyc_name(source: str, cache_tag: str) -> str:
    """Where the target interpreter looks for a module's bytecode: ``__pycache__/<name>.<tag>.pyc``."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{cache_tag}.pyc")


def _bytecode(entries: Sequence[_Entry], workdir: Path, compiler: Compiler) -> list[_Entry]:
    """Unchecked hash-based bytecode (PEP 552) for every ``.py`` entry, beside its source.

    - **Reproducible**: a hash-based pyc holds the source's hash, not its mtime; the file name
      compiled into it (``dfile``, what a traceback shows until the import system sets the
      real path) is the path inside the zip, so the build directory leaves no trace.
    - **Unchecked**: the import system loads it without reading the source to compare hashes;
      right for a package nobody edits in place (``/var/task`` is read-only). The ``.py``
      files stay in the zip for tracebacks.
    - **A fresh interpreter** (``compiler``) compiles, with a fixed hash seed and one file
      after another in sorted order, so nothing of the calling process (its loaded modules,
      its hash seed) can reach the bytes. Sources that do not compile (never imported, or
      the import would fail anyway) get no pyc, as with pip and ``compileall``.
    """
    sources = [e for e in entries if e.name.endswith(".py") and e.source is not None]
    pycs = {e.name: _pyc_name(e.name, compiler.cache_tag) for e in sources}
    jobs = [(str(e.source), str(workdir / pycs[e.name]), e.name) for e in sources]
    env = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        [compiler.executable, "-S", "-W", "ignore", "-c", _COMPILE],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise PackagingError(f"compiling the bytecode failed:\n{result.stderr.strip()[-2000:]}")
    failed = set(json.loads(result.stdout))
    return [
        _Entry(pycs[e.name], workdir / pycs[e.name], e.distribution) for e in sources if e.name not in failed
    ]


# ---------------------------------------------------------------- writing


def _zip_time() -> tuple[int, int, int, int, int, int]:
    """1980-01-01 00:00:00, or ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention) when set."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        return (1980, 1, 1, 0, 0, 0)
    try:
        epoch = int(raw)
    except ValueError:
        raise PackagingError(f"SOURCE_DATE_EPOCH must be an integer, got {raw!r}") from None
    t = time.gmtime(max(epoch, ZIP_EPOCH))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _write_zip(path: Path, entries: Iterable[_Entry]) -> list[zipfile.ZipInfo]:
    when = _zip_time()
    with zipfile.ZipFile(path, "w") as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that external_attr holds a mode on every build host
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, entry.read(), compresslevel=9)
        return archive.infolist()


def _writable_output(output: Path) -> None:
    """Fail before the slow part when the zip could not be written where asked."""
    if output.is_dir():
        raise PackagingError(f"output {output} is a directory; give the zip's file name")
    for ancestor in output.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise PackagingError(
                    f"cannot write the zip to {output.parent}: {ancestor} is not a directory"
                )
            break
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".squall-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PackagingError(f"cannot write the zip to {output.parent}: {reason}") from None


# ---------------------------------------------------------------- build


class PackageSize(Struct, frozen=True):
    """One distribution's share of the zip."""

    name: str
    files: int
    compressed: int
    unpacked: int


class BuildReport(Struct, frozen=True):
    """What was built: the numbers ``squall package`` prints."""

    output: Path
    target: Target
    size: int
    unpacked: int
    files: int
    sha256: str
    packages: tuple[PackageSize, ...] = field(default=())
    compiled: int = 0
    """How many ``.pyc`` files the zip holds (0: Lambda compiles at each cold start)."""
    notices: tuple[str, ...] = ()
    """What the build could not do as well as asked (no bytecode for another Python)."""
    extras: tuple[str, ...] = ()
    """The optional extras the zip holds (``gcp``), beside what every zip holds."""

    def warnings(self) -> list[str]:
        """The notices, then Lambda's limits (zip upload 50 MB; unpacked function and layers 250 MB)."""
        found = list(self.notices)
        if self.unpacked > 250 * 1024 * 1024:
            found.append("unpacked size is over Lambda's 250 MB limit: the function will not deploy")
        if self.size > 50 * 1024 * 1024:
            found.append("zip is over 50 MB: Lambda accepts it only through S3")
        return found


def _check_pins(installed: Mapping[str, str], lock: Lock, lock_path: Path) -> None:
    for name, version in sorted(installed.items()):
        pinned = lock.pins.get(normalize(name))
        if pinned != version:
            why = "is not in" if pinned is None else f"is pinned to {pinned} in"
            raise PackagingError(
                f"pip installed {name} {version}, which {why} {lock_path}: the lock is out of date,"
                " run `squall package --update-lock`"
            )


def build(
    output: Path,
    *,
    target: Target | None = None,
    root: Path | None = None,
    lock_path: Path | None = None,
    include_boto3: bool = False,
    wheels: Path | None = None,
    offline: bool = False,
    bytecode: bool = True,
    bytecode_python: str | None = None,
    extras: Iterable[str] = (),
) -> BuildReport:
    """Build the Lambda zip at ``output`` and report its size.

    ``extras``: optional runner extras (:data:`OPTIONAL_EXTRAS`) whose requirements the zip
    adds; any other name is refused before anything is built.

    ``wheels``: a wheel cache. Missing pinned wheels are downloaded into it first (unless
    ``offline``), then pip installs from it alone, so the build reads exactly those files.
    ``bytecode``: add ``.pyc`` files, written by ``bytecode_python`` or the interpreter
    :func:`find_compiler` finds for the target; without one, the report carries a notice
    saying how to get them (:func:`bytecode_problem`).
    """
    target = target or Target()
    chosen = optional_extras(extras)
    root = root or project_root()
    lock_path = lock_path or root / DEFAULT_LOCK
    output = output.absolute()
    _writable_output(output)
    lock = check_lock(root, lock_path)
    compiler = find_compiler(target, bytecode_python) if bytecode else None
    if wheels is not None and not offline:
        download_wheels(
            wheels, target=target, root=root, lock_path=lock_path, include_boto3=include_boto3, extras=chosen
        )
    elif offline and (wheels is None or not wheels.is_dir()):
        raise PackagingError(f"an offline build needs an existing wheel directory, got {wheels}")
    with tempfile.TemporaryDirectory(prefix="squall-package-") as tmp:
        tree = Path(tmp) / "tree"
        requirements = runtime_requirements(root, include_boto3=include_boto3, extras=chosen)
        _install(tree, target, lock_path, requirements, wheels)
        deps, installed = _tree_entries(tree)
        _check_pins(installed, lock, lock_path)
        project = _pyproject(root)
        entries = [
            *deps,
            *_source_entries(root, f"{project['name']} {project['version']}"),
            *_squall_dist_info(root),
        ]
        problem = bytecode_problem(target, compiler) if bytecode else None
        pycs = _bytecode(entries, Path(tmp) / "bytecode", compiler) if compiler is not None else []
        entries += pycs
        entries.sort(key=lambda e: e.name)
        names = [e.name for e in entries]
        clashes = sorted({n for a, n in itertools.pairwise(names) if a == n})
        if clashes:
            raise PackagingError(f"two sources for the same file in the zip: {', '.join(clashes)}")
        partial = output.parent / f".{output.name}.partial"
        try:
            infos = _write_zip(partial, entries)
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    report = _report(output, target, entries, infos)
    return replace(report, compiled=len(pycs), notices=(problem,) if problem else (), extras=chosen)


def _report(
    output: Path, target: Target, entries: Sequence[_Entry], infos: Sequence[zipfile.ZipInfo]
) -> BuildReport:
    by_dist: dict[str, list[int]] = {}
    for entry, info in zip(entries, infos, strict=True):
        sizes = by_dist.setdefault(entry.distribution, [0, 0, 0])
        sizes[0] += 1
        sizes[1] += info.compress_size
        sizes[2] += info.file_size
    packages = sorted(
        (PackageSize(name, n, c, u) for name, (n, c, u) in by_dist.items()),
        key=lambda p: (-p.compressed, p.name),
    )
    return BuildReport(
        output=output,
        target=target,
        size=output.stat().st_size,
        unpacked=sum(i.file_size for i in infos),
        files=len(infos),
        sha256=hashlib.sha256(output.read_bytes()).hexdigest(),
        packages=tuple(packages),
    )

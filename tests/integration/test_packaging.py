"""``squall package``: the Lambda zip is reproducible, lean, and its handlers import.

The wheels are downloaded once per session into a cache (pip's HTTP cache makes that quick
when warm); every build then runs offline from the cache, as ``--wheels DIR --offline`` does.
Lambda's arm64 wheels cannot run here, so the import check builds the same zip, with the
same code and lock, for this machine's Python and architecture, unpacks it as Lambda does,
and calls the handlers from it in an isolated interpreter (``-I -S``: no site-packages, no
user site, no ``PYTHON*`` variables), so a dependency missing from the zip fails the test.

Bytecode can only be made by the target's Python version: the machine's zip has it (and
is checked for reproducibility and for being the code that actually runs), the default
target's zip (python3.12) has it only when a CPython 3.12 runs the tests or is installed (on
PATH, or by pyenv or uv), and says so otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import platform
import re
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import CodeType
from typing import Any

import pytest
from msgspec.structs import replace
from typer.testing import CliRunner

from control_plane import packaging
from control_plane.cli import app
from control_plane.packaging import (
    DEFAULT_LOCK,
    LAMBDA_GLIBC,
    OPTIONAL_EXTRAS,
    BuildReport,
    Compiler,
    Lock,
    PackagingError,
    Target,
    _bytecode,
    _Entry,
    _installed_pythons,
    build,
    bytecode_problem,
    check_lock,
    download_wheels,
    find_compiler,
    keep,
    optional_extras,
    runtime_requirements,
)
from tests.integration.api_events import event

# Builds wheels and zips with pip (session fixtures): slow, and one worker builds them once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / DEFAULT_LOCK
SIZE_LIMIT = 12 * 1024 * 1024
"""The zip measured 5.7 MiB without bytecode, 8.8-9.0 MiB with it (pydantic-core, 2 MiB zipped,
is the largest part); 12 MiB leaves room for upgrades and still fails if something heavy
(boto3 and botocore: +16 MiB before their bytecode) slips in."""
HANDLERS = ("api", "events", "schedule", "tick")
NOT_SHIPPED = ("boto3", "botocore", "s3transfer", "typer", "rich", "click")
cli = CliRunner()

_machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST = (
    Target(_host_python, _machine[platform.machine().lower()])
    if _host_python in LAMBDA_GLIBC and platform.machine().lower() in _machine and sys.platform == "linux"
    else None
)
DEFAULT_HAS_BYTECODE = find_compiler(Target()) is not None
"""The default target (python3.12) gets bytecode when a CPython 3.12 runs the tests or is installed
(on PATH, or by pyenv or uv)."""
needs_host = pytest.mark.skipif(HOST is None, reason="this machine is not a Lambda Python/architecture")
GCP_TARGET = HOST or Target()
"""The ``--extra gcp`` zip is built once, for this machine when it can run it (to build the
runner's clients from it), else for the default target."""
GCP_SIZE_LIMIT = 40 * 1024 * 1024
"""The arm64 python3.12 ``--extra gcp`` zip measured 29.5 MiB with bytecode (21.5 without):
grpcio 7.0 MiB and cryptography 4.7 MiB zipped lead. 40 MiB stays under Lambda's 50 MB for
a direct upload, which is how the Terraform module deploys it."""


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("wheels")
    for target in (Target(), HOST):
        if target is not None:  # the gcp zip's wheels in the same download (one resolution, not two)
            extras = ["gcp", "azure", "k8s"] if target == GCP_TARGET else []
            download_wheels(cache, target=target, root=ROOT, lock_path=LOCK, extras=extras)
    return cache


@pytest.fixture(scope="session")
def gcp_zip(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """``--extra gcp``, from the same wheel cache. No bytecode: 1700 more modules to compile
    would double the build's time, and bytecode is checked on the default zips."""
    output = tmp_path_factory.mktemp("gcp") / "lambda.zip"
    report = build(output, target=GCP_TARGET, wheels=wheels, offline=True, bytecode=False, extras=["gcp"])
    print(f"\n--extra gcp zip ({GCP_TARGET.label}, no bytecode): {report.size} bytes, {report.files} files")
    return report


@pytest.fixture(scope="session")
def azure_k8s_zip(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """``--extra azure --extra k8s`` (no bytecode, as the gcp zip), from the same wheel cache."""
    output = tmp_path_factory.mktemp("azure-k8s") / "lambda.zip"
    extras = ["azure", "k8s"]
    report = build(output, target=GCP_TARGET, wheels=wheels, offline=True, bytecode=False, extras=extras)
    print(f"\n--extra azure --extra k8s zip ({GCP_TARGET.label}): {report.size} bytes, {report.files} files")
    return report


@pytest.fixture(scope="session")
def lambda_zip(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    report = build(tmp_path_factory.mktemp("first") / "lambda.zip", wheels=wheels, offline=True)
    print(f"\nLambda zip: {report.size} bytes ({report.size / 2**20:.2f} MiB), {report.files} files")
    return report


@pytest.fixture(scope="session")
def host_zip(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The zip for this machine's Python and architecture: with bytecode, and runnable here."""
    assert HOST is not None
    report = build(tmp_path_factory.mktemp("host") / "lambda.zip", target=HOST, wheels=wheels, offline=True)
    print(f"\nhost zip: {report.size} bytes, {report.files} files, {report.compiled} .pyc")
    return report


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_the_same_input_gives_the_same_bytes_through_the_cli(
    lambda_zip: BuildReport, wheels: Path, tmp_path: Path
) -> None:
    output = tmp_path / "dist" / "lambda.zip"  # dist/ does not exist yet: the command makes it
    result = cli.invoke(app, ["package", "--output", str(output), "--wheels", str(wheels), "--offline"])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == lambda_zip.output.read_bytes()
    # The command prints the size and the largest packages.
    assert f"({lambda_zip.size} bytes" in result.output and "MiB" in result.output
    assert "largest packages" in result.output and "pydantic_core" in result.output
    assert lambda_zip.sha256 in result.output
    # Bytecode for python3.12 needs a CPython 3.12: without one the zip still builds, and says why.
    message = " ".join(result.output.split())  # rich wraps long lines
    assert (lambda_zip.compiled > 0) is DEFAULT_HAS_BYTECODE
    if not DEFAULT_HAS_BYTECODE:
        assert lambda_zip.notices and lambda_zip.notices[0] in message
        assert "no bytecode in the zip" in message
        assert "install Python 3.12 (or pass --bytecode-python PATH)" in message
    else:  # written by that 3.12, where python3.12 looks for it, with its magic number
        compiler = find_compiler(Target())
        assert compiler is not None and compiler.cache_tag == "cpython-312"
        with zipfile.ZipFile(lambda_zip.output) as archive:
            pycs = [n for n in archive.namelist() if n.endswith(".pyc")]
            assert len(pycs) == lambda_zip.compiled and all(".cpython-312.pyc" in n for n in pycs)
            assert archive.read(pycs[0])[:4] == _magic(compiler.executable)


def test_entries_are_sorted_dated_and_moded_the_same_way(lambda_zip: BuildReport) -> None:
    with zipfile.ZipFile(lambda_zip.output) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {stat.S_IFREG | 0o644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    assert not [i.filename for i in infos if i.is_dir()]


def test_the_zip_holds_the_handlers_and_not_what_lambda_provides_or_never_reads(
    lambda_zip: BuildReport,
) -> None:
    files = names(lambda_zip.output)
    tops = {PurePosixPath(n).parts[0] for n in files}
    for handler in HANDLERS:
        assert f"control_plane/handlers/{handler}.py" in files
    ui = {"control_plane/ui/static/index.html", "control_plane/ui/static/js/main.js"}
    assert ui <= set(files)  # the web UI's files
    for name in NOT_SHIPPED:
        assert name not in tops and not any(t.lower().startswith(f"{name}-") for t in tops), name
    assert len([n for n in files if n.endswith((".pyc", ".pyo"))]) == lambda_zip.compiled  # none from pip
    assert not [n for n in files if n.startswith("bin/") or n.endswith(".dist-info/RECORD")]
    assert not [n for n in files if n.startswith("croniter/tests/")]
    # arm64 extensions for Lambda's Python 3.12, not this machine's.
    assert any(
        re.search(r"pydantic_core/_pydantic_core\.cpython-312-aarch64-linux-gnu\.so$", n) for n in files
    )


def test_every_dependency_keeps_its_licence(lambda_zip: BuildReport) -> None:
    files = names(lambda_zip.output)
    dists = {n.split("/")[0] for n in files if ".dist-info/" in n and not n.startswith("squall-")}
    licence = re.compile(r"/(licen[cs]e|copying|notice)[^/]*$", re.IGNORECASE)
    unlicensed = [
        d for d in sorted(dists) if not any(n.startswith(f"{d}/") and licence.search(n) for n in files)
    ]
    assert len(dists) >= 10 and not unlicensed


def test_squall_dist_info_carries_the_version_and_the_runner_entry_points(lambda_zip: BuildReport) -> None:
    with zipfile.ZipFile(lambda_zip.output) as archive:
        points = archive.read("squall-0.1.0.dist-info/entry_points.txt").decode()
        metadata = archive.read("squall-0.1.0.dist-info/METADATA").decode()
    assert "[squall.runners]" in points and "aws-batch = runners.aws_batch:AwsBatchRunner" in points
    assert "Version: 0.1.0" in metadata


def test_the_zip_is_small(lambda_zip: BuildReport) -> None:
    assert lambda_zip.size == lambda_zip.output.stat().st_size < SIZE_LIMIT
    sizes = [p.compressed for p in lambda_zip.packages]  # the largest first, as printed
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) <= lambda_zip.size
    assert lambda_zip.unpacked < 250 * 2**20
    assert lambda_zip.warnings() == list(lambda_zip.notices)  # no limit is near


def _dists(path: Path) -> set[str]:
    """The distributions a zip holds, by normalized name (Squall's own left out)."""
    tops = {PurePosixPath(n).parts[0] for n in names(path)}
    dist_infos = (t.removesuffix(".dist-info").rsplit("-", 1)[0] for t in tops if t.endswith(".dist-info"))
    return {packaging.normalize(d) for d in dist_infos} - {"squall"}


def test_the_gcp_extra_adds_the_google_sdks_and_the_default_zip_has_none(
    gcp_zip: BuildReport, lambda_zip: BuildReport
) -> None:
    files = names(gcp_zip.output)
    for package in ("google/cloud/batch_v1", "google/cloud/storage", "grpc", "google/protobuf"):
        assert f"{package}/__init__.py" in files, package
    assert not [n for n in names(lambda_zip.output) if n.startswith(("google/", "grpc/"))]
    assert gcp_zip.extras == ("gcp",) and lambda_zip.extras == ()
    # What the extra adds is what the lock's `--extra gcp` sections pin, all of it; the rest is
    # the default zip's (boto3 stays out: the runtime has it).
    lock = Lock.read(LOCK)
    assert _dists(gcp_zip.output) - _dists(lambda_zip.output) == lock.needed_with("--extra gcp")
    assert _dists(lambda_zip.output) <= _dists(gcp_zip.output) and not {"boto3", "botocore"} & _dists(
        gcp_zip.output
    )
    # grpcio's extension is the target's (its wheel was chosen for the target's platform).
    machine = packaging.ARCHITECTURES[GCP_TARGET.arch]
    assert any(re.search(rf"^grpc/_cython/cygrpc\.cpython-3\d+-{machine}-linux-gnu\.so$", n) for n in files)
    assert gcp_zip.size < GCP_SIZE_LIMIT and gcp_zip.warnings() == list(gcp_zip.notices)


def test_the_azure_and_k8s_extras_add_their_sdks_and_nothing_else(
    azure_k8s_zip: BuildReport, lambda_zip: BuildReport
) -> None:
    files = names(azure_k8s_zip.output)
    for package in ("azure/batch", "azure/storage/blob", "azure/identity", "azure/core", "kubernetes"):
        assert f"{package}/__init__.py" in files, package
    assert not [n for n in names(lambda_zip.output) if n.startswith(("azure/", "kubernetes/"))]
    assert azure_k8s_zip.extras == ("azure", "k8s")  # the allow-list's order, whatever the order asked
    lock = Lock.read(LOCK)
    added = _dists(azure_k8s_zip.output) - _dists(lambda_zip.output)
    assert added == lock.needed_with("--extra azure") | lock.needed_with("--extra k8s")
    assert not {"boto3", "botocore"} & _dists(azure_k8s_zip.output)
    assert azure_k8s_zip.size < GCP_SIZE_LIMIT and azure_k8s_zip.warnings() == list(azure_k8s_zip.notices)


def _pyc(source: str) -> str:
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc")


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


@needs_host
def test_bytecode_is_reproducible_unchecked_and_names_no_build_path(
    host_zip: BuildReport, wheels: Path, tmp_path: Path
) -> None:
    assert HOST is not None
    output = tmp_path / "lambda.zip"
    args = ["--python-version", HOST.python_version, "--arch", HOST.arch, "--wheels", str(wheels)]
    result = cli.invoke(app, ["package", *args, "--offline", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == host_zip.output.read_bytes()  # a second build, through the command
    assert "no bytecode" not in result.output and not host_zip.warnings()
    with zipfile.ZipFile(host_zip.output) as archive:
        files = archive.namelist()
        sources = [n for n in files if n.endswith(".py")]
        # Every module has its pyc where the target's import system looks for it.
        assert sorted(n for n in files if n.endswith(".pyc")) == sorted(map(_pyc, sources))
        assert host_zip.compiled == len(sources) > 500
        for source in sources:
            pyc = archive.read(_pyc(source))
            assert pyc[:4] == importlib.util.MAGIC_NUMBER, source
            assert int.from_bytes(pyc[4:8], "little") == 0b01, source  # hash-based, source not checked
            assert pyc[8:16] == importlib.util.source_hash(archive.read(source)), source
            filenames = {code.co_filename for code in _code_objects(marshal.loads(pyc[16:]))}
            assert filenames == {source}, source  # the path in the zip: no build directory


@needs_host
def test_no_bytecode_leaves_the_sources_alone(host_zip: BuildReport, wheels: Path, tmp_path: Path) -> None:
    assert HOST is not None
    output = tmp_path / "lambda.zip"
    args = ["--python-version", HOST.python_version, "--arch", HOST.arch, "--wheels", str(wheels)]
    result = cli.invoke(app, ["package", *args, "--offline", "--no-bytecode", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "of which 0 .pyc" in " ".join(result.output.split()) and "no bytecode" not in result.output
    with_bytecode = [n for n in names(host_zip.output) if not n.endswith(".pyc")]
    assert names(output) == with_bytecode  # the same files, only the pycs are missing


PROBE = r"""
import json, sys, sysconfig
tree = sys.argv[1]
sys.path.insert(0, tree)

class Context:
    function_name = "squall-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:squall-api"
    aws_request_id = "probe"
    def get_remaining_time_in_millis(self):
        return 30_000

from control_plane.handlers import api, events, schedule, tick
from runners.base import runner_classes

response = api.handler(json.load(sys.stdin), Context())
ticked = tick.handler({}, Context())
runners = sorted(runner_classes())
stdlib = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")})
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and not module.__file__.startswith((tree, *stdlib))
)
print(json.dumps({
    "status": response["statusCode"],
    "version": json.loads(response["body"])["info"]["version"],
    "tick": sorted(ticked),
    "runners": runners,
    "outside": outside,
    "loaded": sorted(m for m in ("boto3", "botocore", "typer", "rich", "click") if m in sys.modules),
    "site": [p for p in sys.path if "site-packages" in p],
}))
"""


def _snapshot(tree: Path) -> dict[str, str]:
    return {
        str(f.relative_to(tree)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(tree.rglob("*"))
        if f.is_file()
    }


@needs_host
def test_the_handlers_import_and_answer_from_an_equivalent_zip_for_this_machine(
    host_zip: BuildReport, tmp_path: Path
) -> None:
    tree = tmp_path / "task"  # what Lambda unpacks into /var/task
    with zipfile.ZipFile(host_zip.output) as archive:
        archive.extractall(tree)
    # The pycs are what runs: the tick handler's source is never read (unchecked hash-based pyc) ...
    tick = tree / "control_plane" / "handlers" / "tick.py"
    tick.write_text('raise ImportError("tick.py was read: its pyc was not used")\n')
    before = _snapshot(tree)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONNOUSERSITE": "1",
        "SQUALL_STORE": "sqlite",
        "SQUALL_DB": str(tmp_path / "squall.db"),
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
        "SQUALL_AUTH": "none",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(tree)],
        input=json.dumps(event("GET", "/openapi.json")),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200 and seen["version"] == "0.1.0"
    assert "timersFired" in seen["tick"]
    assert {"aws-batch", "process"} <= set(seen["runners"])
    assert seen["outside"] == [] and seen["site"] == []  # nothing came from the venv
    assert seen["loaded"] == []  # neither boto3 nor the CLI's libraries were needed
    # ... and the interpreter, free to write bytecode (no -B), found none missing or stale.
    assert _snapshot(tree) == before


PROBE_HEAD = r"""
import json, sys, sysconfig
tree = sys.argv[1]
sys.path.insert(0, tree)
from runners.base import runner_classes
"""
PROBE_TAIL = r"""
stdlib = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")})
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and not module.__file__.startswith((tree, *stdlib))
)
print(json.dumps({"runners": sorted(runner_classes()), "built": built, "outside": outside}))
"""

GOOGLE_PROBE = (
    PROBE_HEAD
    + r"""
from runners.google_batch.runner import GoogleBatchRunner

runner = GoogleBatchRunner(anonymous=True, endpoint="http://127.0.0.1:9", storage_endpoint="http://127.0.0.1:9")
try:
    context = runner._context("my-project")  # the SDK is imported and its clients built here (no call)
    built = [type(context.api).__name__, type(context.storage).__module__]
except ImportError as exc:
    built = f"ImportError: {exc.name}"
"""
    + PROBE_TAIL
)


def _probe(zip_path: Path, tmp_path: Path, probe: str) -> dict[str, Any]:
    tree = tmp_path / zip_path.parent.name
    if not tree.exists():
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tree)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(tree)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


@needs_host
def test_the_google_batch_runner_builds_its_clients_from_the_gcp_zip_only(
    gcp_zip: BuildReport, host_zip: BuildReport, tmp_path: Path
) -> None:
    assert GCP_TARGET == HOST  # so the gcp zip runs here, as it would in Lambda
    seen = _probe(gcp_zip.output, tmp_path, GOOGLE_PROBE)
    assert seen["built"] == ["BatchServiceClient", "google.cloud.storage.client"]
    assert seen["outside"] == []  # the SDK, grpc and cryptography all came from the zip
    assert "google-batch" in seen["runners"]
    # The default zip finds the runner (its entry point) but not its SDK: what `--extra gcp` fixes.
    seen = _probe(host_zip.output, tmp_path, GOOGLE_PROBE)
    assert "google-batch" in seen["runners"] and seen["built"] == "ImportError: google"


AZURE_K8S_PROBE = (
    PROBE_HEAD
    + r"""
import runners.azure_batch.runner, runners.kubernetes.runner
try:  # what the runners import lazily, and their clients built (nothing sent)
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import BlobServiceClient
    from kubernetes import client
    BatchClient("https://acct.westeurope.batch.azure.com", AzureNamedKeyCredential("acct", "a2V5"))
    BlobServiceClient("https://acct.blob.core.windows.net", credential=DefaultAzureCredential())
    built = type(client.BatchV1Api(client.ApiClient())).__name__
except ImportError as exc:
    built = f"ImportError: {exc.name}"
"""
    + PROBE_TAIL
)


@needs_host
def test_the_azure_and_kubernetes_runners_import_their_sdks_from_the_zip_only(
    azure_k8s_zip: BuildReport, host_zip: BuildReport, tmp_path: Path
) -> None:
    seen = _probe(azure_k8s_zip.output, tmp_path, AZURE_K8S_PROBE)
    assert seen["built"] == "BatchV1Api" and seen["outside"] == []
    assert {"azure-batch", "kubernetes"} <= set(seen["runners"])
    seen = _probe(host_zip.output, tmp_path, AZURE_K8S_PROBE)
    assert {"azure-batch", "kubernetes"} <= set(seen["runners"]) and seen["built"].startswith("ImportError")


def test_the_committed_lock_matches_pyproject() -> None:
    lock = check_lock(ROOT, LOCK)  # a pyproject change without `--update-lock` fails here
    assert {"boto3", "botocore"} <= lock.boto3_only
    assert "aws-lambda-powertools" in lock.pins and "pydantic-core" in lock.pins
    assert {"pyjwt", "rsa"} <= set(lock.pins)  # [ingress]: the events function's Pub/Sub tokens
    gcp = lock.needed_with("--extra gcp")  # the optional extras are pinned by the same lock
    assert {"google-cloud-batch", "google-cloud-storage", "grpcio", "protobuf"} <= gcp
    assert {"azure-batch", "azure-storage-blob", "azure-identity", "azure-core"} <= lock.needed_with(
        "--extra azure"
    )
    assert "kubernetes" in lock.needed_with("--extra k8s")
    default = set(lock.pins) - set(lock.only_with)
    assert {"pydantic-core", "pyjwt"} <= default and not gcp & default and not lock.boto3_only & default
    # The default zip's [ingress] stays pure Python (google-auth brings cryptography only with gcp).
    assert not {"cryptography", "cffi"} & default
    assert not {"typer", "rich", "click"} & set(lock.pins)
    assert lock.render() == LOCK.read_text()  # its sections read back as written


def test_extras_are_checked_against_the_allow_list() -> None:
    assert list(OPTIONAL_EXTRAS) == ["gcp", "azure", "k8s"]
    assert optional_extras([]) == () and optional_extras(["gcp", "gcp"]) == ("gcp",)
    assert optional_extras(["k8s", "gcp", "azure"]) == ("gcp", "azure", "k8s")
    with pytest.raises(
        PackagingError, match=r"unknown extra 'kube' for the Lambda zip: --extra takes gcp, azure, k8s$"
    ):
        optional_extras(["gcp", "kube"])
    with pytest.raises(PackagingError, match=r"'aws' .*\(aws and ingress are always in it\)"):
        optional_extras(["aws"])


def test_boto3_is_left_to_the_runtime_unless_asked_for() -> None:
    def projects(requirements: list[str]) -> set[str]:
        return {re.split(r"[^A-Za-z0-9_.-]", r, maxsplit=1)[0].lower() for r in requirements}

    lean = projects(runtime_requirements(ROOT))
    assert {"aws-lambda-powertools", "pyjwt"} <= lean and not {"boto3", "typer", "rich"} & lean
    assert projects(runtime_requirements(ROOT, include_boto3=True)) - lean == {"boto3"}
    google = {"google-cloud-batch", "google-cloud-run", "google-cloud-storage"}
    assert projects(runtime_requirements(ROOT, extras=["gcp"])) - lean == google


def test_what_the_zip_keeps() -> None:
    kept = ["pydantic/main.py", "x-1.dist-info/METADATA", "x-1.dist-info/licenses/LICENSE", "x/tests/LICENSE"]
    dropped = [
        "bin/jp.py",
        "x-1.dist-info/RECORD",
        "x-1.dist-info/INSTALLER",
        "x/__pycache__/a.cpython-312.pyc",
        "x/_speedups.c",
        "x/__init__.pyi",
        "croniter/tests/test_croniter.py",
    ]
    assert [p for p in kept if not keep(PurePosixPath(p))] == []
    assert [p for p in dropped if keep(PurePosixPath(p))] == []


def _magic(python: str) -> bytes:
    code = "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"
    return bytes.fromhex(subprocess.run([python, "-c", code], capture_output=True, text=True).stdout)


def _other_version() -> str:
    """A Lambda Python version that is not the one running the tests."""
    return next(v for v in LAMBDA_GLIBC if v != _host_python)


def test_the_running_python_writes_bytecode_for_its_own_version() -> None:
    compiler = find_compiler(Target(_host_python))
    assert compiler == Compiler(sys.executable, sys.implementation.cache_tag)
    assert bytecode_problem(Target(_host_python), compiler) is None


@pytest.fixture
def no_pythons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty PATH, pyenv and uv directories: only what a test puts there can be found."""
    for name, variable in (("bin", "PATH"), ("pyenv", "PYENV_ROOT"), ("uv", "UV_PYTHON_INSTALL_DIR")):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / name))
    return tmp_path


def _fake_python(path: Path) -> Path:
    """A ``python`` at ``path`` that is really the interpreter running the tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    path.chmod(0o755)
    return path


def test_python3x_on_path_is_asked_its_version_not_trusted_by_its_name(no_pythons: Path) -> None:
    other = _other_version()
    _fake_python(no_pythons / "bin" / f"python{other}")  # named for the other version
    _fake_python(no_pythons / "pyenv" / "versions" / f"{other}.1" / "bin" / f"python{other}")
    assert find_compiler(Target(other)) is None
    problem = bytecode_problem(Target(other), None)
    assert problem is not None and f"no python{other} on PATH or in pyenv's or uv's" in problem
    assert f"install Python {other} (or pass --bytecode-python PATH)" in problem


@pytest.mark.parametrize("where", ["bin", "pyenv", "uv"])
def test_a_python_of_the_target_version_is_found_on_path_or_in_pyenv_or_uv(
    where: str, no_pythons: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _host_python
    place = {
        "bin": no_pythons / "bin" / f"python{version}",
        "pyenv": no_pythons / "pyenv" / "versions" / f"{version}.4" / "bin" / f"python{version}",
        "uv": no_pythons / "uv" / f"cpython-{version}.4-linux-x86_64-gnu" / "bin" / f"python{version}",
    }[where]
    _fake_python(place)
    monkeypatch.setattr(packaging, "_running_python", lambda: "3.0")  # as if another Python ran the build
    compiler = find_compiler(Target(version))
    assert compiler is not None and compiler.cache_tag == sys.implementation.cache_tag
    assert Path(compiler.executable).resolve() == Path(sys.executable).resolve()  # what it said it is


def test_the_newest_patch_release_is_tried_first(no_pythons: Path) -> None:
    versions = no_pythons / "pyenv" / "versions"
    for patch in ("3.12.2", "3.12.10", "3.12.9"):
        _fake_python(versions / patch / "bin" / "python3.12")
    assert [Path(p).parents[1].name for p in _installed_pythons("3.12")] == ["3.12.10", "3.12.9", "3.12.2"]


@pytest.mark.skipif(
    find_compiler(Target(_other_version())) is None, reason=f"no Python {_other_version()} installed"
)
def test_another_installed_version_writes_its_own_bytecode(tmp_path: Path) -> None:
    other = _other_version()
    compiler = find_compiler(Target(other))
    assert compiler is not None and compiler.cache_tag == f"cpython-{other.replace('.', '')}"
    source = tmp_path / "module.py"
    source.write_text("VALUE = 42\n")
    (pyc,) = _bytecode([_Entry("pkg/module.py", source, "test")], tmp_path / "out", compiler)
    assert pyc.name == f"pkg/__pycache__/module.{compiler.cache_tag}.pyc"
    assert pyc.read()[:4] == _magic(compiler.executable) != importlib.util.MAGIC_NUMBER


# ---------------------------------------------------------------- bad input


def test_a_bytecode_python_of_another_version_is_refused(tmp_path: Path) -> None:
    other = _other_version()
    with pytest.raises(PackagingError, match=rf"is cpython {_host_python}; python{other} bytecode needs"):
        find_compiler(Target(other), sys.executable)
    with pytest.raises(PackagingError, match="not a Python interpreter that runs here"):
        find_compiler(Target(other), str(tmp_path / "no-such-python"))
    output = tmp_path / "lambda.zip"
    result = cli.invoke(
        app,
        ["package", "--python-version", other, "--bytecode-python", sys.executable, "-o", str(output)],
    )
    assert result.exit_code == 1 and "--bytecode-python" in result.output and not output.exists()


def test_an_unknown_python_version_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    output = tmp_path / "lambda.zip"
    result = cli.invoke(app, ["package", "--python-version", "3.9", "--output", str(output)])
    assert result.exit_code == 1
    assert "unknown Python version '3.9'" in result.output and "3.11, 3.12, 3.13" in result.output
    assert not output.exists()
    with pytest.raises(PackagingError, match="unknown architecture 'i386'"):
        Target("3.12", "i386")


def test_an_unknown_extra_is_refused_naming_the_allowed_ones(tmp_path: Path) -> None:
    output = tmp_path / "lambda.zip"
    lock = tmp_path / "lock.txt"  # --update-lock would write here (it must not get that far)
    for args in (
        ["--extra", "gcp", "--extra", "kube"],
        ["--extra", "nope", "--update-lock", "--lock", str(lock)],
    ):
        result = cli.invoke(app, ["package", *args, "--output", str(output)])
        message = " ".join(result.output.split())
        assert result.exit_code == 1, result.output
        assert "unknown extra" in message and "for the Lambda zip: --extra takes gcp, azure, k8s" in message
        assert not output.exists() and not lock.exists()
    with pytest.raises(PackagingError, match="unknown extra 'kube'"):
        build(output, wheels=tmp_path, offline=True, extras=["kube"])


def test_an_unwritable_output_is_refused_before_pip_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "dist"
    blocker.write_text("a file where the output directory should be")
    result = cli.invoke(app, ["package", "--output", str(blocker / "lambda.zip")])
    message = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1
    assert f"cannot write the zip to {blocker}: {blocker} is not a directory" in message
    with pytest.raises(PackagingError, match="is a directory"):
        build(tmp_path, wheels=tmp_path, offline=True)


def _edited_lock(tmp_path: Path, edit: dict[str, str | None]) -> Path:
    lock = Lock.read(LOCK)
    pins = {name: version for name, version in {**lock.pins, **edit}.items() if version is not None}
    path = tmp_path / "lock.txt"
    path.write_text(replace(lock, pins=pins).render())
    return path


def test_a_pip_failure_is_reported_with_the_package_name(wheels: Path, tmp_path: Path) -> None:
    lock = _edited_lock(tmp_path, {"immutables": "0.0.1"})  # no such release
    with pytest.raises(PackagingError) as raised:
        build(tmp_path / "lambda.zip", lock_path=lock, wheels=wheels, offline=True)
    message = str(raised.value)
    assert message.startswith("pip failed while installing the dependencies for python3.12 arm64")
    assert "ERROR:" in message and "immutables==0.0.1" in message  # pip's explanation, kept
    assert not (tmp_path / "lambda.zip").exists()


def test_a_dependency_missing_from_the_lock_is_refused(wheels: Path, tmp_path: Path) -> None:
    lock = _edited_lock(tmp_path, {"six": None})  # python-dateutil still needs it
    with pytest.raises(PackagingError, match=r"pip installed six 1\.\S+, which is not in .*--update-lock"):
        build(tmp_path / "lambda.zip", lock_path=lock, wheels=wheels, offline=True)


def test_a_stale_lock_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lock.txt"
    path.write_text(replace(Lock.read(LOCK), fingerprint="sha256:0").render())
    with pytest.raises(PackagingError, match=r"is stale: .*squall package --update-lock"):
        build(tmp_path / "lambda.zip", lock_path=path, wheels=tmp_path, offline=True)

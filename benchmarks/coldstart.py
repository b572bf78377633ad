"""Cold-start import cost of each Lambda handler, as a ratio to ``import boto3`` alone.

A Lambda cold start pays for every module the handler imports before the first request is
served. Each case runs in a fresh interpreter with ``python -X importtime`` and the import
time is the cumulative microseconds of the top-level import(s) in that report (not wall
time: interpreter start-up is the same for every case and would flatten the ratios). Cases:

* ``boto3``: the yardstick (the DynamoDB store needs it anyway);
* ``<handler>``: the handler module as Lambda imports it;
* ``<handler>+store``: the handler module plus the DynamoDB store (boto3 included), which
  the first request imports: what a cold start really pays before doing any work.

What is measured is what Lambda runs: the zip ``squall package`` builds (for this machine's
Python and architecture, with bytecode, boto3 included so the yardstick is imported from
the same place), unpacked, on ``PYTHONPATH`` of an interpreter started with ``-S`` (no
site-packages, as in ``/var/task``). Measuring in a development virtualenv instead
overstates the handlers: the editable install's import hook slows every import of
Squall's own modules, and boto3 pays nothing of it (``--venv`` shows that figure). The
environment is the deployed one where it matters: ``PYDANTIC_DISABLE_PLUGINS=__all__``, as the
Terraform module sets it, unless the variable is already set.

Work that moved from import to first use is not hidden. Models are built lazily (pydantic
``defer_build``), the runner registry reads entry points when it is built, Jinja2 is
imported by the first template rendered, and the API loads the service and the flow
language with the first request that needs them (ADR 0006), so more figures are printed
(wall time, median, imports excluded):

* ``<handler> 1st``: the handler's first invocation right after its import, on the SQLite
  store in a scratch directory (boto3 stays out of it: that is the yardstick's share):
  ``api`` deploys ``samples/etl.yaml`` (``POST /api/v1/main/flows``: the flow language loads
  in it), ``api read`` searches executions (``GET /api/v1/main/executions/search``: it does
  not), ``tick`` runs
  an idle pass, ``events`` gets an AWS Batch event for an unknown job, ``schedule`` fires
  nothing due. ``sweeper`` needs DynamoDB and is left out;
* ``first flow``: parsing ``samples/etl.yaml`` and rendering one template, what a request
  that moves an execution adds to that.

Each case is measured ``--repeat`` times, interleaved: ``x boto3`` is the median of the
ratios taken within each round, because this machine's speed drifts from one process to the
next; ``x (mins)`` divides the fastest import of each case by the fastest ``import boto3``.
The last line is the one to track:

    coldstart: worst handler+store = <x>x import boto3 (goal <= 1.5x)

Usage: python benchmarks/coldstart.py [--repeat 7] [--wheels DIR] [--tree DIR | --venv]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ("api", "tick", "events", "schedule", "sweeper")
STORE = "control_plane.store.dynamodb"
GOAL = 1.5
SAMPLE = ROOT / "samples" / "etl.yaml"

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def lambda_tree(dest: Path, wheels: Path | None) -> Path:
    """The Lambda zip for this interpreter and machine (with boto3), unpacked under ``dest``."""
    sys.path.insert(0, str(ROOT))
    from control_plane import packaging

    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    target = packaging.Target(f"{sys.version_info.major}.{sys.version_info.minor}", arch)
    report = packaging.build(dest / "lambda.zip", target=target, include_boto3=True, wheels=wheels)
    if not report.compiled:
        raise SystemExit(f"the zip has no bytecode: {'; '.join(report.notices)}")
    tree = dest / "tree"
    with zipfile.ZipFile(report.output) as archive:
        archive.extractall(tree)
    print(
        f"measuring {report.output.name} for {target.label}: {report.size / 2**20:.1f} MiB, "
        f"{report.compiled} .pyc, unpacked in {tree}"
    )
    return tree


class Interpreter:
    """How each case's fresh interpreter is started: the Lambda layout, or the dev virtualenv."""

    def __init__(self, tree: Path | None) -> None:
        self.command = [sys.executable, "-S"] if tree is not None else [sys.executable]
        # Lambda runs in /var/task, the unpacked zip, and ``-c`` puts the working directory
        # first on sys.path: run anywhere else and Squall is imported from that directory
        # (the repository's sources, not the zip's bytecode).
        self.cwd = tree if tree is not None else ROOT
        self.env = dict(os.environ)
        self.env.pop("PYTHONPATH", None)
        # The Terraform module sets this on every function (no pydantic plugin scan at init);
        # PYDANTIC_DISABLE_PLUGINS= (empty) measures the scan.
        self.env.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        if tree is not None:
            self.env["PYTHONPATH"] = str(tree)

    def run(self, args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            check=False,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
        )

    def check_source(self, tree: Path | None) -> None:
        """Fail unless Squall is imported from the tree being measured (``None``: the venv)."""
        result = self.run(["-c", "import control_plane; print(control_plane.__file__)"])
        where = Path(result.stdout.strip()).resolve()
        expected = (tree or ROOT).resolve()
        if result.returncode != 0 or not where.is_relative_to(expected):
            raise SystemExit(f"Squall is imported from {where or result.stderr[-500:]}, not {expected}")

    def import_us(self, modules: list[str]) -> int:
        """Cumulative import time (µs) of ``modules``, imported in order in a fresh interpreter."""
        result = self.run(["-X", "importtime", "-c", "; ".join(f"import {m}" for m in modules)])
        if result.returncode != 0:
            raise SystemExit(f"importing {modules} failed:\n{result.stderr[-2000:]}")
        total = 0
        for line in result.stderr.splitlines():
            match = _LINE.match(line)
            if match and len(match.group(3)) == 1:  # top level: one space of indentation
                total += int(match.group(2))
        return total

    def first_request_ms(self, name: str, scratch: Path) -> float:
        """Wall time (ms) of the first request ``name`` on a fresh SQLite store, imports excluded."""
        handler, event, check = _FIRST[name]
        code = (
            "import time; from pathlib import Path; "
            f"import control_plane.handlers.{handler} as module; "
            f"event = {event}; t = time.perf_counter(); "
            "out = module.handler(event, None); elapsed = (time.perf_counter() - t) * 1000; "
            f"assert {check}, out; print(elapsed)"
        )
        store = scratch / f"first-{name.replace(' ', '-')}"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
        env = {
            "SQUALL_STORE": "sqlite",
            "SQUALL_DB": str(store / "squall.db"),
            "SQUALL_DATA_DIR": str(store),
            "SQUALL_AUTH": "none",
        }
        result = self.run(["-c", code], env)
        if result.returncode != 0:
            raise SystemExit(f"the first {name} request failed:\n{result.stderr[-2000:]}")
        return float(result.stdout.split()[-1])  # the handler's own log lines come first

    def first_flow_ms(self) -> float:
        """Wall time (ms) of the first ``parse_flow`` and first template, imports excluded."""
        code = (
            "import time; from pathlib import Path; from control_plane.flows.loader import parse_flow; "
            "from control_plane.expressions import render; "
            f"src = Path({str(SAMPLE)!r}).read_text(); t = time.perf_counter(); "
            "parse_flow(src, 'etl.yaml'); render('{{ a }}', {'a': 1}); "
            "print((time.perf_counter() - t) * 1000)"
        )
        result = self.run(["-c", code])
        if result.returncode != 0:
            raise SystemExit(f"the first flow failed:\n{result.stderr[-2000:]}")
        return float(result.stdout.strip())


def _api_event(method: str, path: str, query: str = "", body: str = "None") -> str:
    return (
        f"{{'version': '2.0', 'routeKey': '$default', 'rawPath': {path!r}, 'rawQueryString': {query!r},"
        " 'headers': {'content-type': 'application/x-yaml'}, 'isBase64Encoded': False,"
        f" 'body': {body},"
        f" 'requestContext': {{'http': {{'method': {method!r}, 'path': {path!r}, 'sourceIp': '127.0.0.1'}},"
        " 'requestId': 'cold', 'stage': '$default', 'timeEpoch': 0}}"
    )


_FIRST: dict[str, tuple[str, str, str]] = {
    # name: (handler, first event, check on its answer)
    "api": (
        "api",
        _api_event("POST", "/api/v1/main/flows", body=f"Path({str(SAMPLE)!r}).read_text()"),
        "out['statusCode'] == 200",
    ),
    "api read": (
        "api",
        _api_event("GET", "/api/v1/main/executions/search", "filters[namespace][EQUALS]=cold"),
        "out['statusCode'] == 200",
    ),
    "tick": ("tick", "{}", "out['timersFired'] == 0"),
    "events": (
        "events",
        "{'source': 'aws.batch', 'detail-type': 'Batch Job State Change',"
        " 'detail': {'jobName': 'unknown', 'jobId': 'x', 'status': 'RUNNING'}}",
        "out == {'applied': 0}",
    ),
    "schedule": ("schedule", "{}", "out == {'started': []}"),
}
"""The first request each handler is given; each must succeed. ``api`` deploys a flow (the
flow language loads in it), ``api read`` lists executions (it does not)."""


def cases() -> dict[str, list[str]]:
    found = {"boto3": ["boto3"]}
    for name in HANDLERS:
        module = f"control_plane.handlers.{name}"
        found[name] = [module]
        found[f"{name}+store"] = [module, STORE]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--wheels", type=Path, help="wheel cache for squall package (see docs/packaging.md)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tree", type=Path, help="an unpacked Lambda zip to measure (skips the build)")
    where.add_argument("--venv", action="store_true", help="measure this virtualenv instead of the zip")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="squall-coldstart-") as scratch:
        tree = None if args.venv else args.tree or lambda_tree(Path(scratch), args.wheels)
        interpreter = Interpreter(tree)
        interpreter.check_source(tree)
        plan = cases()
        samples: dict[str, list[int]] = {name: [] for name in plan}
        first: list[float] = []
        requests: dict[str, list[float]] = {name: [] for name in _FIRST}
        for _ in range(args.repeat):
            for name, modules in plan.items():
                samples[name].append(interpreter.import_us(modules))
            for name in requests:
                requests[name].append(interpreter.first_request_ms(name, Path(scratch)))
            first.append(interpreter.first_flow_ms())
    median = {name: statistics.median(values) for name, values in samples.items()}
    # This machine's speed changes from one process to the next by up to a third, so the
    # ratio is taken within each round (cases measured back to back) and its median kept.
    ratio = {
        name: statistics.median(v / b for v, b in zip(values, samples["boto3"], strict=True))
        for name, values in samples.items()
    }
    print(f"{'case':<18} {'median ms':>10} {'min ms':>8} {'x boto3':>8} {'x (mins)':>9}")
    for name, value in median.items():
        least = min(samples[name])
        print(
            f"{name:<18} {value / 1000:>10.1f} {least / 1000:>8.1f} {ratio[name]:>8.2f}"
            f" {least / min(samples['boto3']):>9.2f}"
        )
    for name, values in requests.items():
        print(f"{name + ' 1st':<18} {statistics.median(values):>10.1f} {min(values):>8.1f}   (first request)")
    parse = statistics.median(first)
    print(f"{'first flow':<18} {parse:>10.1f} {min(first):>8.1f}   (parse + render after import)")
    worst = max((n for n in plan if n.endswith("+store")), key=lambda n: ratio[n])
    worst_bare = max(HANDLERS, key=lambda n: ratio[n])
    print(f"coldstart: worst handler alone = {ratio[worst_bare]:.2f}x import boto3 ({worst_bare})")
    print(f"coldstart: worst handler+store = {ratio[worst]:.2f}x import boto3 (goal <= {GOAL}x)")


if __name__ == "__main__":
    main()

"""Cold-start import cost of each Lambda handler, as a ratio to ``import boto3`` alone.

A Lambda cold start pays for every module the handler imports before the first request is
served. Each case runs in a fresh interpreter with ``python -X importtime`` and the import
time is the cumulative microseconds of the top-level import(s) in that report (not wall
time: interpreter start-up is the same for every case and would flatten the ratios). Cases:

* ``boto3``: the yardstick (the DynamoDB store needs it anyway);
* ``<handler>``: the handler module as Lambda imports it;
* ``<handler>+store``: the handler module plus the DynamoDB store (boto3 included), which
  the first request imports: what a cold start really pays before doing any work.

Flow models are built lazily (pydantic ``defer_build``), so part of the cost moves from the
import to the first flow parsed; ``first flow`` reports that part (wall time of parsing
``samples/etl.yaml`` right after the imports, median), so that nothing is hidden by moving it.

Each case is measured ``--repeat`` times, interleaved, and the median is kept, because this
machine's speed drifts. The last line is the one to track:

    coldstart: worst handler+store = <x>x import boto3 (goal <= 1.5x)

Usage: python benchmarks/coldstart.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

HANDLERS = ("api", "tick", "events", "schedule", "sweeper")
STORE = "control_plane.store.dynamodb"
GOAL = 1.5

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def import_us(modules: list[str]) -> int:
    """Cumulative import time (µs) of ``modules``, imported in order in a fresh interpreter."""
    code = "; ".join(f"import {m}" for m in modules)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"importing {modules} failed:\n{result.stderr[-2000:]}")
    total = 0
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match and len(match.group(3)) == 1:  # top level: one space of indentation
            total += int(match.group(2))
    return total


def first_flow_ms() -> float:
    """Wall time (ms) of the first ``parse_flow`` in a fresh interpreter, imports excluded."""
    code = (
        "import time; from pathlib import Path; from control_plane.flows.loader import parse_flow; "
        "src = Path('samples/etl.yaml').read_text(); t = time.perf_counter(); parse_flow(src, 'etl.yaml'); "
        "print((time.perf_counter() - t) * 1000)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


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
    args = parser.parse_args()

    plan = cases()
    samples: dict[str, list[int]] = {name: [] for name in plan}
    first: list[float] = []
    for _ in range(args.repeat):
        for name, modules in plan.items():
            samples[name].append(import_us(modules))
        first.append(first_flow_ms())
    median = {name: statistics.median(values) for name, values in samples.items()}
    base = median["boto3"]
    print(f"{'case':<18} {'median ms':>10} {'min ms':>8} {'x boto3':>8}")
    for name, value in median.items():
        print(f"{name:<18} {value / 1000:>10.1f} {min(samples[name]) / 1000:>8.1f} {value / base:>8.2f}")
    print(f"{'first flow':<18} {statistics.median(first):>10.1f} {min(first):>8.1f}   (parse after import)")
    worst = max((n for n in plan if n.endswith("+store")), key=lambda n: median[n])
    worst_bare = max(HANDLERS, key=lambda n: median[n])
    print(f"coldstart: worst handler alone = {median[worst_bare] / base:.2f}x import boto3 ({worst_bare})")
    print(f"coldstart: worst handler+store = {median[worst] / base:.2f}x import boto3 (goal <= {GOAL}x)")


if __name__ == "__main__":
    main()

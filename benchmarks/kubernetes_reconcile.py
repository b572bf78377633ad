"""What reconciling running Kubernetes Jobs costs in API calls: counted, not timed.

Submits ``--jobs`` Jobs (default 500) through :class:`~runners.kubernetes.KubernetesRunner`
against the fake API server (tests/emulators/kubernetes.py), its kubelet told to show their
pods Running and ready without starting processes (``held``), then polls all of them from a
fresh runner instance (a new warm container, nothing cached), as the control plane's tick does.
Then the same with Jobs whose pods cannot be scheduled (the pod list is needed then). Calls
are counted by the fake per verb and resource. Ends with the line to track::

    kubernetes: <n> running Jobs reconcile in <a> API calls (<b> while pending)

Run: ``python benchmarks/kubernetes_reconcile.py --jobs 500`` (needs the [dev] extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.base import JobSpec  # noqa: E402
from runners.kubernetes import KubernetesRunner  # noqa: E402
from tests.emulators.executor import MINIMAL_PATH  # noqa: E402
from tests.emulators.kubernetes import FakeKubernetes  # noqa: E402

IMAGE = "busybox:1.36"


def _reconcile(fake: FakeKubernetes, deployment: str, jobs: int, settled: str, **options: object) -> int:
    defaults = {
        "config": {"masterUrl": fake.url},
        "namespace": "bench",
        "stagingUri": "s3://bench-bucket/squall",
        "deployment": deployment,
    }
    runner = KubernetesRunner(defaults={**defaults, **options}, s3_client=object())
    handles = [
        runner.submit(JobSpec(name=f"bench-{uuid.uuid4().hex[:12]}", command=("sleep", "60"), image=IMAGE))
        for _ in range(jobs)
    ]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(
        (fake.object("jobs", "bench", h.data["job"]) or {}).get("status", {}).get("startTime")
        for h in handles
    ):
        time.sleep(0.1)
    before = sum(fake.calls.values())
    statuses = KubernetesRunner(defaults=defaults, s3_client=object()).poll(handles)
    spent = sum(fake.calls.values()) - before
    assert len(statuses) == jobs, "every Job has a status"
    for handle in handles:
        runner.cancel(handle)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeKubernetes(Path(tmp)) as fake:
        fake.images[IMAGE] = {"PATH": MINIMAL_PATH}
        fake.held.add("squall.dev/deployment=running")
        running = _reconcile(fake, "running", args.jobs, "ready")
        pending = _reconcile(
            fake, "pending", args.jobs, "startTime", nodeSelector={"squall.dev/pool": "nowhere"}
        )
    print(f"kubernetes: {args.jobs} running Jobs reconcile in {running} API calls ({pending} while pending)")


if __name__ == "__main__":
    main()

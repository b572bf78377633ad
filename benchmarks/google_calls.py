"""What one task costs in Google API calls on the Google Batch or Cloud Run runner: counted, not timed.

Runs ``--tasks`` jobs (default 200) through the runner (``--runner google-batch`` or
``cloud-run``) against its REST fake (tests/emulators/google_batch.py or cloud_run.py, whose
jobs really run here) and fake-gcs-server, the way the control plane drives them: submit each,
reconcile them all with batched polls, each round from a fresh runner instance (a new warm
container, nothing cached), and completes each job that ended in the container that saw it
end, as the control plane does: its log read to the end, then its cleanup. API calls are
counted by the fake (per method), Cloud Storage calls by a proxy in front of fake-gcs-server.
Half the tasks write an output file that the control plane asked for under its own prefix
(copied server-side at the end); with Cloud Run, a third of the tasks fail (exit 3), so the
task lists that read their exit codes are counted too.

It prints calls per task for each phase and the reconcile cost per poll of all live jobs,
and ends with the line to track::

    <runner>: <x> API calls and <y> GCS calls per task (reconcile: <z> list calls per 100 live jobs)

Run: ``python benchmarks/google_calls.py --runner cloud-run --tasks 200`` (needs the [dev] extra).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.base import JobSpec  # noqa: E402
from runners.cloud_run import CloudRunRunner  # noqa: E402
from runners.google_batch import GoogleBatchRunner  # noqa: E402
from runners.google_runner import GoogleRunner  # noqa: E402
from runners.retry import RetryPolicy  # noqa: E402
from runners.testing import complete_in_rounds  # noqa: E402
from tests.emulators.cloud_run import FakeCloudRun  # noqa: E402
from tests.emulators.fake_gcs import FakeGcs  # noqa: E402
from tests.emulators.fault_proxy import FaultProxy  # noqa: E402
from tests.emulators.google_batch import FakeGoogleBatch  # noqa: E402

PROJECT, REGION = "bench", "europe-west1"
RUNNERS = {
    "google-batch": (GoogleBatchRunner, FakeGoogleBatch, "ListJobs"),
    "cloud-run": (CloudRunRunner, FakeCloudRun, "ListExecutions"),
}
"""Per runner: its class, its fake, and the list call that reconciles."""


def runner(kind: str, api: str, gcs: str, bucket: str) -> GoogleRunner:
    return RUNNERS[kind][0](
        defaults={"projectId": PROJECT, "region": REGION, "bucket": bucket},
        endpoint=api,
        storage_endpoint=gcs,
        anonymous=True,
        policy=RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, jitter=0.0),
        rate=10_000.0,
        log_grace=3.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="google-batch")
    args = parser.parse_args()
    n, kind = args.tasks, args.runner
    fake_class, list_call = RUNNERS[kind][1], RUNNERS[kind][2]

    def fails(i: int) -> int:
        """Cloud Run: every third task exits 3 (its exit code costs a task list); Batch: none."""
        return 3 if kind == "cloud-run" and i % 3 == 0 else 0

    with tempfile.TemporaryDirectory() as tmp, FakeGcs() as gcs, FaultProxy(gcs.endpoint) as counted:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        gcs.client().create_bucket(bucket)
        with fake_class(Path(tmp), gcs_endpoint=gcs.endpoint) as fake:
            phases: dict[str, tuple[collections.Counter[str], int]] = {}

            def measure(name: str, step: object) -> None:
                before, gcs_before = fake.calls.copy(), counted.requests
                step()  # type: ignore[operator]
                phases[name] = (fake.calls - before, counted.requests - gcs_before)

            submitter = runner(kind, fake.endpoint, counted.endpoint, bucket)
            specs = [
                JobSpec(
                    name=f"bench-{i:05d}-{uuid.uuid4().hex[:6]}",
                    command=("sh", "-c", f"echo task {i}; echo result > out.txt; exit {fails(i)}"),
                    output_files=("out.txt",) if i % 2 else (),
                    output_prefix=f"gs://{bucket}/deploy/{i}/" if i % 2 else None,
                )
                for i in range(n)
            ]
            handles = []
            measure("submit", lambda: handles.extend(submitter.submit(spec) for spec in specs))

            polls = 0

            def reconcile_and_complete() -> None:
                nonlocal polls
                polls = complete_in_rounds(
                    lambda: runner(kind, fake.endpoint, counted.endpoint, bucket), handles
                )

            measure("complete", reconcile_and_complete)

    print(f"{n} tasks, {polls} reconcile rounds (a fresh runner each: nothing cached)")
    total_api = total_gcs = 0
    for name, (calls, gcs_calls) in phases.items():
        api_calls = sum(calls.values())
        total_api += api_calls
        total_gcs += gcs_calls
        detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        api_rate, gcs_rate = api_calls / n, gcs_calls / n
        print(f"  {name:<9} API {api_rate:6.2f}/task ({detail or 'none'}), GCS {gcs_rate:6.2f}/task")
    lists = phases["complete"][0].get(list_call, 0)
    per_round = lists / max(polls, 1)
    print(
        f"{kind}: {total_api / n:.2f} API calls and {total_gcs / n:.2f} GCS calls per task "
        f"(reconcile: {per_round / max(n / 100, 1):.2f} list calls per 100 live jobs)"
    )


if __name__ == "__main__":
    main()

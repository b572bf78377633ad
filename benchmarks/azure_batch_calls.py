"""What one task costs in Azure calls on the Azure Batch runner: counted, not timed.

Runs ``--tasks`` tasks (default 200) through :class:`~runners.azure_batch.AzureBatchRunner`
against the REST fake of the Batch data plane (tests/emulators/azure_batch.py, whose tasks
really run here) and Azurite, the way the control plane drives them: submit each while the pool
has no node (so the first reconcile sees them all live), reconcile them all with one batched poll
from a fresh runner, then give the pool its nodes and, round after round from a fresh runner
instance (a new warm container, nothing cached), poll every live task and complete each one
that ended: its log read to the end, then its cleanup. Batch calls are counted by the fake (per
operation), storage calls by a proxy in front of Azurite (the runner's, and the node's downloads
and uploads, which go to the same endpoint). Half the tasks write an output file under the
control plane's prefix.

It prints calls per task for each phase and ends with the line to track::

    azure-batch: <x> Batch calls and <y> storage calls per task (reconcile of <n> live tasks: <z> list calls)

Run: ``python benchmarks/azure_batch_calls.py --tasks 200`` (needs the [dev] extra, Node.js for Azurite).
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

from runners.azure_batch import AzureBatchRunner  # noqa: E402
from runners.base import JobSpec  # noqa: E402
from runners.retry import RetryPolicy  # noqa: E402
from runners.testing import complete_in_rounds  # noqa: E402
from tests.emulators.azure_batch import ACCOUNT_KEY, FakeAzureBatch  # noqa: E402
from tests.emulators.azurite import ACCOUNT, Azurite  # noqa: E402
from tests.emulators.azurite import ACCOUNT_KEY as STORAGE_KEY  # noqa: E402
from tests.emulators.fault_proxy import FaultProxy  # noqa: E402

POOL = "bench-pool"


def runner(batch: str, blob: str, container: str) -> AzureBatchRunner:
    return AzureBatchRunner(
        defaults={
            "account": "squallbatch",
            "endpoint": batch,
            "accessKey": ACCOUNT_KEY,
            "poolId": POOL,
            "blobStorage": {
                "containerName": container,
                "connectionString": f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
                f"AccountKey={STORAGE_KEY};BlobEndpoint={blob}/{ACCOUNT};",
            },
        },
        policy=RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, jitter=0.0),
        rate=10_000.0,
        log_grace=3.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory() as tmp, Azurite() as azurite:
        blob_root = azurite.endpoint.format(account="").rstrip("/")
        container = f"bench-{uuid.uuid4().hex[:8]}"
        azurite.service().create_container(container)
        with FaultProxy(blob_root) as counted, FakeAzureBatch(Path(tmp)) as fake:
            phases: dict[str, tuple[collections.Counter[str], int]] = {}

            def measure(name: str, step: object) -> None:
                before, storage_before = fake.calls.copy(), counted.requests
                step()  # type: ignore[operator]
                phases[name] = (fake.calls - before, counted.requests - storage_before)

            def fresh() -> AzureBatchRunner:
                return runner(fake.endpoint, counted.endpoint, container)

            specs = [
                JobSpec(
                    name=f"bench-{i:05d}-{uuid.uuid4().hex[:6]}",
                    command=("sh", "-c", f"echo task {i}; echo result > out.txt"),
                    output_files=("out.txt",) if i % 2 else (),
                    output_prefix=f"az://{ACCOUNT}/{container}/deploy/{i}/" if i % 2 else None,
                )
                for i in range(n)
            ]
            handles = []
            fake.hold_pools.add(POOL)
            submitter = fresh()
            measure("submit", lambda: handles.extend(submitter.submit(spec) for spec in specs))
            measure("reconcile", lambda: fresh().poll(handles))
            fake.hold_pools.discard(POOL)
            fake.held_changed()
            polls = 0

            def complete() -> None:
                nonlocal polls
                polls = complete_in_rounds(fresh, handles)

            measure("complete", complete)

    print(f"{n} tasks, {polls} completion rounds (a fresh runner each: nothing cached)")
    total_batch = total_storage = 0
    for name, (calls, storage) in phases.items():
        batch_calls = sum(calls.values())
        if name != "reconcile":
            total_batch += batch_calls
            total_storage += storage
        detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        print(
            f"  {name:<9} Batch {batch_calls / n:6.2f}/task ({detail or 'none'}), "
            f"storage {storage / n:6.2f}/task"
        )
    lists = phases["reconcile"][0].get("ListTasks", 0)
    print(
        f"azure-batch: {total_batch / n:.2f} Batch calls and {total_storage / n:.2f} storage calls per task "
        f"(reconcile of {n} live tasks: {lists} list calls)"
    )


if __name__ == "__main__":
    main()

"""What a warm container holds per finished AWS Batch task run of a wide ForEach (issue 28 part 3).

``benchmarks/fanout.py`` reads peak RSS, which hides growth into memory freed earlier
(pymalloc reuses its arenas). This counts the bytes instead (tracemalloc), for the state a
warm container keeps of one execution: N task runs shaped as the fan-out benchmark's
(``work`` under ``each``, one loop value, one SUCCEEDED attempt with its Batch job name, id
and console URL, outputs ``{"vars": {}, "exitCode": 0}``), decoded through the store's codec
from the JSON the store writes (so every string is its own object, as after a read), held in
an :class:`~control_plane.engine.model.Execution` (``taskruns`` map and ``outputs_index``) and
in a dict beside it (the DynamoDB store's split snapshot shares the same task runs).

Prints bytes per task run at each size and the total at 100,000; the last line:

    taskrun memory: <bytes> bytes per task run, <MiB> MiB at 100,000

Usage: python benchmarks/taskrun_memory.py [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def raw_taskrun(i: int, execution_id: str, parent_id: str, at: datetime) -> dict[str, Any]:
    """One finished Batch task run as ``taskrun_to_json`` writes it (the fan-out benchmark's shape)."""
    from control_plane.engine.ids import job_name, short_hash

    tr_id = short_hash(execution_id, parent_id, "tasks", i, "work", 0, size=10)
    job_id = str(uuid.UUID(int=i + 1))
    return {
        "id": tr_id,
        "seq": i + 2,
        "task_id": "work",
        "task_type": "io.kestra.plugin.scripts.shell.Commands",
        "state": "SUCCESS",
        "created": at.isoformat(),
        "parent_id": parent_id,
        "lane": i,
        "values": [str(i)],
        "ended": (at + timedelta(seconds=3)).isoformat(),
        "attempts": [
            {
                "state": "SUCCESS",
                "started": at.isoformat(),
                "ended": (at + timedelta(seconds=3)).isoformat(),
                "job": job_name("squall.bench", "fanout", "work", execution_id, tr_id, 1),
                "runner": "aws-batch",
                "job_id": job_id,
                "job_url": "https://us-east-1.console.aws.amazon.com/batch/home?region=us-east-1"
                f"#jobs/detail/{job_id}",
            }
        ],
        "outputs": {"vars": {}, "exitCode": 0},
    }


def held(n: int) -> int:
    """Bytes still allocated once N task runs are decoded and held as a warm container holds them."""
    import immutables

    from control_plane.engine.model import outputs_index
    from control_plane.store.codec import dumps, loads, taskrun_from_json

    execution_id = "4dXbZ3o9q1T6uJ2mVwYk8a"
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    encoded = [dumps(raw_taskrun(i, execution_id, "loopparent", at)) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    taskruns = [taskrun_from_json(loads(text)) for text in encoded]
    by_id = immutables.Map((tr.id, tr) for tr in taskruns)  # Execution.taskruns
    index = outputs_index(taskruns)  # Execution.outputs_index
    snapshot = {tr.id: tr for tr in taskruns}  # the store's split snapshot (same objects)
    del taskruns
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(by_id) == len(snapshot) == n and len(index["work"]) == n
    return after - before


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="task runs, comma-separated")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    per = 0.0
    for n in sizes:
        total = held(n)
        per = total / n
        print(f"{n:>7} task runs: {total / 2**20:7.1f} MiB held, {per:,.0f} bytes per task run")
    print(f"taskrun memory: {per:,.0f} bytes per task run, {per * 100_000 / 2**20:.0f} MiB at 100,000")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

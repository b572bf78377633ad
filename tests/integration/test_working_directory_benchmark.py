"""benchmarks/working_directory.py counts what it says: jobs and storage writes, per mode."""

from __future__ import annotations

from benchmarks.working_directory import measure


def test_one_job_against_a_job_per_child() -> None:
    one = measure(3, 1, per_child=False)
    each = measure(3, 1, per_child=True)
    assert (one["jobs"], one["objects"]) == (1, 0)
    # each child's whole directory goes to the storage: 1 + 2 + 3 files of 1 KiB
    assert (each["jobs"], each["objects"], each["bytes"]) == (3, 6, 6 * 1024)

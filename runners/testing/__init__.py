"""The runner contract suite, importable by third-party runner packages (needs pytest).

Subclass :class:`RunnerContract` in a test module and provide its fixtures; see
:mod:`runners.testing.contract` for the list and an example. Storage backends likewise
subclass :class:`StorageContract` (:mod:`runners.testing.storage_contract`).
"""

from runners.testing.contract import (
    CallCounter,
    RunnerContract,
    complete_in_rounds,
    count_local_processes,
    iter_logs,
    poll_one,
    read_logs,
    sh,
    wait_state,
    wait_terminal,
    wait_until,
)
from runners.testing.storage_contract import RecordingStorage, StorageContract

__all__ = [
    "CallCounter",
    "RecordingStorage",
    "RunnerContract",
    "StorageContract",
    "complete_in_rounds",
    "count_local_processes",
    "iter_logs",
    "poll_one",
    "read_logs",
    "sh",
    "wait_state",
    "wait_terminal",
    "wait_until",
]

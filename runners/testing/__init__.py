"""The runner contract suite, importable by third-party runner packages (needs pytest).

Subclass :class:`RunnerContract` in a test module and provide its fixtures; see
:mod:`runners.testing.contract` for the list and an example.
"""

from runners.testing.contract import (
    CallCounter,
    RunnerContract,
    count_local_processes,
    iter_logs,
    read_logs,
    sh,
    wait_state,
    wait_terminal,
    wait_until,
)

__all__ = [
    "CallCounter",
    "RunnerContract",
    "count_local_processes",
    "iter_logs",
    "read_logs",
    "sh",
    "wait_state",
    "wait_terminal",
    "wait_until",
]

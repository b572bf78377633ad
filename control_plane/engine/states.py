"""Kestra's execution and task-run states, and the one table of how they combine.

Theory of operation
-------------------
A task run moves CREATED -> RUNNING -> (RETRYING -> RUNNING)* -> a terminal state. A flowable
task run is RUNNING while it has live children; its terminal state is the worst of what its
children ended in, by :data:`PRECEDENCE` (KILLED > FAILED > WARNING > PAUSED > SUCCESS, as in
Kestra), adjusted by its own rules (AllowFailure turns FAILED into WARNING, ``errors`` never
turns FAILED back into SUCCESS). The execution is the root flowable and follows the same rule.

SKIPPED (``runIf`` false) counts as SUCCESS for the parent; a task with ``allowFailure``
that fails ends WARNING; a task with ``allowWarning`` that warns ends SUCCESS.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PRECEDENCE", "TERMINAL", "State", "worst"]


class State(StrEnum):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    RESTARTED = "RESTARTED"
    KILLING = "KILLING"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"
    KILLED = "KILLED"
    CANCELLED = "CANCELLED"
    RETRIED = "RETRIED"
    SKIPPED = "SKIPPED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def ok(self) -> bool:
        """Whether a parent may go on after a child ended in this state."""
        return self in _OK


TERMINAL = frozenset(
    {State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED, State.RETRIED, State.SKIPPED}
)
_OK = frozenset({State.SUCCESS, State.WARNING, State.SKIPPED})

# Higher wins when children's states are folded into their parent's.
PRECEDENCE: dict[State, int] = {
    State.SUCCESS: 0,
    State.SKIPPED: 0,
    State.RETRIED: 0,
    State.PAUSED: 1,
    State.WARNING: 2,
    State.FAILED: 3,
    State.CANCELLED: 4,
    State.KILLED: 5,
}


def worst(a: State, b: State) -> State:
    """The state that wins when two children's outcomes are folded together."""
    return a if PRECEDENCE.get(a, 0) >= PRECEDENCE.get(b, 0) else b

"""One root for every exception Squall raises on purpose.

A user's flow failing is data (a FAILED task run), never an exception; exceptions are
for bad input that must be reported to a person, for infrastructure, and for bugs::

    SquallError
    ├── FlowValidationError      a flow file is rejected (every violation, with positions)
    ├── ExpressionError          a template cannot be parsed or rendered
    │   ├── ExpressionSecurityError   a template tried to reach Python internals
    │   └── ExpressionLimitError      a template crossed a render limit (time, size)
    ├── InputError               execution inputs do not match the flow's declared inputs
    ├── EngineError              a bug: an event that cannot apply to the execution
    ├── StoreError               the state store failed or refused a write
    │   ├── ConflictError        someone else wrote first (version check): reload and retry
    │   └── NotFoundError        no such flow, execution, job or trigger
    ├── ServiceError             an operation asked for cannot be done (restart of a running execution)
    └── PackagingError           `squall package` cannot build the Lambda zip as asked
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the loader imports this module; the type is only needed for hints
    from control_plane.flows.loader import Violation

__all__ = [
    "ConflictError",
    "EngineError",
    "ExpressionError",
    "ExpressionLimitError",
    "ExpressionSecurityError",
    "FlowValidationError",
    "InputError",
    "NotFoundError",
    "PackagingError",
    "ServiceError",
    "SquallError",
    "StoreError",
]


class SquallError(Exception):
    """Root of every error Squall raises deliberately."""


class FlowValidationError(SquallError):
    """A flow was rejected; ``violations`` lists every problem found, each with its position.

    ``str(exc)`` is meant to be printed as is: a first line ``<source>: N violation(s)`` and one
    ``file:line:column: path: message`` line per violation, so editors can jump to each one.
    """

    def __init__(self, violations: list[Violation], source: str) -> None:
        self.violations = list(violations)
        self.source = source
        count = len(self.violations)
        lines = [f"{source}: {count} violation{'' if count == 1 else 's'}"]
        lines += [str(v) for v in self.violations]
        super().__init__("\n".join(lines))


class ExpressionError(SquallError):
    """A template could not be parsed or rendered; the message names the expression."""


class ExpressionSecurityError(ExpressionError):
    """A template tried to reach something the sandbox forbids (Python attributes, internals)."""


class ExpressionLimitError(ExpressionError):
    """A template crossed a render limit (deadline, output or value size); the message names it."""


class InputError(SquallError):
    """Execution inputs were rejected; ``messages`` holds one Kestra-style message per input."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("; ".join(self.messages))


class EngineError(SquallError):
    """An event that cannot apply to the execution it names: always a bug or a corrupt store."""


class ServiceError(SquallError):
    """An operation a person asked for cannot be done (restart of a running execution...)."""


class StoreError(SquallError):
    """The state store failed, or its content is unreadable (the message says which record)."""


class ConflictError(StoreError):
    """A conditional write lost: the record changed since it was read. Reload and plan again."""


class NotFoundError(StoreError):
    """No record with that key; the message names the kind and the id as the user typed it."""


class PackagingError(SquallError):
    """The Lambda zip cannot be built as asked (``squall package``); the message says what to change."""

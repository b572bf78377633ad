"""Log levels: Kestra's (SLF4J's) five, shared by the flow language and the engine's log lines.

A module of its own so that reading stored log lines (the stores, the API's log views) does
not import the flow models: ``logLevel`` and the ``Log`` task use the same type.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Level"]


class Level(StrEnum):
    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {Level.TRACE: 0, Level.DEBUG: 1, Level.INFO: 2, Level.WARN: 3, Level.ERROR: 4}

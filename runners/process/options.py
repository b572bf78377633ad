"""The ``taskRunner`` options of the process runner (``io.kestra.plugin.core.runner.Process``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from runners.base import RunnerOptions

__all__ = ["ProcessOptions"]


class ProcessOptions(RunnerOptions):
    """``taskRunner`` options of ``type: io.kestra.plugin.core.runner.Process``.

    Kestra's Process runner has no properties; ``gracePeriod`` is a Squall extra.
    """

    grace_period: timedelta | None = Field(
        default=None,
        alias="gracePeriod",
        ge=timedelta(0),
        description="Time between SIGTERM and SIGKILL on timeout or cancel (ISO-8601, e.g. PT10S).",
    )

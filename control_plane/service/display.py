"""Who watches: the callbacks ``squall run`` sets to draw its tree and print logs as they come.

Both the driver (stored logs, changed executions) and the supervisor (what running jobs print,
shown live before it is stored) report here; a line shown live is not shown again when its
job's log is stored at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from control_plane.engine.model import Execution, LogLine

__all__ = ["Display"]


class Display:
    def __init__(
        self,
        on_change: Callable[[Execution], None] | None = None,
        on_logs: Callable[[Execution | None, Sequence[LogLine]], None] | None = None,
    ) -> None:
        self.on_change = on_change
        self.on_logs = on_logs
        self.shown: set[int] = set()  # ids of stored lines already shown live

    @property
    def live(self) -> bool:
        """Whether someone watches logs (running jobs' output is then tailed)."""
        return self.on_logs is not None

    def changed(self, execution: Execution) -> None:
        if self.on_change is not None:
            self.on_change(execution)

    def logs(self, execution: Execution | None, logs: Sequence[LogLine]) -> None:
        """Show stored ``logs``, minus those already shown live."""
        if self.on_logs is not None:
            fresh = [line for line in logs if id(line) not in self.shown] if self.shown else logs
            if fresh:
                self.on_logs(execution, fresh)
        self.shown.clear()

    def running(self, execution: Execution, lines: Sequence[LogLine]) -> None:
        """Show what a running job printed (display only: it is stored when the job ends)."""
        if self.on_logs is not None and lines:
            self.on_logs(execution, lines)

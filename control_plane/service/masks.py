"""Secrets in what jobs print: the values the service masks in job logs before storing them.

The engine masks what it produces itself (log lines of inline tasks, errors, outputs, labels).
Job logs come from runners, outside the engine, and are masked here before they are stored or
shown, with every value that could appear in them:

- the execution's SECRET inputs;
- every secret the flow names with a literal (``secret('DB_PASSWORD')``), looked up through the
  deployment's chain (cached there), so a job's log is masked by whichever process reads it,
  not only by the one that rendered the job's command;
- every value this process's chain handed out (a name computed at run time,
  ``secret(inputs.which)``, is known to the process that resolved it).
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec.structs import replace

from control_plane.engine.compiled import compile_flow
from control_plane.engine.model import Execution, LogLine
from control_plane.engine.planner import masked_values
from control_plane.flows.models import Flow
from control_plane.masking import mask_secrets
from control_plane.secrets import SecretChain

__all__ = ["SecretMasks"]


class SecretMasks:
    def __init__(self, chain: SecretChain | None) -> None:
        self.chain = chain

    def values(self, flow: Flow, execution: Execution) -> list[str]:
        return masked_values(compile_flow(flow), execution, self.chain)

    def logs(self, flow: Flow, execution: Execution, lines: Sequence[LogLine]) -> list[LogLine]:
        """``lines`` with every secret value masked (the same lines when there is none)."""
        if not lines:
            return list(lines)
        secrets = self.values(flow, execution)
        if not secrets:
            return list(lines)
        out: list[LogLine] = []
        for line in lines:
            masked = mask_secrets(line.message, secrets)
            out.append(line if masked == line.message else replace(line, message=masked))
        return out

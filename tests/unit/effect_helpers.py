"""What the control-plane task tests share: a handler context on a real storage directory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from control_plane.service.storage import LocalStorage
from control_plane.tasks import EffectContext, run_effect

__all__ = ["effect_context", "run_family"]


def effect_context(tmp_path: Path, namespace: str) -> EffectContext:
    """A context for handlers that never touch the state store (HTTP, storage, namespace files)."""
    return EffectContext(
        storage=LocalStorage(tmp_path / "storage"),
        store=None,  # type: ignore[arg-type]  # these handlers never touch the store
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        namespace=namespace,
        flow_id="f",
        execution_id="ex1",
        taskrun_id="tr1",
        attempt=1,
        deadline=float("inf"),
    )


def run_family(family: str, kind: str, ctx: EffectContext, **props: Any) -> tuple[Any, str | None]:
    """Run ``squall.<family>.<kind>`` once: its outputs and its error."""
    outcome = run_effect(f"squall.{family}.{kind}", props, ctx)
    return outcome.outputs, outcome.error

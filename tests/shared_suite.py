"""Where Kestra's conformance suite lives: ``shared/`` is cloned beside the repository."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFORMANCE = Path(
    os.environ.get("SQUALL_CONFORMANCE_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "conformance" / "kestra"
)
CASES_FILE = CONFORMANCE / "cases.yaml"

if not CASES_FILE.exists():  # pragma: no cover - shared/ is cloned beside the repo
    pytest.fail(f"conformance suite not found at {CONFORMANCE}; set SQUALL_CONFORMANCE_DIR", pytrace=False)

CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))["cases"]

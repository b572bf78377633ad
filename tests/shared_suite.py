"""Where Kestra's conformance suite lives: ``shared/`` is cloned beside the repository.

A user's fresh clone has no ``shared/``: the tests over Kestra's suite are then skipped with one
line saying so, and the project's own conformance corpus (``tests/conformance/``) still runs.
In CI (``CI`` set) the suite is required.
"""

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

AVAILABLE = CASES_FILE.exists()
_MISSING = (
    f"Kestra's conformance suite is not at {CONFORMANCE} (shared/ is cloned beside the repository in CI;"
    " set SQUALL_CONFORMANCE_DIR to use another copy)"
)
if not AVAILABLE and os.environ.get("CI"):  # CI has shared/: the suite is required there
    pytest.fail(_MISSING, pytrace=False)

CASES: list[dict[str, Any]] = (
    yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))["cases"] if AVAILABLE else []
)
"""Every case, or none on a clone without shared/ (the project's own corpus still runs)."""

needs_suite = pytest.mark.skipif(not AVAILABLE, reason=_MISSING)

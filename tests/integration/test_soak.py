"""A short run of ``benchmarks/soak.py``: ``squall server`` holds as much after 1,200 requests as before.

The benchmark itself (5,000 requests by default) prints the figures; this runs the same code
on a quarter of them and checks the bounds. File descriptors: the store's pool keeps at most
``IDLE_CONNECTIONS`` SQLite connections (two or three descriptors each), so the count may
move by a few, never with the number of requests (it used to gain two per connection
thread). Memory: 16 MiB covers what fills up and then stays: each pooled connection's page
cache (SQLite's default 2 MiB, four connections), the expression engine's template cache,
and the allocator's arenas; a leak of even 10 KiB a request would pass it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from control_plane.store.sqlite import IDLE_CONNECTIONS

pytestmark = pytest.mark.slow  # 1,200 requests against a squall server process

ROOT = Path(__file__).resolve().parents[2]


def _soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("squall_soak_benchmark", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/<pid>")
def test_a_short_soak_leaves_the_server_as_it_found_it() -> None:
    soak = _soak()
    lines: list[str] = []
    result = soak.run(1200, 4, log=lines.append)
    report = "\n".join([*lines, *result.lines()])
    assert not result.unexpected, report
    assert result.server_errors == 0, report
    assert sum(sum(counts.values()) for counts in result.statuses.values()) == 1200, report
    assert result.end.fds <= result.start.fds + max(10, 3 * IDLE_CONNECTIONS), report
    assert result.end.rss_kib - result.start.rss_kib < 16 * 1024, report
    assert result.end.threads <= result.start.threads, report  # every connection thread has ended

"""benchmarks/cost.py's pricing: every counted request lands on the right price, nothing twice."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from benchmarks.aws_prices import PRICES
from benchmarks.cost import FULL_VCPU_MB, Meter, Module, price

MODULE = Module(
    memory_mb={"events": 256, "schedule": 256, "api": 1024, "tick": 512},
    batch_rule_statuses=("SUCCEEDED", "FAILED"),
    log_level="INFO",
    system_log_level="WARN",
    access_log_format={},
    submit_seconds={"api": 0.25, "events": 0.25, "schedule": 5.0, "tick": 0.25},
)


def test_requests_units_and_duration_are_priced_per_million_tasks() -> None:
    meter = Meter()
    meter.durations["events"] = [0.1, 0.1]
    meter.cpu["events"] = [0.0, 0.0]  # all waiting: duration does not scale with memory
    meter.calls[("s3", "ListObjectsV2")] = 2
    meter.calls[("s3", "GetObject")] = 2
    meter.calls[("dynamodb", "TransactWriteItems")] = 5  # priced by units, not per call
    meter.entries["scheduler"] = 1
    meter.log_bytes["events (handler lines)"] = 1000
    figures = price(
        "t", 2, meter, MODULE, wru=10, rru=4, units_by_call={}, published=Counter(RUNNING=2, SUCCEEDED=2)
    )
    by_what = {line.what: line for line in figures.lines}
    per = 1e6 / 2
    assert by_what["ListObjectsV2"].dollars_per_million == pytest.approx(
        2 * PRICES["s3.put_list"].dollars * per
    )
    assert by_what["GetObject"].dollars_per_million == pytest.approx(2 * PRICES["s3.get"].dollars * per)
    assert not any("TransactWriteItems" in what for what in by_what)
    assert by_what["write request units"].per_task == 5
    gb_s = next(line for line in figures.lines if line.what.startswith("events GB-s"))
    assert gb_s.per_task == pytest.approx(0.25 * 0.2 / 2)
    assert "dropped by the rule" in next(w for w in by_what if "RUNNING" in w)
    assert "passed to events" in next(w for w in by_what if "SUCCEEDED" in w)
    assert figures.by_component()["Scheduler"] == pytest.approx(PRICES["scheduler.invocation"].dollars * per)
    assert figures.total == pytest.approx(sum(line.dollars_per_million for line in figures.lines))


def test_cpu_time_is_stretched_by_the_functions_cpu_share() -> None:
    meter = Meter()
    meter.durations["events"] = [0.1]
    meter.cpu["events"] = [0.1]  # all CPU, measured on a full core
    figures = price("t", 1, meter, MODULE, wru=0, rru=0, units_by_call={}, published=Counter())
    gb_s = next(line for line in figures.lines if line.what.startswith("events GB-s"))
    assert gb_s.per_task == pytest.approx(
        0.25 * math.ceil(0.1 * FULL_VCPU_MB / 256 * 1000) / 1000
    )  # whole ms


def test_every_price_names_its_source_page() -> None:
    for key, entry in PRICES.items():
        assert entry.source.startswith("https://aws.amazon.com/"), key
        assert entry.dollars >= 0 and entry.read, key


def test_platform_lines_are_counted_only_at_system_level_info_or_debug() -> None:
    """Lambda writes its START/END/REPORT lines at system level INFO and DEBUG, none at WARN."""
    from benchmarks.cost import PLATFORM_LOG_BYTES

    for platform_lines, expected in ((True, PLATFORM_LOG_BYTES), (False, 0)):
        meter = Meter(platform_lines=platform_lines)
        meter.call("events", lambda event, context: None, {})
        assert meter.log_bytes["events (platform lines)"] == expected


def test_the_module_is_read_as_deployed() -> None:
    """What the benchmark prices is what infra/modules/squall deploys: change the module, and the
    figures follow (the schedule function submits for its own seconds, the others for 0.25)."""
    from benchmarks.cost import read_module

    module = read_module()
    assert module.memory_mb["events"] == 256 and module.memory_mb["api"] == 1024
    assert module.submit_seconds["schedule"] == 5.0
    assert {module.submit_seconds[name] for name in ("api", "events", "tick")} == {0.25}
    assert module.batch_rule_statuses == ("SUCCEEDED", "FAILED")

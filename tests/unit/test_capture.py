"""control_plane/service/capture.py: a job's log kept within limits, outputs never dropped silently."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from control_plane.engine.model import LogLine
from control_plane.levels import Level
from control_plane.runtime import SettingsError, load_settings, log_limits
from control_plane.service.capture import DEFAULT_MAX_OUTPUTS_BYTES, Capture, LogLimits

AT = datetime(2024, 1, 1, tzinfo=UTC)


def capture(**limits: int) -> Capture:
    return Capture(LogLimits(**limits), lambda level, message: LogLine(AT, level, message, "t", "tr", 1))


def marker(outputs: dict[str, object]) -> str:
    return "::" + json.dumps({"outputs": outputs}) + "::"


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def feed(c: Capture, text: str, size: int, stream: str = "stdout") -> None:
    """``text`` as a runner delivers a line longer than its records: pieces flagged partial."""
    parts = pieces(text, size)
    for i, part in enumerate(parts):
        c.add(stream, part, partial=i < len(parts) - 1)


def test_a_marker_in_partial_pieces_is_joined_and_parsed() -> None:
    c = capture(max_outputs_bytes=10_000)
    c.add("stderr", "before", partial=False)
    feed(c, marker({"big": "x" * 5_000}), 1_000)
    assert c.finish() == [LogLine(AT, Level.ERROR, "before", "t", "tr", 1)]
    assert c.outputs == {"big": "x" * 5_000} and c.error is None


def test_pieces_of_two_streams_interleaved_are_joined_per_stream() -> None:
    c = capture()
    text = marker({"a": "y" * 300})
    first, second = text[:100], text[100:]
    c.add("stdout", first, partial=True)
    c.add("stderr", "oops", partial=True)
    c.add("stdout", second)
    c.add("stderr", "!")
    assert c.outputs == {"a": "y" * 300}
    assert [line.message for line in c.finish()] == ["oops!"]


def test_a_marker_line_over_the_limit_fails_naming_the_limit_and_its_setting() -> None:
    c = capture(max_outputs_bytes=4_096, max_line_chars=100)
    c.add("stdout", marker({"ok": 1}))
    line = marker({"big": "x" * 20_000})
    feed(c, line, 1_000)
    lines = c.finish()
    assert c.error is not None
    assert c.error.startswith(
        f"an outputs marker line of {len(line):,} bytes is over the limit of 4,096 bytes on a task's outputs"
        " (SQUALL_MAX_OUTPUTS_BYTES)"
    )
    assert c.outputs == {}  # none kept: a task's outputs are all or nothing
    # the line itself is stored like any other, within the log's own limit
    assert [x.message for x in lines] == [line[:100] + f" ... [{len(line) - 100} characters truncated]"]


def test_a_joined_line_keeps_bounded_memory() -> None:
    c = capture(max_outputs_bytes=4_096, max_line_chars=100)
    parts = pieces(marker({"big": "x" * 100_000}), 1_000)
    for part in parts[:-1]:
        c.add("stdout", part, partial=True)
        (joining,) = c._joining.values()
        assert joining.kept <= 4_096 + 1_000  # up to the limit while it may be a marker, then the head
    assert joining.kept <= 100 + 1_000  # over the limit: only the head (and the last piece)
    c.add("stdout", parts[-1])
    assert c.error is not None


def test_the_marker_end_may_be_split_across_pieces() -> None:
    line = marker({"big": "x" * 5_000})
    for last in (1, 2, 3):  # '}::' cut after '}' or ':'
        c = capture(max_outputs_bytes=1_024)
        c.add("stdout", line[:-last], partial=True)
        c.add("stdout", line[-last:] + "  ")
        c.finish()
        assert c.error is not None and "outputs marker line" in c.error, last


def test_a_long_line_that_is_not_a_marker_is_cut_once_not_per_piece() -> None:
    c = capture(max_outputs_bytes=1_024, max_line_chars=50)
    feed(c, "::{" + "z" * 10_000, 1_000)  # starts like a marker, never ends like one
    feed(c, "plain " * 1_000, 700)
    lines = [x.message for x in c.finish()]
    assert c.error is None
    assert lines == [
        "::{" + "z" * 47 + f" ... [{10_003 - 50} characters truncated]",
        ("plain " * 9)[:50] + f" ... [{6_000 - 50} characters truncated]",
    ]


def test_outputs_that_add_up_over_the_limit_fail_but_overwriting_one_key_does_not() -> None:
    c = capture(max_outputs_bytes=4_096)
    for i in range(1_000):  # 1,000 lines of ~1 KB each, always the same key: ~1 KB of outputs
        c.add("stdout", marker({"progress": f"{i:>1000}"}))
    c.finish()
    assert c.error is None and c.outputs == {"progress": f"{999:>1000}"}

    c = capture(max_outputs_bytes=4_096)
    for i in range(10):
        c.add("stdout", marker({f"k{i}": "v" * 1_000}))
    c.finish()
    assert c.error is not None and c.outputs == {}
    assert c.error.startswith("the merged outputs of its markers (")
    assert "is over the limit of 4,096 bytes on a task's outputs (SQUALL_MAX_OUTPUTS_BYTES)" in c.error


def test_the_total_is_checked_at_the_end_too() -> None:
    # each marker is small and their byte count stays under the limit, but their merged JSON
    # is larger than their text ('1E5' is 100000.0): the last measure catches it
    c = capture(max_outputs_bytes=1_100)
    c.add("stdout", "::" + json.dumps({"outputs": {"a": [1e300] * 40}}) + "::")
    c.add("stdout", '::{"outputs":{"b":[' + ",".join(["1E5"] * 150) + "]}}::")
    c.finish()
    assert c.error is not None and "merged outputs" in c.error


def test_a_log_that_ends_inside_a_line_still_stores_it() -> None:
    c = capture()
    c.add("stdout", "no end", partial=True)
    assert [x.message for x in c.finish()] == ["no end"]


def test_a_marker_shaped_line_that_is_not_json_is_an_ordinary_line() -> None:
    c = capture()
    c.add("stdout", "::{not json}::")
    assert [x.message for x in c.finish()] == ["::{not json}::"] and c.error is None


def test_marker_log_messages_are_cut_like_lines() -> None:
    c = capture(max_line_chars=10)
    c.add("stdout", "::" + json.dumps({"logs": [{"level": "WARN", "message": "m" * 25}]}) + "::")
    (line,) = c.finish()
    assert (line.level, line.message) == (Level.WARN, "m" * 10 + " ... [15 characters truncated]")


def test_the_limit_is_a_setting_with_a_default() -> None:
    assert load_settings({}).max_outputs_bytes == DEFAULT_MAX_OUTPUTS_BYTES == LogLimits().max_outputs_bytes
    settings = load_settings({"SQUALL_MAX_OUTPUTS_BYTES": "2048"})
    assert log_limits(settings) == LogLimits(max_outputs_bytes=2048)
    with pytest.raises(SettingsError, match="SQUALL_MAX_OUTPUTS_BYTES"):
        load_settings({"SQUALL_MAX_OUTPUTS_BYTES": "12"})

"""Ids and job names are the same strings whatever the implementation: stored executions and
running jobs carry them, and replay recomputes them."""

from __future__ import annotations

import base64
import random

from control_plane.engine.ids import _b32, job_name, short_hash, taskrun_id
from control_plane.engine.model import Phase


def test_b32_is_base64_b32_lowercase_without_padding_for_every_length() -> None:
    rng = random.Random(28)
    for size in range(0, 41):
        for _ in range(50):
            digest = rng.randbytes(size)
            assert _b32(digest) == base64.b32encode(digest).decode().rstrip("=").lower()


def test_ids_are_the_ones_earlier_versions_made() -> None:
    # Computed with base64.b32encode before the fast path: a change here would give new ids
    # to positions of executions already stored.
    assert taskrun_id("abcdefghijklmnopqrstuv", "caoc7eaig2pdmo3z", Phase.TASKS, 33373, "item", 0) == (
        "4ig5n75ic7wthjal"
    )
    assert taskrun_id("x", None, Phase.ERRORS, 0, "t", 2) == "6bekpjvar2jzogz5"
    assert short_hash("a", 1) == "f5ynpbhb4mykxdoj6opa"
    assert (
        job_name("ns", "f", "t", "abcdefghijklmnopqrstuv", "tr", 1)
        == "ns-f-t-abcdefghijklmnopqrstuv-swejsuvu"
    )


def test_taskrun_id_is_short_hash_of_its_position() -> None:
    assert taskrun_id("e1", "p", Phase.FINALLY, 7, "t", 3) == short_hash(
        "e1", "p", "finally", 7, "t", 3, size=10
    )
    assert taskrun_id("e1", None, Phase.TASKS, 0, "t", 0) == short_hash("e1", "", "tasks", 0, "t", 0, size=10)

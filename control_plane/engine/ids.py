"""Deterministic ids and job names, derived from an execution's id and a position in it.

Nothing here is drawn at random or read from a clock: the same task run of the same execution
always gets the same id, and the same attempt the same job name, so replaying events gives
the same actions and a job submitted twice is recognised by its name. A module of its own so
that the stores (which read a job's execution from its name) do not import the planner.
"""

from __future__ import annotations

import hashlib
import re

from control_plane.engine.model import Phase

__all__ = ["execution_of_job", "job_name", "short_hash", "taskrun_id"]


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # ten bits at a time: half the lookups


def _b32(digest: bytes) -> str:
    """``base64.b32encode(digest)``, lowercase and unpadded, without its per-byte Python loop.

    Ids are made once per task run (100,000 in a large ForEach), and ``b32encode`` is written
    in Python: it took five times as long as hashing. The result is the same string.
    """
    chars = (len(digest) * 8 + 4) // 5
    bits = -(-chars // 2) * 10  # whole pairs, zero bits at the end as b32encode pads them
    number = int.from_bytes(digest) << (bits - len(digest) * 8)
    text = "".join([_PAIRS[(number >> shift) & 1023] for shift in range(bits - 10, -1, -10)])
    return text[:chars]


def short_hash(*parts: object, size: int = 12) -> str:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).digest()
    return _b32(digest)


def taskrun_id(
    execution_id: str, parent_id: str | None, phase: Phase, lane: int, task_id: str, iteration: int
) -> str:
    """Deterministic: the same position in the same execution always has the same id."""
    # short_hash(execution_id, parent_id or "", phase.value, lane, task_id, iteration, size=10),
    # spelled out: this runs once per task run created.
    text = f"{execution_id}\x1f{parent_id or ''}\x1f{phase.value}\x1f{lane}\x1f{task_id}\x1f{iteration}"
    return _b32(hashlib.blake2b(text.encode(), digest_size=10).digest())


_SLUG = re.compile(r"[^a-z0-9]+")
_CARRIED_ID = re.compile(r"[0-9a-z]{16,32}")  # execution ids a job name can carry (22 from every factory)
_JOB_NAME_MAX = 63
_JOB_HASH = 8  # characters of [a-z2-7]: 40 bits, unique per (task run, attempt) within one execution


def job_name(namespace: str, flow_id: str, task_id: str, execution_id: str, tr_id: str, attempt: int) -> str:
    """``<slug>-<execution id>-<hash>``: one attempt, one job name, and its execution readable from it.

    The DynamoDB store keeps a small execution's jobs inside the execution's own item and finds
    them from the name alone (:func:`execution_of_job`), so a job needs no item of its own.
    Lowercase letters, digits and dashes, at most 63 characters, starting with a letter: valid
    for AWS Batch, Kubernetes, Cloud Run and Google/Azure Batch alike. The slug
    (namespace-flow-task) is only for people reading the name and is cut to fit. An execution
    id that is not 16-32 characters of ``[0-9a-z]`` (hand-picked ids in tests) is not carried:
    the name is then ``<slug>-<13-character hash>``, which :func:`execution_of_job` tells apart
    by the length of its last part.
    """
    slug = _SLUG.sub("-", f"{namespace}-{flow_id}-{task_id}".lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"j-{slug}".rstrip("-")
    if _CARRIED_ID.fullmatch(execution_id) is None:
        return f"{slug[:46].strip('-')}-{short_hash(execution_id, tr_id, attempt, size=8)}"
    digest = short_hash(execution_id, tr_id, attempt, size=5)
    room = _JOB_NAME_MAX - len(execution_id) - len(digest) - 2
    return f"{slug[:room].strip('-')}-{execution_id}-{digest}"


_CARRIED_NAME = re.compile(rf"(?:.*-)?([0-9a-z]{{16,32}})-[a-z2-7]{{{_JOB_HASH}}}")


def execution_of_job(name: str) -> str | None:
    """The execution id a :func:`job_name` carries, or None for a name that carries none.

    Pure string work, no store access: ``<anything>-<16-32 of [0-9a-z]>-<8 of [a-z2-7]>`` at
    the end of the name. A caller that must be sure (the store) also checks that the job's
    record names the same execution.
    """
    found = _CARRIED_NAME.fullmatch(name)
    return None if found is None else found.group(1)

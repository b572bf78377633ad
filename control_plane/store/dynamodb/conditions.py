"""The conditions of the store's writes: each clause named, each one a reason a write may be refused.

Every write that could lose someone else's update is conditional. A refused condition comes
back as :class:`~control_plane.store.dynamodb.table.Refused` (ConditionalCheckFailed, or a
cancelled transaction with one reason per item); the module that wrote decides what it means
(``ConflictError``, ``NotFoundError``, a lease to wait for or roll forward) from the item
DynamoDB returns with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from control_plane.store.dynamodb.items import Item

__all__ = [
    "ATTEMPTS",
    "AT_VERSION",
    "EXISTS",
    "FREE_OR_OURS",
    "HOLDS_LEASE",
    "IS_NEW",
    "NOT_APPLIED",
    "NO_LEASE",
    "entries_unchanged",
    "jobs_unchanged",
]

IS_NEW = "attribute_not_exists(PK)"  # create: nothing with this key yet
EXISTS = "attribute_exists(PK)"  # update: the record must be there (UpdateItem would create it)
AT_VERSION = "#v = :expected"  # the writer read this version: no lost update
NO_LEASE = "attribute_not_exists(#ls)"  # no big step holds the execution
HOLDS_LEASE = "#ls.#tk = :token"  # this big step still holds it (nobody rolled it forward)
FREE_OR_OURS = "(attribute_not_exists(PK) OR #lt = :token)"  # a job name not taken by another step
NOT_APPLIED = "(attribute_not_exists(#lt) OR #lt <> :token)"  # this job update not applied yet

ATTEMPTS = 200
"""How often a read or write that concurrent writers keep refusing is tried again before it gives up."""


def entries_unchanged(
    entries: Mapping[str, Item], names: dict[str, str], values: Item, *, tag: str = "k"
) -> str:
    """`` AND #j.#k0.#v = :kv0 ...``: each of these job entries of a document is still at the
    version read (phases only move on, so an unchanged version means an unchanged phase).

    Adds the placeholders to ``names`` and ``values``; ``tag`` keeps them apart from others
    of the same expression.
    """
    clause = ""
    for i, (name, entry) in enumerate(entries.items()):
        names[f"#{tag}{i}"] = name
        clause += f" AND #j.#{tag}{i}.#v = :{tag}v{i}"
        values[f":{tag}v{i}"] = entry["M"]["v"]
    return clause


def jobs_unchanged(
    jobs_version: int, entries: Mapping[str, Item], names: dict[str, str], values: Item, *, tag: str = "k"
) -> str:
    """`` AND #jv = :kjv``: none of a document's job entries changed since ``jobs_version`` was
    read (they are one compressed attribute, ``records.JOBS_BLOB``); a document written before
    that (``jobs_version`` -1, entries in a map) checks each of ``entries`` instead."""
    if jobs_version < 0:
        return entries_unchanged(entries, names, values, tag=tag)
    names["#jv"] = "jv"
    values[f":{tag}jv"] = {"N": str(jobs_version)}
    return f" AND #jv = :{tag}jv"

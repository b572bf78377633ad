"""Who drives an execution: on a local store, one live process at a time, holding a lease.

Why: two ``squall`` processes may share one SQLite file (a ``squall run`` beside a
``squall server``, two runs, a ``squall executions show``). Each would otherwise scan every
active job and due timer in the store and act on them: take over a job another live process
is submitting, poll and end it, fire its timers. Worse, nothing drove an execution whose
process was killed until a server happened to run.

Theory of operation
-------------------
Each execution has at most one lease row (``leases`` table): the owner's identity and when it
was last renewed. A process claims the executions it creates (subflow children included) in
the same breath, and acts only on the jobs and timers of executions it owns (the loops
filter with :meth:`Ownership.owns`). An execution whose owner is gone is claimed by the next
process that meets it (any ``squall`` command on the database, or ``squall executions resume``):
its running jobs are reattached (the process runner's jobs outlive their submitter, see
``runners/process``), finished ones are recorded, jobs left SUBMITTING are found by name or
submitted, once.

"Gone" is decided without waiting where it can be: an owner on this machine (same host and
boot) is alive exactly while its pid runs with the start time recorded in its identity, so a
``kill -9`` is noticed at once and a pid reused by another program is not mistaken for it.
An owner on another host (a database on a shared disk) is alive while it renews its lease,
every third of :data:`LEASE` (``renew``, called by each step). The claim reads and writes in
one transaction, so two processes that find the same owner gone cannot both take over.

The cloud plane has no leases: Lambda invocations hold nothing between events, and the
tick's submit grace plays the lease's part for jobs left SUBMITTING.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from control_plane.service.clock import Clock
from control_plane.store.base import LeaseRecord

__all__ = ["LEASE", "LeaseStore", "Ownership", "describe", "identity", "orphans", "owner_alive"]

LEASE = timedelta(seconds=30)
"""How long an owner on another host is trusted without a renewal."""


class LeaseStore(Protocol):
    """What a store that keeps leases offers (the SQLite store)."""

    def get_lease(self, execution_id: str) -> LeaseRecord | None: ...

    def list_leases(self, *, limit: int = 1000) -> list[LeaseRecord]: ...

    def claim_lease(
        self, execution_id: str, owner: str, *, at: datetime, free: Callable[[LeaseRecord], bool]
    ) -> LeaseRecord: ...

    def renew_leases(self, owner: str, *, at: datetime) -> None: ...

    def release_lease(self, execution_id: str, owner: str) -> None: ...


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "-"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot; "" when it does not exist.

    "-" where there is no /proc to read it from (the pid exists, its start time is unknown).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return ""  # no such process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return ""
        except PermissionError:
            pass
        return "-"
    except OSError:
        return "-"
    return stat[stat.rindex(b")") + 2 :].split()[19].decode()  # field 22, after the command name


_HOST = socket.gethostname()
_BOOT = _boot_id()


def identity(pid: int | None = None) -> str:
    """``host/boot/pid/start``: names one process for as long as the machine runs."""
    pid = os.getpid() if pid is None else pid
    return f"{_HOST}/{_BOOT}/{pid}/{_start_time(pid)}"


def describe(owner: str) -> str:
    """An owner identity for a person: ``process 1234 on host``."""
    host, _, rest = owner.partition("/")
    pid = rest.split("/")[1] if rest.count("/") >= 2 else "?"
    return f"process {pid} on {host}"


def owner_alive(lease: LeaseRecord, now: datetime, within: timedelta = LEASE) -> bool:
    """Whether the lease's owner may still be driving its execution."""
    host, _, rest = lease.owner.partition("/")
    boot, _, rest = rest.partition("/")
    pid_text, _, start = rest.partition("/")
    if host == _HOST and boot == _BOOT and boot != "-" and pid_text.isdigit():
        current = _start_time(int(pid_text))
        return current != "" and current == start
    return now - lease.renewed < within


def orphans(store: LeaseStore, now: datetime, me: str, within: timedelta = LEASE) -> list[str]:
    """Executions whose lease is held by an owner that is gone (ended or not: see ``Recover``).

    Cheap (one read of the leases): a command asks it before building a service at all.
    """
    return [
        lease.execution_id
        for lease in store.list_leases()
        if lease.owner != me and not owner_alive(lease, now, within)
    ]


class Ownership:
    """The executions this process drives; claims orphans it meets. Thread-safe (the server's threads)."""

    def __init__(
        self, store: LeaseStore, clock: Clock, *, recheck: float = 1.0, lease: timedelta = LEASE
    ) -> None:
        self.store = store
        self.clock = clock
        self.me = identity()
        self.lease = lease
        self.recheck = recheck
        self._owned: set[str] = set()
        self._taken: list[str] = []
        self._others: dict[str, float] = {}  # execution -> when a live owner was last seen (monotonic)
        self._renewed = time.monotonic()
        self._lock = threading.Lock()

    def claim(self, execution_id: str) -> bool:
        """Drive ``execution_id`` from now on, unless a live process does; True when this one does.

        Taking it from a dead owner puts it in :meth:`taken_over` (what that owner may have
        left undone is asked for again: the engine's ``Recover``).
        """
        now = self.clock.now()
        took = False

        def free(held: LeaseRecord) -> bool:
            nonlocal took
            took = not owner_alive(held, now, self.lease)
            return took

        holder = self.store.claim_lease(execution_id, self.me, at=now, free=free)
        with self._lock:
            if holder.owner == self.me:
                self._owned.add(execution_id)
                self._others.pop(execution_id, None)
                if took:
                    self._taken.append(execution_id)
                return True
            self._others[execution_id] = time.monotonic()
            return False

    def orphans(self) -> list[str]:
        """Executions whose lease is held by an owner that is gone (:func:`orphans`)."""
        return orphans(self.store, self.clock.now(), self.me, self.lease)

    def taken_over(self) -> list[str]:
        """The executions taken from dead owners since the last call."""
        with self._lock:
            taken, self._taken = self._taken, []
        return taken

    def holds(self, execution_id: str) -> bool:
        """Whether this process drives ``execution_id`` now (never claims: a released one stays so)."""
        with self._lock:
            return execution_id in self._owned

    def owns(self, execution_id: str) -> bool:
        """Whether this process drives ``execution_id``: it does, or it just took it from a dead owner."""
        with self._lock:
            if execution_id in self._owned:
                return True
            seen = self._others.get(execution_id)
            if seen is not None and time.monotonic() - seen < self.recheck:
                return False
        if self.holder(execution_id) is not None:  # a read, not a write transaction, for a live owner
            with self._lock:
                self._others[execution_id] = time.monotonic()
            return False
        return self.claim(execution_id)

    def holder(self, execution_id: str) -> LeaseRecord | None:
        """The live owner of ``execution_id`` if another process drives it, else None."""
        lease = self.store.get_lease(execution_id)
        if lease is None or lease.owner == self.me or not owner_alive(lease, self.clock.now(), self.lease):
            return None
        return lease

    def release(self, execution_id: str) -> None:
        """The execution ended: nobody needs to drive it."""
        with self._lock:
            if execution_id not in self._owned:
                return
            self._owned.discard(execution_id)
        self.store.release_lease(execution_id, self.me)

    def renew(self) -> None:
        """Renew this process's leases every third of the lease (for owners on other hosts)."""
        if time.monotonic() - self._renewed >= self.lease.total_seconds() / 3:
            self._renewed = time.monotonic()
            self.store.renew_leases(self.me, at=self.clock.now())

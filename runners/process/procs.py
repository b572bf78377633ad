"""Which process is which: /proc identity, liveness, and signalling a job's process group.

A pid alone is not an identity (pids are recycled, and a ``pid`` file outlives a reboot), so
a process is (pid, start time in clock ticks, boot id), as the ``pid`` file records it for
the job and for the process that owns it, its shim (:class:`PidInfo`). Nothing here signals a
group unless its leader is still the process that was recorded. Without /proc (not Linux),
``kill(pid, 0)`` is the fallback: weaker, since it cannot tell a recycled pid.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from msgspec import Struct

__all__ = [
    "PidInfo",
    "alive",
    "boot_id",
    "group_alive",
    "proc_stat",
    "self_start",
    "signal_group",
    "terminate",
    "wait_exited",
]


class _Stat(Struct, frozen=True):
    state: str
    pgrp: int
    start: int


_HAS_PROC = os.path.exists("/proc/self/stat")


def _has_proc() -> bool:
    return _HAS_PROC


def proc_stat(pid: int) -> _Stat | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        fields = raw[raw.rindex(b")") + 2 :].split()
        return _Stat(state=fields[0].decode(), pgrp=int(fields[2]), start=int(fields[19]))
    except (ValueError, IndexError):
        return None


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


_BOOT_ID = _read_boot_id()  # constant while this process lives


def boot_id() -> str | None:
    return _BOOT_ID


class PidInfo(Struct, frozen=True):
    """What the ``pid`` file records: the job's process (group) and the process owning it (its shim)."""

    pid: int
    start: int | None
    boot: str | None
    owner_pid: int
    owner_start: int | None
    started: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "pgid": self.pid,
            "start": self.start,
            "boot": self.boot,
            "owner_pid": self.owner_pid,
            "owner_start": self.owner_start,
            "started": self.started.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PidInfo:
        return cls(
            pid=int(raw["pid"]),
            start=raw.get("start"),
            boot=raw.get("boot"),
            owner_pid=int(raw["owner_pid"]),
            owner_start=raw.get("owner_start"),
            started=datetime.fromisoformat(raw["started"]),
        )


def _answers(kill: Callable[[int, int], None], target: int) -> bool:
    """Without /proc: whether signal 0 finds the process (group), ours to signal or not."""
    try:
        kill(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_boot(boot: str | None) -> bool:
    return boot is None or boot == boot_id()


def alive(pid: int, start: int | None, boot: str | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` (clock ticks) still runs."""
    if not _same_boot(boot):
        return False
    if not _has_proc():
        return _answers(os.kill, pid)
    stat = proc_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return start is None or stat.start == start


def group_alive(pgid: int) -> bool:
    """Whether some non-zombie process is still in process group ``pgid``."""
    if not _has_proc():
        return _answers(os.killpg, pgid)
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = proc_stat(int(entry.name))
                if stat is not None and stat.pgrp == pgid and stat.state not in ("Z", "X"):
                    return True
    return False


def signal_group(info: PidInfo, sig: int) -> bool:
    """Signal the job's process group unless its id may have been recycled; False if nothing to signal.

    A process-group id cannot be reused as a pid while the group has members, so the only
    unsafe case is a *different* process now holding the leader's pid (start time differs,
    or another boot): then our group is empty anyway and we must not signal.
    """
    if not _same_boot(info.boot):
        return False
    stat = proc_stat(info.pid)
    if stat is not None and info.start is not None and stat.start != info.start:
        return False
    try:
        os.killpg(info.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    pause = 0.005
    while group_alive(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))  # waiting on the kernel, not a test: no event to wait on
        pause = min(pause * 2, 0.05)
    return True


def terminate(info: PidInfo, grace: float) -> None:
    """SIGTERM the job's group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    if not signal_group(info, signal.SIGTERM):
        return
    if _wait_group_gone(info.pid, grace):
        return
    signal_group(info, signal.SIGKILL)
    _wait_group_gone(info.pid, 5.0)


def wait_exited(pid: int, start: int | None, boot: str | None, seconds: float) -> bool:
    """Wait up to ``seconds`` for the process to exit (a zombie has); whether it did.

    A pidfd (any process, child or not) when the kernel has them; else /proc, polled with a
    growing pause (no event to wait on for another process's child).
    """
    if not alive(pid, start, boot):
        return True
    opener = getattr(os, "pidfd_open", None)
    pidfd = None
    if opener is not None:
        try:
            pidfd = int(opener(pid))
        except OSError:
            pidfd = None
    if pidfd is not None:
        try:
            if not alive(pid, start, boot):  # the pid was recycled before the pidfd was opened
                return True
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            return bool(poller.poll(max(seconds, 0.0) * 1000))
        finally:
            os.close(pidfd)
    deadline = time.monotonic() + seconds
    pause = 0.005
    while alive(pid, start, boot):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)
    return True


_owner_cache: tuple[int, int | None] | None = None


def self_start() -> int | None:
    """This process's start time (clock ticks): what a ``pid`` file records of its owner."""
    global _owner_cache
    pid = os.getpid()
    if _owner_cache is None or _owner_cache[0] != pid:  # recomputed after a fork
        stat = proc_stat(pid)
        _owner_cache = (pid, stat.start if stat else None)
    return _owner_cache[1]

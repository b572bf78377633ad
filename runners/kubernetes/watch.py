"""A bounded watch of a deployment's Jobs: the local wake-up of ``squall server`` (``Waitable``).

Polling stays the truth (``poll`` reads every Job it is asked about); the watch only says *when*
to poll, so a chain of short Jobs does not wait a polling interval per task. It must still lose
no transition, so it follows the API's own recipe:

1. LIST the Jobs (label selector) and remember each one's ``resourceVersion`` and the list's;
2. WATCH from the list's ``resourceVersion`` with ``allowWatchBookmarks`` and a bounded
   ``timeoutSeconds``: every ADDED/MODIFIED/DELETED names a changed Job; a BOOKMARK moves the
   resume point without a change; when the server ends the stream, watch again from the last
   ``resourceVersion`` seen;
3. on ``410 Gone`` (the resume point was compacted away), LIST again and compare each Job's
   ``resourceVersion`` with the one remembered: every Job that changed, appeared or vanished in
   the gap is reported as changed. So a transition that happened while the watch was away is
   never lost, only reported late.

:meth:`JobWatch.step` does one of those (a list, or one bounded watch) and is what tests drive;
:meth:`JobWatch.start` runs steps on a daemon thread and :meth:`JobWatch.wait` blocks on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from runners.base import RunnerError

__all__ = ["JobWatch"]


class JobWatch:
    """Watch the Jobs ``list_jobs`` lists (``list_jobs(**kwargs)`` is the client's
    ``list_namespaced_job`` bound to a namespace and label selector)."""

    def __init__(self, list_jobs: Callable[..., Any], *, step_seconds: int = 30) -> None:
        self._list = list_jobs
        self._step_seconds = step_seconds
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._versions: dict[str, str] = {}
        self._changed: set[str] = set()
        self._resource_version: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.relists = 0
        """How many times a 410 made the watch list again (tests check resumption happened)."""
        self.bookmarks = 0

    # -- what the runner asks

    def wait(self, timeout: float) -> bool:
        """True when some Job may have changed within ``timeout`` seconds (starts the watch)."""
        self.start()
        woke = self._wake.wait(timeout)
        self._wake.clear()
        return woke

    def drain(self) -> set[str]:
        """The names of the Jobs that changed since the last drain."""
        with self._lock:
            changed, self._changed = self._changed, set()
        return changed

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="squall-k8s-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    # -- the steps

    def step(self, timeout_seconds: int | None = None) -> None:
        """One list (first, or after a 410) or one bounded watch from the last resourceVersion."""
        if self._resource_version is None:
            self._relist()
            return
        from kubernetes.client.rest import ApiException

        response = None
        try:
            response = self._list(
                watch=True,
                resource_version=self._resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds or self._step_seconds,
                _preload_content=False,
            )
            buffer = b""
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk  # a chunk may end inside a line: keep the rest for the next one
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(line)
        except _Gone:
            self.relists += 1
            self._relist()
        except ApiException as exc:
            if exc.status == 410:
                self.relists += 1
                self._relist()
                return
            raise RunnerError(
                f"watching Jobs failed: {exc.status} {exc.reason}", runner="kubernetes"
            ) from exc
        finally:
            if response is not None:
                response.release_conn()

    def _event(self, line: bytes) -> None:
        import json

        event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            raise RunnerError(f"watching Jobs failed: {obj.get('message')}", runner="kubernetes")
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        if version:
            self._resource_version = str(version)
        if kind == "BOOKMARK":
            self.bookmarks += 1
            return
        name = str(meta.get("name"))
        with self._lock:
            if kind == "DELETED":
                self._versions.pop(name, None)
            else:
                self._versions[name] = str(version)
            self._changed.add(name)
        self._wake.set()

    def _relist(self) -> None:
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            page = self._list(limit=500, **({"_continue": token} if token else {}))
            for job in page.items:
                found[job.metadata.name] = str(job.metadata.resource_version)
            token = page.metadata._continue
            if not token:
                break
        changed = {n for n in found.keys() | self._versions.keys() if found.get(n) != self._versions.get(n)}
        with self._lock:
            first = self._resource_version is None and not self._versions and not self.relists
            self._versions = found
            if not first:
                self._changed |= changed
        self._resource_version = str(page.metadata.resource_version)
        if changed and not first:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
            except Exception:  # a broken stream: the poll is still the truth; try again shortly
                self._wake.set()
                self._stopping.wait(1.0)


class _Gone(Exception):
    """The watch's resourceVersion was compacted away (an ERROR event with a 410 Status)."""

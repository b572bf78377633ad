"""A fake Kubernetes API server: batch/v1 Jobs and v1 Pods whose containers really run here.

No API server can be installed on these machines, so this fake speaks the wire protocol of the
parts of Kubernetes Squall uses, and plays the job controller, the scheduler and the kubelet
behind them. Every container's ``command + args`` runs through the shared
:class:`~tests.emulators.executor.LocalExecutor`, so exit codes, logs, kills and timeouts are
genuine. Two independent clients are kept honest against it: the official ``kubernetes``
Python client (whose models parse every answer) and ``kubectl`` (``get``, ``describe``,
``logs``, ``delete``) in tests/integration/test_kubernetes_fake.py.

::

    with FakeKubernetes(tmp_path) as fake:
        fake.images["busybox"] = {}              # an image the kubelet can "pull"
        client = fake.api_client()               # a kubernetes.client.ApiClient on fake.url
        ...
        fake.compact()                           # watches from older resourceVersions get 410

What is modelled, and how closely (UNVERIFIED: written from the API reference, not compared
with a real cluster's bytes)::

    | Area                 | Modelled                                                      | Status      |
    |----------------------|---------------------------------------------------------------|-------------|
    | discovery            | /version, /api, /apis, /api/v1, /apis/batch/v1 (legacy,        | kubectl ok  |
    |                      | not aggregated discovery)                                     |             |
    | Status error bodies  | kind Status, reason, code, details{name,kind,causes}           | client ok   |
    | create (POST)        | 409 AlreadyExists, 422 Invalid (name, restartPolicy,           | UNVERIFIED  |
    |                      | containers, images), uid/rv/creationTimestamp                 | wording     |
    | get / delete         | 404 NotFound; delete with propagationPolicy (Orphan default    | kubectl ok  |
    |                      | for Jobs, Background/Foreground delete pods at once)          |             |
    | list                 | labelSelector (=, ==, !=, in, notin, exists, !exists),         | UNVERIFIED  |
    |                      | fieldSelector metadata.name/namespace, limit/continue         | token shape |
    |                      | (410 Expired once compacted), remainingItemCount              |             |
    | watch                | NDJSON, ADDED/MODIFIED/DELETED, BOOKMARK (allowWatchBookmarks),| UNVERIFIED  |
    |                      | ERROR 410 Expired event for a compacted resourceVersion,      | timing      |
    |                      | timeoutSeconds                                                |             |
    | patch                | merge-patch and strategic-merge-patch as JSON merge patch;     | UNVERIFIED  |
    |                      | metadata.resourceVersion precondition -> 409 Conflict         | (SMP lists) |
    | Job controller       | one pod per Job (parallelism 1), backoffLimit 0 only,          | UNVERIFIED  |
    |                      | podFailurePolicy (onExitCodes, onPodConditions; FailJob,      | messages    |
    |                      | Ignore, Count), activeDeadlineSeconds (DeadlineExceeded),     |             |
    |                      | suspend (active pods deleted, Suspended condition),           |             |
    |                      | ttlSecondsAfterFinished, FailureTarget/SuccessCriteriaMet     |             |
    | ResourceQuota        | ``quota_exceeded`` namespaces: no pod, FailedCreate event      | UNVERIFIED  |
    | scheduler            | nodeSelector against ``node_labels``; else Pending,            | UNVERIFIED  |
    |                      | PodScheduled=False reason Unschedulable                       |             |
    | kubelet              | image in ``images`` else waiting ErrImagePull (then            | UNVERIFIED  |
    |                      | ImagePullBackOff); init containers in order, then containers  |             |
    |                      | together; emptyDir volumes shared by a pod's containers;      |             |
    |                      | env ``value``, ``valueFrom`` and ``envFrom`` of ``secrets``   |             |
    |                      | (missing: waiting CreateContainerConfigError, no retry end);  |             |
    |                      | terminationMessagePath; OOMKilled and                         |             |
    |                      | eviction (DisruptionTarget) by test controls; logs per        |             |
    |                      | container (tailLines, timestamps, limitBytes)                 |             |
    | not modelled         | auth (any caller is admin), graceful termination (deletion     | -           |
    |                      | is immediate), restarts, native sidecars, other resources     |             |

A container sees each of its pod's ``emptyDir`` volumes, and its ``terminationMessagePath``
file, where its spec says: the executor cannot mount, so those paths are substituted in the
container's argv and env values, as whole path components (how :class:`Mount` paths are).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import itertools
import json
import os
import re
import signal as signals
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.emulators.executor import LocalExecutor, LogLine, RunningJob, _substitution

__all__ = ["FakeKubernetes", "KubeError", "match_labels"]

TICK = 0.02
IDLE = 1.0
"""The longest a controller sleeps: every change to its Job or pods wakes it at once (a poke), so
this is only a safety net. Short periodic waits here cost 1,000 idle threads' wake-ups a second
in the 500-Job tests, and starved every other test of the worker."""
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_KINDS = {"jobs": ("Job", "batch/v1"), "pods": ("Pod", "v1"), "events": ("Event", "v1")}
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeError(Exception):
    """An answer as the API server sends a failure: a ``Status`` object with ``reason`` and ``code``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        group: str | None = None,
        causes: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        details: dict[str, Any] = {}
        if name is not None:
            details["name"] = name
        if group:
            details["group"] = group
        if kind is not None:
            details["kind"] = kind
        if causes:
            details["causes"] = causes
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(resource: str, name: str) -> KubeError:
    group = "batch" if resource == "jobs" else ""
    shown = f"{resource}.{group}" if group else resource
    return KubeError(404, "NotFound", f'{shown} "{name}" not found', name=name, kind=resource, group=group)


def _invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> KubeError:
    group = "batch" if kind == "Job" else ""
    shown = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{field}: {msg}" for field, msg in causes)
    return KubeError(
        422,
        "Invalid",
        f'{shown} "{name}" is invalid: {text}',
        name=name,
        kind=kind,
        group=group,
        causes=[{"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in causes],
    )


# -- selectors

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9._-]*))?\s*$"
)


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def match_labels(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector in the API's string syntax (ValueError if malformed)."""
    for part in _split_selector(selector):
        found = _REQUIREMENT.match(part)
        if found is None:
            raise ValueError(f"unable to parse requirement: {part!r}")
        key, op, raw = found.group("key"), (found.group("op") or "").strip(), found.group("value")
        if found.group("neg"):
            if op:
                raise ValueError(f"unable to parse requirement: {part!r}")
            if key in labels:
                return False
            continue
        if not op:
            if key not in labels:
                return False
            continue
        values = (
            {v.strip() for v in raw.strip("()").split(",")} if raw and raw.startswith("(") else {raw or ""}
        )
        if op in ("=", "==", "in"):
            if labels.get(key) not in values:
                return False
        elif op in ("!=", "notin") and key in labels and labels[key] in values:
            return False
    return True


def _match_fields(selector: str, obj: Mapping[str, Any]) -> bool:
    fields = {
        "metadata.name": obj["metadata"]["name"],
        "metadata.namespace": obj["metadata"].get("namespace", ""),
    }
    if obj.get("kind") == "Event":  # the event fields the API server indexes
        involved = obj.get("involvedObject") or {}
        fields.update(
            {
                "involvedObject.kind": involved.get("kind", ""),
                "involvedObject.name": involved.get("name", ""),
                "involvedObject.uid": involved.get("uid", ""),
                "reason": obj.get("reason", ""),
                "type": obj.get("type", ""),
            }
        )
    for part in filter(None, selector.split(",")):
        key, op, value = re.split(r"(==|!=|=)", part, maxsplit=1)
        if key not in fields:
            raise KubeError(
                400,
                "BadRequest",
                f'"{key}" is not a known field selector: only {", ".join(sorted(fields))}',
            )
        if (fields[key] == value) != (op != "!="):
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# -- the records behind the objects


class _Container:
    """One container of a running pod: its process, its log and its end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[LogLine] = []
        self.run: RunningJob | None = None
        self.exit_code: int | None = None
        self.reason: str | None = None  # set by a test control (OOMKilled) before the kill
        self.started: str | None = None
        self.finished: str | None = None
        self.message_file: Path | None = None


class _Pod:
    def __init__(self, namespace: str, name: str, job: str | None, directory: Path) -> None:
        self.namespace, self.name, self.job = namespace, name, job
        self.directory = directory
        self.containers: dict[str, _Container] = {}
        self.deleted = False
        self.disrupted: str | None = None  # the DisruptionTarget reason, once set


class FakeKubernetes:
    """The fake API server (see the module docstring). Start it, use :attr:`url`, stop it."""

    def __init__(self, workdir: Path, *, bookmark_interval: float = 1.0) -> None:
        self.workdir = workdir
        self.executor = LocalExecutor(workdir / "executor")
        self.images: dict[str, dict[str, str]] = {}
        """Images the kubelet can pull: image -> the environment the image sets (PATH...)."""
        self.node_labels: dict[str, str] = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        self.held: set[str] = set()
        """Label selectors of pods the kubelet shows Running and ready without running anything
        (hundreds of jobs in a reconcile test would be hundreds of processes on two cores)."""
        self.quota_exceeded: set[str] = set()
        """Namespaces whose ResourceQuota refuses every new pod."""
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        """(namespace, name) -> data of the Secrets an ``env`` ``valueFrom`` or ``envFrom`` may
        name (ConfigMaps alike: one store here); one that is missing is the kubelet's
        CreateContainerConfigError, and the pod waits."""
        self.bookmark_interval = bookmark_interval
        self.calls: dict[str, int] = {}
        """Requests per ``VERB resource`` (``LIST jobs``, ``WATCH pods``, ``CREATE jobs``...)."""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, type, resource, object)
        self._compacted = 0
        self._rv = itertools.count(1000)
        self._last_rv = 999
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._pokes: dict[tuple[str, str], threading.Condition] = {}
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-k8s-http", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            self._kill_pod(pod)
        for thread in self._threads:
            thread.join(timeout=10)
        self.executor.stop()
        if self._errors:
            raise ExceptionGroup("the fake Kubernetes API server failed", list(self._errors))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` on this fake (no auth, urllib3 retries off)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.retries = False
        return client.ApiClient(configuration)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file for kubectl (and the runner's ``config``) pointing at this fake."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    # -- test controls

    def compact(self) -> int:
        """Forget every change so far, as etcd compaction does: older resourceVersions are 410 Gone."""
        with self._lock:
            self._history.clear()
            self._compacted = self._last_rv + 1
            return self._last_rv

    def pods_of(self, namespace: str, job: str) -> list[str]:
        with self._lock:
            return sorted(p.name for p in self._pods.values() if p.namespace == namespace and p.job == job)

    def _started(self, namespace: str, pod: str, container: str | None) -> _Pod:
        """The pod once ``container`` (any container when None) runs: test controls act on a running pod."""

        def started() -> bool:  # its process exists, not only its run record (the spawn comes after)
            record = self._pods.get((namespace, pod))
            runs = [
                c
                for c in (record.containers.values() if record else [])
                if c.run is not None and c.run.pid is not None
            ]
            return any(container in (None, c.name) for c in runs)

        if not self.wait_for(started, 30):
            raise AssertionError(f"pod {namespace}/{pod} never ran {container or 'a container'}")
        with self._lock:
            return self._pods[(namespace, pod)]

    def delete_jobs(self, namespace: str, selector: str) -> int:
        """``kubectl delete jobs -l selector``: a test's cleanup of hundreds of Jobs in one step (a
        cancel each would be hundreds of API calls and S3 writes); their controllers end."""
        with self._lock:
            names = [
                name
                for (resource, ns, name), obj in list(self._objects.items())
                if resource == "jobs"
                and ns == namespace
                and match_labels(selector, obj["metadata"].get("labels") or {})
            ]
            for name in names:
                self._delete_locked_job(namespace, name)
        return len(names)

    def evict(self, namespace: str, pod: str, reason: str = "EvictionByEvictionAPI") -> None:
        """The running pod is evicted (or its node drained, ``reason``): DisruptionTarget, killed, Failed."""
        record = self._started(namespace, pod, None)
        with self._lock:
            record.disrupted = reason
        self._kill_pod(record)

    def oom(self, namespace: str, pod: str, container: str) -> None:
        """The running container passes its memory limit: SIGKILL, reason OOMKilled (137)."""
        record = self._started(namespace, pod, container).containers[container]
        with self._lock:
            record.reason = "OOMKilled"
            run = record.run
        if run is None or run.pid is None:
            raise AssertionError(f"container {container} of {namespace}/{pod} has no process yet")
        # The kernel's OOM killer takes the biggest process of the container's cgroup: the task's
        # command, not the small shell that is its PID 1, which then exits 137 on its own.
        leader = run.pid
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == leader:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[2]) == leader:  # its process group
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signals.SIGKILL)

    def object(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def last_resource_version(self) -> int:
        with self._lock:
            return self._last_rv

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, TICK * 5))
        return True

    # -- the store (callers hold the lock)

    def _bump(self, kind: str, resource: str, obj: dict[str, Any]) -> None:
        rv = next(self._rv)
        self._last_rv = rv
        obj["metadata"]["resourceVersion"] = str(rv)
        self._history.append((rv, kind, resource, copy.deepcopy(obj)))
        self._changed.notify_all()
        meta = obj["metadata"]
        owner = meta["name"] if resource == "jobs" else (meta.get("labels") or {}).get("job-name")
        poke = self._pokes.get((meta.get("namespace", ""), str(owner)))
        if poke is not None:
            poke.notify_all()

    def _since(self, position: int) -> list[tuple[int, str, str, dict[str, Any]]]:
        """The changes after ``position``. The history is in resourceVersion order and grows by
        thousands of entries a module: a scan of it on every wake-up of every open watch made
        the fake quadratic (a 10 s test took 47 s after the others)."""
        return self._history[bisect.bisect_right(self._history, position, key=lambda entry: entry[0]) :]

    def _put(self, resource: str, obj: dict[str, Any], *, new: bool = False) -> None:
        meta = obj["metadata"]
        self._objects[(resource, meta["namespace"], meta["name"])] = obj
        self._bump("ADDED" if new else "MODIFIED", resource, obj)

    def _remove(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects.pop((resource, namespace, name), None)
        if obj is not None:
            obj["metadata"]["deletionTimestamp"] = _now()
            self._bump("DELETED", resource, obj)
        return obj

    # -- the API

    def serve(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        """(status, document or iterator of watch lines) for one request."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if method == "GET" and path in _DISCOVERY:
            return 200, _DISCOVERY[path]
        namespace = re.fullmatch(r"/api/v1/namespaces/(?P<ns>[a-z0-9-]+)", path)
        if method == "GET" and namespace is not None:  # every namespace exists (UNVERIFIED: none is modelled)
            return 200, {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"name": namespace.group("ns"), "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, path))},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        found = re.fullmatch(
            r"/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>jobs|pods|events)"
            r"(?:/(?P<name>[^/]+)(?:/(?P<sub>log|status))?)?",
            path,
        )
        if found is None:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name, sub = found.group("ns", "res", "name", "sub")
        expected = "/apis/batch/v1/" if resource == "jobs" else "/api/v1/"
        if not path.startswith(expected):
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method == "GET" and query.get("watch", "").lower() in ("true", "1"):
                self._count("WATCH", resource)
                return 200, self._watch(resource, ns, query)
            if method == "GET":
                self._count("LIST", resource)
                return 200, self._list(resource, ns, query)
            if method == "POST" and resource == "jobs":
                self._count("CREATE", resource)
                return 201, self._create_job(ns, _json(body))
            raise KubeError(405, "MethodNotAllowed", f"the server does not allow this method on {resource}")
        if sub == "log" and resource == "pods" and method == "GET":
            self._count("LOG", resource)
            return 200, self._log(ns, name, query)
        if sub not in (None, "status"):
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            self._count("GET", resource)
            with self._lock:
                obj = self._objects.get((resource, ns, name))
                if obj is None:
                    raise _not_found(resource, name)
                return 200, copy.deepcopy(obj)
        if method == "PATCH" and resource == "jobs":
            self._count("PATCH", resource)
            kind = headers.get("content-type", "").split(";")[0]
            if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                raise KubeError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include:"
                    f" application/merge-patch+json, application/strategic-merge-patch+json (got {kind})",
                )
            return 200, self._patch_job(ns, name, _json(body))
        if method == "DELETE" and resource in ("jobs", "pods"):
            self._count("DELETE", resource)
            options = _json(body) if body else {}
            policy = query.get("propagationPolicy") or options.get("propagationPolicy")
            return 200, self._delete(resource, ns, name, policy)
        raise KubeError(405, "MethodNotAllowed", f"the server does not allow this method on {resource}")

    def _count(self, verb: str, resource: str) -> None:
        with self._lock:
            key = f"{verb} {resource}"
            self.calls[key] = self.calls.get(key, 0) + 1

    def _list(self, resource: str, ns: str, query: Mapping[str, str]) -> dict[str, Any]:
        selector = query.get("labelSelector", "")
        fields = query.get("fieldSelector", "")
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with self._lock:
            start, list_rv = "", self._last_rv
            if token:
                try:
                    decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                    start, list_rv = decoded["start"], int(decoded["rv"])
                except (ValueError, KeyError, TypeError):
                    raise KubeError(400, "BadRequest", "continue key is not valid: invalid token") from None
                if list_rv < self._compacted:
                    raise KubeError(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result."
                        " You can start a new list without the continue parameter, or use the continue"
                        " token in this response to retrieve the remainder of the results.",
                    )
            try:
                items = [
                    copy.deepcopy(obj)
                    for (res, obj_ns, name), obj in sorted(self._objects.items())
                    if res == resource
                    and obj_ns == ns
                    and name > start
                    and match_labels(selector, obj["metadata"].get("labels") or {})
                    and _match_fields(fields, obj)
                ]
            except ValueError as exc:
                raise KubeError(400, "BadRequest", f"unable to parse requirement: {exc}") from None
            # (A real server serves a continued list from its snapshot at list_rv; objects that
            # changed since are shown as they are now: UNVERIFIED, and harmless for a status poll.)
        kind, version = _KINDS[resource]
        metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]["name"]
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": list_rv, "start": last}).encode()
            ).decode()
            metadata["remainingItemCount"] = rest
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", version)
        return {"kind": f"{kind}List", "apiVersion": version, "metadata": metadata, "items": items}

    def _watch(self, resource: str, ns: str, query: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        selector = query.get("labelSelector", "")
        fields = query.get("fieldSelector", "")
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 1800)
        since = query.get("resourceVersion") or ""
        kind, version = _KINDS[resource]

        def wanted(obj: Mapping[str, Any]) -> bool:
            meta = obj["metadata"]
            return (
                meta.get("namespace") == ns
                and match_labels(selector, meta.get("labels") or {})
                and _match_fields(fields, obj)
            )

        def stream() -> Iterator[dict[str, Any]]:
            deadline = time.monotonic() + timeout
            with self._lock:
                if since in ("", "0"):
                    position = self._last_rv
                    initial = [
                        copy.deepcopy(obj)
                        for (res, _, _), obj in sorted(self._objects.items())
                        if res == resource and wanted(obj)
                    ]
                else:
                    position = int(since)
                    initial = []
                    if position + 1 < self._compacted:
                        expired = KubeError(
                            410, "Expired", f"too old resource version: {position} ({self._compacted})"
                        )
                        initial = None
            if initial is None:
                yield {"type": "ERROR", "object": expired.status()}
                return
            for obj in initial:
                yield {"type": "ADDED", "object": {"kind": kind, "apiVersion": version, **obj}}
            last_bookmark = time.monotonic()
            while not self._stopping.is_set():
                with self._changed:
                    pending = self._since(position)
                    if not pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        self._changed.wait(min(left, self.bookmark_interval, TICK * 10))
                        pending = self._since(position)
                    if position + 1 < self._compacted and not pending:
                        expired = KubeError(
                            410, "Expired", f"too old resource version: {position} ({self._compacted})"
                        )
                        yield {"type": "ERROR", "object": expired.status()}
                        return
                    current = self._last_rv
                for rv, change, res, obj in pending:
                    position = rv
                    if res == resource and wanted(obj):
                        yield {"type": change, "object": {"kind": kind, "apiVersion": version, **obj}}
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                    last_bookmark = time.monotonic()
                    position = max(position, current)
                    yield {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": kind,
                            "apiVersion": version,
                            "metadata": {"resourceVersion": str(position)},
                        },
                    }
                if time.monotonic() >= deadline:
                    return

        return stream()

    def _validate_job(self, ns: str, job: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        meta = job.get("metadata") or {}
        name = meta.get("name") or ""
        if not _DNS_LABEL.match(name) or len(name) > 63:
            problems.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower'
                    " case alphanumeric characters or '-', and must start and end with an"
                    " alphanumeric character",
                )
            )
        if meta.get("namespace") not in (None, ns):
            problems.append(
                (
                    "metadata.namespace",
                    "Invalid value: the namespace of the object does not match the namespace on the request",
                )
            )
        for _key, value in (meta.get("labels") or {}).items():
            if not _LABEL_VALUE.match(str(value)) or len(str(value)) > 63:
                problems.append(
                    (
                        "metadata.labels",
                        f'Invalid value: "{value}": a valid label must be an empty string'
                        " or consist of alphanumeric characters",
                    )
                )
        spec = job.get("spec") or {}
        template = (spec.get("template") or {}).get("spec") or {}
        policy = template.get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            problems.append(
                (
                    "spec.template.spec.restartPolicy",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                )
            )
        containers = template.get("containers") or []
        if not containers:
            problems.append(("spec.template.spec.containers", "Required value"))
        names: set[str] = set()
        for where, group in (
            ("initContainers", template.get("initContainers") or []),
            ("containers", containers),
        ):
            for i, container in enumerate(group):
                cname = container.get("name") or ""
                if not _DNS_LABEL.match(cname):
                    problems.append((f"spec.template.spec.{where}[{i}].name", f'Invalid value: "{cname}"'))
                if cname in names:
                    problems.append((f"spec.template.spec.{where}[{i}].name", f'Duplicate value: "{cname}"'))
                names.add(cname)
                if not container.get("image"):
                    problems.append((f"spec.template.spec.{where}[{i}].image", "Required value"))
                modelled = {"secretKeyRef", "configMapKeyRef"}
                for j, env in enumerate(container.get("env") or []):
                    source = env.get("valueFrom")
                    if source is not None and (len(source) != 1 or not set(source) <= modelled):
                        problems.append(
                            (
                                f"spec.template.spec.{where}[{i}].env[{j}].valueFrom",
                                f"{', '.join(sorted(source))}: only secretKeyRef and configMapKeyRef are"
                                " modelled by the fake",
                            )
                        )
                for j, env in enumerate(container.get("envFrom") or []):
                    if len(set(env) & {"secretRef", "configMapRef"}) != 1 or set(env) - {
                        "secretRef",
                        "configMapRef",
                    }:
                        problems.append(
                            (
                                f"spec.template.spec.{where}[{i}].envFrom[{j}]",
                                "one of secretRef or configMapRef (prefix is not modelled by the fake)",
                            )
                        )
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
            problems.append(
                ("spec.activeDeadlineSeconds", f"Invalid value: {deadline}: must be greater than 0")
            )
        if spec.get("podFailurePolicy") and policy != "Never":
            problems.append(
                ("spec.podFailurePolicy", "Invalid value: only allowed when restartPolicy is Never")
            )
        return problems

    def _create_job(self, ns: str, job: dict[str, Any]) -> dict[str, Any]:
        name = (job.get("metadata") or {}).get("name", "")
        problems = self._validate_job(ns, job)
        if problems:
            raise _invalid("Job", name, problems)
        with self._lock:
            if ("jobs", ns, name) in self._objects:
                raise KubeError(
                    409,
                    "AlreadyExists",
                    f'jobs.batch "{name}" already exists',
                    name=name,
                    kind="jobs",
                    group="batch",
                )
            uid = str(uuid.uuid4())
            meta = job.setdefault("metadata", {})
            meta.update(namespace=ns, uid=uid, creationTimestamp=_now(), generation=1)
            meta.setdefault("labels", {})
            spec = job.setdefault("spec", {})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("suspend", False)
            spec.setdefault("completionMode", "NonIndexed")
            for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
                for pattern in rule.get("onPodConditions") or []:
                    pattern.setdefault("status", "True")  # the server's default, required by the models
            controller = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            template = spec.setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(controller)
            job["status"] = {}
            job["kind"], job["apiVersion"] = "Job", "batch/v1"
            self._put("jobs", job, new=True)
            answer = copy.deepcopy(job)
        self._spawn(lambda: self._control(ns, name, uid), f"job-{name}")
        return answer

    def _patch_job(self, ns: str, name: str, patch: Any) -> dict[str, Any]:
        if not isinstance(patch, dict):
            raise KubeError(400, "BadRequest", "the body of the request is not a JSON object")
        with self._lock:
            job = self._objects.get(("jobs", ns, name))
            if job is None:
                raise _not_found("jobs", name)
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_rv is not None and wanted_rv != job["metadata"]["resourceVersion"]:
                raise KubeError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on jobs.batch "{name}": the object has been modified;'
                    " please apply your changes to the latest version and try again",
                    name=name,
                    kind="jobs",
                    group="batch",
                )
            updated = _merge_patch(job, patch)
            for frozen in ("uid", "name", "namespace", "creationTimestamp"):
                updated["metadata"][frozen] = job["metadata"][frozen]
            if updated["spec"].get("template") != job["spec"].get("template"):
                raise _invalid("Job", name, [("spec.template", "Invalid value: field is immutable")])
            updated["status"] = job["status"]
            self._put("jobs", updated)
            return copy.deepcopy(updated)

    def _delete(self, resource: str, ns: str, name: str, policy: str | None) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((resource, ns, name))
            if obj is None:
                raise _not_found(resource, name)
            self._remove(resource, ns, name)
            pods = []
            if resource == "pods":
                pods = [self._pods.pop((ns, name))] if (ns, name) in self._pods else []
            elif (policy or "Orphan") in ("Background", "Foreground"):
                pods = [p for p in self._pods.values() if p.namespace == ns and p.job == name]
                for pod in pods:
                    self._pods.pop((ns, pod.name), None)
                    self._remove("pods", ns, pod.name)
        for pod in pods:
            self._kill_pod(pod)
        return (
            obj
            if resource == "pods"
            else {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": "batch", "kind": "jobs", "uid": obj["metadata"]["uid"]},
            }
        )

    def _log(self, ns: str, name: str, query: Mapping[str, str]) -> str:
        with self._lock:
            pod = self._pods.get((ns, name))
            if pod is None or ("pods", ns, name) not in self._objects:
                raise _not_found("pods", name)
            spec = self._objects[("pods", ns, name)]["spec"]
            names = [c["name"] for c in spec["containers"]]
            container = query.get("container") or (names[0] if len(names) == 1 else None)
            if container is None:
                raise KubeError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: {names}",
                )
            record = pod.containers.get(container)
            all_names = names + [c["name"] for c in spec.get("initContainers") or []]
            if container not in all_names:
                raise KubeError(400, "BadRequest", f"container {container} is not valid for pod {name}")
            if record is None or record.run is None:
                raise KubeError(
                    400,
                    "BadRequest",
                    f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
                )
            lines = list(record.lines)
        if query.get("tailLines"):
            lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
        stamp = query.get("timestamps", "").lower() in ("true", "1")
        text = "".join(
            (datetime.fromtimestamp(line.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ ") if stamp else "")
            + line.text
            + "\n"
            for line in lines
        )
        if query.get("limitBytes"):
            text = text.encode()[: int(query["limitBytes"])].decode("utf-8", "replace")
        return text

    # -- the job controller, scheduler and kubelet

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # a fake's bug must fail the test that used it
                traceback.print_exc(file=sys.stderr)
                self._errors.append(exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _job_status(self, ns: str, name: str, uid: str, change: Callable[[dict[str, Any]], None]) -> bool:
        """Apply ``change`` to the job's status (caller holds the lock); False if the job is gone."""
        job = self._objects.get(("jobs", ns, name))
        if job is None or job["metadata"]["uid"] != uid:
            return False
        change(job["status"])
        self._put("jobs", job)
        return True

    def _control(self, ns: str, name: str, uid: str) -> None:
        """The job controller for one Job: one pod at a time, until the Job is finished or gone."""
        pod: _Pod | None = None
        poke = threading.Condition(self._lock)  # woken by changes to this Job and its pods only
        with self._lock:
            self._pokes[(ns, name)] = poke
        started_at: float | None = None
        while not self._stopping.is_set():
            with self._lock:
                job = self._objects.get(("jobs", ns, name))
                if job is None or job["metadata"]["uid"] != uid:
                    return
                spec, status = job["spec"], job["status"]
                conditions = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
                if conditions & {"Complete", "Failed"}:
                    break
                if spec.get("suspend"):
                    if pod is not None:
                        self._pods.pop((ns, pod.name), None)
                        self._remove("pods", ns, pod.name)
                        victim, pod = pod, None
                        threading.Thread(target=self._kill_pod, args=(victim,), daemon=True).start()
                    if "Suspended" not in conditions:

                        def suspend(s: dict[str, Any]) -> None:
                            s["active"] = 0
                            s.pop("startTime", None)
                            s.pop("ready", None)
                            s["conditions"] = [
                                c for c in s.get("conditions") or [] if c["type"] != "Suspended"
                            ] + [_condition("Suspended", "JobSuspended", "Job suspended")]

                        self._job_status(ns, name, uid, suspend)
                        started_at = None
                    poke.wait(IDLE)
                    continue
                if "Suspended" in conditions:
                    self._job_status(
                        ns,
                        name,
                        uid,
                        lambda s: s.update(
                            conditions=[c for c in s.get("conditions") or [] if c["type"] != "Suspended"]
                        ),
                    )
                if started_at is None:
                    started_at = time.monotonic()
                    self._job_status(ns, name, uid, lambda s: s.update(startTime=_now()))
                deadline = spec.get("activeDeadlineSeconds")
                if deadline is not None and time.monotonic() - started_at > deadline:
                    victim, pod = pod, None
                    if victim is not None:
                        self._pods.pop((ns, victim.name), None)
                        self._remove("pods", ns, victim.name)
                        threading.Thread(target=self._kill_pod, args=(victim,), daemon=True).start()
                    self._finish(
                        ns,
                        name,
                        uid,
                        False,
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        failed=1 if victim else 0,
                    )
                    break
                if pod is None:
                    if ns in self.quota_exceeded:
                        self._event(
                            ns,
                            job,
                            "FailedCreate",
                            f'Error creating: pods "{name}-x" is forbidden: exceeded quota:'
                            " compute-resources, requested: pods=1, used: pods=1, limited: pods=1",
                        )
                        poke.wait(TICK * 10)
                        continue
                    pod = self._create_pod(ns, job)
                    self._job_status(ns, name, uid, lambda s: s.update(active=1, ready=0))
                    self._spawn(lambda p=pod: self._kubelet(p), f"pod-{pod.name}")
                    continue
                pod_obj = self._objects.get(("pods", ns, pod.name))
                phase = (pod_obj or {}).get("status", {}).get("phase")
                if pod_obj is None:
                    pod = None  # deleted by someone: the controller makes another (counts nothing here)
                    continue
                ready = 1 if phase == "Running" else 0
                if phase not in ("Succeeded", "Failed") and status.get("ready", 0) != ready:
                    self._job_status(ns, name, uid, lambda s, ready=ready: s.update(ready=ready))
                if phase in ("Succeeded", "Failed"):
                    if phase == "Succeeded":
                        self._finish(
                            ns,
                            name,
                            uid,
                            True,
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        )
                        break
                    verdict = _pod_failure_policy(spec.get("podFailurePolicy"), pod_obj, ns)
                    if verdict is not None and verdict[0] == "Ignore":
                        pod = None
                        continue
                    if verdict is not None and verdict[0] == "FailJob":
                        self._finish(ns, name, uid, False, "PodFailurePolicy", verdict[1], failed=1)
                        break
                    if spec.get("backoffLimit", 6) < 1:
                        self._finish(
                            ns,
                            name,
                            uid,
                            False,
                            "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit",
                            failed=1,
                        )
                        break
                    pod = None  # backoffLimit > 0: another pod (the runner never asks for it)
                    continue
                left = IDLE if deadline is None else deadline - (time.monotonic() - started_at) + TICK
                poke.wait(min(IDLE, max(left, TICK)))
        # ttlSecondsAfterFinished: the TTL controller deletes the finished Job and its pods.
        while not self._stopping.is_set():
            with self._lock:
                job = self._objects.get(("jobs", ns, name))
                if job is None or job["metadata"]["uid"] != uid:
                    return
                ttl = job["spec"].get("ttlSecondsAfterFinished")
                ended = job["status"].get("_ended")
                if ttl is not None and ended is not None and time.monotonic() - ended >= ttl:
                    self._delete_locked_job(ns, name)
                    return
                left = IDLE if ttl is None or ended is None else ttl - (time.monotonic() - ended)
                poke.wait(min(IDLE, max(left, TICK)))

    def _delete_locked_job(self, ns: str, name: str) -> None:
        self._remove("jobs", ns, name)
        for pod in [p for p in self._pods.values() if p.namespace == ns and p.job == name]:
            self._pods.pop((ns, pod.name), None)
            self._remove("pods", ns, pod.name)
            threading.Thread(target=self._kill_pod, args=(pod,), daemon=True).start()

    def _finish(
        self, ns: str, name: str, uid: str, ok: bool, reason: str, message: str, *, failed: int = 0
    ) -> None:
        def change(s: dict[str, Any]) -> None:
            s["active"] = 0
            s["ready"] = 0
            if ok:
                s["succeeded"] = 1
                s["completionTime"] = _now()
                first, last = "SuccessCriteriaMet", "Complete"
            else:
                s["failed"] = s.get("failed", 0) + failed
                first, last = "FailureTarget", "Failed"
            s["conditions"] = [c for c in s.get("conditions") or [] if c["type"] != "Suspended"] + [
                _condition(first, reason, message),
                _condition(last, reason, message),
            ]
            s["_ended"] = time.monotonic()

        self._job_status(ns, name, uid, change)
        # "_ended" is the fake's own bookkeeping, never shown: stripped at the seam (_public).

    def _event(self, ns: str, job: Mapping[str, Any], reason: str, message: str) -> None:
        key = ("events", ns, f"{job['metadata']['name']}.{reason.lower()}")
        if key in self._objects:
            return
        event = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": key[2], "namespace": ns, "creationTimestamp": _now()},
            "involvedObject": {
                "kind": "Job",
                "namespace": ns,
                "name": job["metadata"]["name"],
                "uid": job["metadata"]["uid"],
                "apiVersion": "batch/v1",
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "job-controller"},
            "count": 1,
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
        }
        self._put("events", event, new=True)

    def _create_pod(self, ns: str, job: Mapping[str, Any]) -> _Pod:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name'][:57]}-{uuid.uuid4().hex[:5]}"
        pod_obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                **copy.deepcopy(template.get("metadata") or {}),
                "name": name,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        pod_obj["spec"].setdefault("serviceAccountName", "default")
        pod = _Pod(ns, name, job["metadata"]["name"], self.workdir / "pods" / f"{ns}-{name}")
        pod.directory.mkdir(parents=True)
        self._pods[(ns, name)] = pod
        self._put("pods", pod_obj, new=True)
        return pod

    def _pod_update(self, pod: _Pod, change: Callable[[dict[str, Any]], None]) -> bool:
        with self._lock:
            obj = self._objects.get(("pods", pod.namespace, pod.name))
            if obj is None or pod.deleted:
                return False
            change(obj["status"])
            self._put("pods", obj)
            return True

    def _kubelet(self, pod: _Pod) -> None:
        """Schedule, pull, run the init containers in order, then the containers together."""
        with self._lock:
            obj = self._objects.get(("pods", pod.namespace, pod.name))
            if obj is None:
                return
            spec = copy.deepcopy(obj["spec"])
        selector = spec.get("nodeSelector") or {}
        if any(self.node_labels.get(k) != v for k, v in selector.items()):
            message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            self._pod_update(
                pod,
                lambda s: s.update(
                    conditions=[_condition("PodScheduled", "Unschedulable", message, status="False")]
                ),
            )
            return  # stays Pending until deleted
        init = spec.get("initContainers") or []
        main = spec["containers"]
        labels = (obj["metadata"].get("labels") or {}) if obj else {}
        if any(match_labels(selector, labels) for selector in list(self.held)):
            self._pod_update(
                pod,
                lambda s: s.update(
                    phase="Running",
                    startTime=_now(),
                    conditions=[_condition("PodScheduled", None, None), _condition("Ready", None, None)],
                    containerStatuses=[
                        {
                            **_waiting(c, ""),
                            "state": {"running": {"startedAt": _now()}},
                            "ready": True,
                            "started": True,
                        }
                        for c in main
                    ],
                ),
            )
            return
        self._pod_update(
            pod,
            lambda s: s.update(
                conditions=[_condition("PodScheduled", None, None)],
                hostIP="10.0.0.1",
                podIP="10.1.0.7",
                startTime=_now(),
                initContainerStatuses=[_waiting(c, "PodInitializing") for c in init] or None,
                containerStatuses=[
                    _waiting(c, "PodInitializing" if init else "ContainerCreating") for c in main
                ],
            ),
        )
        unconfigurable = [
            (c, problem) for c in (*init, *main) if (problem := self._config_error(pod.namespace, c))
        ]
        if unconfigurable and all(c["image"] in self.images for c in (*init, *main)):
            bad_container, problem = unconfigurable[0]

            def config_error(s: dict[str, Any]) -> None:
                key = "initContainerStatuses" if bad_container in init else "containerStatuses"
                for status in s.get(key) or []:
                    if status["name"] == bad_container["name"]:
                        status["state"] = {
                            "waiting": {"reason": "CreateContainerConfigError", "message": problem}
                        }

            self._pod_update(pod, config_error)
            return  # the kubelet retries for ever; the pod stays Pending
        missing = [c for c in (*init, *main) if c["image"] not in self.images]
        if missing:
            bad = missing[0]
            for reason in ("ErrImagePull", "ImagePullBackOff"):
                message = (
                    f'Back-off pulling image "{bad["image"]}"'
                    if reason == "ImagePullBackOff"
                    else (
                        f'failed to pull and unpack image "{bad["image"]}": pull access denied,'
                        " repository does not exist or may require authorization"
                    )
                )

                def waiting(s: dict[str, Any], reason: str = reason, message: str = message) -> None:
                    key = "initContainerStatuses" if bad in init else "containerStatuses"
                    for status in s.get(key) or []:
                        if status["name"] == bad["name"]:
                            status["state"] = {"waiting": {"reason": reason, "message": message}}

                self._pod_update(pod, waiting)
                time.sleep(0.2)  # the kubelet's back-off between the two reasons (a state, not a test wait)
            return  # never fails on its own: Kubernetes keeps backing off
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for i, container in enumerate(init):
            code = self._run_container(pod, container, volumes, "initContainerStatuses", i)
            if code is None:
                return
            if code != 0:
                self._pod_update(
                    pod,
                    lambda s: s.update(
                        phase="Failed",
                        conditions=[
                            *s.get("conditions", []),
                            _condition("Initialized", "PodFailed", None, status="False"),
                        ],
                    ),
                )
                return
        self._pod_update(
            pod,
            lambda s: s.update(
                phase="Running", conditions=[*s.get("conditions", []), _condition("Initialized", None, None)]
            ),
        )
        done = threading.Barrier(len(main) + 1)
        codes: dict[str, int | None] = {}

        def run(i: int, container: Mapping[str, Any]) -> None:
            codes[container["name"]] = self._run_container(pod, container, volumes, "containerStatuses", i)
            done.wait()

        for i, container in enumerate(main):
            self._spawn(lambda i=i, c=container: run(i, c), f"container-{pod.name}-{container['name']}")
        done.wait()
        if any(code is None for code in codes.values()):
            return
        phase = "Succeeded" if all(code == 0 for code in codes.values()) else "Failed"

        def end(s: dict[str, Any]) -> None:
            s["phase"] = phase
            if pod.disrupted:
                s["conditions"] = [
                    *s.get("conditions", []),
                    _condition("DisruptionTarget", pod.disrupted, "Eviction API: evicting"),
                ]

        self._pod_update(pod, end)

    def _config_error(self, namespace: str, container: Mapping[str, Any]) -> str | None:
        """The kubelet's message when a Secret or ConfigMap the container's env names is missing."""
        refs: list[tuple[str, str, str | None]] = []
        for entry in container.get("env") or []:
            source = entry.get("valueFrom") or {}
            for kind in ("secretKeyRef", "configMapKeyRef"):
                if kind in source:
                    refs.append((kind, source[kind]["name"], source[kind].get("key")))
        for entry in container.get("envFrom") or []:
            for kind in ("secretRef", "configMapRef"):
                if kind in entry:
                    refs.append((kind, entry[kind]["name"], None))
        for kind, name, key in refs:
            noun = "secret" if kind.startswith("secret") else "configmap"
            data = self.secrets.get((namespace, name))
            if data is None:
                return f'{noun} "{name}" not found'
            if key is not None and key not in data:
                return f"couldn't find key {key} in {noun.capitalize()} {namespace}/{name}"
        return None

    def _env_value(self, namespace: str, entry: Mapping[str, Any], substitute: Callable[[str], str]) -> str:
        source = entry.get("valueFrom") or {}
        for kind in ("secretKeyRef", "configMapKeyRef"):
            if kind in source:
                return self.secrets[(namespace, source[kind]["name"])][source[kind]["key"]]
        return substitute(entry.get("value", ""))

    def _run_container(
        self, pod: _Pod, container: Mapping[str, Any], volumes: Mapping[str, Any], key: str, index: int
    ) -> int | None:
        """Run one container to its end; its exit code, or None if the pod went away first."""
        record = _Container(container["name"])
        paths: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None or "emptyDir" not in volume:
                raise AssertionError(f"the fake models emptyDir volumes only: {mount['name']}")
            local = pod.directory / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            paths[mount["mountPath"]] = str(local)
        message_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_LOG
        record.message_file = pod.directory / f"termination-{container['name']}"
        record.message_file.touch()
        paths[message_path] = str(record.message_file)
        substitute = _substitution(paths)
        argv = [substitute(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        env = dict(self.images[container["image"]])
        for entry in container.get("envFrom") or []:  # first: env's own entries win
            ref = entry.get("secretRef") or entry.get("configMapRef") or {}
            env.update(self.secrets[(pod.namespace, ref["name"])])
        env.update(
            {e["name"]: self._env_value(pod.namespace, e, substitute) for e in container.get("env") or []}
        )
        finished = threading.Event()

        def on_exit(code: int) -> None:
            record.exit_code = code
            finished.set()

        with self._lock:
            if pod.deleted:
                return None
            pod.containers[record.name] = record
            record.started = _now()
            if pod.disrupted is None:
                record.run = self.executor.start(
                    f"{pod.namespace}/{pod.name}/{record.name}",
                    argv,
                    env,
                    on_line=record.lines.append,
                    on_exit=on_exit,
                )
            else:  # evicted before this container started (a sidecar was first): it never runs
                on_exit(137)

        def running(s: dict[str, Any]) -> None:
            s[key][index]["state"] = {"running": {"startedAt": record.started}}
            s[key][index].update(started=True, ready=True)

        self._pod_update(pod, running)
        finished.wait()
        record.finished = _now()
        code = record.exit_code if record.exit_code is not None else 1
        if pod.deleted:
            return None
        reason = record.reason or ("Completed" if code == 0 else "Error")
        message = (
            record.message_file.read_text(errors="replace")[:4096] if record.message_file.exists() else ""
        )

        def terminated(s: dict[str, Any]) -> None:
            state: dict[str, Any] = {
                "exitCode": code,
                "reason": reason,
                "startedAt": record.started,
                "finishedAt": record.finished,
            }
            if message:
                state["message"] = message
            s[key][index]["state"] = {"terminated": state}
            s[key][index].update(started=False, ready=False)

        self._pod_update(pod, terminated)
        return code

    def _kill_pod(self, pod: _Pod) -> None:
        with self._lock:
            if pod.disrupted is None:
                pod.deleted = True
            runs = [c.run for c in pod.containers.values() if c.run is not None]
        for run in runs:
            run.kill(signals.SIGKILL)


def _condition(kind: str, reason: str | None, message: str | None, *, status: str = "True") -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "status": status, "lastTransitionTime": _now()}
    if kind not in ("PodScheduled", "Initialized", "DisruptionTarget"):
        found["lastProbeTime"] = _now()
    if reason:
        found["reason"] = reason
    if message:
        found["message"] = message
    return found


def _waiting(container: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"waiting": {"reason": reason}},
    }


def _pod_failure_policy(
    policy: Mapping[str, Any] | None, pod: Mapping[str, Any], ns: str
) -> tuple[str, str] | None:
    """(action, message) of the first rule the failed pod matches, as the job controller words it."""
    if not policy:
        return None
    status = pod.get("status") or {}
    name = pod["metadata"]["name"]
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule["action"]
        exits = rule.get("onExitCodes")
        if exits:
            for container in status.get("containerStatuses") or []:
                if exits.get("containerName") not in (None, container["name"]):
                    continue
                code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code is None or code == 0:
                    continue
                hit = code in exits["values"]
                if hit == (exits["operator"] == "In"):
                    return action, (
                        f"Container {container['name']} for pod {ns}/{name} failed with exit code {code}"
                        f" matching {action} rule at index {index}"
                    )
        for wanted in rule.get("onPodConditions") or []:
            for condition in status.get("conditions") or []:
                if condition["type"] == wanted["type"] and condition["status"] == wanted.get(
                    "status", "True"
                ):
                    return (
                        action,
                        f"Pod {ns}/{name} has condition {wanted['type']}"
                        f" matching {action} rule at index {index}",
                    )
    return None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError as exc:
        raise KubeError(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from None


def _public(doc: Any) -> Any:
    """The document without the fake's own bookkeeping (status keys starting with ``_``)."""
    if isinstance(doc, dict):
        return {k: _public(v) for k, v in doc.items() if not k.startswith("_")}
    if isinstance(doc, list):
        return [_public(v) for v in doc]
    return doc


def _resources(group_version: str, entries: list[tuple[str, str, bool, list[str]]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": name,
                "singularName": "" if "/" in name else name[:-1],
                "namespaced": namespaced,
                "kind": kind,
                "verbs": verbs,
            }
            | ({"shortNames": ["po"]} if name == "pods" else {})
            | ({"categories": ["all"]} if name in ("pods", "jobs") else {})
            for name, kind, namespaced, verbs in entries
        ],
    }


_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_DISCOVERY: dict[str, Any] = {
    "/version": {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-squall-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64",
    },
    "/api": {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "batch",
                "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": _resources(
        "v1",
        [
            ("namespaces", "Namespace", False, ["get"]),
            ("pods", "Pod", True, _VERBS),
            ("pods/log", "Pod", True, ["get"]),
            ("events", "Event", True, ["create", "delete", "get", "list", "patch", "update", "watch"]),
        ],
    ),
    "/apis/batch/v1": _resources(
        "batch/v1", [("jobs", "Job", True, _VERBS), ("jobs/status", "Job", True, ["get", "patch", "update"])]
    ),
}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeKubernetes
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go in two writes: without this, Nagle and delayed ACKs cost 40 ms a call.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            code, doc = self.owner.serve(self.command, self.path, headers, body)
        except KubeError as exc:
            code, doc = exc.code, exc.status()
        except Exception as exc:  # a fake's bug: an honest 500 and a failed test
            traceback.print_exc(file=sys.stderr)
            self.owner._errors.append(exc)
            code, doc = 500, KubeError(500, "InternalError", f"fake bug: {exc}").status()
        if isinstance(doc, Iterator):
            self._stream(doc)
            return
        if isinstance(doc, str):
            payload, kind = doc.encode(), "text/plain"
        else:
            payload, kind = json.dumps(_public(doc)).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        # The connection closes after the stream: said up front, so the client does not pool it
        # and send its next request on a socket the server is closing (RemoteDisconnected under load).
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):
            for event in events:
                line = json.dumps(_public(event)).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        self.close_connection = True

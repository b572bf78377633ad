"""The fake Kubernetes API server (tests/emulators/kubernetes.py), checked by two independent clients.

The official ``kubernetes`` Python client parses every answer into its own models (a field of
the wrong shape fails there), and ``kubectl`` (``get``, ``describe``, ``logs``, ``delete``)
reads the same objects as a Go client. What the runner relies on is pinned here: Status error
bodies, 409 on a second create, label selectors, ``limit``/``continue``, a watch with bookmarks
and 410 after compaction, suspend, the deadline and the pod failure policy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runners.testing import wait_until
from tests.emulators.executor import MINIMAL_PATH
from tests.emulators.kubernetes import FakeKubernetes, match_labels

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

NS = "squall"
IMAGE = "busybox:1.36"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKubernetes]:
    with FakeKubernetes(tmp_path_factory.mktemp("k8s"), bookmark_interval=0.2) as server:
        server.images[IMAGE] = {"PATH": MINIMAL_PATH}
        yield server


@pytest.fixture(scope="module")
def batch(fake: FakeKubernetes) -> Any:
    return client.BatchV1Api(fake.api_client())


@pytest.fixture(scope="module")
def core(fake: FakeKubernetes) -> Any:
    return client.CoreV1Api(fake.api_client())


@pytest.fixture(scope="module")
def kubectl(fake: FakeKubernetes, tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")
    config = fake.kubeconfig(tmp_path_factory.mktemp("kubeconfig") / "config")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [binary, f"--kubeconfig={config}", f"--namespace={NS}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    return run


def job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "squall-fake-test", "case": name}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}],
                }
            },
            **spec,
        },
    }


def condition(batch: Any, name: str) -> str | None:
    found = batch.read_namespaced_job(name, NS)
    for c in found.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return f"{c.type}:{c.reason}"
    return None


def wait_condition(batch: Any, name: str, deadline: float = 30.0) -> str:
    seen: list[str] = []

    def ended() -> bool:
        found = condition(batch, name)
        seen[:] = [found] if found else []
        return found is not None

    wait_until(ended, deadline, f"job {name} never finished")
    return seen[0]


def test_discovery_and_a_job_run_as_kubectl_sees_them(batch: Any, core: Any, kubectl: Any) -> None:
    created = batch.create_namespaced_job(NS, job("hello", "echo hello; echo oops >&2"))
    assert isinstance(created, client.V1Job) and created.metadata.uid
    assert wait_condition(batch, "hello") == "Complete:CompletionsReached"
    pods = core.list_namespaced_pod(NS, label_selector="batch.kubernetes.io/job-name=hello").items
    assert len(pods) == 1 and pods[0].status.phase == "Succeeded"
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    # stdout and stderr are read by two threads of the executor: their relative order is not
    # kept (a real runtime orders them by write time), so the lines are compared as a set.
    log = core.read_namespaced_pod_log(pods[0].metadata.name, NS, container="main")
    assert log.endswith("\n") and sorted(log.splitlines()) == ["hello", "oops"]
    # kubectl, a second client, reads the same objects
    assert "hello" in kubectl("get", "jobs").stdout
    described = kubectl("describe", "job", "hello").stdout
    assert "Pods Statuses:" in described and "1 Succeeded" in described, described
    assert sorted(kubectl("logs", pods[0].metadata.name, "-c", "main").stdout.splitlines()) == [
        "hello",
        "oops",
    ]
    listed = json.loads(kubectl("get", "pods", "-l", "job-name=hello", "-o", "json").stdout)
    assert [p["metadata"]["name"] for p in listed["items"]] == [pods[0].metadata.name]
    kubectl("delete", "job", "hello", "--cascade=background", "--wait=false")
    with pytest.raises(ApiException) as gone:
        batch.read_namespaced_job("hello", NS)
    assert gone.value.status == 404
    assert core.list_namespaced_pod(NS, label_selector="job-name=hello").items == []


def test_errors_are_status_bodies(batch: Any, kubectl: Any) -> None:
    batch.create_namespaced_job(NS, job("twice", "true"))
    with pytest.raises(ApiException) as again:
        batch.create_namespaced_job(NS, job("twice", "true"))
    status = json.loads(again.value.body)
    assert (again.value.status, status["kind"], status["reason"]) == (409, "Status", "AlreadyExists")
    assert status["details"] == {"name": "twice", "group": "batch", "kind": "jobs"}
    bad = job("Bad_Name", "true")
    with pytest.raises(ApiException) as invalid:
        batch.create_namespaced_job(NS, bad)
    body = json.loads(invalid.value.body)
    assert (invalid.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    missing = kubectl("get", "job", "no-such-job", check=False)
    assert missing.returncode != 0 and 'jobs.batch "no-such-job" not found' in missing.stderr


def test_label_selectors() -> None:
    labels = {"app": "squall", "tier": "batch"}
    assert match_labels("app=squall,tier in (batch, web)", labels)
    assert match_labels("app==squall,!missing,tier", labels)
    assert not match_labels("app!=squall", labels)
    assert not match_labels("tier notin (batch)", labels)
    assert match_labels("other notin (x)", labels)  # notin holds when the key is absent


def test_list_pages_with_limit_and_continue_and_expires_after_compaction(
    batch: Any, fake: FakeKubernetes
) -> None:
    for i in range(5):
        body = job(f"page-{i}", "true")
        body["metadata"]["labels"]["paging"] = "yes"
        batch.create_namespaced_job(NS, body)
    first = batch.list_namespaced_job(NS, label_selector="paging=yes", limit=2)
    assert len(first.items) == 2 and first.metadata._continue and first.metadata.remaining_item_count == 3
    names = [j.metadata.name for j in first.items]
    token = first.metadata._continue
    while token:
        page = batch.list_namespaced_job(NS, label_selector="paging=yes", limit=2, _continue=token)
        names += [j.metadata.name for j in page.items]
        token = page.metadata._continue
    assert names == [f"page-{i}" for i in range(5)]
    fake.compact()
    with pytest.raises(ApiException) as expired:
        batch.list_namespaced_job(
            NS, label_selector="paging=yes", limit=2, _continue=first.metadata._continue
        )
    assert (expired.value.status, json.loads(expired.value.body)["reason"]) == (410, "Expired")


def test_watch_sends_changes_bookmarks_and_410_after_compaction(batch: Any, fake: FakeKubernetes) -> None:
    listed = batch.list_namespaced_job(NS, label_selector="case=watched")
    since = listed.metadata.resource_version
    batch.create_namespaced_job(NS, job("watched", "echo watched"))
    wait_condition(batch, "watched")
    seen: list[tuple[str, str | None]] = []
    bookmarks = 0
    stream = watch.Watch().stream(
        batch.list_namespaced_job,
        NS,
        label_selector="case=watched",
        resource_version=since,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    )
    for event in stream:
        if event["type"] == "BOOKMARK":
            bookmarks += 1
            continue
        obj = event["object"]
        assert isinstance(obj, client.V1Job)
        done = [c.type for c in obj.status.conditions or [] if c.type == "Complete"]
        seen.append((event["type"], done[0] if done else None))
    assert seen[0] == ("ADDED", None) and seen[-1] == ("MODIFIED", "Complete"), seen
    assert bookmarks >= 1
    fake.compact()
    raw = batch.list_namespaced_job(
        NS, label_selector="case=watched", watch=True, resource_version=since, _preload_content=False
    )
    lines = [json.loads(line) for line in raw.read().decode().splitlines()]
    assert lines[0]["type"] == "ERROR" and lines[0]["object"]["code"] == 410
    assert lines[0]["object"]["reason"] == "Expired"


def test_suspend_deletes_the_pod_and_keeps_the_job(batch: Any, core: Any, fake: FakeKubernetes) -> None:
    batch.create_namespaced_job(NS, job("suspended", "echo up; sleep 60"))
    wait_until(
        lambda: (
            bool(fake.pods_of(NS, "suspended"))
            and (fake.object("pods", NS, fake.pods_of(NS, "suspended")[0]) or {})
            .get("status", {})
            .get("phase")
            == "Running"
        ),
        30,
        "the pod never ran",
    )
    patched = batch.patch_namespaced_job(
        "suspended", NS, {"spec": {"suspend": True}, "metadata": {"annotations": {"why": "cancel"}}}
    )
    assert patched.spec.suspend is True
    wait_until(lambda: fake.pods_of(NS, "suspended") == [], 30, "the pod was not deleted")
    found = batch.read_namespaced_job("suspended", NS)
    assert [c.type for c in found.status.conditions] == ["Suspended"]
    assert found.metadata.annotations == {"why": "cancel"} and not found.status.active
    with pytest.raises(ApiException) as conflict:
        batch.patch_namespaced_job(
            "suspended", NS, {"metadata": {"resourceVersion": "1"}, "spec": {"suspend": True}}
        )
    assert conflict.value.status == 409


def test_deadline_and_pod_failure_policy(batch: Any, fake: FakeKubernetes) -> None:
    batch.create_namespaced_job(NS, job("late", "sleep 60", activeDeadlineSeconds=1))
    assert wait_condition(batch, "late") == "Failed:DeadlineExceeded"
    policy = {
        "rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [0]},
            },
        ]
    }
    batch.create_namespaced_job(NS, job("exit-3", "exit 3", podFailurePolicy=policy))
    assert wait_condition(batch, "exit-3") == "Failed:PodFailurePolicy"
    failed = next(c for c in batch.read_namespaced_job("exit-3", NS).status.conditions if c.type == "Failed")
    assert "failed with exit code 3 matching FailJob rule at index 1" in failed.message
    batch.create_namespaced_job(NS, job("evicted", "sleep 60", podFailurePolicy=policy))
    wait_until(lambda: bool(fake.pods_of(NS, "evicted")), 30, "no pod")
    pod = fake.pods_of(NS, "evicted")[0]
    wait_until(
        lambda: (fake.object("pods", NS, pod) or {})["status"].get("phase") == "Running", 30, "not running"
    )
    fake.evict(NS, pod)
    assert wait_condition(batch, "evicted") == "Failed:PodFailurePolicy"
    failed = next(c for c in batch.read_namespaced_job("evicted", NS).status.conditions if c.type == "Failed")
    assert "has condition DisruptionTarget matching FailJob rule at index 0" in failed.message


def test_an_image_that_cannot_be_pulled_waits_forever_and_unschedulable_stays_pending(
    batch: Any, core: Any, fake: FakeKubernetes
) -> None:
    body = job("no-image", "true")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "no-such/image:1"
    batch.create_namespaced_job(NS, body)

    def waiting_reason(name: str) -> str | None:
        pods = core.list_namespaced_pod(NS, label_selector=f"job-name={name}").items
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    wait_until(lambda: waiting_reason("no-image") == "ImagePullBackOff", 30, "no ImagePullBackOff")
    assert condition(batch, "no-image") is None  # Kubernetes never fails it on its own
    body = job("nowhere", "true")
    body["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "none"}
    batch.create_namespaced_job(NS, body)

    def unschedulable() -> bool:
        pods = core.list_namespaced_pod(NS, label_selector="job-name=nowhere").items
        conditions = (pods[0].status.conditions or []) if pods else []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

    wait_until(unschedulable, 30, "the pod was never marked Unschedulable")


def test_ttl_deletes_a_finished_job(batch: Any, fake: FakeKubernetes) -> None:
    batch.create_namespaced_job(NS, job("short-lived", "true", ttlSecondsAfterFinished=1))
    wait_until(lambda: fake.object("jobs", NS, "short-lived") is None, 30, "the TTL controller kept the job")


def test_init_container_and_shared_empty_dir(batch: Any, core: Any, tmp_path: Path) -> None:
    body = job("shared", "cat /data/in.txt")
    spec = body["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    spec["initContainers"] = [
        {
            "name": "fetch",
            "image": IMAGE,
            "command": ["sh", "-c", "echo staged > /data/in.txt; echo bye > /dev/termination-log"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
    ]
    batch.create_namespaced_job(NS, body)
    assert wait_condition(batch, "shared") == "Complete:CompletionsReached"
    pod = core.list_namespaced_pod(NS, label_selector="job-name=shared").items[0]
    assert pod.status.init_container_statuses[0].state.terminated.message == "bye\n"
    assert core.read_namespaced_pod_log(pod.metadata.name, NS, container="main") == "staged\n"

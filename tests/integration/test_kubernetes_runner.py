"""The Kubernetes runner against the fake API server (tests/emulators/kubernetes.py) and moto S3.

Pods really run: the fake runs each container's command on this machine through the shared
executor, the task's container the shared wrapper, the init container and the sidecar Squall's
tools (``python -m runners.kubernetes.tools``) copying files and the log through moto's S3, as
they would in a cluster. So the whole contract runs, through the fault proxy too (429s with
Kubernetes ``Status`` bodies, a lost create response).
"""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runners.base import Failure, JobHandle, JobSpec, JobState, Runner, RunnerOptionsError, Waitable
from runners.retry import RetryPolicy
from runners.testing import (
    CallCounter,
    RunnerContract,
    count_local_processes,
    read_logs,
    sh,
    wait_state,
    wait_terminal,
    wait_until,
)
from tests.emulators.executor import MINIMAL_PATH
from tests.emulators.fault_proxy import FaultProxy, ProxiedCalls

pytest.importorskip("kubernetes")
boto3 = pytest.importorskip("boto3")
from runners.kubernetes import KubernetesRunner, job_name  # noqa: E402
from tests.emulators.kubernetes import FakeKubernetes  # noqa: E402

FAST_POLICY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
LOG_GRACE = 3.0
IMAGE = "busybox:1.36"
TOOLS = "squall-tools:test"
NS = "squall"
ROOT = Path(__file__).resolve().parents[2]
STATUS_429 = json.dumps(
    {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "too many requests",
        "reason": "TooManyRequests",
        "code": 429,
    }
).encode()


def no_sleep(_seconds: float) -> None:
    """Retry backoff in tests: never really wait."""


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def make_runner(
    url: str, s3_endpoint: str, bucket: str, deployment: str, **defaults: Any
) -> KubernetesRunner:
    """Module level, so a process pool can pickle it: each OS process builds its own runner."""
    return KubernetesRunner(
        defaults={
            "config": {"masterUrl": url},
            "namespace": NS,
            "stagingUri": f"s3://{bucket}/staging",
            "toolsImage": TOOLS,
            "deployment": deployment,
            **defaults,
        },
        tools_env={
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        s3_client=_s3(s3_endpoint),
        policy=FAST_POLICY,
        sleep=no_sleep,
        log_grace=LOG_GRACE,
    )


@dataclass
class K8sEnv:
    fake: FakeKubernetes
    s3_endpoint: str
    bucket: str
    deployment: str = "squall"

    def runner(
        self, *, url: str | None = None, deployment: str | None = None, **defaults: Any
    ) -> KubernetesRunner:
        return make_runner(
            url or self.fake.url, self.s3_endpoint, self.bucket, deployment or self.deployment, **defaults
        )

    def read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(_s3(self.s3_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def k8s_env(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sEnv]:
    bucket = f"squall-{uuid.uuid4().hex[:8]}"
    _s3(moto_server).create_bucket(Bucket=bucket)
    with FakeKubernetes(tmp_path_factory.mktemp("k8s")) as fake:
        fake.images[IMAGE] = {"PATH": MINIMAL_PATH}
        fake.images[TOOLS] = {
            "PATH": f"{Path(sys.executable).parent}:{MINIMAL_PATH}",
            "PYTHONPATH": str(ROOT),
            "HOME": str(tmp_path_factory.mktemp("tools-home")),
        }
        yield K8sEnv(fake, moto_server, bucket)


class TestKubernetesContract(RunnerContract):
    deadline_s = 40.0

    @pytest.fixture(autouse=True)
    def _own_deployment(self, k8s_env: K8sEnv) -> Iterator[None]:
        k8s_env.deployment = f"case-{uuid.uuid4().hex[:10]}"
        yield
        k8s_env.deployment = "squall"

    @pytest.fixture
    def runner(self, k8s_env: K8sEnv) -> Runner:
        return k8s_env.runner()

    @pytest.fixture
    def second_runner(self, k8s_env: K8sEnv) -> Runner:
        return k8s_env.runner()

    @pytest.fixture
    def image(self) -> str:
        return IMAGE

    @pytest.fixture
    def faulty_runner(self, k8s_env: K8sEnv) -> Iterator[Callable[[int], tuple[Runner, CallCounter]]]:
        proxies: list[FaultProxy] = []

        def make(failures: int) -> tuple[Runner, CallCounter]:
            proxy = FaultProxy(k8s_env.fake.url).start()
            proxies.append(proxy)
            if failures:
                proxy.fail_before(
                    "*", "", status=503, times=failures, headers={"Content-Type": "application/json"}
                )
            return k8s_env.runner(url=proxy.endpoint), ProxiedCalls(proxy)

        yield make
        for proxy in proxies:
            proxy.stop()

    @pytest.fixture
    def output_prefix(self, k8s_env: K8sEnv) -> str:
        return f"s3://{k8s_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"

    @pytest.fixture
    def read_uri(self, k8s_env: K8sEnv) -> Callable[[str], bytes]:
        return k8s_env.read

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, k8s_env: K8sEnv) -> Callable[[], Runner]:
        return functools.partial(
            make_runner, k8s_env.fake.url, k8s_env.s3_endpoint, k8s_env.bucket, k8s_env.deployment
        )

    @pytest.fixture
    def lost_response_runner(self, k8s_env: K8sEnv) -> Iterator[Callable[[], Runner]]:
        """The create reaches the fake, which creates the Job; the proxy then drops the response."""
        with FaultProxy(k8s_env.fake.url) as proxy:
            proxy.drop_after("POST", r"/jobs", times=1)
            yield lambda: k8s_env.runner(url=proxy.endpoint)

    @pytest.fixture
    def lagging_runner(self) -> Runner | None:
        pytest.skip(
            "the pod ends only once its stage-out sidecar has copied the log a last time and exited: no "
            "line can arrive after the Job ends"
        )

    @pytest.fixture
    def queued_options(self) -> dict[str, Any]:
        """A node selector no node has: the pod stays Pending, Unschedulable (within pendingTimeout)."""
        return {"nodeSelector": {"squall.dev/pool": "nowhere"}}

    @pytest.fixture
    def unwritable_output_prefix(self) -> str:
        return f"s3://squall-no-such-bucket-{uuid.uuid4().hex[:8]}/outputs/"

    @pytest.fixture
    def failure_cases(self, k8s_env: K8sEnv) -> dict[Failure, Callable[..., JobHandle]]:
        fake = k8s_env.fake

        def config(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """An image the kubelet cannot pull, past configErrorTimeout: the runner stops the Job."""
            spec = make_spec(
                "echo never", image="no-such-registry.example/none:1", options={"configErrorTimeout": 1}
            )
            return submit(runner, spec)

        def unschedulable(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            spec = make_spec(
                "echo never", options={"nodeSelector": {"squall.dev/pool": "nowhere"}, "pendingTimeout": 1}
            )
            return submit(runner, spec)

        def preempted(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            handle = submit(runner, make_spec("echo up; sleep 60"))
            wait_state(runner, handle, {JobState.RUNNING}, self.deadline_s)
            wait_until(lambda: bool(fake.pods_of(NS, handle.data["job"])), self.deadline_s, "no pod")
            fake.evict(NS, fake.pods_of(NS, handle.data["job"])[0])
            return handle

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """Evidence: the Job is gone and Squall left no tombstone for it."""
            handle = submit(runner, make_spec("sleep 30"))
            from kubernetes import client

            client.BatchV1Api(fake.api_client()).delete_namespaced_job(
                handle.data["job"], NS, propagation_policy="Background"
            )
            return handle

        def quota(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """A namespace whose ResourceQuota refuses every pod: no pod past pendingTimeout."""
            fake.quota_exceeded.add("squall-quota")
            return submit(
                runner, make_spec("echo never", options={"namespace": "squall-quota", "pendingTimeout": 1})
            )

        return {
            Failure.QUOTA: quota,
            Failure.CONFIG: config,
            Failure.UNSCHEDULABLE: unschedulable,
            Failure.PREEMPTED: preempted,
            Failure.LOST: lost,
        }


@dataclass
class Throttled:
    url: str
    throttle: Any


@pytest.fixture(scope="module")
def throttled(k8s_env: K8sEnv) -> Iterator[Throttled]:
    """Every 4th API call is a 429 with a Status body, as a busy API server's priority and fairness
    answers."""
    with FaultProxy(k8s_env.fake.url) as proxy:
        throttle = proxy.fail_before(
            "*",
            "",
            status=429,
            body=STATUS_429,
            headers={"Content-Type": "application/json"},
            times=None,
            every=4,
        )
        yield Throttled(proxy.endpoint, throttle)


class TestKubernetesContractThroughFaults(TestKubernetesContract):
    """The same contract with every API call through the throttling proxy."""

    counts_calls = False

    @pytest.fixture
    def runner(self, k8s_env: K8sEnv, throttled: Throttled) -> Runner:
        return k8s_env.runner(url=throttled.url)

    @pytest.fixture
    def second_runner(self, k8s_env: K8sEnv, throttled: Throttled) -> Runner:
        return k8s_env.runner(url=throttled.url)

    @pytest.fixture
    def runner_factory(self, k8s_env: K8sEnv, throttled: Throttled) -> Callable[[], Runner]:
        return functools.partial(
            make_runner, throttled.url, k8s_env.s3_endpoint, k8s_env.bucket, k8s_env.deployment
        )

    def test_the_proxy_really_faults_the_calls(
        self, runner: Runner, throttled: Throttled, make_spec: Any, submit: Any
    ) -> None:
        before = throttled.throttle.applied
        handle = submit(runner, make_spec("echo through"))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert [r.text for r in read_logs(runner, handle, self.deadline_s)] == ["through"]
        assert throttled.throttle.applied > before


# -- beyond the contract


def _spec(script: str, **fields: Any) -> JobSpec:
    fields.setdefault("name", f"k8s-{uuid.uuid4().hex[:12]}")
    fields.setdefault("image", IMAGE)
    return JobSpec(command=sh(script), **fields)


def test_the_job_is_what_the_issue_asks(k8s_env: K8sEnv) -> None:
    """backoffLimit 0, restartPolicy Never, the deadline from the timeout, the pod failure policy."""
    runner = k8s_env.runner(deployment="shape")
    handle = runner.submit(_spec("echo shaped", timeout=timedelta(seconds=90), output_prefix=None))
    job = k8s_env.fake.object("jobs", NS, handle.data["job"])
    assert job is not None
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 90)
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert {r["onExitCodes"]["containerName"] for r in rules[1:]} == {"main", "squall-stage-out"}
    assert wait_terminal(runner, handle).state is JobState.SUCCEEDED


def test_options_are_validated_by_name(k8s_env: K8sEnv) -> None:
    runner = k8s_env.runner()
    cases = {
        "ttlSecondsAfterFinished": {"ttlSecondsAfterFinished": 60},
        "config": {"config": {"masterUrl": "http://10.0.0.1", "oauthToken": "secret"}},
        "podSpec": {"podSpec": {"containers": []}},
        "containerSpec": {"containerSpec": {"image": "x"}},
        "resume": {"resume": False},
    }
    for option, options in cases.items():
        with pytest.raises(RunnerOptionsError) as refused:
            runner.submit(_spec("true", options=options))
        assert option in str(refused.value), refused.value


def test_job_names_are_valid_and_deterministic() -> None:
    assert job_name("contract-abc123") == "contract-abc123"
    odd = job_name("My_Flow.Task-" + "x" * 80)
    assert odd == job_name("My_Flow.Task-" + "x" * 80) and len(odd) <= 63
    assert odd[0].isalnum() and odd[-1].isalnum() and odd == odd.lower()


def _spent(fake: FakeKubernetes, before: dict[str, int]) -> dict[str, int]:
    """API calls since ``before``, but the long WATCH requests that other runners of this test
    process keep open on the same fake (their wake-up threads) and renew on their own."""
    return {
        k: v - before.get(k, 0)
        for k, v in fake.calls.items()
        if v != before.get(k, 0) and not k.startswith("WATCH")
    }


def test_500_jobs_reconcile_in_one_list_call_when_running_and_two_when_pending(k8s_env: K8sEnv) -> None:
    """A poll of 500 running Jobs is one LIST of the deployment's Jobs (a page of 500): while every
    Job reports a ready pod, the pods are not listed. 500 pending Jobs add one LIST of pods."""
    fake = k8s_env.fake
    fake.held.add("squall.dev/deployment=bulk")  # shown Running and ready, nothing runs
    try:
        runner = k8s_env.runner(deployment="bulk")
        handles = [runner.submit(_spec("sleep 60", output_prefix=None)) for _ in range(500)]
        wait_until(
            lambda: all(
                ((fake.object("jobs", NS, h.data["job"]) or {}).get("status") or {}).get("ready")
                for h in handles
            ),
            120,
            "not every pod became ready",
        )
        before = dict(fake.calls)
        statuses = k8s_env.runner(deployment="bulk").poll(handles)
        spent = _spent(fake, before)
        assert len(statuses) == 500 and {s.state for s in statuses.values()} == {JobState.RUNNING}
        assert spent == {"LIST jobs": 1}, spent
    finally:
        fake.held.discard("squall.dev/deployment=bulk")
        fake.delete_jobs(NS, "squall.dev/deployment=bulk")
    pending = k8s_env.runner(deployment="bulk-pending", nodeSelector={"squall.dev/pool": "nowhere"})
    try:
        waiting = [pending.submit(_spec("true", output_prefix=None)) for _ in range(500)]
        before = dict(fake.calls)
        statuses = k8s_env.runner(deployment="bulk-pending").poll(waiting)
        spent = _spent(fake, before)
        assert len(statuses) == 500 and {s.state for s in statuses.values()} == {JobState.QUEUED}
        assert spent == {"LIST jobs": 1, "LIST pods": 1}, spent
    finally:
        fake.delete_jobs(NS, "squall.dev/deployment=bulk-pending")


def test_cleanup_leaves_a_tombstone_and_deletes_the_job(k8s_env: K8sEnv) -> None:
    runner = k8s_env.runner(deployment="tomb")
    handle = runner.submit(_spec("exit 4", output_prefix=None))
    assert wait_terminal(runner, handle).exit_code == 4
    runner.cleanup(handle)
    assert k8s_env.fake.object("jobs", NS, handle.data["job"]) is None
    fresh = k8s_env.runner(deployment="tomb").poll([handle])[handle.name]
    assert (fresh.state, fresh.failure, fresh.exit_code) == (JobState.FAILED, Failure.USER, 4)


def test_a_timeout_is_the_deadline(k8s_env: K8sEnv) -> None:
    runner = k8s_env.runner(deployment="late")
    handle = runner.submit(_spec("sleep 60", timeout=timedelta(seconds=1), output_prefix=None))
    status = wait_terminal(runner, handle)
    assert (status.state, status.failure) == (JobState.FAILED, Failure.TIMEOUT)
    assert status.reason == "timed out after 0:00:01"


def test_cost_from_requested_resources_and_the_price_table(k8s_env: K8sEnv) -> None:
    runner = k8s_env.runner(
        deployment="cost",
        resources={"request": {"cpu": "500m", "memory": "2Gi"}},
        pricing={"vcpuHour": 3600.0, "gibHour": 360.0},
    )
    handle = runner.submit(_spec("sleep 1", output_prefix=None))
    status = wait_terminal(runner, handle)
    assert status.resources is not None and status.started and status.ended
    seconds = (status.ended - status.started).total_seconds()
    assert status.resources.vcpu_seconds == pytest.approx(0.5 * seconds)
    assert status.resources.gib_seconds == pytest.approx(2 * seconds)
    assert status.cost == pytest.approx(0.5 * seconds + 2 * seconds * 0.1)


def test_an_oom_killed_container_is_the_users(k8s_env: K8sEnv) -> None:
    runner = k8s_env.runner(deployment="oom")
    handle = runner.submit(_spec("echo up; sleep 60", output_prefix=None))
    wait_state(runner, handle, {JobState.RUNNING}, 30)
    fake = k8s_env.fake
    wait_until(lambda: bool(fake.pods_of(NS, handle.data["job"])), 30, "no pod")
    fake.oom(NS, fake.pods_of(NS, handle.data["job"])[0], "main")
    status = wait_terminal(runner, handle)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.USER, 137)
    assert status.reason is not None and "OOMKilled" in status.reason


def test_container_env_from_secrets_and_a_missing_one_is_config(k8s_env: K8sEnv) -> None:
    """``containerSpec.env`` with ``valueFrom`` reaches the task beside its own env; a Secret that
    does not exist is the kubelet's CreateContainerConfigError: Kubernetes retries for ever,
    so past ``configErrorTimeout`` the runner stops the Job and says CONFIG with the message."""
    fake = k8s_env.fake
    fake.secrets[(NS, "db")] = {"password": "s3cret"}
    runner = k8s_env.runner(deployment="secrets")
    from_secret = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
    ok = runner.submit(
        _spec(
            'echo "pw=$DB_PASSWORD own=$OWN"',
            env={"OWN": "mine"},
            output_prefix=None,
            options={"containerSpec": {"env": [from_secret]}},
        )
    )
    assert wait_terminal(runner, ok).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, ok, 30) if r.stream == "stdout"] == ["pw=s3cret own=mine"]
    bad = runner.submit(
        _spec(
            "echo never",
            output_prefix=None,
            options={
                "configErrorTimeout": 1,
                "containerSpec": {"envFrom": [{"secretRef": {"name": "absent"}}]},
            },
        )
    )
    status = wait_terminal(runner, bad)
    assert (status.state, status.failure) == (JobState.FAILED, Failure.CONFIG), status
    assert status.reason is not None and 'secret "absent" not found' in status.reason
    job = fake.object("jobs", NS, bad.data["job"])
    assert job is not None and job["spec"]["suspend"] is True  # stopped by the runner, kept
    with pytest.raises(RunnerOptionsError, match="containerSpec"):
        runner.submit(_spec("true", options={"containerSpec": {"env": {"A": "1"}}}))


def test_kubectl_sees_the_runners_job(k8s_env: K8sEnv, tmp_path: Path) -> None:
    """A second, independent client reads the Job the runner made (get, describe, logs) and
    deletes it."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    runner = k8s_env.runner(deployment="kubectl")
    handle = runner.submit(_spec("echo seen-by-kubectl", output_prefix=None))
    assert wait_terminal(runner, handle).state is JobState.SUCCEEDED
    config = k8s_env.fake.kubeconfig(tmp_path / "config")
    job = handle.data["job"]

    def kube(*args: str) -> str:
        command = [kubectl, f"--kubeconfig={config}", "-n", NS, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True).stdout

    pods = k8s_env.fake.pods_of(NS, job)
    assert "seen-by-kubectl" in kube("logs", pods[0], "-c", "main")
    assert "squall.dev/deployment=kubectl" in kube("describe", "job", job)
    listed = json.loads(kube("get", "jobs", "-l", "squall.dev/deployment=kubectl", "-o", "json"))
    assert [j["metadata"]["name"] for j in listed["items"]] == [job]
    assert listed["items"][0]["status"]["succeeded"] == 1
    kube("delete", "job", job, "--cascade=background", "--wait=true", "--timeout=60s")
    assert k8s_env.fake.object("jobs", NS, job) is None and k8s_env.fake.pods_of(NS, job) == []
    # Deleted behind Squall's back, with no tombstone of its own: a fresh runner says LOST.
    gone = k8s_env.runner(deployment="kubectl").poll([handle])[handle.name]
    assert (gone.state, gone.failure) == (JobState.LOST, Failure.LOST), gone


def test_the_watch_resumes_after_410_without_losing_a_transition(k8s_env: K8sEnv) -> None:
    """Jobs that end while the watch is away past a compaction are reported by the relist."""
    from kubernetes import client

    from runners.kubernetes.watch import JobWatch

    fake = k8s_env.fake
    runner = k8s_env.runner(deployment="watched")
    batch = client.BatchV1Api(fake.api_client())
    watch = JobWatch(
        functools.partial(batch.list_namespaced_job, NS, label_selector="squall.dev/deployment=watched")
    )
    watch.step()  # the first list: the resume point
    live = runner.submit(_spec("echo live", output_prefix=None))
    watch.step(timeout_seconds=1)  # a bounded watch sees it come
    assert live.data["job"] in watch.drain() and watch.relists == 0
    assert wait_terminal(runner, live).state is JobState.SUCCEEDED
    away = runner.submit(_spec("echo away", output_prefix=None))
    assert wait_terminal(runner, away).state is JobState.SUCCEEDED
    fake.compact()  # the watch's resume point is gone: 410 Gone
    watch.step(timeout_seconds=1)
    assert watch.relists == 1
    assert away.data["job"] in watch.drain()  # created and ended while the watch was away
    watch.step(timeout_seconds=1)  # and it watches on from the fresh list
    assert watch.drain() == set() and watch.relists == 1


def test_wait_wakes_on_a_change_of_the_deployments_jobs(k8s_env: K8sEnv) -> None:
    runner = k8s_env.runner(deployment="woken")
    assert isinstance(runner, Waitable)
    runner.wait(0.5)  # starts the watch (its first list)
    handle = runner.submit(_spec("echo hi", output_prefix=None))
    wait_until(lambda: runner.wait(0.5), 30, "no wake-up for a new Job")
    assert wait_terminal(runner, handle).state is JobState.SUCCEEDED


def _entry_point_dir(tmp_path: Path) -> str | None:
    """A directory holding the ``kubernetes`` entry point's metadata when the installed Squall
    has none (a virtualenv installed before the runner existed); None when it is installed."""
    from importlib.metadata import entry_points

    if any(ep.name == "kubernetes" for ep in entry_points(group="squall.runners")):
        return None
    info = tmp_path / "entry-points" / "squall_kubernetes_runner-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: squall-kubernetes-runner\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[squall.runners]\nkubernetes = runners.kubernetes:KubernetesRunner\n"
    )
    return str(info.parent)


def test_squall_run_of_the_sample_on_the_fake(k8s_env: K8sEnv, tmp_path: Path) -> None:
    """``squall run samples/kubernetes.yaml`` as a user types it, with SQUALL_RUNNERS pointing the
    runner at the fake and moto S3; the sample itself is unchanged."""
    import os
    import subprocess

    k8s_env.fake.images["python:3.12-slim"] = {"PATH": f"{Path(sys.executable).parent}:{MINIMAL_PATH}"}
    tools_env = {
        "AWS_ENDPOINT_URL_S3": k8s_env.s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    config = {
        "kubernetes": {
            "defaults": {
                "config": {"masterUrl": k8s_env.fake.url},
                "stagingUri": f"s3://{k8s_env.bucket}/sample",
                "toolsImage": TOOLS,
                "deployment": "sample",
            },
            "tools_env": tools_env,
            "s3_endpoint": k8s_env.s3_endpoint,
            "log_grace": LOG_GRACE,
        }
    }
    extra = _entry_point_dir(tmp_path)
    path = os.pathsep.join(p for p in (extra, str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        **tools_env,
        "PYTHONPATH": path,
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
        "SQUALL_RUNNERS": json.dumps(config),
    }
    command = [
        sys.executable,
        "-c",
        "from control_plane.cli import main; main()",
        "run",
        str(ROOT / "samples" / "kubernetes.yaml"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "revenue on 2024-06-01: 1654.7 over 3 regions" in done.stdout, done.stdout
    assert "/out/revenue.json" in done.stdout  # kept in the attempt's folder, by its s3:// URI

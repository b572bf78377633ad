"""The Azure Batch runner against the REST fake of the Batch data plane and Azurite, with the real SDKs.

Tasks really run: the fake (tests/emulators/azure_batch.py) runs each task's command line on
this machine through the shared executor, downloads its ``resourceFiles`` from Azurite with
the SAS URLs the runner signed, and uploads its ``outputFiles`` (outputs, stdout.txt and
stderr.txt) with them, so the whole contract runs. Faults come from the fault proxy in front
of the fake and Azurite (503s, resets, a lost create response).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from runners.base import Failure, JobHandle, JobState, Runner
from runners.retry import RetryPolicy
from runners.testing import (
    CallCounter,
    RunnerContract,
    count_local_processes,
    read_logs,
    wait_state,
    wait_terminal,
    wait_until,
)

pytest.importorskip("azure.batch")
from runners.azure_batch import AzureBatchRunner, azure_job_id
from tests.emulators.azure_batch import ACCOUNT_KEY, FakeAzureBatch
from tests.emulators.azurite import ACCOUNT, Azurite
from tests.emulators.azurite import ACCOUNT_KEY as STORAGE_KEY
from tests.emulators.fault_proxy import FaultProxy, ProxiedCalls

POOL = "pool-a"
FAST_POLICY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
LOG_GRACE = 3.0
BROKEN_IMAGE = "squall-tests/pool-error"


def no_sleep(_seconds: float) -> None:
    """Retry backoff in tests: never really wait."""


def _defaults(batch: str, blob: str, container: str, deployment: str, **extra: Any) -> dict[str, Any]:
    return {
        "account": "squallbatch",
        "endpoint": batch,
        "accessKey": ACCOUNT_KEY,
        "poolId": POOL,
        "deployment": deployment,
        "blobStorage": {
            "containerName": container,
            "connectionString": f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
            f"AccountKey={STORAGE_KEY};BlobEndpoint={blob}/{ACCOUNT};",
        },
        **extra,
    }


def _runner(batch: str, blob: str, container: str, deployment: str, **extra: Any) -> AzureBatchRunner:
    """Module level, so a process pool can pickle it: each OS process builds its own runner."""
    return AzureBatchRunner(
        defaults=_defaults(batch, blob, container, deployment, **extra),
        policy=FAST_POLICY,
        sleep=no_sleep,
        rate=1000.0,
        log_grace=LOG_GRACE,
    )


@dataclass
class RunEnv:
    fake: FakeAzureBatch
    azurite: Azurite
    container: str
    deployment: str = "squall"

    @property
    def blob(self) -> str:
        return self.azurite.endpoint.format(account="").rstrip("/").removesuffix("/")

    def runner(self, *, batch: str | None = None, blob: str | None = None, **extra: Any) -> AzureBatchRunner:
        return _runner(
            batch or self.fake.endpoint, blob or self.blob, self.container, self.deployment, **extra
        )

    def read(self, uri: str) -> bytes:
        account, _, path = uri.removeprefix("az://").partition("/")
        container, _, name = path.partition("/")
        assert account == ACCOUNT
        return bytes(self.azurite.service().get_container_client(container).download_blob(name).readall())


@pytest.fixture(scope="module")
def run_env(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunEnv]:
    container = f"squall-{uuid.uuid4().hex[:8]}"
    azurite.service().create_container(container)
    with FakeAzureBatch(tmp_path_factory.mktemp("azure-batch")) as fake:
        fake.broken_images[BROKEN_IMAGE] = {
            "category": "servererror",
            "code": "ContainerPoolingError",
            "message": "the node could not prepare the container",
        }
        yield RunEnv(fake, azurite, container)


class TestAzureBatchContract(RunnerContract):
    deadline_s = 30.0

    @pytest.fixture(autouse=True)
    def _own_deployment(self, run_env: RunEnv) -> Iterator[None]:
        """One Batch job per case: a list call sees that case's tasks only."""
        run_env.deployment = f"case-{uuid.uuid4().hex[:10]}"
        yield
        run_env.deployment = "squall"

    @pytest.fixture
    def runner(self, run_env: RunEnv) -> Runner:
        return run_env.runner()

    @pytest.fixture
    def second_runner(self, run_env: RunEnv) -> Runner:
        return run_env.runner()

    @pytest.fixture
    def faulty_runner(self, run_env: RunEnv) -> Iterator[Callable[[int], tuple[Runner, CallCounter]]]:
        proxies: list[FaultProxy] = []

        def make(failures: int) -> tuple[Runner, CallCounter]:
            batch = FaultProxy(run_env.fake.endpoint).start()
            blob = FaultProxy(run_env.blob).start()
            proxies.extend((batch, blob))
            if failures:
                batch.fail_before("*", "", status=503, times=failures)
            return run_env.runner(batch=batch.endpoint, blob=blob.endpoint), ProxiedCalls(batch, blob)

        yield make
        for proxy in proxies:
            proxy.stop()

    @pytest.fixture
    def output_prefix(self, run_env: RunEnv) -> str:
        return f"az://{ACCOUNT}/{run_env.container}/outputs/{uuid.uuid4().hex[:8]}/"

    @pytest.fixture
    def read_uri(self, run_env: RunEnv) -> Callable[[str], bytes]:
        return run_env.read

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, run_env: RunEnv) -> Callable[[], Runner]:
        return functools.partial(
            _runner, run_env.fake.endpoint, run_env.blob, run_env.container, run_env.deployment
        )

    @pytest.fixture
    def lost_response_runner(self, run_env: RunEnv) -> Iterator[Callable[[], Runner]]:
        """create_task reaches the fake, which creates the task; the proxy then drops the response."""
        with FaultProxy(run_env.fake.endpoint) as proxy:
            proxy.drop_after("POST", r"/tasks\?", times=1)
            yield lambda: run_env.runner(batch=proxy.endpoint)

    @pytest.fixture
    def lagging_runner(self) -> Runner | None:
        pytest.skip(
            "Azure Batch uploads the outputFiles, the task's stdout.txt and stderr.txt among them, before "
            "it marks the task completed: no line can arrive after the end"
        )

    @pytest.fixture
    def queued_options(self, run_env: RunEnv) -> Iterator[dict[str, Any]]:
        """A pool the fake gives no node: its tasks stay active."""
        pool = f"held-{uuid.uuid4().hex[:8]}"
        run_env.fake.hold_pools.add(pool)
        yield {"poolId": pool}
        run_env.fake.hold_pools.discard(pool)
        run_env.fake.held_changed()

    @pytest.fixture
    def unwritable_output_prefix(self) -> str:
        return f"az://{ACCOUNT}/no-such-container-{uuid.uuid4().hex[:8]}/outputs/"

    @pytest.fixture
    def failure_cases(self, run_env: RunEnv) -> dict[Failure, Callable[..., JobHandle]]:
        """CONFIG, START_FAILED and LOST as Batch and Squall's wrapper produce them."""

        def config(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """The wrapper finds no such command: exit 96, never retried."""
            return submit(runner, replace(make_spec("unused"), command=("no-such-command-anywhere",)))

        def start_failed(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """The node fails to prepare the container (a servererror): the platform's, may pass."""
            return submit(runner, replace(make_spec("echo never"), image=BROKEN_IMAGE))

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """Evidence: the task is gone from Batch and Squall left no tombstone for it."""
            handle = submit(runner, make_spec("sleep 30"))
            run_env.fake.client().delete_task(handle.data["job"], handle.data["task"])
            return handle

        return {Failure.CONFIG: config, Failure.START_FAILED: start_failed, Failure.LOST: lost}


@dataclass
class Throttled:
    """Proxies in front of Batch and Azure Storage, and the rules that fault them."""

    batch: str
    blob: str
    throttle: Any
    reset: Any


@pytest.fixture(scope="module")
def throttled(run_env: RunEnv) -> Iterator[Throttled]:
    """Every 4th Batch call is a 503 ServerBusy and every 5th storage call a reset connection, as a
    busy account sees them."""
    busy = (
        b'{"odata.metadata": "x", "code": "ServerBusy", '
        b'"message": {"lang": "en-US", "value": "The server is busy."}}'
    )
    with FaultProxy(run_env.fake.endpoint) as batch, FaultProxy(run_env.blob) as blob:
        throttle = batch.fail_before(
            "*", "", status=503, body=busy, headers={"Content-Type": "application/json"}, times=None, every=4
        )
        reset = blob.reset_before("*", "", times=None, every=5)
        yield Throttled(batch.endpoint, blob.endpoint, throttle, reset)


class TestAzureBatchContractThroughFaults(TestAzureBatchContract):
    """The same contract with every runner call through the faulting proxies (the retry policy
    absorbs them: none of the cases may notice)."""

    counts_calls = False

    @pytest.fixture
    def runner(self, run_env: RunEnv, throttled: Throttled) -> Runner:
        return run_env.runner(batch=throttled.batch, blob=throttled.blob)

    @pytest.fixture
    def second_runner(self, run_env: RunEnv, throttled: Throttled) -> Runner:
        return run_env.runner(batch=throttled.batch, blob=throttled.blob)

    @pytest.fixture
    def runner_factory(self, run_env: RunEnv, throttled: Throttled) -> Callable[[], Runner]:
        return functools.partial(
            _runner, throttled.batch, throttled.blob, run_env.container, run_env.deployment
        )

    def test_the_proxies_really_fault_the_calls(
        self, runner: Runner, throttled: Throttled, make_spec: Any, submit: Any
    ) -> None:
        before = (throttled.throttle.applied, throttled.reset.applied)
        handle = submit(
            runner, make_spec("echo through", input_files={"a.txt": b"a"}, output_files=("a.txt",))
        )
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert [r.text for r in read_logs(runner, handle, self.deadline_s)] == ["through"]
        assert throttled.throttle.applied > before[0] and throttled.reset.applied > before[1]


# -- beyond the contract


def test_a_preempted_task_is_requeued_reported_queued_and_completes_once(
    run_env: RunEnv, tmp_path: Path
) -> None:
    """Spot preemption is Batch's to handle: the task goes back to the queue (QUEUED, counted in
    the reason), runs again from scratch, and ends SUCCEEDED once; never a failure."""
    from runners.base import JobSpec

    run_env.deployment = f"spot-{uuid.uuid4().hex[:8]}"
    runner = run_env.runner()
    ledger = tmp_path / "ledger"
    spec = JobSpec(
        name=f"spot-{uuid.uuid4().hex[:8]}",
        command=("sh", "-c", f"echo run >> '{ledger}'; sleep 2; echo done"),
    )
    handle = runner.submit(spec)
    wait_state(runner, handle, {JobState.RUNNING}, 30)
    # RUNNING is the task's state on its node, set before its files download and its command
    # starts: take the node back once the command has really run.
    wait_until(lambda: ledger.exists() and ledger.read_text() == "run\n", 30, "the first run")
    fake, job, task = run_env.fake, handle.data["job"], handle.data["task"]
    fake.hold_pools.add(POOL)
    try:
        fake.preempt(job, task)
        queued = runner.poll([handle])[handle.name]
        assert queued.state is JobState.QUEUED and queued.failure is None
        assert queued.reason is not None and "requeued 1 time" in queued.reason
    finally:
        fake.hold_pools.discard(POOL)
        fake.held_changed()
    status = wait_terminal(runner, handle, 30)
    assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0), status
    assert fake.runs[task] == 2 and ledger.read_text().splitlines() == ["run", "run"]
    assert [r.text for r in read_logs(runner, handle, 30) if r.stream == "stdout"] == ["done"]


@pytest.mark.slow  # 500 submits: about a minute on two cores
def test_500_running_tasks_reconcile_in_one_list_call(run_env: RunEnv) -> None:
    """One Batch job per deployment and pool: a poll of 500 running tasks is one list_tasks page."""
    from runners.base import JobSpec

    run_env.deployment = f"many-{uuid.uuid4().hex[:8]}"
    pool = f"parked-{uuid.uuid4().hex[:8]}"
    run_env.fake.park_pools.add(pool)  # running on nodes; 500 processes would not fit this machine
    runner = run_env.runner(poolId=pool)
    handles: list[JobHandle] = []
    try:
        handles = [
            runner.submit(JobSpec(name=f"many-{i:03d}-{uuid.uuid4().hex[:6]}", command=("true",)))
            for i in range(500)
        ]
        job = azure_job_id(run_env.deployment, pool)
        assert {h.data["job"] for h in handles} == {job}
        wait_until(
            lambda: all(t["state"] == "running" for t in run_env.fake.task_docs(job)),
            30,
            "the 500 tasks never all ran",
        )
        before = run_env.fake.calls.copy()
        statuses = run_env.runner(poolId=pool).poll(handles)  # a fresh runner: nothing cached
        made = run_env.fake.calls - before
        assert len(statuses) == 500 and {s.state for s in statuses.values()} == {JobState.RUNNING}
        assert dict(made) == {"ListTasks": 1}, made
    finally:
        client = run_env.fake.client()
        for handle in handles:
            client.delete_task(handle.data["job"], handle.data["task"])
        run_env.fake.park_pools.discard(pool)
        run_env.fake.held_changed()


def test_squall_run_of_the_sample_on_the_fake(run_env: RunEnv, tmp_path: Path) -> None:
    """``squall run samples/azure-batch.yaml``, as a user types it, with the deployment's
    SQUALL_RUNNERS pointing the runner at the fake and Azurite; the sample itself is unchanged."""
    from tests.integration.service_helpers import squall_run_on_azure_fake

    result = squall_run_on_azure_fake(
        "azure-batch.yaml", run_env.fake, run_env.azurite, tmp_path, "-i", "day=2024-07-01"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "revenue on 2024-07-01: 1654.7 over 3 regions" in result.stdout, result.stdout
    assert f"az://{ACCOUNT}/squall-staging/squall/squall-squall-squall-pool/" in result.stdout, result.stdout


def test_options_reach_batch_and_the_cost_is_the_tasks_share_of_its_node(run_env: RunEnv) -> None:
    """requiredSlots, retentionTime and maxWallClockTime are in the task Batch got; the cost is
    the run time at the VM size's price, times requiredSlots / taskSlotsPerNode."""
    from runners.azure_batch import cost
    from runners.base import JobSpec

    run_env.deployment = f"cost-{uuid.uuid4().hex[:8]}"
    runner = run_env.runner(
        vmSize="Standard_D2s_v3",
        taskSlotsPerNode=4,
        prices={"Standard_D2s_v3": {"hour": 0.096, "vcpus": 2, "gib": 8}},
    )
    spec = JobSpec(
        name=f"cost-{uuid.uuid4().hex[:8]}",
        command=("sh", "-c", "sleep 1"),
        options={"resources": {"requiredSlots": 2}, "retentionTime": "PT2H", "maxWallClockTime": "PT5M"},
    )
    handle = runner.submit(spec)
    status = wait_terminal(runner, handle, 30)
    assert status.state is JobState.SUCCEEDED and status.started and status.ended
    seconds = (status.ended - status.started).total_seconds()
    assert seconds >= 1
    assert status.cost == cost.share(seconds=seconds, hour=0.096, slots=2, slots_per_node=4) > 0
    assert status.resources is not None and status.resources.vcpu_seconds == pytest.approx(seconds * 2 * 0.5)
    task = run_env.fake.task_doc(handle.data["job"], handle.data["task"])
    assert task["requiredSlots"] == 2
    assert task["constraints"]["retentionTime"] in ("PT2H", "PT02H00M00S")
    assert task["constraints"]["maxWallClockTime"] in ("PT5M", "PT05M00S")


def test_a_running_tasks_log_is_tailed_from_the_node_files(run_env: RunEnv, tmp_path: Path) -> None:
    """While the task runs, its lines come from ranged reads of the node's stdout.txt; once it
    ended, from the copy Batch uploaded (node files go with the node)."""
    from runners.base import JobSpec

    run_env.deployment = f"tail-{uuid.uuid4().hex[:8]}"
    runner = run_env.runner()
    gate = tmp_path / "gate"
    script = f"echo early; while [ ! -e '{gate}' ]; do sleep 0.1; done; echo late"
    handle = runner.submit(JobSpec(name=f"tail-{uuid.uuid4().hex[:8]}", command=("sh", "-c", script)))
    wait_state(runner, handle, {JobState.RUNNING}, 30)
    seen: list[str] = []
    cursor = None
    reads = run_env.fake.calls["GetTaskFile"]

    def early_arrived() -> bool:
        nonlocal cursor
        chunk = runner.logs(handle, cursor)
        cursor = chunk.cursor
        seen.extend(r.text for r in chunk.lines)
        assert not chunk.complete
        return "early" in seen

    wait_until(early_arrived, 30, "the running task's first line never arrived")
    assert runner.poll([handle])[handle.name].state is JobState.RUNNING
    assert run_env.fake.calls["GetTaskFile"] > reads
    gate.touch()
    assert wait_terminal(runner, handle, 30).state is JobState.SUCCEEDED
    rest = []
    while True:  # complete once both sentinels are read (within log_grace at worst)
        chunk = runner.logs(handle, cursor)
        rest.extend(r.text for r in chunk.lines)
        cursor = chunk.cursor
        if chunk.complete:
            break
    assert seen + rest == ["early", "late"]

"""The Docker runner against the wire-protocol fake of the Docker Engine API, with the real docker-py.

Containers really run: the fake (tests/emulators/docker_engine.py) runs each container's command
on this machine through the shared executor, with the job's directory bind-mounted, so the whole
runner contract runs through docker-py's own requests and multiplexed log parsing.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from runners.base import Failure, JobHandle, JobSpec, JobState, Runner, RunnerError, RunnerOptionsError
from runners.docker import DockerRunner
from runners.retry import RetryPolicy
from runners.testing import CallCounter, RunnerContract, count_local_processes, read_logs, sh, wait_terminal
from tests.emulators.docker_engine import DockerEngine
from tests.emulators.fault_proxy import FaultProxy

docker = pytest.importorskip("docker")

FAST = RetryPolicy(attempts=3, initial_delay=0.0, jitter=0.0)


def no_sleep(_seconds: float) -> None:
    pass


def _runner_factory(url: str, base_dir: str) -> Runner:
    return DockerRunner(base_url=url, base_dir=base_dir, policy=FAST, sleep=no_sleep)


def _faulty_client(counter: CallCounter, failures: int) -> Callable[[str], Any]:
    """An APIClient whose first ``failures`` requests fail as a broken connection would."""
    import requests

    class Faulty(docker.APIClient):  # type: ignore[misc,name-defined]
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if counter.hit() <= failures:
                raise requests.exceptions.ConnectionError("injected: connection reset by peer")
            return super().request(method, url, *args, **kwargs)

    return lambda url: Faulty(base_url=url, version="1.45", timeout=60)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    fake = DockerEngine(tmp_path_factory.mktemp("docker-engine"))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-jobs")


class TestDockerContract(RunnerContract):
    @pytest.fixture
    def image(self) -> str:
        return "alpine:latest"

    @pytest.fixture
    def runner(self, engine: DockerEngine, jobs_dir: Path) -> Runner:
        return _runner_factory(engine.url, str(jobs_dir))

    @pytest.fixture
    def second_runner(self, engine: DockerEngine, jobs_dir: Path) -> Runner:
        return _runner_factory(engine.url, str(jobs_dir))

    @pytest.fixture
    def faulty_runner(
        self, engine: DockerEngine, jobs_dir: Path
    ) -> Callable[[int], tuple[Runner, CallCounter]]:
        def make(failures: int) -> tuple[Runner, CallCounter]:
            counter = CallCounter()
            runner = DockerRunner(
                base_url=engine.url,
                base_dir=jobs_dir,
                client_factory=_faulty_client(counter, failures),
                policy=FAST,
                sleep=no_sleep,
            )
            return runner, counter

        return make

    @pytest.fixture
    def output_prefix(self, tmp_path: Path) -> str:
        return (tmp_path / "outputs").as_uri() + "/"

    @pytest.fixture
    def read_uri(self) -> Callable[[str], bytes]:
        return lambda uri: Path(uri.removeprefix("file://")).read_bytes()

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes  # the fake runs each container's command on this machine

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, engine: DockerEngine, jobs_dir: Path) -> Callable[[], Runner]:
        return functools.partial(_runner_factory, engine.url, str(jobs_dir))

    @pytest.fixture
    def lost_response_runner(self, engine: DockerEngine, jobs_dir: Path) -> Iterator[Callable[[], Runner]]:
        """The create reaches the daemon, which creates the container; the proxy drops the answer."""
        with FaultProxy(engine.url.replace("tcp://", "http://")) as proxy:
            proxy.drop_after("POST", r"/containers/create", times=1)
            yield lambda: _runner_factory(proxy.endpoint.replace("http://", "tcp://"), str(jobs_dir))

    @pytest.fixture
    def unwritable_output_prefix(self, tmp_path: Path) -> str:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        return (blocker / "outputs").as_uri() + "/"

    @pytest.fixture
    def failure_cases(self, engine: DockerEngine) -> dict[Failure, Callable[..., JobHandle]]:
        def config(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """An image no registry has: the pull's 404 (pull access denied)."""
            return submit(
                runner, replace(make_spec("echo never"), image=f"nobody/missing-{uuid.uuid4().hex[:8]}:1")
            )

        def start_failed(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """The registry keeps answering 5xx past the retry policy."""
            image = f"flaky/registry-{uuid.uuid4().hex[:8]}:1"
            engine.pull_errors[image] = (500, "received unexpected HTTP status: 503 Service Unavailable")
            return submit(runner, replace(make_spec("echo never"), image=image))

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """Someone removed the container (docker rm -f) before Squall saw it end."""
            handle = submit(runner, make_spec("sleep 30"))
            engine.remove(handle.id)
            return handle

        return {Failure.CONFIG: config, Failure.START_FAILED: start_failed, Failure.LOST: lost}


# -- beyond the contract


def _spec(script: str, **fields: Any) -> JobSpec:
    fields.setdefault("name", f"docker-{uuid.uuid4().hex[:12]}")
    fields.setdefault("image", "alpine:latest")
    return JobSpec(command=sh(script), **fields)


def test_no_daemon_is_a_clear_error_naming_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    socket = tmp_path / "docker.sock"
    runner = DockerRunner(base_url=f"unix://{socket}", base_dir=tmp_path / "jobs")
    with pytest.raises(
        RunnerError, match=rf"no Docker daemon: the socket {socket} .*does not exist.*DOCKER_HOST"
    ):
        runner.submit(_spec("echo hi"))


def test_no_daemon_from_docker_host_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # the discard port: nothing listens
    runner = DockerRunner(base_dir=tmp_path / "jobs", policy=FAST, sleep=no_sleep)
    with pytest.raises(
        RunnerError, match=r"no Docker daemon answers at tcp://127.0.0.1:9 \(from DOCKER_HOST\)"
    ):
        runner.submit(_spec("echo hi"))


def test_default_socket_is_named_when_docker_host_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    if Path("/var/run/docker.sock").exists():
        pytest.skip("a Docker daemon socket exists on this machine")
    with pytest.raises(RunnerError, match=r"/var/run/docker.sock \(from the default socket"):
        DockerRunner(base_dir=tmp_path / "jobs").submit(_spec("echo hi"))


def test_an_oom_killed_container_is_a_user_failure_saying_so(engine: DockerEngine, jobs_dir: Path) -> None:
    runner = _runner_factory(engine.url, str(jobs_dir))
    hog = (
        "python3 -c 'import time; x = bytearray(256 * 1024 * 1024); "
        'x[::4096] = b"x" * len(x[::4096]); time.sleep(30)\''
    )
    handle = runner.submit(_spec(hog, options={"memory": {"memory": "64Mb"}}))
    status = wait_terminal(runner, handle, 60)
    assert (status.state, status.failure) == (JobState.FAILED, Failure.USER), status
    assert (
        status.reason is not None and "OOM-killed" in status.reason and str(64 * 1024 * 1024) in status.reason
    )
    created = engine.container(handle.id)
    assert created is not None and created.config["HostConfig"]["Memory"] == 64 * 1024 * 1024


def test_volumes_are_refused_unless_the_deployment_enables_them(engine: DockerEngine, jobs_dir: Path) -> None:
    """Kestra's Docker runner refuses volumes unless its plugin configuration sets volume-enabled."""
    spec = _spec("echo never", options={"volumes": [f"{jobs_dir}:/data:ro"]})
    with pytest.raises(RunnerOptionsError, match=r"taskRunner.volumes: volume mounts are disabled"):
        _runner_factory(engine.url, str(jobs_dir)).submit(spec)
    assert engine.container(spec.name) is None


def test_kestra_options_reach_the_container(engine: DockerEngine, jobs_dir: Path) -> None:
    runner = DockerRunner(base_url=engine.url, base_dir=jobs_dir, volume_enabled=True)
    options = {
        "cpu": {"cpus": 1.5},
        "memory": {"memory": "512Mb", "memorySwap": "1g", "memoryReservation": "256m"},
        "user": "1000:1000",
        "networkMode": "none",
        "extraHosts": ["db:10.0.0.2"],
        "shmSize": "128m",
        "pullPolicy": "IF_NOT_PRESENT",
        "volumes": [f"{jobs_dir}:/data:ro"],
        "entryPoint": [""],
        "delete": False,
    }
    handle = runner.submit(_spec("echo ok", options=options))
    assert wait_terminal(runner, handle, 30).state is JobState.SUCCEEDED
    created = engine.container(handle.id)
    assert created is not None
    host = created.config["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert (host["Memory"], host["MemorySwap"], host["MemoryReservation"]) == (
        512 * 2**20,
        2**30,
        256 * 2**20,
    )
    assert host["NetworkMode"] == "none" and host["ExtraHosts"] == ["db:10.0.0.2"]
    assert host["ShmSize"] == 128 * 2**20
    assert f"{jobs_dir}:/data:ro" in host["Binds"]
    assert created.config["User"] == "1000:1000"
    runner.cleanup(handle)
    assert engine.container(handle.id) is not None, "delete: false keeps the container"
    assert [r.text for r in read_logs(runner, handle)] == ["ok"]


def test_cleanup_removes_the_container_by_default_and_keeps_the_log(
    engine: DockerEngine, jobs_dir: Path
) -> None:
    runner = _runner_factory(engine.url, str(jobs_dir))
    handle = runner.submit(_spec("echo kept; echo err >&2"))
    assert wait_terminal(runner, handle, 30).state is JobState.SUCCEEDED
    runner.cleanup(handle)
    assert engine.container(handle.id) is None
    fresh = _runner_factory(engine.url, str(jobs_dir))
    # Each stream keeps its order; between them, the order is the runtime's reading order.
    assert sorted((r.stream, r.text) for r in read_logs(fresh, handle)) == [
        ("stderr", "err"),
        ("stdout", "kept"),
    ]
    assert fresh.poll([handle])[handle.name].state is JobState.SUCCEEDED


def test_pull_policy_never_with_a_missing_image_is_config(engine: DockerEngine, jobs_dir: Path) -> None:
    runner = _runner_factory(engine.url, str(jobs_dir))
    handle = runner.submit(_spec("echo never", image="busybox:1.36", options={"pullPolicy": "NEVER"}))
    status = wait_terminal(runner, handle, 30)
    assert (status.state, status.failure) == (JobState.FAILED, Failure.CONFIG), status
    assert status.reason is not None and "No such image: busybox:1.36" in status.reason
    assert engine.calls.get("POST /images/create", 0) == 0 or "busybox:1.36" not in engine.images


def test_pull_policy_always_pulls_and_if_not_present_does_not(engine: DockerEngine, jobs_dir: Path) -> None:
    runner = _runner_factory(engine.url, str(jobs_dir))
    engine.registry.add("squall/pulled:1")
    before = engine.calls.get("POST /images/create", 0)
    for policy in ("ALWAYS", "IF_NOT_PRESENT", "IF_NOT_PRESENT", "ALWAYS"):
        handle = runner.submit(_spec("true", image="squall/pulled:1", options={"pullPolicy": policy}))
        assert wait_terminal(runner, handle, 30).state is JobState.SUCCEEDED
    assert engine.calls["POST /images/create"] - before == 2


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"config": "{}"}, "taskRunner.config"),
        ({"entryPoint": ["/bin/bash", "-c"]}, "taskRunner.entryPoint"),
        ({"deviceRequests": [{"count": 1}]}, "taskRunner.deviceRequests"),
        ({"memory": {"kernelMemory": "1g"}}, "taskRunner.memory.kernelMemory"),
        ({"memory": {"memory": "lots"}}, "taskRunner.memory.memory"),
        ({"credentials": {"registryToken": "t"}}, "taskRunner.credentials.registryToken"),
        ({"pullPolicy": "SOMETIMES"}, "taskRunner.pullPolicy"),
        ({"volumes": ["/tmp:/squall"]}, "taskRunner.volumes"),
        ({"gpu": True}, "taskRunner.gpu"),
    ],
)
def test_options_squall_cannot_honour_are_refused_by_name(
    engine: DockerEngine, jobs_dir: Path, options: dict[str, Any], named: str
) -> None:
    runner = _runner_factory(engine.url, str(jobs_dir))
    with pytest.raises(RunnerOptionsError) as caught:
        runner.submit(_spec("echo never", options=options))
    assert named in str(caught.value)


def test_a_job_without_an_image_is_refused(engine: DockerEngine, jobs_dir: Path) -> None:
    with pytest.raises(RunnerError, match="containerImage"):
        _runner_factory(engine.url, str(jobs_dir)).submit(_spec("echo", image=None))


def test_python_script_imports_the_staged_kestra_module(engine: DockerEngine, jobs_dir: Path) -> None:
    """A python Script built for a container runner imports Squall's kestra.py staged beside it."""
    from control_plane.service.scripts import build_job_spec, job_outputs
    from control_plane.service.storage import LocalStorage
    from runners import markers

    storage = LocalStorage(jobs_dir / "storage")
    _, spec = build_job_spec(
        name=f"kestra-lib-{uuid.uuid4().hex[:8]}",
        task_type="io.kestra.plugin.scripts.python.Script",
        properties={
            "script": "from kestra import Kestra\nKestra.outputs({'a': 1})\n",
            "containerImage": "python:3.12-slim",
            "taskRunner": {"type": "io.kestra.plugin.scripts.runner.docker.Docker"},
        },
        timeout=None,
        output_prefix=storage.prefix("t", "f", "e", "tr", 1),
        labels={},
        storage=storage,
    )
    # The fake plays every image with this machine's tools: its "python" is python3.
    spec = replace(
        spec, command=tuple(part.replace("python script.py", "python3 script.py") for part in spec.command)
    )
    runner = _runner_factory(engine.url, str(jobs_dir))
    handle = runner.submit(spec)
    status = wait_terminal(runner, handle, 30)
    records = read_logs(runner, handle)
    assert status.state is JobState.SUCCEEDED, (status, [r.text for r in records])
    marker = markers.collect(r.text for r in records)
    assert job_outputs(status, marker.outputs)["vars"] == {"a": 1}
    assert not os.environ.get("PYTHONPATH", "").count("kestra_lib")


FLOW = """\
id: docker-python
namespace: squall.compat.docker
tasks:
  - id: py
    type: io.kestra.plugin.scripts.python.Script
    containerImage: python:3.12-slim
    taskRunner:
      type: io.kestra.plugin.scripts.runner.docker.Docker
      pullPolicy: IF_NOT_PRESENT
      memory:
        memory: 512Mb
    outputFiles: [report.txt]
    script: |
      from kestra import Kestra
      open("report.txt", "w").write("made in a container")
      Kestra.outputs({"a": 1})
      Kestra.counter("rows", 3)
  - id: show
    type: io.kestra.plugin.core.log.Log
    message: "vars.a={{ outputs.py.vars.a }} exit={{ outputs.py.exitCode }}"
"""


def test_squall_run_of_a_kestra_flow_on_the_docker_runner(engine: DockerEngine, tmp_path: Path) -> None:
    """``squall run`` as a user types it, with only DOCKER_HOST pointing at the fake daemon."""
    import subprocess
    import sys

    from tests.integration.service_helpers import registered_runners

    tools = tmp_path / "image-bin"
    tools.mkdir()
    (tools / "python").symlink_to(sys.executable)
    engine.image_paths["python:3.12-slim"] = f"{tools}:/usr/bin:/bin"
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    env = {
        **os.environ,
        **registered_runners(tmp_path),
        "DOCKER_HOST": engine.url,
        "SQUALL_DOCKER_DIR": str(tmp_path / "docker-jobs"),
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
    }
    created, removed = (
        engine.calls.get("POST /containers/create", 0),
        engine.calls.get("DELETE /containers/{id}", 0),
    )
    command = [sys.executable, "-c", "from control_plane.cli import main; main()", "run", str(flow)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vars.a=1 exit=0" in done.stdout
    assert engine.calls["POST /containers/create"] == created + 1, "the task ran in one container"
    assert engine.calls["DELETE /containers/{id}"] == removed + 1, "cleanup removed it (delete: true)"


def test_squall_run_without_a_daemon_fails_the_task_naming_docker_host(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.integration.service_helpers import registered_runners

    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    env = {
        **os.environ,
        **registered_runners(tmp_path),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "SQUALL_DOCKER_DIR": str(tmp_path / "docker-jobs"),
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
    }
    command = [sys.executable, "-c", "from control_plane.cli import main; main()", "run", str(flow)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert (
        f"the socket {tmp_path}/no-docker.sock (from DOCKER_HOST) does not exist" in done.stdout + done.stderr
    )


def test_a_tasks_own_host_is_used_for_every_call_on_its_job(engine: DockerEngine, tmp_path: Path) -> None:
    """``taskRunner.host`` wins over the runner's daemon for submit, poll, logs and cleanup alike."""
    runner = DockerRunner(base_url=f"unix://{tmp_path}/elsewhere.sock", base_dir=tmp_path / "jobs")
    handle = runner.submit(_spec("echo on-the-tasks-host", options={"host": engine.url}))
    assert handle.data["host"] == engine.url
    assert wait_terminal(runner, handle, 30).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(runner, handle)] == ["on-the-tasks-host"]
    runner.cleanup(handle)
    assert engine.container(handle.id) is None


def test_squall_validate_names_the_file_line_and_property_it_cannot_honour(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.integration.service_helpers import registered_runners

    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: bad-docker\n"
        "namespace: squall.compat.docker\n"
        "tasks:\n"
        "  - id: sh\n"
        "    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    taskRunner:\n"
        "      type: io.kestra.plugin.scripts.runner.docker.Docker\n"
        "      config: '{\"auths\": {}}'\n"
        "      memory:\n"
        "        kernelMemory: 1g\n"
        "    commands: [echo hi]\n"
    )
    env = {**os.environ, **registered_runners(tmp_path)}
    command = [sys.executable, "-c", "from control_plane.cli import main; main()", "validate", str(flow)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert f"{flow}:8:" in said and "tasks[0].taskRunner.config" in said and "use credentials" in said
    assert f"{flow}:10:" in said and "memory.kernelMemory" in said

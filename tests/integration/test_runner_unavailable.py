"""A runner whose extra is not installed fails its own jobs, one line each, and wedges nothing else.

The runners here stand for a cloud runner on a base install (no boto3): their construction,
or their first call (runners import their SDK lazily), raises ModuleNotFoundError. The real
CLI path, with boto3 blocked in a subprocess, is in ``test_cli_local.py``.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from control_plane.engine.states import State
from control_plane.service.runners import RunnerRegistry, RunnerUnavailableError
from control_plane.service.service import Service
from control_plane.service.storage import LocalStorage
from control_plane.store.base import JobPhase
from control_plane.store.sqlite import SqliteStore
from runners.base import JobSpec, PushEvent, Runner
from runners.process import ProcessRunner
from runners.testing.simulated import EVENT_SOURCE, SimulatedRunner
from tests.integration.service_helpers import run_of

SHELL = "io.kestra.plugin.scripts.shell.Commands"


def flow(flow_id: str, runner: str | None) -> str:
    # templated: flow validation checks a literal type against the installed entry points
    block = f"\n    taskRunner:\n      type: \"{{{{ '{runner}' }}}}\"" if runner else ""
    return (
        f"id: {flow_id}\nnamespace: t\ntasks:\n  - id: a\n    type: {SHELL}{block}\n    commands: [echo hi]\n"
    )


def missing(module: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named '{module}'", name=module)


class NeedsBoto3(SimulatedRunner):
    """Cannot even be built: its constructor imports boto3."""

    name: ClassVar[str] = "needs-boto3"

    def __init__(self, **_: Any) -> None:
        raise missing("boto3")


def imports_on_first_use(module: str) -> type[SimulatedRunner]:
    """A runner built fine whose first call imports ``module`` (as the AWS Batch runner does)."""

    class ImportsOnFirstUse(SimulatedRunner):
        def submit(self, spec: JobSpec) -> Any:
            raise missing(module)

        find = submit

    return ImportsOnFirstUse


class Remote(SimulatedRunner):
    """A working backend without push events: its handles are written after submit."""

    event_keys: ClassVar[frozenset[str]] = frozenset()
    carries_handles: ClassVar[bool] = False


class Rig:
    """Services on one SQLite file, like separate processes with different installs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.stores: list[SqliteStore] = []

    def service(self, classes: Mapping[str, type[Runner]], **options: Any) -> Service:
        store = SqliteStore(self.tmp_path / "squall.db")
        self.stores.append(store)
        registry = RunnerRegistry(
            {"process": {"base_dir": self.tmp_path / "jobs"}},
            classes=lambda: {"process": ProcessRunner, **classes},
        )
        return Service(store, runners=registry, storage=LocalStorage(self.tmp_path / "storage"), **options)

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def run(service: Service, source: str) -> Any:
    record = service.deploy(source, "test.yaml")
    started = service.start(record.namespace, record.id)
    return service.run(started.id, deadline=time.monotonic() + 60)


@pytest.mark.parametrize(
    ("cls", "needs"),
    [
        (NeedsBoto3, "the aws extra: pip install 'squall[aws]'"),
        (imports_on_first_use("google.cloud.batch_v1"), "the gcp extra: pip install 'squall[gcp]'"),
        (imports_on_first_use("kubernetes"), "the k8s extra: pip install 'squall[k8s]'"),
        (imports_on_first_use("azure.batch"), "the azure extra: pip install 'squall[azure]'"),
        (imports_on_first_use("acme_sdk"), "the Python module 'acme_sdk', which is not installed"),
    ],
    ids=["construction", "gcp", "k8s", "azure", "other"],
)
def test_missing_dependency_fails_only_that_task_with_one_line(
    rig: Rig, cls: type[SimulatedRunner], needs: str
) -> None:
    message = f"task runner 'broken' needs {needs}"
    service = rig.service({"broken": cls})
    failed = run(service, flow("uses-broken", "broken"))
    a = run_of(failed, "a")
    assert failed.state is State.FAILED and a.state is State.FAILED
    assert (a.error or "").startswith(message) and "\n" not in (a.error or "")
    assert service.store.active_jobs() == []
    # the same service (and store) still runs everything else
    assert run(service, flow("uses-process", None)).state is State.SUCCESS
    assert run(service, flow("uses-broken", "broken")).state is State.FAILED


def stuck_execution(rig: Rig, *, handed_to_tick: bool) -> tuple[str, str]:
    """An execution whose job a process with a working runner left active; (execution id, job name)."""
    remote = rig.service({"remote": Remote}, submit_budget=0 if handed_to_tick else None)
    record = remote.deploy(flow("remote", "remote"), "test.yaml")
    execution = remote.start(record.namespace, record.id)
    remote.flush()
    (job,) = remote.store.active_jobs()
    assert job.phase is (JobPhase.SUBMITTING if handed_to_tick else JobPhase.SUBMITTED)
    return execution.id, job.name


@pytest.mark.parametrize("handed_to_tick", [False, True], ids=["submitted", "submitting"])
def test_jobs_of_an_unbuildable_runner_wedge_nothing_and_kill_ends_them(
    rig: Rig, handed_to_tick: bool, caplog: pytest.LogCaptureFixture
) -> None:
    execution_id, job_name = stuck_execution(rig, handed_to_tick=handed_to_tick)
    service = rig.service({"remote": NeedsBoto3})
    # the loops go on: poll skips the runner it cannot build (run() would recover, and so fail,
    # a SUBMITTING job: test_recovering_... below)
    assert service.step() is False
    report = service.tick(reconcile_after=timedelta(0), submit_grace=timedelta(days=1), recover_limit=0)
    assert report.ended == 0
    assert service.get(execution_id).state is State.RUNNING

    with caplog.at_level(logging.WARNING, logger="squall.service"):
        killed = service.kill(execution_id)
        final = service.run(execution_id, deadline=time.monotonic() + 30)
    assert killed.state.terminal and final.state is State.KILLED
    assert run_of(final, "a").state is State.KILLED
    job = service.store.get_job(job_name)
    assert job is not None and job.phase is JobPhase.DONE
    assert service.store.active_jobs() == []
    needs = "task runner 'remote' needs the aws extra: pip install 'squall[aws]'"
    warning = f"job {job_name} was not cancelled: {needs}"
    assert any(warning in r.getMessage() for r in caplog.records)
    logged = [x for x in service.store.read_logs(execution_id, limit=100).items if warning in x.message]
    assert [str(x.level) for x in logged] == ["WARN"]
    assert run(service, flow("other", None)).state is State.SUCCESS


def test_recovering_a_job_of_an_unbuildable_runner_fails_only_it(rig: Rig) -> None:
    """What ``squall run`` does first on a store a crash left with such a job SUBMITTING."""
    execution_id, _ = stuck_execution(rig, handed_to_tick=True)
    service = rig.service({"remote": NeedsBoto3})
    assert run(service, flow("other", None)).state is State.SUCCESS  # run() recovers first
    stuck = service.get(execution_id)
    assert stuck.state is State.FAILED
    assert run_of(stuck, "a").error == "task runner 'remote' needs the aws extra: pip install 'squall[aws]'"


def test_events_for_an_unbuildable_runner_are_not_understood_without_raising(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    class Announcing(NeedsBoto3):
        event_keys: ClassVar[frozenset[str]] = frozenset({"squall.simulated"})

    registry = RunnerRegistry(classes=lambda: {"announcing": Announcing, "simulated": SimulatedRunner})
    sim = registry.get("simulated")
    assert isinstance(sim, SimulatedRunner)
    handle = sim.submit(JobSpec(name="j", command=("true",)))
    with caplog.at_level(logging.WARNING, logger="squall.runners"):
        parsed = registry.parse_event(PushEvent(EVENT_SOURCE, sim.event(handle.name)))
    assert parsed is not None and parsed.runner == "simulated"  # the other runner still answers
    assert any("needs the aws extra" in r.getMessage() for r in caplog.records)
    with pytest.raises(RunnerUnavailableError, match="needs the aws extra"):
        registry.get("announcing")


def test_a_plugin_whose_module_cannot_be_imported_hides_no_other_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry points are loaded for real: one broken plugin leaves the built-in runners usable."""
    dist = tmp_path / "site" / "acme_squall_runner-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-squall-runner\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [squall.runners]
            acme = acme_squall_runner:AcmeRunner
            """
        )
    )
    (tmp_path / "site" / "acme_squall_runner.py").write_text("import acme_cloud_sdk\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "acme_squall_runner", raising=False)
    registry = RunnerRegistry({"process": {"base_dir": tmp_path / "jobs"}})
    assert isinstance(registry.get("process"), ProcessRunner)
    with pytest.raises(RunnerUnavailableError, match="needs the Python module 'acme_cloud_sdk'"):
        registry.get("acme")


def test_flow_validation_names_a_plugin_that_cannot_be_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken plugin is a violation on the flow that uses it, and no crash for flows that do not."""
    from control_plane.errors import FlowValidationError
    from control_plane.flows.loader import parse_flow

    dist = tmp_path / "site" / "acme_squall_runner-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-squall-runner\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[squall.runners]\nacme = acme_squall_runner:AcmeRunner\n")
    (tmp_path / "site" / "acme_squall_runner.py").write_text("import acme_cloud_sdk\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "acme_squall_runner", raising=False)
    flow = (
        "id: f\nnamespace: t\ntasks:\n  - id: s\n    type: io.kestra.plugin.scripts.shell.Commands\n"
        "    commands: [ls]\n    taskRunner:\n      type: {runner}\n"
    )
    parse_flow(flow.format(runner="io.kestra.plugin.core.runner.Process"), "ok.yaml")
    with pytest.raises(
        FlowValidationError, match=r"broken\.yaml:8:\d+: .*acme.*cannot be loaded.*acme_cloud_sdk"
    ):
        parse_flow(flow.format(runner="acme"), "broken.yaml")


class RefusesCancel(Remote):
    """A backend whose cancel fails for good (retries spent): AccessDenied, an outage."""

    def cancel(self, handle: Any) -> None:
        from runners.base import RunnerError

        raise RunnerError(
            "AccessDeniedException: not authorized to perform batch:TerminateJob", runner="remote"
        )


def test_kill_never_crashes_when_the_backend_refuses_to_cancel(rig: Rig) -> None:
    execution_id, job_name = stuck_execution(rig, handed_to_tick=False)
    service = rig.service({"remote": RefusesCancel})
    killing = service.kill(execution_id)  # no traceback: the refusal is logged on the execution
    assert killing.state is State.KILLING
    warning = f"could not cancel job {job_name} yet: AccessDeniedException"
    service.flush()
    assert any(warning in x.message for x in service.store.read_logs(execution_id, limit=100).items)
    job = service.store.get_job(job_name)
    assert job is not None and job.phase is not JobPhase.DONE  # still followed: it may be running


def test_a_missing_google_sdk_says_how_to_get_it_on_lambda_too() -> None:
    from control_plane.packaging import OPTIONAL_EXTRAS
    from control_plane.service.runners import LAMBDA_OPTIONAL_EXTRAS, RunnerUnavailableError

    assert set(OPTIONAL_EXTRAS) == LAMBDA_OPTIONAL_EXTRAS  # the message's list is the packager's
    error = RunnerUnavailableError("google-batch", ImportError("no google", name="google.cloud.batch_v1"))
    assert str(error) == (
        "task runner 'google-batch' needs the gcp extra: pip install 'squall[gcp]' "
        "(on Lambda: a zip built with `squall package --extra gcp`)"
    )
    error = RunnerUnavailableError("kubernetes", ImportError("no kubernetes", name="kubernetes"))
    assert str(error).endswith("(on Lambda: a zip built with `squall package --extra k8s`)")
    error = RunnerUnavailableError("azure-batch", ImportError("no azure", name="azure.batch"))
    assert str(error).endswith("(on Lambda: a zip built with `squall package --extra azure`)")

"""A local runtime on a temporary directory, and small helpers for the service tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from control_plane.conformance import execution_logs
from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.runtime import Runtime, Settings, load_settings, local_settings, open_local


def runtime(tmp_path: Path, **options: Any) -> Runtime:
    """The local runtime on ``tmp_path`` (``squall run``'s wiring); ``options``: Service keywords."""
    runners = {"process": {"base_dir": tmp_path / "jobs", "grace": _grace()}}
    return open_local(
        local_settings(tmp_path / "squall.db", data_dir=str(tmp_path), runners=runners), **options
    )


def _grace() -> Any:
    from datetime import timedelta

    return timedelta(seconds=1)


def deploy_and_run(rt: Runtime, source: str, inputs: dict[str, Any] | None = None) -> Execution:
    record = rt.service.deploy(source, "test.yaml")
    started = rt.service.start(record.namespace, record.id, inputs)
    return rt.service.run(started.id, deadline=time.monotonic() + 120)


def run_of(execution: Execution, task_id: str) -> TaskRun:
    runs = [tr for tr in execution.ordered_taskruns() if tr.task_id == task_id]
    assert len(runs) == 1, f"{task_id}: {len(runs)} task runs"
    return runs[0]


def logs(rt: Runtime, execution_id: str) -> list[LogLine]:
    return execution_logs(rt, execution_id)


def messages(rt: Runtime, execution_id: str, task_id: str | None = None) -> list[str]:
    return [x.message for x in logs(rt, execution_id) if task_id is None or x.task_id == task_id]


def wait_for(condition: Callable[[], bool], deadline_s: float = 20.0, what: str = "condition") -> None:
    """Wait on a condition with a deadline (the short pause only yields the CPU between checks)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def iter_states(execution: Execution) -> Iterator[tuple[str, str]]:
    for tr in execution.ordered_taskruns():
        yield tr.task_id, str(tr.state)


def server_settings(tmp_path: Path, token: str, **overrides: Any) -> Settings:
    """A `squall server`'s settings for a test: SQLite under ``tmp_path``, bearer-token auth."""
    options: dict[str, Any] = {
        "db": str(tmp_path / "squall.db"),
        "data_dir": str(tmp_path / "data"),
        "auth": "token",
        "api_token": token,
        **overrides,
    }
    return load_settings({}, **options)


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a process the test stops by signal, as a person at a terminal would.

    A process started in the background by a non-interactive shell (a CI script's ``&``) or by
    ``nohup`` inherits SIGINT or SIGHUP ignored, and squall keeps what it inherits (as a user
    of ``nohup`` wants): the test restores the defaults a terminal gives.
    """
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def squall_run_on_google_fake(
    sample: str, runner: str, fake: Any, gcs: Any, tmp_path: Path, *args: str, log_grace: float = 3.0
) -> Any:
    """``squall run samples/<sample> *args`` in its own process, as a user types it, with only
    ``SQUALL_RUNNERS`` pointing ``runner`` at a Google fake and fake-gcs-server.

    The samples name the bucket ``my-squall-staging`` and the image ``python:3.12-slim``; the
    bucket is made, and the fake's ``images`` give that image a ``python``. Returns the
    CompletedProcess.
    """
    import contextlib
    import json
    import subprocess
    import sys

    from google.api_core.exceptions import Conflict

    with contextlib.suppress(Conflict):
        gcs.client().create_bucket("my-squall-staging")
    tools = tmp_path / "image-bin"
    tools.mkdir(exist_ok=True)
    if not (tools / "python").exists():
        (tools / "python").symlink_to(sys.executable)
    fake.images["python:3.12-slim"] = f"{tools}:/usr/bin:/bin"
    config = {
        runner: {
            "endpoint": fake.endpoint,
            "storage_endpoint": gcs.endpoint,
            "anonymous": True,
            "log_grace": log_grace,
        }
    }
    env = {**os.environ, "SQUALL_DATA_DIR": str(tmp_path / "data"), "SQUALL_RUNNERS": json.dumps(config)}
    path = Path(__file__).resolve().parents[2] / "samples" / sample
    command = [sys.executable, "-c", "from control_plane.cli import main; main()", "run", str(path), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def registered_runners(tmp_path: Path) -> dict[str, str]:
    """Environment additions under which every runner pyproject.toml declares is found by its
    entry point in a subprocess (see :func:`tests.unit.runner_docs.checkout_entry_points`)."""
    from tests.unit.runner_docs import checkout_entry_points

    root = Path(__file__).resolve().parents[2]
    site = checkout_entry_points(tmp_path / "entry-points")
    paths = [*([str(site)] if site else []), str(root), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def squall_run_on_azure_fake(
    sample: str, fake: Any, azurite: Any, tmp_path: Path, *args: str, log_grace: float = 3.0
) -> Any:
    """``squall run samples/<sample> *args`` in its own process, as a user types it, with only
    ``SQUALL_RUNNERS`` pointing the Azure Batch runner at the Batch fake and Azurite.

    The deployment's part (account, endpoint, keys, price table) is in ``SQUALL_RUNNERS``, as the
    sample says; its pool and container are the sample's (``squall-pool``, ``squall-staging``,
    made here). The fake's ``images`` give ``python:3.12-slim`` a ``python``.
    """
    import contextlib
    import json
    import subprocess
    import sys

    from azure.core.exceptions import ResourceExistsError

    from tests.emulators.azure_batch import ACCOUNT_KEY
    from tests.emulators.azurite import ACCOUNT
    from tests.emulators.azurite import ACCOUNT_KEY as STORAGE_KEY

    with contextlib.suppress(ResourceExistsError):
        azurite.service().create_container("squall-staging")
    tools = tmp_path / "image-bin"
    tools.mkdir(exist_ok=True)
    if not (tools / "python").exists():
        (tools / "python").symlink_to(sys.executable)
    fake.images["python:3.12-slim"] = f"{tools}:/usr/bin:/bin"
    blob = azurite.endpoint.format(account=ACCOUNT)
    defaults = {
        "account": fake.account,
        "endpoint": fake.endpoint,
        "accessKey": ACCOUNT_KEY,
        "blobStorage": {
            "connectionString": f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
            f"AccountKey={STORAGE_KEY};BlobEndpoint={blob};"
        },
        "vmSize": "Standard_D2s_v3",
        "taskSlotsPerNode": 2,
        "prices": {"Standard_D2s_v3": {"hour": 0.096, "vcpus": 2, "gib": 8}},
    }
    config = {"azure-batch": {"defaults": defaults, "log_grace": log_grace}}
    env = {
        **os.environ,
        **registered_runners(tmp_path),
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
        "SQUALL_RUNNERS": json.dumps(config),
    }
    path = Path(__file__).resolve().parents[2] / "samples" / sample
    command = [sys.executable, "-c", "from control_plane.cli import main; main()", "run", str(path), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

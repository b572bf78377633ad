"""runners/kestra_lib: Squall's ``kestra`` module, and how python tasks get it without installing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control_plane.service.scripts import build_job_spec
from control_plane.service.storage import LocalStorage
from runners import kestra_lib, markers
from runners.base import JobSpec


def spec_of(storage: LocalStorage, properties: dict[str, Any], task_type: str) -> tuple[str, JobSpec]:
    return build_job_spec(
        name="job-1",
        task_type=task_type,
        properties=properties,
        timeout=None,
        output_prefix=storage.prefix("t", "f", "e", "tr", 1),
        labels={},
        storage=storage,
    )


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


PY_SCRIPT = "io.kestra.plugin.scripts.python.Script"
K8S = {"type": "io.kestra.plugin.ee.kubernetes.runner.Kubernetes"}


def test_the_process_runner_gets_the_module_folder_first_on_pythonpath(storage: LocalStorage) -> None:
    runner, spec = spec_of(storage, {"script": "print(1)", "env": {"PYTHONPATH": "/mine"}}, PY_SCRIPT)
    assert runner == "process"
    assert spec.env["PYTHONPATH"] == f"{kestra_lib.LIB_DIR}:/mine"
    assert "kestra.py" not in spec.input_files


def test_the_hosts_pythonpath_is_kept_when_the_task_sets_none(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/host/libs")
    _, spec = spec_of(storage, {"script": "print(1)"}, PY_SCRIPT)
    assert spec.env["PYTHONPATH"] == f"{kestra_lib.LIB_DIR}:/host/libs"
    monkeypatch.delenv("PYTHONPATH")
    _, spec = spec_of(storage, {"script": "print(1)"}, PY_SCRIPT)
    assert spec.env["PYTHONPATH"] == str(kestra_lib.LIB_DIR)


def test_a_container_runner_gets_the_module_as_an_input_file(storage: LocalStorage) -> None:
    runner, spec = spec_of(
        storage, {"script": "from kestra import Kestra\nKestra.outputs({})", "taskRunner": K8S}, PY_SCRIPT
    )
    assert runner == "kubernetes"
    assert spec.input_files["kestra.py"] == kestra_lib.module_source()
    assert "PYTHONPATH" not in spec.env


@pytest.mark.parametrize(
    ("task_type", "props", "staged"),
    [
        (PY_SCRIPT, {"script": "print('no kestra here')"}, False),
        (PY_SCRIPT, {"script": "import os\n  import kestra\n"}, True),
        (PY_SCRIPT, {"script": "x = 'kestra'  # the word alone"}, False),
        (PY_SCRIPT, {"script": "import kestrel"}, False),
        (
            "io.kestra.plugin.scripts.python.Commands",
            {"commands": ["python main.py"], "inputFiles": {"main.py": "from kestra import Kestra"}},
            True,
        ),
        ("io.kestra.plugin.scripts.python.Commands", {"commands": ["python -c 'import kestra'"]}, True),
    ],
)
def test_container_jobs_carry_the_module_only_when_something_imports_it(
    storage: LocalStorage, task_type: str, props: dict[str, Any], staged: bool
) -> None:
    _, spec = spec_of(storage, {**props, "taskRunner": K8S}, task_type)
    assert ("kestra.py" in spec.input_files) is staged


def test_the_users_own_kestra_module_wins(storage: LocalStorage) -> None:
    props = {"script": "import kestra", "taskRunner": K8S, "inputFiles": {"kestra.py": "MINE = 1"}}
    _, spec = spec_of(storage, props, PY_SCRIPT)
    assert spec.input_files["kestra.py"] == b"MINE = 1"
    props = {"script": "import kestra", "taskRunner": K8S, "inputFiles": {"kestra/__init__.py": "MINE = 1"}}
    _, spec = spec_of(storage, props, PY_SCRIPT)
    assert "kestra.py" not in spec.input_files


def test_shell_tasks_get_nothing(storage: LocalStorage) -> None:
    _, spec = spec_of(
        storage, {"commands": ["true"], "taskRunner": K8S}, "io.kestra.plugin.scripts.shell.Commands"
    )
    assert "kestra.py" not in spec.input_files


def run_with_lib(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script next to a staged copy of the module, as a container job does."""
    (tmp_path / "kestra.py").write_bytes(kestra_lib.module_source())
    (tmp_path / "script.py").write_text(code)
    return subprocess.run(
        [sys.executable, "-E", "-s", "script.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_call_prints_a_marker_squall_reads(tmp_path: Path) -> None:
    done = run_with_lib(
        tmp_path,
        "from kestra import Kestra\n"
        "Kestra.outputs({'a': 1, 'nested': {'b': [1, 2]}})\n"
        "Kestra.counter('rows', 3, {'table': 't'})\n"
        "Kestra.timer('took', 1.5)\n"
        "Kestra.timer('call', lambda: None)\n"
        "Kestra.logger().warning('careful\\nsecond line')\n"
        "Kestra.logger().info('again')\n",
    )
    assert done.returncode == 0, done.stderr
    marker = markers.collect(done.stdout.splitlines())
    assert marker.outputs == {"a": 1, "nested": {"b": [1, 2]}}
    assert [(m["name"], m["type"]) for m in marker.metrics] == [
        ("rows", "counter"),
        ("took", "timer"),
        ("call", "timer"),
    ]
    assert marker.metrics[0]["value"] == 3 and marker.metrics[0]["tags"] == {"table": "t"}
    assert marker.metrics[1]["value"] == 1.5 and marker.metrics[2]["value"] >= 0
    assert [(log["level"], log["message"]) for log in marker.logs] == [
        ("WARN", "careful\nsecond line"),
        ("INFO", "again"),
    ]
    assert len(done.stdout.splitlines()) == 6  # one line per call: a newline in a message stays escaped


def test_a_value_json_cannot_encode_is_sent_as_its_text(tmp_path: Path) -> None:
    done = run_with_lib(
        tmp_path,
        "import datetime\nfrom kestra import Kestra\nKestra.outputs({'d': datetime.date(2024, 1, 2)})\n",
    )
    assert done.returncode == 0, done.stderr
    assert markers.collect(done.stdout.splitlines()).outputs == {"d": "2024-01-02"}


@pytest.mark.parametrize("bad", ["Kestra.outputs(3)", "Kestra.counter()"])
def test_misuse_fails_the_script_loudly(tmp_path: Path, bad: str) -> None:
    done = run_with_lib(tmp_path, f"from kestra import Kestra\n{bad}\n")
    assert done.returncode != 0
    assert "Error" in done.stderr


@pytest.mark.parametrize(
    ("task_type", "props", "image"),
    [
        ("io.kestra.plugin.scripts.shell.Commands", {"commands": ["echo hi"]}, "ubuntu"),
        (PY_SCRIPT, {"script": "print(1)"}, "python"),
        ("io.kestra.plugin.scripts.node.Script", {"script": "1"}, "node"),
        (PY_SCRIPT, {"script": "print(1)", "containerImage": "python:3.12-slim"}, "python:3.12-slim"),
    ],
)
def test_the_docker_runner_gets_kestras_default_image_per_language(
    storage: LocalStorage, task_type: str, props: dict[str, Any], image: str
) -> None:
    docker = {"type": "io.kestra.plugin.scripts.runner.docker.Docker"}
    runner, spec = spec_of(storage, {**props, "taskRunner": docker}, task_type)
    assert (runner, spec.image) == ("docker", image)


def test_other_runners_get_no_default_image(storage: LocalStorage) -> None:
    _, spec = spec_of(storage, {"commands": ["true"]}, "io.kestra.plugin.scripts.shell.Commands")
    assert spec.image is None

"""A WorkingDirectory on a container runner: the Kubernetes runner against its fake and moto S3.

``squall run`` as a user types it, with the deployment storage on (moto) S3, the storage the
Kubernetes runner writes: the first child's file, the WorkingDirectory's inputFiles and the
namespace files it includes reach the second child. Both children run in one pod (ADR 0016,
:mod:`control_plane.service.one_job`); with a ``timeout`` on the second, each runs in its own
pod and the directory travels through the storage (ADR 0012, :mod:`control_plane.service.workspace`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulators.executor import MINIMAL_PATH
from tests.integration.test_kubernetes_runner import (  # noqa: F401  (k8s_env is a fixture)
    IMAGE,
    LOG_GRACE,
    ROOT,
    TOOLS,
    K8sEnv,
    _entry_point_dir,
    _s3,
    k8s_env,
)

pytest.importorskip("kubernetes")

FLOW = """
id: shared
namespace: squall.workdir
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    inputFiles:
      seed.txt: "seeded by the WorkingDirectory"
    namespaceFiles:
      include:
        - /scripts/**
    tasks:
      - id: first
        type: io.kestra.plugin.scripts.shell.Commands
        containerImage: {image}
        taskRunner:
          type: io.kestra.plugin.ee.kubernetes.runner.Kubernetes
        commands:
          - mkdir -p out
          - echo "written by first" > out/first.txt
      - id: second
        type: io.kestra.plugin.scripts.shell.Commands
        containerImage: {image}{timeout}
        taskRunner:
          type: io.kestra.plugin.ee.kubernetes.runner.Kubernetes
        outputFiles:
          - out/*
        inputFiles:
          own.txt: "second's own input"
        commands:
          - >-
            echo "second reads: $(cat out/first.txt) / $(cat seed.txt) / $(sh scripts/hello.sh)
            / $(cat own.txt)"
          - test ! -e other.txt
          - echo "second too" > out/second.txt
  - id: files
    type: io.kestra.plugin.core.log.Log
    message: "second's files: {{{{ outputs.second.outputFiles | keys | join(',') }}}}"
"""


@pytest.mark.parametrize("one_job", [True, False], ids=["one-pod", "one-pod-per-child"])
def test_a_working_directory_shares_its_files_on_kubernetes(
    k8s_env: K8sEnv,  # noqa: F811  (the imported fixture)
    tmp_path: Path,
    one_job: bool,
) -> None:
    k8s_env.fake.images[IMAGE] = {"PATH": MINIMAL_PATH}
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
                "stagingUri": f"s3://{k8s_env.bucket}/wd-staging",
                "toolsImage": TOOLS,
                "deployment": "wd",
            },
            "tools_env": tools_env,
            "s3_endpoint": k8s_env.s3_endpoint,
            "log_grace": LOG_GRACE,
        }
    }
    flow = tmp_path / "shared.yaml"
    flow.write_text(FLOW.format(image=IMAGE, timeout="" if one_job else "\n        timeout: PT5M"))
    extra = _entry_point_dir(tmp_path)
    path = os.pathsep.join(p for p in (extra, str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        **tools_env,
        "PYTHONPATH": path,
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
        "SQUALL_STORAGE": f"s3://{k8s_env.bucket}/wd-data/",
        "SQUALL_STORAGE_ENDPOINT": k8s_env.s3_endpoint,
        "SQUALL_RUNNERS": json.dumps(config),
    }
    # Namespace files where the API keeps them (_files/<namespace>/...) in the S3 storage.
    s3 = _s3(k8s_env.s3_endpoint)
    s3.put_object(
        Bucket=k8s_env.bucket, Key="wd-data/_files/squall.workdir/scripts/hello.sh", Body=b"echo hi"
    )
    s3.put_object(Bucket=k8s_env.bucket, Key="wd-data/_files/squall.workdir/other.txt", Body=b"excluded")
    created = k8s_env.fake.calls.get("CREATE jobs", 0)
    command = [sys.executable, "-c", "from control_plane.cli import main; main()", "run", str(flow)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, (done.stdout, done.stderr)
    expected = "second reads: written by first / seeded by the WorkingDirectory / hi / second's own input"
    assert expected in done.stdout, done.stdout
    # One Kubernetes job in all, or one per child (the directory travels through S3 between them).
    assert k8s_env.fake.calls.get("CREATE jobs", 0) - created == (1 if one_job else 2)
    # second's outputs list what its own glob matches: both children's files, not seed.txt.
    assert "second's files: out/first.txt,out/second.txt" in done.stdout, done.stdout

"""samples/cloud-run.yaml and docs/runners/cloud-run.md against the Cloud Run runner.

The sample must validate and build the Cloud Run job it describes; the doc's options table must
list every option of ``CloudRunOptions`` with its default and whose name it is; its snippet
must be the sample's; its failure table must cover every failure the runner declares.
No Google call is made.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.flows.aliases import RUNNER_ALIASES
from runners.base import JobSpec, validate_options
from runners.cloud_run import MOUNT, CloudRunOptions, CloudRunRunner, cloud_run_job_id
from runners.cloud_run import options as options_module
from tests.unit.runner_docs import check_options_table, check_snippet, options_table

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "cloud-run.yaml"
DOC = ROOT / "docs" / "runners" / "cloud-run.md"
TYPES = sorted(name for name, runner in RUNNER_ALIASES.items() if runner == "cloud-run" != name)


def _task() -> dict[str, Any]:
    flow = yaml.safe_load(SAMPLE.read_text())
    [task] = [t for t in flow["tasks"] if "taskRunner" in t]
    return dict(task)


def _task_options() -> dict[str, Any]:
    return {k: v for k, v in _task()["taskRunner"].items() if k != "type"}


def test_the_sample_validates() -> None:
    from typer.testing import CliRunner

    from control_plane.cli import app

    result = CliRunner().invoke(app, ["validate", str(SAMPLE)])
    assert result.exit_code == 0, result.output


def test_the_sample_names_every_option_it_needs() -> None:
    """Literal options: `squall validate` checks them all, and the task runs without deployment defaults."""
    task = _task()
    assert task["taskRunner"]["type"] in TYPES
    assert not any("{{" in str(v) for v in _task_options().values())
    opts = validate_options(CloudRunRunner, _task_options())
    assert isinstance(opts, CloudRunOptions)
    assert (opts.resources.vcpus, opts.resources.gib) == (2.0, 4.0)
    assert opts.timeout == timedelta(minutes=15)
    assert opts.labels == {"team": "finance", "cost-center": "cc-5678"}
    assert opts.pricing is not None and opts.pricing.vcpu_hour > 0 and opts.pricing.gib_hour > 0
    assert task["inputFiles"] and task["outputFiles"] == ["revenue.json"]


def test_the_sample_builds_the_cloud_run_job_the_doc_describes() -> None:
    pytest.importorskip("google.cloud.run_v2")
    from runners.cloud_run.runner import TOKEN
    from runners.google_runner import document

    opts = validate_options(CloudRunRunner, _task_options())
    assert isinstance(opts, CloudRunOptions)
    spec = JobSpec(
        name="daily-revenue-summarise-3k2j4h5a",
        command=("/bin/sh", "-c", "python main.py"),
        image=_task()["containerImage"],
        input_files={"orders.csv": b"day,region\n"},
        output_files=("revenue.json",),
        timeout=timedelta(minutes=20),
        labels={"squall.io/flow": "daily-revenue"},
        options=_task_options(),
    )
    staging = f"squall/{cloud_run_job_id(spec.name)}"
    job = CloudRunRunner(anonymous=True)._job(spec, opts, staging, {}, {})
    doc = document(job)
    assert doc["startExecutionToken"] == TOKEN
    execution = doc["template"]
    assert (execution.get("taskCount"), execution.get("parallelism")) == (1, 1)
    task = execution["template"]
    assert task["timeout"] == "900s"  # the shorter of the task's timeout (PT20M) and the option's (PT15M)
    assert task["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert task["serviceAccount"] == "squall-run-job@my-project.iam.gserviceaccount.com"
    assert task.get("maxRetries", 0) == 0
    [container] = task["containers"]
    assert container["image"] == "python:3.12-slim"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert container["volumeMounts"] == [{"name": "squall", "mountPath": MOUNT}]
    assert task["volumes"] == [
        {"name": "squall", "gcs": {"bucket": "my-squall-staging", "mountOptions": [f"only-dir={staging}"]}}
    ]
    labels = doc["labels"]
    assert (
        labels["team"] == "finance"
        and labels["squall-managed"] == "true"
        and labels["squall-deployment"] == "squall"
    )
    assert execution["labels"] == labels  # the executions carry the deployment label the list filters on


def test_the_docs_snippet_is_the_samples() -> None:
    check_snippet(DOC, _task()["taskRunner"])


def test_the_options_table_lists_every_option_with_its_default_and_origin() -> None:
    check_options_table(DOC, CloudRunOptions, options_module, kestra_until="the rest are")


def test_the_doc_says_what_is_refused_and_why() -> None:
    table = options_table(DOC)
    assert "no effect" in table["waitForLogInterval"][2]
    assert "refused" in table["resume"][2]
    assert "GEN2" in table["executionEnvironment"][2] and "Cloud Storage" in table["executionEnvironment"][2]
    with pytest.raises(ValueError, match="reattaches"):
        CloudRunOptions.model_validate({**_task_options(), "resume": False})
    with pytest.raises(ValueError):
        CloudRunOptions.model_validate({**_task_options(), "executionEnvironment": "GEN1"})
    assert "no effect" in table["completionCheckInterval"][2]
    assert "refused" in table["syncWorkingDirectory"][2]
    with pytest.raises(ValueError, match="syncWorkingDirectory"):
        CloudRunOptions.model_validate({**_task_options(), "syncWorkingDirectory": True})
    with pytest.raises(ValueError, match="two ways to reach a VPC"):
        CloudRunOptions.model_validate(
            {**_task_options(), "vpcAccessConnector": "projects/p/locations/r/connectors/c", "network": "vpc"}
        )


def test_kestra_network_and_wait_options_reach_the_job() -> None:
    """Direct VPC egress (Kestra's network/subnetwork) and waitUntilCompletion as the limit."""
    pytest.importorskip("google.cloud.run_v2")
    from runners.google_runner import document

    options = {
        **{k: v for k, v in _task_options().items() if k != "timeout"},
        "network": "projects/my-project/global/networks/my-vpc",
        "subnetwork": "projects/my-project/regions/europe-west1/subnetworks/my-subnet",
        "vpcEgress": "ALL_TRAFFIC",
        "waitUntilCompletion": "PT30M",
        "completionCheckInterval": "PT5S",
    }
    opts = validate_options(CloudRunRunner, options)
    assert isinstance(opts, CloudRunOptions)
    spec = JobSpec(name="vpc-task-1", command=("/bin/sh", "-c", "true"), options=options)
    task = document(CloudRunRunner(anonymous=True)._job(spec, opts, "squall/x", {}, {}))["template"][
        "template"
    ]
    assert task["vpcAccess"] == {
        "egress": "ALL_TRAFFIC",
        "networkInterfaces": [
            {
                "network": "projects/my-project/global/networks/my-vpc",
                "subnetwork": "projects/my-project/regions/europe-west1/subnetworks/my-subnet",
            }
        ],
    }
    assert task["timeout"] == "1800s"


def test_the_doc_names_every_type_alias_and_failure() -> None:
    text = DOC.read_text()
    assert len(TYPES) == 3
    for alias in TYPES:
        assert f"`{alias}`" in text, alias
    failures = text[text.index("## Failures") : text.index("## Cost estimate")]
    column = set(re.findall(r"^\|.*?\|.*?\| (\w*) \|[^|]*\|$", failures, flags=re.M))
    assert {f.value for f in CloudRunRunner.failures} <= column


def test_the_readme_points_at_the_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/runners/cloud-run.md" in readme and "samples/cloud-run.yaml" in readme
    assert "cloud-run.md" in (ROOT / "docs" / "runners" / "README.md").read_text()

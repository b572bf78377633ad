"""samples/google-batch.yaml and docs/runners/google-batch.md against the Google Batch runner.

The sample must validate and build the Batch job it describes; the doc's options table must
list every option of ``GoogleBatchOptions`` with its default and whose name it is; its snippet
must be the sample's; its failure table must cover every failure the runner declares.
No Google call is made.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from control_plane.flows.aliases import RUNNER_ALIASES
from runners.base import Failure, JobSpec, validate_options
from runners.google_batch import GoogleBatchOptions, GoogleBatchRunner
from runners.google_batch import options as options_module
from tests.unit.runner_docs import check_options_table, check_snippet

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "google-batch.yaml"
DOC = ROOT / "docs" / "runners" / "google-batch.md"
TYPES = sorted(name for name, runner in RUNNER_ALIASES.items() if runner == "google-batch" != name)


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


def test_the_sample_names_every_option_it_needs_and_runs_on_spot() -> None:
    """Literal options: `squall validate` checks them all, and the task runs without deployment defaults."""
    task = _task()
    assert task["taskRunner"]["type"] in TYPES
    assert not any("{{" in str(v) for v in _task_options().values())
    opts = validate_options(GoogleBatchRunner, _task_options())
    assert isinstance(opts, GoogleBatchOptions)
    assert opts.spot and opts.max_run_duration == timedelta(minutes=30)
    assert opts.labels == {"team": "risk", "cost-center": "cc-1234"}
    assert opts.notification_topic == "projects/my-project/topics/squall-batch-events"
    assert opts.pricing is not None and opts.pricing.spot.vcpu_hour < opts.pricing.standard.vcpu_hour
    assert task["inputFiles"] and task["outputFiles"] == ["var.json"]


def test_the_sample_builds_the_batch_job_the_doc_describes() -> None:
    batch_v1 = pytest.importorskip("google.cloud.batch_v1")
    from runners.google_batch.runner import MOUNT
    from runners.google_runner import document

    opts = validate_options(GoogleBatchRunner, _task_options())
    assert isinstance(opts, GoogleBatchOptions)
    spec = JobSpec(
        name="var-nightly-simulate-3k2j4h5a",
        command=("/bin/sh", "-c", "python main.py"),
        image=_task()["containerImage"],
        input_files={"params.json": b'{"paths": 10}'},
        output_files=("var.json",),
        timeout=timedelta(hours=1),
        labels={"squall.io/flow": "var-nightly"},
        options=_task_options(),
    )
    runner = GoogleBatchRunner(anonymous=True)
    staging = f"squall/{spec.name}"
    job = runner._job(SimpleNamespace(types=batch_v1), spec, opts, spec.name, staging, {}, {})
    doc = document(job)
    task = doc["taskGroups"][0]["taskSpec"]
    assert task["maxRunDuration"] == "1800s"  # the shorter of timeout (PT1H) and maxRunDuration
    assert task["computeResource"] == {"cpuMilli": "4000", "memoryMib": "8192"}
    assert task["volumes"] == [{"gcs": {"remotePath": f"my-squall-staging/{staging}"}, "mountPath": MOUNT}]
    policy = doc["allocationPolicy"]
    assert policy["instances"][0]["policy"]["provisioningModel"] == "SPOT"
    assert policy["serviceAccount"]["email"] == "squall-batch-job@my-project.iam.gserviceaccount.com"
    assert {n["message"]["newJobState"] for n in doc["notifications"]} == {"RUNNING", "SUCCEEDED", "FAILED"}
    assert {n["pubsubTopic"] for n in doc["notifications"]} == {
        "projects/my-project/topics/squall-batch-events"
    }
    labels = doc["labels"]
    assert (
        labels["team"] == "risk"
        and labels["squall-managed"] == "true"
        and labels["squall-deployment"] == "squall"
    )
    assert doc["logsPolicy"]["destination"] == "CLOUD_LOGGING"


def test_the_docs_snippet_is_the_samples() -> None:
    check_snippet(DOC, _task()["taskRunner"])


def test_the_options_table_lists_every_option_with_its_default_and_origin() -> None:
    check_options_table(DOC, GoogleBatchOptions, options_module, kestra_until="so a Kestra flow")


def test_the_doc_names_every_type_alias_and_failure() -> None:
    text = DOC.read_text()
    assert len(TYPES) == 3
    for alias in TYPES:
        assert f"`{alias}`" in text, alias
    failures = text[text.index("## Failures") : text.index("## Cost estimate")]
    column = set(re.findall(r"^\|.*?\|.*?\| (\w*) \|[^|]*\|$", failures, flags=re.M))
    assert {f.value for f in GoogleBatchRunner.failures} <= column
    assert set(Failure) == set(GoogleBatchRunner.failures)


def test_the_readme_points_at_the_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/runners/google-batch.md" in readme and "samples/google-batch.yaml" in readme

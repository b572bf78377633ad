"""samples/azure-batch.yaml and docs/runners/azure-batch.md against the Azure Batch runner.

The sample must validate and, merged with a deployment's defaults, give the options it shows;
the doc's options table must list every option of ``AzureBatchOptions`` with its default and
whose name it is; its snippet must be the sample's; its failure table must cover every failure
the runner declares; what the runner cannot honour is refused, naming the option. No Azure call
is made.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.flows.aliases import RUNNER_ALIASES
from runners.azure_batch import AzureBatchOptions, AzureBatchRunner
from runners.azure_batch import options as options_module
from runners.base import JobSpec, RunnerOptionsError, validate_options
from tests.unit.runner_docs import check_options_table, checkout_entry_points, options_table

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "azure-batch.yaml"
DOC = ROOT / "docs" / "runners" / "azure-batch.md"
TYPES = sorted(name for name, runner in RUNNER_ALIASES.items() if runner == "azure-batch" != name)
KEY = "c3F1YWxsLWZha2UtYmF0Y2gta2V5LW5vdC1hLXNlY3JldA=="
DEPLOYMENT = {
    "account": "mybatch",
    "endpoint": "https://mybatch.westeurope.batch.azure.com",
    "accessKey": KEY,
    "blobStorage": {
        "connectionString": f"DefaultEndpointsProtocol=https;AccountName=mystore;AccountKey={KEY}"
    },
    "vmSize": "Standard_D2s_v3",
    "taskSlotsPerNode": 2,
    "prices": {"Standard_D2s_v3": {"hour": 0.096, "vcpus": 2, "gib": 8}},
}


def _task() -> dict[str, Any]:
    flow = yaml.safe_load(SAMPLE.read_text())
    [task] = [t for t in flow["tasks"] if "taskRunner" in t]
    return dict(task)


def _task_options() -> dict[str, Any]:
    return {k: v for k, v in _task()["taskRunner"].items() if k != "type"}


def _options(**task: Any) -> AzureBatchOptions:
    spec = JobSpec(name="t", command=("true",), image="python:3.12-slim", options={**_task_options(), **task})
    return AzureBatchRunner(defaults=DEPLOYMENT)._options(spec)


def test_the_sample_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from control_plane.cli import app

    site = checkout_entry_points(tmp_path / "site")  # a checkout installed before this runner
    if site is not None:
        monkeypatch.syspath_prepend(str(site))
    result = CliRunner().invoke(app, ["validate", str(SAMPLE)])
    assert result.exit_code == 0, result.output


def test_the_sample_with_the_deployments_defaults_gives_the_options_it_shows() -> None:
    assert _task()["taskRunner"]["type"] in TYPES
    opts = _options()
    assert (opts.pool_id, opts.blob_storage.container_name) == ("squall-pool", "squall-staging")
    assert (opts.blob_storage.account_name, opts.account) == ("mystore", "mybatch")
    assert opts.resources.required_slots == 1 and opts.max_wall_clock_time == timedelta(minutes=15)
    assert opts.retention_time == timedelta(hours=2) and opts.container_run_options == "--shm-size=256m"
    assert opts.price is not None and opts.price.hour == 0.096


def test_the_docs_snippet_is_the_samples() -> None:
    snippet = re.search(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert snippet is not None
    assert yaml.safe_load(snippet.group(1))["taskRunner"] == _task()["taskRunner"]


def test_the_options_table_lists_every_option_with_its_default_and_origin() -> None:
    check_options_table(DOC, AzureBatchOptions, options_module, kestra_until="); the rest are")


@pytest.mark.parametrize(
    ("task", "deployment", "problem"),
    [
        ({"resume": False}, {}, "reattaches"),
        ({"accessKey": "b3RoZXI="}, {}, "accessKey: differs from the deployment's"),
        ({"blobStorage": {"containerName": "cont", "sasToken": "sv=x"}}, {}, "sasToken"),
        (
            {"blobStorage": {"containerName": "cont"}},
            {"blobStorage": None},
            "blobStorage: give connectionString",
        ),
        ({"vmSize": "Standard_F4"}, {}, "vmSize: 'Standard_F4' is not in prices"),
        ({"resources": {"requiredSlots": 3}}, {}, "requiredSlots: 3 is over the pool's taskSlotsPerNode (2)"),
        ({"endpoint": "https://evil.example.com"}, {}, "is not an endpoint this deployment allows"),
        ({"completionCheckInterval": "PT5S"}, {}, "completionCheckInterval"),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_the_option(
    task: dict[str, Any], deployment: dict[str, Any], problem: str
) -> None:
    defaults = {k: v for k, v in {**DEPLOYMENT, **deployment}.items() if v is not None}
    runner = AzureBatchRunner(defaults=defaults)
    spec = JobSpec(name="t", command=("true",), image="img", options={**_task_options(), **task})
    with pytest.raises((RunnerOptionsError, ValueError), match=re.escape(problem)):
        opts = runner._options(spec)
        runner._endpoint(opts.endpoint)


def test_container_run_options_need_an_image() -> None:
    runner = AzureBatchRunner(defaults=DEPLOYMENT)
    with pytest.raises(
        RunnerOptionsError, match="containerRunOptions: only for a task with a containerImage"
    ):
        runner._options(JobSpec(name="t", command=("true",), options=_task_options()))


def test_flow_validation_leaves_the_deployments_part_to_submission() -> None:
    """A flow alone may lack the keys and the price table: only a wrong value is a load error."""
    assert validate_options(AzureBatchRunner, {**DEPLOYMENT, **_task_options()}).pool_id == "squall-pool"  # type: ignore[attr-defined]


def test_the_doc_names_every_type_alias_and_failure() -> None:
    text = DOC.read_text()
    assert len(TYPES) == 3
    for alias in TYPES:
        assert f"`{alias}`" in text, alias
    failures = text[text.index("## Failures") : text.index("## Cost estimate")]
    column = set(re.findall(r"^\|.*?\|.*?\| (\w*) \|[^|]*\|$", failures, flags=re.M))
    assert {f.value for f in AzureBatchRunner.failures} <= column
    assert "refused" in options_table(DOC)["resume"][2]


def test_the_readme_points_at_the_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/runners/azure-batch.md" in readme and "samples/azure-batch.yaml" in readme
    assert "azure-batch.md" in (ROOT / "docs" / "runners" / "README.md").read_text()


def test_without_an_access_key_the_deployments_token_credential_signs() -> None:
    """Microsoft Entra ID: the ``credential`` the deployment passes (else DefaultAzureCredential).
    Only the wiring is checked here: azure-core sends bearer tokens over https only, and the fake
    is http, so the contract runs with shared keys."""
    pytest.importorskip("azure.batch")

    class Token:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no call is made here")

    credential = Token()
    runner = AzureBatchRunner(
        defaults={k: v for k, v in DEPLOYMENT.items() if k != "accessKey"}, credential=credential
    )
    ctx = runner._context("https://mybatch.westeurope.batch.azure.com", "mybatch")
    assert ctx.batch._config.credential is credential
    keyed = AzureBatchRunner(defaults=DEPLOYMENT)._context(
        "https://mybatch.westeurope.batch.azure.com", "mybatch"
    )
    assert type(keyed.batch._config.credential).__name__ == "AzureNamedKeyCredential"

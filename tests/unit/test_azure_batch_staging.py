"""The Azure Batch task plan: files, SAS URLs and the task document, built without any I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("azure.batch")
from runners.azure_batch.options import AzureBatchOptions
from runners.azure_batch.staging import COMMAND_LINE, Signer, plan_task
from runners.base import JobSpec

KEY = "c3F1YWxsLWZha2UtYmF0Y2gta2V5LW5vdC1hLXNlY3JldA=="
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SIGNER = Signer("mystore", KEY, "https://mystore.blob.core.windows.net")
OPTS = AzureBatchOptions.model_validate(
    {
        "account": "mybatch",
        "endpoint": "https://mybatch.westeurope.batch.azure.com",
        "poolId": "pool",
        "blobStorage": {
            "containerName": "staging",
            "sharedKeyAccountName": "mystore",
            "sharedKeyAccountAccessKey": KEY,
        },
        "maxWallClockTime": "PT1H",
        "retentionTime": "PT2H",
        "resources": {"requiredSlots": 2},
        "taskSlotsPerNode": 4,
    }
)


def _plan(**fields: Any) -> Any:
    spec = JobSpec(name="etl-1", command=("sh", "-c", "echo hi"), **fields)
    return plan_task(
        spec, OPTS, job="squall-squall-pool", task_id="etl-1", nonce="n0nce", signer=SIGNER, now=NOW
    )


def _sas(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_inputs_are_read_only_resource_files_and_outputs_go_to_write_only_containers() -> None:
    plan = _plan(
        input_files={"a/b.txt": b"x"},
        input_uris={"c.bin": "az://mystore/data/c.bin"},
        output_prefix="az://mystore/results/run-1",
        output_files=("out.txt",),
    )
    task = plan.task.as_dict()
    files = {f["filePath"]: f["httpUrl"] for f in task["resourceFiles"]}
    assert set(files) == {".squall/in/a/b.txt", ".squall/in/c.bin", ".squall/run.sh"}
    assert files[".squall/in/c.bin"].startswith("https://mystore.blob.core.windows.net/data/c.bin?")
    assert all(_sas(url)["sp"] == "r" for url in files.values())
    assert set(plan.uploads) == {
        ("staging", "squall/squall-squall-pool/etl-1/n0nce/in/a/b.txt"),
        ("staging", "squall/squall-squall-pool/etl-1/n0nce/run.sh"),
    }
    outputs = {o["filePattern"]: o for o in task["outputFiles"]}
    assert set(outputs) == {"../stdout.txt", "../stderr.txt", ".squall/out/**/*"}
    out = outputs[".squall/out/**/*"]["destination"]["container"]
    assert out["containerUrl"].startswith("https://mystore.blob.core.windows.net/results?")
    assert (out["path"], _sas(out["containerUrl"])["sp"]) == ("run-1", "cw")
    assert out["uploadHeaders"] == [{"name": "x-ms-meta-squalltask", "value": "n0nce"}]
    assert {o["uploadOptions"]["uploadCondition"] for o in outputs.values()} == {"taskcompletion"}
    assert plan.out_uri == "az://mystore/results/run-1/"


def test_the_task_document() -> None:
    plan = _plan(env={"A": "1"}, timeout=timedelta(minutes=10), image="python:3.12-slim")
    task = plan.task.as_dict()
    assert task["id"] == "etl-1" and task["commandLine"] == COMMAND_LINE
    assert json.loads(task["displayName"]) == {
        "name": "etl-1",
        "nonce": "n0nce",
        "out": "",
        "staging": "squall/squall-squall-pool/etl-1",
    }
    assert task["constraints"] == {  # the shorter of the timeout and maxWallClockTime
        "maxWallClockTime": "PT10M00S",
        "retentionTime": "PT02H00M00S",
        "maxTaskRetryCount": 0,
    }
    assert task["requiredSlots"] == 2
    assert {e["name"]: e["value"] for e in task["environmentSettings"]} == {
        "A": "1",
        "SQUALL_JOB_NAME": "etl-1",
    }
    assert task["containerSettings"] == {
        "imageName": "python:3.12-slim",
        "workingDirectory": "taskWorkingDirectory",
    }
    script = plan.uploads[("staging", "squall/squall-squall-pool/etl-1/n0nce/run.sh")].decode()
    assert script.startswith("set -- sh -c 'echo hi'\n")
    expiry = datetime.fromisoformat(_sas(task["resourceFiles"][0]["httpUrl"])["se"].replace("Z", "+00:00"))
    assert expiry == NOW + timedelta(minutes=10) + timedelta(days=7)  # the limit, plus a week in the queue


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"input_uris": {"x": "az://otherstore/c/x"}}, "not in the storage account mystore"),
        ({"input_uris": {"x": "s3://bucket/x"}}, "not in Azure Blob Storage"),
        ({"input_files": {"../x": b""}}, "must be a relative path"),
        ({"output_prefix": "az://otherstore/c/"}, "not in the storage account mystore"),
    ],
)
def test_what_cannot_be_staged_is_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _plan(**fields)

"""ForEachItem through the production driver (a scratch SQLite runtime): what the shell writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from control_plane.conformance import run_flow, scratch_runtime
from control_plane.flows.loader import read_flow_file

FLOWS = Path(__file__).resolve().parents[1] / "conformance" / "compat" / "flows" / "foreachitem"


def test_merged_subflow_outputs_hold_one_line_per_batch_in_batch_order() -> None:
    with scratch_runtime() as runtime:
        storage = runtime.service.storage
        items = "kestra:///file/storage/file.txt"
        storage.write(items, (FLOWS / "file.txt").read_bytes())
        child = FLOWS / "for-each-item-outputs-subflow.yaml"
        runtime.service.deploy(read_flow_file(child), str(child))
        run = run_flow(runtime, read_flow_file(FLOWS / "for-each-item-outputs.yaml"), {"file": items})
        assert str(run.state) == "SUCCESS"
        runs = {tr.task_id: tr for tr in run.execution.ordered_taskruns()}
        merged = runs["each_merge"].outputs["subflowOutputs"]
        assert runs["return"].outputs == {"value": merged}
        lines = [json.loads(line) for line in storage.read(merged).decode().splitlines()]
        splits = storage.read(runs["each_split"].outputs["splits"]).decode().splitlines()
        assert len(lines) == 26 and [line["value"] for line in lines] == splits
        first = storage.read(splits[0]).decode()
        assert first == "".join(f"{n:>20}\n" for n in range(4))
        children = [e for e in run.executions if e.flow_id == "for-each-item-outputs-subflow"]
        assert len(children) == 26 and {e.parent["iteration"] for e in children} == set(range(1, 27))


def test_batches_of_a_task_output_reach_scripts_and_their_flow_outputs_are_merged() -> None:
    with scratch_runtime() as runtime:
        child = FLOWS / "orders.yaml"
        runtime.service.deploy(read_flow_file(child), str(child))
        run = run_flow(runtime, read_flow_file(FLOWS / "from-task-output.yaml"))
        assert str(run.state) == "SUCCESS"
        runs = {tr.task_id: tr for tr in run.execution.ordered_taskruns()}
        merged = runtime.service.storage.read(runs["each_merge"].outputs["subflowOutputs"]).decode()
        assert [json.loads(line) for line in merged.splitlines()] == [
            {"summary": "batch 1: 2 orders"},
            {"summary": "batch 2: 2 orders"},
            {"summary": "batch 3: 1 orders"},
        ]
        splits = runtime.service.storage.read(runs["each_split"].outputs["splits"]).decode().splitlines()
        assert [s.rsplit("/", 1)[1] for s in splits] == ["1.jsonl", "2.jsonl", "3.jsonl"]


def test_on_dynamodb_and_s3_as_deployed(
    dynamodb_table: tuple[Any, str], moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cloud's store and storage: batches and merged outputs in S3, the counted task run in
    DynamoDB (its ``batches`` through the store's own encoding), 5 children stored there too."""
    import boto3

    from control_plane.runtime import local_settings, open_runtime
    from control_plane.service.storage import open_task_storage
    from control_plane.store.dynamodb import DynamoDBStore

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    bucket = f"squall-fei-{os.getpid()}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = open_task_storage(  # the operator's shared area, which a FILE input may name
        f"s3://{bucket}/deploy",
        read=[f"s3://{bucket}/deploy/file/storage/"],
        options={"s3": {"endpoint_url": moto_server, "region": "us-east-1"}},
    )
    client, table = dynamodb_table
    settings = local_settings(tmp_path / "unused.db", data_dir=str(tmp_path))
    rt = open_runtime(
        settings, store=DynamoDBStore(table, client=client), storage=storage, submit_budget=None
    )
    try:
        items = "kestra:///file/storage/file.txt"
        storage.write(items, b"".join((FLOWS / "file.txt").read_bytes().splitlines(keepends=True)[:20]))
        child = FLOWS / "for-each-item-outputs-subflow.yaml"
        rt.service.deploy(read_flow_file(child), str(child))
        run = run_flow(rt, read_flow_file(FLOWS / "for-each-item-outputs.yaml"), {"file": items})
        assert str(run.state) == "SUCCESS"
        stored = rt.store.get_execution(run.execution.id)
        runs = {tr.task_id: tr for tr in stored.ordered_taskruns()}
        counted = runs["each_items"]
        assert counted.outputs is not None and counted.outputs["iterations"]["SUCCESS"] == 5
        assert counted.batches is not None and counted.batches.done == 5
        merged = runs["each_merge"].outputs["subflowOutputs"]
        assert merged.startswith(f"s3://{bucket}/deploy/io.kestra.tests/for-each-item-outputs/")
        assert len(storage.read(merged).decode().splitlines()) == 5
        assert sum(1 for e in run.executions if e.flow_id == "for-each-item-outputs-subflow") == 5
    finally:
        rt.close()

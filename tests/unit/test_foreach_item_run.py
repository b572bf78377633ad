"""ForEachItem through the production driver (a scratch SQLite runtime): what the shell writes."""

from __future__ import annotations

import json
from pathlib import Path

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

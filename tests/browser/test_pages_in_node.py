"""The UI's modules in Node over a minimal DOM, against a real ``squall server`` process.

Until CI has Chromium, this is what runs the page code on every change: each page is built
from the API's real answers and the resume action is carried out through the page's own
form (``pages_in_node.mjs``). What it cannot check (layout, focus order, real events) is the
Chromium suite's job (``test_ui.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.conftest import Api
from tests.browser.flows import APPROVAL, FILES, GREET, LONG, NAMESPACE
from tests.servers import squall_server

HERE = Path(__file__).parent
STATIC = HERE.parents[1] / "control_plane" / "ui" / "static"
SECRET = "s3cr3t-value-not-to-show"


def test_every_page_builds_from_real_answers_and_resume_works_through_the_form(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH (the README's prerequisites)")
    options = ("--no-auth", "--db", str(tmp_path / "ui.db"), "--tick-interval", "0.2")
    with squall_server(tmp_path, *options) as server, Api(server.url) as api:
        for source in (GREET, APPROVAL, FILES, LONG):
            api.deploy(source)
        api.deploy(GREET.replace("slowly enough", "slowly, enough"))  # revision 2: a diff to show
        files = api.start("files")
        api.wait(files, {"SUCCESS"})
        paused = api.start("approval")
        api.wait(paused, {"PAUSED"})
        inputs = {"name": (None, "Ada"), "token": (None, SECRET)}
        response = api.client.post(
            f"/executions/{NAMESPACE}/greet", files=inputs, params={"labels": "team:ui"}
        )
        assert response.status_code == 200, response.text
        long = api.start("long")
        api.wait(long, {"RUNNING"})
        ids = {"files": files, "paused": paused, "greet": response.json()["id"], "long": long}
        done = subprocess.run(
            [node, str(HERE / "pages_in_node.mjs"), server.url, str(STATIC), json.dumps(ids)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        ended = api.execution(paused)
        killed = api.execution(long)["state"]["current"]
        replay = api.execution(report["replay"])
    assert report["errors"] == []
    assert report["unlabeled"] == []
    for text in (report["flows"]["text"], report["greet"]["text"], report["paused"]["text"]):
        assert "null" not in text and "[object" not in text and "undefined" not in text
    assert report["flows"]["namespaces"] == [NAMESPACE]
    assert {"greet", "approval", "files"} <= set(report["flows"]["links"])
    assert report["flow"]["tasks"] == ["hello", "each", "item", "oops"]
    assert report["flow"]["errors"] == ["oops"]
    diff = report["flow"]["revisions"]
    assert "Changes from revision 1" in diff
    assert (
        "- description: Says hello, slowly enough" in diff
        and "+ description: Says hello, slowly, enough" in diff
    )
    tabs = ["Topology", "Source", "Revisions", "Edit", "Triggers", "Executions", "Start"]
    assert report["flow"]["tabs"] == tabs
    assert report["flow"]["inputs"] == ["in-name", "in-times", "in-token"]
    assert report["flow"]["keys"][:2] == ["id", "namespace"]
    assert set(report["executions"]["states"]) == {"SUCCESS"}
    assert report["labelled"] == {"flows": ["greet"], "labels": ["team:ui"]}
    assert report["files"] == {"actions": ["Replay"], "downloads": ["Download report.txt"], "gantt": ["make"]}
    assert report["greet"]["gantt"] == ["hello", "each", "item [a]", "item [b]"]
    assert report["greet"]["bars"] == 4
    assert SECRET not in report["greet"]["text"] and "token" in report["greet"]["text"]  # SECRET masked
    assert report["paused"]["actions"] == ["Kill", "Resume…"]
    assert report["paused"]["focused"] is True
    after = next(tr for tr in ended["taskRunList"] if tr["taskId"] == "after")
    assert after["outputs"] == {"value": "because from node"}
    assert "/api/v1/main/executions/webhook/squall.ui/greet/greet-key" in report["flow"]["triggers"]
    assert killed == "KILLED" and report["killed"]["actions"] == ["Restart", "Replay"]
    assert replay["flowId"] == "files" and replay["originalId"] == files and replay["id"] != files
    assert report["requests"] < 200


def test_the_pure_helpers_order_sum_and_diff() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH (the README's prerequisites)")
    done = subprocess.run(
        [node, str(HERE / "units.mjs"), str(STATIC)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[
        -3000:
    ]  # bounded polling, not a request storm


def test_the_editor_finds_the_cursors_place_and_completes_from_the_served_schema(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH (the README's prerequisites)")
    from control_plane.ui import static_files

    schema = tmp_path / "flow.json"
    schema.write_bytes(static_files.flow_schema().body)  # the bytes /ui/schema/flow.json serves
    done = subprocess.run(
        [node, str(HERE / "editor_units.mjs"), str(STATIC), str(schema)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]

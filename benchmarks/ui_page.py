"""The execution page of a 10,000-task-run execution: time to first render and memory, printed.

A real ``squall server`` process (SQLite, local) runs a ForEach of N Return tasks
(concurrencyLimit 0); then the page is loaded:

* in headless Chromium (Playwright, Debian's ``chromium``) when both are installed: time from
  navigation to the execution's state badge, and the page's JS heap (CDP
  ``Performance.getMetrics``);
* otherwise in Node over the minimal DOM the page tests use (``benchmarks/ui_page.mjs``): the
  same page code and API calls, no layout or paint. It also times the virtual list alone over
  1,000,000 log lines (setting them, and repainting after a scroll to the middle), and counts
  the rows it keeps in the DOM.

The last line is stable for tracking:

    ui_page: <engine> first render <ms> ms, heap <MiB> MiB, <n> task runs shown, <rows> gantt rows in the DOM

Usage: python benchmarks/ui_page.py [--task-runs 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import squall_server  # noqa: E402  (the repository root, put on the path above)

STATIC = ROOT / "control_plane" / "ui" / "static"


def _flow(size: int) -> str:
    return f"""
id: big
namespace: squall.bench
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: {json.dumps([str(i) for i in range(size)])}
    tasks:
      - id: one
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
"""


def _run_big(url: str, size: int) -> tuple[str, float]:
    with httpx.Client(base_url=f"{url}/api/v1/main", timeout=120) as api:
        deployed = api.post("/flows", content=_flow(size), headers={"Content-Type": "application/x-yaml"})
        assert deployed.status_code == 200, deployed.text
        started = time.monotonic()
        execution_id = api.post("/executions/squall.bench/big").json()["id"]
        while True:
            state = api.get("/executions/search", params={"filters[flowId][EQUALS]": "big"}).json()
            current = state["results"][0]["state"]["current"]
            if current in ("SUCCESS", "FAILED", "KILLED", "WARNING"):
                assert current == "SUCCESS", current
                return execution_id, time.monotonic() - started
            time.sleep(0.5)  # polling the run with the benchmark's own patience


def _chromium(url: str, execution_id: str) -> dict[str, Any] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    from tests.browser.conftest import chromium_path

    executable = chromium_path()
    if executable is None:
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        started = time.monotonic()
        page.goto(f"{url}/ui/#/executions/{execution_id}")
        page.locator("h1 .state").wait_for(timeout=120_000)
        first = (time.monotonic() - started) * 1000
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        shown = page.locator("text=/Task runs/").count()
        result = {
            "engine": "chromium",
            "firstRenderMs": round(first),
            "heapMiB": round(metrics.get("JSHeapUsedSize", 0) / 2**20, 1),
            "ganttRows": page.locator(".gantt-row").count(),
            "taskRuns": shown,
            "domNodes": int(metrics.get("Nodes", 0)),
        }
        browser.close()
        return result


def _node(url: str, execution_id: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("neither Chromium with Playwright nor node is available")
    done = subprocess.run(
        [node, "--expose-gc", str(ROOT / "benchmarks" / "ui_page.mjs"), url, str(STATIC), execution_id],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return {"engine": "node-dom-shim", **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-runs", type=int, default=10_000, help="values of the ForEach")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        squall_server(
            Path(tmp), "--no-auth", "--db", str(Path(tmp) / "bench.db"), "--tick-interval", "0.2"
        ) as server,
    ):
        execution_id, ran = _run_big(server.url, args.task_runs)
        print(f"the execution of {args.task_runs + 1} task runs ran in {ran:.1f} s")
        result = _chromium(server.url, execution_id) or _node(server.url, execution_id)
    print(json.dumps(result, indent=2))
    head = f"ui_page: {result['engine']} first render {result['firstRenderMs']} ms"
    print(
        f"{head}, heap {result['heapMiB']} MiB, {result['taskRuns']} task runs shown,"
        f" {result['ganttRows']} gantt rows in the DOM"
    )


if __name__ == "__main__":
    main()

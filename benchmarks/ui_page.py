"""The execution page at scale: 10,000 task runs, and a log of 1,000,000 lines, measured.

A real ``squall server`` process (SQLite, local) runs a ForEach of N Return tasks
(concurrencyLimit 0), and a one-task execution whose log then gets M lines (appended through
the server's own SQLite store, as the process runner would, only faster). Then the pages load:

* in headless Chromium (Playwright, Debian's ``chromium``) when both are installed:
  - the 10,000-task-run execution: time from navigation to the state badge (first render,
    with the execution's own first 1,000 task runs), to every task run listed (the others read
    from the ``taskruns`` pages after it), the requests that took, the JS heap
    (CDP ``Performance.getMetrics``), DOM nodes and Gantt rows in the DOM;
  - the 1,000,000-line log: time to its first page on screen, then to scroll to its middle
    (End pressed until line M/2 is read: the route pages forward only, so that walks
    M/2/2,000 pages), the requests, the longest main-thread task (PerformanceObserver
    ``longtask``: a freeze would show here), the heap there, and the rows in the DOM;
* otherwise in Node over the minimal DOM the page tests use (``benchmarks/ui_page.mjs``): the
  same page code and API calls, no layout or paint.

The last lines are stable for tracking:

    ui_page: <engine> first render <ms> ms (every task run listed after <ms> ms), heap <MiB> MiB,
        <n> task runs shown, <rows> gantt rows in the DOM
    ui_log: chromium 1000000 lines: first page <ms> ms, middle after <ms> ms (<n> requests),
        longest task <ms> ms, heap <MiB> MiB, <rows> rows in the DOM

Usage: python benchmarks/ui_page.py [--task-runs 10000] [--log-lines 1000000]
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


_CHATTY = """
id: chatty
namespace: squall.bench
tasks:
  - id: talk
    type: io.kestra.plugin.core.log.Log
    message: the first line
"""

_EVERY_TASK_RUN = "(n) => document.querySelector('#taskrun-count')?.textContent === String(n)"
_COUNT = "Number(document.querySelector('#log-count').textContent.split(' ')[0].replace(/,/g, ''))"
_READ_MORE_THAN = f"(n) => {_COUNT} > n"
_SCROLL_TO_LINE = (
    "(n) => { document.querySelector('.vlist[aria-label=\"Log lines\"]').scrollTop = (n - 1) * 18; }"
)
_LONG_TASKS = """() => { window.__longest = 0; new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
}).observe({ type: "longtask", buffered: true }); }"""


def _long_log(url: str, db: Path, lines: int) -> str:
    """An ended execution whose log then gets ``lines`` lines (through the server's store)."""
    from datetime import UTC, datetime, timedelta

    from control_plane.engine.model import LogLine
    from control_plane.levels import Level
    from control_plane.store.sqlite import SqliteStore

    with httpx.Client(base_url=f"{url}/api/v1/main", timeout=120) as api:
        deployed = api.post("/flows", content=_CHATTY, headers={"Content-Type": "application/x-yaml"})
        assert deployed.status_code == 200, deployed.text
        execution_id = str(api.post("/executions/squall.bench/chatty").json()["id"])
        while api.get(f"/executions/{execution_id}").json()["state"]["current"] != "SUCCESS":
            time.sleep(0.2)  # polling the run with the benchmark's own patience
        talk = api.get(f"/executions/{execution_id}").json()["taskRunList"][0]["id"]
    store = SqliteStore(db, synchronous="OFF")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, lines, 50_000):
        batch = [
            LogLine(
                start + timedelta(milliseconds=i), Level.INFO, f"line {i + 1} of the long log", "talk", talk
            )
            for i in range(first, min(first + 50_000, lines))
        ]
        store.append_logs(execution_id, batch)
    return execution_id


def _chromium(
    url: str, execution_id: str, expected: int, log_id: str | None, lines: int
) -> dict[str, Any] | None:
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
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        started = time.monotonic()
        page.goto(f"{url}/ui/#/executions/{execution_id}")
        page.locator("h1 .state").wait_for(timeout=120_000)
        first = (time.monotonic() - started) * 1000
        page.wait_for_function(_EVERY_TASK_RUN, arg=expected, timeout=300_000)
        every = (time.monotonic() - started) * 1000
        shown = int(page.locator("#taskrun-count").text_content() or 0)
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        result: dict[str, Any] = {
            "engine": "chromium",
            "firstRenderMs": round(first),
            "everyTaskRunMs": round(every),
            "heapMiB": round(metrics.get("JSHeapUsedSize", 0) / 2**20, 1),
            "ganttRows": page.locator(".gantt-row").count(),
            "taskRuns": shown,
            "taskRunRequests": sum("/taskruns" in r for r in requests),
            "domNodes": int(metrics.get("Nodes", 0)),
        }
        if log_id is not None:
            result["log"] = _chromium_log(page, cdp, url, log_id, lines)
        browser.close()
        return result


def _chromium_log(page: Any, cdp: Any, url: str, execution_id: str, lines: int) -> dict[str, Any]:
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if f"/executions/{execution_id}/logs" in r.url else None)
    page.goto(f"{url}/ui/#/flows")
    page.locator("h1").wait_for()
    page.evaluate(_LONG_TASKS)
    started = time.monotonic()
    page.goto(f"{url}/ui/#/executions/{execution_id}")
    log = page.get_by_role("log", name="Log lines")
    log.locator(".row", has_text="line 1 of the long log").first.wait_for(timeout=120_000)
    first = (time.monotonic() - started) * 1000
    page.evaluate(_LONG_TASKS)  # the same document (a hash route): from here on
    count = page.locator("#log-count")
    middle = lines // 2
    started = time.monotonic()
    log.focus()
    while True:
        read = int((count.text_content() or "0").split()[0].replace(",", ""))
        if read >= middle:
            break
        page.keyboard.press("End")
        page.wait_for_function(
            _READ_MORE_THAN,
            arg=read,
            timeout=60_000,
        )
    # the middle line itself, on screen
    page.evaluate(
        _SCROLL_TO_LINE,
        middle,
    )
    log.locator(".row", has_text=f"line {middle} of the long log").wait_for(timeout=60_000)
    to_middle = (time.monotonic() - started) * 1000
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {
        "lines": lines,
        "firstPageMs": round(first),
        "middleMs": round(to_middle),
        "requests": len(asked),
        "longestTaskMs": round(page.evaluate("window.__longest")),
        "heapMiB": round(metrics.get("JSHeapUsedSize", 0) / 2**20, 1),
        "rowsInDom": log.locator(".row").count(),
    }


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
    parser.add_argument("--log-lines", type=int, default=1_000_000, help="lines of the long log (0: none)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        squall_server(
            Path(tmp), "--no-auth", "--db", str(Path(tmp) / "bench.db"), "--tick-interval", "0.2"
        ) as server,
    ):
        execution_id, ran = _run_big(server.url, args.task_runs)
        print(f"the execution of {args.task_runs + 1} task runs ran in {ran:.1f} s")
        log_id = None
        if args.log_lines:
            started = time.monotonic()
            log_id = _long_log(server.url, Path(tmp) / "bench.db", args.log_lines)
            print(f"{args.log_lines} log lines written in {time.monotonic() - started:.1f} s")
        result = _chromium(server.url, execution_id, args.task_runs + 1, log_id, args.log_lines) or _node(
            server.url, execution_id
        )
    print(json.dumps(result, indent=2))
    head = f"ui_page: {result['engine']} first render {result['firstRenderMs']} ms"
    if "everyTaskRunMs" in result:
        head += f" (every task run listed after {result['everyTaskRunMs']} ms)"
    print(
        f"{head}, heap {result['heapMiB']} MiB, {result['taskRuns']} task runs shown,"
        f" {result['ganttRows']} gantt rows in the DOM"
    )
    log = result.get("log")
    if log:
        print(
            f"ui_log: chromium {log['lines']} lines: first page {log['firstPageMs']} ms, middle after"
            f" {log['middleMs']} ms ({log['requests']} requests), longest task {log['longestTaskMs']} ms,"
            f" heap {log['heapMiB']} MiB, {log['rowsInDom']} rows in the DOM"
        )


if __name__ == "__main__":
    main()

"""What the pages show beyond Kestra's UI, and big logs, in headless Chromium on a real server.

A failed job's failure class, runner and job id; FILE inputs uploaded from the start and the
resume forms; a log read a page at a time as it is scrolled; a schedule's next date and a
webhook's URL on the flows list; the Gantt's time axis. Waits are Playwright's expectations
with a deadline, never sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Api, Shot, tab_to
from tests.browser.flows import CHATTY, CHATTY_LINES, MANY_VALUES, NAMESPACE
from tests.servers import ServerProcess, squall_server

expect: Any = None


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=60_000)
    expect = playwright_expect


def _ui(server: ServerProcess) -> str:
    return f"{server.url}/ui/"


def test_a_failed_task_shows_its_failure_class_runner_and_job_id(
    page: Any, server: ServerProcess, api: Api, shot: Shot
) -> None:
    execution_id = api.start("failing")
    ended = api.wait(execution_id, {"FAILED"})
    (boom,) = [tr for tr in ended["taskRunList"] if tr["taskId"] == "boom"]
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    row = page.locator(f".tree [data-taskrun='{boom['id']}']")
    expect(row.locator(".failure")).to_have_text("user")
    expect(row.locator(".runner")).to_have_text("process")
    expect(row.locator(".job-id")).to_have_text(boom["jobId"])
    expect(page.locator(".gantt-axis .tick").first).to_have_text("0s")  # the time axis, from the start
    assert page.locator(".gantt-axis .tick").count() >= 2
    tab_to(page, "button[aria-label='Select boom']")
    page.keyboard.press("Enter")
    attempt = page.locator(".taskrun-detail tbody tr")
    expect(attempt).to_have_count(1)
    expect(attempt).to_contain_text("process")
    expect(attempt).to_contain_text(boom["jobId"])
    expect(attempt.locator(".failure")).to_have_text("user")
    shot(page, "execution-failure-class")


def test_upload_a_file_input_from_the_start_form(page: Any, server: ServerProcess, api: Api) -> None:
    page.goto(f"{_ui(server)}#/flows/{NAMESPACE}/upload?tab=Start")
    expect(page.locator("#in-data")).to_have_attribute("type", "file")
    page.locator("#in-data").set_input_files(
        {"name": "note.txt", "mimeType": "text/plain", "buffer": b"uploaded from the form\n"}
    )
    page.get_by_role("button", name="Start execution").click()
    expect(page).to_have_url(re.compile(r"#/executions/\w+$"))
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("uploaded from the form")
    execution_id = page.url.rsplit("/", 1)[1]
    uri = api.execution(execution_id)["inputs"]["data"]
    assert uri == f"kestra:///{NAMESPACE}/upload/{execution_id}/inputs/data/note.txt"


def test_resume_with_a_file_from_the_resume_form(page: Any, server: ServerProcess, api: Api) -> None:
    execution_id = api.start("signed")
    api.wait(execution_id, {"PAUSED"})
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    tab_to(page, "button[data-action=resume]")
    page.keyboard.press("Enter")
    expect(page.locator("#in-document")).to_have_attribute("type", "file")
    page.locator("#in-document").set_input_files(
        {"name": "signed.txt", "mimeType": "text/plain", "buffer": b"signed by Ada\n"}
    )
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("signed by Ada")


def test_a_long_log_is_read_a_page_at_a_time_as_it_is_scrolled(
    page: Any, server: ServerProcess, api: Api, shot: Shot
) -> None:
    execution_id = api.start("chatty")
    api.wait(execution_id, {"SUCCESS"})
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if f"/executions/{execution_id}/logs" in r.url else None)
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    count = page.locator("#log-count")
    expect(count).to_have_text("2,000 lines read so far: scroll for more")
    assert len(asked) == 1 and "limit=2000" in asked[0]
    log = page.get_by_role("log", name="Log lines")
    expect(log).to_contain_text("line 1 ")
    assert log.locator(".row").count() < 100  # virtualised: the rows in view, not the 2,000 read
    log.focus()
    for read in range(4000, CHATTY_LINES + 1, 2000):  # End: the view's end, where the next page is read
        page.keyboard.press("End")
        expect(count).to_have_text(re.compile(f"^{read:,} lines"))
    expect(count).to_have_text(f"{CHATTY_LINES:,} lines")  # no "scroll for more": the last page
    page.keyboard.press("End")
    expect(log).to_contain_text(f"line {CHATTY_LINES}")
    assert len(asked) == CHATTY_LINES // 2000  # five pages of 2,000, nothing read twice
    assert log.locator(".row").count() < 100
    shot(page, "execution-long-log")
    page.locator("#log-search").fill("line 9999")
    expect(count).to_have_text("1 line")  # the server filters the pages it reads
    expect(log).to_contain_text("line 9999")


def test_the_flows_list_shows_a_schedules_next_date_and_a_webhooks_url(
    page: Any, server: ServerProcess, api: Api, shot: Shot
) -> None:
    page.goto(_ui(server))
    yearly = page.locator("tr", has=page.get_by_role("link", name="yearly", exact=True))
    new_year = re.compile(r"next (1/1|12/31)/")  # 1 January UTC, in the browser's zone and locale
    expect(yearly.locator(".next-dates")).to_contain_text(new_year)
    greet = page.locator("tr", has=page.get_by_role("link", name="greet", exact=True))
    url = f"{server.url}/api/v1/main/executions/webhook/{NAMESPACE}/greet/greet-key"
    expect(greet.locator(".webhook-url")).to_have_text(url)
    shot(page, "flows-triggers")
    page.goto(f"{_ui(server)}#/flows/{NAMESPACE}/yearly?tab=Triggers")
    expect(page.locator(".next-dates")).to_contain_text(new_year)
    assert len(re.findall(r"(1/1|12/31)/\d{4}", page.locator(".next-dates").text_content())) == 3


def test_an_execution_past_a_thousand_task_runs_lists_every_one(
    page: Any, server: ServerProcess, api: Api
) -> None:
    execution_id = api.start("many")
    ended = api.wait(execution_id, {"SUCCESS"})
    assert ended["taskRunCursor"]  # the execution lists only some: the page reads the others
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/taskruns" in r.url else None)
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    expect(page.locator("#taskrun-count")).to_have_text(str(MANY_VALUES + 1))
    assert asked and len(asked) <= MANY_VALUES // 1000 + 1
    tree = page.get_by_role("log", name="Task runs", exact=True)
    rows = tree.evaluate("(el) => el.scrollHeight / 24")  # a 24 px row per task run in the tree
    assert rows == MANY_VALUES + 1
    assert tree.locator(".row").count() < 100  # of which only those in view are in the DOM


def test_a_running_execution_is_polled_within_the_stated_budget(
    page: Any, server: ServerProcess, api: Api
) -> None:
    """POLL in pages/execution.js: at most 100 requests a minute while it runs (measured over 6 s)."""
    execution_id = api.start("long")
    api.wait(execution_id, {"RUNNING"})
    asked: list[float] = []
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    expect(page.locator("h1 .state")).to_have_text("RUNNING")
    page.on("request", lambda r: asked.append(1) if "/api/" in r.url else None)
    page.wait_for_timeout(6_000)  # a window of time to count requests in, not a wait for state
    budget = page.evaluate("import('./js/pages/execution.js').then((m) => m.POLL.perMinute())")
    assert budget == 100
    # 3 executions (2 s), 2 follows (3 s) of up to 2 pages: 7 at most, 10 with the edges
    assert 3 <= len(asked) <= budget * 6 / 60
    api.client.delete(f"/executions/{execution_id}/kill")


def test_a_log_bigger_than_a_response_still_shows_and_downloads(
    page: Any, tmp_path: Path, browser: Any
) -> None:
    """SQUALL_MAX_RESPONSE_BYTES under one 2,000-line page: the view asks smaller pages, and the
    download (whose whole-log route then says 400) is read a page at a time."""
    env = {"SQUALL_MAX_RESPONSE_BYTES": str(300_000)}  # the 10,000 lines are ~450 KB of text
    options = ("--no-auth", "--db", str(tmp_path / "small.db"), "--tick-interval", "0.2")
    with squall_server(tmp_path, *options, env=env) as server, Api(server.url) as api:
        api.deploy(CHATTY)
        execution_id = api.start("chatty")
        api.wait(execution_id, {"SUCCESS"})
        whole = api.client.get(f"/logs/{execution_id}/download")
        assert whole.status_code == 400  # what the page meets, and works around
        page.goto(f"{server.url}/ui/#/executions/{execution_id}")
        expect(page.locator("#log-count")).to_have_text(re.compile(r"^[\d,]+ lines read so far"))
        expect(page.get_by_role("log", name="Log lines")).to_contain_text("line 1 ")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download log").click()
        saved = tmp_path / "chatty.log"
        download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines if " line " in line][-1] == f"line {CHATTY_LINES}"
    assert sum(" INFO line " in line for line in lines) == CHATTY_LINES

"""The web UI in headless Chromium: every page with real data, every action by keyboard.

Each test names the user's goal; the page is driven with the keyboard wherever there is an
action (``tab_to`` + Enter), so an action a mouse alone can reach fails here. Waits are
Playwright's expectations with a deadline, never sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Api, Shot, tab_to
from tests.browser.flows import NAMESPACE
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


def test_start_from_the_form_and_watch_the_execution_live_to_its_end(
    page: Any, server: ServerProcess, api: Api, shot: Shot
) -> None:
    page.goto(_ui(server))
    expect(page.get_by_role("heading", name=NAMESPACE)).to_be_visible()
    expect(page.get_by_role("link", name="greet")).to_be_visible()
    shot(page, "flows")
    page.get_by_role("link", name="greet").click()
    expect(page.locator("svg.topology [data-task='each']")).to_be_visible()  # nested flowable drawn
    expect(page.locator("svg.topology [data-task='item']")).to_be_visible()
    expect(page.locator("svg.topology .errors [data-task='oops']")).to_be_visible()
    shot(page, "flow-topology")
    page.locator("#tab-Source").click()
    expect(page.locator("pre.code .tok-key").first).to_be_visible()
    shot(page, "flow-source")
    page.locator("#tab-Start").click()
    expect(page.locator("#in-token")).to_have_attribute("type", "password")  # a SECRET input
    expect(page.locator("#in-times")).to_have_value("2")  # the default
    page.locator("#in-name").fill("Ada")
    page.locator("#in-name").press("Enter")  # submits the form from the keyboard
    expect(page).to_have_url(re.compile(r"#/executions/\w+$"))
    badge = page.locator("h1 .state")
    expect(badge).to_have_text(re.compile("CREATED|RUNNING"))
    page.evaluate("window.__stillThisPage = true")  # a reload would drop it: the updates are live
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("hello Ada")
    expect(badge).to_have_text("SUCCESS")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("bye Ada")
    assert page.evaluate("window.__stillThisPage") is True
    expect(page.locator(".gantt .gantt-row")).to_have_count(4)  # hello, each, item a, item b
    expect(page.locator(".gantt .gantt-bar.SUCCESS")).to_have_count(4)
    expect(page.get_by_text("Ada", exact=True)).to_be_visible()  # the input
    shot(page, "execution")
    page.goto(f"{_ui(server)}#/executions?namespace={NAMESPACE}&flowId=greet")
    expect(page.locator("tbody tr").first).to_contain_text("SUCCESS")
    shot(page, "executions")


def test_kill_a_running_execution_from_the_keyboard(page: Any, server: ServerProcess, api: Api) -> None:
    execution_id = api.start("long")
    api.wait(execution_id, {"RUNNING"})
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    expect(page.locator("h1 .state")).to_have_text("RUNNING")
    tab_to(page, "button[data-action=kill]")
    page.keyboard.press("Enter")
    expect(page.locator("h1 .state")).to_have_text("KILLED")
    assert api.execution(execution_id)["state"]["current"] == "KILLED"


def test_restart_a_failed_execution(page: Any, server: ServerProcess, api: Api, shot: Shot) -> None:
    execution_id = api.start("flaky")
    api.wait(execution_id, {"FAILED"})
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    expect(page.locator("h1 .state")).to_have_text("FAILED")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("first run fails")
    shot(page, "execution-failed")
    tab_to(page, "button[data-action=restart]")
    page.keyboard.press("Enter")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("second run passes")


def test_resume_a_paused_execution_with_the_pause_tasks_inputs(
    page: Any, server: ServerProcess, api: Api, shot: Shot
) -> None:
    execution_id = api.start("approval")
    api.wait(execution_id, {"PAUSED"})
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    expect(page.locator("h1 .state")).to_have_text("PAUSED")
    tab_to(page, "button[data-action=resume]")
    page.keyboard.press("Enter")
    reason = page.locator("#in-reason")
    expect(reason).to_be_focused()  # the form opens with the focus in its first field
    shot(page, "execution-resume-form")
    page.keyboard.type("looks good")
    page.keyboard.press("Enter")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    ended = api.execution(execution_id)
    after = next(tr for tr in ended["taskRunList"] if tr["taskId"] == "after")
    assert after["outputs"] == {"value": "because looks good"}


def test_download_an_output_file(page: Any, server: ServerProcess, api: Api, tmp_path: Path) -> None:
    execution_id = api.start("files")
    api.wait(execution_id, {"SUCCESS"})
    page.goto(f"{_ui(server)}#/executions/{execution_id}")
    expect(page.locator("button.download")).to_have_text("Download report.txt")
    with page.expect_download() as download:
        tab_to(page, "button.download")
        page.keyboard.press("Enter")
    saved = tmp_path / "report.txt"
    download.value.save_as(saved)
    assert saved.read_text() == "the report\n"


def test_the_token_is_asked_once_and_kept_for_the_tab(
    page: Any, tmp_path: Path, shot: Shot, browser: Any
) -> None:
    with squall_server(tmp_path, "--db", str(tmp_path / "t.db"), "--token", "ui-secret") as server:
        task = "  - id: r\n    type: io.kestra.plugin.core.debug.Return\n    format: hi\n"
        with Api(server.url, token="ui-secret") as api:
            api.deploy(f"id: hi\nnamespace: {NAMESPACE}\ntasks:\n{task}")
        page.goto(_ui(server))
        dialog = page.locator("dialog")
        expect(dialog).to_be_visible()
        shot(page, "token-dialog")
        dialog.locator("input[name=token]").fill("ui-secret")
        dialog.locator("input[name=token]").press("Enter")
        expect(page.get_by_role("link", name="hi")).to_be_visible()
        page.reload()
        expect(page.get_by_role("link", name="hi")).to_be_visible()  # no second prompt
        expect(page.locator("dialog")).to_have_count(0)

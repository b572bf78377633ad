"""axe-core on every page of the UI, with real data: no serious or critical violation.

Each page is checked as a user sees it after it has loaded (and the flow page in each of its
tabs, the execution page with its resume form open), because axe sees only what is rendered.
The editor's own states (a problem listed, the completion list open) are checked in
test_editor.py where they are reached.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Api, Axe
from tests.browser.flows import NAMESPACE
from tests.servers import ServerProcess

expect: Any = None


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=30_000)
    expect = playwright_expect


def test_the_flows_and_flow_pages_in_every_tab(page: Any, server: ServerProcess, api: Api, axe: Axe) -> None:
    page.goto(f"{server.url}/ui/")
    expect(page.get_by_role("link", name="greet")).to_be_visible()
    expect(page.locator("td", has_text="…")).to_have_count(0)  # every "last execution" cell filled
    axe(page, "the flows page")
    page.goto(f"{server.url}/ui/#/flows/{NAMESPACE}/greet")
    expect(page.locator("svg.topology")).to_be_visible()
    for tab in ("Topology", "Source", "Revisions", "Edit", "Triggers", "Executions", "Start"):
        page.locator(f"#tab-{tab}").click()
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        axe(page, f"the flow page's {tab} tab")
    page.goto(f"{server.url}/ui/#/flows/new")
    expect(page.locator("#flow-source")).to_be_visible()
    axe(page, "the new flow page")


def test_the_executions_and_execution_pages_and_the_resume_form(
    page: Any, server: ServerProcess, api: Api, axe: Axe
) -> None:
    done = api.start("files")
    paused = api.start("approval")
    api.wait(done, {"SUCCESS", "FAILED"})
    api.wait(paused, {"PAUSED"})
    page.goto(f"{server.url}/ui/#/executions")
    expect(page.locator("tbody tr")).to_have_count(2)
    axe(page, "the executions page")
    page.goto(f"{server.url}/ui/#/executions/{done}")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    expect(page.locator("button.download")).to_be_visible()
    axe(page, "an ended execution's page")
    page.goto(f"{server.url}/ui/#/executions/{paused}")
    expect(page.locator("h1 .state")).to_have_text("PAUSED")
    page.locator("button[data-action=resume]").click()
    expect(page.locator("#in-reason")).to_be_focused()
    axe(page, "a paused execution's resume form")


def test_the_check_fails_on_what_it_must_catch(page: Any, axe: Axe) -> None:
    """The check itself: an unlabeled field and an image without text are serious or critical."""
    bad = '<img src="data:,"><input type="text">'
    page.set_content(f'<html lang="en"><title>t</title><main>{bad}</main></html>')
    with pytest.raises(AssertionError) as failed:
        axe(page, "a bad page")
    assert "image-alt (critical)" in str(failed.value) and "label (critical)" in str(failed.value)

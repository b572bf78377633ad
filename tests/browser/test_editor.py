"""The flow editor in headless Chromium, against a real ``squall server``, by keyboard.

A user writes a flow with a mistake, sees it marked at its line as they type (the server's
validate route, called a bounded number of times), jumps to it from the problem list, fixes it,
deploys, sees the revision and starts the flow; then edits it on its own page for a second
revision. Completion comes from the JSON Schema the server generates from its models.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pytest

from tests.browser.conftest import Api, Axe, Shot, tab_to
from tests.browser.flows import NAMESPACE
from tests.servers import ServerProcess

expect: Any = None

# Line 6 has the typo: a Log task has `message`, not `mesage`.
TYPO = f"""id: typed
namespace: {NAMESPACE}
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    mesage: written in the editor
"""


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=30_000)
    expect = playwright_expect


def _validations(page: Any) -> list[float]:
    """The times of the page's validate requests, appended as they go out."""
    seen: list[float] = []
    page.on("request", lambda r: seen.append(time.monotonic()) if r.url.endswith("/flows/validate") else None)
    return seen


def _caret(page: Any) -> tuple[int, int]:
    """The cursor's line and column (1-based) in the editor."""
    line, column = page.evaluate(
        """() => { const t = document.getElementById('flow-source');
        const before = t.value.slice(0, t.selectionStart);
        return [before.split('\\n').length, before.length - before.lastIndexOf('\\n')]; }"""
    )
    return int(line), int(column)


def test_write_a_flow_see_its_error_at_its_line_fix_it_deploy_and_start_it(
    page: Any, server: ServerProcess, api: Api, shot: Shot, axe: Axe
) -> None:
    validations = _validations(page)
    page.goto(f"{server.url}/ui/#/flows?namespace={NAMESPACE}")
    tab_to(page, "a[href^='#/flows/new']")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New flow")).to_be_visible()
    editor = page.locator("#flow-source")
    expect(editor).to_have_value(re.compile("io.kestra.plugin.core.log.Log"))  # a starting flow

    tab_to(page, "#flow-source")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    started = time.monotonic()
    page.keyboard.type(TYPO)  # key by key: every keystroke is an input event
    typed_for = time.monotonic() - started
    problem = page.get_by_role("button", name="Line 6, column 5")
    expect(problem).to_be_visible()
    expect(page.locator(".problems")).to_contain_text("unknown property 'mesage'")
    expect(page.locator(".editor-gutter div").nth(5)).to_have_class("err")  # line 6's number
    expect(page.locator(".editor-overlay .ln.err")).to_have_count(2)  # and `message` missing, line 4
    # Debounced and spaced: one request per second at most, whatever the typing speed.
    assert 1 <= len(validations) <= 2 + typed_for, (len(validations), typed_for)
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(validations)), validations
    shot(page, "editor-problem")
    axe(page, "the editor with a problem")

    tab_to(page, "button[data-line='6']")
    page.keyboard.press("Enter")
    expect(editor).to_be_focused()
    assert _caret(page) == (6, 5)
    page.keyboard.press("Shift+End")
    page.keyboard.type("message: written in the editor")
    expect(page.get_by_role("status").filter(has_text="Valid:")).to_have_text(f"Valid: {NAMESPACE}.typed")
    expect(page.locator(".problems li")).to_have_count(0)
    expect(page.locator(".editor-gutter .err")).to_have_count(0)

    tab_to(page, "button.deploy")
    page.keyboard.press("Enter")
    deployed = page.locator(".deployed")
    expect(deployed).to_contain_text(f"Deployed {NAMESPACE}.typed, revision 1")
    expect(page.locator("button.deploy")).to_be_focused()  # the keyboard keeps its place
    shot(page, "editor-deployed")
    tab_to(page, ".deployed a", presses=3)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"{NAMESPACE}.typed")).to_be_visible()
    tab_to(page, "form button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    expect(page.get_by_role("log", name="Log lines")).to_contain_text("written in the editor")

    # A second revision from the flow's own page, the editor in its Edit tab.
    page.goto(f"{server.url}/ui/#/flows/{NAMESPACE}/typed?tab=Edit")
    expect(page.locator("#flow-source")).to_have_value(re.compile("written in the editor"))
    page.locator("#flow-source").press("Control+End")
    page.keyboard.type("description: edited")
    page.keyboard.press("Control+s")  # the editor's shortcut for Deploy
    expect(page.locator(".deployed")).to_contain_text("revision 2")
    expect(page.get_by_text(re.compile(r"^revision 2, updated"))).to_be_visible()


def test_a_deploy_the_server_refuses_shows_why_and_marks_the_line(
    page: Any, server: ServerProcess, api: Api
) -> None:
    """Deploying before the check came back (Ctrl+S at once) still marks what the server refused."""
    page.goto(f"{server.url}/ui/#/flows/new")
    editor = page.locator("#flow-source")
    editor.fill(TYPO.replace("id: typed", "id: refused"))
    editor.press("Control+s")
    expect(page.get_by_role("alert")).to_contain_text("Not deployed: invalid flow")
    expect(page.get_by_role("button", name="Line 6, column 5")).to_be_visible()
    assert api.client.get(f"/flows/{NAMESPACE}/refused").status_code == 404


def test_completion_offers_the_schema_keys_and_task_types_by_keyboard(
    page: Any, server: ServerProcess, api: Api, shot: Shot, axe: Axe
) -> None:
    page.goto(f"{server.url}/ui/#/flows/new")
    editor = page.locator("#flow-source")
    listbox = page.get_by_role("listbox", name="Completions")
    start = f"id: completed\nnamespace: {NAMESPACE}\ntasks:\n  - id: say\n"
    start += "    type: io.kestra.plugin.core.log.Log\n"
    editor.fill(start)
    editor.press("Control+End")
    page.keyboard.type("    ")
    page.keyboard.press("Control+Space")
    expect(listbox).to_be_visible()
    options = listbox.get_by_role("option")
    expect(options.first).to_have_attribute("aria-selected", "true")
    expect(listbox).to_contain_text("message")  # the Log task's own key, from the schema
    expect(listbox).not_to_contain_text("commands")  # a script task's, not this one's
    assert editor.get_attribute("aria-activedescendant") == "completion-0"
    shot(page, "editor-completion")
    axe(page, "the editor with its completion list open")
    page.keyboard.press("Escape")
    expect(listbox).to_be_hidden()
    expect(editor).to_be_focused()

    page.keyboard.type("mess")  # typing a key opens the list, narrowed as it goes
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("message")
    page.keyboard.press("Enter")
    expect(listbox).to_be_hidden()
    page.keyboard.type("hi\n  - id: back\n    type: io.kestra.plugin.core.debug.Ret")
    expect(options.first).to_contain_text("io.kestra.plugin.core.debug.Return")
    page.keyboard.press("Enter")
    page.keyboard.type("\n    ")
    page.keyboard.press("Control+Space")
    expect(listbox).to_contain_text("format")  # Return's key: the list follows the type
    page.keyboard.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowUp")
    expect(options.first).to_have_attribute("aria-selected", "true")
    page.keyboard.type("form")
    expect(options).to_have_count(1)
    page.keyboard.press("Enter")
    page.keyboard.type("done")
    expected = start + "    message: hi\n  - id: back\n"
    expected += "    type: io.kestra.plugin.core.debug.Return\n    format: done"
    assert editor.input_value() == expected
    expect(page.get_by_role("status").filter(has_text="Valid:")).to_be_visible()


def test_lines_are_the_editors_own_across_document_markers(page: Any, server: ServerProcess) -> None:
    """The server numbers a document's lines after the ``---`` it drops; the editor shifts them
    back, and a second document is a problem at its ``---`` (one flow per editor)."""
    page.goto(f"{server.url}/ui/#/flows/new")
    editor = page.locator("#flow-source")
    editor.fill("---\n" + TYPO)
    expect(page.get_by_role("button", name="Line 7, column 5")).to_be_visible()  # the typo, one line down
    editor.fill(TYPO.replace("mesage", "message") + "---\nid: second\n")
    second = page.get_by_role("button", name="Line 7, column 1")  # the --- itself
    expect(second).to_be_visible()
    expect(page.locator(".problems li")).to_have_count(1)
    expect(page.locator(".problems")).to_contain_text("the editor holds one flow")

"""A real browser (headless Chromium driven by Playwright for Python) on a real ``squall server``.

The server is its own process (``squall server --no-auth``, SQLite, tasks as local
processes), as a user runs it; the tests deploy flows through the API and then use only the
page. Screenshots of every page go to ``build/ui-screenshots/`` (``SQUALL_UI_SCREENSHOTS``
overrides it), which the run creates; ``build/`` is not committed.

Needs: Debian's ``chromium`` package (``/usr/bin/chromium``, or ``SQUALL_CHROMIUM``) and the
``playwright`` Python package (its driver only: no ``playwright install``, the browser is
Debian's). Without them the tests skip, saying which is missing; with
``SQUALL_REQUIRE_BROWSER=1`` they fail instead (for CI once it installs both).

Accessibility: :func:`assert_accessible` runs axe-core in the page. axe-core comes from the
``axe-playwright-python`` wheel (pinned in the dev extra), which bundles ``axe.min.js``: a
fresh clone gets it from PyPI with the rest of the dev extra, and nothing of it is shipped.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import flows
from tests.servers import ServerProcess, squall_server

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT_PIN = "playwright==1.65.2"
AXE_PIN = "axe-playwright-python==0.1.8"
# What fails a page: axe's two worst impacts. "moderate" and "minor" ones are reported, not fatal.
BLOCKING = ("serious", "critical")


def _missing(message: str) -> None:
    if os.environ.get("SQUALL_REQUIRE_BROWSER"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def chromium_path() -> str | None:
    given = os.environ.get("SQUALL_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("SQUALL_UI_SCREENSHOTS") or ROOT / "build" / "ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing(f"Playwright for Python is not installed (pip install {PLAYWRIGHT_PIN})")
    executable = chromium_path()
    if executable is None:
        _missing("no Chromium on PATH (Debian: apt-get install chromium), or set SQUALL_CHROMIUM")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("ui-server")
    options = ("--no-auth", "--db", str(directory / "ui.db"), "--tick-interval", "0.2")
    with squall_server(directory, *options) as running:
        yield running


class Api:
    """The few API calls the tests make around the page (deploy, start, wait)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=f"{url}/api/v1/main", headers=headers, timeout=30)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def deploy(self, source: str) -> None:
        response = self.client.post("/flows", content=source, headers={"Content-Type": "application/x-yaml"})
        if response.status_code == 422 and "exists" in response.text:
            flow = source.split("id: ", 1)[1].split()[0]
            yaml = {"Content-Type": "application/x-yaml"}
            response = self.client.put(f"/flows/{flows.NAMESPACE}/{flow}", content=source, headers=yaml)
        assert response.status_code == 200, response.text

    def start(self, flow: str) -> str:
        response = self.client.post(f"/executions/{flows.NAMESPACE}/{flow}")
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def execution(self, execution_id: str) -> dict[str, Any]:
        response = self.client.get(f"/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, execution_id: str, states: set[str], deadline_s: float = 60) -> dict[str, Any]:
        end = time.monotonic() + deadline_s
        while True:
            seen = self.execution(execution_id)
            if seen["state"]["current"] in states:
                return seen
            if time.monotonic() > end:
                raise AssertionError(f"{execution_id} is {seen['state']['current']}, never {states}")
            time.sleep(0.1)  # polling the API with a deadline


@pytest.fixture(scope="module")
def api(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    marker = tmp_path_factory.mktemp("flaky") / "ran-once"
    with Api(server.url) as client:
        extra = (flows.FAILING, flows.UPLOAD, flows.SIGNED, flows.CHATTY, flows.SCHEDULED, flows.MANY)
        for source in (flows.GREET, flows.LONG, flows.APPROVAL, flows.FILES, flows.flaky(marker), *extra):
            client.deploy(source)
        yield client


@pytest.fixture
def page(browser: Any, screenshots: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # A Content-Security-Policy refusal is only a console message: count it as an error.
    opened.on(
        "console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    try:
        yield opened
    finally:
        opened.screenshot(path=str(screenshots / f"{request.node.name}-final.png"), full_page=True)
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def tab_to(page: Any, selector: str, presses: int = 300) -> None:
    """Press Tab until the element matching ``selector`` has the focus: it is reachable by keyboard."""
    for _ in range(presses):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never took the focus in {presses} presses of Tab")


Shot = Callable[[Any, str], None]


@pytest.fixture
def shot(screenshots: Path) -> Shot:
    def take(page: Any, name: str) -> None:
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    return take


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe-core's ``axe.min.js``, as the pinned wheel bundles it."""
    try:
        from axe_playwright_python import base
    except ImportError:
        _missing(f"axe-playwright-python is not installed (pip install {AXE_PIN})")
    return str(base.AXE_SCRIPT)


Axe = Callable[[Any, str], list[dict[str, Any]]]


@pytest.fixture
def axe(axe_script: str) -> Axe:
    """``axe(page, name)``: run every axe-core rule on the page as it is now; fail on a serious
    or critical violation, naming its rule, the elements and axe's help. Returns the lesser ones."""

    def check(page: Any, name: str) -> list[dict[str, Any]]:
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(axe_script)
        results = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
        violations: list[dict[str, Any]] = results["violations"]
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        described = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
            for v in blocking
        ]
        assert not blocking, f"axe-core on {name}: " + "; ".join(described)
        return [v for v in violations if v["impact"] not in BLOCKING]

    return check

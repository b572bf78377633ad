"""The flow editor on a big flow: the cost of a keystroke, of a completion, and the validate
requests typing makes, printed.

A real ``squall server`` process (``--no-auth``, SQLite) serves the UI; headless Chromium
(Playwright, Debian's ``chromium``) opens the new flow page and the editor gets a flow of N Log
tasks (3 lines each). Then:

* keystroke: 200 characters inserted one at a time in the middle of the flow, timed in the
  page (``performance.now``) in two parts: the textarea's own edit and layout (what any
  textarea-based editor pays), then the ``input`` event the editor repaints on (gutter,
  highlighted copy) with the layout it causes: milliseconds per keystroke, median and worst;
* completion: Ctrl+Space in the middle of the flow until the list shows, timed the same way;
* requests: 150 characters typed by the keyboard at 20 ms a key (3 s of typing) and then
  2 s of quiet; the validate requests the page sent, counted, against the bound (one per
  second, so at most 1 + seconds elapsed).

The last line is stable for tracking:

    ui_editor: <lines> lines, repaint per keystroke median <ms> ms (worst <ms>; textarea alone <ms>),
    completion <ms> ms, <n> validate requests in <s> s of typing (bound <b>)

Usage: python benchmarks/ui_editor.py [--tasks 1000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import squall_server  # noqa: E402  (the repository root, put on the path above)


def _flow(tasks: int) -> str:
    task = "  - id: t{i}\n    type: io.kestra.plugin.core.log.Log\n    message: line {i}\n"
    body = "".join(task.format(i=i) for i in range(tasks))
    return f"id: big\nnamespace: squall.bench\ntasks:\n{body}"


_KEYSTROKES = """(count) => {
  const t = document.getElementById('flow-source');
  const middle = t.value.indexOf('\\n', Math.floor(t.value.length / 2)) + 1;
  const textarea = [];
  const editor = [];
  for (let i = 0; i < count; i++) {
    const at = middle + i;
    let start = performance.now();
    t.setRangeText('x', at, at, 'end');
    void document.body.offsetHeight; // the textarea's own layout: any textarea pays it
    textarea.push(performance.now() - start);
    start = performance.now();
    t.dispatchEvent(new InputEvent('input', { data: null, inputType: 'insertText' }));
    void document.body.offsetHeight; // the layout the editor's repaint causes
    editor.push(performance.now() - start);
  }
  return [textarea, editor];
}"""


def _measure(page: Any, source: str) -> dict[str, float]:
    page.locator("#flow-source").wait_for()
    # Set in the page: Playwright's fill() of 100 KB takes longer than its own timeout.
    page.evaluate(
        """(source) => { const t = document.getElementById('flow-source'); t.value = source;
        t.dispatchEvent(new InputEvent('input', { inputType: 'insertFromPaste' })); }""",
        source,
    )
    page.get_by_role("status").filter(has_text="Valid:").wait_for(timeout=60_000)
    textarea, keystrokes = page.evaluate(_KEYSTROKES, 200)
    figures = {
        "median": statistics.median(keystrokes),
        "worst": max(keystrokes),
        "alone": statistics.median(textarea),
    }
    page.evaluate("""() => { const t = document.getElementById('flow-source');
        const at = t.value.indexOf('\\n', Math.floor(t.value.length / 3)) + 1;
        t.focus(); t.setSelectionRange(at, at); }""")
    page.keyboard.type("    ")
    started = time.monotonic()
    page.keyboard.press("Control+Space")
    page.get_by_role("listbox", name="Completions").wait_for(state="visible")
    figures["completion"] = (time.monotonic() - started) * 1000
    page.keyboard.press("Escape")

    sent: list[float] = []
    page.on("request", lambda r: sent.append(time.monotonic()) if r.url.endswith("/flows/validate") else None)
    started = time.monotonic()
    page.keyboard.type("# " + "typing " * 21, delay=20)
    figures["typed"] = time.monotonic() - started
    page.wait_for_timeout(2000)  # the quiet after typing: the last validation goes out
    figures["bound"] = 1 + int(time.monotonic() - started)
    figures["requests"] = len(sent)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("ui_editor: needs Debian's chromium (apt-get install chromium)")
    source = _flow(args.tasks)
    lines = source.count("\n") + 1
    tmp = tempfile.mkdtemp(prefix="ui-editor-")
    options = ("--no-auth", "--db", f"{tmp}/b.db")
    with sync_playwright() as playwright, squall_server(Path(tmp), *options) as server:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}/ui/#/flows/new")
        f = _measure(page, source)
        browser.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"keystroke ({lines} lines, 200 of them): the editor's repaint median {f['median']:.2f} ms,")
    print(f"  worst {f['worst']:.2f} ms; the textarea's own edit and layout median {f['alone']:.2f} ms")
    print(f"completion: {f['completion']:.0f} ms from Ctrl+Space to the list (with the driver's round trip)")
    print(f"requests: {f['requests']:.0f} validate requests, {f['typed']:.1f} s of typing + 2 s quiet")
    print(
        f"ui_editor: {lines} lines, repaint per keystroke median {f['median']:.2f} ms"
        f" (worst {f['worst']:.2f}; textarea alone {f['alone']:.2f}), completion {f['completion']:.0f} ms,"
        f" {f['requests']:.0f} validate requests in {f['typed']:.1f} s of typing (bound {f['bound']:.0f})"
    )


if __name__ == "__main__":
    main()

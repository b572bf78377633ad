// The execution page of a big execution, built by the UI's real modules in Node over the
// minimal DOM of tests/browser/dom_shim.mjs (driven by benchmarks/ui_page.py), and the
// virtual list alone over 1,000,000 log lines. Prints one JSON object.
// Usage: node ui_page.mjs ORIGIN STATIC_DIR EXECUTION_ID
import { install } from "../tests/browser/dom_shim.mjs";

const [origin, staticDir, executionId] = process.argv.slice(2);
const dom = install(origin);
const { h } = await import(`${staticDir}/js/dom.js`);
dom.body.append(h("header", {}, h("nav", {}), h("button", { id: "signout" })), h("main", { id: "main" }));
location.hash = "#/executions";
await import(`${staticDir}/js/main.js`);
const main = () => dom.body.querySelector("#main");
async function until(test, ms = 120000) {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out: ${main().textContent.slice(0, 300)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
await until(() => (main().querySelector("h1")?.textContent || "").includes("Executions"));
globalThis.gc?.();
const heapBefore = process.memoryUsage().heapUsed;
const started = performance.now();
dom.navigate(`#/executions/${executionId}`);
await until(() => main().querySelector("h1 .state"));
const firstRender = performance.now() - started;
const heapAfter = process.memoryUsage().heapUsed;
const taskRuns = Number((main().textContent.match(/Task runs(\d+)/) || [])[1] || 0);
const ganttRows = main().querySelectorAll(".gantt-row").length;
const requests = fetchLog.length;

const { VirtualList } = await import(`${staticDir}/js/virtual-list.js`);
const lines = Array.from({ length: 1_000_000 }, (_, i) => ({ level: "INFO", timestamp: "2026-01-01T00:00:00Z", taskId: "t", message: `line ${i}` }));
const list = new VirtualList({ rowHeight: 18, renderRow: (l) => h("div", { class: "row" }, l.message) });
let t = performance.now();
list.setItems(lines);
const logSet = performance.now() - t;
t = performance.now();
list.el.scrollTop = 500_000 * 18;
list.paint();
const logScroll = performance.now() - t;
console.log(JSON.stringify({
  firstRenderMs: Math.round(firstRender), heapMiB: +((heapAfter - heapBefore) / 2 ** 20).toFixed(1), taskRuns, ganttRows, requests,
  logLines: lines.length, logSetItemsMs: +logSet.toFixed(1), logScrollPaintMs: +logScroll.toFixed(1), logRowsInDom: list.painted.size,
  note: main().querySelector(".error")?.textContent || "",
}));
process.exit(0);

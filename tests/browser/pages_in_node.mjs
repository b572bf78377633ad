// The UI's real modules run in Node over a minimal DOM (dom_shim.mjs) against a live server:
// every page is built from real API answers and the actions are carried out, so a runtime
// error in the page code (a wrong field, a null where a node was meant) fails without a
// browser. It cannot see layout, CSS, focus order or real events: the Chromium tests do.
// Usage: node pages_in_node.mjs ORIGIN STATIC_DIR '{"files": ID, "paused": ID, "greet": ID}'
import { install } from "./dom_shim.mjs";

const [origin, staticDir, idsJson] = process.argv.slice(2);
const ids = JSON.parse(idsJson);
const dom = install(origin);
const errors = [];
process.on("unhandledRejection", (e) => errors.push(String(e && e.stack ? e.stack : e)));
const { h } = await import(`${staticDir}/js/dom.js`);
dom.body.append(
  h("header", {}, h("nav", {}, h("a", { href: "#/flows" }), h("a", { href: "#/executions" })), h("button", { id: "signout" })),
  h("main", { id: "main" }),
);
location.hash = "#/flows";
await import(`${staticDir}/js/main.js`);

const main = () => dom.body.querySelector("#main");
const deadline = (ms) => Date.now() + ms;
// Wait on a condition with a deadline (the page loads asynchronously).
async function until(what, test, ms = 20000) {
  const end = deadline(ms);
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${main().textContent.slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const loaded = (heading) => () => (main().querySelector("h1")?.textContent || "").includes(heading);
const texts = (sel) => main().querySelectorAll(sel).map((e) => e.textContent);
const report = { unlabeled: [] };
// Controls a screen reader could not name: no <label for>, no enclosing label, no aria-label,
// and buttons or links with no text. (A stand-in for axe-core's label rules, page by page.)
function unlabeled(page) {
  const labelled = (el) => {
    if (el.getAttribute("aria-label") || el.getAttribute("type") === "hidden") return true;
    if (el.id && main().querySelector(`label[for=${el.id}]`)) return true;
    for (let n = el.parentNode; n; n = n.parentNode) if (n.tagName === "LABEL") return true;
    return false;
  };
  for (const el of main().querySelectorAll("input, select, textarea")) if (!labelled(el)) report.unlabeled.push(`${page}: ${el.tagName} ${el.id}`);
  for (const el of main().querySelectorAll("button, a")) if (!el.textContent.trim() && !el.getAttribute("aria-label")) report.unlabeled.push(`${page}: empty ${el.tagName}`);
}

await until("the flows page", loaded("Flows"));
await until("last executions", () => !main().textContent.includes("…"));
unlabeled("flows");
report.flows = { namespaces: texts("h2"), links: texts("tbody a"), text: main().textContent };

dom.navigate("#/flows/squall.ui/greet");
await until("the flow page", loaded("squall.ui.greet"));
unlabeled("flow");
report.flow = {
  tasks: main().querySelectorAll("g").map((g) => g.getAttribute("data-task")).filter(Boolean),
  errors: main().querySelectorAll("g.errors").map((g) => g.getAttribute("data-task")).filter(Boolean),
  tabs: texts("[role=tab]"),
  inputs: main().querySelectorAll("form input, form select, form textarea").map((e) => e.id),
  keys: texts("pre.code .tok-key").slice(0, 5),
  triggers: main().querySelector("#panel-Triggers").textContent,
  revisions: main().querySelector("#panel-Revisions").textContent,
};

dom.navigate("#/executions?namespace=squall.ui&state=SUCCESS");
await until("the executions page", loaded("Executions"));
unlabeled("executions");
report.executions = { states: texts("tbody .state"), total: texts("p.muted")[0] };

dom.navigate("#/executions?namespace=squall.ui&label=team:ui&after=2000-01-01T00:00");
await until("the labelled executions", () => main().querySelector("#f-label")?.value === "team:ui");
const cells = (i) => main().querySelectorAll("tbody tr").map((tr) => tr.children.at(i).textContent);
report.labelled = { flows: cells(2), labels: cells(-1) };

dom.navigate(`#/executions/${ids.files}`);
await until("the execution page", loaded("Execution"));
report.files = { actions: texts("button[data-action]"), downloads: texts("button.download"), gantt: texts(".gantt-row .name") };

dom.navigate(`#/executions/${ids.greet}`);
await until("the greet execution", loaded("Execution"));
await until("its end", () => main().querySelector("h1 .state")?.textContent === "SUCCESS", 60000);
await until("its last log line", () => main().textContent.includes("bye Ada"));
unlabeled("execution");
report.greet = { gantt: texts(".gantt-row .name"), bars: main().querySelectorAll(".gantt-bar").length, text: main().textContent };

dom.navigate(`#/executions/${ids.paused}`);
await until("the paused execution", () => texts("button[data-action]").includes("Resume…"));
report.paused = { actions: texts("button[data-action]") };
main().querySelector("button[data-action=resume]").click();
const field = main().querySelector("#in-reason");
unlabeled("resume form");
report.paused.focused = document.activeElement === field;
field.value = "from node";
main().querySelector("form").dispatch("submit");
await until("the resumed execution's end", () => main().querySelector("h1 .state")?.textContent === "SUCCESS", 60000);
report.paused.text = main().textContent;

dom.navigate(`#/executions/${ids.long}`);
await until("the running execution", () => texts("button[data-action]").includes("Kill"));
main().querySelector("button[data-action=kill]").click();
await until("the kill", () => main().querySelector("h1 .state")?.textContent === "KILLED", 60000);
report.killed = { actions: texts("button[data-action]") };

dom.navigate(`#/executions/${ids.files}`);
await until("the files execution", () => texts("button[data-action]").includes("Replay"));
main().querySelector("button[data-action=replay]").click();
await until("the replay's page", () => !location.hash.endsWith(ids.files));
report.replay = location.hash.split("/").pop();

report.requests = fetchLog.length;
report.errors = errors;
console.log(JSON.stringify(report));
process.exit(0);

import { json, query, enc } from "../api.js";
import { h, fill, stateBadge, when } from "../dom.js";
import { pager } from "./flows.js";

// Executions, newest first, filtered and paged by the server (executions/search).
const SIZE = 25;
const STATES = ["CREATED", "RUNNING", "PAUSED", "RETRYING", "KILLING", "SUCCESS", "WARNING", "FAILED", "KILLED"];

export async function executionsPage(root, params) {
  const page = Number(params.get("page") || 1);
  const namespace = params.get("namespace") || "";
  const flowId = params.get("flowId") || "";
  const state = params.get("state") || "";
  const label = params.get("label") || "";
  const after = params.get("after") || "";
  const before = params.get("before") || "";
  const filters = { page, size: SIZE, sort: "state.startDate:desc" };
  if (namespace) filters["filters[namespace][PREFIX]"] = namespace;
  if (flowId) filters["filters[flowId][EQUALS]"] = flowId;
  if (state) filters["filters[state][EQUALS]"] = state;
  if (label.includes(":")) {
    const [key, ...rest] = label.split(":");
    filters[`filters[labels][EQUALS][${key.trim()}]`] = rest.join(":").trim();
  }
  // Both bounds are on the creation time (docs/api.md); the inputs are local time.
  if (after) filters["filters[startDate][GREATER_THAN_OR_EQUAL_TO]"] = new Date(after).toISOString();
  if (before) filters["filters[endDate][LESS_THAN_OR_EQUAL_TO]"] = new Date(before).toISOString();
  const result = await json(`executions/search${query(filters)}`);
  const form = h("form", { class: "filters", role: "search" },
    h("label", { for: "f-ns" }, "Namespace (prefix)", h("input", { id: "f-ns", name: "namespace", value: namespace })),
    h("label", { for: "f-flow" }, "Flow", h("input", { id: "f-flow", name: "flowId", value: flowId })),
    h("label", { for: "f-state" }, "State", h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
      STATES.map((s) => h("option", { value: s, selected: s === state }, s)))),
    h("label", { for: "f-label" }, "Label (key:value)", h("input", { id: "f-label", name: "label", value: label, placeholder: "team:data" })),
    h("label", { for: "f-after" }, "Created after", h("input", { id: "f-after", name: "after", type: "datetime-local", value: after })),
    h("label", { for: "f-before" }, "Created before", h("input", { id: "f-before", name: "before", type: "datetime-local", value: before })),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const field = (name) => form.querySelector(`[name=${name}]`).value;
    const chosen = Object.fromEntries(["namespace", "flowId", "state", "label", "after", "before"].map((n) => [n, field(n)]));
    location.hash = `#/executions${query(chosen)}`;
  });
  const rows = result.results.map((e) => h("tr", {},
    h("td", {}, h("a", { href: `#/executions/${enc(e.id)}` }, e.id)),
    h("td", {}, e.namespace),
    h("td", {}, h("a", { href: `#/flows/${enc(e.namespace)}/${enc(e.flowId)}` }, e.flowId)),
    h("td", {}, stateBadge(e.state.current)),
    h("td", {}, when(e.state.startDate)),
    h("td", {}, e.state.duration || ""),
    // System labels (system.correlationId on every execution) are hidden in lists, shown on the
    // execution's own page, as Kestra's hidden-labels default does (kestra-io/kestra#5600).
    h("td", {}, (e.labels || []).filter((l) => !l.key.startsWith("system.")).map((l) => `${l.key}:${l.value}`).join(" "))));
  fill(root,
    h("h1", {}, "Executions"), form,
    h("p", { class: "muted" }, `${result.total} execution${result.total === 1 ? "" : "s"}`),
    h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Namespace", "Flow", "State", "Created", "Duration", "Labels"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
    pager(Math.max(1, Math.ceil(result.total / SIZE)), page, (p) => `#/executions${query({ namespace, flowId, state, label, after, before, page: p })}`));
}

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
  const filters = { page, size: SIZE, sort: "state.startDate:desc" };
  if (namespace) filters["filters[namespace][PREFIX]"] = namespace;
  if (flowId) filters["filters[flowId][EQUALS]"] = flowId;
  if (state) filters["filters[state][EQUALS]"] = state;
  const result = await json(`executions/search${query(filters)}`);
  const form = h("form", { class: "filters", role: "search" },
    h("label", { for: "f-ns" }, "Namespace (prefix)", h("input", { id: "f-ns", name: "namespace", value: namespace })),
    h("label", { for: "f-flow" }, "Flow", h("input", { id: "f-flow", name: "flowId", value: flowId })),
    h("label", { for: "f-state" }, "State", h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
      STATES.map((s) => h("option", { value: s, selected: s === state }, s)))),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    location.hash = `#/executions${query({ namespace: data.get("namespace"), flowId: data.get("flowId"), state: data.get("state") })}`;
  });
  const rows = result.results.map((e) => h("tr", {},
    h("td", {}, h("a", { href: `#/executions/${enc(e.id)}` }, e.id)),
    h("td", {}, e.namespace),
    h("td", {}, h("a", { href: `#/flows/${enc(e.namespace)}/${enc(e.flowId)}` }, e.flowId)),
    h("td", {}, stateBadge(e.state.current)),
    h("td", {}, when(e.state.startDate)),
    h("td", {}, e.state.duration || ""),
    h("td", {}, (e.labels || []).map((l) => `${l.key}:${l.value}`).join(" "))));
  fill(root,
    h("h1", {}, "Executions"), form,
    h("p", { class: "muted" }, `${result.total} execution${result.total === 1 ? "" : "s"}`),
    h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Namespace", "Flow", "State", "Created", "Duration", "Labels"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
    pager(Math.max(1, Math.ceil(result.total / SIZE)), page, (p) => `#/executions${query({ namespace, flowId, state, page: p })}`));
}

import { json, query, enc } from "../api.js";
import { h, fill, stateBadge, when } from "../dom.js";
import { highlightYaml } from "../yaml-highlight.js";
import { topology } from "../topology.js";
import { inputsForm } from "../inputs-form.js";
import { lineDiff } from "../diff.js";
import { triggerDetail } from "../triggers.js";
import { flowEditor } from "../flow-editor.js";

// One flow: topology, source, revisions (with a diff to the one before), triggers, its recent
// executions and the start form generated from its inputs.
function tabs(panels, selected) {
  const buttons = [];
  const bodies = [];
  const show = (i) => {
    buttons.forEach((b, j) => { b.setAttribute("aria-selected", String(i === j)); b.tabIndex = i === j ? 0 : -1; });
    bodies.forEach((p, j) => { p.hidden = i !== j; });
  };
  panels.forEach(([label, render], i) => {
    const button = h("button", { type: "button", role: "tab", id: `tab-${label}`, "aria-controls": `panel-${label}` }, label);
    button.addEventListener("click", () => show(i));
    button.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = (i + step + panels.length) % panels.length;
      show(next);
      buttons[next].focus();
    });
    buttons.push(button);
    bodies.push(h("section", { role: "tabpanel", id: `panel-${label}`, "aria-labelledby": `tab-${label}` }, render()));
  });
  const index = Math.max(0, panels.findIndex(([label]) => label === selected));
  show(index);
  return [h("div", { class: "tabs", role: "tablist" }, buttons), bodies];
}

function triggersTable(flow, namespace, id) {
  const triggers = flow.triggers || [];
  if (!triggers.length) return h("p", {}, "No triggers: started by hand, by the API or as a subflow.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Type", "Detail"].map((t) => h("th", {}, t)))),
    h("tbody", {}, triggers.map((t) => h("tr", {}, h("td", {}, t.id), h("td", {}, t.type), h("td", {}, triggerDetail(t, namespace, id))))));
}

function revisionsView(revisions) {
  const list = [...revisions].reverse();
  const body = h("div", {});
  const select = h("select", { id: "rev" }, list.map((r) => h("option", { value: r.revision }, `revision ${r.revision} (${when(r.updated)})`)));
  const render = () => {
    const i = list.findIndex((r) => String(r.revision) === select.value);
    const current = list[i];
    const previous = list[i + 1];
    fill(body, previous ? h("div", {}, h("h2", {}, `Changes from revision ${previous.revision}`), lineDiff(previous.source || "", current.source || "")) : null,
      h("h2", {}, `Source of revision ${current.revision}`), highlightYaml(current.source));
  };
  select.addEventListener("change", render);
  if (list.length) render();
  return h("div", {}, h("label", { for: "rev" }, "Revision", select), body);
}

export async function flowPage(root, namespace, id, params) {
  const [flow, revisions, recent] = await Promise.all([
    json(`flows/${enc(namespace)}/${enc(id)}`),
    json(`flows/${enc(namespace)}/${enc(id)}/revisions`),
    json(`executions${query({ namespace, flowId: id, page: 1, size: 10 })}`),
  ]);
  const start = () => inputsForm(flow.inputs || [], "Start execution", async (data) => {
    // A flow without inputs starts with a bare POST: the server refuses a multipart body of no parts.
    const body = [...data.keys()].length ? data : undefined;
    const started = await json(`executions/${enc(namespace)}/${enc(id)}`, { method: "POST", body });
    location.hash = `#/executions/${enc(started.id)}`;
  });
  const executions = () => h("table", {}, h("tbody", {}, recent.results.map((e) => h("tr", {},
    h("td", {}, h("a", { href: `#/executions/${enc(e.id)}` }, e.id)), h("td", {}, stateBadge(e.state.current)), h("td", {}, when(e.state.startDate))))),
    h("caption", {}, h("a", { href: `#/executions${query({ namespace, flowId: id })}` }, "all executions of this flow")));
  const revision = h("p", { class: "muted" }, `revision ${flow.revision}, updated ${when(flow.updated)}`);
  const [tabBar, panels] = tabs([
    ["Topology", () => topology(flow)],
    ["Source", () => highlightYaml(flow.source)],
    ["Revisions", () => revisionsView(revisions)],
    ["Edit", () => flowEditor({ source: flow.source, namespace, id, onDeployed: (updated) => {
      revision.textContent = `revision ${updated.revision}, updated ${when(updated.updated)}`;
    } })],
    ["Triggers", () => triggersTable(flow, namespace, id)],
    ["Executions", executions],
    ["Start", start],
  ], params.get("tab") || "Topology");
  fill(root,
    h("h1", {}, `${namespace}.${id}`, flow.disabled ? " (disabled)" : ""),
    flow.description ? h("p", {}, flow.description) : null,
    revision,
    tabBar, panels);
}

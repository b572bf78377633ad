import { json, query, enc } from "../api.js";
import { h, fill, stateBadge, when } from "../dom.js";
import { triggerDetail } from "../triggers.js";

// Flows by namespace, a server-side page at a time, each with its last execution's state.
const SIZE = 50;

async function lastExecution(flow) {
  const page = await json(`executions${query({ namespace: flow.namespace, flowId: flow.id, page: 1, size: 1 })}`);
  return page.results[0] || null;
}

// At most `limit` requests at once: a page of 50 flows must not fire 50 requests together.
async function eachLimited(items, limit, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(workers);
}

export async function flowsPage(root, params) {
  const page = Number(params.get("page") || 1);
  const namespace = params.get("namespace") || "";
  const namespaces = await json("flows/distinct-namespaces");
  const filters = { page, size: SIZE, sort: "namespace:asc" };
  if (namespace) filters["filters[namespace][PREFIX]"] = namespace;
  const result = await json(`flows/search${query(filters)}`);
  const select = h("select", { id: "ns", name: "namespace" }, h("option", { value: "" }, "all namespaces"),
    namespaces.map((ns) => h("option", { value: ns, selected: ns === namespace }, ns)));
  select.addEventListener("change", () => { location.hash = `#/flows${query({ namespace: select.value })}`; });
  const groups = new Map();
  for (const flow of result.results) {
    if (!groups.has(flow.namespace)) groups.set(flow.namespace, []);
    groups.get(flow.namespace).push(flow);
  }
  const lastCells = new Map();
  const sections = [...groups].map(([ns, flows]) => h("section", {},
    h("h2", {}, ns),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Flow"), h("th", {}, "Revision"), h("th", {}, "Triggers"), h("th", {}, "Last execution"))),
      h("tbody", {}, flows.map((flow) => {
        const cell = h("td", { class: "muted" }, "…");
        lastCells.set(flow, cell);
        return h("tr", {},
          h("td", {}, h("a", { href: `#/flows/${enc(flow.namespace)}/${enc(flow.id)}` }, flow.id), flow.disabled ? " (disabled)" : ""),
          h("td", {}, flow.revision),
          h("td", { class: "triggers" }, (flow.triggers || []).map((t) => h("div", {}, `${t.id} (${String(t.type).split(".").pop()}) `,
            triggerDetail(t, flow.namespace, flow.id, { dates: 1 })))),
          cell);
      })))));
  const pages = Math.max(1, Math.ceil(result.total / SIZE));
  fill(root,
    h("h1", {}, "Flows"),
    h("div", { class: "filters" }, h("label", { for: "ns" }, "Namespace", select),
      h("a", { href: `#/flows/new${query({ namespace })}`, class: "button" }, "New flow")),
    result.total ? sections : h("p", {}, "No flows yet: deploy one with `squall deploy FILE` or POST /api/v1/main/flows."),
    pager(pages, page, (p) => `#/flows${query({ namespace, page: p })}`),
  );
  await eachLimited([...lastCells], 4, async ([flow, cell]) => {
    try {
      const last = await lastExecution(flow);
      fill(cell, last ? h("span", {}, stateBadge(last.state.current), " ",
        h("a", { href: `#/executions/${enc(last.id)}` }, when(last.state.startDate))) : "never run");
    } catch (e) {
      cell.textContent = e.message;
    }
  });
}

export function pager(pages, page, href) {
  if (pages <= 1) return null;
  return h("nav", { "aria-label": "Pages", class: "actions" },
    page > 1 ? h("a", { href: href(page - 1) }, "← previous") : null,
    h("span", {}, `page ${page} of ${pages}`),
    page < pages ? h("a", { href: href(page + 1) }, "next →") : null);
}

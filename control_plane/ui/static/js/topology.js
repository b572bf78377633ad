import { svg } from "./dom.js";

// The flow's topology as nested boxes: sequential tasks stacked and joined by arrows, a
// flowable's branches side by side inside it (then/else, cases, parallel tasks, Dag tasks with
// their dependsOn), and the flow's and flowables' `errors` and `finally` in tinted boxes.
// A plain recursive layout: no graph library, fine for the tens of tasks a flow declares.
const BOX_H = 28, GAP = 18, PAD = 10, LABEL = 18, MIN_W = 150;

function short(type) {
  return String(type || "").split(".").pop();
}

function children(task) {
  // [branch label, tasks] pairs in the order Kestra draws them.
  const out = [];
  const parallel = /Parallel|ForEach|Dag/.test(task.type || "");
  if (Array.isArray(task.tasks)) {
    const list = task.tasks.map((t) => (t && t.task ? { ...t.task, _dependsOn: t.dependsOn } : t));
    if (parallel) for (const t of list) out.push(["", [t]]);
    else out.push(["", list]);
  }
  if (Array.isArray(task.then)) out.push(["then", task.then]);
  if (Array.isArray(task.else)) out.push(["else", task.else]);
  if (task.cases && typeof task.cases === "object")
    for (const [key, list] of Object.entries(task.cases)) out.push([`case ${key}`, list]);
  if (Array.isArray(task.defaults)) out.push(["defaults", task.defaults]);
  if (task.subflow && Array.isArray(task.subflow.tasks)) out.push(["", task.subflow.tasks]);
  return out;
}

function layoutList(tasks, kind) {
  const nodes = (tasks || []).filter(Boolean).map((t) => layoutTask(t, kind));
  const w = Math.max(MIN_W, ...nodes.map((n) => n.w));
  const h = nodes.reduce((sum, n) => sum + n.h, 0) + GAP * Math.max(0, nodes.length - 1);
  return { w, h, nodes };
}

function layoutTask(task, kind = "") {
  const branches = children(task).map(([label, list]) => ({ label, ...layoutList(list, "") }));
  const extras = [];
  if (Array.isArray(task.errors) && task.errors.length) extras.push({ label: "errors", ...layoutList(task.errors, "errors") });
  if (Array.isArray(task.finally) && task.finally.length) extras.push({ label: "finally", ...layoutList(task.finally, "finally") });
  const inner = [...branches, ...extras];
  if (!inner.length) {
    const text = `${task.id} · ${short(task.type)}`;
    return { task, kind, w: Math.max(MIN_W, text.length * 7 + 16), h: BOX_H, inner, text };
  }
  const w = Math.max(MIN_W, inner.reduce((s, b) => s + b.w, 0) + GAP * (inner.length - 1) + 2 * PAD);
  const h = LABEL + PAD + Math.max(...inner.map((b) => b.h + (b.label ? LABEL : 0))) + PAD;
  return { task, kind: kind || "flowable", w, h, inner, text: `${task.id} · ${short(task.type)}` };
}

function draw(node, x, y) {
  const g = svg("g", { class: node.kind || "task", "data-task": node.task.id }, svg("title", {}, node.text));
  g.append(svg("rect", { x, y, width: node.w, height: node.h, rx: 4 }));
  g.append(svg("text", { x: x + 8, y: y + (node.inner.length ? 14 : 18) }, node.text));
  if (node.task._dependsOn && node.task._dependsOn.length)
    g.append(svg("text", { x: x + 8, y: y + node.h + 12, class: "muted" }, `after ${node.task._dependsOn.join(", ")}`));
  let bx = x + PAD;
  for (const branch of node.inner) {
    let by = y + LABEL + PAD;
    if (branch.label) {
      g.append(svg("text", { x: bx, y: by + 12 }, branch.label));
      by += LABEL;
    }
    const group = branch.nodes[0] && branch.nodes[0].kind && branch.nodes[0].kind !== "flowable" ? svg("g", { class: branch.nodes[0].kind }) : g;
    drawColumn(group, branch, bx, by);
    if (group !== g) g.append(group);
    bx += branch.w + GAP;
  }
  return g;
}

function drawColumn(parent, column, x, y) {
  let cy = y;
  column.nodes.forEach((node, i) => {
    parent.append(draw(node, x, cy));
    if (i < column.nodes.length - 1) {
      const mid = x + Math.min(node.w, column.nodes[i + 1].w) / 2;
      parent.append(svg("path", { d: `M${mid} ${cy + node.h} L${mid} ${cy + node.h + GAP}`, "marker-end": "url(#arrow)" }));
    }
    cy += node.h + GAP;
  });
}

export function topology(flow) {
  const main = { label: "", ...layoutList(flow.tasks, "") };
  const columns = [main];
  if (Array.isArray(flow.errors) && flow.errors.length) columns.push({ label: "errors", ...layoutList(flow.errors, "errors") });
  if (Array.isArray(flow.finally) && flow.finally.length) columns.push({ label: "finally", ...layoutList(flow.finally, "finally") });
  const width = columns.reduce((s, c) => s + c.w + 3 * GAP, GAP);
  const height = Math.max(...columns.map((c) => c.h + LABEL)) + 2 * GAP;
  const root = svg("svg", { class: "topology", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Topology of ${flow.namespace}.${flow.id}: ${(flow.tasks || []).length} top-level tasks` });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
    svg("path", { d: "M0 0 L10 5 L0 10 z", fill: "#8892a6" }))));
  let x = GAP;
  for (const column of columns) {
    const group = svg("g", { class: column.label || "main" });
    if (column.label) group.append(svg("text", { x, y: GAP + 4 }, `flow ${column.label}`));
    drawColumn(group, column, x, GAP + LABEL);
    root.append(group);
    x += column.w + 3 * GAP;
  }
  return root;
}

import { json, enc, ApiError } from "./api.js";
import { h, fill, describe } from "./dom.js";
import { yamlLine } from "./yaml-highlight.js";
import { contextAt } from "./yaml-context.js";
import { completions } from "./schema-complete.js";

// The flow editor: a plain <textarea> (so typing, selection, undo, IME and screen readers are
// the browser's own) under a highlighted copy of its text, a line-number gutter that marks the
// lines with problems, a completion list from the flow's JSON Schema, and a list of problems
// from the server's validate route whose entries move the cursor to their line and column.
// Why no editor library: CodeMirror 6 or Monaco would be most of the UI's bytes and need a
// bundler or dozens of vendored modules (ADR 0013); what a flow needs fits in this file.
const LINE_HEIGHT = 18; // px, as .editor in app.css
const PAD = 8; // px, as .editor-input's padding
const SHOWN = 10; // completion options on screen at once
export const VALIDATE_WAIT_MS = 600; // quiet time after a keystroke before validating
export const VALIDATE_GAP_MS = 1000; // at least this between two validations: <= 60 a minute

let schemaLoad = null;

// The JSON Schema once per page load; null when it cannot be had (completion is then off).
export function flowSchema() {
  schemaLoad ||= fetch(new URL("schema/flow.json", document.baseURI).pathname)
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null);
  return schemaLoad;
}

// Run `task` after `wait` ms of quiet, never two at once and never two within `gap` ms: the
// number of validate requests is bounded however fast one types. `clock` is for the tests.
const REAL_CLOCK = { now: () => Date.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };

export function throttled(task, wait, gap, clock = REAL_CLOCK) {
  let timer = null;
  let running = false;
  let again = false;
  let last = -Infinity;
  const fire = async () => {
    timer = null;
    if (running) { again = true; return; }
    const since = clock.now() - last;
    if (since < gap) { timer = clock.setTimeout(fire, gap - since); return; }
    running = true;
    last = clock.now();
    try { await task(); } finally {
      running = false;
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => { clock.clearTimeout(timer); timer = clock.setTimeout(fire, wait); };
  return schedule;
}

// The server splits a body on "---" lines and numbers each document's lines from its start.
// The editor holds one flow: where it starts (to shift the server's line numbers) and the
// line of a second document's "---" when there is one.
export function documents(text) {
  const lines = text.split("\n");
  const starts = [];
  let start = 0;
  let separator = null;
  let content = false;
  for (let i = 0; i <= lines.length; i++) {
    if (i === lines.length || lines[i].trimEnd() === "---") {
      if (content) starts.push({ start, separator });
      start = i + 1;
      separator = i + 1;
      content = false;
    } else if (lines[i].trim()) content = true;
  }
  return starts;
}

function offsetOf(text, line, column) {
  const lines = text.split("\n");
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length - 1); i++) offset += lines[i].length + 1;
  return offset + Math.min(Math.max(column - 1, 0), (lines[Math.min(line, lines.length) - 1] || "").length);
}

// options: { source, namespace, id (both null for a new flow), onDeployed(flow) }
export function flowEditor({ source = "", namespace = null, id = null, onDeployed = () => {} }) {
  let target = namespace && id ? { namespace, id } : null;
  const gutter = h("div", { class: "editor-gutter", "aria-hidden": "true" });
  const code = h("div", {});
  const overlay = h("div", { class: "editor-overlay", "aria-hidden": "true" }, code);
  const input = h("textarea", {
    id: "flow-source", class: "editor-input", wrap: "off", spellcheck: "false", autocapitalize: "off",
    autocomplete: "off", "aria-label": "Flow YAML", "aria-describedby": "editor-help",
    "aria-autocomplete": "list", "aria-controls": "editor-completions",
  });
  input.value = source;
  // The options are reached from the textarea (aria-activedescendant), as in a combobox; the
  // list never scrolls (a scrolling region must take the focus itself): it shows a window of
  // SHOWN options around the active one, each saying its place (aria-posinset/setsize).
  const list = h("ul", { id: "editor-completions", class: "completions", role: "listbox", "aria-label": "Completions" });
  list.hidden = true;
  const status = h("p", { class: "editor-status", role: "status" });
  const problems = h("ul", { class: "problems", "aria-label": "Problems" });
  const deployButton = h("button", { type: "button", class: "deploy" }, "Deploy");
  const deployed = h("p", { class: "deployed", role: "status" });
  const failure = h("p", { class: "error", role: "alert" });
  let marks = new Map(); // line -> messages

  // ---------------------------------------------------------------- text, gutter, overlay
  // A keystroke repaints only the lines it changed: the lines equal at the start and at the
  // end keep their elements (a whole repaint cost ~180 ms a keystroke on a 3,000-line flow).
  let shown = []; // the text of each painted line
  let rows = []; // its element in the highlighted copy: a block, so the browser lays out only those on screen
  const row = (line, number) => h("div", { class: marks.has(number) ? "ln err" : "ln" }, yamlLine(line));

  function paint() {
    const lines = input.value.split("\n");
    let head = 0;
    while (head < lines.length && head < shown.length && lines[head] === shown[head]) head++;
    let tail = 0;
    while (tail < lines.length - head && tail < shown.length - head
      && lines[lines.length - 1 - tail] === shown[shown.length - 1 - tail]) tail++;
    const fresh = lines.slice(head, lines.length - tail).map((line, k) => row(line, head + k + 1));
    const next = rows[shown.length - tail] || null;
    for (const gone of rows.splice(head, shown.length - tail - head, ...fresh)) gone.remove();
    if (next) for (const r of fresh) code.insertBefore(r, next);
    else code.append(...fresh);
    shown = lines;
    if (lines.length !== gutter.children.length) {
      while (gutter.children.length > lines.length) gutter.lastChild.remove();
      for (let n = gutter.children.length + 1; n <= lines.length; n++) gutter.append(h("div", {}, String(n)));
    }
    scrolled();
  }

  // Marks by line number, on the gutter and the highlighted copy (after each validation).
  function mark() {
    [...gutter.children].forEach((div, i) => {
      const messages = marks.get(i + 1);
      div.className = messages ? "err" : "";
      if (messages) div.title = messages.join("\n"); else div.removeAttribute("title");
    });
    rows.forEach((r, i) => { r.className = marks.has(i + 1) ? "ln err" : "ln"; });
  }

  function scrolled() {
    overlay.scrollTop = input.scrollTop;
    overlay.scrollLeft = input.scrollLeft;
    gutter.scrollTop = input.scrollTop;
    if (!list.hidden) place();
  }

  // ---------------------------------------------------------------- validation
  function show(found) {
    marks = new Map();
    for (const p of found) {
      if (!marks.has(p.line)) marks.set(p.line, []);
      marks.get(p.line).push(p.message);
    }
    fill(problems, found.map((p) => h("li", {},
      h("button", { type: "button", class: "linklike", "data-line": p.line, onclick: () => goTo(p.line, p.column) },
        `Line ${p.line}, column ${p.column}`),
      `: ${p.path ? `${p.path}: ` : ""}${p.message}`)));
    mark();
  }

  function goTo(line, column) {
    const offset = offsetOf(input.value, line, column);
    input.focus();
    input.setSelectionRange(offset, offset);
    const top = (line - 1) * LINE_HEIGHT;
    if (top < input.scrollTop || top + LINE_HEIGHT * 2 > input.scrollTop + input.clientHeight)
      input.scrollTop = Math.max(0, top - input.clientHeight / 2);
    scrolled();
  }

  async function validate() {
    const text = input.value;
    const docs = documents(text);
    if (!docs.length) { status.textContent = "Empty: write a flow."; show([]); return; }
    if (docs.length > 1) {
      const line = docs[1].separator;
      status.textContent = "1 problem";
      show([{ line, column: 1, path: "", message: "the editor holds one flow: this --- starts a second document" }]);
      return;
    }
    status.textContent = "Checking…";
    let reports;
    try {
      reports = await json("flows/validate", { method: "POST", headers: { "Content-Type": "application/x-yaml" }, body: text });
    } catch (e) {
      status.textContent = `Could not validate: ${describe(e)}`;
      return;
    }
    if (input.value !== text) return; // typed on meanwhile: the next run reports
    const report = reports[0] || {};
    const found = (report.violations || []).map((v) => ({ ...v, line: v.line + docs[0].start }));
    status.textContent = found.length
      ? `${found.length} problem${found.length === 1 ? "" : "s"}`
      : `Valid: ${report.namespace}.${report.flow}`;
    show(found);
  }
  const scheduleValidate = throttled(validate, VALIDATE_WAIT_MS, VALIDATE_GAP_MS);

  // ---------------------------------------------------------------- completion
  let items = [];
  let active = 0;
  let context = null;
  let charWidth = 0;

  function place() {
    if (!charWidth) {
      const probe = h("span", { class: "editor-probe" }, "0".repeat(20));
      overlay.append(probe);
      charWidth = probe.getBoundingClientRect().width / 20 || 8;
      probe.remove();
    }
    const before = input.value.slice(0, input.selectionStart);
    const line = before.split("\n").length - 1;
    const column = before.length - before.lastIndexOf("\n") - 1;
    list.style.left = `${Math.max(0, PAD + column * charWidth - input.scrollLeft)}px`;
    list.style.top = `${PAD + (line + 1) * LINE_HEIGHT - input.scrollTop}px`;
  }

  function close() {
    if (list.hidden) return;
    list.hidden = true;
    input.removeAttribute("aria-activedescendant");
    items = [];
  }

  let first = 0; // the first option shown

  function highlight(i) {
    active = Math.max(0, Math.min(items.length - 1, i));
    if (active < first) first = active;
    if (active >= first + SHOWN) first = active - SHOWN + 1;
    fill(list, items.slice(first, first + SHOWN).map((item, k) => h("li", {
      id: `completion-${first + k}`, role: "option", "aria-selected": String(first + k === active),
      "aria-posinset": first + k + 1, "aria-setsize": items.length,
      onmousedown: (event) => { event.preventDefault(); accept(first + k); },
    }, h("span", { class: "label" }, item.label), item.detail ? h("span", { class: "detail" }, item.detail) : null)));
    input.setAttribute("aria-activedescendant", `completion-${active}`);
  }

  async function complete(explicit) {
    const schema = await flowSchema();
    if (!schema) { if (explicit) status.textContent = "No completion: the flow schema could not be loaded."; return; }
    context = contextAt(input.value, input.selectionStart);
    items = input.selectionStart === input.selectionEnd ? completions(schema, context) : [];
    const exact = items.length === 1 && context && items[0].label === context.prefix;
    if (!items.length || (exact && !explicit)) { close(); return; }
    first = 0;
    highlight(0);
    list.hidden = false;
    place();
  }

  function accept(i) {
    const item = items[i];
    const ctx = context;
    close();
    if (!item || !ctx) return;
    const after = input.value.slice(ctx.to);
    const text = ctx.mode === "key" && !/^\s*:/.test(after) ? `${item.label}: ` : item.label;
    input.focus();
    input.setSelectionRange(ctx.from, ctx.to);
    // execCommand keeps the browser's undo history (setRangeText would drop it) and fires input.
    if (!document.execCommand("insertText", false, text)) {
      input.setRangeText(text, ctx.from, ctx.to, "end");
      changed();
    }
  }

  // ---------------------------------------------------------------- events
  function changed() {
    paint();
    deployed.textContent = "";
    scheduleValidate();
  }

  input.addEventListener("input", (event) => {
    changed();
    const typedWord = event.data && event.data.length === 1 && /[A-Za-z0-9_.@$-]/.test(event.data);
    if (!list.hidden || typedWord) complete(false);
  });
  input.addEventListener("scroll", scrolled);
  input.addEventListener("focus", () => { flowSchema(); }); // fetched ahead of the first completion
  input.addEventListener("blur", close);
  input.addEventListener("click", close);
  input.addEventListener("keydown", (event) => {
    if (event.key === " " && event.ctrlKey) { event.preventDefault(); complete(true); return; }
    if (event.key === "s" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); deploy(); return; }
    if (list.hidden) return;
    const step = { ArrowDown: 1, ArrowUp: -1, PageDown: 8, PageUp: -8 }[event.key];
    if (step) { event.preventDefault(); highlight(active + step); }
    else if (event.key === "Enter") { event.preventDefault(); accept(active); }
    else if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); close(); }
    else if (event.key === "Tab" || event.key === "ArrowLeft" || event.key === "ArrowRight" || event.key === "Home" || event.key === "End") close();
  });

  // ---------------------------------------------------------------- deploy
  // Not `disabled` while it runs: a disabled button drops the keyboard focus to the page's top.
  let deploying = false;
  async function deploy() {
    if (deploying) return;
    deploying = true;
    deployButton.setAttribute("aria-busy", "true");
    failure.textContent = "";
    deployed.textContent = "";
    const request = { method: target ? "PUT" : "POST", headers: { "Content-Type": "application/x-yaml" }, body: input.value };
    try {
      const flow = await json(target ? `flows/${enc(target.namespace)}/${enc(target.id)}` : "flows", request);
      target = { namespace: flow.namespace, id: flow.id };
      fill(deployed, `Deployed ${flow.namespace}.${flow.id}, revision ${flow.revision}. `,
        h("a", { href: `#/flows/${enc(flow.namespace)}/${enc(flow.id)}?tab=Start` }, "Start it"));
      onDeployed(flow);
    } catch (e) {
      failure.textContent = `Not deployed: ${describe(e)}`;
      const errors = e instanceof ApiError && e.body && Array.isArray(e.body.errors) ? e.body.errors : [];
      if (errors.some((x) => x.line)) show(errors.filter((x) => x.line));
    } finally {
      deploying = false;
      deployButton.removeAttribute("aria-busy");
    }
  }
  deployButton.addEventListener("click", deploy);

  paint();
  return h("div", { class: "flow-editor" },
    h("p", { id: "editor-help", class: "muted" },
      "Ctrl+Space completes a key or value (Enter takes it, Escape closes the list); problems show as you type. ",
      "Ctrl+S deploys. Tab leaves the editor."),
    h("div", { class: "editor" }, gutter, h("div", { class: "editor-body" }, overlay, input, list)),
    status,
    problems,
    h("div", { class: "actions" }, deployButton),
    deployed,
    failure);
}

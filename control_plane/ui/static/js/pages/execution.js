import { ApiError, call, json, query, enc } from "../api.js";
import { h, fill, stateBadge, when, describe } from "../dom.js";
import { VirtualList } from "../virtual-list.js";
import { inputsForm } from "../inputs-form.js";
import { LogPages } from "../log-pages.js";

// One execution, kept live while it runs. Task runs and log lines are virtualised lists; both
// are read a page at a time (the execution lists its first task runs, `taskRunCursor` leads to
// the rest; the log comes through the paged log route, read as it is scrolled).
//
// Live updates are bounded polling, only while the execution runs, the tab is visible and the
// page is the one shown (nothing once it has ended):
//   the execution, with its first task runs            every 2 s   30 requests a minute
//   one more page of task runs, round robin (big ones)  every 2 s   30 a minute
//   the log's last page and the one after (follow on)   every 3 s   40 a minute
// so at most POLL.perMinute() = 100 requests a minute. Scrolling the log reads its pages on demand,
// one request at a time.
const TERMINAL = new Set(["SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED"]);
export const POLL = {
  execEvery: 2000,
  taskRunPages: 1, // extra task-run pages read with each refresh of the execution
  logsEvery: 3000,
  logPages: 2, // log pages read per follow
  tick: 500,
  perMinute() {
    return (60000 / this.execEvery) * (1 + this.taskRunPages) + (60000 / this.logsEvery) * this.logPages;
  },
};
const LOG_PAGE = 2000; // lines a log request asks for

// What a poll tick does at `now`: pure, so the request budget above is tested on a clock.
export function pollPlan(now, last, { running, visible, follow }) {
  const live = running && visible;
  return {
    exec: live && now - last.exec >= POLL.execEvery,
    logs: live && follow && now - last.logs >= POLL.logsEvery,
  };
}
const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

// Files an execution shows: uploads as kestra:/// URIs, task output files as the storage's own
// URI (file://, s3://, gs://, Azure's). The file route checks they belong to this execution.
const FILE_URI = /^(kestra|file|s3|gs|az|azure|wasbs?|abfss?):\/\/\/?[^\s]+$/;

function isFileUri(value) {
  return typeof value === "string" && FILE_URI.test(value);
}

async function download(executionId, uri) {
  const response = await call(`executions/${enc(executionId)}/file${query({ path: uri })}`);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: uri.split("/").pop() || "output" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Any JSON value as nested definition lists; kestra:// URIs become download buttons.
function valueView(executionId, value) {
  if (isFileUri(value)) {
    return h("button", { type: "button", class: "download", onclick: () => download(executionId, value).catch((e) => alert(describe(e))) },
      `Download ${value.split("/").pop()}`);
  }
  if (value && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    return h("div", { class: "kv" }, entries.map(([k, v]) => [h("span", { class: "muted" }, String(k)), valueView(executionId, v)]));
  }
  return h("span", {}, value === null ? "null" : String(value));
}

// A task run's estimated cost (USD): Kestra's views carry it per attempt (Squall's extra
// `cost`), null when no runner priced any attempt.
export function runCost(tr) {
  if (typeof tr.cost === "number") return tr.cost;
  let total = null;
  for (const a of tr.attempts || []) if (typeof a.cost === "number") total = (total || 0) + a.cost;
  return total;
}

export function totalCost(runs) {
  let total = null;
  for (const tr of runs) {
    const cost = runCost(tr);
    if (cost !== null) total = (total || 0) + cost;
  }
  return total;
}

function money(value) {
  return typeof value === "number" ? `$${value.toFixed(value < 0.01 ? 6 : 4)}` : "";
}

function time(iso) {
  return iso ? Date.parse(iso) : NaN;
}

// Rows of the task-run tree in display order (parents before children), with their depth.
export function treeRows(runs) {
  const byParent = new Map();
  for (const tr of runs) {
    const key = tr.parentTaskRunId || "";
    if (!byParent.has(key)) byParent.set(key, []);
    byParent.get(key).push(tr);
  }
  const known = new Set(runs.map((tr) => tr.id));
  const rows = [];
  const visit = (tr, depth) => {
    rows.push({ tr, depth });
    for (const child of byParent.get(tr.id) || []) visit(child, depth + 1);
  };
  for (const tr of runs) if (!tr.parentTaskRunId || !known.has(tr.parentTaskRunId)) visit(tr, 0);
  return rows;
}

// Nice steps for a time axis: 1, 2, 5 × 10^k of a unit, the units people read durations in.
const STEPS = [1, 2, 5, 10, 15, 30].map((s) => s * 1000)
  .concat([1, 2, 5, 10, 15, 30].map((m) => m * 60000), [1, 2, 3, 6, 12].map((x) => x * 3600000), [1, 2, 7].map((d) => d * 86400000));

export function span(ms) {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const parts = [[86400000, "d"], [3600000, "h"], [60000, "m"], [1000, "s"]];
  let rest = Math.round(ms / 1000) * 1000, out = "";
  for (const [size, unit] of parts) if (rest >= size) { out += `${Math.floor(rest / size)}${unit}`; rest %= size; }
  return out;
}

// Ticks of the Gantt's time axis over `total` ms: about `target` of them, at a nice step,
// each `{at (ms from the start), label}`; sub-second spans are ticked in milliseconds.
export function timeTicks(total, target = 6) {
  if (!(total > 0)) return [{ at: 0, label: "0s" }];
  const ideal = total / target;
  let step = STEPS.find((s) => s >= ideal);
  if (step === undefined) step = Math.ceil(ideal / 86400000) * 86400000;
  if (total < 1000 * target) { // sub-second ticks: 1, 2, 5 × 10^k ms
    const k = 10 ** Math.floor(Math.log10(ideal));
    step = Math.max(1, [1, 2, 5, 10].map((m) => m * k).find((s) => s >= ideal));
  }
  const ticks = [];
  for (let at = 0; at <= total + 1e-9; at += step) ticks.push({ at, label: at === 0 ? "0s" : span(at) });
  return ticks;
}

// The Gantt: one row per task run, one bar per attempt, on the execution's time axis (ticks
// from its start above the rows). Built once per page; `update` swaps the rows in place so
// scrolling and focus survive live updates.
function ganttChart() {
  let start = 0, total = 1;
  const axis = h("div", { class: "gantt-axis", "aria-hidden": "true" });
  const list = new VirtualList({ rowHeight: 22, className: "gantt", label: "Gantt of task runs",
    renderRow: ({ tr, depth }) => {
      const track = h("div", { class: "track" });
      const attempts = tr.attempts && tr.attempts.length ? tr.attempts : [{ state: tr.state }];
      attempts.forEach((a, i) => {
        const s = time(a.state.startDate) || time(tr.state.startDate);
        const e = time(a.state.endDate) || (TERMINAL.has(a.state.current) ? s : Date.now());
        const left = ((s - start) / total) * 100;
        const width = Math.max(0.2, ((e - s) / total) * 100);
        track.append(h("div", { class: `gantt-bar ${a.state.current}`, style: `left:${left}%;width:${width}%`,
          title: `${tr.taskId} attempt ${i + 1}: ${a.state.current} ${a.state.duration || ""}` }));
      });
      return h("div", { class: "gantt-row" },
        h("span", { class: "name", style: `padding-left:${4 + depth * 12}px`, title: tr.taskId }, tr.taskId, tr.value ? ` [${tr.value}]` : ""),
        track);
    } });
  const update = (execution, rows) => {
    start = time(execution.state.startDate);
    const ends = rows.map(({ tr }) => time(tr.state.endDate) || Date.now());
    total = Math.max(time(execution.state.endDate) || Date.now(), ...ends, start + 1) - start;
    const track = h("div", { class: "track" }, timeTicks(total).map((t) =>
      h("span", { class: "tick", style: `left:${(t.at / total) * 100}%` }, t.label)));
    fill(axis, h("span", { class: "name" }, when(execution.state.startDate)), track);
    list.setItems(rows);
  };
  return { el: h("div", {}, axis, list.el), update };
}

// Where a task run's last job ran, its console link and why it failed (Squall's extras).
function jobCells(run) {
  const out = [];
  if (run.runner) out.push(h("span", { class: "runner" }, run.runner));
  if (run.jobId) {
    out.push(run.jobUrl
      ? h("a", { class: "job-id", href: run.jobUrl, target: "_blank", rel: "noopener noreferrer", title: "the job in its cloud console" }, run.jobId)
      : h("code", { class: "job-id" }, run.jobId));
  }
  if (run.failureClass) out.push(h("span", { class: `failure ${run.failureClass}`, title: "failure class" }, run.failureClass.toLowerCase()));
  return out;
}

function taskRunTree(onSelect) {
  const list = new VirtualList({ rowHeight: 24, className: "vlist tree", label: "Task runs",
    renderRow: ({ tr, depth }) => {
      const cost = runCost(tr);
      return h("div", { class: "row", style: `padding-left:${6 + depth * 16}px`, "data-taskrun": tr.id },
        stateBadge(tr.state.current), " ",
        h("button", { type: "button", class: "linklike", onclick: () => onSelect(tr), "aria-label": `Select ${tr.taskId}${tr.value ? ` ${tr.value}` : ""}` }, tr.taskId),
        tr.value ? ` [${tr.value}]` : "",
        ` ${tr.state.duration || ""}`, tr.attempts && tr.attempts.length > 1 ? ` · ${tr.attempts.length} attempts` : "",
        cost !== null ? ` · ${money(cost)}` : "",
        jobCells(tr).map((cell) => [" · ", cell]),
        tr.error ? h("span", { class: "error" }, ` · ${tr.error.split("\n")[0]}`) : "");
    } });
  return list;
}

// The selected task run's attempts: state, times, runner, job (linked), failure class, cost.
function attemptsView(tr) {
  const attempts = tr.attempts || [];
  return h("section", { class: "taskrun-detail", "aria-label": `Task run ${tr.taskId}` },
    h("h2", {}, `Task run ${tr.taskId}${tr.value ? ` [${tr.value}]` : ""}`),
    tr.error ? h("p", { class: "error" }, tr.error) : null,
    attempts.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Attempt", "State", "Started", "Duration", "Runner", "Job", "Failure", "Cost"].map((t) => h("th", {}, t)))),
      h("tbody", {}, attempts.map((a, i) => h("tr", {},
        h("td", {}, String(i + 1)), h("td", {}, stateBadge(a.state.current)), h("td", {}, when(a.state.startDate)),
        h("td", {}, a.state.duration || ""), h("td", {}, a.runner || ""),
        h("td", {}, a.jobId ? (a.jobUrl ? h("a", { href: a.jobUrl, target: "_blank", rel: "noopener noreferrer" }, a.jobId) : h("code", {}, a.jobId)) : ""),
        h("td", {}, a.failureClass ? h("span", { class: `failure ${a.failureClass}` }, a.failureClass.toLowerCase()) : ""),
        h("td", {}, money(a.cost)))))) : h("p", { class: "muted" }, "no attempts: an inline task"));
}

// Every task run of the execution, kept by id. The execution lists its first ones; the rest come
// a page at a time from `executions/{id}/taskruns?cursor=`, all of them on the first load, then
// `POLL.taskRunPages` a refresh, round robin (pages follow task-run ids, so a new task run may
// land in any page: each is read again in turn).
export class TaskRunSet {
  constructor(fetchPage) {
    this.fetchPage = fetchPage; // (cursor) -> Promise<{results, cursor}>
    this.byId = new Map();
    this.cursors = []; // cursors[k]: what reads the k-th page after the execution's own list
    this.turn = 0;
    this.note = "";
    this.requests = 0;
  }

  merge(runs) {
    for (const tr of runs || []) this.byId.set(tr.id, tr);
  }

  async page(k) {
    this.requests += 1;
    const page = await this.fetchPage(this.cursors[k]);
    this.merge(page.results);
    this.cursors.length = k + 1;
    if (page.cursor) this.cursors.push(page.cursor);
    return page.cursor;
  }

  // Every page after the execution's own list, one request at a time; `onPage` after each, so
  // the page shows the first task runs at once and the rest as they come.
  async load(execution, onPage = () => {}) {
    this.merge(execution.taskRunList);
    this.cursors = execution.taskRunCursor ? [execution.taskRunCursor] : [];
    this.loading = this.cursors.length > 0;
    this.note = this.loading ? "reading the others…" : "";
    try {
      for (let k = 0; k < this.cursors.length; k++) {
        await this.page(k);
        if (k + 1 < this.cursors.length) onPage();
      }
      this.note = "";
    } catch (e) {
      this.note = `only ${this.byId.size} task runs are shown: ${describe(e)}`;
    } finally {
      this.loading = false;
    }
    onPage();
  }

  async refresh(execution, pages = POLL.taskRunPages) {
    this.merge(execution.taskRunList);
    if (this.loading) return; // the first load is still reading every page
    if (!execution.taskRunCursor) { this.cursors = []; return; }
    this.cursors[0] = execution.taskRunCursor;
    for (let i = 0; i < pages; i++) {
      const k = this.turn % this.cursors.length;
      try {
        const more = await this.page(k);
        this.turn = more ? k + 1 : 0;
      } catch (e) {
        this.note = `task runs may be out of date: ${describe(e)}`;
        return;
      }
    }
  }

  // In creation order (the API's `state.startDate` of a task run is its creation).
  get runs() {
    const runs = [...this.byId.values()];
    const at = (tr) => tr.state.startDate || "";
    return runs.sort((a, b) => (at(a) < at(b) ? -1 : at(a) > at(b) ? 1 : 0));
  }
}

// The Pause task (anywhere in the flow) that a PAUSED task run belongs to, for its onResume inputs.
function findTask(tasks, id) {
  for (const task of tasks || []) {
    if (!task) continue;
    const t = task.task || task;
    if (t.id === id) return t;
    const nested = [t.tasks, t.then, t.else, t.errors, t.finally, t.defaults, ...Object.values(t.cases || {})];
    for (const list of nested) {
      const found = Array.isArray(list) ? findTask(list, id) : null;
      if (found) return found;
    }
  }
  return null;
}

// The whole log as text (`timestamp level message` a line, as Kestra's download route writes
// it). A log too big for one response (the route's 400) is read through the log pages instead,
// a page at a time into the Blob's parts, with the progress in `status`.
async function downloadLog(id, status, logPage) {
  try {
    return await (await call(`logs/${enc(id)}/download`)).blob();
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 400) throw e;
  }
  const parts = [];
  let cursor = null, lines = 0;
  do {
    const page = await logPage({ cursor });
    parts.push(page.results.map((l) => `${l.timestamp} ${l.level} ${l.message}\n`).join(""));
    lines += page.results.length;
    cursor = page.cursor;
    status.textContent = `Download log: ${lines.toLocaleString("en")} lines read${cursor ? "…" : ""}`;
  } while (cursor);
  return new Blob(parts, { type: "text/plain" });
}

// A page of the execution's log. A page too big for one response (long lines, or a small
// SQUALL_MAX_RESPONSE_BYTES: the API's 400 gives the size and the limit) is asked again with
// fewer lines, and later pages keep that smaller size.
function logPager(id) {
  let limit = LOG_PAGE;
  return async (params) => {
    for (;;) {
      try {
        return await json(`executions/${enc(id)}/logs${query({ ...params, limit })}`);
      } catch (e) {
        const body = e instanceof ApiError && e.status === 400 ? e.body : null;
        if (!body || !(body.size > body.limit) || limit <= 1) throw e;
        limit = Math.max(1, Math.floor((limit * body.limit / body.size) * 0.9));
      }
    }
  };
}

export async function executionPage(root, id, isCurrent) {
  const status = h("p", { role: "status", class: "muted" });
  const header = h("div", {});
  const actions = h("div", { class: "actions" });
  const actionArea = h("div", {});
  const ganttBox = h("div", {});
  const treeBox = h("div", {});
  const detail = h("div", {});
  const io = h("div", {});
  let execution = null;
  let flow = null;
  let selectedTask = "";
  let taskKey = "";
  let lastIo = "";
  const chart = ganttChart();
  const taskRuns = new TaskRunSet((cursor) => json(`executions/${enc(id)}/taskruns${query({ cursor, limit: 1000 })}`));
  const tree = taskRunTree((tr) => {
    selectedTask = tr;
    fill(detail, attemptsView(tr));
    taskFilter.value = tr.taskId;
    resetLogs().catch(showError);
    status.textContent = `selected ${tr.taskId}: Replay starts from it; the log shows it`;
  });
  ganttBox.append(h("h2", {}, "Gantt"), chart.el);
  treeBox.append(h("h2", {}, "Task runs"), tree.el);

  // logs: a page at a time, filtered by the server (level, task, text)
  const level = h("select", { id: "log-level" }, LEVELS.map((l) => h("option", { value: l, selected: l === "INFO" }, l)));
  const taskFilter = h("select", { id: "log-task" }, h("option", { value: "" }, "all tasks"));
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const search = h("input", { type: "search", id: "log-search", placeholder: "text in the message" });
  const logCount = h("span", { id: "log-count", class: "muted", role: "status" });
  let logPages = null;
  const logPage = logPager(id);
  const logs = new VirtualList({ rowHeight: 18, label: "Log lines", follow: false,
    renderRow: (l) => l
      ? h("div", { class: `row lvl-${l.level}` }, `${l.timestamp || ""} ${l.level.padEnd(5)} ${l.taskId || "-"} ${l.message}`)
      : h("div", { class: "row muted" }, "…"),
    // Nearing the end of the lines read so far: read the next page (one request at a time).
    // Not while following a running execution: the poll reads its tail, within its budget.
    onPaint: (first, last) => {
      const pages = logPages;
      if (logs.follow) return;
      if (pages && pages.length && pages.more && last >= pages.length - 200 && !pages.reading) {
        pages.reading = true;
        pages.next().catch(showError).finally(() => { pages.reading = false; });
      }
    } });
  // Also a button for the next page: a filter that matches little leaves nothing to scroll.
  const readMore = h("button", { type: "button", id: "log-more", hidden: true,
    onclick: () => logPages.next().then(showLogCount).catch(showError) }, "Read more lines");
  const showLogCount = () => {
    const pages = logPages;
    const n = pages.length;
    logCount.textContent = `${n.toLocaleString("en")} line${n === 1 ? "" : "s"}${pages.more ? " read so far: scroll for more" : ""}`;
    readMore.hidden = !pages.more;
  };
  const resetLogs = async () => {
    const pages = new LogPages((cursor) => logPage({ cursor, minLevel: level.value, taskId: taskFilter.value, q: search.value }));
    logPages = pages;
    pages.onChange = () => { if (logPages === pages) { logs.setItems(pages); showLogCount(); } };
    logs.setItems(pages);
    await pages.next();
    // a filter that matches little may leave the first pages empty: read on until a screenful
    for (let i = 0; i < 4 && pages.more && pages.length < 100 && logPages === pages; i++) await pages.next();
    showLogCount();
  };
  const followLogs = async () => { if (logPages) { await logPages.tail(POLL.logPages); showLogCount(); } };
  for (const el of [level, taskFilter]) el.addEventListener("change", () => resetLogs().catch(showError));
  follow.addEventListener("change", () => { logs.follow = follow.checked && !TERMINAL.has(execution.state.current); logs.paint(); });
  let typing = 0;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => resetLogs().catch(showError), 300); });
  const showError = (e) => { status.textContent = describe(e); status.className = "error"; };

  const act = (label, run) => h("button", { type: "button", "data-action": label.toLowerCase(), onclick: async (event) => {
    event.target.disabled = true;
    try {
      await run();
      status.textContent = `${label}: done`;
      await refresh();
    } catch (e) {
      showError(e);
    } finally {
      event.target.disabled = false;
    }
  } }, label);

  let actionsKey = "";
  const renderActions = () => {
    const state = execution.state.current;
    if (actionsKey === state) return; // same buttons: keep them (and the keyboard focus on them)
    actionsKey = state;
    const buttons = [];
    if (!TERMINAL.has(state)) buttons.push(act("Kill", () => json(`executions/${enc(id)}/actions/kill`, { method: "DELETE" })));
    if (state === "FAILED" || state === "KILLED") buttons.push(act("Restart", () => json(`executions/${enc(id)}/actions/restart`, { method: "POST" })));
    if (TERMINAL.has(state)) buttons.push(act("Replay", async () => {
      const started = await json(`executions/${enc(id)}/actions/replay${query({ taskRunId: selectedTask ? selectedTask.id : "" })}`, { method: "POST" });
      location.hash = `#/executions/${enc(started.id)}`;
    }));
    if (state === "PAUSED") {
      const paused = taskRuns.runs.find((tr) => tr.state.current === "PAUSED");
      const task = paused && flow ? findTask(flow.tasks, paused.taskId) || findTask(flow.errors, paused.taskId) : null;
      const inputs = (task && task.onResume) || [];
      buttons.push(h("button", { type: "button", "data-action": "resume", onclick: () => {
        fill(actionArea, h("h2", {}, `Resume ${paused ? paused.taskId : ""}`),
          inputsForm(inputs, "Resume", async (data) => {
            await json(`executions/${enc(id)}/actions/resume`, { method: "POST", body: data });
            fill(actionArea);
            status.textContent = "Resume: done";
            await refresh();
          }));
        const first = actionArea.querySelector("input, select, textarea, button");
        if (first) first.focus();
      } }, "Resume…"));
    }
    fill(actions, ...buttons);
  };

  const render = (runs, note) => {
    const cost = totalCost(runs);
    logs.follow = follow.checked && !TERMINAL.has(execution.state.current);
    fill(header,
      h("h1", {}, "Execution ", h("code", {}, execution.id), " ", stateBadge(execution.state.current)),
      h("div", { class: "kv" },
        h("span", { class: "muted" }, "Flow"), h("a", { href: `#/flows/${enc(execution.namespace)}/${enc(execution.flowId)}` }, `${execution.namespace}.${execution.flowId} (revision ${execution.flowRevision})`),
        h("span", { class: "muted" }, "Created"), h("span", {}, when(execution.state.startDate)),
        h("span", { class: "muted" }, "Ended"), h("span", {}, when(execution.state.endDate)),
        h("span", { class: "muted" }, "Duration"), h("span", {}, execution.state.duration || "running"),
        h("span", { class: "muted" }, "Task runs"), h("span", { id: "taskrun-count" }, String(runs.length), note ? h("span", { class: "error" }, ` (${note})`) : ""),
        h("span", { class: "muted" }, "Estimated cost"), h("span", { id: "total-cost" }, cost === null ? "not priced" : money(cost)),
        execution.originalId && execution.originalId !== execution.id ? [h("span", { class: "muted" }, "Replay of"), h("a", { href: `#/executions/${enc(execution.originalId)}` }, execution.originalId)] : null,
        execution.parentId ? [h("span", { class: "muted" }, "Parent"), h("a", { href: `#/executions/${enc(execution.parentId)}` }, execution.parentId)] : null));
    renderActions();
    const rows = treeRows(runs);
    chart.update(execution, rows);
    tree.setItems(rows);
    if (selectedTask) {
      const now = taskRuns.byId.get(selectedTask.id);
      if (now && now !== selectedTask) { selectedTask = now; fill(detail, attemptsView(now)); }
    }
    const taskIds = [...new Set(runs.map((tr) => tr.taskId))];
    if (taskIds.join("\n") !== taskKey) {
      taskKey = taskIds.join("\n");
      const chosen = taskFilter.value;
      fill(taskFilter, h("option", { value: "" }, "all tasks"), taskIds.map((t) => h("option", { value: t, selected: t === chosen }, t)));
    }
    const taskOutputs = runs.filter((tr) => tr.outputs && Object.keys(tr.outputs).length);
    const ioKey = JSON.stringify([execution.inputs, execution.outputs, execution.labels, taskOutputs.length < 200 ? taskOutputs.map((tr) => tr.outputs) : taskOutputs.length]);
    if (ioKey === lastIo) return; // unchanged: keep the focus on a download button
    lastIo = ioKey;
    // Task outputs of a big fan-out are many: the first 200 here, every one in its task run.
    fill(io,
      h("h2", {}, "Inputs"), execution.inputs && Object.keys(execution.inputs).length ? valueView(id, execution.inputs) : h("p", { class: "muted" }, "none"),
      h("h2", {}, "Outputs"), execution.outputs && Object.keys(execution.outputs).length ? valueView(id, execution.outputs) : h("p", { class: "muted" }, "none"),
      taskOutputs.length ? [h("h2", {}, "Task outputs"), h("div", { class: "kv" }, taskOutputs.slice(0, 200).map((tr) => [
        h("span", { class: "muted" }, `${tr.taskId}${tr.value ? ` [${tr.value}]` : ""}`), valueView(id, tr.outputs)])),
      taskOutputs.length > 200 ? h("p", { class: "muted" }, `the first 200 of ${taskOutputs.length} task runs with outputs`) : null] : null,
      h("h2", {}, "Labels"), (execution.labels || []).length ? h("ul", {}, execution.labels.map((l) => h("li", {}, h("code", {}, `${l.key}: ${l.value}`)))) : h("p", { class: "muted" }, "none"));
  };

  const refresh = async (first = false) => {
    const before = execution ? execution.state.current : null;
    execution = await json(`executions/${enc(id)}`);
    // An execution that has just ended (seen by the poll, or by the refresh after an action: a
    // restart can run to its end before that refresh) gets its last log lines read once more;
    // the poll stops after that.
    const after = execution.state.current;
    if (before !== null && before !== after && TERMINAL.has(after)) await followLogs();
    // The flow's revision is read only for a pause's onResume inputs, and once.
    if (!flow && execution.state.current === "PAUSED") {
      const at = `flows/${enc(execution.namespace)}/${enc(execution.flowId)}`;
      flow = await json(`${at}${query({ revision: execution.flowRevision, source: "false" })}`).catch(() => null);
    }
    // On a restart every task run may change: read every page again, as on the first load,
    // in the background: the execution's own task runs show at once, the others as they come.
    if (first || (before !== null && TERMINAL.has(before) && !TERMINAL.has(after))) {
      taskRuns.merge(execution.taskRunList);
      taskRuns.load(execution, () => { if (isCurrent()) render(taskRuns.runs, taskRuns.note); }).catch(showError);
    } else {
      await taskRuns.refresh(execution);
    }
    render(taskRuns.runs, taskRuns.note);
  };

  await Promise.all([refresh(true), resetLogs()]);
  fill(root, header, actions, actionArea, status, ganttBox, treeBox, detail,
    h("section", {}, h("h2", {}, "Logs"),
      h("div", { class: "filters" },
        h("label", { for: "log-level" }, "Minimum level", level),
        h("label", { for: "log-task" }, "Task", taskFilter),
        h("label", { for: "log-search" }, "Search", search),
        h("label", { for: "log-follow" }, "Follow", follow),
        h("a", { href: "#", onclick: (event) => { event.preventDefault(); downloadLog(id, status, logPage).then((b) => {
          const url = URL.createObjectURL(b); const a = h("a", { href: url, download: `${id}.log` }); document.body.append(a); a.click(); a.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
        }).catch(showError); } }, "Download log"),
        logCount, readMore),
      logs.el),
    io);
  logs.paint();

  // Live updates: bounded polling (see POLL) while the execution runs and the page is shown.
  const last = { exec: 0, logs: 0 };
  const tick = async () => {
    if (!isCurrent()) return;
    const now = Date.now();
    const plan = pollPlan(now, last, { running: !TERMINAL.has(execution.state.current), visible: !document.hidden, follow: follow.checked });
    try {
      if (plan.exec) { last.exec = now; await refresh(); }
      if (plan.logs && !TERMINAL.has(execution.state.current)) { last.logs = now; await followLogs(); }
    } catch (e) {
      showError(e);
    }
    setTimeout(tick, POLL.tick);
  };
  setTimeout(tick, POLL.tick);
}

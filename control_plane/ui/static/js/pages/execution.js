import { call, json, query, enc } from "../api.js";
import { h, fill, stateBadge, when, describe } from "../dom.js";
import { VirtualList } from "../virtual-list.js";
import { inputsForm } from "../inputs-form.js";

// One execution, kept live while it runs. Polling is bounded: the execution every 2 s and its
// log every 3 s (at most 50 requests a minute), nothing while the tab is hidden, and nothing
// once the execution has ended. Task runs and log lines are virtualised lists.
const TERMINAL = new Set(["SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED"]);
const EXEC_EVERY = 2000, LOGS_EVERY = 3000;
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

// The Gantt: one row per task run, one bar per attempt, on the execution's time axis. Built
// once per page; `update` swaps the rows in place so scrolling and focus survive live updates.
function ganttChart() {
  let start = 0, span = 1;
  const list = new VirtualList({ rowHeight: 22, className: "gantt", label: "Gantt of task runs",
    renderRow: ({ tr, depth }) => {
      const track = h("div", { class: "track" });
      const attempts = tr.attempts && tr.attempts.length ? tr.attempts : [{ state: tr.state }];
      attempts.forEach((a, i) => {
        const s = time(a.state.startDate) || time(tr.state.startDate);
        const e = time(a.state.endDate) || (TERMINAL.has(a.state.current) ? s : Date.now());
        const left = ((s - start) / span) * 100;
        const width = Math.max(0.2, ((e - s) / span) * 100);
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
    span = Math.max(time(execution.state.endDate) || Date.now(), ...ends, start + 1) - start;
    list.setItems(rows);
  };
  return { el: list.el, update };
}

function taskRunTree(onSelect) {
  const list = new VirtualList({ rowHeight: 24, className: "vlist tree", label: "Task runs",
    renderRow: ({ tr, depth }) => {
      const extra = ["runner", "jobId", "jobUrl", "failureClass"].filter((k) => tr[k]).map((k) => `${k}: ${tr[k]}`).join(" · ");
      return h("div", { class: "row", style: `padding-left:${6 + depth * 16}px` },
        stateBadge(tr.state.current), " ",
        h("button", { type: "button", class: "linklike", onclick: () => onSelect(tr), "aria-label": `Select ${tr.taskId}${tr.value ? ` ${tr.value}` : ""}` }, tr.taskId),
        tr.value ? ` [${tr.value}]` : "",
        ` ${tr.state.duration || ""}`, tr.attempts && tr.attempts.length > 1 ? ` · ${tr.attempts.length} attempts` : "",
        runCost(tr) !== null ? ` · ${money(runCost(tr))}` : "",
        extra ? ` · ${extra}` : "",
        tr.error ? h("span", { class: "error" }, ` · ${tr.error.split("\n")[0]}`) : "");
    } });
  return list;
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

async function allTaskRuns(execution) {
  const runs = [...(execution.taskRunList || [])];
  let cursor = execution.taskRunCursor;
  let note = "";
  while (cursor) {
    try {
      const page = await json(`executions/${enc(execution.id)}/taskruns${query({ cursor, limit: 1000 })}`);
      runs.push(...page.results);
      cursor = page.cursor;
    } catch (e) {
      note = `only the first ${runs.length} task runs are shown: ${describe(e)}`;
      break;
    }
  }
  return { runs, note };
}

export async function executionPage(root, id, isCurrent) {
  const status = h("p", { role: "status", class: "muted" });
  const header = h("div", {});
  const actions = h("div", { class: "actions" });
  const actionArea = h("div", {});
  const ganttBox = h("div", {});
  const treeBox = h("div", {});
  const io = h("div", {});
  let execution = null;
  let flow = null;
  let selectedTask = "";
  let taskKey = "";
  let lastIo = "";
  const chart = ganttChart();
  const tree = taskRunTree((tr) => {
    selectedTask = tr;
    taskFilter.value = tr.taskId;
    loadLogs().catch(showError);
    status.textContent = `selected ${tr.taskId}: Replay starts from it; the log shows it`;
  });
  ganttBox.append(h("h2", {}, "Gantt"), chart.el);
  treeBox.append(h("h2", {}, "Task runs"), tree.el);

  // logs
  const level = h("select", { id: "log-level" }, LEVELS.map((l) => h("option", { value: l, selected: l === "INFO" }, l)));
  const taskFilter = h("select", { id: "log-task" }, h("option", { value: "" }, "all tasks"));
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const search = h("input", { type: "search", id: "log-search", placeholder: "text in the message" });
  const logs = new VirtualList({ rowHeight: 18, label: "Log lines", follow: true,
    renderRow: (l) => h("div", { class: `row lvl-${l.level}` }, `${l.timestamp || ""} ${l.level.padEnd(5)} ${l.taskId || "-"} ${l.message}`) });
  let logLines = [];
  const paintLogs = () => {
    const needle = search.value.toLowerCase();
    logs.setItems(needle ? logLines.filter((l) => l.message.toLowerCase().includes(needle)) : logLines);
  };
  const loadLogs = async () => {
    logLines = await json(`logs/${enc(id)}${query({ minLevel: level.value, taskId: taskFilter.value })}`);
    paintLogs();
  };
  for (const el of [level, taskFilter]) el.addEventListener("change", () => loadLogs().catch(showError));
  search.addEventListener("input", paintLogs);
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
      const paused = (execution.taskRunList || []).find((tr) => tr.state.current === "PAUSED");
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
    fill(header,
      h("h1", {}, "Execution ", h("code", {}, execution.id), " ", stateBadge(execution.state.current)),
      h("div", { class: "kv" },
        h("span", { class: "muted" }, "Flow"), h("a", { href: `#/flows/${enc(execution.namespace)}/${enc(execution.flowId)}` }, `${execution.namespace}.${execution.flowId} (revision ${execution.flowRevision})`),
        h("span", { class: "muted" }, "Created"), h("span", {}, when(execution.state.startDate)),
        h("span", { class: "muted" }, "Ended"), h("span", {}, when(execution.state.endDate)),
        h("span", { class: "muted" }, "Duration"), h("span", {}, execution.state.duration || "running"),
        h("span", { class: "muted" }, "Task runs"), h("span", {}, String(runs.length), note ? h("span", { class: "error" }, ` (${note})`) : ""),
        h("span", { class: "muted" }, "Estimated cost"), h("span", { id: "total-cost" }, cost === null ? "not priced" : money(cost)),
        execution.originalId && execution.originalId !== execution.id ? [h("span", { class: "muted" }, "Replay of"), h("a", { href: `#/executions/${enc(execution.originalId)}` }, execution.originalId)] : null,
        execution.parentId ? [h("span", { class: "muted" }, "Parent"), h("a", { href: `#/executions/${enc(execution.parentId)}` }, execution.parentId)] : null));
    renderActions();
    const rows = treeRows(runs);
    chart.update(execution, rows);
    tree.setItems(rows);
    const taskIds = [...new Set(runs.map((tr) => tr.taskId))];
    if (taskIds.join("\n") !== taskKey) {
      taskKey = taskIds.join("\n");
      const chosen = taskFilter.value;
      fill(taskFilter, h("option", { value: "" }, "all tasks"), taskIds.map((t) => h("option", { value: t, selected: t === chosen }, t)));
    }
    const ioKey = JSON.stringify([execution.inputs, execution.outputs, execution.labels, runs.map((tr) => tr.outputs)]);
    if (ioKey === lastIo) return; // unchanged: keep the focus on a download button
    lastIo = ioKey;
    const taskOutputs = runs.filter((tr) => tr.outputs && Object.keys(tr.outputs).length);
    fill(io,
      h("h2", {}, "Inputs"), execution.inputs && Object.keys(execution.inputs).length ? valueView(id, execution.inputs) : h("p", { class: "muted" }, "none"),
      h("h2", {}, "Outputs"), execution.outputs && Object.keys(execution.outputs).length ? valueView(id, execution.outputs) : h("p", { class: "muted" }, "none"),
      taskOutputs.length ? [h("h2", {}, "Task outputs"), h("div", { class: "kv" }, taskOutputs.map((tr) => [
        h("span", { class: "muted" }, `${tr.taskId}${tr.value ? ` [${tr.value}]` : ""}`), valueView(id, tr.outputs)]))] : null,
      h("h2", {}, "Labels"), (execution.labels || []).length ? h("ul", {}, execution.labels.map((l) => h("li", {}, h("code", {}, `${l.key}: ${l.value}`)))) : h("p", { class: "muted" }, "none"));
  };

  const refresh = async () => {
    const before = execution ? execution.state.current : null;
    execution = await json(`executions/${enc(id)}`);
    // An execution that has just ended (seen by the poll, or by the refresh after an action: a
    // restart can run to its end before that refresh) gets its last log lines read once more;
    // the poll stops after that.
    const after = execution.state.current;
    if (before !== null && before !== after && TERMINAL.has(after)) await loadLogs();
    // The flow's revision is read only for a pause's onResume inputs, and once.
    if (!flow && execution.state.current === "PAUSED") {
      const at = `flows/${enc(execution.namespace)}/${enc(execution.flowId)}`;
      flow = await json(`${at}${query({ revision: execution.flowRevision, source: "false" })}`).catch(() => null);
    }
    const { runs, note } = await allTaskRuns(execution);
    render(runs, note);
  };

  await Promise.all([refresh(), loadLogs()]);
  fill(root, header, actions, actionArea, status, ganttBox, treeBox,
    h("section", {}, h("h2", {}, "Logs"),
      h("div", { class: "filters" },
        h("label", { for: "log-level" }, "Minimum level", level),
        h("label", { for: "log-task" }, "Task", taskFilter),
        h("label", { for: "log-search" }, "Search", search),
        h("label", { for: "log-follow" }, "Follow", follow),
        h("a", { href: "#", onclick: (event) => { event.preventDefault(); call(`logs/${enc(id)}/download`).then((r) => r.blob()).then((b) => {
          const url = URL.createObjectURL(b); const a = h("a", { href: url, download: `${id}.log` }); document.body.append(a); a.click(); a.remove();
        }).catch(showError); } }, "Download log")),
      logs.el),
    io);
  logs.paint();

  // Live updates: bounded polling while the execution runs and the page is the one shown.
  let lastExec = 0, lastLogs = 0;
  const tick = async () => {
    if (!isCurrent()) return;
    const now = Date.now();
    const running = !TERMINAL.has(execution.state.current);
    if (!document.hidden && running) {
      try {
        if (now - lastExec >= EXEC_EVERY) { lastExec = now; await refresh(); }
        if (follow.checked && now - lastLogs >= LOGS_EVERY && !TERMINAL.has(execution.state.current)) {
          lastLogs = now;
          await loadLogs();
        }
      } catch (e) {
        showError(e);
      }
    }
    setTimeout(tick, 500);
  };
  setTimeout(tick, 500);
}

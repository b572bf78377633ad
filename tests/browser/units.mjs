// The UI's pure helpers on hand-made values (run by test_pages_in_node.py): the task-run tree
// order, costs summed from attempts, the revision diff. Prints "ok" or throws.
import assert from "node:assert/strict";
import { install } from "./dom_shim.mjs";

install("http://127.0.0.1:9");
const staticDir = process.argv[2];
const { treeRows, runCost, totalCost, timeTicks, span, pollPlan, POLL, TaskRunSet } = await import(`${staticDir}/js/pages/execution.js`);
const { LogPages } = await import(`${staticDir}/js/log-pages.js`);
const { lineDiff } = await import(`${staticDir}/js/diff.js`);

const tr = (id, parent, attempts = []) => ({ id, parentTaskRunId: parent, taskId: id, attempts: attempts.map((cost) => ({ cost })) });
// children follow their parent whatever the list's order; an orphan (parent on a later page) is a root
const rows = treeRows([tr("a", null), tr("c", "b"), tr("b", "a"), tr("d", null), tr("x", "missing")]);
assert.deepEqual(rows.map((r) => [r.tr.id, r.depth]), [["a", 0], ["b", 1], ["c", 2], ["d", 0], ["x", 0]]);

assert.equal(runCost(tr("p", null, [0.25, null, 0.5])), 0.75);
assert.equal(runCost(tr("q", null, [null])), null);
assert.equal(runCost({ ...tr("r", null, [1]), cost: 2 }), 2); // a task-run total wins when given
assert.equal(totalCost([tr("p", null, [0.25]), tr("q", null, [null]), tr("s", null, [0.5])]), 0.75);
assert.equal(totalCost([tr("q", null, [])]), null);

const diff = lineDiff("a\nb\nc", "a\nB\nc\nd").textContent.replace(/\n$/, "").split("\n");
assert.deepEqual(diff, ["  a", "- b", "+ B", "  c", "+ d"]);
assert.match(lineDiff("x\n".repeat(2001), "y").textContent, /too long/);
// The Gantt's axis: a nice step, about six ticks, labels people read.
assert.deepEqual(timeTicks(60000).map((t) => t.label), ["0s", "10s", "20s", "30s", "40s", "50s", "1m"]);
assert.deepEqual(timeTicks(3 * 3600000).map((t) => t.label), ["0s", "30m", "1h", "1h30m", "2h", "2h30m", "3h"]);
assert.deepEqual(timeTicks(500).map((t) => t.at), [0, 100, 200, 300, 400, 500]);
assert.equal(span(90061000), "1d1h1m1s");
assert.deepEqual(timeTicks(1).map((t) => t.label), ["0s", "1ms"]); // never a step under 1 ms
for (const total of [1, 999, 7000, 86400000 * 40]) {
  const n = timeTicks(total).length;
  assert.ok(n >= 2 && n <= 13, `${total} ms: ${n} ticks`);
}

// The poll's budget, on a clock: a minute of 500 ms ticks asks for what POLL.perMinute() says.
assert.ok(POLL.perMinute() <= 100);
let execs = 0, follows = 0;
const last = { exec: 0, logs: 0 };
for (let now = 500; now <= 60000; now += POLL.tick) {
  const plan = pollPlan(now, last, { running: true, visible: true, follow: true });
  if (plan.exec) { execs += 1; last.exec = now; }
  if (plan.logs) { follows += 1; last.logs = now; }
}
assert.equal(execs * (1 + POLL.taskRunPages) + follows * POLL.logPages, POLL.perMinute());
assert.deepEqual(pollPlan(60000, { exec: 0, logs: 0 }, { running: false, visible: true, follow: true }), { exec: false, logs: false });
assert.deepEqual(pollPlan(60000, { exec: 0, logs: 0 }, { running: true, visible: false, follow: true }), { exec: false, logs: false });
assert.deepEqual(pollPlan(60000, { exec: 0, logs: 0 }, { running: true, visible: true, follow: false }), { exec: true, logs: false });

// A log read a page at a time from a stand-in for the paged route (pages of 3 after a cursor).
const log = Array.from({ length: 10 }, (_, i) => ({ message: `line ${i}`, level: "INFO", timestamp: "t", taskId: "x", extra: "dropped" }));
const route = async (cursor) => {
  const from = cursor === null ? 0 : Number(cursor);
  const results = log.slice(from, from + 3);
  return { results, cursor: from + 3 < log.length ? String(from + 3) : null };
};
const pages = new LogPages(route, { keep: 2 });
assert.equal(pages.more, true);
await pages.next();
await pages.next();
assert.equal(pages.length, 6);
assert.deepEqual(pages.get(4), { message: "line 4", level: "INFO", timestamp: "t", taskId: "x" });
await pages.next(); // a third page: the first one's lines are dropped (keep: 2)
assert.equal(pages.held, 2);
assert.equal(pages.get(0), null); // on its way again
await pages.queue;
assert.equal(pages.get(0).message, "line 0");
assert.equal(pages.held, 2);
while (pages.more) await pages.next();
assert.equal(pages.length, 10);
for (const i of [10, 11, 12, 13]) log.push({ message: `line ${i}`, level: "INFO" }); // the job logs on
const before = pages.requests;
await pages.tail(2);
assert.equal(pages.length, 14);
assert.equal(pages.get(13).message, "line 13");
assert.equal(pages.requests - before, 2); // the last page again, then the new one
await pages.tail(2);
assert.equal(pages.requests - before, 3); // nothing new: one request, no more pages

// A page read again after pages were asked smaller (a response too big) reads on to its count.
let size = 4;
const shrinking = async (cursor) => {
  const from = cursor === null ? 0 : Number(cursor);
  return { results: log.slice(from, from + size), cursor: from + size < log.length ? String(from + size) : null };
};
const small = new LogPages(shrinking, { keep: 1 });
await small.next();
await small.next(); // the first page's lines are dropped (keep: 1)
size = 1;
assert.equal(small.get(3), null);
await small.queue;
assert.equal(small.get(3).message, "line 3");
assert.deepEqual([0, 1, 2, 3].map((i) => small.get(i)?.message), ["line 0", "line 1", "line 2", "line 3"]);

// Task runs past the execution's own list, a page at a time, then one page a refresh.
const run = (id, at) => ({ id, taskId: "t", state: { startDate: `2026-01-01T00:00:0${at}Z`, current: "SUCCESS" } });
const table = { c1: { results: [run("b", 2)], cursor: "c2" }, c2: { results: [run("c", 1)], cursor: null } };
const set = new TaskRunSet(async (cursor) => table[cursor]);
await set.load({ taskRunList: [run("a", 3)], taskRunCursor: "c1" });
assert.deepEqual(set.runs.map((r) => r.id), ["c", "b", "a"]);
table.c2 = { results: [run("c", 1), { ...run("d", 4), state: { startDate: "2026-01-01T00:00:04Z", current: "FAILED" } }], cursor: null };
await set.refresh({ taskRunList: [run("a", 3)], taskRunCursor: "c1" }); // reads c1
assert.equal(set.byId.has("d"), false);
await set.refresh({ taskRunList: [run("a", 3)], taskRunCursor: "c1" }); // then c2, in turn
assert.deepEqual(set.runs.map((r) => r.id), ["c", "b", "a", "d"]);
assert.equal(set.requests, 4);
console.log("ok");

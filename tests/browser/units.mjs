// The UI's pure helpers on hand-made values (run by test_pages_in_node.py): the task-run tree
// order, costs summed from attempts, the revision diff. Prints "ok" or throws.
import assert from "node:assert/strict";
import { install } from "./dom_shim.mjs";

install("http://127.0.0.1:9");
const staticDir = process.argv[2];
const { treeRows, runCost, totalCost } = await import(`${staticDir}/js/pages/execution.js`);
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
console.log("ok");

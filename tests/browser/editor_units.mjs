// The editor's pure parts on hand-made flows and the real JSON Schema (run by
// test_pages_in_node.py, which writes the schema the server would serve): where the cursor is
// in the YAML, what completes there, the documents of a body, and the bound on validations
// under a fake clock. Prints "ok" or throws.
import assert from "node:assert/strict";
import fs from "node:fs";
import { install } from "./dom_shim.mjs";

install("http://127.0.0.1:9");
const [staticDir, schemaFile] = process.argv.slice(2);
const schema = JSON.parse(fs.readFileSync(schemaFile, "utf8"));
const { contextAt } = await import(`${staticDir}/js/yaml-context.js`);
const { completions } = await import(`${staticDir}/js/schema-complete.js`);
const { documents, throttled } = await import(`${staticDir}/js/flow-editor.js`);

// "|" marks the cursor.
function at(text) {
  const offset = text.indexOf("|");
  return contextAt(text.replace("|", ""), offset);
}
function labels(text) {
  return completions(schema, at(text)).map((c) => c.label);
}

const task = "id: f\nnamespace: n\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n";
// a key in a task: its path, what it replaces, the keys it already has
assert.deepEqual(at(`${task}    mes|sage: x\n`), {
  mode: "key", path: ["tasks", "[]"], types: [undefined, undefined], key: null, prefix: "mes",
  from: task.length + 4, to: task.length + 11, siblings: { id: "a", type: "io.kestra.plugin.core.log.Log" },
});
assert.deepEqual(labels(`${task}    |`).slice(0, 1), ["message"]); // required keys first
assert.ok(!labels(`${task}    |`).includes("id")); // already there
assert.ok(!labels(`${task}    |`).includes("commands")); // a script task's key
// the type is found below the cursor too, and a task without one gets the keys every task has
assert.deepEqual(labels("tasks:\n  - id: a\n    mess|\n    type: squall.core.Log\n"), ["message"]);
assert.deepEqual(labels("tasks:\n  - |").slice(0, 2), ["id", "type"]);
// values: task types (Kestra's names and aliases), input types, log levels, booleans
assert.ok(labels("tasks:\n  - id: a\n    type: core.debug.Ret|").includes("io.kestra.plugin.core.debug.Return"));
assert.ok(labels("inputs:\n  - id: a\n    type: |").includes("MULTISELECT"));
assert.deepEqual(labels(`${task}    allowFailure: |`), ["true", "false"]);
// nested: a Parallel's tasks, a Switch's cases, a Dag's tasks (DagTask, not AnyTask), unindented lists
const parallel = "tasks:\n- id: p\n  type: io.kestra.plugin.core.flow.Parallel\n  tasks:\n    - id: b\n      type: squall.core.Log\n";
assert.ok(labels(`${parallel}    - id: c\n      |`).includes("type"));
assert.deepEqual(at(`${parallel}    - id: c\n      |`).path, ["tasks", "[]", "tasks", "[]"]);
assert.ok(labels("tasks:\n  - id: s\n    type: io.kestra.plugin.core.flow.Switch\n    cases:\n      A:\n        - id: z\n          |").includes("type"));
const dag = "tasks:\n  - id: d\n    type: io.kestra.plugin.core.flow.Dag\n    tasks:\n      - |";
assert.ok(labels(dag).includes("dependsOn") && labels(dag).includes("task"), labels(dag));
// the root's keys, minus those written; comments and blank lines do not break the path
assert.ok(labels("id: f\n# note\n\nnamespace: n\n|").includes("tasks"));
assert.ok(!labels("id: f\nnamespace: n\n|").includes("namespace"));
// nowhere to complete: inside a value's text, a flow-style list, a list at the top
assert.equal(at("id: f\ndescription: some words| here\n"), null);
assert.equal(at("- id: a\n  |"), null);
assert.deepEqual(completions(schema, at("tasks: [|")), []);

// documents: where the flow starts (the server numbers lines from there) and a second one
assert.deepEqual(documents("id: a\n"), [{ start: 0, separator: null }]);
assert.deepEqual(documents("---\n\nid: a\n"), [{ start: 1, separator: 1 }]);
assert.deepEqual(documents("id: a\n---\nid: b\n").map((d) => d.separator), [null, 2]);
assert.deepEqual(documents("  \n"), []);

// throttled: 100 keystrokes 50 ms apart make no request until 600 ms of quiet, then one;
// keystrokes during a slow request make one more after it, never two within the gap.
let now = 0;
const timers = [];
const clock = {
  now: () => now,
  setTimeout: (f, ms) => { const t = { at: now + ms, f }; timers.push(t); return t; },
  clearTimeout: (t) => { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1); },
};
const settle = () => new Promise((r) => setImmediate(r));
async function advance(ms) {
  const end = now + ms;
  for (;;) {
    timers.sort((a, b) => a.at - b.at);
    if (!timers.length || timers[0].at > end) break;
    const t = timers.shift();
    now = t.at;
    t.f(); // not awaited: a request may hang, as a slow server's does
    await settle();
  }
  now = end;
}
const runs = [];
let release = null;
const schedule = throttled(() => { runs.push(now); return new Promise((r) => { release = r; }); }, 600, 1000, clock);
for (let i = 0; i < 100; i++) { schedule(); await advance(50); }
assert.deepEqual(runs, []);
await advance(600); // quiet: the request goes out, and hangs
assert.deepEqual(runs, [99 * 50 + 600]); // 600 ms after the last keystroke
schedule(); // typed while it runs
await advance(5000);
assert.equal(runs.length, 1); // never two at once
release();
await settle();
await advance(5000);
assert.equal(runs.length, 2); // the text typed meanwhile is checked once it has answered
assert.ok(runs[1] - runs[0] >= 1000, runs);
release();
// a quick answer, then one keystroke: the next request waits out the gap, not only the quiet
const quick = [];
const again = throttled(() => { quick.push(now); }, 100, 1000, clock);
const t0 = now;
again(); await advance(100);
again(); await advance(2000);
assert.deepEqual(quick, [t0 + 100, t0 + 1100]);
console.log("ok");

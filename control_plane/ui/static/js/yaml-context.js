// Where the cursor is in a flow's YAML, from indentation alone: the path of keys and list
// items above it, the key it is typing or the value of which key, and the keys its mapping
// already has. The editor completes from that and the JSON Schema (schema-complete.js).
// Why not a YAML parser: the text being typed is mostly invalid YAML, and a parser stops at
// the first error; block-style flows (what Kestra's docs and Squall's samples use) carry their
// structure in the indentation, which survives an unfinished line. Flow style ({a: 1}, [x])
// and multi-line plain scalars are not followed: the context is then unknown (null).
const WORD = "[A-Za-z0-9_.@$-]";
const KEY_LINE = new RegExp(`^(${WORD}+|"[^"]*"|'[^']*')\\s*:(?:\\s+(.*)|$)`);

// One line: its indentation, the column of its last "- " item marker, the column its content
// starts at, and its key and value when it is "key: value".
export function parseLine(text) {
  const m = /^(\s*)((?:-(?:\s+|$))*)(.*)$/.exec(text);
  const indent = m[1].length;
  const dashes = m[2];
  const rest = m[3];
  if ((rest === "" && !dashes) || rest.startsWith("#")) return null; // blank or comment
  const kv = KEY_LINE.exec(rest);
  let key = null;
  let value = rest;
  if (kv) {
    key = kv[1].replace(/^["']|["']$/g, "");
    value = (kv[2] || "").replace(/\s+#.*$/, "").trim();
  }
  return { indent, dashCol: dashes ? indent + dashes.lastIndexOf("-") : null, col: indent + dashes.length, key, value };
}

// The `type` of the mapping that holds the key on line `at` (column `col`), wherever in the
// mapping it is written: what narrows a task's or trigger's schema to its own.
function ownerType(lines, at, col) {
  const keys = siblings(lines, mappingStart(lines, at, col), col, -1);
  return keys.type ? keys.type.replace(/^["']|["']$/g, "") : undefined;
}

function mappingStart(lines, at, col) {
  for (let j = at; j >= 0; j--) {
    const e = parseLine(lines[j]);
    if (e === null || e.col > col) continue;
    if (e.col === col && e.key !== null && e.dashCol === null) continue;
    return e.col === col && e.dashCol !== null ? j : j + 1;
  }
  return 0;
}

// The path from the root to the mapping whose keys sit at column `col` on line `at`, or null
// when the indentation does not say. `item`/`dashCol`: that line opens a list item ("- key").
// `types[i]` is the `type` of the mapping holding the key `path[i]` (a Parallel's `tasks`
// are AnyTask items, a Dag's are DagTask ones).
function mappingPath(lines, at, col, item, dashCol) {
  const path = [];
  const types = [];
  let start = null;
  let i = at;
  let k = col;
  let d = dashCol;
  let isItem = item;
  for (;;) {
    if (!isItem) {
      let parent = null;
      for (let j = i - 1; j >= 0; j--) {
        const e = parseLine(lines[j]);
        if (e === null || e.col > k) continue; // blank, or inside a sibling's value
        if (e.col === k && e.key !== null) {
          if (e.dashCol !== null) { isItem = true; d = e.dashCol; i = j; break; }
          continue; // a sibling key
        }
        parent = { e, j };
        break;
      }
      if (!isItem) {
        if (parent === null) return { path, types, start: start ?? 0, col };
        const { e, j } = parent;
        if (e.key === null || e.value !== "" || e.col >= k) return null;
        if (start === null) start = j + 1;
        path.unshift(e.key);
        types.unshift(ownerType(lines, j, e.col));
        i = j; k = e.col; isItem = e.dashCol !== null; d = e.dashCol;
        continue;
      }
    }
    // The mapping at column k opens with "- " at column d: an item of a list; find the list's key.
    if (start === null) start = i;
    path.unshift("[]");
    types.unshift(undefined);
    let found = false;
    for (let j = i - 1; j >= 0; j--) {
      const e = parseLine(lines[j]);
      if (e === null || e.dashCol === d || e.col > d) continue; // a sibling item, or inside one
      if (e.key === null || e.value !== "") return null;
      path.unshift(e.key);
      types.unshift(ownerType(lines, j, e.col));
      i = j; k = e.col; isItem = e.dashCol !== null; d = e.dashCol;
      found = true;
      break;
    }
    if (!found) return null; // a list at the top: not a flow
  }
}

// The keys (and their values) of the mapping at column `col` that starts on line `start`.
function siblings(lines, start, col, skip) {
  const found = {};
  for (let j = start; j < lines.length; j++) {
    const e = parseLine(lines[j]);
    if (e === null) continue;
    if (j > start && (e.col < col || (e.dashCol !== null && e.dashCol < col))) break;
    if (e.col === col && e.key !== null && j !== skip) found[e.key] = e.value;
  }
  return found;
}

// The completion context at `offset` in `text`:
//   { mode: "key" | "value", path, types, key (value mode), prefix, from, to, siblings }
// where [from, to) is the text a chosen completion replaces. null: nothing to complete here.
export function contextAt(text, offset) {
  const lineStart = text.lastIndexOf("\n", offset - 1) + 1;
  let lineEnd = text.indexOf("\n", offset);
  if (lineEnd < 0) lineEnd = text.length;
  const before = text.slice(lineStart, offset);
  const after = /^[A-Za-z0-9_.@$-]*/.exec(text.slice(offset, lineEnd))[0];
  const lines = text.split("\n");
  const at = text.slice(0, lineStart).split("\n").length - 1;
  const asKey = new RegExp(`^(\\s*)((?:-\\s+)*)(${WORD}*)$`).exec(before);
  const asValue = new RegExp(`^(\\s*)((?:-\\s+)*)(${WORD}+)\\s*:\\s+(["']?)(${WORD}*)$`).exec(before);
  const m = asKey || asValue;
  if (!m) return null;
  const col = m[1].length + m[2].length;
  const dashCol = m[2] ? m[1].length + m[2].lastIndexOf("-") : null;
  const where = mappingPath(lines, at, col, Boolean(m[2]), dashCol);
  if (where === null) return null;
  const start = m[2] ? at : where.start;
  const prefix = asKey ? m[3] : m[5];
  return {
    mode: asKey ? "key" : "value",
    path: where.path,
    types: where.types,
    key: asKey ? null : m[3],
    prefix,
    from: offset - prefix.length,
    to: offset + after.length,
    siblings: siblings(lines, start, col, at),
  };
}

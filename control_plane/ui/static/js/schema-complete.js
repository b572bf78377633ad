// Completions from the flow language's JSON Schema (served at schema/flow.json, generated from
// the models the server validates with) for a context from yaml-context.js: the keys valid in
// the mapping at the cursor, or the values of a key whose schema lists them (task `type`s,
// input types, log levels, booleans). Only draft-07's $ref/anyOf/oneOf/allOf/items/properties/
// additionalProperties/enum are followed: what schema.py emits.

// The object-or-array schemas a node stands for, with $refs followed and unions flattened.
function variants(schema, node, seen = new Set()) {
  if (!node || typeof node !== "object" || seen.has(node)) return [];
  seen.add(node);
  if (node.$ref) {
    const name = node.$ref.replace("#/definitions/", "");
    return variants(schema, schema.definitions[name], seen);
  }
  const unions = [...(node.anyOf || []), ...(node.oneOf || []), ...(node.allOf || [])];
  const own = node.properties || node.items || node.additionalProperties || node.enum || node.type ? [node] : [];
  return [...(unions.length ? [] : own), ...unions.flatMap((n) => variants(schema, n, seen))];
}

// The schemas of the value at `path` (keys, and "[]" for a list's item) from the root; each
// mapping on the way narrowed by its `type` (types[i], for the mapping holding path[i]).
function at(schema, path, types = []) {
  let nodes = variants(schema, schema);
  for (const [i, step] of path.entries()) {
    const next = [];
    for (const node of narrowed(nodes.filter((n) => n.properties || n.items || n.additionalProperties), { type: types[i] })) {
      if (step === "[]") { if (node.items) next.push(node.items); continue; }
      const property = node.properties && node.properties[step];
      if (property) next.push(property);
      else if (node.additionalProperties && typeof node.additionalProperties === "object") next.push(node.additionalProperties);
    }
    nodes = [...new Set(next.flatMap((n) => variants(schema, n)))];
  }
  return nodes.filter((n) => n.properties);
}

// A task or trigger's members narrowed by the `type` it already has (all of them until then).
function narrowed(mappings, siblings) {
  const type = siblings.type && siblings.type.replace(/^["']|["']$/g, "");
  if (!type) return mappings;
  const match = mappings.filter((m) => {
    const t = m.properties && m.properties.type;
    return t && Array.isArray(t.enum) && t.enum.includes(type);
  });
  return match.length ? match : mappings;
}

// What a key holds: its description, else its kind (pydantic's titles only repeat the name).
function describe(schema, node) {
  if (!node) return "";
  if (node.description) return node.description;
  const kinds = variants(schema, node).map((v) => (v.enum ? "one of a list" : v.items ? "list" : v.type === "object" || v.properties ? "map" : v.type))
    .filter((k) => k && k !== "null");
  return [...new Set(kinds)].join(" or ");
}

function matches(label, prefix) {
  return !prefix || label.toLowerCase().includes(prefix.toLowerCase());
}

// Prefix matches first, then the rest in their schema order.
function ranked(items, prefix) {
  const p = prefix.toLowerCase();
  const found = items.filter((i) => matches(i.label, prefix));
  return [...found.filter((i) => i.label.toLowerCase().startsWith(p)), ...found.filter((i) => !i.label.toLowerCase().startsWith(p))];
}

// [{label, detail}] for `context` (yaml-context.js's contextAt), at most `limit` of them.
export function completions(schema, context, limit = 50) {
  if (!schema || !context) return [];
  const mappings = narrowed(at(schema, context.path, context.types), context.siblings);
  if (!mappings.length) return [];
  if (context.mode === "key") {
    // Without a type yet, a task's keys are those every task has (id, type, retry, ...).
    const sets = mappings.map((m) => Object.keys(m.properties));
    const common = sets[0].filter((k) => sets.every((s) => s.includes(k)));
    // The keys a mapping must have come first (a Log's `message`), then the others by name.
    const required = new Set(mappings.flatMap((m) => m.required || []).filter((k) => common.includes(k)));
    const order = (k) => (required.has(k) ? 0 : 1);
    const items = common
      .filter((k) => !(k in context.siblings))
      .sort((a, b) => order(a) - order(b) || a.localeCompare(b))
      .map((k) => ({ label: k, detail: `${required.has(k) ? "required; " : ""}${describe(schema, mappings[0].properties[k])}` }));
    return ranked(items, context.prefix).slice(0, limit);
  }
  const values = new Map();
  for (const m of mappings) {
    for (const v of variants(schema, m.properties[context.key])) {
      for (const e of v.enum || []) if (!values.has(String(e))) values.set(String(e), "");
      if (v.type === "boolean") for (const b of ["true", "false"]) values.set(b, "boolean");
    }
  }
  const items = [...values].map(([label, detail]) => ({ label, detail }));
  return ranked(items, context.prefix).slice(0, limit);
}

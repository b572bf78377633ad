import { h } from "./dom.js";

// Highlight a flow's YAML source line by line: keys, strings, numbers, comments and {{ }}
// expressions. Enough for reading a flow; text is only ever set with textContent (no HTML).
const LINE = /^(\s*-?\s*)([A-Za-z0-9_.@-]+)(\s*:)(.*)$/;

function value(text) {
  const parts = [];
  const comment = text.search(/\s#/);
  const body = comment >= 0 ? text.slice(0, comment) : text;
  const rest = comment >= 0 ? text.slice(comment) : "";
  const pieces = body.split(/(\{\{.*?\}\})/);
  for (const piece of pieces) {
    if (!piece) continue;
    if (piece.startsWith("{{")) parts.push(h("span", { class: "tok-expr", text: piece }));
    else if (/^\s*-?\d+(\.\d+)?\s*$/.test(piece) || /^\s*(true|false|null)\s*$/.test(piece))
      parts.push(h("span", { class: "tok-num", text: piece }));
    else if (/^\s*["']/.test(piece)) parts.push(h("span", { class: "tok-str", text: piece }));
    else parts.push(piece);
  }
  if (rest) parts.push(h("span", { class: "tok-com", text: rest }));
  return parts;
}

// One line's nodes (the editor's overlay highlights line by line, to mark lines with errors).
export function yamlLine(line) {
  if (/^\s*#/.test(line)) return [h("span", { class: "tok-com", text: line })];
  const m = LINE.exec(line);
  if (m) return [m[1], h("span", { class: "tok-key", text: m[2] }), m[3], ...value(m[4])];
  return value(line);
}

export function highlightYaml(source) {
  const code = h("code", {});
  for (const line of (source || "").split("\n")) code.append(...yamlLine(line), "\n");
  return h("pre", { class: "code", tabindex: "0", "aria-label": "Flow source" }, code);
}

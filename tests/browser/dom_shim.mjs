// A minimal DOM for running the UI's modules in Node: enough to build pages and read them back.
class Node_ {
  constructor() { this.childNodes = []; this.parentNode = null; }
  append(...nodes) { for (const n of nodes) this.appendChild(n instanceof Node_ ? n : new Text_(String(n))); }
  appendChild(n) { if (n.parentNode) n.parentNode.removeChild(n); n.parentNode = this; this.childNodes.push(n); return n; }
  removeChild(n) { const i = this.childNodes.indexOf(n); if (i >= 0) this.childNodes.splice(i, 1); n.parentNode = null; return n; }
  remove() { if (this.parentNode) this.parentNode.removeChild(this); }
  replaceChildren(...nodes) { for (const c of [...this.childNodes]) this.removeChild(c); this.append(...nodes); }
  get textContent() { return this.childNodes.map((c) => c.textContent).join(""); }
  set textContent(v) { this.replaceChildren(String(v)); }
  contains(n) { while (n) { if (n === this) return true; n = n.parentNode; } return false; }
}
class Text_ extends Node_ { constructor(t) { super(); this.data = t; } get textContent() { return this.data; } }
class Style { constructor() {} }
export class Element_ extends Node_ {
  constructor(tag) { super(); this.tagName = tag.toUpperCase(); this.attributes = new Map(); this.listeners = {}; this.style = new Style(); this.scrollTop = 0; this.clientHeight = 400; this.scrollHeight = 0; this.hidden = false; this._value = ""; this.checked = false; this.disabled = false; }
  get value() { if (this.tagName === "SELECT") { const o = this.querySelectorAll("option"); const s = o.find((x) => x.selected) || o[0]; return s ? s.getAttribute("value") ?? s.textContent : ""; } if (this.tagName === "TEXTAREA" && this._value === "") return this.textContent; return this._value; }
  set value(v) { if (this.tagName === "SELECT") { for (const o of this.querySelectorAll("option")) o.selected = o.getAttribute("value") === String(v); } else this._value = String(v); }
  get children() { return this.childNodes.filter((c) => c instanceof Element_); }
  setAttribute(k, v) { this.attributes.set(k, String(v)); if (k === "value") this.value = String(v); if (k === "checked") this.checked = true; if (k === "id") this.id = String(v); }
  getAttribute(k) { return this.attributes.has(k) ? this.attributes.get(k) : null; }
  removeAttribute(k) { this.attributes.delete(k); }
  hasAttribute(k) { return this.attributes.has(k); }
  toggleAttribute(k, on) { if (on) this.setAttribute(k, ""); else this.removeAttribute(k); }
  get className() { return this.getAttribute("class") || ""; }
  set className(v) { this.setAttribute("class", v); }
  get id() { return this.getAttribute("id") || ""; }
  set id(v) { this.attributes.set("id", String(v)); }
  addEventListener(t, f) { (this.listeners[t] ||= []).push(f); }
  dispatch(t, extra = {}) { const ev = { type: t, target: this, preventDefault() {}, ...extra }; for (const f of this.listeners[t] || []) f(ev); return ev; }
  click() { return this.dispatch("click"); }
  focus() { globalThis.document.activeElement = this; }
  get elements() { return this.querySelectorAll("input, select, textarea, button"); }
  get selectedOptions() { return this.querySelectorAll("option").filter((o) => o.selected); }
  get files() { return []; }
  get type() { return this.getAttribute("type") || ""; }
  get name() { return this.getAttribute("name") || ""; }
  get multiple() { return this.hasAttribute("multiple"); }
  get selected() { return this.hasAttribute("selected"); }
  set selected(v) { this.toggleAttribute("selected", v); }
  showModal() { this.open = true; }
  querySelectorAll(sel) { const out = []; const walk = (n) => { for (const c of n.children) { if (matches(c, sel)) out.push(c); walk(c); } }; walk(this); return out; }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
  matches(sel) { return matches(this, sel); }
  set innerHTML(v) { this._html = v; const input = new Element_("input"); input.setAttribute("name", "token"); this.replaceChildren(input); }
}
function simple(el, part) {
  const m = part.match(/^([a-zA-Z0-9-]*)((?:[#.][\w-]+|\[[^\]]+\])*)$/);
  if (!m) throw new Error(`selector not supported: ${part}`);
  if (m[1] && el.tagName !== m[1].toUpperCase()) return false;
  for (const piece of m[2].match(/[#.][\w-]+|\[[^\]]+\]/g) || []) {
    if (piece[0] === "#" && el.id !== piece.slice(1)) return false;
    if (piece[0] === "." && !el.className.split(/\s+/).includes(piece.slice(1))) return false;
    if (piece[0] === "[") { const [k, v] = piece.slice(1, -1).split("="); if (v === undefined ? !el.hasAttribute(k) : el.getAttribute(k) !== v.replace(/"/g, "")) return false; }
  }
  return true;
}
function matches(el, sel) {
  return sel.split(",").some((alt) => {
    const parts = alt.trim().split(/\s+/);
    if (!simple(el, parts.at(-1))) return false;
    let n = el.parentNode, i = parts.length - 2;
    while (i >= 0 && n) { if (n instanceof Element_ && simple(n, parts[i])) i--; n = n.parentNode; }
    return i < 0;
  });
}
export function install(origin) {
  const body = new Element_("body");
  const byId = (id) => body.querySelectorAll(`#${id}`)[0] || null;
  globalThis.Node = Node_;
  globalThis.document = { baseURI: `${origin}/ui/`, body, hidden: false, activeElement: null, title: "",
    createElement: (t) => new Element_(t), createElementNS: (_, t) => new Element_(t), createTextNode: (t) => new Text_(t), getElementById: byId,
    querySelectorAll: (s) => body.querySelectorAll(s), querySelector: (s) => body.querySelector(s) };
  const store = new Map();
  globalThis.sessionStorage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, String(v)), removeItem: (k) => store.delete(k) };
  const listeners = {};
  globalThis.location = { hash: "", origin, reload() {} };
  globalThis.window = { addEventListener: (t, f) => { (listeners[t] ||= []).push(f); } };
  globalThis.alert = (m) => { throw new Error(`alert: ${m}`); };
  const realFetch = globalThis.fetch;
  globalThis.fetchLog = [];
  globalThis.fetch = (url, opts) => { globalThis.fetchLog.push(url); return realFetch(new URL(url, origin), opts); };
  globalThis.URL.createObjectURL = () => "blob:x"; globalThis.URL.revokeObjectURL = () => {};
  return { body, navigate: (hash) => { location.hash = hash; for (const f of listeners.hashchange || []) f(); } };
}

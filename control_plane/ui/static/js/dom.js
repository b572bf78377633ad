// A tiny DOM builder: h("a", {href}, "text", child) -> Element. No framework, no virtual DOM:
// pages are small and re-rendered by section; the big lists are virtualised (virtual-list.js).
// Children as h() takes them (nested arrays, null and false skipped, strings as text): what
// Element.append would otherwise turn into the text "null" or "[object HTMLElement]".
function nodes(children) {
  const out = [];
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    out.push(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return out;
}

// Replace an element's children with `children`, taken as h() takes them.
export function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class") el.className = value;
    // Through the CSSOM: the Content-Security-Policy (style-src 'self') blocks style attributes.
    else if (key === "style") el.style.cssText = value;
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...nodes(children));
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  el.append(...nodes(children));
  return el;
}

export function stateBadge(state) {
  return h("span", { class: `state ${state}`, text: state });
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// ISO 8601 duration (PT1M2.5S) to seconds, for sorting and the Gantt.
export function seconds(duration) {
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$/.exec(duration || "");
  if (!m) return 0;
  return (+m[1] || 0) * 86400 + (+m[2] || 0) * 3600 + (+m[3] || 0) * 60 + (+m[4] || 0);
}

export function describe(error) {
  return error && error.message ? error.message : String(error);
}

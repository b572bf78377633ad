import { h } from "./dom.js";

// A fixed-row-height virtual list: only the rows in view (plus a margin) exist in the DOM, so a
// million log lines or ten thousand task runs scroll as fast as ten. `renderRow(item, index)`
// returns the row's element; `setItems` swaps the data and keeps the scroll position (and
// sticks to the bottom when `follow` is on and the view was at the bottom). `items` is an array,
// or any `{length, get(index)}` (a log read a page at a time: `get` may give null for a row
// whose page is on its way, which `renderRow` shows as a placeholder). `onPaint(first, last)`
// says which rows are painted, so a paged source can read ahead of the scroll.
export class VirtualList {
  constructor({ rowHeight = 18, renderRow, className = "vlist", label = "list", follow = false, onPaint = null }) {
    this.rowHeight = rowHeight;
    this.renderRow = renderRow;
    this.onPaint = onPaint;
    this.items = [];
    this.follow = follow;
    this.spacer = h("div", { "aria-hidden": "true" });
    this.el = h("div", { class: className, tabindex: "0", role: "log", "aria-label": label }, this.spacer);
    this.el.addEventListener("scroll", () => this.paint());
    this.el.addEventListener("keydown", (event) => this.key(event));
    this.painted = new Map();
  }

  setItems(items) {
    const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - this.rowHeight;
    // A live update repaints every row: the row holding the keyboard focus gets it back.
    let focused = -1;
    for (const [index, row] of this.painted) if (row.contains(document.activeElement)) focused = index;
    this.items = items;
    this.spacer.style.height = `${items.length * this.rowHeight}px`;
    for (const row of this.painted.values()) row.remove();
    this.painted.clear();
    if (this.follow && atBottom) this.el.scrollTop = this.el.scrollHeight;
    this.paint();
    const row = this.painted.get(focused);
    const target = row && row.querySelector("button, a, input, select");
    if (target) target.focus({ preventScroll: true });
  }

  key(event) {
    const page = Math.max(1, Math.floor(this.el.clientHeight / this.rowHeight) - 1) * this.rowHeight;
    const moves = { ArrowDown: this.rowHeight, ArrowUp: -this.rowHeight, PageDown: page, PageUp: -page };
    if (event.key in moves) this.el.scrollTop += moves[event.key];
    else if (event.key === "Home") this.el.scrollTop = 0;
    else if (event.key === "End") this.el.scrollTop = this.el.scrollHeight;
    else return;
    event.preventDefault();
  }

  paint() {
    const height = this.el.clientHeight || 400;
    const first = Math.max(0, Math.floor(this.el.scrollTop / this.rowHeight) - 20);
    const last = Math.min(this.items.length, Math.ceil((this.el.scrollTop + height) / this.rowHeight) + 20);
    for (const [index, row] of this.painted) {
      if (index < first || index >= last) {
        row.remove();
        this.painted.delete(index);
      }
    }
    for (let index = first; index < last; index++) {
      if (this.painted.has(index)) continue;
      const row = this.renderRow(this.items.get ? this.items.get(index) : this.items[index], index);
      row.style.top = `${index * this.rowHeight}px`;
      this.painted.set(index, row);
      this.el.append(row);
    }
    if (this.onPaint) this.onPaint(first, last);
  }
}

import { h } from "./dom.js";

// A line diff (longest common subsequence) between two revisions' sources. Flows are hundreds
// of lines at most; above 2,000 lines a side the table would be too big, so it says so instead.
export function lineDiff(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length > 2000 || b.length > 2000) return h("p", { class: "muted" }, "too long to diff here");
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const code = h("code", {});
  let i = 0, j = 0;
  const line = (sign, text, cls) => code.append(h("span", { class: cls }, `${sign} ${text}\n`));
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { line(" ", a[i], ""); i++; j++; }
    else if (i < n && (j >= m || lcs[i + 1][j] >= lcs[i][j + 1])) { line("-", a[i], "error"); i++; }
    else { line("+", b[j], "tok-str"); j++; }
  }
  return h("pre", { class: "code", tabindex: "0", "aria-label": "Diff" }, code);
}

import { authMode, token } from "./api.js";
import { setUpLogin } from "./oidc.js";
import { h, fill, describe } from "./dom.js";
import { flowsPage } from "./pages/flows.js";
import { flowPage } from "./pages/flow.js";
import { newFlowPage } from "./pages/new-flow.js";
import { executionsPage } from "./pages/executions.js";
import { executionPage } from "./pages/execution.js";

// Hash routes (#/flows, #/flows/NS/ID, #/executions, #/executions/ID): one index.html serves
// every page, so the server needs no fallback route and a deep link works everywhere.
const main = document.getElementById("main");
let generation = 0;

async function route() {
  const mine = ++generation;
  const isCurrent = () => mine === generation;
  const [pathPart, search = ""] = (location.hash.slice(1) || "/flows").split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search);
  const root = h("div", {});
  fill(main, h("p", { role: "status" }, "Loading…"));
  try {
    if (parts[0] === "flows" && parts[1] === "new" && parts.length === 2) await newFlowPage(root, params);
    else if (parts[0] === "flows" && parts.length === 3) await flowPage(root, parts[1], parts[2], params);
    else if (parts[0] === "executions" && parts.length === 2) await executionPage(root, parts[1], isCurrent);
    else if (parts[0] === "executions") await executionsPage(root, params);
    else await flowsPage(root, params);
    if (!isCurrent()) return;
    fill(main, root);
    document.title = `Squall · ${main.querySelector("h1")?.textContent || "UI"}`;
  } catch (e) {
    if (!isCurrent()) return;
    fill(main, h("h1", {}, "Could not load this page"), h("p", { class: "error", role: "alert" }, describe(e)));
  }
  for (const link of document.querySelectorAll("header nav a"))
    if (link.getAttribute("href") === `#/${parts[0] || "flows"}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  const signout = document.getElementById("signout");
  signout.textContent = authMode().signOutLabel;
  signout.hidden = !token();
}

document.getElementById("signout").addEventListener("click", () => authMode().signOut());
// The login first (an OIDC deployment sends the browser to its IdP, or takes its answer back).
setUpLogin(main).then((go) => {
  if (!go) return;
  window.addEventListener("hashchange", route);
  route();
}, (e) => fill(main, h("h1", {}, "Could not start"), h("p", { class: "error", role: "alert" }, describe(e))));

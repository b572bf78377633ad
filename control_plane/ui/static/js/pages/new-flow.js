import { h, fill } from "../dom.js";
import { flowEditor } from "../flow-editor.js";

// A new flow: the editor on a starting flow (Kestra's own first example), created with POST;
// once created, later deploys from the same page update it (PUT), each a new revision.
export function template(namespace) {
  return `id: hello_world
namespace: ${namespace || "company.team"}

tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: Hello World! 🚀
`;
}

export async function newFlowPage(root, params) {
  fill(root,
    h("h1", {}, "New flow"),
    h("p", { class: "muted" }, "Write the flow, then deploy it: it is checked as you type."),
    flowEditor({ source: template(params.get("namespace")) }));
}

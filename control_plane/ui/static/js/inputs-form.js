import { h } from "./dom.js";

// A form generated from a flow's typed inputs (or a Pause task's onResume inputs). Values go
// out as multipart FormData, as Kestra's UI sends them: FILE inputs are file parts (the server
// stores them and passes kestra:/// URIs), everything else is text the server types and checks.
function field(input) {
  const id = input.id || input.name;
  const type = String(input.type || "STRING").toUpperCase();
  const required = input.required !== false && input.defaults === undefined;
  const common = { name: id, id: `in-${id}`, required, "aria-describedby": input.description ? `in-${id}-help` : null };
  const dflt = input.defaults === undefined || input.defaults === null ? "" : input.defaults;
  let control;
  const options = input.values || input.options || [];
  if (type === "BOOLEAN" || type === "BOOL") {
    control = h("select", common, h("option", { value: "true", selected: dflt === true || dflt === "true" }, "true"),
      h("option", { value: "false", selected: !(dflt === true || dflt === "true") }, "false"));
  } else if (type === "SELECT" || type === "ENUM") {
    control = h("select", common, options.map((v) => h("option", { value: v, selected: v === dflt }, v)));
  } else if (type === "MULTISELECT") {
    const chosen = Array.isArray(dflt) ? dflt : [];
    control = h("select", { ...common, multiple: true, "data-json-array": "1" },
      options.map((v) => h("option", { value: v, selected: chosen.includes(v) }, v)));
  } else if (type === "FILE") {
    control = h("input", { ...common, type: "file" });
  } else if (type === "JSON" || type === "YAML" || type === "ARRAY") {
    const text = typeof dflt === "string" ? dflt : dflt === "" ? "" : JSON.stringify(dflt, null, 2);
    control = h("textarea", { ...common, rows: 4 }, text);
  } else {
    const html = { INT: "number", FLOAT: "number", SECRET: "password", EMAIL: "email", DATE: "date", URI: "url" }[type] || "text";
    control = h("input", { ...common, type: html, value: String(dflt), step: type === "FLOAT" ? "any" : null,
      placeholder: { DATETIME: "2026-01-31T12:00:00Z", DURATION: "PT5M", TIME: "12:00:00" }[type] || null,
      autocomplete: type === "SECRET" ? "off" : null });
  }
  return h("label", { for: `in-${id}` }, `${id} (${type}${required ? ", required" : ""})`, control,
    input.description ? h("span", { id: `in-${id}-help`, class: "muted" }, input.description) : null);
}

export function inputsForm(inputs, submitLabel, onSubmit) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "form-grid" }, (inputs || []).map(field), error,
    h("button", { type: "submit" }, submitLabel));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData();
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === "file") {
        if (el.files.length) data.append(el.name, el.files[0], el.files[0].name);
      } else if (el.multiple) {
        data.append(el.name, JSON.stringify([...el.selectedOptions].map((o) => o.value)));
      } else if (el.value !== "") {
        data.append(el.name, el.value);
      }
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await onSubmit(data);
    } catch (e) {
      error.textContent = e.message || String(e);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

import { path, enc } from "./api.js";
import { h, when } from "./dom.js";

// What a person reads about a trigger: a schedule's cron with its next dates (the API's
// `nextExecutionDates`, computed by the server from the cron and the time zone), a webhook's
// URL to call, a flow trigger's source.
export function webhookUrl(namespace, flowId, key) {
  return `${location.origin}${path(`executions/webhook/${enc(namespace)}/${enc(flowId)}/${enc(key)}`)}`;
}

export function triggerDetail(trigger, namespace, flowId, { dates = 3 } = {}) {
  if (trigger.disabled) return [h("code", {}, trigger.cron || trigger.key || ""), " (disabled)"];
  if (trigger.cron) {
    const next = (trigger.nextExecutionDates || []).slice(0, dates);
    return [h("code", {}, `cron ${trigger.cron}${trigger.timezone ? ` (${trigger.timezone})` : ""}`),
      next.length ? h("span", { class: "next-dates" }, ` · next ${next.map(when).join(", ")}`) : h("span", { class: "muted" }, " · no next date")];
  }
  if (trigger.key) return [h("code", { class: "webhook-url" }, webhookUrl(namespace, flowId, trigger.key))];
  if (trigger.conditions || trigger.preconditions) return ["on other flows' executions"];
  return [];
}

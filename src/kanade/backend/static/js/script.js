// The script an execution runs (GET /api/executions/{id}/script): shown to operators and
// admins on the execution page, in the approval box (approvers see what they approve) and
// in the audit log. Viewers get its sha256 only: a script may hold a secret.
import { bytes, h, mountInto, notice } from "./dom.js";

const ROUTE = "GET /api/executions/{exec_id}/script";

/** Can this session read script text at all? */
export function canReadScripts(ctx) {
  return ctx.can("operate") && ctx.has(ROUTE);
}

/**
 * A <details> that loads the script when opened (`open`: at once). `sha256`, when known,
 * is shown in the summary, also to viewers (who get no text).
 */
export function scriptPanel(ctx, execId, { open = false, sha256 = null, label = "Script" } = {}) {
  const short = sha256 ? ` · sha256 ${sha256.slice(0, 12)}…` : "";
  if (!canReadScripts(ctx)) {
    return h("p", { class: "muted small script-hidden" },
      `${label}${short} — its text is shown to operators only (a script may hold a secret).`);
  }
  const body = h("div", { class: "script-body" }, h("p", { class: "muted small" }, "Loading…"));
  const el = h("details", { class: "script", dataset: { execId } },
    h("summary", {}, label, h("span", { class: "muted small" }, short)), body);
  let loaded = false;
  const load = async () => {
    if (loaded) return;
    loaded = true;
    try {
      const s = await ctx.api.get(`/api/executions/${encodeURIComponent(execId)}/script`);
      mountInto(body, scriptView(s));
    } catch (err) {
      loaded = false;
      mountInto(body, ctx.errorView(err));
    }
  };
  el.addEventListener("toggle", () => { if (el.open) load(); });
  if (open) { el.open = true; load(); }
  return el;
}

function scriptView(s) {
  const meta = [
    s.shell ? `${s.shell}` : null,
    s.object ? `script object ${s.object}` : "inline",
    s.size !== null && s.size !== undefined ? bytes(s.size) : null,
    s.sha256 ? `sha256 ${s.sha256}` : null,
  ].filter(Boolean).join(" · ");
  return [
    h("p", { class: "muted small mono script-meta" }, meta),
    s.text === null || s.text === undefined
      ? notice("info", `The text cannot be shown: ${s.note || "not recorded"}.`)
      : h("pre", { class: "code script-text", tabindex: 0, "aria-label": "Script text" }, s.text),
    s.truncated ? notice("info", `Cut at 256 KiB of ${bytes(s.size)}.`) : null,
  ];
}

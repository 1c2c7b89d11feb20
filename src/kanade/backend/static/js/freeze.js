// The fleet freeze (SPEC §4.5, GET/PUT/DELETE /api/freeze): a banner while scheduled fires
// are held, and — for operators — set / clear controls. Manual execs are never frozen.
import { fullTime, h, mountInto, notice } from "./dom.js";
import { showError } from "./forms.js";

function describe(fr) {
  if (!fr) return "";
  return [fr.by && `by ${fr.by}`, fr.until && `until ${fullTime(fr.until)}`, fr.reason && `— ${fr.reason}`]
    .filter(Boolean).join(" ");
}

/** State of a GET /api/freeze answer: "frozen" | "scheduled" | "off". */
export function freezeState(f) {
  if (f?.frozen) return "frozen";
  const fr = f?.freeze;
  if (fr?.from && new Date(fr.from) > Date.now()) return "scheduled";
  return "off";
}

/**
 * The freeze as a banner (+ Clear for operators). With `form: true` also a "freeze the
 * fleet" form (reason, optional until) for operators. Returns {el, load()}; `onChange` runs
 * after a set or clear.
 */
export function freezePanel(ctx, { form = false, onChange = null } = {}) {
  const el = h("div", { class: "slot freeze", id: form ? "freeze-panel" : "freeze-banner" });
  if (!ctx.has("GET /api/freeze")) {
    if (form) mountInto(el, notice("na", "Not available: this backend has no freeze API."));
    return { el, load: async () => {} };
  }
  const mayWrite = () => ctx.can("operate") && ctx.has("PUT /api/freeze");
  const out = h("div", { class: "form-out", "aria-live": "polite" });

  function clearButton() {
    if (!ctx.can("operate") || !ctx.has("DELETE /api/freeze")) return null;
    const btn = h("button", {
      type: "button", class: "btn",
      onclick: async () => {
        btn.disabled = true;
        try { await ctx.api.del("/api/freeze"); await load(); onChange?.(); } catch (err) { showError(out, err); btn.disabled = false; }
      },
    }, "Clear freeze");
    return btn;
  }

  function setForm() {
    const reason = h("input", { id: "freeze-reason", type: "text", maxlength: 1000, placeholder: "e.g. change freeze for the release" });
    const until = h("input", { id: "freeze-until", type: "datetime-local" });
    const submit = h("button", { type: "submit", class: "btn btn-danger" }, "Freeze scheduled fires");
    return h("form", {
      class: "filters", "aria-label": "Freeze the fleet",
      onsubmit: async (e) => {
        e.preventDefault();
        const body = { reason: reason.value.trim() };
        if (until.value) body.until = new Date(until.value).toISOString();
        submit.disabled = true;
        try { await ctx.api.put("/api/freeze", body); await load(); onChange?.(); } catch (err) { showError(out, err); submit.disabled = false; }
      },
    },
    h("div", { class: "field grow" }, h("label", { for: "freeze-reason" }, "Reason"), reason),
    h("div", { class: "field" }, h("label", { for: "freeze-until" }, "Until (optional, your time)"), until),
    submit);
  }

  async function load() {
    let f;
    try { f = await ctx.api.get("/api/freeze"); } catch (err) { mountInto(el, ctx.errorView(err)); return; }
    const state = freezeState(f);
    el.dataset.state = state;
    const who = describe(f.freeze);
    const parts = [];
    if (state === "frozen") {
      parts.push(h("div", { class: "notice notice-warn freeze-row", role: "status" },
        h("span", {}, h("strong", {}, "Fleet frozen: "), `scheduled fires are held ${who}`.trim()), clearButton()));
    } else if (state === "scheduled") {
      parts.push(h("div", { class: "notice notice-info freeze-row", role: "status" },
        h("span", {}, `A fleet freeze is scheduled from ${fullTime(f.freeze.from)} ${who}`.trim()), clearButton()));
    } else if (form) {
      parts.push(h("p", { class: "muted", role: "status" }, "Not frozen: schedules fire normally."));
    }
    if (form && state === "off" && mayWrite()) parts.push(setForm());
    if (form && state !== "off") parts.push(h("p", { class: "muted small" }, "A freeze holds scheduled fires on the backend and on agents; manual executions still run."));
    mountInto(el, parts, out);
  }
  return { el, load };
}

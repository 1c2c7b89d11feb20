// Form pieces shared by the "run on…" form of a job and the ad-hoc script form.
import { h } from "./dom.js";

let seq = 0;

/** Target fieldset: all agents | groups | pcs (`pcs`: filled in). Returns {el, value(), error()}. */
export function targetFieldset(ctx, { prefix = "target", pcs: initialPcs = [] } = {}) {
  const id = (s) => `${prefix}-${s}-${++seq}`;
  const allId = id("all"); const gId = id("groups"); const pId = id("pcs"); const dl = id("list");
  const all = h("input", { type: "checkbox", id: allId, name: "all" });
  const groups = h("input", { type: "text", id: gId, name: "groups", placeholder: "e.g. canary, web", list: `${dl}-g`, autocomplete: "off" });
  const pcs = h("input", { type: "text", id: pId, name: "pcs", placeholder: "e.g. local-1, local-2", list: `${dl}-p`, autocomplete: "off", value: initialPcs.join(", ") || null });
  const gList = h("datalist", { id: `${dl}-g` });
  const pList = h("datalist", { id: `${dl}-p` });
  all.addEventListener("change", () => { groups.disabled = all.checked; pcs.disabled = all.checked; });
  // Suggestions from the fleet (best effort).
  ctx.api.get("/api/agents").then((d) => {
    const gs = [...new Set(d.items.flatMap((a) => a.groups || []))].sort();
    gList.replaceChildren(...gs.map((g) => h("option", { value: g })));
    pList.replaceChildren(...d.items.slice(0, 200).map((a) => h("option", { value: a.pc_id })));
  }).catch(() => {});
  const split = (s) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
  const el = h("fieldset", { class: "target" },
    h("legend", {}, "Target"),
    h("div", { class: "check" }, all, h("label", { for: allId }, "All agents")),
    h("div", { class: "field" }, h("label", { for: gId }, "Groups"), groups, gList),
    h("div", { class: "field" }, h("label", { for: pId }, "PCs"), pcs, pList));
  return {
    el,
    value() {
      if (all.checked) return { all: true };
      const t = {};
      const g = split(groups.value); const p = split(pcs.value);
      if (g.length) t.groups = g;
      if (p.length) t.pcs = p;
      return t;
    },
    error() {
      const v = this.value();
      return v.all || v.groups || v.pcs ? null : "Choose a target: all agents, groups or PCs.";
    },
  };
}

/** A text input with its label. */
export function field(label, input, hint) {
  if (!input.id) input.id = `f-${++seq}`;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input,
    hint ? h("small", { class: "muted" }, hint) : null);
}

/** Render an API error (with per-field errors) into `out`. */
export function showError(out, err) {
  const items = err.body?.errors;
  out.replaceChildren(h("p", { class: "notice notice-error", role: "alert" }, err.message,
    items?.length ? h("ul", {}, items.map((e) => h("li", {}, h("code", {}, e.path), `: ${e.reason}`))) : null));
}

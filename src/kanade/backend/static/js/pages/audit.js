// Audit log (GET /api/audit), newest first, filter by actor and action.
import { fullTime, h, mountInto, notice, table, time } from "../dom.js";

const PAGE = 50;

export default {
  title: "Audit",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/audit")) {
      mountInto(root, h("h1", {}, "Audit log"), notice("na", "Not available: this backend has no audit API yet."));
      return {};
    }
    const actor = h("input", { id: "audit-actor", type: "search", placeholder: "e.g. alice" });
    const action = h("input", { id: "audit-action", type: "search", placeholder: "e.g. exec" });
    const slot = h("div", { class: "slot" });
    const pager = h("div", { class: "pager" });
    let offset = 0;
    mountInto(root, h("h1", {}, "Audit log"),
      h("form", { class: "filters", role: "search", "aria-label": "Filter audit log", onsubmit: (e) => { e.preventDefault(); offset = 0; load(); } },
        h("div", { class: "field" }, h("label", { for: "audit-actor" }, "Actor"), actor),
        h("div", { class: "field" }, h("label", { for: "audit-action" }, "Action"), action),
        h("button", { type: "submit", class: "btn-ghost" }, "Filter")),
      slot, pager);
    async function load() {
      const p = new URLSearchParams({ limit: PAGE, offset });
      if (actor.value.trim()) p.set("actor", actor.value.trim());
      if (action.value.trim()) p.set("action", action.value.trim());
      try {
        const page = await ctx.api.get(`/api/audit?${p}`);
        mountInto(slot, table({
          label: "Audit log",
          columns: [{ label: "When" }, { label: "Actor" }, { label: "Action" }, { label: "Details" }],
          rows: page.items, empty: "No audit entries match.",
          row: (e) => h("tr", {},
            h("td", { title: fullTime(e.at) }, time(e.at)),
            h("td", {}, e.actor),
            h("td", { class: "mono" }, e.action),
            h("td", { class: "details" }, details(e.details))),
        }));
        mountInto(pager,
          h("button", { type: "button", class: "btn-ghost", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "← Newer"),
          h("span", { class: "muted small" }, page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : ""),
          h("button", { type: "button", class: "btn-ghost", disabled: offset + PAGE >= page.total, onclick: () => { offset += PAGE; load(); } }, "Older →"));
        root.dataset.ready = "true";
      } catch (err) { mountInto(slot, ctx.errorView(err)); }
    }
    const refresh = ctx.refresher(load, 2000);
    await load();
    return {
      // Audited actions mostly come with an exec or a change; a throttled refetch is cheap.
      onEvent(ev) { if (offset === 0 && ["execs", "audit", "resync"].includes(ev.topic)) refresh(); },
      refresh,
    };
  },
};

function details(d) {
  if (!d || typeof d !== "object") return String(d ?? "");
  const entries = Object.entries(d).filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length));
  return h("span", { class: "kv" }, entries.map(([k, v]) => h("span", {},
    h("span", { class: "muted" }, `${k}=`), h("code", {}, typeof v === "object" ? JSON.stringify(v) : String(v)), " ")));
}

// Audit log (GET /api/audit), newest first, filter by actor and action (one name per verb,
// from GET /api/audit/actions, or a whole area: "job."). On a phone each entry is a card.
// An exec.create entry opens the script it sent (operators: GET /api/executions/{id}/script).
import { fullTime, h, mountInto, notice, table, time } from "../dom.js";
import { canReadScripts, scriptPanel } from "../script.js";

const PAGE = 50;

export default {
  title: "Audit",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/audit")) {
      mountInto(root, h("h1", {}, "Audit log"), notice("na", "Not available: this backend has no audit API yet."));
      return {};
    }
    const f = { actor: ctx.query.get("actor") || "", action: ctx.query.get("action") || "" };
    const actor = h("input", { id: "audit-actor", type: "search", placeholder: "e.g. alice", value: f.actor });
    const action = h("select", { id: "audit-action" }, h("option", { value: "" }, "any"));
    const slot = h("div", { class: "slot" });
    const pager = h("div", { class: "pager" });
    let offset = 0;
    mountInto(root, h("h1", {}, "Audit log"),
      h("form", { class: "filters", role: "search", "aria-label": "Filter audit log", onsubmit: (e) => { e.preventDefault(); apply(); } },
        h("div", { class: "field" }, h("label", { for: "audit-actor" }, "Actor"), actor),
        h("div", { class: "field" }, h("label", { for: "audit-action" }, "Action"), action),
        h("button", { type: "submit", class: "btn-ghost" }, "Filter")),
      slot, pager);
    action.addEventListener("change", apply);
    await fillActions(ctx, action, f.action);

    function apply() {
      f.actor = actor.value.trim(); f.action = action.value; offset = 0;
      const p = new URLSearchParams();
      if (f.actor) p.set("actor", f.actor);
      if (f.action) p.set("action", f.action);
      history.replaceState(null, "", `#/audit${p.toString() ? `?${p}` : ""}`);
      load();
    }

    // Scripts being read stay open when a live refresh draws the list again.
    const open = new Set();
    function script(execId) {
      const panel = scriptPanel(ctx, execId, { label: "Script it sent", open: open.has(execId) });
      panel.addEventListener("toggle", () => { if (panel.open) open.add(execId); else open.delete(execId); });
      return panel;
    }

    let seq = 0; // a slower answer to an older filter must not overwrite a newer one
    async function load() {
      const mine = ++seq;
      const p = new URLSearchParams({ limit: PAGE, offset });
      if (f.actor) p.set("actor", f.actor);
      if (f.action) p.set("action", f.action);
      try {
        const page = await ctx.api.get(`/api/audit?${p}`);
        if (mine !== seq) return;
        mountInto(slot, table({
          label: "Audit log",
          stack: true,
          columns: [{ label: "When" }, { label: "Actor" }, { label: "Action" }, { label: "Details" }],
          rows: page.items, empty: "No audit entries match.",
          row: (e) => h("tr", { dataset: { seq: e.seq, action: e.action } },
            h("td", { title: fullTime(e.at), class: "when" }, time(e.at)),
            h("td", {}, e.actor),
            h("td", { class: "mono nowrap" }, e.action),
            h("td", { class: "details" }, details(e.details),
              e.action === "exec.create" && e.details?.exec_id && canReadScripts(ctx)
                ? script(e.details.exec_id) : null)),
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

/** The action names (grouped by area, each area also as a whole), from the one table. */
async function fillActions(ctx, select, selected) {
  let items = [];
  if (ctx.has("GET /api/audit/actions")) {
    try { items = (await ctx.api.get("/api/audit/actions")).items; } catch { items = []; }
  }
  const areas = new Map();
  for (const a of items) {
    const area = a.action.split(".")[0];
    if (!areas.has(area)) areas.set(area, []);
    areas.get(area).push(a);
  }
  for (const [area, list] of areas) {
    select.append(h("optgroup", { label: area },
      h("option", { value: `${area}.` }, `${area}.* (all)`),
      list.map((a) => h("option", { value: a.action, title: a.description }, a.action))));
  }
  if (selected && ![...select.options].some((o) => o.value === selected)) {
    select.append(h("option", { value: selected }, selected));
  }
  select.value = selected;
}

function details(d) {
  if (!d || typeof d !== "object") return String(d ?? "");
  const entries = Object.entries(d).filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length));
  return h("span", { class: "kv" }, entries.map(([k, v]) => h("span", { class: "kv-item" },
    h("span", { class: "muted" }, `${k}=`), h("code", {}, typeof v === "object" ? JSON.stringify(v) : String(v)), " ")));
}

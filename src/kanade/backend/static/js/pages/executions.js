// Executions: newest first, filter by job and status, paged; live via SSE.
import { h, mountInto } from "../dom.js";
import { execTable } from "./overview.js";

const STATUSES = ["awaiting_approval", "pending", "running", "completed", "expired", "cancelled", "rejected"];
const PAGE = 50;

export default {
  title: "Executions",
  async mount(root, _params, ctx) {
    const f = { job_id: ctx.query.get("job_id") || "", status: ctx.query.get("status") || "", offset: Number(ctx.query.get("offset") || 0) };
    const job = h("input", { id: "exec-job", type: "search", placeholder: "job id", value: f.job_id });
    const status = h("select", { id: "exec-status" }, h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s }, s.replace("_", " "))));
    status.value = f.status;
    const slot = h("div", { class: "slot" });
    const pager = h("div", { class: "pager" });
    mountInto(root, h("h1", {}, "Executions"),
      h("form", { class: "filters", role: "search", "aria-label": "Filter executions", onsubmit: (e) => { e.preventDefault(); apply(); } },
        h("div", { class: "field" }, h("label", { for: "exec-job" }, "Job"), job),
        h("div", { class: "field" }, h("label", { for: "exec-status" }, "Status"), status),
        h("button", { type: "submit", class: "btn-ghost" }, "Filter")),
      slot, pager);
    status.addEventListener("change", apply);
    function apply() {
      f.job_id = job.value.trim(); f.status = status.value; f.offset = 0;
      const p = new URLSearchParams();
      if (f.job_id) p.set("job_id", f.job_id);
      if (f.status) p.set("status", f.status);
      history.replaceState(null, "", `#/executions${p.toString() ? `?${p}` : ""}`);
      load();
    }
    async function load() {
      const p = new URLSearchParams({ limit: PAGE, offset: f.offset });
      if (f.job_id) p.set("job_id", f.job_id);
      if (f.status) p.set("status", f.status);
      try {
        const page = await ctx.api.get(`/api/executions?${p}`);
        mountInto(slot, execTable(page.items, "Executions"));
        mountInto(pager,
          h("button", { type: "button", class: "btn-ghost", disabled: f.offset === 0, onclick: () => { f.offset = Math.max(0, f.offset - PAGE); load(); } }, "← Newer"),
          h("span", { class: "muted small" }, page.total ? `${f.offset + 1}–${f.offset + page.items.length} of ${page.total}` : ""),
          h("button", { type: "button", class: "btn-ghost", disabled: f.offset + PAGE >= page.total, onclick: () => { f.offset += PAGE; load(); } }, "Older →"));
        root.dataset.ready = "true";
      } catch (err) { mountInto(slot, ctx.errorView(err)); }
    }
    const refresh = ctx.refresher(load, 500);
    await load();
    return {
      onEvent(ev) { if (["execs", "results", "resync"].includes(ev.topic)) refresh(); },
      refresh,
    };
  },
};

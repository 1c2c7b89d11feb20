// Rollouts (GET /api/rollouts): newest first, filter by status, each with a strip of its
// waves; live (a wave going out or settling publishes "rollouts", results publish "results").
import { h, mountInto, notice, pill, shortId, table, time } from "../dom.js";
import { waveStrip } from "../charts.js";

export const ROLLOUT_STATUSES = ["awaiting_approval", "running", "halted", "aborted", "completed", "rejected"];
const PAGE = 50;

export default {
  title: "Rollouts",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/rollouts")) {
      mountInto(root, h("h1", {}, "Rollouts"), notice("na", "Not available: this backend has no rollouts API yet."));
      return {};
    }
    const f = { status: ctx.query.get("status") || "", offset: 0 };
    const status = h("select", { id: "rollout-status" }, h("option", { value: "" }, "any"),
      ROLLOUT_STATUSES.map((s) => h("option", { value: s }, s.replace("_", " "))));
    status.value = f.status;
    const slot = h("div", { class: "slot" });
    const pager = h("div", { class: "pager" });
    mountInto(root, h("h1", {}, "Rollouts"),
      h("p", { class: "muted small" }, "An execution sent in waves (",
        h("code", {}, "kanade exec JOB --wave …"), " or a schedule with ", h("code", {}, "rollout"),
        "). A wave whose failure rate exceeds the threshold halts the rollout until an operator resumes or aborts it."),
      h("form", { class: "filters", role: "search", "aria-label": "Filter rollouts", onsubmit: (e) => e.preventDefault() },
        h("div", { class: "field" }, h("label", { for: "rollout-status" }, "Status"), status)),
      slot, pager);
    status.addEventListener("change", () => {
      f.status = status.value; f.offset = 0;
      history.replaceState(null, "", `#/rollouts${f.status ? `?status=${f.status}` : ""}`);
      refresh();
    });
    let shown = new Set();

    async function load() {
      const p = new URLSearchParams({ limit: PAGE, offset: f.offset });
      if (f.status) p.set("status", f.status);
      const page = await ctx.api.get(`/api/rollouts?${p}`);
      shown = new Set(page.items.map((r) => r.rollout_id));
      mountInto(slot, rolloutTable(page.items, "Rollouts", page.total || f.status
        ? "No rollout matches this filter." : "No rollouts yet."));
      mountInto(pager,
        h("button", { type: "button", class: "btn-ghost", disabled: f.offset === 0, onclick: () => { f.offset = Math.max(0, f.offset - PAGE); refresh(); } }, "← Newer"),
        h("span", { class: "muted small" }, page.total ? `${f.offset + 1}–${f.offset + page.items.length} of ${page.total}` : ""),
        h("button", { type: "button", class: "btn-ghost", disabled: f.offset + PAGE >= page.total, onclick: () => { f.offset += PAGE; refresh(); } }, "Older →"));
      root.dataset.ready = "true";
    }
    const refresh = ctx.refresher(() => load().catch((e) => mountInto(slot, ctx.errorView(e))), 500);
    await load();
    return {
      onEvent(ev) {
        if (ev.topic === "rollouts" || ev.topic === "resync") refresh();
        // A new exec may be a new rollout; results move the waves of the ones shown.
        if (ev.topic === "execs" && f.offset === 0) refresh();
        if (ev.topic === "results" && (!Array.isArray(ev.exec_ids) || ev.exec_ids.some((id) => shown.has(id)))) refresh();
      },
      refresh,
    };
  },
};

export function rolloutTable(items, label, empty = "No rollouts yet.") {
  return table({
    label,
    columns: [
      { label: "Rollout" }, { label: "Job" }, { label: "Status" }, { label: "Waves", cls: "col-progress" },
      { label: "Sent", cls: "hide-sm" }, { label: "Created" }, { label: "By", cls: "hide-sm" },
    ],
    rows: items,
    empty,
    row: (r) => h("tr", { dataset: { rolloutId: r.rollout_id, status: r.status } },
      h("td", {}, h("a", { href: `#/rollouts/${encodeURIComponent(r.rollout_id)}`, class: "mono", title: r.rollout_id }, shortId(r.rollout_id))),
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(r.job_id)}` }, r.job_id), h("span", { class: "muted small" }, ` v${r.version}`)),
      h("td", {}, pill(r.status)),
      h("td", { class: "col-progress" }, waveStrip(r.waves || [], { label: `Waves of ${r.rollout_id}` }),
        h("span", { class: "small muted", title: "waves settled" }, ` ${(r.waves || []).filter((w) => w.state === "settled").length}/${r.wave_count}`)),
      h("td", { class: "hide-sm" }, `${r.sent_pcs}/${r.total_pcs} pcs`),
      h("td", {}, time(r.created_at)),
      h("td", { class: "hide-sm" }, r.created_by)),
  });
}

// Overview: fleet health, results of the last 24 h, recent executions,
// failing checks and upcoming fires (when the backend has those routes).
import { ago, fullTime, h, mountInto, notice, pill, section, shortId, table, time } from "../dom.js";
import { donut, legend, progressBar, stackedBars } from "../charts.js";

export default {
  title: "Overview",
  async mount(root, _params, ctx) {
    const health = h("div", { class: "slot", "aria-live": "polite" });
    const chart = h("div", { class: "slot" });
    const recent = h("div", { class: "slot" });
    const checks = h("div", { class: "slot" });
    const fires = h("div", { class: "slot" });
    const banner = h("div", { class: "slot", id: "freeze-banner" });
    mountInto(root,
      h("h1", {}, "Overview"),
      banner,
      h("div", { class: "grid grid-2" },
        section("Fleet health", health),
        section("Results, last 24 hours", chart)),
      section("Recent executions", recent),
      h("div", { class: "grid grid-2" },
        section("Failing checks", checks),
        section("Upcoming fires", fires)));

    async function loadSummary() {
      const s = await ctx.api.get("/api/dashboard/summary");
      const a = s.agents;
      const segs = [
        { key: "alive", label: "alive", value: a.alive },
        { key: "stale", label: "stale", value: a.stale },
        { key: "offline", label: "offline", value: a.offline },
      ];
      mountInto(health, h("div", { class: "donut-row" },
        donut(segs, { label: "Fleet health" }),
        h("div", {},
          legend(segs, { onPick: (sg) => `#/agents?status=${sg.key}` }),
          a.total ? null : notice("info", "No agent has sent a heartbeat yet."))));
      const keys = [
        { key: "ok", label: "ok" }, { key: "failed", label: "failed" },
        { key: "skipped", label: "skipped" }, { key: "running", label: "running" },
      ];
      const buckets = s.results_by_hour.map((b) => {
        const d = new Date(b.hour);
        return {
          label: `${String(d.getHours()).padStart(2, "0")}:00`,
          tip: d.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" }),
          values: b,
        };
      });
      const ex = s.executions_24h;
      mountInto(chart,
        stackedBars(buckets, keys, { label: "Results per hour, last 24 hours" }),
        legend(keys.map((k) => ({ ...k, value: s.results_by_hour.reduce((x, b) => x + b[k.key], 0) }))),
        h("p", { class: "muted small" },
          `${ex.total} executions in the last 24 h`,
          ex.with_failures ? `, ${ex.with_failures} with failures` : ""));
      root.dataset.loaded = "summary";
    }

    async function loadRecent() {
      const page = await ctx.api.get("/api/executions?limit=8");
      mountInto(recent, execTable(page.items, "Recent executions"),
        h("p", {}, h("a", { href: "#/executions" }, "All executions →")));
    }

    async function loadChecks() {
      if (!ctx.has("GET /api/checks")) {
        mountInto(checks, notice("na", "Not available: this backend has no checks API yet."));
        return;
      }
      try {
        const [fail, warn] = await Promise.all(["fail", "warn"].map((st) => ctx.api.get(`/api/checks?status=${st}&limit=20`)));
        const items = [...fail.items, ...warn.items];
        const more = fail.total + warn.total - items.length;
        mountInto(checks, table({
          label: "Failing checks",
          columns: [{ label: "PC" }, { label: "Check" }, { label: "Status" }, { label: "Detail", cls: "hide-sm" }, { label: "Observed" }],
          rows: items,
          empty: "No check reports fail or warn.",
          row: (c) => h("tr", {},
            h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(c.pc_id)}` }, c.pc_id)),
            h("td", {}, c.result_id ? h("a", { href: `#/results/${encodeURIComponent(c.result_id)}` }, c.name) : c.name),
            h("td", {}, pill(c.status === "fail" ? "failed" : "skipped", c.status)),
            h("td", { class: "hide-sm" }, c.detail || ""),
            h("td", {}, time(c.observed_at || c.recorded_at))),
        }), more > 0 ? h("p", { class: "muted small" }, `and ${more} more`) : null);
      } catch (err) { mountInto(checks, ctx.errorView(err)); }
    }

    async function loadFires() {
      if (!ctx.has("GET /api/schedules")) {
        mountInto(fires, notice("na", "Not available: this backend has no schedules API yet."));
        return;
      }
      try {
        const data = await ctx.api.get("/api/schedules");
        const items = (data.items || data)
          .filter((s) => s.next_fire || s.next_fire_at || s.status?.next_fire)
          .map((s) => ({ ...s, next: s.next_fire || s.next_fire_at || s.status?.next_fire }))
          .sort((x, y) => new Date(x.next) - new Date(y.next));
        mountInto(fires, table({
          label: "Upcoming fires",
          columns: [{ label: "Schedule" }, { label: "Job" }, { label: "Next fire" }],
          rows: items.slice(0, 10),
          empty: "No schedule is due to fire.",
          row: (s) => h("tr", {},
            h("td", {}, s.id), h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(s.job_id)}` }, s.job_id)),
            h("td", {}, time(s.next))),
        }));
      } catch (err) { mountInto(fires, ctx.errorView(err)); }
    }

    async function loadFreeze() {
      if (!ctx.has("GET /api/freeze")) return;
      try {
        const f = await ctx.api.get("/api/freeze");
        const fr = f.freeze;
        const who = fr ? [fr.by && `by ${fr.by}`, fr.until && `until ${fullTime(fr.until)}`, fr.reason && `— ${fr.reason}`].filter(Boolean).join(" ") : "";
        mountInto(banner,
          f.frozen ? notice("warn", `Fleet frozen: scheduled fires are held ${who}`.trim())
            : fr?.from && new Date(fr.from) > Date.now()
              ? notice("info", `A fleet freeze is scheduled from ${fullTime(fr.from)} ${who}`.trim()) : null);
      } catch (err) { mountInto(banner, ctx.errorView(err)); }
    }

    const guard = (slot, fn) => () => fn().catch((err) => mountInto(slot, ctx.errorView(err)));
    const refreshSummary = ctx.refresher(guard(health, loadSummary), 1000);
    const refreshRecent = ctx.refresher(guard(recent, loadRecent), 500);
    const refreshChecks = ctx.refresher(loadChecks, 2000);
    await Promise.all([loadSummary().catch((e) => mountInto(health, ctx.errorView(e))),
      loadRecent().catch((e) => mountInto(recent, ctx.errorView(e))), loadChecks(), loadFires(), loadFreeze()]);
    root.dataset.ready = "true";
    return {
      onEvent(ev) {
        if (["results", "execs", "agents", "resync"].includes(ev.topic)) refreshSummary();
        if (["results", "execs", "resync"].includes(ev.topic)) refreshRecent();
        if (["checks", "results", "resync"].includes(ev.topic)) refreshChecks();
      },
      refresh() { refreshSummary(); refreshRecent(); refreshChecks(); loadFires(); loadFreeze(); },
    };
  },
};

/** Executions table, shared with the executions list and the job page. */
export function execTable(items, label) {
  return table({
    label,
    columns: [
      { label: "Execution" }, { label: "Job" }, { label: "Status" }, { label: "Progress", cls: "col-progress" },
      { label: "Failed", cls: "hide-sm" }, { label: "Created" }, { label: "By", cls: "hide-sm" },
    ],
    rows: items,
    empty: "No executions yet.",
    row: (e) => {
      const ok = Math.max(0, e.finished_count - e.failed_count - e.skipped_count);
      const running = Math.max(0, e.started_count - e.finished_count);
      return h("tr", { dataset: { execId: e.exec_id, status: e.status } },
        h("td", {}, h("a", { href: `#/executions/${encodeURIComponent(e.exec_id)}`, class: "mono", title: e.exec_id }, shortId(e.exec_id))),
        h("td", {}, e.kind === "adhoc" ? h("span", { class: "muted" }, "ad-hoc script") : e.job_id),
        h("td", {}, pill(e.status)),
        h("td", { class: "col-progress" },
          progressBar([
            { key: "ok", label: "ok", value: ok },
            { key: "failed", label: "failed", value: e.failed_count },
            { key: "skipped", label: "skipped", value: e.skipped_count },
            { key: "running", label: "running", value: running },
          ], e.expected_count, { label: `Progress of ${e.exec_id}` }),
          h("span", { class: "small muted" }, ` ${e.finished_count}/${e.expected_count}`)),
        h("td", { class: "hide-sm" }, e.failed_count ? h("strong", { class: "txt-failed" }, e.failed_count) : "0"),
        h("td", { title: e.created_at }, ago(e.created_at)),
        h("td", { class: "hide-sm" }, e.initiated_by));
    },
  });
}

// Overview: fleet health, results of the last 24 h, recent executions,
// failing checks and upcoming fires (when the backend has those routes).
import { ago, fullTime, h, mountInto, notice, pill, section, shortId, table, time, zonedTime } from "../dom.js";
import { donut, legend, progressBar, stackedBars } from "../charts.js";
import { freezePanel } from "../freeze.js";
import { whenText } from "./schedules.js";

export default {
  title: "Overview",
  async mount(root, _params, ctx) {
    const health = h("div", { class: "slot", "aria-live": "polite" });
    const chart = h("div", { class: "slot" });
    const recent = h("div", { class: "slot" });
    const checks = h("div", { class: "slot" });
    const fires = h("div", { class: "slot" });
    const freeze = freezePanel(ctx);
    const waiting = h("div", { class: "slot", id: "approvals-banner" });
    mountInto(root,
      h("h1", {}, "Overview"),
      freeze.el, waiting,
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
        const all = data.items || [];
        const items = all.filter((s) => s.enabled && s.status?.next_fire)
          .sort((x, y) => new Date(x.status.next_fire) - new Date(y.status.next_fire));
        const frozen = all.some((s) => s.status?.frozen);
        mountInto(fires, table({
          label: "Upcoming fires",
          columns: [{ label: "Schedule" }, { label: "Job", cls: "hide-sm" }, { label: "Next fire" }],
          rows: items.slice(0, 8),
          empty: all.length ? (frozen ? "The fleet is frozen: no schedule fires until the freeze ends." : "No enabled schedule is due to fire.")
            : "No schedules yet.",
          row: (s) => h("tr", { dataset: { scheduleId: s.id } },
            h("td", {}, h("a", { href: `#/schedules/${encodeURIComponent(s.id)}` }, s.id),
              h("div", { class: "muted small" }, whenText(s.when))),
            h("td", { class: "hide-sm" }, h("a", { href: `#/jobs/${encodeURIComponent(s.job_id)}` }, s.job_id)),
            h("td", {}, zonedTime(s.status.next_fire_local, s.status.next_fire, s.status.tz))),
        }), h("p", {}, h("a", { href: "#/schedules" }, `All ${all.length} schedules →`)));
        nextFire = items.length ? new Date(items[0].status.next_fire).getTime() : null;
        armFires();
      } catch (err) { mountInto(fires, ctx.errorView(err)); }
    }

    // A fire (or a skip) changes "next fire": refetch just after the earliest one.
    let nextFire = null; let firesTimer = null;
    function armFires() {
      clearTimeout(firesTimer);
      if (nextFire) firesTimer = setTimeout(() => refreshFires(), Math.min(Math.max(1500, nextFire - Date.now() + 1500), 30 * 60_000));
    }

    async function loadApprovals() {
      if (!ctx.has("GET /api/approvals")) return;
      try {
        const page = await ctx.api.get("/api/approvals?state=pending&limit=1");
        mountInto(waiting, page.total ? h("p", { class: "notice notice-warn", role: "status" },
          h("strong", {}, `${page.total} execution${page.total === 1 ? "" : "s"} waiting for approval. `),
          h("a", { href: "#/approvals" }, "Review →")) : null);
      } catch (err) { mountInto(waiting, ctx.errorView(err)); }
    }

    const guard = (slot, fn) => () => fn().catch((err) => mountInto(slot, ctx.errorView(err)));
    const refreshSummary = ctx.refresher(guard(health, loadSummary), 1000);
    const refreshRecent = ctx.refresher(guard(recent, loadRecent), 500);
    const refreshChecks = ctx.refresher(loadChecks, 2000);
    const refreshFires = ctx.refresher(loadFires, 2000);
    const refreshApprovals = ctx.refresher(loadApprovals, 1000);
    await Promise.all([loadSummary().catch((e) => mountInto(health, ctx.errorView(e))),
      loadRecent().catch((e) => mountInto(recent, ctx.errorView(e))), loadChecks(), loadFires(), freeze.load(), loadApprovals()]);
    root.dataset.ready = "true";
    return {
      onEvent(ev) {
        if (["results", "execs", "agents", "resync"].includes(ev.topic)) refreshSummary();
        if (["results", "execs", "resync"].includes(ev.topic)) refreshRecent();
        if (["checks", "results", "resync"].includes(ev.topic)) refreshChecks();
        if (["execs", "schedules", "resync"].includes(ev.topic)) { refreshFires(); refreshApprovals(); }
        if (ev.topic === "resync") freeze.load();
      },
      refresh() { refreshSummary(); refreshRecent(); refreshChecks(); refreshFires(); refreshApprovals(); freeze.load(); },
      dispose() { clearTimeout(firesTimer); },
    };
  },
};

// Statuses an exec leaves by itself at its deadline (SPEC §4.3).
const ENDS_BY_ITSELF = new Set(["pending", "running", "expired"]);

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
        h("td", {}, pill(e.status), ENDS_BY_ITSELF.has(e.status) && e.deadline_at
          ? h("span", { class: "small muted exec-ends", title: `by ${fullTime(e.deadline_at)}, PCs that never started are closed as no result and the execution ends` }, ` ends ${ago(e.deadline_at)}`)
          : null),
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

// Schedules (GET /api/schedules): every schedule with its next fire (in its zone and UTC),
// last fire and fired / skipped / missed counters; the fleet freeze; schedule-set drift per
// agent (GET /api/agents/drift).
import { h, mountInto, notice, pill, section, shortId, table, time, zonedTime } from "../dom.js";
import { freezePanel } from "../freeze.js";
import { targetText } from "./execution.js";

const DRIFT_ROWS = 15;

export default {
  title: "Schedules",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/schedules")) {
      mountInto(root, h("h1", {}, "Schedules"), notice("na", "Not available: this backend has no schedules API yet."));
      return {};
    }
    const filter = h("select", { id: "sched-filter" },
      h("option", { value: "" }, "all"), h("option", { value: "enabled" }, "enabled"),
      h("option", { value: "disabled" }, "disabled"));
    filter.value = ctx.query.get("show") || "";
    const count = h("p", { class: "muted", id: "schedules-count", "aria-live": "polite" });
    const slot = h("div", { class: "slot" });
    const drift = h("div", { class: "slot" });
    const freeze = freezePanel(ctx, { form: true, onChange: () => refresh() });
    mountInto(root,
      h("h1", {}, "Schedules"),
      h("form", { class: "filters", role: "search", "aria-label": "Filter schedules", onsubmit: (e) => e.preventDefault() },
        h("div", { class: "field" }, h("label", { for: "sched-filter" }, "Show"), filter)),
      count, h("div", { class: "card" }, slot),
      h("div", { class: "grid grid-2" },
        section("Fleet freeze", freeze.el),
        section("Agent schedule sets", drift)));
    let items = [];
    filter.addEventListener("change", () => {
      history.replaceState(null, "", `#/schedules${filter.value ? `?show=${filter.value}` : ""}`);
      draw();
    });

    function draw() {
      const rows = items.filter((s) => !filter.value || (filter.value === "enabled") === s.enabled);
      count.textContent = `${rows.length} of ${items.length} schedules`;
      mountInto(slot, scheduleTable(rows, items.length
        ? "No schedule matches this filter."
        : "No schedules yet. Create one with `kanade schedule create FILE`."));
    }

    async function load() {
      const data = await ctx.api.get("/api/schedules");
      items = data.items || [];
      draw();
      armTimer();
      root.dataset.ready = "true";
    }

    async function loadDrift() {
      if (!ctx.has("GET /api/agents/drift")) {
        mountInto(drift, notice("na", "Not available: this backend does not report schedule-set drift."));
        return;
      }
      try {
        const d = await ctx.api.get("/api/agents/drift");
        const rows = [...d.items].sort((a, b) => Number(b.drift) - Number(a.drift) || a.pc_id.localeCompare(b.pc_id));
        mountInto(drift,
          h("p", { class: "small muted" }, d.drifted
            ? h("strong", { class: "txt-failed" }, `${d.drifted} of ${d.total} agents have not applied their schedule set yet.`)
            : `All ${d.total} agents run the schedule set they should (runs_on: agent schedules).`),
          driftTable(rows.slice(0, DRIFT_ROWS), "Schedule-set drift"),
          rows.length > DRIFT_ROWS ? h("p", { class: "muted small" }, `Drifted agents first; ${DRIFT_ROWS} of ${rows.length} shown (an agent's page shows its own).`) : null);
      } catch (err) { mountInto(drift, ctx.errorView(err)); }
    }

    // A fire produces an exec (an "execs" event); a skip or a miss does not, so the list is
    // also refetched just after its earliest next fire.
    let timer = null;
    function armTimer() {
      clearTimeout(timer);
      const next = items.filter((s) => s.enabled && s.status?.next_fire)
        .map((s) => new Date(s.status.next_fire).getTime()).sort((a, b) => a - b)[0];
      if (!next) return;
      const wait = Math.min(Math.max(1500, next - Date.now() + 1500), 30 * 60_000);
      timer = setTimeout(() => refresh(), wait);
    }

    const refresh = ctx.refresher(() => load().catch((e) => mountInto(slot, ctx.errorView(e))), 1000);
    const refreshDrift = ctx.refresher(loadDrift, 3000);
    await Promise.all([load().catch((e) => mountInto(slot, ctx.errorView(e))), freeze.load(), loadDrift()]);
    return {
      onEvent(ev) {
        if (["execs", "schedules", "resync"].includes(ev.topic)) refresh();
        if (["agents", "resync"].includes(ev.topic)) refreshDrift();
        if (ev.topic === "resync") freeze.load();
      },
      refresh() { refresh(); refreshDrift(); freeze.load(); },
      dispose() { clearTimeout(timer); },
    };
  },
};

// "per pc, every 1d", "at 02:30 on mon-fri", "cron 0 3 * * *"
export function whenText(when) {
  const d = whenDetail(when);
  if (when?.per_pc !== undefined && when?.per_pc !== null) return `per pc, ${d}`;
  if (when?.per_target !== undefined && when?.per_target !== null) return `per target, ${d}`;
  if (when?.cron) return `cron ${d}`;
  return d;
}

/** The shape's parameters only ("once", "every 1d", "at 02:30 on mon-fri", "0 3 * * *"). */
export function whenDetail(when) {
  if (!when) return "—";
  const rec = (v) => (v === "once" || v === null || v === undefined ? "once" : v.every ? `every ${v.every}` : JSON.stringify(v));
  if (when.per_pc !== undefined && when.per_pc !== null) return rec(when.per_pc);
  if (when.per_target !== undefined && when.per_target !== null) return rec(when.per_target);
  if (when.calendar) {
    const c = when.calendar;
    const days = c.days?.length ? ` on ${c.days.join(", ")}` : "";
    return `${/\d{4}-/.test(c.at) ? "once at" : "at"} ${c.at}${days}`;
  }
  if (when.cron) return when.cron;
  return JSON.stringify(when);
}

export function scheduleTable(items, empty) {
  return table({
    label: "Schedules",
    columns: [
      { label: "Schedule" }, { label: "Job" }, { label: "When", cls: "hide-sm" }, { label: "Runs on", cls: "hide-sm" },
      { label: "Target", cls: "hide-sm" }, { label: "State" }, { label: "Next fire" }, { label: "Last fire", cls: "hide-sm" },
      { label: "Fired / skipped / missed", cls: "hide-sm" },
    ],
    rows: items,
    empty,
    row: (s) => {
      const st = s.status || {};
      return h("tr", { dataset: { scheduleId: s.id, enabled: String(s.enabled) } },
        h("td", {}, h("a", { href: `#/schedules/${encodeURIComponent(s.id)}` }, s.id)),
        h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(s.job_id)}` }, s.job_id)),
        h("td", { class: "hide-sm when" }, h("span", { class: "tag" }, (st.shape || "").replace("_", " ")), " ",
          h("span", { class: s.when?.cron ? "mono" : null }, whenDetail(s.when))),
        h("td", { class: "hide-sm" }, s.runs_on),
        h("td", { class: "hide-sm small" }, targetText(s.target)),
        h("td", {}, s.enabled ? pill("ok", "enabled") : pill("pending", "disabled"), st.frozen && s.enabled ? [" ", pill("skipped", "frozen")] : null),
        h("td", { class: "next-fire" }, s.enabled ? zonedTime(st.next_fire_local, st.next_fire, st.tz) : h("span", { class: "muted" }, "—")),
        h("td", { class: "hide-sm" }, st.last_fire ? h("span", {}, time(st.last_fire),
          st.last_exec_id ? [" ", h("a", { class: "mono small", href: `#/executions/${encodeURIComponent(st.last_exec_id)}`, title: st.last_exec_id }, shortId(st.last_exec_id))] : null)
          : h("span", { class: "muted" }, "never")),
        h("td", { class: "hide-sm counts" }, counters(st)));
    },
  });
}

export function counters(st) {
  return h("span", { class: "mono" },
    h("span", { class: "txt-ok", title: "fired" }, String(st.fired_count ?? 0)), " / ",
    h("span", { class: st.skipped_count ? "txt-skipped" : "", title: "skipped" }, String(st.skipped_count ?? 0)), " / ",
    h("span", { class: st.missed_count ? "txt-failed" : "", title: "missed" }, String(st.missed_count ?? 0)));
}

/** Per agent: the schedule-set version the backend expects vs the one the agent applied. */
export function driftTable(rows, label) {
  return table({
    label,
    columns: [{ label: "PC" }, { label: "Expected" }, { label: "Applied" }, { label: "State" }, { label: "Schedules", cls: "hide-sm" }],
    rows,
    empty: "No agent has sent a heartbeat yet.",
    row: (a) => h("tr", { class: a.drift ? "drift" : null, dataset: { pcId: a.pc_id, drift: String(a.drift) } },
      h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(a.pc_id)}` }, a.pc_id)),
      h("td", { class: "mono small", title: a.expected_version }, shortVersion(a.expected_version)),
      h("td", { class: "mono small", title: a.applied_version || "" }, a.applied_version ? shortVersion(a.applied_version) : h("span", { class: "muted" }, "none reported")),
      h("td", {}, a.drift ? pill("failed", "drift") : pill("ok", "in sync")),
      h("td", { class: "hide-sm small" }, (a.expected_schedules || []).length
        ? a.expected_schedules.map((id) => h("a", { class: "tag", href: `#/schedules/${encodeURIComponent(id)}` }, id))
        : h("span", { class: "muted" }, "none"))),
  });
}

function shortVersion(v) {
  if (!v) return "—";
  const m = /^(v\d+:)?(.*)$/.exec(v);
  return `${m[1] || ""}${m[2].slice(0, 10)}`;
}

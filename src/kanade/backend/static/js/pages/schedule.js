// Schedule detail: status and document, the preview (next fires in the schedule's zone and
// UTC; per pc with would_fire + reason for reconcile shapes), recent decisions, drift of the
// agents that hold it, and enable / disable (with cascade / cascade-kill) for operators.
import { ApiError } from "../api.js";
import {
  facts, h, mountInto, notice, pill, section, shortId, table, time, wallClock, utcClock, yamlish, zonedTime,
} from "../dom.js";
import { showError } from "../forms.js";
import { targetText } from "./execution.js";
import { counters, driftTable, whenDetail } from "./schedules.js";

const DECISION_KIND = { fired: "ok", skipped: "skipped", missed: "failed", duplicate: "pending" };
const DISABLE_MODES = [
  { value: "soft", label: "Stop firing", hint: "runs in flight continue" },
  { value: "cascade", label: "Stop firing and revoke the job", hint: "every agent skips the job (exit 126), even offline ones" },
  { value: "cascade_kill", label: "Stop firing, revoke the job and kill its in-flight runs", hint: "running scripts of this schedule end with exit -1" },
];

export default {
  title: "Schedule",
  async mount(root, [scheduleId], ctx) {
    const enc = encodeURIComponent(scheduleId);
    const crumbs = h("p", { class: "crumbs" }, h("a", { href: "#/schedules" }, "Schedules"), " / ", scheduleId);
    if (!ctx.has("GET /api/schedules/{schedule_id}")) {
      mountInto(root, crumbs, h("h1", {}, "Schedule ", scheduleId), notice("na", "Not available: this backend has no schedules API yet."));
      return {};
    }
    const state = h("span", { id: "schedule-state" });
    const actions = h("div", { class: "actions" });
    const panel = h("div", { class: "slot", id: "disable-panel" });
    const desc = h("p", { class: "muted" });
    const status = h("div", { class: "slot", "aria-live": "polite" });
    const doc = h("div", { class: "slot" });
    const prev = h("div", { class: "slot" });
    const decisions = h("div", { class: "slot" });
    const drift = h("div", { class: "slot" });
    const out = h("div", { class: "form-out", "aria-live": "polite" });
    let sched;
    try { sched = await ctx.api.get(`/api/schedules/${enc}?decisions=30`); } catch (err) {
      mountInto(root, crumbs, h("h1", {}, "Schedule ", h("span", { class: "mono" }, scheduleId)),
        err instanceof ApiError && err.status === 404 && !err.routeMissing
          ? notice("warn", `No schedule ${scheduleId}.`) : ctx.errorView(err));
      return {};
    }
    mountInto(root, crumbs,
      h("div", { class: "title-row" }, h("h1", {}, "Schedule ", h("span", { class: "mono" }, scheduleId), " ", state), actions),
      desc, panel, out,
      h("div", { class: "grid grid-2" }, section("Status", status), section("Schedule", doc)),
      section("Preview", prev),
      section("Recent decisions", decisions),
      section("Agents holding it", drift));

    function drawHead(s) {
      sched = s;
      const st = s.status || {};
      root.dataset.enabled = String(s.enabled);
      mountInto(state, s.enabled ? pill("ok", "enabled") : pill("pending", "disabled"), st.frozen && s.enabled ? [" ", pill("skipped", "frozen")] : null);
      desc.textContent = s.description || "";
      const { status: _s, decisions: _d, ...document } = s;
      mountInto(doc, h("pre", { class: "code yaml", "aria-label": "Schedule document" }, yamlish(document).trim()));
      mountInto(status, facts([
        ["Job", h("a", { href: `#/jobs/${encodeURIComponent(s.job_id)}` }, s.job_id)],
        ["When", h("span", {}, h("span", { class: "tag" }, (st.shape || "").replace("_", " ")), " ",
          h("span", { class: s.when?.cron ? "mono" : null }, whenDetail(s.when)))],
        ["Target", targetText(s.target)],
        ["Runs on", s.runs_on],
        ["Time zone", st.tz || s.tz],
        ["Next fire", s.enabled ? h("span", { id: "next-fire" }, zonedTime(st.next_fire_local, st.next_fire, st.tz))
          : h("span", { class: "muted", id: "next-fire" }, "— (disabled)")],
        ["Last fire", st.last_fire ? h("span", {}, time(st.last_fire), st.last_nominal ? h("span", { class: "muted small" }, ` (nominal ${utcClock(st.last_nominal)})`) : null,
          st.last_exec_id ? [" · ", h("a", { class: "mono", href: `#/executions/${encodeURIComponent(st.last_exec_id)}` }, shortId(st.last_exec_id))] : null)
          : h("span", { class: "muted" }, "never")],
        ["Fired / skipped / missed", h("span", { id: "schedule-counters" }, counters(st))],
        ...(s.rollout ? [["Rollout", `${s.rollout.waves.length} waves`]] : []),
      ]));
      drawActions(s);
    }

    function drawActions(s) {
      actions.replaceChildren();
      if (!ctx.can("operate")) return;
      if (s.enabled && ctx.has("POST /api/schedules/{schedule_id}/disable")) {
        actions.append(h("button", { type: "button", class: "btn btn-danger", onclick: showDisable }, "Disable…"));
      } else if (!s.enabled && ctx.has("POST /api/schedules/{schedule_id}/enable")) {
        const btn = h("button", {
          type: "button", class: "btn btn-primary",
          onclick: async () => {
            btn.disabled = true; out.replaceChildren();
            try {
              drawHead(await ctx.api.post(`/api/schedules/${enc}/enable`));
              out.replaceChildren(notice("info", "Enabled: it fires from its next occurrence (nothing missed is caught up)."));
              loadPreview(); loadDrift(); armTimer();
            } catch (err) { showError(out, err); btn.disabled = false; }
          },
        }, "Enable");
        actions.append(btn);
      }
    }

    function showDisable() {
      out.replaceChildren();
      const radios = DISABLE_MODES.map((m, i) => {
        const id = `disable-${m.value}`;
        return h("div", { class: "check" },
          h("input", { type: "radio", name: "disable-mode", id, value: m.value, checked: i === 0 }),
          h("label", { for: id }, m.label, h("span", { class: "muted small" }, ` — ${m.hint}`)));
      });
      const confirm = h("button", { type: "submit", class: "btn btn-danger" }, "Confirm disable");
      const form = h("form", {
        class: "card confirm", "aria-label": "Disable schedule",
        onsubmit: async (e) => {
          e.preventDefault();
          const mode = form.querySelector("input[name=disable-mode]:checked")?.value || "soft";
          const q = mode === "cascade" ? "?cascade=true" : mode === "cascade_kill" ? "?cascade_kill=true" : "";
          confirm.disabled = true;
          try {
            const res = await ctx.api.post(`/api/schedules/${enc}/disable${q}`);
            panel.replaceChildren();
            drawHead(res);
            const bits = ["Disabled: nothing fires any more."];
            if (res.revoked) bits.push(`Job ${res.job_id} revoked.`);
            if (res.killed?.length) bits.push(`Killed ${res.killed.length} in-flight execution(s).`);
            out.replaceChildren(notice("info", bits.join(" ")));
            loadPreview(); loadDrift(); armTimer();
          } catch (err) { showError(out, err); confirm.disabled = false; }
        },
      },
      h("h2", {}, `Disable ${scheduleId}?`),
      h("fieldset", { class: "target" }, h("legend", {}, "How"), radios),
      h("div", { class: "actions" }, confirm,
        h("button", { type: "button", class: "btn-ghost", onclick: () => panel.replaceChildren() }, "Cancel")));
      mountInto(panel, form);
      form.querySelector("input").focus();
    }

    async function load() {
      drawHead(await ctx.api.get(`/api/schedules/${enc}?decisions=30`));
      drawDecisions();
      armTimer();
    }

    function drawDecisions() {
      mountInto(decisions, table({
        label: "Recent decisions",
        columns: [{ label: "Nominal time" }, { label: "Decision" }, { label: "Reason" }, { label: "Execution" }, { label: "PC(s)", cls: "hide-sm" }, { label: "Late by", cls: "hide-sm" }],
        rows: sched.decisions || [],
        empty: "No decision yet: it has not come due since it was created or enabled.",
        row: (d) => h("tr", { dataset: { result: d.result } },
          h("td", { title: d.decided_at ? `decided ${d.decided_at}` : null }, d.nominal_time ? utcClock(d.nominal_time) : "—",
            h("span", { class: "muted small" }, " · ", time(d.decided_at))),
          h("td", {}, pill(DECISION_KIND[d.result] || "pending", d.result)),
          h("td", { class: "details" }, [d.reason, d.detail].filter(Boolean).join(": ") || h("span", { class: "muted" }, "—")),
          h("td", {}, d.exec_id ? h("a", { class: "mono", href: `#/executions/${encodeURIComponent(d.exec_id)}`, title: d.exec_id }, shortId(d.exec_id)) : "—"),
          // An agent's local scheduler decided it (runs_on: agent): which agent.
          h("td", { class: "hide-sm" }, d.pc_id
            ? h("a", { class: "mono", href: `#/agents/${encodeURIComponent(d.pc_id)}` }, d.pc_id)
            : d.pcs ?? "—"),
          h("td", { class: "hide-sm" }, d.lateness_s === null || d.lateness_s === undefined ? "—" : `${Number(d.lateness_s).toFixed(d.lateness_s < 10 ? 2 : 0)} s`)),
      }));
    }

    async function loadPreview() {
      if (!ctx.has("GET /api/schedules/{schedule_id}/preview")) {
        mountInto(prev, notice("na", "Not available: this backend has no schedule preview."));
        return;
      }
      try {
        const p = await ctx.api.get(`/api/schedules/${enc}/preview?n=10`);
        const parts = [];
        if (!p.enabled) parts.push(notice("info", "Disabled: these are the times it would fire if it were enabled."));
        if (p.frozen) parts.push(notice("warn", "The fleet is frozen: fires are held until the freeze ends."));
        if (p.gate) parts.push(notice("warn", `A poll now would be held: ${p.gate}`));
        for (const w of p.warnings || []) parts.push(notice("warn", w));
        if (p.runs_on === "agent") parts.push(h("p", { class: "muted small" }, "Fired by each targeted agent on its own clock (it keeps firing while offline)."));
        const reconcile = p.shape === "per_pc" || p.shape === "per_target";
        parts.push(h("h3", {}, `Next ${p.fires.length} ${reconcile ? "polls" : "fires"}`, h("span", { class: "muted small" }, ` (${p.tz})`)));
        parts.push(table({
          label: "Next fires",
          columns: [{ label: "#" }, { label: `Time (${p.tz})` }, { label: "UTC" }, { label: "In", cls: "hide-sm" }],
          rows: p.fires,
          empty: "No upcoming fire (the active range ended, or every gate stays shut).",
          row: (f, i) => h("tr", {},
            h("td", { class: "muted" }, String((i ?? 0) + 1)),
            h("td", { class: "mono" }, wallClock(f.local)),
            h("td", { class: "mono" }, utcClock(f.utc)),
            h("td", { class: "hide-sm" }, time(f.utc))),
        }));
        if (reconcile) {
          const firing = p.pcs.filter((x) => x.would_fire).length;
          parts.push(h("h3", {}, "Per PC at the next poll",
            h("span", { class: "muted small" }, ` (${firing} of ${p.pcs.length} would fire)`)));
          parts.push(table({
            label: "Per PC preview",
            columns: [{ label: "PC" }, { label: "Would fire" }, { label: "Why" }, { label: "Alive", cls: "hide-sm" }, { label: "Last success", cls: "hide-sm" }],
            rows: p.pcs,
            empty: "The target matches no known PC.",
            row: (x) => h("tr", { dataset: { pcId: x.pc_id, wouldFire: String(x.would_fire) } },
              h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(x.pc_id)}` }, x.pc_id)),
              h("td", {}, x.would_fire ? pill("ok", "would fire") : pill("pending", "no")),
              h("td", { class: "details" }, x.detail || x.reason || "",
                x.dispatched_until ? h("span", { class: "muted small" }, ` (dispatched; blocked until ${utcClock(x.dispatched_until)})`) : null),
              h("td", { class: "hide-sm" }, x.alive ? pill("alive") : pill("offline")),
              h("td", { class: "hide-sm" }, time(x.last_success))),
          }));
        } else if (p.target_pcs) {
          parts.push(h("p", { class: "small" }, `Each fire targets ${p.target_pcs.length} PC(s), ${p.target_alive.length} alive now`,
            p.target_pcs.length ? h("span", { class: "muted" }, `: ${p.target_pcs.slice(0, 30).join(", ")}${p.target_pcs.length > 30 ? " …" : ""}`) : null));
        }
        mountInto(prev, parts);
        prev.dataset.ready = "true";
      } catch (err) { mountInto(prev, ctx.errorView(err)); }
    }

    async function loadDrift() {
      if (sched.runs_on !== "agent") {
        mountInto(drift, h("p", { class: "muted" }, "This schedule is fired by the backend; agents do not hold it (no schedule-set drift to show)."));
        return;
      }
      if (!ctx.has("GET /api/agents/drift")) {
        mountInto(drift, notice("na", "Not available: this backend does not report schedule-set drift."));
        return;
      }
      try {
        const d = await ctx.api.get("/api/agents/drift");
        const rows = d.items.filter((a) => (a.expected_schedules || []).includes(scheduleId) || a.drift)
          .sort((a, b) => Number(b.drift) - Number(a.drift) || a.pc_id.localeCompare(b.pc_id));
        mountInto(drift,
          h("p", { class: "small muted" }, "Agents this schedule targets, and any agent whose applied schedule set differs from the expected one."),
          driftTable(rows.slice(0, 300), "Schedule-set drift"));
      } catch (err) { mountInto(drift, ctx.errorView(err)); }
    }

    let timer = null;
    function armTimer() {
      clearTimeout(timer);
      const next = sched.enabled && sched.status?.next_fire ? new Date(sched.status.next_fire).getTime() : null;
      if (!next) return;
      const wait = Math.min(Math.max(1500, next - Date.now() + 1500), 30 * 60_000);
      timer = setTimeout(() => { refresh(); refreshPreview(); }, wait);
    }

    drawDecisions();
    const refresh = ctx.refresher(() => load().catch((e) => mountInto(status, ctx.errorView(e))), 1000);
    const refreshPreview = ctx.refresher(loadPreview, 3000);
    const refreshDrift = ctx.refresher(loadDrift, 3000);
    drawHead(sched);
    armTimer();
    await Promise.all([loadPreview(), loadDrift()]);
    root.dataset.ready = "true";
    return {
      onEvent(ev) {
        if (["execs", "schedules", "resync"].includes(ev.topic)) refresh();
        const reconcile = ["per_pc", "per_target"].includes(sched.status?.shape);
        if (["agents", "resync"].includes(ev.topic) || (reconcile && ev.topic === "results")) refreshPreview();
        if (["agents", "resync"].includes(ev.topic)) refreshDrift();
      },
      refresh() { refresh(); refreshPreview(); refreshDrift(); },
      dispose() { clearTimeout(timer); },
    };
  },
};

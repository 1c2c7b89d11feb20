// Rollout detail (GET /api/rollouts/{id}): per-wave progress as a chart and a table (pcs,
// finished / failed / missing, due time, state), the halt reason, and Resume / Abort for
// operators. Live: "rollouts" events (a wave went out or settled) and the exec's results.
import { ApiError } from "../api.js";
import { facts, fullTime, h, mountInto, notice, pill, seconds, section, table, time } from "../dom.js";
import { legend, waveChart, waveCounts, WAVE_KEYS } from "../charts.js";
import { showError } from "../forms.js";
import { touchesExec } from "../live.js";

const WAVE_STATE = { waiting: "pending", dispatching: "running", dispatched: "running", settled: "ok", cancelled: "cancelled" };

export default {
  title: "Rollout",
  async mount(root, [rolloutId], ctx) {
    const enc = encodeURIComponent(rolloutId);
    const crumbs = h("p", { class: "crumbs" }, h("a", { href: "#/rollouts" }, "Rollouts"), " / ", rolloutId);
    if (!ctx.has("GET /api/rollouts/{rollout_id}")) {
      mountInto(root, crumbs, h("h1", {}, "Rollout"), notice("na", "Not available: this backend has no rollouts API yet."));
      return {};
    }
    const statusEl = h("span", { id: "rollout-status", "aria-label": "Rollout status" });
    const actions = h("div", { class: "actions" });
    const banner = h("div", { class: "slot", id: "rollout-reason" });
    const panel = h("div", { class: "slot" });
    const out = h("div", { class: "form-out", "aria-live": "polite" });
    const summary = h("div", { class: "slot" });
    const chart = h("div", { class: "slot", "aria-live": "polite" });
    const list = h("div", { class: "slot" });
    mountInto(root, crumbs,
      h("div", { class: "title-row" }, h("h1", {}, "Rollout ", statusEl), actions),
      banner, panel, out,
      h("div", { class: "grid grid-2" }, section("Summary", summary), section("Wave progress", chart)),
      section("Waves", list));
    let last = null;

    function draw(r) {
      last = r;
      root.dataset.status = r.status;
      mountInto(statusEl, pill(r.status));
      const reason = r.reason;
      mountInto(banner,
        r.status === "halted" ? notice("warn", `Halted: ${reason || "a wave's failure rate exceeded the threshold"}. Resume sends the next wave now; Abort sends no more waves.`) : null,
        r.status === "aborted" ? notice("info", `Aborted${reason ? `: ${reason}` : ""}. Waves not yet sent were cancelled.`) : null,
        r.status === "rejected" ? notice("info", `Rejected${reason ? `: ${reason}` : ""}. Nothing was sent.`) : null,
        r.status === "awaiting_approval" ? h("p", { class: "notice notice-warn" }, "Waiting for approval: no wave is sent before another operator approves ",
          h("a", { href: `#/executions/${encodeURIComponent(r.exec_id)}` }, "the execution"), ".") : null);
      const settled = r.waves.filter((w) => w.state === "settled").length;
      mountInto(summary, facts([
        ["Rollout", h("span", { class: "mono" }, r.rollout_id)],
        ["Execution", h("a", { class: "mono", href: `#/executions/${encodeURIComponent(r.exec_id)}` }, r.exec_id)],
        ["Job", h("span", {}, h("a", { href: `#/jobs/${encodeURIComponent(r.job_id)}` }, r.job_id), h("span", { class: "muted" }, ` v${r.version}`))],
        ["Waves", h("span", { id: "rollout-waves" }, `${settled} of ${r.wave_count} settled`, r.status === "running" ? ` · current: wave ${r.current_wave}` : r.status === "halted" ? ` · next: wave ${r.current_wave}` : "")],
        ["PCs sent", `${r.sent_pcs} of ${r.total_pcs}`],
        ["Halts above", r.halt_on_failure_rate === null || r.halt_on_failure_rate === undefined ? "never halts" : `${pct(r.halt_on_failure_rate)} failed`],
        ["Created", h("span", {}, time(r.created_at), h("span", { class: "muted small" }, ` by ${r.created_by} (${fullTime(r.created_at)})`))],
        ["Finished", r.finished_at ? fullTime(r.finished_at) : "—"],
      ]));
      const totals = Object.fromEntries(WAVE_KEYS.map((k) => [k.key, 0]));
      for (const w of r.waves) { const c = waveCounts(w); for (const k of WAVE_KEYS) totals[k.key] += c[k.key]; }
      mountInto(chart,
        waveChart(r.waves, { label: "Wave progress", current: ["running", "halted"].includes(r.status) ? r.current_wave : null }),
        legend(WAVE_KEYS.map((k) => ({ key: k.key, label: k.label, value: totals[k.key] }))));
      mountInto(list, table({
        label: "Waves",
        columns: [
          { label: "Wave" }, { label: "Label" }, { label: "PCs" }, { label: "State" }, { label: "Due / sent", cls: "hide-sm" },
          { label: "Finished" }, { label: "Failed" }, { label: "Missing", cls: "hide-sm" }, { label: "Failure rate", cls: "hide-sm" },
        ],
        rows: r.waves,
        row: (w) => {
          const c = waveCounts(w);
          const exceeded = w.verdict === "exceeded";
          return h("tr", { class: exceeded ? "drift" : null, dataset: { wave: w.index, state: w.state } },
            h("td", { class: "muted" }, `#${w.index}`),
            h("td", {}, w.label, w.delay_s ? h("span", { class: "muted small" }, ` (after ${delayText(w.delay_s)})`) : null),
            h("td", { class: "small", title: (w.pcs || []).join(", ") }, `${c.size}`,
              h("span", { class: "muted hide-sm" }, `: ${(w.pcs || []).slice(0, 4).join(", ")}${(w.pcs || []).length > 4 ? " …" : ""}`)),
            h("td", {}, pill(exceeded ? "pending" : WAVE_STATE[w.state] || "pending", w.state), exceeded ? [" ", pill("failed", "exceeded")] : null),
            h("td", { class: "hide-sm" }, w.dispatched_at ? h("span", {}, "sent ", time(w.dispatched_at))
              : w.due_at ? h("span", {}, "due ", time(w.due_at)) : h("span", { class: "muted" }, w.state === "cancelled" ? "—" : "after the previous wave")),
            h("td", { class: "wave-finished" }, `${c.finished}/${c.size}`),
            h("td", {}, c.failed ? h("strong", { class: "txt-failed" }, String(c.failed)) : "0"),
            h("td", { class: "hide-sm" }, c.missing ? h("strong", { class: "txt-failed" }, String(c.missing)) : "0"),
            h("td", { class: "hide-sm" }, w.progress || w.failure_rate !== null ? pct(w.failure_rate ?? w.progress?.failure_rate ?? 0) : "—"));
        },
      }));
      drawActions(r);
      armTimer(r);
      root.dataset.ready = "true";
    }

    function drawActions(r) {
      actions.replaceChildren();
      if (!ctx.can("operate")) return;
      if (r.status === "halted" && ctx.has("POST /api/rollouts/{rollout_id}/resume")) {
        const btn = h("button", {
          type: "button", class: "btn btn-primary",
          onclick: async () => {
            btn.disabled = true; out.replaceChildren();
            try {
              const res = await ctx.api.post(`/api/rollouts/${enc}/resume`);
              out.replaceChildren(notice("info", `Resumed: wave ${res.next_wave} is being sent.`));
              refresh();
            } catch (err) { showError(out, err); btn.disabled = false; }
          },
        }, "Resume");
        actions.append(btn);
      }
      if (["running", "halted"].includes(r.status) && ctx.has("POST /api/rollouts/{rollout_id}/abort")) {
        actions.append(h("button", { type: "button", class: "btn btn-danger", onclick: showAbort }, "Abort…"));
      }
    }

    function showAbort() {
      out.replaceChildren();
      const reason = h("input", { id: "abort-reason", type: "text", maxlength: 1000, placeholder: "why (kept in the audit log)" });
      const confirm = h("button", { type: "submit", class: "btn btn-danger" }, "Confirm abort");
      const form = h("form", {
        class: "card confirm", "aria-label": "Abort rollout",
        onsubmit: async (e) => {
          e.preventDefault();
          confirm.disabled = true;
          try {
            const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
            const res = await ctx.api.post(`/api/rollouts/${enc}/abort`, body);
            panel.replaceChildren();
            out.replaceChildren(notice("info", `Aborted: ${res.cancelled_waves} wave(s) will never be sent.`
              + (res.in_flight_wave !== null && res.in_flight_wave !== undefined ? ` Wave ${res.in_flight_wave} was already sent and keeps running (Kill the execution to end it).` : "")));
            refresh();
          } catch (err) { showError(out, err); confirm.disabled = false; }
        },
      },
      h("h2", {}, "Abort this rollout?"),
      h("p", { class: "muted small" }, "Waves not yet sent are never sent and the execution becomes cancelled. Commands already sent keep running."),
      h("div", { class: "field" }, h("label", { for: "abort-reason" }, "Reason"), reason),
      h("div", { class: "actions" }, confirm, h("button", { type: "button", class: "btn-ghost", onclick: () => panel.replaceChildren() }, "Cancel")));
      mountInto(panel, form);
      reason.focus();
    }

    // Events do the work; a timer at the next wave's due time is a cheap safety net.
    let timer = null;
    function armTimer(r) {
      clearTimeout(timer);
      if (r.status !== "running") return;
      const due = r.waves.filter((w) => w.state === "waiting" && w.due_at).map((w) => new Date(w.due_at).getTime())[0];
      if (due) timer = setTimeout(() => refresh(), Math.min(Math.max(500, due - Date.now() + 1000), 10 * 60_000));
    }

    async function load() {
      draw(await ctx.api.get(`/api/rollouts/${enc}`));
    }
    const refresh = ctx.refresher(() => load().catch((e) => mountInto(list, ctx.errorView(e))), 250);
    try { await load(); } catch (err) {
      mountInto(root, crumbs, h("h1", {}, "Rollout"),
        err instanceof ApiError && err.status === 404 && !err.routeMissing
          ? notice("warn", `No rollout ${rolloutId}: an execution without waves has no rollout.`) : ctx.errorView(err));
      return {};
    }
    return {
      onEvent(ev) {
        if (ev.topic === "rollouts" || touchesExec(ev, last?.exec_id || rolloutId)) refresh();
      },
      refresh,
      dispose() { clearTimeout(timer); },
    };
  },
};

function delayText(s) {
  const v = Number(s);
  if (v >= 3600 && v % 3600 === 0) return `${v / 3600} h`;
  if (v >= 60 && v % 60 === 0) return `${v / 60} min`;
  return Number.isInteger(v) && v < 60 ? `${v} s` : seconds(v);
}

function pct(x) {
  if (x === null || x === undefined) return "—";
  const v = Number(x) * 100;
  return `${v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)} %`;
}

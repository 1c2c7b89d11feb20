// Execution detail: live per-pc progress (SSE), a chart of ok/failed/skipped/running/pending,
// and the scripts' output as they write it while the exec runs (its own SSE stream).
import { facts, fullTime, h, mountInto, notice, pill, resultKind, section, time } from "../dom.js";
import { showError } from "../forms.js";
import { donut, legend, progressBar } from "../charts.js";
import { touchesExec } from "../live.js";
import { followOutput, outputPane } from "../liveout.js";
import { resultsTable } from "./agent.js";

const KINDS = [
  { key: "ok", label: "ok" }, { key: "failed", label: "failed" }, { key: "skipped", label: "skipped" },
  { key: "running", label: "running" }, { key: "pending", label: "pending" },
  { key: "no_result", label: "no result" },
];
// Statuses an exec leaves by itself at its deadline (SPEC §4.3): shown with that deadline.
const ENDS_BY_ITSELF = new Set(["pending", "running", "expired"]);
const LIVE = new Set(["awaiting_approval", "pending", "running"]);
const WRITING = new Set(["pending", "running"]); // scripts may be writing output
const MAX_ROWS = 500;

export default {
  title: "Execution",
  async mount(root, [execId], ctx) {
    const enc = encodeURIComponent(execId);
    const head = h("div", { class: "slot" });
    const chart = h("div", { class: "slot", "aria-live": "polite" });
    const list = h("div", { class: "slot" });
    const actions = h("div", { class: "actions" });
    const filter = h("select", { id: "pc-filter" }, h("option", { value: "" }, "all"),
      KINDS.map((k) => h("option", { value: k.key }, k.label)));
    const statusEl = h("span", { id: "exec-status", "aria-label": "Execution status" });
    const approvalSlot = h("div", { class: "slot", id: "approval" });
    const liveSlot = h("div", { class: "slot", id: "live-slot" });
    mountInto(root,
      h("p", { class: "crumbs" }, h("a", { href: "#/executions" }, "Executions"), " / ", execId),
      h("div", { class: "title-row" }, h("h1", {}, "Execution ", statusEl), actions),
      approvalSlot,
      h("div", { class: "grid grid-2" }, section("Summary", head), section("Progress", chart)),
      liveSlot,
      section("Per PC", h("div", { class: "filters" },
        h("div", { class: "field" }, h("label", { for: "pc-filter" }, "Show"), filter)), list));
    let last = null;
    let rollout = null; // {rollout_id, wave_count, status} when this exec is sent in waves
    let rolloutAsked = false;
    let follow = null; // the live-output stream while it is open
    let liveEnded = false;
    filter.addEventListener("change", () => last && drawList(last));

    function drawList(ex) {
      const rows = ex.results.filter((r) => !filter.value || resultKind(r) === filter.value);
      mountInto(list, resultsTable(rows.slice(0, MAX_ROWS), "Results per PC", { showJob: false }),
        rows.length > MAX_ROWS ? notice("info", `First ${MAX_ROWS} of ${rows.length} shown.`) : null);
    }

    function drawActions(ex) {
      actions.replaceChildren();
      if (ctx.can("operate") && LIVE.has(ex.status) && ctx.has("POST /api/executions/{exec_id}/kill")) {
        const out = h("span", { class: "small muted", role: "status" });
        const btn = h("button", {
          type: "button", class: "btn btn-danger",
          onclick: async () => {
            if (!window.confirm(`Kill execution ${execId}? Running scripts end with exit -1; queued copies are cancelled.`)) return;
            btn.disabled = true;
            try { await ctx.api.post(`/api/executions/${enc}/kill`); out.textContent = "kill sent"; refresh(); } catch (err) { out.textContent = err.message; btn.disabled = false; }
          },
        }, "Kill");
        actions.append(btn, out);
      }
    }

    async function load() {
      const ex = await ctx.api.get(`/api/executions/${enc}`);
      last = ex;
      if (!rolloutAsked || rollout) { rolloutAsked = true; await findRollout(ex); }
      const counts = Object.fromEntries(KINDS.map((k) => [k.key, 0]));
      for (const r of ex.results) counts[resultKind(r)] += 1;
      const segs = KINDS.map((k) => ({ ...k, value: counts[k.key] }));
      mountInto(statusEl, pill(ex.status));
      root.dataset.status = ex.status;
      mountInto(head, facts([
        ["Execution", h("span", { class: "mono" }, ex.exec_id)],
        ["Job", ex.kind === "adhoc" ? h("span", {}, "ad-hoc script ", h("span", { class: "muted mono" }, ex.job_id))
          : h("a", { href: `#/jobs/${encodeURIComponent(ex.job_id)}` }, ex.job_id)],
        ["Version", ex.version],
        ["Target", targetText(ex.target)],
        ["Expected PCs", String(ex.expected_count)],
        ["Initiated by", ex.initiated_by],
        ["Schedule", ex.schedule_id ? h("a", { href: `#/schedules/${encodeURIComponent(ex.schedule_id)}` }, ex.schedule_id) : "—"],
        ...(rollout ? [["Rollout", h("span", {}, h("a", { href: `#/rollouts/${encodeURIComponent(rollout.rollout_id)}`, id: "rollout-link" }, `${rollout.wave_count} waves`),
          " ", pill(rollout.status))]] : []),
        ["Created", h("span", {}, time(ex.created_at), h("span", { class: "muted small" }, ` (${fullTime(ex.created_at)})`))],
        ["Updated", time(ex.updated_at)],
        ...(ENDS_BY_ITSELF.has(ex.status) ? [["Ends by", ex.deadline_at
          ? h("span", { id: "exec-deadline", title: "PCs that have not started by then (plus a short grace) are closed as no result" }, fullTime(ex.deadline_at))
          : h("span", { class: "muted", id: "exec-deadline" }, "when its commands are sent")]] : []),
      ]));
      const done = counts.ok + counts.failed + counts.skipped + counts.no_result;
      mountInto(chart,
        h("div", { class: "donut-row" },
          donut(segs, { label: "Execution progress", center: `${done}/${ex.expected_count}` }),
          legend(segs)),
        progressBar(segs, Math.max(ex.expected_count, ex.results.length), { label: "Finished so far" }),
        h("p", { class: "small muted", id: "exec-counts" },
          `${done} of ${ex.expected_count} finished · ${counts.failed} failed · ${counts.skipped} skipped · ${counts.no_result} no result · ${counts.running} running · ${counts.pending} pending`));
      drawActions(ex);
      await drawApproval(ex);
      drawList(ex);
      startLive(ex);
      root.dataset.ready = "true";
    }

    /** While scripts may be writing, their output as it comes (SPEC §4.12). */
    function startLive(ex) {
      if (follow || liveEnded || !WRITING.has(ex.status) || !ctx.has("GET /api/executions/{exec_id}/live")) return;
      const pane = outputPane({ prefixed: ex.expected_count > 1 });
      const state = h("span", { id: "live-state", "data-state": "waiting", role: "status" }, "Waiting for output…");
      mountInto(liveSlot, section("Live output", h("p", { class: "small muted live-head" }, state,
        " · best effort, rate-capped per agent; each PC's result keeps its whole output."), pane.el));
      const say = (key, text) => { state.dataset.state = key; state.textContent = text; };
      follow = followOutput(execId, {
        onLine: (line) => {
          pane.add(line);
          if (state.dataset.state !== "streaming") say("streaming", "Streaming as the scripts write it");
        },
        onState: (s) => {
          if (s === "reconnecting") say("reconnecting", "Reconnecting…");
          else if (s === "closed") say("closed", "The live stream was closed; the results below are complete once the exec ends.");
          else if (s === "open" && state.dataset.state === "reconnecting") say("streaming", "Streaming as the scripts write it");
        },
        onEnd: (d) => {
          follow = null;
          liveEnded = true;
          say("ended", pane.lines ? `Ended (${d.status || "done"}).` : `Ended (${d.status || "done"}) without output while this page watched.`);
          refresh();
        },
      });
    }

    /** Is this exec a rollout? (Asked once, through the list: a 404 would be noise.) */
    async function findRollout(ex) {
      if (ex.kind !== "job" || !ctx.has("GET /api/rollouts")) return;
      try {
        const page = await ctx.api.get(`/api/rollouts?job_id=${encodeURIComponent(ex.job_id)}&limit=50`);
        const r = page.items.find((x) => x.rollout_id === execId);
        rollout = r ? { rollout_id: r.rollout_id, wave_count: r.wave_count, status: r.status } : null;
      } catch { rollout = null; }
    }

    /** Awaiting approval: who asked, until when, and Approve / Reject for operators. */
    async function drawApproval(ex) {
      if (!["awaiting_approval", "rejected"].includes(ex.status) || !ctx.has("GET /api/approvals/{exec_id}")) {
        approvalSlot.replaceChildren();
        return;
      }
      let a;
      try { a = await ctx.api.get(`/api/approvals/${enc}`); } catch (err) { mountInto(approvalSlot, ctx.errorView(err)); return; }
      if (a.state !== "pending") {
        mountInto(approvalSlot, notice("info", `${a.state === "rejected" ? "Rejected" : "Approved"} by ${a.decided_by || "?"}`
          + `${a.decided_at ? ` (${fullTime(a.decided_at)})` : ""}${a.reason ? `: ${a.reason}` : ""}. Requested by ${a.requested_by}.`));
        return;
      }
      const expired = new Date(a.expires_at) <= Date.now();
      const out = h("div", { class: "form-out", "aria-live": "polite" });
      const parts = [h("p", {}, h("strong", {}, "Waiting for approval. "),
        `Requested by ${a.requested_by} `, time(a.requested_at), expired ? " — this request has expired." : [" · expires ", time(a.expires_at)],
        a.rollout ? " · a rollout: its first wave goes out once approved." : "")];
      const own = ctx.session.authEnabled && ctx.session.user && ctx.session.user === a.requested_by;
      if (ctx.can("operate") && !expired && ctx.has("POST /api/executions/{exec_id}/approve")) {
        const approve = h("button", {
          type: "button", class: "btn btn-primary", disabled: own || null,
          title: own ? "You requested it: a different operator must approve" : null,
          onclick: async () => {
            approve.disabled = true;
            try { await ctx.api.post(`/api/executions/${enc}/approve`); refresh(); } catch (err) { showError(out, err); approve.disabled = false; }
          },
        }, "Approve");
        const reason = h("input", { id: "reject-reason", type: "text", maxlength: 1000, placeholder: "why not (optional)" });
        const reject = h("button", { type: "submit", class: "btn btn-danger" }, "Reject");
        parts.push(h("div", { class: "actions approval-actions" }, approve,
          h("form", {
            class: "actions", "aria-label": "Reject execution",
            onsubmit: async (e) => {
              e.preventDefault();
              reject.disabled = true;
              const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
              try { await ctx.api.post(`/api/executions/${enc}/reject`, body); refresh(); } catch (err) { showError(out, err); reject.disabled = false; }
            },
          }, h("label", { for: "reject-reason", class: "sr-only" }, "Reason"), reason, reject)));
        if (own) parts.push(h("p", { class: "muted small" }, "You requested this execution: a different operator must approve it (you may still reject it)."));
      }
      mountInto(approvalSlot, h("div", { class: "notice notice-warn approval-box", role: "region", "aria-label": "Approval" }, parts, out));
    }

    const refresh = ctx.refresher(() => load().catch((e) => mountInto(list, ctx.errorView(e))), 250);
    await load();
    return {
      onEvent(ev) { if (touchesExec(ev, execId)) refresh(); },
      refresh,
      dispose() { follow?.close(); },
    };
  },
};

export function targetText(t) {
  if (!t) return "—";
  const parts = [];
  if (t.all) parts.push("all agents");
  if (t.groups?.length) parts.push(`groups: ${t.groups.join(", ")}`);
  if (t.pcs?.length) parts.push(`pcs: ${t.pcs.join(", ")}`);
  return parts.join("; ") || "nobody";
}

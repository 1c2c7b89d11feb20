// Job detail: the manifest as YAML, "run on…" form (POST /api/exec/{job}),
// revoke / unrevoke (when the backend has them), recent executions of this job.
import { ApiError } from "../api.js";
import { h, mountInto, notice, pill, section, yamlish } from "../dom.js";
import { field, showError, targetFieldset } from "../forms.js";
import { execTable } from "./overview.js";

export default {
  title: "Job",
  async mount(root, [jobId], ctx) {
    const enc = encodeURIComponent(jobId);
    const doc = h("div", { class: "slot" });
    const state = h("span", { id: "job-state" });
    const actions = h("div", { class: "actions" });
    const recent = h("div", { class: "slot" });
    let job;
    try { job = await ctx.api.get(`/api/jobs/${enc}`); } catch (err) {
      mountInto(root, h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", jobId),
        err instanceof ApiError && err.status === 404 ? notice("warn", `No job ${jobId} in the catalog.`) : ctx.errorView(err));
      return {};
    }
    mountInto(doc, h("pre", { class: "code yaml", "aria-label": "Job manifest" }, yamlish(job).trim()));
    const runCard = ctx.can("operate") ? section("Run on…", runForm(ctx, jobId))
      : null;
    mountInto(root,
      h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", jobId),
      h("div", { class: "title-row" }, h("h1", {}, "Job ", h("span", { class: "mono" }, jobId), " ", state), actions),
      h("p", { class: "muted" }, job.description || ""),
      h("div", { class: "grid grid-2" }, section("Manifest", doc), runCard || section("Run on…", notice("info", "Your role can read jobs but not run them."))),
      section("Recent executions of this job", recent));

    async function loadState() {
      if (!ctx.has("GET /api/revocations")) return;
      const revoked = await ctx.api.get("/api/revocations").catch(() => null);
      if (!revoked) return;
      const isRevoked = (revoked.items || []).some((r) => (r.job_id || r.id || r) === jobId);
      mountInto(state, isRevoked ? pill("failed", "revoked") : pill("ok", "active"));
      actions.replaceChildren();
      if (!ctx.can("operate")) return;
      const out = h("span", { class: "small muted", role: "status" });
      const verb = isRevoked ? "unrevoke" : "revoke";
      if (!ctx.has(`POST /api/jobs/{job_id}/${verb}`)) return;
      const btn = h("button", {
        type: "button", class: isRevoked ? "btn" : "btn btn-danger",
        onclick: async () => {
          if (!isRevoked && !window.confirm(`Revoke ${jobId}? Every agent will skip it (exit 126), even offline ones.`)) return;
          btn.disabled = true;
          try { await ctx.api.post(`/api/jobs/${enc}/${verb}`, {}); await loadState(); } catch (err) { out.textContent = err.message; btn.disabled = false; }
        },
      }, isRevoked ? "Unrevoke" : "Revoke");
      actions.append(btn, out);
    }

    async function loadRecent() {
      const page = await ctx.api.get(`/api/executions?job_id=${enc}&limit=10`);
      mountInto(recent, execTable(page.items, `Recent executions of ${jobId}`));
    }
    const refreshRecent = ctx.refresher(() => loadRecent().catch((e) => mountInto(recent, ctx.errorView(e))), 500);
    await Promise.all([loadState(), loadRecent().catch((e) => mountInto(recent, ctx.errorView(e)))]);
    root.dataset.ready = "true";
    return {
      onEvent(ev) { if (["execs", "results", "resync"].includes(ev.topic)) refreshRecent(); if (ev.topic === "revocations") loadState(); },
      refresh() { refreshRecent(); loadState(); },
    };
  },
};

function runForm(ctx, jobId) {
  const target = targetFieldset(ctx, { prefix: "exec" });
  const jitter = h("input", { type: "text", name: "jitter", placeholder: "e.g. 5s" });
  const deadline = h("input", { type: "text", name: "starting_deadline", placeholder: "e.g. 10m" });
  const out = h("div", { class: "form-out", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Run job");
  return h("form", {
    "aria-label": `Run ${jobId}`,
    onsubmit: async (e) => {
      e.preventDefault();
      const missing = target.error();
      if (missing) { out.replaceChildren(notice("error", missing)); return; }
      const body = { target: target.value() };
      if (jitter.value.trim()) body.jitter = jitter.value.trim();
      if (deadline.value.trim()) body.starting_deadline = deadline.value.trim();
      submit.disabled = true;
      try {
        const created = await ctx.api.post(`/api/exec/${encodeURIComponent(jobId)}`, body);
        ctx.navigate(`executions/${encodeURIComponent(created.exec_id)}`);
      } catch (err) { showError(out, err); submit.disabled = false; }
    },
  }, target.el,
  h("div", { class: "row" }, field("Jitter", jitter, "random delay before start"), field("Starting deadline", deadline, "skip if it cannot start within")),
  submit, out);
}

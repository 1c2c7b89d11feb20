// Approvals (SPEC §4.8, GET /api/approvals): executions of `require_approval` jobs waiting
// for a second operator (approve / reject on the execution page), past decisions, and the
// job versions approved for unattended (scheduled) runs.
import { h, mountInto, notice, pill, section, shortId, table, time } from "../dom.js";

const STATES = ["pending", "approved", "rejected"];
const STATE_KIND = { pending: "awaiting_approval", approved: "ok", rejected: "rejected" };
const PAGE = 50;

export default {
  title: "Approvals",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/approvals")) {
      mountInto(root, h("h1", {}, "Approvals"), notice("na", "Not available: this backend has no approvals API yet."));
      return {};
    }
    const f = { state: ctx.query.has("state") ? ctx.query.get("state") : "pending", offset: 0 };
    const state = h("select", { id: "approval-state" }, h("option", { value: "" }, "any"),
      STATES.map((s) => h("option", { value: s }, s)));
    state.value = f.state;
    const slot = h("div", { class: "slot" });
    const pager = h("div", { class: "pager" });
    const unattended = h("div", { class: "slot" });
    mountInto(root, h("h1", {}, "Approvals"),
      h("p", { class: "muted small" }, "An execution of a job with ", h("code", {}, "require_approval: true"),
        " waits until a different operator approves or rejects it on its execution page; requests expire."),
      h("form", { class: "filters", role: "search", "aria-label": "Filter approvals", onsubmit: (e) => e.preventDefault() },
        h("div", { class: "field" }, h("label", { for: "approval-state" }, "State"), state)),
      slot, pager,
      section("Approved for unattended runs", unattended));
    state.addEventListener("change", () => {
      f.state = state.value; f.offset = 0;
      history.replaceState(null, "", `#/approvals?state=${f.state}`);
      refresh();
    });

    async function load() {
      const p = new URLSearchParams({ limit: PAGE, offset: f.offset });
      if (f.state) p.set("state", f.state);
      const page = await ctx.api.get(`/api/approvals?${p}`);
      mountInto(slot, approvalsTable(page.items, "Approvals",
        f.state === "pending" ? "Nothing waits for approval." : "No approval requests match."));
      mountInto(pager,
        h("button", { type: "button", class: "btn-ghost", disabled: f.offset === 0, onclick: () => { f.offset = Math.max(0, f.offset - PAGE); refresh(); } }, "← Newer"),
        h("span", { class: "muted small" }, page.total ? `${f.offset + 1}–${f.offset + page.items.length} of ${page.total}` : ""),
        h("button", { type: "button", class: "btn-ghost", disabled: f.offset + PAGE >= page.total, onclick: () => { f.offset += PAGE; refresh(); } }, "Older →"));
      root.dataset.ready = "true";
    }

    async function loadUnattended() {
      if (!ctx.has("GET /api/unattended-approvals")) {
        mountInto(unattended, notice("na", "Not available: this backend has no unattended-approval API."));
        return;
      }
      try {
        const d = await ctx.api.get("/api/unattended-approvals");
        mountInto(unattended,
          h("p", { class: "muted small" }, "Schedules may fire a ", h("code", {}, "require_approval"),
            " job only at a version listed here (", h("code", {}, "kanade job approve-unattended JOB VERSION"), ")."),
          table({
            label: "Unattended approvals",
            columns: [{ label: "Job" }, { label: "Version" }, { label: "Approved by" }, { label: "When" }],
            rows: d.items,
            empty: "No job version is approved for unattended runs.",
            row: (u) => h("tr", {},
              h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(u.job_id)}` }, u.job_id)),
              h("td", { class: "mono" }, u.version), h("td", {}, u.approved_by), h("td", {}, time(u.approved_at))),
          }));
      } catch (err) { mountInto(unattended, ctx.errorView(err)); }
    }

    const refresh = ctx.refresher(() => load().catch((e) => mountInto(slot, ctx.errorView(e))), 500);
    await Promise.all([load().catch((e) => mountInto(slot, ctx.errorView(e))), loadUnattended()]);
    return {
      // Requests and decisions change an execution's status ("execs").
      onEvent(ev) { if (["execs", "resync"].includes(ev.topic)) refresh(); },
      refresh() { refresh(); loadUnattended(); },
    };
  },
};

export function approvalsTable(items, label, empty) {
  return table({
    label,
    columns: [
      { label: "Execution" }, { label: "Job" }, { label: "State" }, { label: "Requested by" }, { label: "Requested", cls: "hide-sm" },
      { label: "Expires / decided" }, { label: "Reason", cls: "hide-sm" },
    ],
    rows: items,
    empty,
    row: (a) => h("tr", { dataset: { execId: a.exec_id, state: a.state } },
      h("td", {}, h("a", { class: "mono", href: `#/executions/${encodeURIComponent(a.exec_id)}`, title: a.exec_id }, shortId(a.exec_id)),
        a.rollout ? [" ", h("a", { class: "tag", href: `#/rollouts/${encodeURIComponent(a.exec_id)}` }, "rollout")] : null),
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(a.job_id)}` }, a.job_id), h("span", { class: "muted small" }, ` v${a.version}`)),
      h("td", {}, pill(STATE_KIND[a.state] || "pending", a.state), a.state === "pending" && new Date(a.expires_at) <= Date.now() ? [" ", pill("expired")] : null),
      h("td", {}, a.requested_by),
      h("td", { class: "hide-sm" }, time(a.requested_at)),
      h("td", {}, a.decided_at ? h("span", {}, `${a.state} by ${a.decided_by || "?"} `, time(a.decided_at)) : h("span", {}, "expires ", time(a.expires_at))),
      h("td", { class: "hide-sm details" }, a.reason || "")),
  });
}

// Enrolment (SPEC §8.1): enrolled agents (GET /api/agents/enrolled) with their status, and
// the enrolment tokens still usable (GET /api/agents/enroll-tokens, never their secret).
// Admin-only on the backend; live: enrolments and revocations publish "enrolment".
import { fullTime, h, mountInto, notice, pill, section, table, time } from "../dom.js";

export default {
  title: "Enrolment",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/agents/enrolled")) {
      mountInto(root, h("h1", {}, "Enrolment"), notice("na", "Not available: this backend has no enrolment API yet."));
      return {};
    }
    const agentsSlot = h("div", { class: "slot", id: "enrolled-agents" });
    const tokensSlot = h("div", { class: "slot", id: "enroll-tokens" });
    mountInto(root, h("h1", {}, "Enrolment"),
      h("p", { class: "muted small" }, "Each agent has its own broker identity, obtained with a one-time token (",
        h("code", {}, "kanade agent enroll-token"), " then ", h("code", {}, "kanade-agent enroll URL TOKEN"),
        "). ", h("code", {}, "kanade agent revoke PC"), " cuts an agent off within seconds."),
      section("Enrolled agents", agentsSlot),
      section("Open tokens", tokensSlot));

    async function load() {
      const [enrolled, tokens] = await Promise.all([
        ctx.api.get("/api/agents/enrolled"),
        ctx.api.get("/api/agents/enroll-tokens"),
      ]);
      mountInto(agentsSlot, table({
        label: "Enrolled agents",
        columns: [{ label: "pc" }, { label: "Enrolled" }, { label: "Status" }, { label: "Revoked" }],
        rows: enrolled.items, empty: "No agent has enrolled yet.",
        row: (a) => h("tr", { "data-pc": a.pc_id },
          h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(a.pc_id)}` }, a.pc_id)),
          h("td", { title: fullTime(a.enrolled_at) }, time(a.enrolled_at)),
          h("td", { class: "status" }, pill(a.status === "revoked" ? "failed" : "ok", a.status)),
          h("td", { title: a.revoked_at ? fullTime(a.revoked_at) : "" },
            a.revoked_at ? `${time(a.revoked_at)} by ${a.revoked_by}` : "—")),
      }));
      mountInto(tokensSlot, table({
        label: "Open enrolment tokens",
        columns: [{ label: "Token id" }, { label: "Groups" }, { label: "Created by" }, { label: "Expires" }],
        rows: tokens.items, empty: "No open token.",
        row: (t) => h("tr", { "data-token": t.token_id },
          h("td", { class: "mono" }, t.token_id),
          h("td", {}, (t.groups || []).join(", ") || "—"),
          h("td", {}, t.created_by),
          h("td", { title: fullTime(t.expires_at) }, time(t.expires_at))),
      }));
      root.dataset.ready = "true";
    }
    const refresh = ctx.refresher(() => load().catch((e) => mountInto(agentsSlot, ctx.errorView(e))), 500);
    try { await load(); } catch (e) { mountInto(agentsSlot, ctx.errorView(e)); }
    return {
      onEvent(ev) { if (["enrolment", "resync"].includes(ev.topic)) refresh(); },
      refresh,
    };
  },
};

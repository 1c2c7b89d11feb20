// Jobs: the catalog (from KV), with revocation state when the backend exposes it.
import { h, mountInto, pill, table } from "../dom.js";

export default {
  title: "Jobs",
  async mount(root, _params, ctx) {
    const slot = h("div", { class: "slot" });
    mountInto(root, h("h1", {}, "Jobs"), slot);
    async function load() {
      const [jobs, revoked] = await Promise.all([
        ctx.api.get("/api/jobs"),
        ctx.has("GET /api/revocations") ? ctx.api.get("/api/revocations").catch(() => null) : null,
      ]);
      const rev = new Set((revoked?.items || []).map((r) => r.job_id || r.id || r));
      mountInto(slot, table({
        label: "Jobs",
        columns: [{ label: "Job" }, { label: "Version" }, { label: "Description", cls: "hide-sm" }, { label: "Shell", cls: "hide-sm" }, { label: "Timeout", cls: "hide-sm" }, { label: "Tags", cls: "hide-sm" }, { label: "State" }],
        rows: jobs.items,
        empty: "No job in the catalog. Create one with `kanade job create FILE`.",
        row: (j) => h("tr", { dataset: { jobId: j.id } },
          h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.id)),
          h("td", { class: "mono" }, j.version),
          h("td", { class: "hide-sm" }, j.description || ""),
          h("td", { class: "hide-sm mono" }, j.execute?.shell || ""),
          h("td", { class: "hide-sm mono" }, j.execute?.timeout || ""),
          h("td", { class: "hide-sm" }, (j.tags || []).map((t) => h("span", { class: "tag" }, t))),
          h("td", {}, rev.has(j.id) ? pill("failed", "revoked") : revoked ? pill("ok", "active") : "")),
      }));
      root.dataset.ready = "true";
    }
    await load();
    return { refresh: load, onEvent(ev) { if (ev.topic === "jobs" || ev.topic === "resync") load(); } };
  },
};

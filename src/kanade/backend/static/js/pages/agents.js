// Agents: the fleet, filterable by status, group, OS and version (filters live in the URL),
// and the agent versions across it: a chart, the release rollout targets, agents updating
// and quarantined releases (SPEC §3.8, /api/agent-versions).
import { donut, legend } from "../charts.js";
import { diskFull, h, mountInto, notice, pill, section, table, time } from "../dom.js";

// Version colours: distinct, in order of the version list (oldest first).
const PALETTE = ["#6b7280", "#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];

const STATUSES = ["alive", "stale", "offline"];

export default {
  title: "Agents",
  async mount(root, _params, ctx) {
    const q = ctx.query;
    const filters = {
      status: q.get("status") || "", group: q.get("group") || "",
      os: q.get("os") || "", version: q.get("version") || "", text: q.get("q") || "",
    };
    const count = h("p", { class: "muted", "aria-live": "polite", id: "agents-count" });
    const listSlot = h("div", { class: "slot" });
    const selects = {
      status: select("Status", "filter-status", STATUSES),
      group: select("Group", "filter-group", []),
      os: select("OS", "filter-os", []),
      version: select("Version", "filter-version", []),
    };
    const search = h("input", { type: "search", id: "filter-text", placeholder: "pc id or hostname", value: filters.text });
    const form = h("form", { class: "filters", role: "search", "aria-label": "Filter agents", onsubmit: (e) => e.preventDefault() },
      ...Object.values(selects).map((s) => s.wrap),
      h("div", { class: "field" }, h("label", { for: "filter-text" }, "Search"), search),
      h("button", { type: "button", class: "btn-ghost", onclick: () => { for (const k of Object.keys(filters)) filters[k] = ""; sync(true); } }, "Clear filters"));
    const versionsSlot = h("div", { class: "slot", id: "agent-versions", "aria-live": "polite" });
    mountInto(root, h("h1", {}, "Agents"), versionsSlot, form, count, listSlot);

    let agents = [];
    for (const [k, s] of Object.entries(selects)) {
      s.el.addEventListener("change", () => { filters[k] = s.el.value; sync(); });
    }
    search.addEventListener("input", () => { filters.text = search.value.trim(); sync(); });

    function sync(resetInputs = false) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(filters)) if (v) params.set(k === "text" ? "q" : k, v);
      const hash = `#/agents${params.toString() ? `?${params}` : ""}`;
      history.replaceState(null, "", hash); // no hashchange: no remount
      if (resetInputs) { for (const [k, s] of Object.entries(selects)) s.el.value = filters[k]; search.value = ""; }
      draw();
    }

    function facets() {
      const uniq = (fn) => [...new Set(agents.flatMap(fn))].filter(Boolean).sort();
      setOptions(selects.group.el, uniq((a) => a.groups || []), filters.group);
      setOptions(selects.os.el, uniq((a) => [a.os_family]), filters.os);
      setOptions(selects.version.el, uniq((a) => [a.agent_version]), filters.version);
      selects.status.el.value = filters.status;
    }

    function draw() {
      const text = filters.text.toLowerCase();
      const rows = agents.filter((a) =>
        (!filters.status || a.status === filters.status)
        && (!filters.group || (a.groups || []).includes(filters.group))
        && (!filters.os || a.os_family === filters.os)
        && (!filters.version || a.agent_version === filters.version)
        && (!text || a.pc_id.toLowerCase().includes(text) || (a.hostname || "").toLowerCase().includes(text)));
      const shown = rows.slice(0, 500);
      count.textContent = `${rows.length} of ${agents.length} agents`
        + (shown.length < rows.length ? ` (first ${shown.length} shown; narrow the filter)` : "");
      mountInto(listSlot, table({
        label: "Agents",
        columns: [
          { label: "PC" }, { label: "Status" }, { label: "Hostname", cls: "hide-sm" }, { label: "OS", cls: "hide-sm" },
          { label: "Version" }, { label: "Update", cls: "hide-sm" }, { label: "Groups", cls: "hide-sm" }, { label: "Running", cls: "hide-sm" }, { label: "Last seen" },
        ],
        rows: shown,
        empty: agents.length ? "No agent matches these filters." : "No agent has sent a heartbeat yet.",
        row: (a) => h("tr", { dataset: { pcId: a.pc_id } },
          h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(a.pc_id)}` }, a.pc_id)),
          h("td", {}, pill(a.status), a.disk_full ? [" ", diskFull(a)] : null),
          h("td", { class: "hide-sm" }, a.hostname),
          h("td", { class: "hide-sm" }, `${a.os_family} ${a.os_version || ""}`.trim()),
          h("td", {}, a.agent_version),
          h("td", { class: "hide-sm" }, updateCell(a.agent_update)),
          h("td", { class: "hide-sm" }, (a.groups || []).map((g) => h("span", { class: "tag" }, g))),
          h("td", { class: "hide-sm" }, String(a.running ?? 0)),
          h("td", {}, time(a.last_seen))),
      }));
    }

    async function load() {
      const [data, fleet] = await Promise.all([
        ctx.api.get("/api/agents"),
        ctx.api.get("/api/agent-versions").catch(() => null),
      ]);
      agents = data.items;
      if (fleet) mountInto(versionsSlot, versionsView(fleet));
      facets();
      draw();
      root.dataset.ready = "true";
    }

    const refresh = ctx.refresher(() => load().catch((e) => mountInto(listSlot, ctx.errorView(e))), 2000);
    await load();
    return {
      onEvent(ev) { if (ev.topic === "agents" || ev.topic === "resync") refresh(); },
      refresh,
    };
  },
};

function select(label, id, options) {
  const el = h("select", { id, name: id }, h("option", { value: "" }, "any"),
    options.map((o) => h("option", { value: o }, o)));
  return { el, wrap: h("div", { class: "field" }, h("label", { for: id }, label), el) };
}

function setOptions(el, values, selected) {
  const all = selected && !values.includes(selected) ? [...values, selected] : values;
  el.replaceChildren(h("option", { value: "" }, "any"), ...all.map((v) => h("option", { value: v }, v)));
  el.value = selected;
}

function updateCell(u) {
  if (!u || (u.state === "idle" && !(u.quarantined || []).length)) return "";
  const label = u.state === "quarantined" ? `quarantined ${(u.quarantined || []).join(", ")}`
    : `${u.state}${u.target ? ` → ${u.target}` : ""}`;
  return h("span", { title: u.error || "", class: u.state === "quarantined" ? "pill pill-failed" : "pill" }, label);
}

function versionsView(fleet) {
  const segs = fleet.versions.map((v, i) => ({
    key: `v-${v.version}`, label: v.version || "?", value: v.count, color: PALETTE[i % PALETTE.length],
  }));
  const targets = Object.entries(fleet.targets || {});
  const states = Object.entries(fleet.update_states || {});
  const quarantined = fleet.quarantined || [];
  const side = h("div", { class: "versions-side" },
    h("p", {}, h("strong", {}, "Rollout: "), targets.length
      ? targets.map(([layer, v], i) => [i ? ", " : "", h("span", { class: "tag" }, layer), ` → ${v}`])
      : "no target version set (kanade agent rollout VERSION --group G)"),
    states.length ? h("p", {}, h("strong", {}, "Updating: "),
      states.map(([s, n], i) => `${i ? ", " : ""}${s} ${n}`).join("")) : null,
    quarantined.length ? h("div", { id: "quarantined-agents" },
      notice("error", `${quarantined.length} agent(s) quarantined a release: it failed to start and connect, and is not retried until the target changes.`),
      h("ul", {}, quarantined.map((q) => h("li", { dataset: { pcId: q.pc_id } },
        h("a", { href: `#/agents/${encodeURIComponent(q.pc_id)}` }, q.pc_id),
        ` quarantined ${q.versions.join(", ")} (running ${q.running || "?"})`,
        q.error ? h("span", { class: "muted" }, ` — ${q.error}`) : null)))) : null,
    h("p", { class: "muted" }, `${(fleet.releases || []).length} release(s) published`));
  return section("Agent versions",
    h("div", { class: "donut-row" },
      donut(segs, { label: "Agent versions", center: fleet.total }),
      legend(segs, { onPick: (s) => `#/agents?version=${encodeURIComponent(s.label)}` }),
      side));
}

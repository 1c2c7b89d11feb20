// Agent detail: heartbeat fields, groups, effective config, inventory facts, recent results.
import { ApiError } from "../api.js";
import {
  bytes, diskFull, facts, fullTime, h, mountInto, notice, pill, resultKind, section, shortId, table, time, yamlish,
} from "../dom.js";

export default {
  title: "Agent",
  async mount(root, [pcId], ctx) {
    const enc = encodeURIComponent(pcId);
    const hb = h("div", { class: "slot" });
    const cfg = h("div", { class: "slot" });
    const inv = h("div", { class: "slot" });
    const res = h("div", { class: "slot" });
    const actions = h("div", { class: "actions" });
    const title = h("h1", {}, "Agent ", h("span", { class: "mono" }, pcId));
    mountInto(root,
      h("p", { class: "crumbs" }, h("a", { href: "#/agents" }, "Agents"), " / ", pcId),
      h("div", { class: "title-row" }, title, actions),
      h("div", { class: "grid grid-2" }, section("Heartbeat", hb), section("Effective config", cfg)),
      section("Inventory and checks", inv),
      section("Recent results", res));

    if (ctx.can("operate") && ctx.has(`POST /api/agents/{pc_id}/ping`)) {
      const out = h("span", { class: "small muted", role: "status" });
      const btn = h("button", {
        type: "button", class: "btn",
        onclick: async () => {
          btn.disabled = true; out.textContent = "pinging…";
          try {
            const pong = await ctx.api.post(`/api/agents/${enc}/ping`);
            out.textContent = pong.rtt_ms !== undefined ? `answered in ${pong.rtt_ms} ms` : "answered";
            loadAgent();
          } catch (err) { out.textContent = err.message; } finally { btn.disabled = false; }
        },
      }, "Ping");
      actions.append(btn, out);
    }

    async function loadAgent() {
      let a;
      let drift = null;
      try {
        a = await ctx.api.get(`/api/agents/${enc}`);
        // Only for an agent that exists: its drift is a 404 otherwise.
        if (ctx.has("GET /api/agents/{pc_id}/drift")) drift = await ctx.api.get(`/api/agents/${enc}/drift`).catch(() => null);
      } catch (err) {
        mountInto(hb, err instanceof ApiError && err.status === 404 && !err.routeMissing
          ? notice("warn", `Agent ${pcId} has never sent a heartbeat.`) : ctx.errorView(err));
        return;
      }
      mountInto(hb, facts([
        ["Status", pill(a.status)],
        ["Data directory", a.disk_full
          ? h("span", {}, diskFull(a), h("span", { class: "muted small" }, ` ${a.disk_error || ""}: new work is refused`))
          : (a.disk_free_bytes != null ? `${bytes(a.disk_free_bytes)} free` : "—")],
        ...(a.held_messages ? [["Held in memory", `${a.held_messages} result message(s) waiting for the disk`]] : []),
        ["Last seen", h("span", {}, time(a.last_seen), h("span", { class: "muted small" }, ` (${fullTime(a.last_seen)})`))],
        ["Hostname", a.hostname],
        ["OS", `${a.os_family} ${a.os_version || ""}`],
        ["Agent version", a.agent_version],
        ["Groups", (a.groups || []).length ? a.groups.map((g) => h("a", { class: "tag", href: `#/agents?group=${encodeURIComponent(g)}` }, g)) : h("span", { class: "muted" }, "none")],
        ["Boot time", a.boot_time ? fullTime(a.boot_time) : "—"],
        ["Agent CPU / RSS", `${(a.cpu_percent ?? 0).toFixed(1)} % / ${bytes(a.rss_bytes)}`],
        ["Running / queued", `${a.running ?? 0} / ${a.queue_length ?? 0}`],
        ["Schedule set applied", a.schedule_set_version ? h("span", { class: "mono" }, shortId(a.schedule_set_version)) : "—"],
        ...(a.schedule_set_expected !== undefined || a.expected_schedule_set_version !== undefined ? [[
          "Schedule set expected", h("span", { class: "mono" }, shortId(a.schedule_set_expected ?? a.expected_schedule_set_version) || "—")]] : []),
        ...(a.drift !== undefined ? [["Drift", a.drift ? pill("failed", "drift") : pill("ok", "in sync")]] : []),
        ...(drift ? [
          ["Schedule set expected", h("span", { class: "mono", title: drift.expected_version }, shortId(drift.expected_version))],
          ["Drift", h("span", { id: "agent-drift" }, drift.drift ? pill("failed", "drift") : pill("ok", "in sync"),
            (drift.expected_schedules || []).length ? [" ", drift.expected_schedules.map((id) => h("a", { class: "tag", href: `#/schedules/${encodeURIComponent(id)}` }, id))] : null)],
        ] : []),
        ["Last command", a.last_command_at ? time(a.last_command_at) : "—"],
        ["First seen", fullTime(a.first_seen)],
      ]));
    }

    async function loadConfig() {
      if (!ctx.has("GET /api/agents/{pc_id}/config")) {
        mountInto(cfg, notice("na", "Not available: this backend has no agent config API."));
        return;
      }
      try {
        const c = await ctx.api.get(`/api/agents/${enc}/config`);
        const values = c.effective ?? c.config ?? c.values ?? c;
        const sources = c.sources ?? c.origin ?? {};
        const rows = Object.entries(values).filter(([, v]) => typeof v !== "object" || v === null);
        mountInto(cfg, rows.length ? table({
          label: "Effective config",
          columns: [{ label: "Setting" }, { label: "Value" }, { label: "From" }],
          rows,
          row: ([k, v]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "mono" }, String(v)),
            h("td", { class: "muted" }, sourceOf(sources[k]))),
        }) : h("pre", { class: "code" }, yamlish(c).trim()),
        (c.warnings || []).map((w) => notice("warn", typeof w === "string" ? w : JSON.stringify(w))));
      } catch (err) { mountInto(cfg, ctx.errorView(err)); }
    }

    async function loadInventory() {
      if (!ctx.has("GET /api/inventory/{pc_id}")) {
        mountInto(inv, notice("na", "Not available: this backend has no inventory API yet."));
        return;
      }
      try {
        const [data, chk] = await Promise.all([
          ctx.api.get(`/api/inventory/${enc}?history_limit=10`),
          ctx.has("GET /api/checks") ? ctx.api.get(`/api/checks?pc_id=${enc}&limit=100`) : null,
        ]);
        const parts = [];
        if (chk) {
          parts.push(h("h3", {}, "Checks"), table({
            label: `Checks of ${pcId}`,
            columns: [{ label: "Check" }, { label: "Status" }, { label: "Detail" }, { label: "Observed" }],
            rows: chk.items, empty: "No check has reported on this PC.",
            row: (c) => h("tr", {}, h("td", {}, c.name),
              h("td", {}, pill({ ok: "ok", fail: "failed", warn: "skipped" }[c.status] || "pending", c.status)),
              h("td", {}, c.detail || ""), h("td", {}, time(c.observed_at))),
          }));
        }
        parts.push(h("h3", {}, "Facts"));
        if (!data.items.length) parts.push(h("p", { class: "muted" }, "No inventory facts reported yet."));
        for (const f of data.items) {
          parts.push(h("div", { class: "inv" },
            h("h4", {}, f.job_id, " ", h("span", { class: "muted small" }, "v", f.version, " · ", time(f.observed_at))),
            facts(Object.entries(f.facts || {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]))));
        }
        const hist = data.history?.items || [];
        if (hist.length) {
          parts.push(h("h3", {}, "History"), table({
            label: `Inventory history of ${pcId}`,
            columns: [{ label: "Observed" }, { label: "Job" }, { label: "Facts" }],
            rows: hist,
            row: (x) => h("tr", {}, h("td", {}, time(x.observed_at)), h("td", {}, x.job_id),
              h("td", { class: "mono small" }, JSON.stringify(x.facts))),
          }));
        }
        mountInto(inv, parts);
      } catch (err) { mountInto(inv, ctx.errorView(err)); }
    }

    async function loadResults() {
      const page = await ctx.api.get(`/api/results?pc_id=${enc}&limit=20`);
      mountInto(res, resultsTable(page.items, `Recent results of ${pcId}`, { showPc: false }));
    }

    const refreshAgent = ctx.refresher(loadAgent, 2000);
    const refreshInventory = ctx.refresher(loadInventory, 3000);
    const refreshResults = ctx.refresher(() => loadResults().catch((e) => mountInto(res, ctx.errorView(e))), 1000);
    await Promise.all([loadAgent(), loadConfig(), loadInventory(), loadResults().catch((e) => mountInto(res, ctx.errorView(e)))]);
    root.dataset.ready = "true";
    return {
      onEvent(ev) {
        if (ev.topic === "resync" || (ev.topic === "agents" && (!ev.pc_ids || ev.pc_ids.includes(pcId)))) refreshAgent();
        if (ev.topic === "results" || ev.topic === "resync") refreshResults();
        if (ev.topic === "results") refreshInventory();
      },
      refresh() { refreshAgent(); refreshResults(); loadConfig(); loadInventory(); },
    };
  },
};

function sourceOf(s) {
  if (!s) return "";
  if (typeof s === "string") return s;
  return s.layer || s.source || JSON.stringify(s);
}

/** Results table, shared with the execution page. */
export function resultsTable(items, label, { showPc = true, showJob = true } = {}) {
  const cols = [
    ...(showPc ? [{ label: "PC" }] : []), { label: "Result" }, ...(showJob ? [{ label: "Job", cls: "hide-sm" }] : []),
    { label: "State" }, { label: "Exit" }, { label: "Duration", cls: "hide-sm" }, { label: "Finished" },
  ];
  return table({
    label, columns: cols, rows: items, empty: "No results yet.",
    row: (r) => {
      const kind = resultKind(r);
      const link = r.result_id
        ? h("a", { href: `#/results/${encodeURIComponent(r.result_id)}`, class: "mono", title: r.result_id }, shortId(r.result_id))
        : h("span", { class: "muted" }, "—");
      return h("tr", { dataset: { pcId: r.pc_id, kind } },
        ...(showPc ? [h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(r.pc_id)}` }, r.pc_id))] : []),
        h("td", {}, link),
        ...(showJob ? [h("td", { class: "hide-sm" }, r.job_id || "")] : []),
        h("td", {}, pill(kind, kind === "ok" ? "finished" : kind.replace("_", " "))),
        h("td", { class: "mono" }, r.exit_code ?? "—"),
        h("td", { class: "hide-sm" }, durationOf(r)),
        h("td", {}, time(r.finished_at)));
    },
  });
}

function durationOf(r) {
  if (!r.started_at || !r.finished_at) return "—";
  const s = (new Date(r.finished_at) - new Date(r.started_at)) / 1000;
  return s < 1 ? `${Math.max(0, Math.round(s * 1000))} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

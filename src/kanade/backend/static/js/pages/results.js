// Results: every pc's result, newest first, searched and filtered on the server (GET
// /api/results: text in pc or job, status, exit code, job, time range) and paged there.
// Filters live in the URL, so a filtered view can be shared.
import { duration, fullTime, h, mountInto, pill, resultKind, shortId, table, time } from "../dom.js";

const PAGE = 50;
const STATUSES = ["ok", "failed", "skipped", "running", "no_result"];
// Time ranges relative to now; "custom" shows from/to inputs.
const RANGES = [["1h", "last hour", 3600], ["24h", "last 24 hours", 86400], ["7d", "last 7 days", 7 * 86400],
  ["30d", "last 30 days", 30 * 86400], ["any", "any time", null], ["custom", "from … to …", null]];
const KEYS = ["q", "status", "exit_code", "job_id", "range", "from", "to"];

export default {
  title: "Results",
  async mount(root, _params, ctx) {
    const f = Object.fromEntries(KEYS.map((k) => [k, ctx.query.get(k) || ""]));
    if (!f.range) f.range = "24h";
    let offset = Number(ctx.query.get("offset") || 0) || 0;
    const el = {
      q: h("input", { id: "res-q", type: "search", placeholder: "pc or job", maxlength: 128, value: f.q }),
      status: h("select", { id: "res-status" }, h("option", { value: "" }, "any"),
        STATUSES.map((s) => h("option", { value: s }, s.replace("_", " ")))),
      exit_code: h("input", { id: "res-exit", type: "number", inputmode: "numeric", step: 1, placeholder: "e.g. 1", value: f.exit_code, class: "narrow" }),
      job_id: h("input", { id: "res-job", type: "search", placeholder: "job id", list: "res-jobs", value: f.job_id }),
      range: h("select", { id: "res-range" }, RANGES.map(([v, label]) => h("option", { value: v }, label))),
      from: h("input", { id: "res-from", type: "datetime-local", value: f.from }),
      to: h("input", { id: "res-to", type: "datetime-local", value: f.to }),
    };
    el.status.value = f.status;
    el.range.value = f.range;
    const jobs = h("datalist", { id: "res-jobs" });
    const custom = h("div", { class: "field-group", hidden: f.range !== "custom" },
      field("From", el.from), field("To", el.to));
    const count = h("p", { class: "muted small", id: "results-count", "aria-live": "polite" });
    const slot = h("div", { class: "slot" });
    const pager = h("div", { class: "pager" });
    mountInto(root, h("h1", {}, "Results"),
      h("form", { class: "filters", role: "search", "aria-label": "Filter results", onsubmit: (e) => { e.preventDefault(); apply(); } },
        field("Search", el.q), field("Status", el.status), field("Exit code", el.exit_code),
        field("Job", el.job_id), jobs, field("Time", el.range), custom,
        h("button", { type: "submit", class: "btn-ghost" }, "Filter"),
        h("button", { type: "button", class: "btn-ghost", onclick: clear }, "Clear")),
      count, slot, pager);
    for (const k of ["status", "range", "from", "to"]) el[k].addEventListener("change", apply);
    ctx.api.get("/api/jobs").then((d) => {
      jobs.replaceChildren(...d.items.map((j) => h("option", { value: j.id })));
    }).catch(() => {});

    function clear() {
      for (const k of KEYS) { f[k] = ""; if (el[k]) el[k].value = ""; }
      f.range = "24h"; el.range.value = "24h";
      apply();
    }

    function apply() {
      for (const k of KEYS) f[k] = el[k].value.trim();
      custom.hidden = f.range !== "custom";
      offset = 0;
      const p = new URLSearchParams();
      for (const k of KEYS) if (f[k] && !(k === "range" && f[k] === "24h")) p.set(k, f[k]);
      history.replaceState(null, "", `#/results${p.toString() ? `?${p}` : ""}`);
      load();
    }

    /** The API query of the current filters (the time range as since/until). */
    function query() {
      const p = new URLSearchParams({ limit: PAGE, offset });
      if (f.q) p.set("q", f.q);
      if (f.status) p.set("status", f.status);
      if (f.exit_code !== "") p.set("exit_code", f.exit_code);
      if (f.job_id) p.set("job_id", f.job_id);
      const range = RANGES.find(([v]) => v === f.range);
      if (range && range[2]) p.set("since", new Date(Date.now() - range[2] * 1000).toISOString());
      if (f.range === "custom") {
        if (f.from) p.set("since", new Date(f.from).toISOString());
        if (f.to) p.set("until", new Date(f.to).toISOString());
      }
      return p;
    }

    let seq = 0; // a slower answer to an older query must not overwrite a newer one
    async function load() {
      const mine = ++seq;
      try {
        const page = await ctx.api.get(`/api/results?${query()}`);
        if (mine !== seq) return;
        count.textContent = page.total
          ? `${offset + 1}–${offset + page.items.length} of ${page.total} results`
          : "No results match.";
        mountInto(slot, resultsList(page.items));
        mountInto(pager,
          h("button", { type: "button", class: "btn-ghost", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "← Newer"),
          h("span", { class: "muted small" }, page.total ? `page ${Math.floor(offset / PAGE) + 1} of ${Math.ceil(page.total / PAGE)}` : ""),
          h("button", { type: "button", class: "btn-ghost", disabled: offset + PAGE >= page.total, onclick: () => { offset += PAGE; load(); } }, "Older →"));
        root.dataset.ready = "true";
      } catch (err) {
        if (mine !== seq) return;
        count.textContent = "";
        mountInto(slot, ctx.errorView(err));
      }
    }

    const refresh = ctx.refresher(load, 1000);
    await load();
    return {
      // New results show up on the first page only; an older page stays put while read.
      onEvent(ev) { if (offset === 0 && ["results", "resync"].includes(ev.topic)) refresh(); },
      refresh,
    };
  },
};

function field(label, input) {
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}

function resultsList(items) {
  return table({
    label: "Results",
    stack: true,
    columns: [{ label: "Recorded" }, { label: "PC" }, { label: "Job" }, { label: "Status" }, { label: "Exit" },
      { label: "Duration" }, { label: "Result" }, { label: "Execution" }],
    rows: items,
    empty: "No results match these filters.",
    row: (r) => {
      const kind = resultKind(r);
      return h("tr", { dataset: { resultId: r.result_id, pcId: r.pc_id, kind } },
        h("td", { title: fullTime(r.recorded_at), class: "when" }, time(r.recorded_at)),
        h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(r.pc_id)}` }, r.pc_id)),
        h("td", {}, r.job_id.startsWith("adhoc-") ? h("span", { class: "muted", title: r.job_id }, "ad-hoc script")
          : [h("a", { href: `#/jobs/${encodeURIComponent(r.job_id)}` }, r.job_id), h("span", { class: "muted small" }, ` v${r.version}`)]),
        h("td", {}, pill(kind, kind.replace("_", " "))),
        h("td", { class: "mono" }, r.exit_code ?? "—"),
        h("td", {}, duration(r.started_at, r.finished_at)),
        h("td", {}, h("a", { href: `#/results/${encodeURIComponent(r.result_id)}`, class: "mono", title: r.result_id }, shortId(r.result_id))),
        h("td", {}, h("a", { href: `#/executions/${encodeURIComponent(r.exec_id)}`, class: "mono", title: r.exec_id }, shortId(r.exec_id))));
    },
  });
}

// Result detail: stdout/stderr, exit code, timings, skip reason / note, full output link.
import { bytes, duration, facts, fullTime, h, mountInto, notice, pill, resultKind, section } from "../dom.js";

export default {
  title: "Result",
  async mount(root, [resultId], ctx) {
    const enc = encodeURIComponent(resultId);
    const body = h("div", { class: "slot" });
    mountInto(root, body);

    async function load() {
      const r = await ctx.api.get(`/api/results/${enc}`);
      const kind = resultKind(r);
      mountInto(body,
        h("p", { class: "crumbs" },
          h("a", { href: "#/executions" }, "Executions"), " / ",
          h("a", { href: `#/executions/${encodeURIComponent(r.exec_id)}` }, r.exec_id), " / ", r.pc_id),
        h("h1", {}, "Result on ", h("a", { href: `#/agents/${encodeURIComponent(r.pc_id)}` }, r.pc_id), " ", pill(kind, kind === "ok" ? "exit 0" : kind)),
        r.skipped ? notice("warn", `Skipped (exit ${r.exit_code}): ${r.note || firstLine(r.stderr) || "no reason given"}`) : null,
        !r.skipped && r.note ? notice("info", r.note) : null,
        section("Details", facts([
          ["Result id", h("span", { class: "mono" }, r.result_id)],
          ["Exit code", h("strong", { class: `mono txt-${kind}`, id: "exit-code" }, r.exit_code ?? "—")],
          ["State", r.state],
          ["Job", h("span", {}, r.job_id, h("span", { class: "muted" }, ` v${r.version}`))],
          ["Started", fullTime(r.started_at)],
          ["Finished", fullTime(r.finished_at)],
          ["Duration", duration(r.started_at, r.finished_at)],
          ["Attempts", String(r.attempts ?? 1)],
          ["Recorded", fullTime(r.recorded_at)],
          ...(r.schedule_id ? [["Schedule", `${r.schedule_id}${r.nominal_time ? ` @ ${fullTime(r.nominal_time)}` : ""}`]] : []),
        ])),
        stream("stdout", r, ctx, enc),
        stream("stderr", r, ctx, enc));
      root.dataset.ready = "true";
      return r;
    }

    const first = await load();
    const refresh = ctx.refresher(() => load().catch((e) => mountInto(body, ctx.errorView(e))), 500);
    return {
      // An in-flight row becomes finished (or a reaped row is overwritten) later.
      onEvent(ev) {
        if (ev.topic === "results" && first.state !== "finished"
          && (!ev.exec_ids || ev.exec_ids.includes(first.exec_id))) refresh();
      },
      refresh: () => { if (first.state !== "finished") refresh(); },
    };
  },
};

function firstLine(s) { return (s || "").split("\n").find((l) => l.trim()) || ""; }

function stream(name, r, ctx, enc) {
  const text = r[name] || "";
  const size = r[`${name}_bytes`];
  const ref = r[`${name}_ref`];
  const pre = h("pre", {
    class: `output output-${name}`, tabindex: "0",
    "aria-label": name === "stdout" ? "Standard output" : "Standard error",
  }, text || "");
  const extra = [];
  if (ref) {
    if (ctx.has("GET /api/results/{result_id}/output/{stream}")) {
      const out = h("span", { class: "small muted", role: "status" });
      const btn = h("button", {
        type: "button", class: "btn-ghost",
        onclick: async () => {
          btn.disabled = true; out.textContent = "loading…";
          try {
            const full = await ctx.api.text(`/api/results/${enc}/output/${name}`);
            pre.textContent = full;
            const url = URL.createObjectURL(new Blob([full], { type: "text/plain" }));
            out.replaceChildren(`${bytes(full.length)} loaded · `,
              h("a", { href: url, download: `${r.result_id}.${name}.txt` }, "download"));
          } catch (err) { out.textContent = err.message; btn.disabled = false; }
        },
      }, `Load full ${name}`);
      extra.push(notice("info", `Output was capped: ${bytes(size)} in total; the full text is in the object store.`), h("p", {}, btn, " ", out));
    } else {
      extra.push(notice("na", `Output was capped (${bytes(size)} in total); full output is not available from this backend.`));
    }
  }
  return section(name, text ? pre : h("p", { class: "muted" }, `(no ${name})`), extra);
}

// Ad-hoc "run a script" (POST /api/run), then follow the execution live.
import { h, mountInto, notice, section } from "../dom.js";
import { field, showError, targetFieldset } from "../forms.js";

const SHELLS = ["sh", "bash", "python", "pwsh", "powershell", "cmd"];

export default {
  title: "Run a script",
  async mount(root, _params, ctx) {
    if (!ctx.can("operate")) {
      mountInto(root, h("h1", {}, "Run a script"),
      preset.length ? notice("info", `On the ${preset.length} agent(s) selected on the agents page (PCs below).`) : null, notice("info", "Your role can read results but not run scripts."));
      return {};
    }
    const script = h("textarea", { id: "run-script", name: "script", rows: 8, spellcheck: "false", class: "mono", required: true, placeholder: "echo hello from $(hostname)" });
    const shell = h("select", { id: "run-shell", name: "shell" }, SHELLS.map((s) => h("option", { value: s }, s)));
    const timeout = h("input", { id: "run-timeout", name: "timeout", type: "text", value: "60s" });
    // From the agents page: the pcs selected there (#/run?pcs=a,b).
    const preset = (ctx.query.get("pcs") || "").split(",").map((x) => x.trim()).filter(Boolean);
    const target = targetFieldset(ctx, { prefix: "run", pcs: preset });
    const out = h("div", { class: "form-out", "aria-live": "polite" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Run script");
    mountInto(root, h("h1", {}, "Run a script"),
      preset.length ? notice("info", `On the ${preset.length} agent(s) selected on the agents page (PCs below).`) : null,
      section("Ad-hoc script", h("form", {
        "aria-label": "Run a script",
        onsubmit: async (e) => {
          e.preventDefault();
          const missing = target.error();
          if (missing) { out.replaceChildren(notice("error", missing)); return; }
          submit.disabled = true;
          try {
            const created = await ctx.api.post("/api/run", {
              script: script.value, shell: shell.value, timeout: timeout.value.trim() || "60s", target: target.value(),
            });
            ctx.navigate(`executions/${encodeURIComponent(created.exec_id)}`);
          } catch (err) { showError(out, err); submit.disabled = false; }
        },
      },
      field("Script", script),
      h("div", { class: "row" }, field("Shell", shell), field("Timeout", timeout, "e.g. 30s, 10m")),
      target.el, submit, out)));
    root.dataset.ready = "true";
    return {};
  },
};

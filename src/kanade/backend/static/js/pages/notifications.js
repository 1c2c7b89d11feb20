// Notifications (docs/notifications.md): webhooks told about failures, with their delivery
// status, and the recent deliveries (attempts, status code, error). Everyone reads; admins add,
// test, switch on/off, remove webhooks and retry failed deliveries. Secrets are never shown:
// the API gives a masked URL and whether the webhook signs. Live: every change and every
// delivery attempt publishes "notify".
import { h, mountInto, notice, pill, section, shortId, table, time } from "../dom.js";
import { field, showError } from "../forms.js";

const STATUS_KIND = { pending: "pending", delivered: "ok", failed: "failed" };
const PAGE = 50;

export default {
  title: "Notifications",
  async mount(root, _params, ctx) {
    if (!ctx.has("GET /api/notify/webhooks")) {
      mountInto(root, h("h1", {}, "Notifications"), notice("na", "Not available: this backend has no notification API yet."));
      return {};
    }
    const admin = ctx.can("admin");
    const hooksSlot = h("div", { class: "slot", id: "webhooks" });
    const deliveriesSlot = h("div", { class: "slot", id: "deliveries" });
    const status = h("select", { id: "delivery-status" }, h("option", { value: "" }, "any"),
      ["pending", "delivered", "failed"].map((s) => h("option", { value: s }, s)));
    status.value = ctx.query.get("status") || "";
    const kinds = await ctx.api.get("/api/notify/kinds").then((d) => d.items, () => []);
    mountInto(root, h("h1", {}, "Notifications"),
      h("p", { class: "muted small" }, "Webhooks hear of failures without anyone watching this page: a generic JSON POST (signed with HMAC-SHA256 when it has a secret) or a Slack-compatible message. ",
        "Delivered by the backend holding the scheduler lease, retried with backoff. CLI: ", h("code", {}, "kanade notify"), "."),
      section("Webhooks", hooksSlot),
      admin ? section("Add a webhook", addForm(ctx, kinds, () => refresh())) : null,
      section("Recent deliveries",
        h("form", { class: "filters", role: "search", "aria-label": "Filter deliveries", onsubmit: (e) => e.preventDefault() },
          h("div", { class: "field" }, h("label", { for: "delivery-status" }, "Status"), status)),
        deliveriesSlot));
    status.addEventListener("change", () => {
      history.replaceState(null, "", `#/notifications${status.value ? `?status=${status.value}` : ""}`);
      refresh();
    });

    async function act(work) {
      try { await work(); } catch (err) { showError(hooksSlot.querySelector(".form-out") || hooksSlot, err); }
      refresh();
    }

    async function load() {
      const p = new URLSearchParams({ limit: PAGE });
      if (status.value) p.set("status", status.value);
      const [hooks, sent] = await Promise.all([
        ctx.api.get("/api/notify/webhooks"), ctx.api.get(`/api/notify/deliveries?${p}`),
      ]);
      mountInto(hooksSlot, webhooksTable(hooks.items, admin, act, ctx), h("div", { class: "form-out", "aria-live": "polite" }));
      mountInto(deliveriesSlot, deliveriesTable(sent.items, admin, act, ctx),
        sent.total > sent.items.length ? h("p", { class: "muted small" }, `${sent.items.length} of ${sent.total} shown (newest first).`) : null);
      root.dataset.ready = "true";
    }
    const refresh = ctx.refresher(() => load().catch((e) => mountInto(hooksSlot, ctx.errorView(e))), 500);
    try { await load(); } catch (e) { mountInto(hooksSlot, ctx.errorView(e)); }
    return {
      onEvent(ev) { if (["notify", "resync"].includes(ev.topic)) refresh(); },
      refresh,
    };
  },
};

/** On a phone each row becomes a card: the cells stack, each under its column's name. */
function cards(wrap) {
  const t = wrap.querySelector("table");
  t.classList.add("cards-sm");
  const labels = [...t.querySelectorAll("thead th")].map((th) => th.textContent);
  t.querySelectorAll("tbody tr").forEach((tr) => {
    [...tr.children].forEach((td, i) => { if (labels[i] && !td.classList.contains("empty")) td.dataset.label = labels[i]; });
  });
  return wrap;
}

function lastAttempt(last) {
  if (!last) return h("span", { class: "muted" }, "—");
  const what = last.status_code ? `HTTP ${last.status_code}` : (last.error || "");
  return h("span", {}, pill(STATUS_KIND[last.status] || "pending", last.status), " ",
    h("span", { class: "small", title: last.error || "" }, what), " ", time(last.at));
}

function webhooksTable(items, admin, act, ctx) {
  return cards(table({
    label: "Webhooks",
    columns: [
      { label: "Name" }, { label: "Where" }, { label: "Events", cls: "hide-sm" }, { label: "State" },
      { label: "Deliveries" }, { label: "Last attempt" }, admin ? { label: "Actions" } : null,
    ].filter(Boolean),
    rows: items,
    empty: admin ? "No webhook yet: add one below." : "No webhook yet (an admin adds them).",
    row: (w) => h("tr", { dataset: { webhook: w.id } },
      h("td", {}, h("strong", {}, w.id), h("div", { class: "muted small" }, w.kind === "slack" ? "Slack" : "generic JSON")),
      h("td", { class: "mono small details" }, w.url, w.has_secret ? [" ", h("span", { class: "tag", title: "Signed with HMAC-SHA256 (X-Kanade-Signature)" }, "signed")] : null),
      h("td", { class: "hide-sm small" }, w.events.map((e) => h("span", { class: "tag" }, e)),
        w.events.includes("agent.offline") ? h("div", { class: "muted small" }, `offline after ${w.offline_after}`) : null),
      h("td", { class: "state" }, w.enabled ? pill("ok", "enabled") : pill("pending", "disabled")),
      h("td", { class: "counts small" },
        `${w.deliveries.delivered} delivered`,
        w.deliveries.pending ? h("div", {}, `${w.deliveries.pending} pending`) : null,
        w.deliveries.failed ? h("div", { class: "txt-failed" }, `${w.deliveries.failed} failed`) : null),
      h("td", { class: "last" }, lastAttempt(w.last_delivery)),
      admin ? h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", class: "btn", "data-action": "test", onclick: () => act(() => ctx.api.post(`/api/notify/webhooks/${encodeURIComponent(w.id)}/test`)) }, "Send test"),
        h("button", { type: "button", class: "btn-ghost", "data-action": "toggle",
          onclick: () => act(() => patch(ctx, w.id, { enabled: !w.enabled })) }, w.enabled ? "Disable" : "Enable"),
        h("button", { type: "button", class: "btn-danger", "data-action": "delete",
          onclick: () => { if (window.confirm(`Remove webhook ${w.id}? Its unsent deliveries are dropped.`)) act(() => ctx.api.del(`/api/notify/webhooks/${encodeURIComponent(w.id)}`)); } }, "Remove"))) : null),
  }));
}

function patch(ctx, id, body) {
  return ctx.api.patch(`/api/notify/webhooks/${encodeURIComponent(id)}`, body);
}

function deliveriesTable(items, admin, act, ctx) {
  return cards(table({
    label: "Deliveries",
    columns: [
      { label: "When" }, { label: "Webhook" }, { label: "What" }, { label: "Status" },
      { label: "Attempts", cls: "hide-sm" }, { label: "Last answer" }, { label: "Next", cls: "hide-sm" },
    ],
    rows: items,
    empty: "Nothing sent yet.",
    row: (d) => h("tr", { dataset: { delivery: d.delivery_id, status: d.status } },
      h("td", {}, time(d.last_attempt_at || d.created_at)),
      h("td", {}, d.webhook),
      h("td", { class: "details small" }, h("span", { class: "tag" }, d.kind), d.summary,
        h("div", { class: "muted small mono", title: d.delivery_id }, shortId(d.delivery_id))),
      h("td", { class: "status" }, pill(STATUS_KIND[d.status] || "pending", d.status),
        admin && d.status === "failed"
          ? [" ", h("button", { type: "button", class: "btn-ghost", "data-action": "retry", onclick: () => act(() => ctx.api.post(`/api/notify/deliveries/${encodeURIComponent(d.delivery_id)}/retry`)) }, "Retry")]
          : null),
      h("td", { class: "hide-sm" }, String(d.attempts)),
      h("td", { class: "details small", title: (d.attempt_log || []).map((a) => `#${a.attempt} ${a.status_code ?? "-"} ${a.error ?? ""}`).join("\n") },
        d.last_status_code ? `HTTP ${d.last_status_code}` : "—", d.last_error ? h("div", { class: "txt-failed" }, d.last_error) : null),
      h("td", { class: "hide-sm" }, d.next_attempt_at ? time(d.next_attempt_at) : h("span", { class: "muted" }, "—"))),
  }));
}

function addForm(ctx, kinds, done) {
  const name = h("input", { id: "hook-id", name: "id", type: "text", required: true, placeholder: "e.g. ops-alerts", autocomplete: "off" });
  const kind = h("select", { id: "hook-kind", name: "kind" }, h("option", { value: "generic" }, "generic JSON"), h("option", { value: "slack" }, "Slack-compatible"));
  const url = h("input", { id: "hook-url", name: "url", type: "url", required: true, placeholder: "https://alerts.example/hook", autocomplete: "off" });
  const secret = h("input", { id: "hook-secret", name: "secret", type: "password", placeholder: "16+ characters (generic only)", autocomplete: "new-password" });
  const offline = h("input", { id: "hook-offline", name: "offline_after", type: "text", value: "10m" });
  const boxes = kinds.map((k) => {
    const id = `hook-ev-${k.kind.replace(/\W/g, "-")}`;
    return h("div", { class: "check", title: k.description },
      h("input", { type: "checkbox", id, name: "events", value: k.kind, checked: true }), h("label", { for: id }, k.kind));
  });
  kind.addEventListener("change", () => { secret.disabled = kind.value === "slack"; });
  const out = h("div", { class: "form-out", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Add webhook");
  return h("form", {
    "aria-label": "Add a webhook",
    onsubmit: async (e) => {
      e.preventDefault();
      const body = {
        id: name.value.trim(), kind: kind.value, url: url.value.trim(),
        events: boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
        offline_after: offline.value.trim() || "10m",
      };
      if (secret.value && kind.value !== "slack") body.secret = secret.value;
      submit.disabled = true;
      try {
        await ctx.api.post("/api/notify/webhooks", body);
        e.target.reset();
        secret.disabled = false;
        out.replaceChildren(notice("info", `Webhook ${body.id} added. Send it a test from the table above.`));
        done();
      } catch (err) { showError(out, err); }
      submit.disabled = false;
    },
  },
  h("div", { class: "row" }, field("Name", name), field("Kind", kind)),
  h("div", { class: "row" }, field("URL", url, "Kept secret: shown masked once saved."), field("Signing secret", secret, "HMAC-SHA256 key; never shown again.")),
  h("fieldset", { class: "target" }, h("legend", {}, "Events"), boxes,
    field("Agent offline after", offline, "e.g. 10m, 1h (1m–30d)")),
  submit, out);
}

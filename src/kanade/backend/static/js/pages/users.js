// Users (admin; /api/users): list, create, change a role, disable / enable, reset a
// password, delete. Changes apply to the user's next request (users are looked up on every
// request); the last admin who can sign in can be neither demoted, disabled nor deleted.
import { h, mountInto, notice, pill, section, table, time } from "../dom.js";
import { field, showError } from "../forms.js";

const ROLES = ["viewer", "operator", "admin"];

export default {
  title: "Users",
  async mount(root, _params, ctx) {
    if (!ctx.can("admin")) {
      mountInto(root, h("h1", {}, "Users"), notice("info", "Only admins manage users."));
      root.dataset.ready = "true";
      return {};
    }
    if (!ctx.has("GET /api/users")) {
      mountInto(root, h("h1", {}, "Users"), notice("na", "Not available: this backend has no users API."));
      return {};
    }
    const slot = h("div", { class: "slot" });
    const out = h("div", { class: "form-out", "aria-live": "polite", id: "users-out" });
    const canPatch = ctx.has("PATCH /api/users/{username}");
    mountInto(root, h("h1", {}, "Users"),
      ctx.session.authEnabled ? null : notice("warn", "Auth is disabled on this backend: users take effect once it runs with --auth jwt."),
      createForm(ctx, () => load()),
      section("Users", out, slot));

    async function change(username, body, what) {
      try {
        await ctx.api.patch(`/api/users/${encodeURIComponent(username)}`, body);
        out.replaceChildren(notice("info", `${username}: ${what}.`));
      } catch (err) { showError(out, err); }
      await load();
    }

    async function remove(username) {
      if (!window.confirm(`Delete user ${username}? Their tokens stop working at once.`)) return;
      try {
        await ctx.api.del(`/api/users/${encodeURIComponent(username)}`);
        out.replaceChildren(notice("info", `${username}: deleted.`));
      } catch (err) { showError(out, err); }
      await load();
    }

    function row(u) {
      const disabled = Boolean(u.disabled_at);
      const role = h("select", { "aria-label": `Role of ${u.username}`, disabled: !canPatch || null, class: "role-select" },
        ROLES.map((r) => h("option", { value: r }, r)));
      role.value = u.role;
      role.addEventListener("change", () => change(u.username, { role: role.value }, `role set to ${role.value}`));
      const pw = h("input", { type: "password", autocomplete: "new-password", placeholder: "new password", "aria-label": `New password for ${u.username}`, minlength: 8 });
      const reset = h("form", {
        class: "inline-form", hidden: true,
        onsubmit: (e) => { e.preventDefault(); change(u.username, { password: pw.value }, "password reset"); },
      }, pw, h("button", { type: "submit", class: "btn" }, "Set password"));
      return h("tr", { dataset: { username: u.username, state: disabled ? "disabled" : "active" } },
        h("td", {}, h("strong", {}, u.username), u.username === ctx.session.user ? h("span", { class: "muted small" }, " (you)") : null),
        h("td", {}, role),
        h("td", {}, disabled
          ? [pill("cancelled", "disabled"), h("span", { class: "muted small" }, ` by ${u.disabled_by || "?"} `), time(u.disabled_at)]
          : pill("ok", "active")),
        h("td", {}, time(u.created_at), h("span", { class: "muted small" }, ` by ${u.created_by}`)),
        h("td", { class: "row-actions" }, canPatch ? [
          h("button", {
            type: "button", class: disabled ? "btn" : "btn btn-danger",
            onclick: () => change(u.username, { disabled: !disabled }, disabled ? "enabled" : "disabled"),
          }, disabled ? "Enable" : "Disable"),
          h("button", { type: "button", class: "btn-ghost", onclick: () => { reset.hidden = !reset.hidden; if (!reset.hidden) pw.focus(); } }, "Reset password"),
          reset,
        ] : null,
        h("button", { type: "button", class: "btn-ghost", onclick: () => remove(u.username) }, "Delete")));
    }

    async function load() {
      try {
        const page = await ctx.api.get("/api/users");
        mountInto(slot, table({
          label: "Users", stack: true,
          columns: [{ label: "User" }, { label: "Role" }, { label: "State" }, { label: "Created" }, { label: "Actions" }],
          rows: page.items, row, empty: "No users yet: create the first one above.",
        }));
        root.dataset.ready = "true";
      } catch (err) { mountInto(slot, ctx.errorView(err)); }
    }

    await load();
    return { refresh: load };
  },
};

function createForm(ctx, done) {
  const username = h("input", { id: "new-username", name: "username", autocomplete: "off", required: true, maxlength: 64 });
  const password = h("input", { id: "new-password", name: "password", type: "password", autocomplete: "new-password", required: true });
  const role = h("select", { id: "new-role", name: "role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const out = h("div", { class: "form-out", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create user");
  return section("New user", h("form", {
    "aria-label": "Create a user",
    onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      try {
        await ctx.api.post("/api/users", { username: username.value.trim(), password: password.value, role: role.value });
        out.replaceChildren(notice("info", `${username.value.trim()} created as ${role.value}.`));
        username.value = ""; password.value = "";
        await done();
      } catch (err) { showError(out, err); }
      submit.disabled = false;
    },
  }, h("div", { class: "row" }, field("Username", username), field("Password", password), field("Role", role)), submit, out));
}

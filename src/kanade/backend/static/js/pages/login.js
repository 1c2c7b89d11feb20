// Login: username/password → bearer token (sessionStorage), or paste an API token.
import { api, ApiError, auth } from "../api.js";
import { h, mountInto, notice } from "../dom.js";

export default {
  title: "Sign in",
  async mount(root, _params, ctx) {
    const next = ctx.query.get("next") || "";
    if (!ctx.session.authEnabled) {
      mountInto(root, h("div", { class: "login" }, h("h1", {}, "Sign in"),
        notice("info", "Authentication is disabled on this backend: everyone has full access."),
        h("p", {}, h("a", { href: "#/" }, "Go to the overview"))));
      return {};
    }
    const out = h("div", { "aria-live": "assertive" });
    const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
    const pass = h("input", { id: "login-pass", name: "password", type: "password", autocomplete: "current-password", required: true });
    const token = h("input", { id: "login-token", name: "token", type: "password", autocomplete: "off" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
    const done = async () => { await ctx.onLogin(next); };
    const canLogin = ctx.has("POST /api/auth/login");
    mountInto(root, h("div", { class: "login card" },
      h("h1", {}, "Sign in to kanade"),
      canLogin ? h("form", {
        "aria-label": "Sign in",
        onsubmit: async (e) => {
          e.preventDefault();
          submit.disabled = true; out.replaceChildren();
          try {
            const r = await api.post("/api/auth/login", { username: user.value.trim(), password: pass.value }, { quiet401: true });
            auth.token = r.token;
            await done();
          } catch (err) {
            out.replaceChildren(notice("error", err instanceof ApiError && err.status === 401 ? "Wrong username or password." : err.message));
            submit.disabled = false;
          }
        },
      },
      h("div", { class: "field" }, h("label", { for: "login-user" }, "Username"), user),
      h("div", { class: "field" }, h("label", { for: "login-pass" }, "Password"), pass),
      submit) : notice("na", "Password login is not available on this backend."),
      h("details", { class: "token-login" }, h("summary", {}, "Use an API token instead"),
        h("form", {
          "aria-label": "Sign in with a token",
          onsubmit: async (e) => {
            e.preventDefault();
            auth.token = token.value.trim();
            try {
              await api.get("/api/auth/me", { quiet401: true });
              await done();
            } catch (err) {
              auth.token = null;
              out.replaceChildren(notice("error", err.status === 401 ? "That token is not valid." : err.message));
            }
          },
        }, h("div", { class: "field" }, h("label", { for: "login-token" }, "API token"), token),
        h("button", { type: "submit", class: "btn" }, "Use token"))),
      out));
    user.focus();
    return {};
  },
};

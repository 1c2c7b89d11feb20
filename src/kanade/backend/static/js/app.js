// The dashboard shell: session (auth), hash router, page lifecycle, live events.
import { api, ApiError, auth, discoverRoutes, onUnauthorized } from "./api.js";
import { h, mountInto, notice } from "./dom.js";
import * as live from "./live.js";
import overview from "./pages/overview.js";
import agents from "./pages/agents.js";
import agentDetail from "./pages/agent.js";
import executions from "./pages/executions.js";
import executionDetail from "./pages/execution.js";
import result from "./pages/result.js";
import jobs from "./pages/jobs.js";
import jobDetail from "./pages/job.js";
import run from "./pages/run.js";
import audit from "./pages/audit.js";
import schedules from "./pages/schedules.js";
import scheduleDetail from "./pages/schedule.js";
import rollouts from "./pages/rollouts.js";
import rolloutDetail from "./pages/rollout.js";
import approvals from "./pages/approvals.js";
import login from "./pages/login.js";
import enrolment from "./pages/enrolment.js";
import notifications from "./pages/notifications.js";

const ROUTES = [
  [/^$/, overview, "overview"],
  [/^agents$/, agents, "agents"],
  [/^agents\/(.+)$/, agentDetail, "agents"],
  [/^executions$/, executions, "executions"],
  [/^executions\/(.+)$/, executionDetail, "executions"],
  [/^results\/(.+)$/, result, "executions"],
  [/^jobs$/, jobs, "jobs"],
  [/^jobs\/(.+)$/, jobDetail, "jobs"],
  [/^schedules$/, schedules, "schedules"],
  [/^schedules\/(.+)$/, scheduleDetail, "schedules"],
  [/^rollouts$/, rollouts, "rollouts"],
  [/^rollouts\/(.+)$/, rolloutDetail, "rollouts"],
  [/^approvals$/, approvals, "approvals"],
  [/^run$/, run, "run"],
  [/^audit$/, audit, "audit"],
  [/^enrolment$/, enrolment, "enrolment"],
  [/^notifications$/, notifications, "notifications"],
  [/^login$/, login, "login"],
];

const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
const FALLBACK_REFRESH_MS = 60_000; // slow safety net; SSE does the real work

const session = {
  routes: null, // Set of "GET /api/x" or null when unknown
  authEnabled: false,
  authKnown: false,
  user: null,
  role: "admin",
};

let current = null; // {dispose, onEvent, refresh}
let renderSeq = 0;

/** Does the backend serve this route? (unknown → assume yes and let the call tell) */
function has(route) {
  return session.routes === null || session.routes.has(route);
}

function can(action) {
  const need = { operate: "operator", admin: "admin", read: "viewer" }[action] || "admin";
  return (ROLE_RANK[session.role] || 0) >= ROLE_RANK[need];
}

/** Coalescing refresher: at most one run in flight, one queued; never overlapping. */
function refresher(fn, minGapMs = 300) {
  let running = false; let again = false; let last = 0; let timer = null; let dead = false;
  const trigger = () => {
    if (dead) return;
    if (running) { again = true; return; }
    const wait = Math.max(0, last + minGapMs - Date.now());
    if (wait > 0) { clearTimeout(timer); timer = setTimeout(trigger, wait); return; }
    running = true;
    last = Date.now();
    Promise.resolve().then(fn).catch((e) => console.warn("refresh failed", e)).finally(() => {
      running = false;
      if (again) { again = false; trigger(); }
    });
  };
  trigger.stop = () => { dead = true; clearTimeout(timer); };
  return trigger;
}

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [path, query = ""] = raw.split("?");
  return { path: path.replace(/\/$/, ""), query: new URLSearchParams(query) };
}

export function navigate(path) {
  location.hash = `#/${path}`;
}

function errorView(err) {
  if (err instanceof ApiError && err.routeMissing) {
    return notice("na", `Not available: this backend does not serve ${err.message.replace(/^\w+ \w+: /, "")}.`);
  }
  return notice("error", err.message || String(err));
}

async function render() {
  const seq = ++renderSeq;
  const { path, query } = parseHash();
  const main = document.getElementById("main");
  if (current) { current.dispose?.(); current = null; }
  let match = null;
  for (const [re, page, nav] of ROUTES) {
    const m = path.match(re);
    if (m) { match = { page, nav, params: m.slice(1) }; break; }
  }
  document.querySelectorAll("nav.main a").forEach((a) => {
    a.toggleAttribute("aria-current", a.dataset.nav === match?.nav);
    if (a.dataset.nav === match?.nav) a.setAttribute("aria-current", "page");
  });
  document.body.classList.remove("nav-open");
  if (!match) {
    mountInto(main, h("h1", {}, "Not found"), notice("warn", `No page at #/${path}.`));
    return;
  }
  if (session.authEnabled && !session.user && match.page !== login) {
    navigate(`login?next=${encodeURIComponent(path)}`);
    return;
  }
  const root = h("div", { class: "page" });
  mountInto(main, root);
  document.title = `${match.page.title || "kanade"} · kanade`;
  const disposers = [];
  const ctx = {
    api, has, can, navigate, query, session, errorView,
    refresher: (fn, gap) => { const r = refresher(fn, gap); disposers.push(r.stop); return r; },
    onLogin: afterLogin,
  };
  try {
    const handle = (await match.page.mount(root, match.params, ctx)) || {};
    performance.mark(`kanade:rendered:${match.nav}`);
    if (seq !== renderSeq) { handle.dispose?.(); return; }
    const timer = setInterval(() => handle.refresh?.(), FALLBACK_REFRESH_MS);
    const unsub = live.subscribe((ev) => handle.onEvent?.(ev));
    current = {
      dispose: () => { clearInterval(timer); unsub(); disposers.forEach((d) => d()); handle.dispose?.(); },
    };
  } catch (err) {
    if (seq !== renderSeq) return;
    if (err instanceof ApiError && err.status === 401) return; // handled by onUnauthorized
    console.warn(err);
    mountInto(root, errorView(err));
  }
}

function renderSessionBar() {
  const badge = document.getElementById("auth-badge");
  const user = document.getElementById("user");
  const logout = document.getElementById("logout");
  mountInto(badge);
  if (!session.authEnabled) {
    badge.append(h("span", { class: "badge badge-warn", title: "Anyone who can reach this backend is an admin" }, "auth disabled"));
  }
  user.textContent = session.user ? `${session.user} · ${session.role}` : "";
  user.hidden = !session.user;
  logout.hidden = !(session.authEnabled && session.user);
  document.body.dataset.role = session.role;
}

/** Ask the backend who we are. Sets session.{authEnabled, user, role}. */
async function loadSession() {
  session.user = null;
  try {
    const me = await api.get("/api/auth/me", { quiet401: true });
    const mode = me.auth_mode ?? me.mode ?? me.auth;
    session.authEnabled = !(mode === "disabled" || me.auth_enabled === false || me.enabled === false);
    session.role = me.role || "viewer";
    session.user = session.authEnabled ? (me.actor || me.user || me.username || "signed in") : null;
  } catch (err) {
    if (err instanceof ApiError && err.routeMissing) {
      session.authEnabled = false;
      session.role = "admin";
    } else if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      session.authEnabled = true;
      session.role = "viewer";
      auth.token = null;
    } else {
      throw err;
    }
  }
}

async function afterLogin(next) {
  await loadSession();
  renderSessionBar();
  live.connect();
  navigate(next || "");
}

async function logout() {
  if (has("POST /api/auth/logout")) {
    try { await api.post("/api/auth/logout", {}, { quiet401: true }); } catch { /* token may be gone */ }
  }
  auth.token = null;
  live.disconnect();
  session.user = null;
  renderSessionBar();
  navigate("login");
}

async function boot() {
  const statusEl = document.getElementById("live-status");
  document.getElementById("logout").addEventListener("click", logout);
  const toggle = document.querySelector(".nav-toggle");
  toggle.addEventListener("click", () => {
    const open = document.body.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  onUnauthorized(() => {
    if (!session.authEnabled) return;
    auth.token = null;
    session.user = null;
    renderSessionBar();
    const { path } = parseHash();
    if (path !== "login") navigate(`login?next=${encodeURIComponent(path)}`);
  });
  // Both at once: the first paint waits for neither more than it must.
  const [routes, sessionErr] = await Promise.all([
    discoverRoutes(), loadSession().then(() => null, (err) => err),
  ]);
  session.routes = routes;
  if (sessionErr) {
    const err = sessionErr;
    mountInto(document.getElementById("main"), errorView(err));
  }
  session.authKnown = true;
  renderSessionBar();
  // With auth on and nobody signed in, the stream waits for the login (afterLogin).
  if (!session.authEnabled || session.user) live.connect(statusEl);
  else live.disconnect(statusEl);
  window.addEventListener("hashchange", render);
  await render();
}

boot();

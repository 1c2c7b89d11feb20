// The HTTP client: bearer token from sessionStorage, JSON errors, route discovery.

const TOKEN_KEY = "kanade.token";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
  /** The route itself does not exist on this backend (not: the thing was not found). */
  get routeMissing() {
    return (this.status === 404 || this.status === 405)
      && /^(not found|method not allowed): /.test(this.message);
  }
}

export const auth = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(v) {
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

const listeners = { unauthorized: [] };
export function onUnauthorized(fn) { listeners.unauthorized.push(fn); }

async function request(method, path, body, { raw = false, quiet401 = false } = {}) {
  const headers = { Accept: raw ? "text/plain, */*" : "application/json" };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the backend (${e.message})`, null);
  }
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch { /* not JSON */ }
    const msg = data?.error || data?.detail || `${resp.status} ${resp.statusText}`;
    const err = new ApiError(resp.status, typeof msg === "string" ? msg : JSON.stringify(msg), data);
    if (resp.status === 401 && !quiet401) listeners.unauthorized.forEach((fn) => fn(err));
    throw err;
  }
  if (raw) return resp.text();
  if (resp.status === 204) return null;
  return resp.json();
}

export const api = {
  get: (path, opts) => request("GET", path, undefined, opts),
  post: (path, body, opts) => request("POST", path, body ?? {}, opts),
  put: (path, body, opts) => request("PUT", path, body ?? {}, opts),
  patch: (path, body, opts) => request("PATCH", path, body ?? {}, opts),
  del: (path, opts) => request("DELETE", path, undefined, opts),
  text: (path) => request("GET", path, undefined, { raw: true }),
};

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") p.set(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** Which routes this backend has, from its OpenAPI document: "GET /api/audit" → true. */
export async function discoverRoutes() {
  const routes = new Set();
  try {
    const doc = await api.get("/api/openapi.json", { quiet401: true });
    for (const [path, ops] of Object.entries(doc.paths || {})) {
      for (const method of Object.keys(ops)) routes.add(`${method.toUpperCase()} ${path}`);
    }
  } catch {
    return null; // unknown: callers fall back to trying the route
  }
  return routes;
}

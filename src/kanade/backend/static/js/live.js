// Live updates: one EventSource on /api/events. Events are invalidations
// ({topic, exec_ids?, pc_ids?}); pages decide what to refetch. After a reconnect
// ("hello" again) every listener gets {topic: "resync"}: events are not replayed.
import { auth } from "./api.js";

const listeners = new Set();
let source = null;
let helloSeen = false;
let statusEl = null;
let retryTimer = null;

function setStatus(state) {
  if (!statusEl) return;
  statusEl.dataset.state = state;
  statusEl.textContent = { open: "Live", connecting: "Connecting…", down: "Reconnecting…", off: "Not live" }[state];
  statusEl.title = state === "open"
    ? "Live updates are on: pages refresh when the fleet reports"
    : "Live updates are interrupted; retrying";
}

function emit(ev) {
  for (const fn of listeners) {
    try { fn(ev); } catch (e) { console.error("live listener failed", e); }
  }
}

export function connect(el) {
  statusEl = el || statusEl;
  disconnect();
  setStatus("connecting");
  const url = auth.token ? `/api/events?access_token=${encodeURIComponent(auth.token)}` : "/api/events";
  source = new EventSource(url);
  source.onopen = () => setStatus("open");
  source.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    if (ev.topic === "hello") {
      setStatus("open");
      if (helloSeen) emit({ topic: "resync" });
      helloSeen = true;
      return;
    }
    emit(ev);
  };
  source.onerror = () => {
    setStatus("down");
    // The browser retries by itself while the stream is CONNECTING; a CLOSED stream
    // (e.g. 401/403 after a token expired) is retried here, slowly.
    if (source && source.readyState === EventSource.CLOSED) {
      clearTimeout(retryTimer);
      retryTimer = setTimeout(() => connect(), 5000);
    }
  };
}

export function disconnect(el) {
  statusEl = el || statusEl;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  setStatus("off");
}

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Does event `ev` concern exec `id`? (null id list = "many changed" = yes) */
export function touchesExec(ev, id) {
  if (ev.topic === "resync") return true;
  if (ev.topic !== "results" && ev.topic !== "execs") return false;
  return !Array.isArray(ev.exec_ids) || ev.exec_ids.includes(id);
}

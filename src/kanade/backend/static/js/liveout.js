// Live output of a running exec (SPEC §4.12): one EventSource on
// /api/executions/{id}/live while its page is open, rendered as lines into a bounded <pre>.
// Chunks carry data (unlike /api/events, which only says what changed), so this is its own
// stream; it ends when the exec does. A reconnect replays the backend's recent chunks:
// the per-pc seq drops the ones already shown.
import { auth } from "./api.js";
import { h } from "./dom.js";

const MAX_LINES = 2000; // older lines leave the page (the results keep the whole output)
const MAX_PARTIAL = 16 * 1024; // a line without its newline is shown once this long

function kib(n) {
  return n < 1024 ? `${n} bytes` : `${(n / 1024).toFixed(1)} KiB`;
}

/** Follow exec `execId`'s live output: handlers get {state}, lines, and the end. */
export function followOutput(execId, { onLine, onState, onEnd }) {
  const base = `/api/executions/${encodeURIComponent(execId)}/live`;
  const url = auth.token ? `${base}?access_token=${encodeURIComponent(auth.token)}` : base;
  const source = new EventSource(url);
  const nextSeq = new Map(); // pc -> next expected seq
  const partial = new Map(); // `${pc}\n${stream}` -> text without its newline yet
  let closed = false;

  const emit = (pc, stream, text, note = false) => onLine({ pc, stream, text, note });
  const flush = (pc, stream) => {
    const key = `${pc}\n${stream}`;
    const rest = partial.get(key);
    if (rest) emit(pc, stream, rest);
    partial.delete(key);
  };
  const text = (pc, stream, t) => {
    if (!t) return;
    const key = `${pc}\n${stream}`;
    const lines = ((partial.get(key) || "") + t).split("\n");
    const rest = lines.pop();
    for (const line of lines) emit(pc, stream, line);
    if (rest.length >= MAX_PARTIAL) { emit(pc, stream, rest); partial.delete(key); } else if (rest) partial.set(key, rest); else partial.delete(key);
  };
  const close = () => { closed = true; source.close(); };

  source.onopen = () => onState("open");
  source.onerror = () => { if (!closed) onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"); };
  source.addEventListener("chunk", (m) => {
    let c;
    try { c = JSON.parse(m.data); } catch { return; }
    const seen = nextSeq.get(c.pc_id);
    if (seen !== undefined && c.seq < seen) return; // replayed after a reconnect
    if (seen !== undefined && c.seq > seen) emit(c.pc_id, "stderr", `[… ${c.seq - seen} chunk(s) lost on the way …]`, true);
    nextSeq.set(c.pc_id, c.seq + 1);
    for (const stream of ["stdout", "stderr"]) {
      const elided = c[`${stream}_elided`] || 0;
      if (elided) {
        flush(c.pc_id, stream);
        emit(c.pc_id, stream, `[… ${kib(elided)} of ${stream} not shown live (rate cap); the result has the output …]`, true);
      }
      text(c.pc_id, stream, c[stream]);
    }
    if (c.final) { flush(c.pc_id, "stdout"); flush(c.pc_id, "stderr"); }
  });
  source.addEventListener("dropped", (m) => {
    let d = {};
    try { d = JSON.parse(m.data); } catch { /* keep {} */ }
    emit(null, "stderr", `[… ${d.chunks || "some"} chunk(s) missed: this page read too slowly …]`, true);
  });
  source.addEventListener("end", (m) => {
    for (const key of [...partial.keys()]) { const [pc, stream] = key.split("\n"); flush(pc, stream); }
    close();
    let d = {};
    try { d = JSON.parse(m.data); } catch { /* keep {} */ }
    onEnd(d);
  });
  return { close };
}

/** A <pre> that lines are appended to: capped at MAX_LINES, following the bottom while the
 *  reader is there, pc-prefixed when `prefixed`. */
export function outputPane({ prefixed }) {
  const pre = h("pre", { class: "output live-output", id: "live-output", role: "log", "aria-label": "Live output", tabindex: "0" });
  let count = 0;
  return {
    el: pre,
    get lines() { return count; },
    add({ pc, stream, text, note }) {
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      const line = h("span", { class: `live-line${stream === "stderr" ? " live-err" : ""}${note ? " live-note" : ""}`, "data-pc": pc || "" },
        prefixed && pc ? h("span", { class: "live-pc" }, `${pc} | `) : null, text, "\n");
      pre.append(line);
      count += 1;
      if (count > MAX_LINES) { pre.firstChild?.remove(); count -= 1; }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    },
  };
}

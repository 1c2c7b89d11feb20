// Small DOM and formatting helpers shared by every page. No dependencies.

/** h("a", {href: "#/x", class: "y"}, "text", child, [more]) → Element. */
export function h(tag, attrs, ...children) {
  const el = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    // Through the CSSOM: the Content-Security-Policy (style-src 'self') refuses style
    // attributes, not style properties set from our own script.
    else if (k === "style") el.style.cssText = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

const SVG_TAGS = new Set([
  "g", "path", "circle", "rect", "line", "text", "title", "desc", "polyline", "tspan",
]);

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace all children of el. */
export function mountInto(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function pill(status, label) {
  return h("span", { class: `pill pill-${status}` }, label ?? status.replace("_", " "));
}

// A full data directory: the agent refuses new work until it has room (SPEC §7).
export function diskFull(a) {
  const held = a.held_messages ? `; ${a.held_messages} result message(s) held in memory` : "";
  return h("span", { class: "pill pill-failed", "data-badge": "disk-full", title: `${a.disk_error || "disk full"}${held}` }, "disk full");
}

export function ago(iso) {
  if (!iso) return "—";
  const t = new Date(iso).getTime();
  const s = Math.round((Date.now() - t) / 1000);
  const abs = Math.abs(s);
  let v;
  if (abs < 5) v = "just now";
  else if (abs < 60) v = `${abs} s`;
  else if (abs < 3600) v = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) v = `${Math.round(abs / 3600)} h`;
  else v = `${Math.round(abs / 86400)} d`;
  if (v === "just now") return v;
  return s >= 0 ? `${v} ago` : `in ${v}`;
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: fullTime(iso) }, ago(iso));
}

export function fullTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function duration(startIso, endIso) {
  if (!startIso || !endIso) return "—";
  return seconds((new Date(endIso) - new Date(startIso)) / 1000);
}

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s < 1) return `${Math.max(0, Math.round(s * 1000))} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 10)}…` : id;
}

/** A table whose rows come from `rows.map(row)`; wrapped so wide tables scroll by themselves. */
export function table({ label, columns, rows, row, empty = "Nothing here yet." }) {
  const head = h("tr", {}, columns.map((c) =>
    h("th", { scope: "col", class: c.cls || null }, c.label)));
  const body = rows.length
    ? rows.map(row)
    : [h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty))];
  return h("div", { class: "table-wrap" },
    h("table", { "aria-label": label }, h("thead", {}, head), h("tbody", {}, body)));
}

/** Notice box: kind = info | warn | error | na (not available). */
export function notice(kind, text) {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "note" }, text);
}

export function section(title, ...children) {
  const id = `sec-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id },
    h("h2", { id }, title), ...children);
}

/** dl of [label, value] pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

/** Result classification used by charts and pills. */
export function resultKind(r) {
  if (!r || r.state === "pending") return "pending";
  if (r.state === "in_flight") return "running";
  if (r.skipped) return "skipped";
  if (r.state === "reaped") return "failed";
  if (r.state === "no_result") return "no_result"; // never started by the exec's deadline
  return r.exit_code === 0 ? "ok" : "failed";
}

/** A YAML-ish rendering of a JSON document (for reading, not for round trips). */
export function yamlish(value, indent = "") {
  const pad = `${indent}  `;
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every((v) => v === null || typeof v !== "object")) {
      return `[${value.map(scalar).join(", ")}]`;
    }
    return value.map((v) => `\n${indent}- ${yamlish(v, pad).replace(/^\n\s*/, "")}`).join("");
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return "{}";
    return keys.map((k) => {
      const v = value[k];
      if (typeof v === "string" && v.includes("\n")) {
        const body = v.replace(/\n$/, "").split("\n").map((l) => `${pad}${l}`).join("\n");
        return `\n${indent}${k}: |\n${body}`;
      }
      const inner = yamlish(v, pad);
      return `\n${indent}${k}:${inner.startsWith("\n") ? "" : " "}${inner}`;
    }).join("");
  }
  return scalar(value);
}

function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") {
    return /^[\w./@:+-][\w ./@:+-]*$/.test(v) && !/^(true|false|null|yes|no|\d[\d.]*)$/i.test(v)
      ? v : JSON.stringify(v);
  }
  return String(v);
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

/** The wall-clock part of an ISO time that carries its own offset ("2026-11-23T02:30:00+01:00"
 *  → "2026-11-23 02:30"): the time as read in that zone, not in the browser's. */
export function wallClock(iso) {
  if (!iso) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2})?/.exec(iso);
  if (!m) return iso;
  return `${m[1]} ${m[2]}${m[3] && m[3] !== ":00" ? m[3] : ""}`;
}

/** "2026-11-23 01:30 UTC" */
export function utcClock(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${wallClock(d.toISOString())} UTC`;
}

/** A fire time in the schedule's zone, with UTC and "in 3 h" next to it. */
export function zonedTime(local, utc, tz, { relative = true } = {}) {
  if (!utc && !local) return h("span", { class: "muted" }, "—");
  return h("span", { class: "zoned" },
    h("time", { datetime: utc || local, title: `${fullTime(utc || local)} (your browser's time)` },
      wallClock(local || utc), tz ? h("span", { class: "muted small" }, ` ${tz}`) : null),
    h("span", { class: "muted small zoned-utc" }, utcClock(utc || local),
      relative && utc ? ` · ${ago(utc)}` : ""));
}

// Inline SVG charts, generated here (no library). Every chart has role="img", an
// aria-label that states its numbers, and a <title> per mark for hover tooltips.
import { h } from "./dom.js";

export const COLORS = {
  ok: "var(--c-ok)", failed: "var(--c-failed)", skipped: "var(--c-skipped)",
  running: "var(--c-running)", pending: "var(--c-pending)", no_result: "var(--c-missing)",
  alive: "var(--c-ok)", stale: "var(--c-skipped)", offline: "var(--c-pending)",
  missing: "var(--c-missing)", track: "var(--c-track)",
};

/** Donut of segments [{key, label, value}]; centre shows total (or `center`). */
export function donut(segments, { label, center, size = 168 } = {}) {
  const total = segments.reduce((a, s) => a + s.value, 0);
  const r = 60;
  const c = 2 * Math.PI * r;
  const svg = h("svg", {
    viewBox: "0 0 160 160", width: size, height: size, role: "img", class: "chart donut",
    "aria-label": `${label}: ${segments.map((s) => `${s.value} ${s.label}`).join(", ")}`,
  });
  svg.append(h("circle", { cx: 80, cy: 80, r, fill: "none", stroke: "var(--c-track)", "stroke-width": 22 }));
  let offset = 0;
  for (const s of segments) {
    if (!s.value) continue;
    const len = (s.value / total) * c;
    svg.append(h("circle", {
      cx: 80, cy: 80, r, fill: "none", stroke: COLORS[s.key] || s.color,
      "stroke-width": 22, "stroke-dasharray": `${len} ${c - len}`,
      "stroke-dashoffset": -offset, transform: "rotate(-90 80 80)",
      "data-key": s.key,
    }, h("title", {}, `${s.label}: ${s.value}`)));
    offset += len;
  }
  const num = String(center ?? total);
  svg.append(h("text", {
    x: 80, y: 78, "text-anchor": "middle", class: "donut-num",
    style: `font-size:${num.length <= 4 ? 26 : num.length <= 6 ? 21 : num.length <= 8 ? 17 : 14}px`,
  }, num));
  svg.append(h("text", { x: 80, y: 100, "text-anchor": "middle", class: "donut-sub" },
    center === undefined ? "total" : ""));
  return svg;
}

/** Legend list for segments. */
export function legend(segments, { onPick } = {}) {
  return h("ul", { class: "legend" }, segments.map((s) => h("li", {},
    h("span", { class: "swatch", style: `background:${COLORS[s.key] || s.color}` }),
    onPick ? h("a", { href: onPick(s) }, s.label) : s.label,
    h("strong", {}, ` ${s.value}`))));
}

/**
 * Stacked bars over time. buckets: [{label, tip, values: {key: n}}]; keys: [{key, label}].
 */
export function stackedBars(buckets, keys, { label, height = 160, tickEvery = 6 } = {}) {
  const w = 24 * 20;
  const padL = 34; const padB = 22; const padT = 8;
  const innerH = height - padB - padT;
  const bw = (w - padL) / Math.max(1, buckets.length);
  const max = Math.max(1, ...buckets.map((b) => keys.reduce((a, k) => a + (b.values[k.key] || 0), 0)));
  const top = niceMax(max);
  const total = buckets.reduce((a, b) => a + keys.reduce((x, k) => x + (b.values[k.key] || 0), 0), 0);
  const svg = h("svg", {
    viewBox: `0 0 ${w} ${height}`, role: "img", class: "chart bars",
    "aria-label": `${label}: ${total} in total; ${keys.map((k) =>
      `${buckets.reduce((a, b) => a + (b.values[k.key] || 0), 0)} ${k.label}`).join(", ")}`,
  });
  for (const frac of [0, 0.5, 1]) {
    const y = padT + innerH * (1 - frac);
    svg.append(h("line", { x1: padL, x2: w, y1: y, y2: y, class: "grid" }));
    svg.append(h("text", { x: padL - 4, y: y + 3, "text-anchor": "end", class: "axis" },
      String(Math.round(top * frac))));
  }
  buckets.forEach((b, i) => {
    let y = padT + innerH;
    const x = padL + i * bw + 2;
    const g = h("g", { class: "bar" });
    const parts = [];
    for (const k of keys) {
      const v = b.values[k.key] || 0;
      if (!v) continue;
      const bh = (v / top) * innerH;
      y -= bh;
      g.append(h("rect", { x, y, width: Math.max(1, bw - 4), height: bh, fill: COLORS[k.key] }));
      parts.push(`${v} ${k.label}`);
    }
    g.append(h("rect", { x: padL + i * bw, y: padT, width: bw, height: innerH, class: "hit" },
      h("title", {}, `${b.tip}: ${parts.join(", ") || "none"}`)));
    svg.append(g);
    if (i % tickEvery === 0 || i === buckets.length - 1) {
      const last = i === buckets.length - 1;
      svg.append(h("text", {
        x: last ? w : padL + i * bw + bw / 2, y: height - 6, "text-anchor": last ? "end" : "middle", class: "axis",
      }, b.label));
    }
  });
  return svg;
}

/** One horizontal stacked bar (execution progress). segments: [{key, label, value}], total. */
export function progressBar(segments, total, { label, height = 18 } = {}) {
  const w = 400;
  const denom = Math.max(1, total, segments.reduce((a, s) => a + s.value, 0));
  const svg = h("svg", {
    viewBox: `0 0 ${w} ${height}`, preserveAspectRatio: "none", role: "img", class: "chart progress",
    "aria-label": `${label}: ${segments.map((s) => `${s.value} ${s.label}`).join(", ")} of ${total}`,
  });
  svg.append(h("rect", { x: 0, y: 0, width: w, height, rx: 4, fill: "var(--c-track)" }));
  let x = 0;
  for (const s of segments) {
    if (!s.value) continue;
    const sw = (s.value / denom) * w;
    svg.append(h("rect", { x, y: 0, width: sw, height, fill: COLORS[s.key], "data-key": s.key },
      h("title", {}, `${s.label}: ${s.value}`)));
    x += sw;
  }
  return svg;
}

/** The parts of a wave, in drawing order (rollouts). */
export const WAVE_KEYS = [
  { key: "ok", field: "succeeded", label: "succeeded" },
  { key: "failed", field: "failed", label: "failed" },
  { key: "missing", field: "missing", label: "missing" },
  { key: "skipped", field: "skipped", label: "skipped" },
  { key: "running", field: "running", label: "running" },
];

/** Counts of one wave: live progress while it runs, the settled counts after. */
export function waveCounts(w) {
  const p = w.progress || {};
  const pick = (f) => (p[f] ?? w[f] ?? 0);
  const c = Object.fromEntries(WAVE_KEYS.map((k) => [k.key, pick(k.field)]));
  if (c.missing) c.running = 0; // settled by its horizon: the unfinished pcs are the missing ones
  c.size = w.size ?? p.size ?? (w.pcs || []).length;
  c.finished = c.ok + c.failed + c.skipped;
  c.pending = Math.max(0, c.size - c.finished - c.missing - c.running);
  return c;
}

/**
 * One horizontal bar per wave (rollouts): succeeded / failed / missing / skipped / running,
 * the rest of the wave's pcs as the empty track; the label on the left, finished/size (or
 * the state) on the right. Rows are HTML (text stays readable on a phone), bars are SVG.
 */
export function waveChart(waves, { label = "Wave progress", current = null } = {}) {
  const parts = waves.map((wave) => {
    const c = waveCounts(wave);
    return `wave ${wave.index} (${wave.label}) ${wave.state}: ${c.finished} of ${c.size} finished`
      + `${c.failed ? `, ${c.failed} failed` : ""}${c.missing ? `, ${c.missing} missing` : ""}`;
  });
  const el = h("div", { class: "chart wave-chart", role: "img", "aria-label": `${label}: ${parts.join("; ") || "no waves"}` });
  for (const wave of waves) {
    const c = waveCounts(wave);
    const bw = 400; const bh = 14;
    const bar = h("svg", { viewBox: `0 0 ${bw} ${bh}`, preserveAspectRatio: "none", class: "wave-bar", "aria-hidden": "true" },
      h("rect", { x: 0, y: 0, width: bw, height: bh, rx: 3, fill: COLORS.track },
        h("title", {}, `wave ${wave.index}: ${c.size} pcs, ${wave.state}`)));
    let x = 0;
    const denom = Math.max(1, c.size);
    for (const k of WAVE_KEYS) {
      const v = c[k.key];
      if (!v) continue;
      const sw = (v / denom) * bw;
      bar.append(h("rect", { x, y: 0, width: sw, height: bh, fill: COLORS[k.key], "data-key": k.key },
        h("title", {}, `wave ${wave.index} ${k.label}: ${v}`)));
      x += sw;
    }
    el.append(h("div", {
      class: `wave-row${current !== null && wave.index === current ? " wave-current" : ""}`,
      dataset: { wave: wave.index, state: wave.state },
    },
    h("span", { class: "wave-label", title: wave.label }, h("span", { class: "muted" }, `#${wave.index} `), wave.label),
    bar,
    h("span", { class: "wave-num" }, wave.state === "waiting" || wave.state === "cancelled" ? wave.state : `${c.finished}/${c.size}`)));
  }
  return el;
}

/** A compact strip for lists: one block per wave, width by its size, colour by its state. */
export function waveStrip(waves, { label }) {
  const w = 120; const hgt = 10; const gap = 2;
  const total = Math.max(1, waves.reduce((a, x) => a + Math.max(1, x.size || 0), 0));
  const usable = w - gap * Math.max(0, waves.length - 1);
  const svg = h("svg", {
    viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", role: "img", class: "chart wave-strip",
    "aria-label": `${label}: ${waves.map((x) => `wave ${x.index} ${x.state}`).join(", ")}`,
  });
  let x = 0;
  for (const wave of waves) {
    const ww = (Math.max(1, wave.size || 0) / total) * usable;
    svg.append(h("rect", { x, y: 0, width: ww, height: hgt, rx: 2, fill: COLORS[waveKind(wave)] },
      h("title", {}, `wave ${wave.index} (${wave.label}): ${wave.state}`)));
    x += ww + gap;
  }
  return svg;
}

/** The colour key of a wave as a whole. */
export function waveKind(wave) {
  if (wave.state === "settled") return wave.verdict === "exceeded" ? "failed" : "ok";
  if (wave.state === "dispatched" || wave.state === "dispatching") return "running";
  if (wave.state === "cancelled") return "pending";
  return "track";
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

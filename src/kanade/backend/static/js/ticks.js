// Axis ticks for the charts, as pure functions (no DOM): tested on their own in the
// browser (tests/browser/test_chart_ticks.py).

const STEPS = [1, 2, 5];

/**
 * Ticks of a count axis (whole numbers): 0, step, 2·step … up to the first multiple of
 * `step` at or above `max`, at most `maxTicks` intervals. Every label is different: an
 * empty chart gets [0, 1] — never "0, 1, 1" from rounding halves of 1.
 */
export function countTicks(max, maxTicks = 4) {
  const m = Number.isFinite(max) && max > 0 ? Math.ceil(max) : 0;
  if (m === 0) return [0, 1];
  const intervals = Math.max(1, Math.floor(maxTicks));
  for (let p = 1; ; p *= 10) {
    for (const f of STEPS) {
      const step = f * p;
      const n = Math.ceil(m / step);
      if (n <= intervals) return Array.from({ length: n + 1 }, (_, i) => i * step);
    }
  }
}

/**
 * Which of a run of equally spaced instants (ms since the epoch, e.g. one per hour) get a
 * label: those on a whole multiple of `everyHours` of the viewer's clock (00:00, 06:00,
 * 12:00, 18:00 for 6), so labels are evenly spaced in time and never crowd the ends.
 * Returns the indices.
 */
export function evenTimeTicks(instants, everyHours = 6) {
  const out = [];
  instants.forEach((t, i) => {
    const d = new Date(t);
    if (d.getMinutes() === 0 && d.getHours() % everyHours === 0) out.push(i);
  });
  // A zone whose offset is not whole hours never hits :00: fall back to every n-th.
  if (!out.length) {
    for (let i = 0; i < instants.length; i += everyHours) out.push(i);
  }
  return out;
}

/** "06:00" in the viewer's clock. */
export function clockLabel(t) {
  const d = new Date(t);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

"""Turn benchmark JSON lines into small SVG line charts for docs/performance.md.

Usage: python benchmarks/plot.py docs/bench-results.jsonl docs/
Writes one SVG per chart below; each series is a benchmark name, x = its
``params.agents``, y = its median. No plotting library: the SVG is written by hand.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

CHARTS = {
    "fanout.svg": ("Fan-out to N simulated agents (seconds, median)",
                   ["fanout.total", "fanout.published", "fanout.dispatch"]),
    "run-latency.svg": ("kanade run --all to N real agents (seconds, median)",
                        ["run.cli", "run.api"]),
}
COLOURS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea"]
W, H, PAD = 640, 360, 56


def _scale_log(v: float, lo: float, hi: float, a: float, b: float) -> float:
    if hi == lo:
        return (a + b) / 2
    return a + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (b - a)


def chart(title: str, series: dict[str, list[tuple[float, float]]]) -> str:
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x_lo, x_hi = min(xs), max(xs)
    y_hi = max(ys) * 1.1 or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>',
           f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>']
    for i in range(5):
        y_val = y_hi * i / 4
        y = H - PAD - (H - 2 * PAD) * i / 4
        out.append(f'<line x1="{PAD}" y1="{y}" x2="{W - PAD}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{PAD - 6}" y="{y + 4}" text-anchor="end">{y_val:.2f}</text>')
    for x in sorted(set(xs)):
        px = _scale_log(x, x_lo, x_hi, PAD, W - PAD)
        out.append(f'<text x="{px}" y="{H - PAD + 16}" text-anchor="middle">{int(x)}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">agents (log scale)</text>')
    for n, (name, pts) in enumerate(sorted(series.items())):
        colour = COLOURS[n % len(COLOURS)]
        pts = sorted(pts)
        path = " ".join(
            f"{_scale_log(x, x_lo, x_hi, PAD, W - PAD):.1f},"
            f"{H - PAD - y / y_hi * (H - 2 * PAD):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for x, y in pts:
            px = _scale_log(x, x_lo, x_hi, PAD, W - PAD)
            py = H - PAD - y / y_hi * (H - 2 * PAD)
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        out.append(f'<rect x="{W - PAD - 150}" y="{PAD + 16 * n - 9}" width="10" height="10" '
                   f'fill="{colour}"/><text x="{W - PAD - 135}" y="{PAD + 16 * n}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main() -> None:
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in src.read_text().splitlines():
        if not line.strip().startswith("{"):
            continue
        rec = json.loads(line)
        params = rec.get("params", {})
        agents = params.get("agents")
        if agents and "median" in rec and params.get("exec", "stub") == "stub":
            # Real-script fan-outs are a different series; the charts show the swarm's.
            points[rec["name"]].append((float(agents), float(rec["median"])))
    for filename, (title, names) in CHARTS.items():
        series = {n: points[n] for n in names if points.get(n)}
        if series:
            (dest / filename).write_text(chart(title, series))
            print(f"wrote {dest / filename}")


if __name__ == "__main__":
    main()

"""Dashboard overview load time with a large fleet (SPEC §6, §10).

Starts a broker and a backend, seeds 1 000 simulated agents (heartbeats on the bus)
and 10 000 results (10 executions x 1 000 pcs, published to JetStream and projected
by the backend), then opens the overview in headless Chromium several times, each
in a fresh browser context (cold cache), and measures navigation start → the page's
data rendered (the ``kanade:rendered:overview`` performance mark, set once every
section has its data). Also measures the agents page (it lists all 1 000 agents).

Prints one JSON line per measurement: ``{"name", "params", "median", "min", "max",
"runs", "unit"}``.

Usage: python benchmarks/dashboard_load.py [--agents 1000] [--execs 10] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_seed import seed
from playwright.sync_api import sync_playwright

from stack import start_backend, stop_backend

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def measure(browser: object, url: str, nav: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
        page = ctx.new_page()
        page.goto(f"{url}/#/{'' if nav == 'overview' else nav}")
        page.wait_for_function(
            f"performance.getEntriesByName('kanade:rendered:{nav}').length > 0", timeout=30_000
        )
        out.append(
            page.evaluate(f"performance.getEntriesByName('kanade:rendered:{nav}')[0].startTime")
        )
        ctx.close()
    return out


def line(name: str, params: dict[str, object], values: list[float]) -> str:
    return json.dumps(
        {
            "name": name,
            "params": params,
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "runs": [round(v, 1) for v in values],
            "unit": "ms",
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--execs", type=int, default=10)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kanade-dash-") as tmp:
        stack = start_backend(Path(tmp))
        try:
            t0 = time.monotonic()
            counts = asyncio.run(
                seed(stack.url, stack.broker.url, agents=args.agents, execs=args.execs)
            )
            seeded_s = time.monotonic() - t0
            params = {**counts, "seed_seconds": round(seeded_s, 2)}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                try:
                    measure(browser, stack.url, "overview", 1)  # warm the backend's caches
                    print(
                        line(
                            "dashboard.overview_load",
                            params,
                            measure(browser, stack.url, "overview", args.runs),
                        ),
                        flush=True,
                    )
                    print(
                        line(
                            "dashboard.agents_load",
                            params,
                            measure(browser, stack.url, "agents", args.runs),
                        ),
                        flush=True,
                    )
                finally:
                    browser.close()
        finally:
            stop_backend(stack)


if __name__ == "__main__":
    main()

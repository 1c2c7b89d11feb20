"""Decision time of one reconcile tick (SPEC §10.1): 10 000 agents x 100 ``per_pc`` schedules,
through the pure core path the central scheduler runs at each poll — ``decide_tick`` (gates)
then ``per_pc_to_fire`` (alive, dispatch marks, last success) for every schedule.

The fleet is realistic: ~95 % of the agents alive, each schedule has succeeded on a
different ~60 % of them (some long enough ago to re-arm), and ~2 % hold a live dispatch
mark. Prints one JSON line (median of several runs, seconds) like ``kanade bench``.

    kanade bench tick [--agents 10000] [--schedules 100] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from kanade.core.scheduling import (
    DispatchMark,
    decide_tick,
    lower,
    per_pc_to_fire,
)
from kanade.core.validation import parse_schedule

NOW = datetime(2026, 3, 2, 8, 30, 0, 5000, tzinfo=UTC)


def build(agents: int, schedules: int, seed: int = 7):  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    pcs = [f"pc-{i:05d}" for i in range(agents)]
    alive = {pc for pc in pcs if rnd.random() < 0.95}
    plans = []
    for s in range(schedules):
        every = None if s % 2 else f"{1 + s % 7}d"
        when = {"per_pc": "once"} if every is None else {"per_pc": {"every": every}}
        sched = parse_schedule(
            {"id": f"s{s}", "job_id": "j", "when": when, "target": {"all": True}},
            strict=True,
        )
        plan = lower(sched)
        last_success = {
            pc: NOW - timedelta(hours=rnd.uniform(1, 24 * 10)) for pc in pcs if rnd.random() < 0.6
        }
        last_result = dict(last_success)
        marks = {
            pc: DispatchMark(pc, NOW - timedelta(seconds=30), NOW + timedelta(minutes=2))
            for pc in pcs
            if rnd.random() < 0.02
        }
        plans.append((plan, last_success, last_result, marks))
    return pcs, alive, plans


def one_tick(pcs, alive, plans) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fired = 0
    for plan, last_success, last_result, marks in plans:
        outcome = decide_tick(plan, last_tick=NOW - timedelta(minutes=1), now=NOW, local_tz=UTC)
        if outcome.fire is None:
            continue
        mode = plan.dedup
        assert mode is not None
        fired += len(
            per_pc_to_fire(
                mode,
                pcs,
                now=NOW,
                alive=alive,
                last_success=last_success,
                marks=marks,
                last_results=last_result,
            )
        )
    return time.perf_counter() - t0, fired


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--schedules", type=int, default=100)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    pcs, alive, plans = build(args.agents, args.schedules)
    one_tick(pcs, alive, plans)  # warm-up
    samples = []
    fired = 0
    for _ in range(args.runs):
        elapsed, fired = one_tick(pcs, alive, plans)
        samples.append(elapsed)
    print(
        json.dumps(
            {
                "name": "scheduler_reconcile_tick",
                "params": {"agents": args.agents, "schedules": args.schedules},
                "median": round(statistics.median(samples), 4),
                "min": round(min(samples), 4),
                "max": round(max(samples), 4),
                "runs": len(samples),
                "unit": "s",
                "decisions": args.agents * args.schedules,
                "pcs_to_fire": fired,
                "target_s": 1.0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

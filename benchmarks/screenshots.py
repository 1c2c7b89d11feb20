"""Screenshots of the dashboard's main pages → docs/screenshots/*.png.

A broker, a backend, three real agents (local-1..3) and 200 simulated agents seeded
through the bus (see ``dashboard_seed``); the example jobs are loaded and run on the
real agents, so result pages show real output. A few schedules are created (one
``per_pc`` schedule is waited for until it has fired once, up to a minute) and a rollout
on the real agents halts at its second wave. Then headless Chromium captures: overview,
agents, execution detail (a half-finished exec), result, jobs, job detail, schedules,
schedule detail, rollout detail, and the overview at phone width.

Usage: python benchmarks/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from dashboard_seed import seed  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from kanade.cli.documents import read_job_file  # noqa: E402
from stack import start_backend, stop_backend  # noqa: E402

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


def wait_done(http: httpx.Client, exec_id: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ex = http.get(f"/api/executions/{exec_id}").json()
        if ex["status"] == "completed":
            return ex
        time.sleep(0.1)
    raise TimeoutError(exec_id)


SCHEDULES = [
    {
        "id": "inventory-daily",
        "job_id": "disk-usage",
        "description": "disk usage from every real agent, once a day each",
        "when": {"per_pc": {"every": "1d"}},
        "target": {"groups": ["local"]},
    },
    {
        "id": "weeknight-hello",
        "job_id": "hello",
        "description": "weeknights at 02:30, Berlin time",
        "when": {"calendar": {"at": "02:30", "days": ["mon-fri"]}},
        "target": {"groups": ["local"]},
        "tz": "Europe/Berlin",
        "constraints": {"skip_dates": ["2026-12-24", "2026-12-31"]},
    },
    {
        "id": "canary-uptime",
        "job_id": "uptime-check",
        "description": "fired by the canaries themselves, also while offline",
        "when": {"cron": "*/15 * * * *"},
        "target": {"groups": ["canary"]},
        "runs_on": "agent",
    },
    {
        "id": "month-end",
        "job_id": "hello",
        "enabled": False,
        "when": {"calendar": {"at": "23:00", "days": ["friL"]}},
        "target": {"all": True},
        "tz": "America/New_York",
    },
]


def make_schedules_and_rollout(http: httpx.Client, tmp: Path) -> str:
    """The schedules above, and a rollout whose second wave fails (halted); returns its id."""
    for doc in SCHEDULES:
        r = http.post("/api/schedules", json=doc)
        r.raise_for_status()
    runs = tmp / "staged-runs"
    runs.mkdir()
    job = {
        "id": "staged-update",
        "version": "3",
        "description": "fails on its second run, so the rollout halts at wave 1",
        "execute": {
            "shell": "sh",
            "script": f'n=$(ls {runs} | wc -l); touch {runs}/$$; echo "run $n"; [ "$n" -ne 1 ]',
            "timeout": "30s",
        },
    }
    http.post("/api/jobs", json=job).raise_for_status()
    r = http.post(
        "/api/exec/staged-update",
        json={
            "target": {"groups": ["local"]},
            "rollout": {
                "waves": [
                    {"pcs": ["local-1"]},
                    {"pcs": ["local-2"], "delay": "1s"},
                    {"percent": 100, "delay": "5m"},
                ],
                "halt_on_failure_rate": 0.25,
            },
        },
    )
    r.raise_for_status()
    rollout_id = str(r.json()["rollout_id"])
    deadline = time.monotonic() + 30
    while http.get(f"/api/rollouts/{rollout_id}").json()["status"] != "halted":
        if time.monotonic() > deadline:
            raise TimeoutError("the rollout did not halt")
        time.sleep(0.2)
    # The per_pc schedule fires at the next minute boundary.
    deadline = time.monotonic() + 75
    while http.get("/api/schedules/inventory-daily").json()["status"]["fired_count"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("inventory-daily did not fire")
        time.sleep(0.5)
    return rollout_id


def shot(page: Page, url: str, hash_: str, path: Path, *, full: bool = False) -> None:
    page.goto(f"{url}/{hash_}")
    page.wait_for_selector(".page[data-ready]")
    page.wait_for_function("document.querySelector('#live-status').dataset.state === 'open'")
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kanade-shots-") as tmp:
        stack = start_backend(Path(tmp))
        try:
            for i in (1, 2, 3):
                stack.start_agent(f"local-{i}", "local", *(["canary"] if i == 1 else []))
            with httpx.Client(base_url=stack.url, timeout=30) as http:
                for f in sorted((ROOT / "examples" / "jobs").glob("*.yaml")):
                    job = read_job_file(f)
                    http.post("/api/jobs", json=job.model_dump(mode="json", exclude_none=True))
                deadline = time.monotonic() + 30
                while (
                    len(
                        [
                            a
                            for a in http.get("/api/agents").json()["items"]
                            if a["status"] == "alive"
                        ]
                    )
                    < 3
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError("agents did not check in")
                    time.sleep(0.2)
                asyncio.run(
                    seed(stack.url, stack.broker.url, agents=200, execs=4, running_last=True)
                )
                for job in ("disk-usage", "uptime-check", "hello"):
                    r = http.post(f"/api/exec/{job}", json={"target": {"groups": ["local"]}})
                    wait_done(http, r.json()["exec_id"])
                r = http.post(
                    "/api/run",
                    json={
                        "script": 'echo "kernel: $(uname -sr)"\n'
                        'echo "uptime: $(uptime -p 2>/dev/null || uptime)"\n'
                        "df -h / | tail -1\necho 'checking certificates…' >&2",
                        "target": {"pcs": ["local-1"]},
                    },
                )
                adhoc = wait_done(http, r.json()["exec_id"])
                result_id = adhoc["results"][0]["result_id"]  # type: ignore[index]
                running = http.get("/api/executions", params={"status": "running"}).json()["items"]
                exec_id = running[0]["exec_id"] if running else adhoc["exec_id"]
                rollout_id = make_schedules_and_rollout(http, Path(tmp))
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 860})
                    shot(page, stack.url, "#/", out / "overview.png", full=True)
                    shot(page, stack.url, "#/agents", out / "agents.png")
                    shot(page, stack.url, f"#/executions/{exec_id}", out / "execution.png")
                    shot(page, stack.url, f"#/results/{result_id}", out / "result.png", full=True)
                    shot(page, stack.url, "#/jobs", out / "jobs.png", full=True)
                    shot(page, stack.url, "#/jobs/hello", out / "job.png", full=True)
                    shot(page, stack.url, "#/schedules", out / "schedules.png")
                    shot(
                        page,
                        stack.url,
                        "#/schedules/inventory-daily",
                        out / "schedule.png",
                        full=True,
                    )
                    shot(
                        page, stack.url, f"#/rollouts/{rollout_id}", out / "rollout.png", full=True
                    )
                    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
                    shot(phone, stack.url, "#/", out / "overview-phone.png")
                finally:
                    browser.close()
        finally:
            stop_backend(stack)


if __name__ == "__main__":
    main()

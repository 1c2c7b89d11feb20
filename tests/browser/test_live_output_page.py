"""Live output on the execution page (SPEC §4.12, §6) in a real browser against a real
``kanade up``: while a script runs, its lines appear on the page as it writes them —
prefixed by pc when several run it — before it ends; then the stream says it ended. At desk
and at phone width (the page does not scroll sideways)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_pages import new_page
from playwright.sync_api import Browser, expect

from stack import UpStack

WAIT_MS = 20_000  # a loaded CI machine: the watch, the agent's chunk, the relay, the page
DESK = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True}


def _run(up: UpStack, script: str, pcs: list[str]) -> str:
    body = {"script": script, "target": {"pcs": pcs}, "timeout": "60s"}
    r = httpx.post(f"{up.url}/api/run", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["exec_id"])


def _exec(up: UpStack, exec_id: str) -> dict[str, Any]:
    r = httpx.get(f"{up.url}/api/executions/{exec_id}", timeout=10)
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


@pytest.mark.parametrize(
    ("size", "context", "pcs"),
    [("desk", DESK, ["local-1", "local-2"]), ("phone", PHONE, ["local-3"])],
)
def test_the_execution_page_shows_output_as_the_script_writes_it(
    browser: Browser, up: UpStack, tmp_path: Path, size: str, context: dict[str, Any],
    pcs: list[str],
) -> None:  # fmt: skip
    stop = tmp_path / "stop"
    script = (
        f"for i in 1 2 3; do echo {size}-$i; echo warn-$i >&2; sleep 0.3; done; n=0; "
        f"while [ ! -e {stop} ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; "
        f"echo {size}-last"
    )
    exec_id = _run(up, script, pcs)
    page, watch = new_page(browser, **context)
    try:
        page.goto(f"{up.url}/#/executions/{exec_id}")
        pane = page.locator("#live-output")
        last = f"{pcs[-1]} | {size}-3" if len(pcs) > 1 else f"{size}-3"
        expect(pane).to_contain_text(last, timeout=WAIT_MS)
        for pc in pcs:
            expect(pane).to_contain_text(f"{pc} | {size}-1" if len(pcs) > 1 else f"{size}-1")
        expect(page.locator("#live-state")).to_have_attribute("data-state", "streaming")
        # seen before the script ended
        assert _exec(up, exec_id)["status"] in ("pending", "running")
        assert f"{size}-last" not in pane.inner_text()
        expect(pane.locator(".live-err").first).to_contain_text("warn-1")  # stderr, marked
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.evaluate("window.innerWidth"), f"{size}: {width}px wide"
        page.screenshot(path=str(tmp_path / f"live-{size}.png"), full_page=True)
        stop.touch()
        expect(pane).to_contain_text(f"{size}-last", timeout=WAIT_MS)
        expect(page.locator("#live-state")).to_have_attribute("data-state", "ended",
                                                               timeout=WAIT_MS)  # fmt: skip
        expect(page.locator("#exec-status")).to_have_text("completed", timeout=WAIT_MS)
    finally:
        stop.touch()
        page.context.close()
    assert watch.unexpected() == []

"""Chart axes (issue #18 item 5): the pure tick maths of ``static/js/ticks.js`` run in
Chromium as unit tests, and the overview's 24 h chart drawn with them — no duplicate
count labels (an empty chart showed ``1, 1, 0``), time labels evenly spaced on whole
6-hour marks of the viewer's clock, in a whole-hour zone and a half-hour one."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from screenshots import shot

from stack import UpStack

TICKS = "/ui/js/ticks.js"


def ticks(page: Page, up: UpStack, expr: str) -> Any:
    """Evaluate ``expr`` with ``m`` = the ticks module, in the dashboard's origin."""
    if not page.url.startswith(up.url):
        page.goto(f"{up.url}/#/login")
    return page.evaluate(f"import('{TICKS}').then((m) => {expr})")


@pytest.mark.parametrize(
    ("max_", "want"),
    [
        (0, [0, 1]),  # an empty chart: never "0, 1, 1"
        (-5, [0, 1]),
        (1, [0, 1]),
        (2, [0, 1, 2]),
        (3, [0, 1, 2, 3]),
        (4, [0, 1, 2, 3, 4]),
        (5, [0, 2, 4, 6]),
        (7, [0, 2, 4, 6, 8]),
        (9, [0, 5, 10]),
        (0.4, [0, 1]),
        (37, [0, 10, 20, 30, 40]),
        (999, [0, 500, 1000]),
        (12345, [0, 5000, 10000, 15000]),
    ],
)
def test_count_ticks_are_whole_distinct_and_cover_the_max(
    page: Page, up: UpStack, max_: float, want: list[int]
) -> None:
    got = ticks(page, up, f"m.countTicks({max_})")
    assert got == want
    assert len(set(got)) == len(got) and got[-1] >= max_


def test_count_ticks_never_repeat_for_any_max(page: Page, up: UpStack) -> None:
    bad = ticks(
        page,
        up,
        """(() => { const bad = [];
          for (let max = 0; max <= 5000; max += 1) {
            const t = m.countTicks(max);
            const steps = new Set(t.slice(1).map((v, i) => v - t[i]));
            if (new Set(t).size !== t.length || t[t.length - 1] < max || steps.size !== 1
                || t.length > 5 || !t.every(Number.isInteger)) bad.push([max, t]);
          }
          return bad; })()""",
    )
    assert bad == []


@pytest.mark.parametrize(("zone", "labels"), [("UTC", ["00:00", "06:00", "12:00", "18:00"])])
def test_time_ticks_sit_on_whole_six_hour_marks(
    browser: Browser, up: UpStack, zone: str, labels: list[str]
) -> None:
    context = browser.new_context(timezone_id=zone)
    try:
        page = context.new_page()
        page.goto(f"{up.url}/#/login")
        got = page.evaluate(
            """import('/ui/js/ticks.js').then((m) => {
                 const start = Date.UTC(2026, 2, 1, 13);  // 13:00 UTC, as the chart's first hour
                 const hours = Array.from({ length: 24 }, (_, i) => start + i * 3600e3);
                 const at = m.evenTimeTicks(hours);
                 return { at, labels: at.map((i) => m.clockLabel(hours[i])) };
               })"""
        )
    finally:
        context.close()
    assert got["at"] == [5, 11, 17, 23]  # 18:00, 00:00, 06:00, 12:00: every 6th bucket
    assert sorted(got["labels"]) == labels


def test_time_ticks_in_a_half_hour_zone_are_still_evenly_spaced(
    browser: Browser, up: UpStack
) -> None:
    context = browser.new_context(timezone_id="Asia/Kolkata")  # UTC+05:30
    try:
        page = context.new_page()
        page.goto(f"{up.url}/#/login")
        at = page.evaluate(
            """import('/ui/js/ticks.js').then((m) => {
                 const start = Date.UTC(2026, 2, 1, 13);
                 return m.evenTimeTicks(Array.from({ length: 24 }, (_, i) => start + i * 3600e3));
               })"""
        )
    finally:
        context.close()
    assert at == [0, 6, 12, 18]


@pytest.mark.parametrize("width", [1280, 390])
def test_the_overview_chart_has_distinct_even_ticks(
    browser: Browser, up: UpStack, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id="UTC")
    try:
        page = context.new_page()
        page.goto(f"{up.url}/#/")
        chart = page.get_by_role("img", name="Results per hour, last 24 hours", exact=False)
        expect(chart).to_be_visible(timeout=15_000)
        # Read in one go: a live refresh may draw the chart again between two reads.
        ticks_ = page.evaluate(
            """() => { const svg = document.querySelector('svg.bars');
                 const t = (c) => [...svg.querySelectorAll(c)].map((e) => e.textContent);
                 return { y: t('text.y-tick'), x: t('text.x-tick') }; }"""
        )
        y, x = ticks_["y"], ticks_["x"]
        # The card, not the chart: the card stays while a refresh redraws what is in it.
        card = page.locator("section[aria-labelledby='sec-results-last-24-hours']")
        shot(page, f"overview-chart-{'phone' if width < 600 else 'desk'}", card)
    finally:
        context.close()
    assert len(y) >= 2 and len(set(y)) == len(y), y
    values = [int(v) for v in y]
    assert values == sorted(values, reverse=True) or values == sorted(values), y
    assert len(x) == 4 and all(lbl.endswith(":00") and int(lbl[:2]) % 6 == 0 for lbl in x), x

"""``kanade retention``: what the backend keeps of each table and what its last pruning
pass did (SPEC §4.12). The limits are the backend's ``--retain`` settings."""

from __future__ import annotations

from typing import Any

from kanade.cli import output
from kanade.cli.client import ApiClient
from kanade.cli.common import JsonOpt, UrlOpt, guard


def _print(view: dict[str, Any]) -> None:
    tables: dict[str, dict[str, Any]] = view.get("tables") or {}
    output.table(
        f"retention (a pass every {view.get('interval')}, {view.get('batch')} rows per batch)",
        ["table", "max age", "max rows", "oldest kept"],
        [
            (
                name,
                t.get("max_age") or "off",
                "off"
                if t.get("max_rows") is None
                else f"{t['max_rows']:,}"
                + (" per schedule" if t.get("rows_per") == "schedule" else ""),
                t.get("oldest") or "-",
            )
            for name, t in tables.items()
        ],
    )
    run = view.get("last_run")
    if not run:
        output.out.print("last pass: none yet", markup=False)
    else:
        pruned = ", ".join(f"{k} {v:,}" for k, v in (run.get("pruned") or {}).items()) or "nothing"
        output.out.print(
            f"last pass: ended {run.get('finished_at')}, took {run.get('duration_s')} s, "
            f"pruned {pruned}; output objects deleted {run.get('objects', 0)}",
            markup=False,
        )
    through = view.get("audit_pruned_through")
    if through is not None:
        output.out.print(
            f"audit: records up to sequence {through} were pruned by retention; the trail "
            "is complete from the next one on",
            markup=False,
        )


def retention(json_: JsonOpt = False, url: UrlOpt = None) -> None:
    """What the backend keeps of each table (age and count limits, oldest row kept) and
    what its last pruning pass did.

    Example: kanade retention
    """

    def go() -> None:
        with ApiClient(url) as api:
            view = api.get("/api/retention")
        if json_:
            output.json_line(view)
        else:
            _print(view)

    guard(go)

"""``kanade bench retention`` (SPEC §4.12, §10.1): results keep being projected at full pace
while the retention worker prunes a table of old results — a small table in ``make test``,
the 1 000 000-row one in the slow suite (numbers: docs/performance.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kanade.bench import retention

NAMES = [
    "retention.ingest_while_pruning",
    "retention.ingest_baseline",
    "retention.prune_rate",
    "retention.prune_rate_during_ingest",
    "retention.batch_hold",
]


def _by_name(lines: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    assert [line["name"] for line in lines] == NAMES
    return {str(line["name"]): line for line in lines}


# SQLite only: the benchmark seeds a SQLite file directly (kanade.bench.retention.seed).
def test_a_small_table_is_pruned_while_results_are_ingested(tmp_path: Path) -> None:
    # One pruning run of the benchmark (no baseline, no repeats): every old row pruned,
    # every fresh result projected.
    template = tmp_path / "template.db"
    retention.migrate(template)
    retention.seed(template, 3000, now=datetime.now(UTC))
    run = retention.one_run(template, tmp_path / "run", rows=3000, results=2000,
                            retain=retention.PRUNING, wait_for_pruning=True)  # fmt: skip
    assert run["prune_rate"] > 0 and run["batch_ms"] > 0
    assert run["rate"] >= 0


@pytest.mark.slow
@pytest.mark.timeout(7200)  # seeding and pruning a million rows on a slow disk
def test_ingest_keeps_its_pace_while_a_million_rows_are_pruned() -> None:
    lines = _by_name(retention.run(rows=1_000_000, results=100_000, runs=1))
    pruning = float(lines["retention.ingest_while_pruning"]["median"])  # type: ignore[arg-type]
    baseline = float(lines["retention.ingest_baseline"]["median"])  # type: ignore[arg-type]
    share = float(lines["retention.ingest_while_pruning"]["pruned_share_when_ingest_done"])  # type: ignore[arg-type]
    assert 0 < share < 1, "the pruning pass must overlap the whole ingest"
    assert pruning >= 0.8 * baseline, (pruning, baseline)
    assert float(lines["retention.batch_hold"]["median"]) < 500  # type: ignore[arg-type]

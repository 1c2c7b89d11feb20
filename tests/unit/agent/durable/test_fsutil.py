"""Owner-only durability (kanade.agent.durable.fsutil): the agent's files hold command text and
output, so they are 0600 in a 0700 data dir whatever the umask (SPEC §8.3)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanade.agent.durable.fsutil import atomic_write, private_dir
from kanade.agent.durable.ledger import Ledger
from kanade.agent.durable.outbox import Outbox


@pytest.fixture
def lax_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most systems default to: files 0644, dirs 0755
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_the_data_dir_is_owner_only_even_when_it_existed(tmp_path: Path, lax_umask: None) -> None:
    (tmp_path / "agent").mkdir(mode=0o755)
    assert mode(private_dir(tmp_path / "agent")) == "0o700"


def test_atomic_writes_are_owner_only(tmp_path: Path, lax_umask: None) -> None:
    atomic_write(tmp_path / "result.json", b"{}")
    assert mode(tmp_path / "result.json") == "0o600"
    atomic_write(tmp_path / "result.json", b"{}", durable=False)  # replaced: still 0600
    assert mode(tmp_path / "result.json") == "0o600"


def test_the_ledger_journal_is_owner_only(tmp_path: Path, lax_umask: None) -> None:
    ledger = Ledger(tmp_path / "ledger")
    ledger.admit("r1", "d1", '{"script": "secret"}', now=1.0)
    ledger.close()
    assert mode(ledger.path) == "0o600"
    assert mode(ledger.path.parent) == "0o700"


def test_the_outbox_dir_is_owner_only(tmp_path: Path, lax_umask: None) -> None:
    assert mode(Outbox(tmp_path / "outbox").dir) == "0o700"

"""A script started as another account really runs as it (real subprocess; needs root)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from kanade.agent import accounts
from kanade.agent.process import run_process

needs_root = pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() != 0, reason="switching users needs root"
)


@needs_root
async def test_script_runs_as_the_account_with_its_home(tmp_path: Path) -> None:
    nobody = accounts.account("nobody")
    spool = tmp_path / "spool"
    spool.mkdir()
    outcome = await run_process(
        ["/bin/sh", "-c", 'id -un; echo "$HOME"; id -u; pwd'],
        timeout_s=10, cap_bytes=4096, spool_dir=spool, spool_name="x",
        kill=asyncio.Event(), account=nobody,
    )
    assert outcome.exit_code == 0, outcome.stderr.head
    name, home, uid, cwd = outcome.stdout.head.decode().split()
    assert name == "nobody" and home == nobody.home and int(uid) == nobody.uid
    assert cwd == nobody.workdir


def test_unknown_account_is_reported() -> None:
    assert not accounts.exists("no-such-user-kanade")
    with pytest.raises(LookupError):
        accounts.account("no-such-user-kanade")
    assert accounts.exists("root") or sys.platform == "win32"

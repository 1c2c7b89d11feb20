"""Script text kept with exec rows (``scripts``), once per sha256 and bounded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from store_rows import T0, exec_row

from kanade.backend.store import executions, scripts
from kanade.backend.store.scheduling import claim_executions
from kanade.backend.store.tables import scripts as scripts_table
from kanade.core.digests import sha256_hex
from kanade.core.models.job import Execute
from kanade.core.scripttext import SCRIPT_TEXT_MAX, exec_script


def record(exec_id: str, text: str) -> dict[str, Any]:
    ex = Execute.model_validate({"shell": "bash", "script": text, "timeout": "10s"})
    return {**exec_row(exec_id, ["pc1"]), "script": exec_script(ex).model_dump()}


def test_an_inline_script_is_stored_once_and_read_back_with_its_exec(engine: Engine) -> None:
    with engine.begin() as conn:
        executions.upsert_executions(conn, [record("e1", "echo secret-ish\n")], T0)
        executions.upsert_executions(conn, [record("e2", "echo secret-ish\n")], T0)
        claim_executions(conn, [record("e3", "echo other\n")], T0 + timedelta(seconds=1))
    with engine.connect() as conn:
        got = scripts.exec_script(conn, "e2")
        n = conn.execute(select(func.count()).select_from(scripts_table)).scalar_one()
        third = scripts.exec_script(conn, "e3")
        missing = scripts.exec_script(conn, "nope")
    assert got is not None and third is not None and missing is None
    assert got["text"] == "echo secret-ish\n" and got["script_shell"] == "bash"
    assert got["script_sha256"] == sha256_hex(b"echo secret-ish\n")
    assert (got["size"], got["truncated"], got["script_object"]) == (16, False, None)
    assert third["text"] == "echo other\n"
    assert n == 2  # two distinct scripts for three execs


def test_a_huge_script_is_cut_at_the_bound_on_a_character_boundary(engine: Engine) -> None:
    text = "é" * SCRIPT_TEXT_MAX  # 2 bytes each: twice the bound
    with engine.begin() as conn:
        executions.upsert_executions(conn, [record("big", text)], T0)
    with engine.connect() as conn:
        got = scripts.exec_script(conn, "big")
    assert got is not None and got["truncated"] is True
    assert got["size"] == 2 * SCRIPT_TEXT_MAX
    assert len(got["text"].encode()) == SCRIPT_TEXT_MAX and set(got["text"]) == {"é"}
    assert got["script_sha256"] == sha256_hex(text.encode())  # of the whole script


def test_a_record_from_an_older_backend_has_no_script(engine: Engine) -> None:
    with engine.begin() as conn:
        executions.upsert_executions(conn, [exec_row("old", ["pc1"])], T0)
    with engine.connect() as conn:
        got = scripts.exec_script(conn, "old")
    assert got is not None and got["script_sha256"] is None and got["text"] is None


def test_a_script_object_keeps_its_name_and_digest_not_a_text(engine: Engine) -> None:
    ex = Execute.model_validate({"shell": "sh", "script_object": "disk/3", "timeout": "10s"})
    rec = {**exec_row("obj", ["pc1"]), "script": exec_script(ex, "ab" * 32).model_dump()}
    with engine.begin() as conn:
        executions.upsert_executions(conn, [rec], T0)
    with engine.connect() as conn:
        got = scripts.exec_script(conn, "obj")
    assert got is not None
    assert (got["script_object"], got["script_sha256"], got["text"]) == ("disk/3", "ab" * 32, None)

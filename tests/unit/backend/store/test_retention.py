"""Retention's SQL (kanade.backend.store.retention) on a real, migrated SQLite file: each
table's oldest rows go in batches, by age and by count, and what must stay stays — execs
that have not ended and their results, what a pending approval, a live rollout or an open
exec of the same job needs, the last success a per_pc schedule decides from, open tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from store_rows import exec_row, row

from kanade.backend.store import executions, results, scheduling, scripts, state_outbox
from kanade.backend.store import retention as store
from kanade.backend.store.audit import insert_audit
from kanade.backend.store.scheduling import DecisionRow
from kanade.backend.store.tables import (
    agent_schedule_decisions,
    approvals,
    audit,
    enroll_tokens,
    exec_decisions,
    inventory_history,
    rollout_waves,
    rollouts,
    schedule_decisions,
)
from kanade.backend.store.tables import executions as executions_table
from kanade.backend.store.tables import results as results_table
from kanade.backend.store.tables import scripts as scripts_table
from kanade.backend.store.tables import state_outbox as state_outbox_table
from kanade.core.digests import sha256_hex
from kanade.core.models.job import Execute
from kanade.core.scripttext import exec_script

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)
CUTOFF = NOW - timedelta(days=30)


def count(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def exec_with_results(
    conn: Connection,
    exec_id: str,
    pcs: list[str],
    *,
    at: datetime,
    ended: bool = True,
    job: str = "hello",
    **result_kw: Any,
) -> None:
    """An exec created ``at`` whose pcs all reported ``at``; ended then unless ``ended`` is
    False."""
    executions.upsert_executions(conn, [{**exec_row(exec_id, pcs), "job_id": job,
                                         "created_at": at}], at)  # fmt: skip
    results.upsert_finished(
        conn,
        [row(f"{exec_id}-{pc}", exec_id, pc, state="finished", at=at, **result_kw) for pc in pcs],
    )
    executions.refresh_exec_counters(conn, [exec_id], at)
    if ended:
        executions.mark_ended(conn, exec_id, at)


def outbox_keys(conn: Connection) -> set[str]:
    return {p.key for p in state_outbox.pending(conn, 1000)}


# --- results ----------------------------------------------------------------------------------


def test_old_results_of_ended_execs_go_and_their_counters_stay(engine: Engine) -> None:
    with engine.begin() as conn:
        exec_with_results(conn, "old", ["a", "b", "c"], at=OLD, stdout_ref="out/x1")
        exec_with_results(conn, "open", ["a"], at=OLD, ended=False)
        exec_with_results(conn, "new", ["a"], at=RECENT)
        results.upsert_finished(conn, [row("orphan", "gone", "a", state="finished", at=OLD)])
        first = store.prune_results(conn, before=CUTOFF, limit=2, now=NOW)
        rest = store.prune_results(conn, before=CUTOFF, limit=10, now=NOW)
        left = {r["result_id"] for r in conn.execute(select(results_table)).mappings()}
        old = executions.get_execution(conn, "old")
        # A later recount (a late duplicate) leaves the counters as they were.
        executions.refresh_exec_counters(conn, ["old"], NOW)
        again = executions.get_execution(conn, "old")
    assert (first.rows, rest.rows) == (2, 2)  # in batches; the orphan goes too
    assert left == {"open-a", "new-a"}  # an exec that has not ended keeps its results
    assert sorted(first.objects + rest.objects) == ["out/x1"] * 3
    assert old is not None and again is not None
    assert old["results_pruned_at"] == NOW
    assert (again["finished_count"], again["status"]) == (3, "completed")


def test_results_over_the_count_go_oldest_first(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(5):
            exec_with_results(conn, f"e{i}", ["a", "b"], at=RECENT + timedelta(minutes=i))
        pruned = store.prune_results(conn, before=None, limit=3, now=NOW)
        left = sorted(r for (r,) in conn.execute(select(results_table.c.result_id)))
    assert pruned.rows == 3
    assert left == ["e1-b", "e2-a", "e2-b", "e3-a", "e3-b", "e4-a", "e4-b"]


def test_a_per_pc_success_outlives_its_pruned_row(engine: Engine) -> None:
    with engine.begin() as conn:
        exec_with_results(conn, "ok", ["a"], at=OLD, schedule_id="inv")
        exec_with_results(conn, "bad", ["a", "b"], at=OLD + timedelta(hours=1),
                          schedule_id="inv", exit_code=3)  # fmt: skip
        before = scheduling.reconcile_facts(conn, ["inv"])["inv"]
        store.prune_results(conn, before=CUTOFF, limit=100, now=NOW)
        assert count(conn, results_table) == 0
        after = scheduling.reconcile_facts(conn, ["inv"])["inv"]
    assert after.last_success == before.last_success == {"a": OLD}
    assert after.last_result == before.last_result
    assert after.last_result["b"] == OLD + timedelta(hours=1)


# --- executions -------------------------------------------------------------------------------


def _approval(conn: Connection, exec_id: str, state: str) -> None:
    conn.execute(approvals.insert().values(
        exec_id=exec_id, job_id="hello", version="1", state=state, requested_by="bob",
        requested_at=OLD, expires_at=OLD + timedelta(hours=1), command="{}", subjects=[],
        rollout=False,
    ))  # fmt: skip


def _rollout(conn: Connection, exec_id: str, status: str) -> None:
    conn.execute(rollouts.insert().values(
        rollout_id=exec_id, exec_id=exec_id, job_id="hello", version="1", status=status,
        current_wave=0, wave_count=1, spec={}, command="{}", settle_after_s=0.0,
        created_by="bob", created_at=OLD, updated_at=OLD,
    ))  # fmt: skip
    conn.execute(rollout_waves.insert().values(
        rollout_id=exec_id, idx=0, kind="pcs", label="w0", pcs=["a"], delay_s=0.0,
        state="settled", request_id="r",
    ))  # fmt: skip


def test_an_old_ended_exec_goes_with_everything_that_belongs_to_it(engine: Engine) -> None:
    with engine.begin() as conn:
        exec_with_results(conn, "done", ["a", "b"], at=OLD)
        conn.execute(exec_decisions.insert().values(exec_id="done", status="cancelled", at=OLD))
        _approval(conn, "done", "approved")
        _rollout(conn, "done", "completed")
        exec_with_results(conn, "open", ["a"], at=OLD, ended=False)
        exec_with_results(conn, "new", ["a"], at=RECENT)
        conn.execute(state_outbox_table.delete())
        first = store.prune_executions(conn, before=CUTOFF, limit=1, now=NOW)
        second = store.prune_executions(conn, before=CUTOFF, limit=10, now=NOW)
        third = store.prune_executions(conn, before=CUTOFF, limit=10, now=NOW)
        left = sorted(e for (e,) in conn.execute(select(executions_table.c.exec_id)))
        rows = (count(conn, exec_decisions), count(conn, approvals), count(conn, rollouts),
                count(conn, rollout_waves), count(conn, results_table))  # fmt: skip
        keys = outbox_keys(conn)
    # Its results first, one batch at a time; the exec once none is left.
    assert (first.rows, first.cascaded) == (0, {"results": 1})
    assert second.rows == 1
    assert second.cascaded == {"results": 1, "exec_decisions": 1, "approvals": 1,
                               "rollout_waves": 1, "rollouts": 1}  # fmt: skip
    assert third.rows == 0
    assert left == ["new", "open"]
    assert rows == (0, 0, 0, 0, 2)
    # Their operator-state documents become tombstones: a rebuild does not bring them back.
    assert {k.split(".")[0] for k in keys} == {"approval", "rollout"}


def _exec_running(conn: Connection, exec_id: str, script: str, *, at: datetime) -> None:
    """An ended exec, created ``at``, that ran the inline ``script``."""
    execute = Execute.model_validate({"shell": "sh", "script": script, "timeout": "10s"})
    record = {**exec_row(exec_id, ["a"]), "created_at": at,
              "script": exec_script(execute).model_dump()}  # fmt: skip
    executions.upsert_executions(conn, [record], at)
    executions.mark_ended(conn, exec_id, at)


def test_a_script_text_goes_with_the_last_exec_that_ran_it(engine: Engine) -> None:
    with engine.begin() as conn:
        _exec_running(conn, "old-a", "echo only-old\n", at=OLD)
        _exec_running(conn, "old-b", "echo shared\n", at=OLD)
        _exec_running(conn, "new-b", "echo shared\n", at=RECENT)
        assert count(conn, scripts_table) == 2
        pruned = store.prune_executions(conn, before=CUTOFF, limit=10, now=NOW)
        left = {sha for (sha,) in conn.execute(select(scripts_table.c.sha256))}
        shared = scripts.exec_script(conn, "new-b")
    assert pruned.rows == 2
    assert pruned.cascaded == {"scripts": 1}
    # The text still named by a remaining exec stays, readable through that exec.
    assert left == {sha256_hex(b"echo shared\n")}
    assert shared is not None and shared["text"] == "echo shared\n"


def test_what_live_work_needs_is_kept(engine: Engine) -> None:
    with engine.begin() as conn:
        exec_with_results(conn, "waiting", ["a"], at=OLD)
        _approval(conn, "waiting", "pending")
        exec_with_results(conn, "halted", ["a"], at=OLD)
        _rollout(conn, "halted", "halted")
        # An open exec of job "j" created before "newer": closing it reads "newer".
        exec_with_results(conn, "older", ["a"], at=OLD - timedelta(hours=1), ended=False,
                          job="j")  # fmt: skip
        exec_with_results(conn, "newer", ["b"], at=OLD, job="j")
        exec_with_results(conn, "free", ["a"], at=OLD, job="k")
        pruned = store.prune_executions(conn, before=CUTOFF, limit=100, now=NOW)
        left = sorted(e for (e,) in conn.execute(select(executions_table.c.exec_id)))
    assert pruned.rows == 1
    assert left == ["halted", "newer", "older", "waiting"]


def test_execs_over_the_count_go_oldest_ended_first(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(4):
            exec_with_results(conn, f"e{i}", ["a"], at=RECENT + timedelta(minutes=i))
        pruned = store.prune_executions(conn, before=None, limit=2, now=NOW)
        left = sorted(e for (e,) in conn.execute(select(executions_table.c.exec_id)))
    assert pruned.rows == 2
    assert left == ["e2", "e3"]


# --- inventory history, audit ---------------------------------------------------------------


def _history(conn: Connection, n: int, at: datetime) -> None:
    conn.execute(inventory_history.insert(), [
        {"result_id": f"h{at:%j}-{i}", "pc_id": "a", "job_id": "inv", "version": "1",
         "facts": {"i": i}, "exec_id": "e", "observed_at": at,
         "recorded_at": at + timedelta(seconds=i)}
        for i in range(n)
    ])  # fmt: skip


def test_inventory_history_by_age_and_by_count(engine: Engine) -> None:
    with engine.begin() as conn:
        _history(conn, 3, OLD)
        _history(conn, 4, RECENT)
        by_age = store.prune_inventory_history(conn, before=CUTOFF, limit=100)
        by_count = store.prune_inventory_history(conn, before=None, limit=2)
        left = sorted(r for (r,) in conn.execute(select(inventory_history.c.result_id)))
    assert (by_age.rows, by_count.rows) == (3, 2)
    assert left == [f"h{RECENT:%j}-2", f"h{RECENT:%j}-3"]


def _audit(conn: Connection, seqs: range, at: datetime) -> None:
    insert_audit(conn, [
        {"seq": s, "action": "x", "actor": "bob", "at": at, "details": {}, "recorded_at": at}
        for s in seqs
    ])  # fmt: skip


def test_the_audit_is_pruned_as_a_prefix(engine: Engine) -> None:
    with engine.begin() as conn:
        _audit(conn, range(1, 4), OLD)
        _audit(conn, range(4, 5), RECENT)
        _audit(conn, range(5, 6), OLD)  # out of order in time: kept, or a hole would open
        by_age = store.prune_audit(conn, before=CUTOFF, limit=100, now=NOW)
        by_count = store.prune_audit(conn, before=None, limit=1, now=NOW)
        left = sorted(s for (s,) in conn.execute(select(audit.c.seq)))
        through = store.audit_pruned_through(conn)
    assert (by_age.rows, by_age.through_seq) == (3, 3)
    assert (by_count.rows, by_count.through_seq) == (1, 4)
    assert left == [5]
    assert through == 4


# --- schedule decisions -------------------------------------------------------------------


def _decisions(conn: Connection, sid: str, n: int, at: datetime) -> None:
    rows = [
        DecisionRow(sid, f"{sid}@{at:%j}-{i}", at, "skipped", "frozen", decided_at=at)
        for i in range(n)
    ]
    scheduling.record_decisions(conn, rows, at)


def test_schedule_decisions_by_age_and_per_schedule_count(engine: Engine) -> None:
    with engine.begin() as conn:
        _decisions(conn, "s1", 3, OLD)
        _decisions(conn, "s1", 5, RECENT)
        _decisions(conn, "s2", 2, RECENT)
        conn.execute(state_outbox_table.delete())
        by_age = store.prune_log_by_age(conn, "schedule_decisions", before=CUTOFF, limit=100)
        keys_after_age = outbox_keys(conn)
        by_count = store.prune_log_by_count(conn, "schedule_decisions", keep=2, limit=100)
        per: dict[str, int] = dict(
            conn.execute(
                select(schedule_decisions.c.schedule_id, func.count()).group_by(
                    schedule_decisions.c.schedule_id
                )
            ).all()
        )
        stats = scheduling.stats(conn)
    assert (by_age.rows, by_age.schedules) == (3, {"s1"})
    assert keys_after_age == {"schedule.czE"}  # the schedule's document is written again
    assert (by_count.rows, by_count.schedules) == (3, {"s1"})
    assert per == {"s1": 2, "s2": 2}
    assert stats["s1"]["skipped"] == 8  # counters are not pruned


def test_agent_decisions_by_age_and_per_schedule_count(engine: Engine) -> None:
    def put(conn: Connection, sid: str, n: int, at: datetime) -> None:
        conn.execute(agent_schedule_decisions.insert(), [
            {"decision_id": f"pc:{sid}@{at:%j}-{i}:fired", "schedule_id": sid, "pc_id": "pc",
             "occurrence_id": f"{sid}@{i}", "decided_at": at, "result": "fired", "count": 1,
             "recorded_at": at + timedelta(seconds=i)}
            for i in range(n)
        ])  # fmt: skip

    with engine.begin() as conn:
        put(conn, "s1", 2, OLD)
        put(conn, "s1", 4, RECENT)
        by_age = store.prune_log_by_age(
            conn, "agent_schedule_decisions", before=CUTOFF, limit=100
        )
        by_count = store.prune_log_by_count(conn, "agent_schedule_decisions", keep=3, limit=100)
        left = sorted(d for (d,) in conn.execute(select(agent_schedule_decisions.c.decision_id)))
        keys = outbox_keys(conn)
    assert (by_age.rows, by_count.rows) == (2, 1)
    assert left == [f"pc:s1@{RECENT:%j}-{i}:fired" for i in (1, 2, 3)]
    assert not keys  # a projection: nothing in KV to follow


# --- enrolment tokens ---------------------------------------------------------------------


def test_only_spent_old_tokens_go(engine: Engine) -> None:
    def token(conn: Connection, tid: str, created: datetime, **kw: Any) -> None:
        conn.execute(enroll_tokens.insert().values(
            token_id=tid, token_sha256=sha256_hex(tid.encode()), groups=[], created_by="admin",
            created_at=created, expires_at=created + timedelta(days=1), cancelled=False,
        ))  # fmt: skip
        if kw:
            conn.execute(update(enroll_tokens).where(enroll_tokens.c.token_id == tid).values(**kw))

    when = NOW - timedelta(days=100)
    with engine.begin() as conn:
        token(conn, "used", when, used_at=when)
        token(conn, "cancelled", when, cancelled=True)
        token(conn, "expired", when)
        token(conn, "open", when, expires_at=NOW + timedelta(days=1))
        token(conn, "young", NOW - timedelta(days=2), used_at=NOW)
        conn.execute(state_outbox_table.delete())
        pruned = store.prune_enroll_tokens(
            conn, before=NOW - timedelta(days=90), limit=100, now=NOW
        )
        left = sorted(t for (t,) in conn.execute(select(enroll_tokens.c.token_id)))
        keys = outbox_keys(conn)
    assert pruned.rows == 3
    assert left == ["open", "young"]
    assert len(keys) == 3 and all(k.startswith("enroll_token.") for k in keys)


def test_oldest_row_of_each_table(engine: Engine) -> None:
    with engine.begin() as conn:
        assert set(store.oldest(conn).values()) == {None}
        exec_with_results(conn, "e", ["a"], at=OLD)
        _audit(conn, range(1, 2), RECENT)
        oldest = store.oldest(conn)
    assert oldest["results"] == OLD
    assert oldest["executions"] == OLD
    assert oldest["audit"] == RECENT

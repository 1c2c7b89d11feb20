"""Command intake: a group command is admitted only if this pc was a member of the group
when the command was issued (SPEC §3.2), decided against membership known up to now."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from nats.aio.client import Client

import trust
from kanade.agent.durable.ledger import Ledger
from kanade.agent.durable.outbox import Outbox
from kanade.agent.intake import MEMBERSHIP_RETRY_S, CommandIntake
from kanade.agent.trust import Trust
from kanade.core import subjects
from kanade.core.ids import new_id
from kanade.core.models.wire import Command, CommandAddress, encode
from kanade.core.signing import command_expiry

ENROLLED = datetime.now(UTC) - timedelta(days=1)
S = timedelta(seconds=1)


@dataclass
class FakeMsg:
    """What the intake reads of a pulled message, and what it answers."""

    subject: str
    data: bytes
    headers: dict[str, str]
    answers: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def metadata(self) -> Any:
        raise AttributeError("not a JetStream message")

    async def ack(self) -> None:
        self.answers.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.answers.append(("nak", delay))

    async def term(self) -> None:
        self.answers.append(("term", None))


class FakeExecutor:
    def __init__(self) -> None:
        self.started: list[Command] = []

    def start(
        self, cmd: Command, *, refusal: str | None = None, invalid: str | None = None
    ) -> None:
        assert refusal is None, refusal
        assert invalid is None, invalid
        self.started.append(cmd)


class Rig:
    def __init__(self, tmp_path: Path, provisioning: Any = None) -> None:
        self.ledger = Ledger(tmp_path / "ledger", durable=False)
        self.ledger.load()
        self.executor = FakeExecutor()
        self.joined: dict[str, datetime | None] = {}
        self.current = True
        self.asked = 0

        async def membership_current() -> bool:
            self.asked += 1
            return self.current

        self.intake = CommandIntake(
            pc_id="pc-1",
            ledger=self.ledger,
            outbox=Outbox(tmp_path / "outbox", durable=False),
            executor=self.executor,  # type: ignore[arg-type]
            trust=Trust(trust.keyring_path()),
            enrolled_at=ENROLLED,
            groups=lambda: sorted(self.joined),
            joined=lambda: self.joined,
            kv_groups=lambda: sorted(self.joined),
            membership_current=membership_current,
            connection=lambda: cast(Client, object()),
            connected=lambda: True,
            spawn=asyncio.ensure_future,
            pull_expires=30.0,
            pull_idle_heartbeat=5.0,
            **({} if provisioning is None else {"provisioning": provisioning}),
        )

    async def deliver(self, scope: subjects.Scope, target: str | None, issued: datetime) -> FakeMsg:
        address = CommandAddress(
            all=scope == "all", groups=[target] if scope == "group" and target else []
        )
        cmd = Command(
            request_id=new_id(), exec_id=new_id(), job_id="job-1", version="1",
            script="true", timeout_s=10.0, issued_at=issued,
            expires_at=command_expiry(issued), address=address,
        )  # fmt: skip
        subject = subjects.command_subject(scope, target, "job-1")
        raw = encode(cmd)
        msg = FakeMsg(subject, raw, trust.command_headers(subject, raw))
        await self.intake._on_command(msg)  # type: ignore[arg-type]
        return msg


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


async def test_a_group_command_from_before_the_join_is_acked_and_never_run(rig: Rig) -> None:
    joined = datetime.now(UTC) - timedelta(minutes=1)
    rig.joined = {"ops": joined}
    before = await rig.deliver("group", "ops", joined - S)
    after = await rig.deliver("group", "ops", joined + S)
    assert before.answers == [("ack", None)] and after.answers == [("ack", None)]
    assert [c.issued_at for c in rig.executor.started] == [joined + S]
    assert len(rig.ledger._entries) == 1  # the ignored one was never admitted


async def test_membership_not_re_read_since_a_reconnect_defers_group_commands(
    rig: Rig,
) -> None:
    rig.joined = {"ops": ENROLLED}
    rig.current = False
    msg = await rig.deliver("group", "ops", datetime.now(UTC))
    assert msg.answers == [("nak", MEMBERSHIP_RETRY_S)] and rig.executor.started == []
    # Fleet-wide and pc commands do not depend on membership.
    for scope, target in (("all", None), ("pc", "pc-1")):
        other = await rig.deliver(scope, target, datetime.now(UTC))  # type: ignore[arg-type]
        assert other.answers == [("ack", None)]
    assert rig.asked == 1 and len(rig.executor.started) == 2
    rig.current = True
    again = await rig.deliver("group", "ops", datetime.now(UTC))
    assert again.answers == [("ack", None)] and len(rig.executor.started) == 3


async def test_without_a_recorded_join_the_enrolment_bounds_it(rig: Rig) -> None:
    rig.joined = {"ops": None}  # --group flag, or a value from before `since`
    old = await rig.deliver("group", "ops", ENROLLED - S)
    new = await rig.deliver("group", "ops", ENROLLED + S)
    fleet_old = await rig.deliver("all", None, ENROLLED - S)
    assert {m.answers[0][0] for m in (old, new, fleet_old)} == {"ack"}
    assert [c.issued_at for c in rig.executor.started] == [ENROLLED + S]


async def test_a_consumer_provisioned_from_a_membership_not_yet_stored_is_asked_for_again(
    tmp_path: Path,
) -> None:
    """The agent sees a KV write as it is published; the backend may read the bucket
    before it is stored and provision the old groups. The agent asks again until the
    consumer reads the groups it knows (bounded)."""
    answers = [["kanade.cmd.all.*", "kanade.cmd.pc.pc-1.*"]] * 2
    asked: list[int] = []

    async def provisioning(_nc: Any, _pc: str, _groups: list[str]) -> list[str] | None:
        asked.append(1)
        if len(asked) <= len(answers):
            return answers[len(asked) - 1]
        return subjects.agent_command_filters("pc-1", ["ops"])

    rig = Rig(tmp_path, provisioning)
    rig.joined = {"ops": ENROLLED}
    await asyncio.wait_for(rig.intake.ensure_consumer(), 10)
    assert len(asked) == 3

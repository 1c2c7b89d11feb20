"""What the routes use: settings, database, broker link and the service objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.errors import Unavailable
from kanade.backend.messaging.link import BrokerLink
from kanade.backend.messaging.liveout import LiveRelay
from kanade.backend.observability.metrics import Metrics
from kanade.backend.services.agent_config import AgentConfigService
from kanade.backend.services.approvals import ApprovalService
from kanade.backend.services.auth.authenticator import Authenticator
from kanade.backend.services.enrolment import EnrolmentService
from kanade.backend.services.exec_scripts import ExecScriptService
from kanade.backend.services.execs import ExecService
from kanade.backend.services.groups import GroupService
from kanade.backend.services.keys import SigningKeyService
from kanade.backend.services.kills import KillService
from kanade.backend.services.known import KnownNames
from kanade.backend.services.live_output import LiveOutputService
from kanade.backend.services.notify import NotifyService
from kanade.backend.services.outputs import OutputService
from kanade.backend.services.ping import PingService
from kanade.backend.services.releases import ReleaseService
from kanade.backend.services.revocations import RevocationService
from kanade.backend.services.rollouts import RolloutService
from kanade.backend.services.scripts import ScriptService
from kanade.backend.settings import Settings
from kanade.backend.store.database import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    link: BrokerLink
    execs: ExecService
    rollouts: RolloutService
    approvals: ApprovalService
    metrics: Metrics
    # Set by the app at start-up; None only when a Services is built by hand.
    auth: Authenticator | None = None
    keys: SigningKeyService | None = None
    # The stop controls and fleet state: built from db and link, nothing else.
    revocations: RevocationService = field(init=False)
    kills: KillService = field(init=False)
    pings: PingService = field(init=False)
    agent_config: AgentConfigService = field(init=False)
    groups: GroupService = field(init=False)
    outputs: OutputService = field(init=False)
    enrolment: EnrolmentService = field(init=False)
    # Live output (SPEC §4.12): the relay of this backend's watched execs, and following one.
    live: LiveRelay = field(init=False)
    live_output: LiveOutputService = field(init=False)
    scripts: ScriptService = field(init=False)
    releases: ReleaseService = field(init=False)
    notify: NotifyService = field(init=False)
    known: KnownNames = field(init=False)
    # The script each exec ran, for the roles that may read it (not the script objects).
    exec_scripts: ExecScriptService = field(init=False)

    def __post_init__(self) -> None:
        bus = self.link.bus  # a getter: raises Unavailable (503) while the broker is away
        self.revocations = RevocationService(bus)
        self.kills = KillService(self.db, bus)
        self.pings = PingService(bus)
        self.agent_config = AgentConfigService(self.db, bus)
        self.groups = GroupService(self.db, bus)
        self.outputs = OutputService(self.db, bus)
        self.known = KnownNames(self.db, bus)
        self.live = LiveRelay(
            bus,
            on_identity_mismatch=self.metrics.on_identity_mismatch,
            on_outcome=self.metrics.on_live,
        )
        self.metrics.live_watchers.set_function(lambda: self.live.watchers)
        self.live_output = LiveOutputService(self.db, self.live)
        self.scripts = ScriptService(self.db, bus)
        self.releases = ReleaseService(self.db, bus, self.agent_config)
        self.exec_scripts = ExecScriptService(self.db, bus)
        self.enrolment = EnrolmentService(
            self.db,
            bus,
            groups=self.groups,
            authority_dir=self.settings.authority_dir,
            broker_urls=self.settings.nats_urls,
            agent_nats_urls=self.settings.agent_broker_urls(),
            signing_keys=self._public_keys,
        )
        self.notify = NotifyService(self.db, bus, timeout_s=self.settings.notify_timeout_s)

    def _public_keys(self) -> list[dict[str, Any]]:
        """The command-signing keys an enrolling agent pins (SPEC §8.2)."""
        if self.keys is None:
            raise Unavailable("this backend has no command-signing keys configured")
        return self.keys.public_keys()

    def catalog(self) -> JobCatalog:
        """The job catalog; raises BrokerUnavailable (503) while the broker is away."""
        return JobCatalog(self.link.bus())

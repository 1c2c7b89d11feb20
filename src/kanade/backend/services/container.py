"""What the routes use: settings, database, broker link and the service objects."""

from __future__ import annotations

from dataclasses import dataclass

from kanade.backend.catalog.jobs import JobCatalog
from kanade.backend.messaging.link import BrokerLink
from kanade.backend.observability.metrics import Metrics
from kanade.backend.services.approvals import ApprovalService
from kanade.backend.services.auth.authenticator import Authenticator
from kanade.backend.services.execs import ExecService
from kanade.backend.services.rollouts import RolloutService
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

    def catalog(self) -> JobCatalog:
        """The job catalog; raises BrokerUnavailable (503) while the broker is away."""
        return JobCatalog(self.link.bus())

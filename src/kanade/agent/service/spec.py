"""What a service runs: the same for every service manager."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

SERVICE_NAME = "kanade-agent"
LAUNCHD_LABEL = "io.kanade.agent"
DESCRIPTION = "kanade agent: runs scripts sent through NATS on this machine"


@dataclass(frozen=True)
class ServiceSpec:
    """``program`` is the command line up to the verb: ``[python, artefact.pyz]`` for the
    single-file agent, ``[python, "-m", "kanade.agent"]`` for an installed package. Paths are
    as the service will see them (an install under ``--root`` writes them elsewhere)."""

    program: tuple[str, ...]
    config: PurePath
    data_dir: PurePath
    log_dir: PurePath | None = None  # launchd: where stdout/stderr go (systemd: the journal)

    def argv(self, verb: str = "run") -> list[str]:
        return [*self.program, verb, "--config", str(self.config)]

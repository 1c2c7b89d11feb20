"""``kanade-agent install | uninstall | status`` (SPEC §3.9).

install:   write the config (settings given as flags merged into it), put the program where
           the service runs it from, enrol the machine when given a backend URL and a token
           (stdin or a file: never the command line), write the unit / plist / service and
           start it.
uninstall: stop and remove the service; the config and the data dir (credentials, ledger,
           outbox, releases) stay, so a re-install carries on, unless ``--purge``.
status:    the service manager's answer and the agent's own report (its status file).

``--root DIR`` installs under DIR as if it were ``/`` and runs no system command (it prints
them): a dry run, a staging tree for an image, and what the tests round-trip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from kanade import __version__
from kanade.agent.service.managers import (
    Command,
    Manager,
    ServiceState,
    manager_for,
    native_manager,
    path_flavour,
)
from kanade.agent.service.spec import ServiceSpec
from kanade.agent.service.statusfile import INTERVAL_S, read_status, status_path

ARTEFACT_NAME = "kanade-agent.pyz"
RELEASES_DIR = "releases"

DEFAULT_PATHS: dict[str, tuple[str, str]] = {
    "systemd": ("/etc/kanade/agent.yaml", "/var/lib/kanade/agent"),
    "launchd": ("/Library/Application Support/kanade/agent.yaml",
                "/Library/Application Support/kanade/agent"),
    "windows": (r"C:\ProgramData\kanade\agent.yaml", r"C:\ProgramData\kanade\agent"),
}


class InstallError(Exception):
    """The install cannot go on; the message says why and what to do."""


Runner = Callable[[Sequence[str]], tuple[int, str]]


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer in 120 s"
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass
class Target:
    """Where things go, as the service sees them, and where they are written."""

    manager: Manager
    config: PurePath
    data_dir: PurePath
    root: Path | None = None
    log_dir: PurePath | None = None
    say: Callable[[str], None] = print
    runner: Runner = run_command
    ran: list[list[str]] = field(default_factory=list)

    def local(self, target: PurePath) -> Path:
        """The file to write for ``target``: itself, or under ``--root``."""
        if self.root is None:
            return Path(target)
        return self.root.joinpath(*target.parts[1:])

    def run(self, commands: list[Command], *, check: bool = True) -> None:
        for why, argv in commands:
            self.ran.append(list(argv))
            if self.root is not None:
                self.say(f"would run: {subprocess.list2cmdline(argv)}    # {why}")
                continue
            code, out = self.runner(argv)
            if code != 0 and check:
                raise InstallError(
                    f"{subprocess.list2cmdline(argv)} failed ({code}): {out or 'no output'}"
                )


def target_for(
    manager_name: str | None,
    *,
    config: str | None,
    data_dir: str | None,
    root: Path | None,
    say: Callable[[str], None] = print,
    runner: Runner = run_command,
) -> Target:
    name = manager_name or native_manager(sys.platform)
    try:
        manager = manager_for(name)
    except ValueError as exc:
        raise InstallError(str(exc)) from None
    flavour = path_flavour(name)
    default_config, default_data = DEFAULT_PATHS[name]
    config_path = flavour(config or os.environ.get("KANADE_AGENT_CONFIG") or default_config)
    data_path = flavour(data_dir or default_data)
    if root is None:
        if name != native_manager(sys.platform):
            raise InstallError(f"--manager {name} is not this system's: use it with --root DIR")
        config_path = flavour(Path(config_path).absolute())
        data_path = flavour(Path(data_path).absolute())
    for label, path in (("--config", config_path), ("--data-dir", data_path)):
        if not path.is_absolute():
            raise InstallError(f"{label} {path}: give an absolute path (as the service sees it)")
    log_dir = flavour("/Library/Logs/kanade") if name == "launchd" else None
    return Target(manager, config_path, data_path, root, log_dir, say, runner)


# --- config --------------------------------------------------------------------------------
def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise InstallError(f"{path}: the agent config must be a mapping")
    return loaded


def write_config(t: Target, settings: dict[str, Any]) -> dict[str, Any]:
    """Merge ``settings`` (None values ignored) into the config file; validated first."""
    import yaml

    from kanade.agent.settings import AgentSettings
    from kanade.security.files import write_private

    path = t.local(t.config)
    values = _load_yaml(path)
    values.update({k: v for k, v in settings.items() if v is not None})
    if isinstance(values.get("nats_urls"), str):
        values["nats_urls"] = [u.strip() for u in values["nats_urls"].split(",") if u.strip()]
    values["data_dir"] = str(t.data_dir)
    try:
        probe = {k: v for k, v in values.items() if k not in ("data_dir", "trust_dir", "keyring")}
        AgentSettings(**probe).validate()
    except (TypeError, ValueError) as exc:
        raise InstallError(f"{t.config}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, yaml.safe_dump(values, sort_keys=True))
    return values


# --- the program ---------------------------------------------------------------------------
def install_program(t: Target, *, python: str, artefact: Path | None) -> tuple[str, ...]:
    """The service's command line up to the verb. A single-file agent is copied to
    ``<data dir>/releases/<version>/`` (self-updates put theirs beside it, SPEC §3.8); an
    installed package runs as ``python -m kanade.agent``."""
    if artefact is None:
        return (python, "-m", "kanade.agent")
    target = t.data_dir / RELEASES_DIR / __version__ / ARTEFACT_NAME
    local = t.local(target)
    local.parent.mkdir(parents=True, exist_ok=True)
    if artefact.resolve() != local.resolve():
        tmp = local.with_name(local.name + ".tmp")
        shutil.copyfile(artefact, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, local)
    return (python, str(target))


def running_artefact() -> Path | None:
    """The single-file agent this process was started from (its bootstrap says), if any."""
    value = os.environ.get("KANADE_AGENT_ARTEFACT")
    return Path(value) if value and Path(value).is_file() else None


# --- verbs ---------------------------------------------------------------------------------
@dataclass
class Enrolment:
    url: str
    token: str
    backend_ca: Path | None = None


def install(
    t: Target,
    *,
    settings: dict[str, Any],
    enrolment: Enrolment | None,
    start: bool = True,
    python: str = sys.executable,
    artefact: Path | None = None,
) -> ServiceSpec:
    t.local(t.data_dir).mkdir(parents=True, exist_ok=True)
    t.local(t.data_dir).chmod(0o700)
    values = write_config(t, settings)
    t.say(f"config: {t.config}")
    if enrolment is not None:
        from kanade.agent.enrol import EnrolError, enrol

        try:
            done = enrol(enrolment.url, enrolment.token, pc_id=values.get("pc_id"),
                         data_dir=t.local(t.data_dir), config=t.local(t.config),
                         backend_ca=enrolment.backend_ca)
        except EnrolError as exc:
            raise InstallError(f"enrolment: {exc}") from None
        write_config(t, {})  # enrol wrote the data dir as written: the service's path again
        t.say(f"enrolled as {done.pc_id}: brokers {', '.join(done.nats_urls)}")
    program = install_program(t, python=python, artefact=artefact)
    spec = ServiceSpec(program=program, config=t.config, data_dir=t.data_dir, log_dir=t.log_dir)
    if t.log_dir is not None:
        t.local(t.log_dir).mkdir(parents=True, exist_ok=True)
    if t.manager.name == "windows":
        t.run(t.manager.deactivate(), check=False)  # a re-install replaces the service
    elif t.manager.name == "launchd":
        t.run(t.manager.deactivate(), check=False)  # a re-install reloads the job
    for target, text in t.manager.files(spec).items():
        local = t.local(target)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
        t.say(f"{t.manager.name}: {target}")
    t.run(t.manager.activate(spec, start=start))
    return spec


def uninstall(t: Target, *, purge: bool = False) -> None:
    t.run(t.manager.deactivate(), check=False)  # not running (or not installed): fine
    removed = False
    for target in t.manager.files(ServiceSpec((), t.config, t.data_dir)):
        local = t.local(target)
        if local.exists():
            local.unlink()
            removed = True
            t.say(f"removed {target}")
    if removed:
        t.run(t.manager.after_removal(), check=False)
    if purge:
        for target in (t.config,):
            local = t.local(target)
            if local.exists():
                local.unlink()
                t.say(f"removed {target}")
        local_data = t.local(t.data_dir)
        if local_data.exists():
            shutil.rmtree(local_data)
            t.say(f"removed {t.data_dir} (credentials, ledger, outbox, releases)")
        if t.log_dir is not None and t.local(t.log_dir).exists():
            shutil.rmtree(t.local(t.log_dir))
    else:
        t.say(f"kept {t.config} and {t.data_dir} (remove them with --purge)")


def _pid_alive(pid: int) -> bool:
    if os.name == "posix":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    import psutil

    return bool(psutil.pid_exists(pid))


@dataclass(frozen=True)
class Status:
    service: ServiceState
    report: dict[str, Any] | None
    running: bool
    connected: bool
    lines: list[str]

    @property
    def exit_code(self) -> int:
        """0 running and connected; 1 running, not connected; 3 not running (LSB)."""
        if not self.running:
            return 3
        return 0 if self.connected else 1


def _age(text: Any, now: datetime) -> str:
    from kanade.core.instants import parse_instant

    try:
        seconds = (now - parse_instant(text)).total_seconds()
    except (ValueError, TypeError):
        return "?"
    return f"{seconds:.0f} s ago"


def status(t: Target, *, now: datetime) -> Status:
    if t.root is None:
        code, out = t.runner(t.manager.query())
        service = t.manager.parse(code, out)
    else:
        service = ServiceState(False, False, f"{t.manager.name}: not queried (--root)")
    data_dir = t.local(t.data_dir)
    try:
        data_dir = Path(str(_load_yaml(t.local(t.config)).get("data_dir") or data_dir))
        if t.root is not None:
            data_dir = t.local(path_flavour(t.manager.name)(str(data_dir)))
    except (InstallError, OSError, ValueError):
        pass
    report = read_status(status_path(data_dir))
    lines = [f"service:     {service.detail}"
             + (f", pid {service.pid}" if service.pid else "")]
    alive = bool(report) and _pid_alive(int(report.get("pid") or 0)) if report else False
    connected = False
    if report is None:
        lines.append(f"agent:       no report in {status_path(data_dir)} (never started?)")
    else:
        state = "running" if alive else "not running (last report below)"
        lines.append(f"agent:       {report.get('pc_id')}, version {report.get('version')}, "
                     f"pid {report.get('pid')} {state}")
        fresh = _age(report.get("written_at"), now)
        connected = alive and bool(report.get("connected"))
        since = report.get("connected_changed_at")
        lines.append(
            "connection:  " + ("connected" if report.get("connected") else "not connected")
            + (f" since {since}" if since else "") + f" (reported {fresh})"
        )
        beat = report.get("last_heartbeat_at")
        lines.append("heartbeat:   " + (f"last sent {beat} ({_age(beat, now)})" if beat
                                        else "none sent yet"))
        if alive:
            from kanade.core.instants import parse_instant

            try:
                stale = (now - parse_instant(report.get("written_at"))).total_seconds() > (
                    6 * INTERVAL_S)
            except (ValueError, TypeError):
                stale = True
            if stale:
                lines.append("warning:     the agent has not reported for a while (hung?)")
                connected = False
    running = service.running or (t.root is not None and alive) or (
        not service.installed and alive)
    return Status(service, report, running, connected, lines)

"""The three service managers behind one interface: which files an install writes, which
commands activate, deactivate and query the service, and how to read the answer."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath, PureWindowsPath

from kanade.agent.service import launchd, systemd, windows
from kanade.agent.service.spec import LAUNCHD_LABEL, SERVICE_NAME, ServiceSpec

Command = tuple[str, list[str]]  # (why, argv)


@dataclass(frozen=True)
class ServiceState:
    installed: bool
    running: bool
    detail: str
    pid: int | None = None


@dataclass(frozen=True)
class Manager(ABC):
    """One service manager: systemd, launchd or the Windows service control manager."""

    name: str
    unit_path: PurePath | None

    @abstractmethod
    def files(self, spec: ServiceSpec) -> Mapping[PurePath, str]:
        """The files an install writes, by path."""

    @abstractmethod
    def activate(self, spec: ServiceSpec, *, start: bool) -> list[Command]:
        """Commands that register (and with ``start``, start) the service."""

    @abstractmethod
    def deactivate(self) -> list[Command]:
        """Commands that stop and unregister the service."""

    def after_removal(self) -> list[Command]:
        return []

    @abstractmethod
    def query(self) -> list[str]:
        """The argv that asks the manager about the service."""

    @abstractmethod
    def parse(self, returncode: int, out: str) -> ServiceState:
        """Read :meth:`query`'s answer."""


class Systemd(Manager):
    def files(self, spec: ServiceSpec) -> Mapping[PurePath, str]:
        assert self.unit_path is not None
        return {self.unit_path: systemd.unit(spec)}

    def activate(self, spec: ServiceSpec, *, start: bool) -> list[Command]:
        commands: list[Command] = [
            ("read the new unit", ["systemctl", "daemon-reload"]),
            ("start it at boot", ["systemctl", "enable", SERVICE_NAME]),
        ]
        if start:
            commands.append(("start it now (restart: a re-install runs the new unit)",
                             ["systemctl", "restart", SERVICE_NAME]))
        return commands

    def deactivate(self) -> list[Command]:
        return [("stop it and never start it at boot again",
                 ["systemctl", "disable", "--now", SERVICE_NAME])]

    def after_removal(self) -> list[Command]:
        return [("forget the removed unit", ["systemctl", "daemon-reload"])]

    def query(self) -> list[str]:
        return ["systemctl", "show", SERVICE_NAME, "--property=LoadState,ActiveState,SubState,"
                "MainPID"]

    def parse(self, returncode: int, out: str) -> ServiceState:
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        loaded = values.get("LoadState", "not-found")
        active, sub = values.get("ActiveState", "unknown"), values.get("SubState", "unknown")
        pid = int(values.get("MainPID", "0") or 0) or None
        installed = returncode == 0 and loaded not in ("not-found", "")
        detail = f"systemd {SERVICE_NAME}: {active} ({sub})" if installed else (
            f"systemd {SERVICE_NAME}: not installed")
        return ServiceState(installed, installed and active == "active", detail, pid)


class Launchd(Manager):
    def files(self, spec: ServiceSpec) -> Mapping[PurePath, str]:
        assert self.unit_path is not None
        return {self.unit_path: launchd.plist(spec)}

    def activate(self, spec: ServiceSpec, *, start: bool) -> list[Command]:
        commands: list[Command] = [
            ("load the job (RunAtLoad starts it)",
             ["launchctl", "bootstrap", "system", str(self.unit_path)]),
            ("start it at boot", ["launchctl", "enable", f"system/{LAUNCHD_LABEL}"]),
        ]
        if not start:
            commands.append(("stop it until the next boot",
                             ["launchctl", "kill", "TERM", f"system/{LAUNCHD_LABEL}"]))
        return commands

    def deactivate(self) -> list[Command]:
        return [("stop and unload the job", ["launchctl", "bootout", f"system/{LAUNCHD_LABEL}"])]

    def query(self) -> list[str]:
        return ["launchctl", "print", f"system/{LAUNCHD_LABEL}"]

    def parse(self, returncode: int, out: str) -> ServiceState:
        if returncode != 0:
            return ServiceState(False, False, f"launchd {LAUNCHD_LABEL}: not loaded")
        state = re.search(r"^\s*state = (\S+)", out, re.M)
        pid = re.search(r"^\s*pid = (\d+)", out, re.M)
        text = state.group(1) if state else "unknown"
        return ServiceState(True, text == "running", f"launchd {LAUNCHD_LABEL}: {text}",
                            int(pid.group(1)) if pid else None)


class Windows(Manager):
    def files(self, spec: ServiceSpec) -> Mapping[PurePath, str]:
        return {}

    def activate(self, spec: ServiceSpec, *, start: bool) -> list[Command]:
        commands = windows.install_commands(spec)
        return commands if start else commands[:-1]

    def deactivate(self) -> list[Command]:
        return windows.uninstall_commands()

    def query(self) -> list[str]:
        return ["sc.exe", "queryex", SERVICE_NAME]

    def parse(self, returncode: int, out: str) -> ServiceState:
        state = re.search(r"STATE\s*:\s*\d+\s+(\w+)", out)
        if returncode != 0 or state is None:
            return ServiceState(False, False, f"Windows service {SERVICE_NAME}: not installed")
        pid = re.search(r"PID\s*:\s*(\d+)", out)
        text = state.group(1)
        return ServiceState(True, text == "RUNNING",
                            f"Windows service {SERVICE_NAME}: {text.lower()}",
                            int(pid.group(1)) or None if pid else None)


def manager_for(name: str) -> Manager:
    if name == "systemd":
        return Systemd("systemd", PurePosixPath(f"/etc/systemd/system/{SERVICE_NAME}.service"))
    if name == "launchd":
        return Launchd("launchd", PurePosixPath(f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"))
    if name == "windows":
        return Windows("windows", None)
    raise ValueError(f"--manager: {name!r} is not one of systemd, launchd, windows")


def native_manager(platform: str) -> str:
    if platform == "win32":
        return "windows"
    if platform == "darwin":
        return "launchd"
    return "systemd"


def path_flavour(manager: str) -> type[PurePath]:
    return PureWindowsPath if manager == "windows" else PurePosixPath

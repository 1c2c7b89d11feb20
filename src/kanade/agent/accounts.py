"""The facts ``run_as: user`` needs (SPEC §8.3) and how a script is started as that user.

Who is at the console: on macOS the owner of /dev/console; on Linux the user of a local
graphical (``:0``) or text console (``ttyN``/``seat0``) session, as utmp reports it
(psutil.users). SSH sessions (``pts/N``) are not a console.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from kanade.core.runas import RunAsFacts

_LOCAL_TERMINAL = re.compile(r"^(:\d+(\.\d+)?|tty\d+|seat\d+|console)$")


def console_user() -> str | None:
    if sys.platform == "darwin":
        try:
            uid = os.stat("/dev/console").st_uid
        except OSError:
            return None
        name = _name_of(uid)
        return None if name in (None, "root") else name
    import psutil  # only when a run_as: user command arrives (idle RSS budget)

    try:
        sessions = psutil.users()
    except Exception:  # no utmp (containers): nobody at a console
        return None
    local = [u for u in sessions if u.terminal and _LOCAL_TERMINAL.match(u.terminal)]
    # A graphical session is the one a person is looking at.
    local.sort(key=lambda u: (not str(u.terminal).startswith(":"), u.started))
    for session in local:
        if session.name and session.name != "root":
            return str(session.name)
    return None


def facts() -> RunAsFacts:
    windows = sys.platform == "win32"
    return RunAsFacts(
        windows=windows,
        agent_user=getpass.getuser(),
        agent_is_root=(not windows) and os.geteuid() == 0,
        console_user=None if windows else console_user(),
    )


def exists(name: str) -> bool:
    return _account(name) is not None


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str

    def spawn_options(self) -> dict[str, Any]:
        """``subprocess`` options that start the child as this account, with its groups."""
        return {
            "user": self.uid,
            "group": self.gid,
            "extra_groups": os.getgrouplist(self.name, self.gid),
        }

    @property
    def workdir(self) -> str:
        """Where its scripts start: its home, or / for service accounts without one."""
        return self.home if os.path.isdir(self.home) else "/"

    def environment(self) -> dict[str, str]:
        """What a login would set: a script run as alice must not see root's HOME."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell}


def account(name: str) -> Account:
    found = _account(name)
    if found is None:
        raise LookupError(f"no account {name!r}")
    return found


def _account(name: str) -> Account | None:
    if sys.platform == "win32":
        return None
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)


def _name_of(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None

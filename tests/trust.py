"""The test session's command-signing trust (SPEC §8.2): one key directory for every
backend the suites start, one keyring every agent pins, and signing for tests that
publish commands or KV documents by hand, exactly as the backend does.

:func:`install` (called by ``tests/conftest.py`` at import) creates them in a private temp
dir and points ``KANADE_SIGNING_KEYS`` / ``KANADE_AGENT_KEYRING`` at them, so backend and
agent processes — in-process or subprocesses inheriting the environment — trust each
other with no per-test wiring. A test that needs its own keys (rotation) passes explicit
``--signing-keys`` / ``--keyring`` flags, which win over the environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from kanade.core.signing import Keyring, Signer
from kanade.security.signing_keys import ENV_VAR, ensure_key_dir, write_keyring_file

AGENT_KEYRING_ENV = "KANADE_AGENT_KEYRING"


@cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="kanade-test-trust-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def key_dir() -> Path:
    return _root() / "keys"


def keyring_path() -> Path:
    return _root() / "agent-trust" / "keyring.json"


@cache
def signer() -> Signer:
    """The session's signer (the same key every test backend signs with)."""
    keys, _ = ensure_key_dir(key_dir())
    return keys.signer()


def keyring() -> Keyring:
    keys, _ = ensure_key_dir(key_dir())
    return keys.keyring()


def write_keyring(path: Path) -> Path:
    """Pin the session's keys for an agent at ``path`` (0600 in a 0700 dir)."""
    write_keyring_file(path, keyring())
    return path


def install() -> None:
    """Create the session's keys and point every backend and agent at them."""
    signer()
    write_keyring(keyring_path())
    os.environ[ENV_VAR] = str(key_dir())
    os.environ[AGENT_KEYRING_ENV] = str(keyring_path())


def command_headers(subject: str, payload: bytes) -> dict[str, str]:
    """The signature header the backend puts on a command."""
    return signer().command_headers(subject, payload)

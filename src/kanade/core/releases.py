"""Agent releases (SPEC §3.8): what names a release and the platform it runs on.

A release is one single-file agent (a zipapp, ``kanade agent build``) for one platform. Its
binary dependencies (pydantic-core, PyNaCl, psutil) are built for one OS, one machine
architecture and one CPython minor version, so the platform tag carries all three:
``linux-x86_64-cp311``. The object store holds a release under ``<version>/<platform>``.
"""

from __future__ import annotations

import re
from typing import Final

VERSION_RE: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
VERSION_RULE: Final = (
    "must be 1-64 characters of letters, digits, '.', '_', '+' and '-', starting with a "
    "letter or digit"
)
PLATFORM_RE: Final = re.compile(r"^[a-z0-9]+-[a-z0-9_]+-cp[0-9]{2,4}$")


def is_version(value: str) -> bool:
    return bool(VERSION_RE.match(value)) and ".." not in value


def platform_tag(system: str, machine: str, version_info: tuple[int, int]) -> str:
    """``sys.platform``, ``platform.machine()`` and the interpreter's (major, minor) as one tag.

    Machine names differ between systems for the same architecture (``AMD64`` on Windows,
    ``x86_64`` elsewhere; ``arm64`` on macOS, ``aarch64`` on Linux): normalised here so a
    tag names the architecture, not the spelling.
    """
    family = "linux" if system.startswith("linux") else system.lower()
    arch = machine.lower() or "unknown"
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    arch = re.sub(r"[^a-z0-9_]", "_", arch)
    return f"{family}-{arch}-cp{version_info[0]}{version_info[1]}"


def release_object_name(version: str, platform: str) -> str:
    """The object-store name of one release artefact."""
    return f"{version}/{platform}"

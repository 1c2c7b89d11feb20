"""Agent releases (SPEC §3.8): what names a release and the platform it runs on.

A release is one single-file agent (a zipapp, ``kanade agent build``) for one platform. Its
binary dependencies (pydantic-core, PyNaCl, psutil) are built for one OS, one machine
architecture and one CPython minor version, so the platform tag carries all three:
``linux-x86_64-cp311``. The object store holds a release under ``<version>/<platform>``.
"""

from __future__ import annotations

import json
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


MAX_ARTEFACT_BYTES: Final = 256 * 1024 * 1024
SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
ATTEMPTS: Final = 3
"""How many times a new version may fail its start-and-connect check (or its first starts
after the switch) before it is quarantined."""


class ReleaseError(ValueError):
    """A release manifest that is not valid; the message names the field."""


def manifest_document(
    *, version: str, platform: str, sha256: str, size: int, build_id: str
) -> dict[str, object]:
    """The signed part of a release, validated: what an agent checks before it runs one."""
    if not is_version(version):
        raise ReleaseError(f"version: {version!r} {VERSION_RULE}")
    if not PLATFORM_RE.match(platform):
        raise ReleaseError(
            f"platform: {platform!r} is not a platform tag like linux-x86_64-cp311"
        )
    if not SHA256_RE.match(sha256):
        raise ReleaseError("sha256: must be 64 lowercase hex digits")
    if not 0 < size <= MAX_ARTEFACT_BYTES:
        raise ReleaseError(f"size: must be 1..{MAX_ARTEFACT_BYTES} bytes, got {size}")
    if not re.match(r"^[0-9a-f]{1,64}$", build_id):
        raise ReleaseError("build_id: must be 1-64 lowercase hex digits")
    return {"version": version, "platform": platform, "sha256": sha256, "size": size,
            "build_id": build_id}


def canonical_manifest(manifest: object) -> bytes:
    """The exact bytes a release signature covers."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def update_wanted(
    target: object, running: str, quarantined: set[str] | frozenset[str]
) -> str | None:
    """The version to update to, or None: a target is set, is a version, differs from the
    running one and is not quarantined (SPEC §3.8)."""
    if not isinstance(target, str) or not is_version(target):
        return None
    if target == running or target in quarantined:
        return None
    return target

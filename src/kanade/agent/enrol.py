"""``kanade-agent enroll URL TOKEN``: obtain this machine's broker identity (SPEC §8.1).

The nkey pair is generated here and the seed never leaves the machine: only the public key
is sent with the one-time token. The grant is stored in the trust dir (0700):
``agent.creds`` (granted JWT + local seed, 0600), ``ca.pem`` (the broker CA to pin) and
``keyring.json`` (0600, the command-signing public keys); the broker URLs, the pc_id and
the data dir go into the agent's config file, so a plain ``kanade-agent run`` uses them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kanade.agent.settings import AgentSettings, default_config_path, load_settings
from kanade.bus.credentials import AGENT_CA, AGENT_CREDS, AGENT_KEYRING, AGENT_TRUST_DIR
from kanade.core.ids import SLUG_RULE, is_slug
from kanade.core.models.enrolment import EnrolGrant, EnrolRequest
from kanade.core.models.wire import WireDecodeError, decode
from kanade.security import nats_jwt
from kanade.security.files import private_dir, write_private, write_public

TIMEOUT_S = 30.0


class EnrolError(Exception):
    """Enrolment failed; the message says why and what to do."""


@dataclass(frozen=True)
class Enrolled:
    pc_id: str
    trust_dir: Path
    config: Path
    nats_urls: list[str]


def enrol_url(url: str) -> str:
    """The backend's enrolment endpoint for ``url`` (http or https, with a host)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrolError(
            f"{url!r} is not a backend URL: give http(s)://HOST[:PORT] "
            "(what `kanade agent enroll-token` printed)"
        )
    return url.strip().rstrip("/") + "/api/enroll"


def _config_path(config: Path | None) -> Path:
    if config is not None:
        return config
    env = os.environ.get("KANADE_AGENT_CONFIG")
    return Path(env) if env else default_config_path()


def _settings(config: Path, pc_id: str | None, data_dir: Path | None) -> AgentSettings:
    overrides = {"pc_id": pc_id, "data_dir": data_dir}
    try:
        return load_settings(config if config.exists() else None, overrides)
    except (ValueError, TypeError, OSError) as exc:
        raise EnrolError(str(exc)) from None


def _post(url: str, body: bytes, verify: str | bool) -> Any:
    import httpx  # only this verb needs an HTTP client (agent RSS, SPEC §10.2)

    try:
        resp = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=TIMEOUT_S,
            verify=verify,
        )
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise EnrolError(
                f"the backend at {url} presented a certificate this machine does not trust "
                f"({exc}); pass --backend-ca FILE"
            ) from None
        raise EnrolError(f"cannot reach the backend at {url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise EnrolError(f"cannot reach the backend at {url}: {exc!r}") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    if resp.status_code == 200:
        return resp.content
    message = answer.get("error") if isinstance(answer, dict) else None
    details = [
        f"{e.get('path')}: {e.get('reason')}"
        for e in (answer.get("errors") or [] if isinstance(answer, dict) else [])
        if isinstance(e, dict)
    ]
    if resp.status_code in (401, 410):
        raise EnrolError(f"the backend refused the token: {message or resp.reason_phrase}")
    text = message or f"HTTP {resp.status_code} {resp.reason_phrase}"
    raise EnrolError(f"enrolment failed: {text}" + "".join(f"\n  {d}" for d in details))


def enrol(
    url: str,
    token: str,
    *,
    pc_id: str | None = None,
    data_dir: Path | None = None,
    config: Path | None = None,
    backend_ca: Path | None = None,
) -> Enrolled:
    endpoint = enrol_url(url)
    if not token:
        raise EnrolError("the enrolment token is empty")
    if pc_id is not None and not is_slug(pc_id):
        raise EnrolError(f"--pc-id {pc_id!r} {SLUG_RULE}")
    config_path = _config_path(config)
    settings = _settings(config_path, pc_id, data_dir)
    user = nats_jwt.new_identity("user")  # the seed stays here
    request = EnrolRequest(token=token, pc_id=settings.pc_id, public_key=user.public_key)
    verify: str | bool = str(backend_ca) if backend_ca is not None else True
    raw = _post(endpoint, request.model_dump_json().encode(), verify)
    try:
        grant = decode(EnrolGrant, raw)
    except WireDecodeError as exc:
        raise EnrolError(f"the backend's answer is not an enrolment grant: {exc}") from None
    trust = private_dir(private_dir(settings.data_dir) / AGENT_TRUST_DIR)
    write_private(trust / AGENT_CREDS, nats_jwt.creds_text(grant.user_jwt, user.seed))
    write_public(trust / AGENT_CA, grant.ca_pem)
    write_private(trust / AGENT_KEYRING, json.dumps({"keys": grant.signing_keys}, indent=2) + "\n")
    _write_config(config_path, settings.pc_id, settings.data_dir, grant.nats_urls)
    return Enrolled(settings.pc_id, trust, config_path, list(grant.nats_urls))


def _write_config(path: Path, pc_id: str, data_dir: Path, nats_urls: list[str]) -> None:
    """Merge the enrolled identity into the agent's config file (other settings kept)."""
    import yaml

    values: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise EnrolError(f"{path}: the agent config must be a mapping")
        values.update(loaded)
    values.update(
        {"pc_id": pc_id, "data_dir": str(data_dir.resolve()), "nats_urls": list(nats_urls)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, yaml.safe_dump(values, sort_keys=True))


def read_token(arg: str) -> str:
    """``-`` reads the token from stdin (keeps it off the command line)."""
    return sys.stdin.readline().strip() if arg == "-" else arg.strip()

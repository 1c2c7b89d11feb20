"""kanade.agent.enrol: the backend URL check and merging the enrolled identity into the
agent's config file (the HTTP exchange is covered end to end in
tests/integration/test_enrolment_e2e.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kanade.agent.enrol import EnrolError, _write_config, enrol, enrol_url


def test_the_endpoint_comes_from_an_http_or_https_url() -> None:
    assert enrol_url("https://kanade.example:8443/") == "https://kanade.example:8443/api/enroll"
    assert enrol_url(" http://10.0.0.5:8080") == "http://10.0.0.5:8080/api/enroll"
    for bad in ("ftp://x", "kanade.example:8080", "http://", ""):
        with pytest.raises(EnrolError, match="not a backend URL"):
            enrol_url(bad)


def test_a_bad_pc_id_is_refused_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(EnrolError, match="--pc-id"):
        enrol("http://127.0.0.1:1", "tok", pc_id="bad pc", config=tmp_path / "a.yaml")


def test_the_config_keeps_other_settings_and_is_owner_only(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("heartbeat_interval: 7\nnats_urls: [nats://old:4222]\n")
    _write_config(config, "pc-1", tmp_path / "data", ["tls://broker:4222"])
    assert yaml.safe_load(config.read_text()) == {
        "heartbeat_interval": 7,
        "pc_id": "pc-1",
        "data_dir": str((tmp_path / "data").resolve()),
        "nats_urls": ["tls://broker:4222"],
    }
    assert config.stat().st_mode & 0o777 == 0o600

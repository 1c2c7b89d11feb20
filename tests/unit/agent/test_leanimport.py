"""The agent imports nats-py and pydantic without importlib.metadata (SPEC §10.2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from kanade.agent.leanimport import _NatsHeaderParser, installed_nats_version

PROBE = """
import json, sys
from kanade.agent.leanimport import import_lean
import_lean()
import nats.aio.client
from pydantic.plugin._loader import get_plugins
import nats.js.manager
loaded = "importlib.metadata" in sys.modules
# what reading a signed KV document does (its signature is a header)
parser = nats.js.manager.JetStreamManager(None)._hdr_parser
headers = parser.parsebytes(b"Kanade-Signature: k s\\r\\n\\r\\n")
import importlib.metadata  # the real one is still there for whoever asks later
print(json.dumps({
    "nats_version": nats.aio.client.__version__,
    "metadata_loaded": loaded,
    "headers": dict(headers.items()),
    "email_loaded": "email.parser" in sys.modules,
    "plugins": len(list(get_plugins())),
    "real_version": importlib.metadata.version("nats-py"),
}))
"""


def _probe() -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_nats_and_pydantic_import_without_importlib_metadata() -> None:
    result = _probe()
    assert result["metadata_loaded"] is False
    assert result["plugins"] == 0
    # headers of KV documents parse without loading the e-mail package
    assert result["headers"] == {"Kanade-Signature": "k s"}
    assert result["email_loaded"] is False
    # nats-py still reports its real version to the broker; the real module still works.
    assert result["nats_version"] == result["real_version"]


def test_the_version_comes_from_the_dist_info_name() -> None:
    import importlib.metadata

    assert installed_nats_version() == importlib.metadata.version("nats-py")


def test_the_header_parser_parses_like_the_real_one() -> None:
    from email.parser import BytesParser

    raw = b"Nats-Msg-Id: abc\r\nKV-Operation: DEL\r\nKanade-Signature: k1 c2lnbmF0dXJl==\r\n\r\n"
    lean = _NatsHeaderParser().parsebytes(raw, headersonly=True)
    real = BytesParser().parsebytes(raw, headersonly=True)
    assert dict(lean.items()) == dict(real.items()) == {
        "Nats-Msg-Id": "abc",
        "KV-Operation": "DEL",
        "Kanade-Signature": "k1 c2lnbmF0dXJl==",
    }

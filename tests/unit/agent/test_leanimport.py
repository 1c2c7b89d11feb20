"""The agent imports nats-py and pydantic without importlib.metadata (SPEC §10.2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from kanade.agent.leanimport import _LazyBytesParser, installed_nats_version

PROBE = """
import json, sys
from kanade.agent.leanimport import import_lean
import_lean()
import nats.aio.client
from pydantic.plugin._loader import get_plugins
loaded = "importlib.metadata" in sys.modules
import importlib.metadata  # the real one is still there for whoever asks later
print(json.dumps({
    "nats_version": nats.aio.client.__version__,
    "metadata_loaded": loaded,
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
    # nats-py still reports its real version to the broker; the real module still works.
    assert result["nats_version"] == result["real_version"]


def test_the_version_comes_from_the_dist_info_name() -> None:
    import importlib.metadata

    assert installed_nats_version() == importlib.metadata.version("nats-py")


def test_the_lazy_header_parser_parses_like_the_real_one() -> None:
    from email.parser import BytesParser

    raw = b"Nats-Msg-Id: abc\r\nKV-Operation: DEL\r\n\r\n"
    lazy = _LazyBytesParser().parsebytes(raw, headersonly=True)
    real = BytesParser().parsebytes(raw, headersonly=True)
    assert dict(lazy.items()) == dict(real.items()) == {"Nats-Msg-Id": "abc", "KV-Operation": "DEL"}

"""Logging set-up for kanade processes.

The agent, which runs on every machine of the fleet, logs through the stdlib with a
formatter whose line shape matches structlog's console output (the backend's), so it does
not load structlog and the rich library it pulls in (several MB of resident memory).
"""

from __future__ import annotations

import logging
import sys
import time


def _quiet_nats() -> None:
    # nats-py logs every reconnect attempt at error level; kanade's connection
    # module reports connection state itself.
    logging.getLogger("nats").setLevel(logging.CRITICAL)


class _LineFormatter(logging.Formatter):
    """``2026-11-21T21:22:54.273Z [info     ] message [logger]`` — like structlog's."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (f"{ts}.{int(record.msecs):03d}Z [{record.levelname.lower():<9}] "
                f"{record.getMessage()} [{record.name}]")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_stdlib_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _quiet_nats()

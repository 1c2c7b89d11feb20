"""Logging set-up for kanade processes.

Modules log with ``logging.getLogger(__name__)`` (cheap, no dependency in hot
paths). The backend and CLI render through structlog (``configure_logging``);
the agent, which runs on every machine of the fleet, uses a plain stdlib
formatter with the same line shape (``configure_stdlib_logging``) so it does not
load structlog and the rich library it pulls in (several MB of resident memory).
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


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """structlog rendering of stdlib records (key=value, or JSON lines for shippers)."""
    import structlog

    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _quiet_nats()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

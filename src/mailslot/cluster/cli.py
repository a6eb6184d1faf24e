"""``mailslot cluster status``: the nodes, the shard owners and the queue depths of a cluster.

It connects to the broker as an observer (its own exclusive queue bound to the heartbeats, no
shards), listens for a few heartbeat intervals, then reads every shard queue's depth with a
passive declare (the management plugin is not needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from mailslot.cluster.messages import Catalog, Heartbeat
from mailslot.cluster.routing import DEFAULT_SHARDS, assignment
from mailslot.cluster.transport import Names, QueueSettings, Transport
from mailslot.errors import CodecError, ConfigError, TransportError
from mailslot.wire import decode_batch

__all__ = ["ClusterStatus", "add_cli", "cluster_status", "format_status", "run_cli"]

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


class ClusterStatus:
    """What ``cluster status`` found: heartbeats by node, and queue depths by queue name."""

    def __init__(
        self, nodes: dict[str, Heartbeat], depths: dict[str, int], names: Names, shards: int
    ) -> None:
        self.nodes = nodes
        self.depths = depths
        self.names = names
        self.shards = shards

    def as_dict(self) -> dict[str, Any]:
        table = assignment(self.nodes, self.shards)
        owners: dict[int, str | None] = {}
        for hb in self.nodes.values():
            for shard in hb.active:
                owners[shard] = hb.node
        return {
            "nodes": [
                {"node": hb.node, "url": hb.url, "active_shards": len(hb.active)}
                for hb in sorted(self.nodes.values(), key=lambda h: h.node)
            ],
            "shards": [
                {
                    "shard": n,
                    "active": owners.get(n),
                    "primary": table[n][0] if table else None,
                    "standby": table[n][1] if table else None,
                    "depth": self.depths.get(self.names.shard(n), 0),
                }
                for n in range(self.shards)
            ],
            "dead_letters": self.depths.get(self.names.dead, 0),
        }


async def cluster_status(transport: Transport, *, listen: float = 2.5) -> ClusterStatus:
    """Listen to heartbeats for ``listen`` seconds and read the queue depths.

    Raises:
        TransportError: the broker cannot be reached.
    """
    catalog = Catalog()
    nodes: dict[str, Heartbeat] = {}

    def on_message(body: bytes) -> None:
        try:
            for envelope in decode_batch(body):
                message = catalog.decode(envelope)
                if isinstance(message, Heartbeat):
                    nodes[message.node] = message
        except CodecError:
            return

    observer = f"status-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
    await transport.connect(observer, on_node_message=on_message, on_lost=lambda _exc: None)
    try:
        await asyncio.sleep(listen)
        depths = await transport.queue_depths()
    finally:
        await transport.close()
    return ClusterStatus(nodes, depths, transport.names, transport.settings.shards)


def format_status(status: ClusterStatus) -> str:
    """A plain-text table of :func:`cluster_status`'s result."""
    data = status.as_dict()
    lines = [f"nodes ({len(data['nodes'])}):"]
    for node in data["nodes"]:
        lines.append(
            f"  {node['node']:<30} active shards {node['active_shards']:>4}  {node['url'] or ''}"
        )
    lines.append("shards:  shard  active owner                 primary / standby    depth")
    for row in data["shards"]:
        lines.append(
            f"         {row['shard']:>5}  {row['active'] or '-':<28} "
            f"{row['primary'] or '-'} / {row['standby'] or '-'}  {row['depth']:>6}"
        )
    lines.append(f"dead letters: {data['dead_letters']}")
    return "\n".join(lines)


def add_cli(subparsers: Any) -> None:
    """Add ``mailslot cluster status`` to the ``mailslot`` command."""
    cluster = subparsers.add_parser("cluster", help="inspect a cluster (mailslot cluster status)")
    sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    sub.required = True
    status = sub.add_parser("status", help="nodes, shard owners and queue depths")
    status.add_argument("--broker", default=DEFAULT_BROKER, help=f"AMQP URL ({DEFAULT_BROKER})")
    status.add_argument("--prefix", default="mailslot", help="cluster name prefix (mailslot)")
    status.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help="shard count (64)")
    status.add_argument("--listen", type=float, default=2.5, help="seconds to hear heartbeats")
    status.add_argument("--json", action="store_true", help="print one JSON object")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``mailslot cluster ...``; returns the exit status.

    Raises:
        ConfigError: a bad URL, prefix or shard count.
    """
    import json

    from mailslot.cluster.amqp import AmqpTransport

    if not 1 <= args.shards <= 65536:
        raise ConfigError(f"--shards must be in 1..65536, got {args.shards}")
    transport = AmqpTransport(
        args.broker, names=Names(args.prefix), settings=QueueSettings(shards=args.shards)
    )
    try:
        status = asyncio.run(cluster_status(transport, listen=args.listen))
    except TransportError as exc:
        print(f"mailslot cluster status: error: {exc}")
        return 1
    print(json.dumps(status.as_dict()) if args.json else format_status(status))
    return 0

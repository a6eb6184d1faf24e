"""The RabbitMQ transport (aio-pika, with aiormq underneath for the hot path).

Theory of operation
-------------------
One connection per node, with one channel in confirm mode for publishing and binding, one channel
for the node's exclusive queue (consumed without acks: what is addressed to a node dies with it),
and one channel per shard queue it consumes (so a shard is handed over by closing its channel,
which returns its unacked deliveries to the queue in order, as RabbitMQ advises).

Topology (every name under :class:`~mailslot.cluster.transport.Names`' prefix; what RabbitMQ 3.10
offers, nothing that 4.x refuses): a direct exchange for node queues, a direct exchange for shard
queues (routing key = shard number), a topic exchange for events, a fanout dead-letter exchange
into a durable dead-letter queue. Shard queues are durable quorum queues with
``x-single-active-consumer``, ``x-delivery-limit``, ``x-dead-letter-exchange`` and
``x-max-length`` with ``x-overflow: reject-publish`` (a refused publish is a ``basic.nack``, which
:meth:`AmqpTransport.publish_shard` turns into :class:`~mailslot.errors.TransportBusy`). The
node queue is exclusive (RabbitMQ 4.3 rejects transient shared queues).

Order of deliveries: aiormq starts one task per delivery, in delivery order; the callbacks here
are coroutines that do all their work before their first ``await`` (they have none), so they run
in delivery order and are never interleaved. A ``connection.blocked`` from the broker makes
aiormq hold every write, so publishes stop being confirmed, the node's window of unconfirmed
frames fills up, and its senders are slowed down.

Every dependency exception is turned into :class:`~mailslot.errors.TransportError` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from pamqp import commands as spec

from mailslot.cluster.transport import (
    Delivery,
    DeliveryCallback,
    Names,
    QueueSettings,
    ShardSubscription,
    Transport,
)
from mailslot.errors import ConfigError, TransportBusy, TransportError

__all__ = ["AmqpTransport", "check_broker_url"]

log = logging.getLogger("mailslot.cluster.amqp")

_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    RuntimeError,
)
_PERSISTENT = spec.Basic.Properties(delivery_mode=2)
_TRANSIENT = spec.Basic.Properties(delivery_mode=1)


def check_broker_url(url: str) -> str:
    """Return ``url`` if it is an ``amqp://`` or ``amqps://`` URL.

    Raises:
        ConfigError: another scheme, or no host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(f"broker URL must look like amqp://user:pass@host:5672/, got {url!r}")
    return url


class _AmqpSubscription(ShardSubscription):
    def __init__(self, transport: AmqpTransport, shard: int, channel: AbstractChannel) -> None:
        self.transport = transport
        self.shard = shard
        self.channel = channel
        self.raw: Any = None
        self._closed = False
        self._ack_to = 0
        self._acker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def ack(self, tag: int, *, multiple: bool = False) -> None:
        if self._closed:
            return
        if not multiple:
            self._run(self._send(spec.Basic.Ack(delivery_tag=tag)))
            return
        if tag > self._ack_to:
            self._ack_to = tag
            if self._acker is None:
                self._acker = asyncio.get_running_loop().create_task(self._acks())

    async def _acks(self) -> None:
        sent = 0
        try:
            while self._ack_to > sent and not self._closed:
                sent = self._ack_to
                await self.raw.basic_ack(sent, multiple=True, wait=False)
        except _ERRORS as exc:
            self.transport.channel_failed(exc)
        finally:
            self._acker = None

    def nack(self, tag: int, *, requeue: bool) -> None:
        if not self._closed:
            self._run(self._send(spec.Basic.Nack(delivery_tag=tag, requeue=requeue)))

    async def _send(self, frame: spec.Basic.Ack | spec.Basic.Nack) -> None:
        try:
            if isinstance(frame, spec.Basic.Ack):
                await self.raw.basic_ack(frame.delivery_tag, wait=False)
            else:
                await self.raw.basic_nack(frame.delivery_tag, requeue=frame.requeue, wait=False)
        except _ERRORS as exc:
            self.transport.channel_failed(exc)

    def _run(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._closed:
            return
        if self._acker is not None:
            with contextlib.suppress(*_ERRORS):
                await asyncio.shield(self._acker)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        self.transport.forget(self)
        with contextlib.suppress(*_ERRORS):
            await self.channel.close()

    def drop(self) -> None:
        self._closed = True
        if self._acker is not None:
            self._acker.cancel()
        for task in self._tasks:
            task.cancel()

    @property
    def closed(self) -> bool:
        return self._closed


class AmqpTransport(Transport):
    """A node's connection to RabbitMQ (see the module docstring).

    Args:
        url: ``amqp://user:password@host:port/vhost``.
        names: The exchange and queue names (the prefix isolates clusters and test runs).
        settings: Shard count, delivery limit and length limit of the shard queues.
        heartbeat: AMQP heartbeat in seconds (how fast a dead peer is noticed).
        timeout: Seconds to wait for the broker when connecting.

    Raises:
        ConfigError: the URL is not an AMQP URL.
    """

    def __init__(
        self,
        url: str,
        *,
        names: Names | None = None,
        settings: QueueSettings | None = None,
        heartbeat: int = 5,
        timeout: float = 10.0,
    ) -> None:
        self.url = check_broker_url(url)
        self.names = names or Names()
        self.settings = settings or QueueSettings()
        self.heartbeat = heartbeat
        self.timeout = timeout
        self._conn: AbstractRobustConnection | Any = None
        self._pub: AbstractChannel | None = None
        self._pub_raw: Any = None
        self._node_channel: AbstractChannel | None = None
        self._node_id: str | None = None
        self._on_lost: Callable[[BaseException | None], None] | None = None
        self._subs: set[_AmqpSubscription] = set()
        self._closing = False
        self._lost_reported = False

    # ---- connection --------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            self._conn = await aio_pika.connect(
                self.url, timeout=self.timeout, heartbeat=self.heartbeat
            )
        except _ERRORS as exc:
            raise TransportError(
                f"cannot connect to the broker at {self._where()}: {exc!r}"
            ) from exc
        self._closing = False
        self._lost_reported = False
        self._conn.close_callbacks.add(self._connection_closed)

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 5672}"

    async def declare(self) -> None:
        """Declare the exchanges, the shard queues and the dead-letter queue (idempotent)."""
        assert self._conn is not None
        n = self.names
        try:
            channel = await self._conn.channel()
            direct = await channel.declare_exchange(
                n.direct, aio_pika.ExchangeType.DIRECT, durable=True
            )
            shards = await channel.declare_exchange(
                n.shards, aio_pika.ExchangeType.DIRECT, durable=True
            )
            await channel.declare_exchange(n.events, aio_pika.ExchangeType.TOPIC, durable=True)
            dlx = await channel.declare_exchange(n.dlx, aio_pika.ExchangeType.FANOUT, durable=True)
            dead = await channel.declare_queue(
                n.dead, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx, routing_key="")
            for shard in range(self.settings.shards):
                queue = await channel.declare_queue(
                    n.shard(shard), durable=True, arguments=self._shard_arguments()
                )
                await queue.bind(shards, routing_key=str(shard))
            del direct
            await channel.close()
        except _ERRORS as exc:
            raise TransportError(f"cannot declare the cluster topology: {exc!r}") from exc

    def _shard_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-single-active-consumer": True,
            "x-delivery-limit": self.settings.delivery_limit,
            "x-dead-letter-exchange": self.names.dlx,
            "x-max-length": self.settings.max_length,
            "x-overflow": "reject-publish",
        }

    async def connect(
        self,
        node_id: str,
        *,
        on_node_message: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        await self._open()
        self._node_id = node_id
        self._on_lost = on_lost
        try:
            await self.declare()
            self._pub = await self._conn.channel(publisher_confirms=True)
            self._pub_raw = await self._pub.get_underlay_channel()
            self._node_channel = await self._conn.channel()
            queue = await self._node_channel.declare_queue(
                self.names.node(node_id), exclusive=True, auto_delete=True
            )
            await queue.bind(self.names.direct, routing_key=node_id)
            await queue.bind(self.names.events, routing_key="cluster.#")
            raw = await self._node_channel.get_underlay_channel()

            async def on_message(message: Any) -> None:
                on_node_message(message.body)

            await raw.basic_consume(queue.name, on_message, no_ack=True)
        except _ERRORS as exc:
            await self.close()
            raise TransportError(f"cannot join the cluster on the broker: {exc!r}") from exc

    def _connection_closed(self, _sender: Any, exc: BaseException | None = None) -> None:
        for sub in list(self._subs):
            sub.drop()
        self._subs.clear()
        if self._closing or self._lost_reported:
            return
        self._lost_reported = True
        if self._on_lost is not None:
            self._on_lost(exc)

    def channel_failed(self, exc: BaseException) -> None:
        """A channel broke while the connection lives: treat it as a lost connection."""
        if self._closing or self._lost_reported:
            return
        log.warning("broker channel failed (%r); reconnecting", exc)
        conn = self._conn
        if conn is not None:
            asyncio.get_running_loop().create_task(self._abort(conn))
        self._connection_closed(None, exc)

    async def _abort(self, conn: Any) -> None:
        with contextlib.suppress(*_ERRORS):
            await conn.close()

    def forget(self, sub: _AmqpSubscription) -> None:
        self._subs.discard(sub)

    async def close(self) -> None:
        self._closing = True
        for sub in list(self._subs):
            sub.drop()
        self._subs.clear()
        conn, self._conn = self._conn, None
        self._pub = self._pub_raw = self._node_channel = None
        if conn is not None:
            with contextlib.suppress(*_ERRORS):
                await conn.close()

    # ---- publishing --------------------------------------------------------------------------

    async def _publish(self, exchange: str, key: str, body: bytes, persistent: bool) -> None:
        raw = self._pub_raw
        if raw is None:
            raise TransportError("not connected to the broker")
        try:
            result = await raw.basic_publish(
                body,
                exchange=exchange,
                routing_key=key,
                properties=_PERSISTENT if persistent else _TRANSIENT,
            )
        except _ERRORS as exc:
            raise TransportError(f"publish to {exchange}/{key} failed: {exc!r}") from exc
        if isinstance(result, spec.Basic.Nack | spec.Basic.Reject):
            raise TransportBusy(f"the broker refused a frame for {exchange}/{key} (queue full?)")

    async def publish_node(self, node_id: str, body: bytes) -> None:
        await self._publish(self.names.direct, node_id, body, False)

    async def publish_shard(self, shard: int, body: bytes) -> None:
        await self._publish(self.names.shards, str(shard), body, True)

    async def publish_event(self, key: str, body: bytes) -> None:
        await self._publish(self.names.events, key, body, False)

    async def publish_dead(self, body: bytes) -> None:
        await self._publish(self.names.dlx, "", body, True)

    async def bind_event(self, key: str) -> None:
        await self._bind(key, bind=True)

    async def unbind_event(self, key: str) -> None:
        await self._bind(key, bind=False)

    async def _bind(self, key: str, *, bind: bool) -> None:
        raw = self._pub_raw
        if raw is None or self._node_id is None:
            raise TransportError("not connected to the broker")
        queue = self.names.node(self._node_id)
        try:
            if bind:
                await raw.queue_bind(queue, self.names.events, routing_key=key)
            else:
                await raw.queue_unbind(queue, self.names.events, routing_key=key)
        except _ERRORS as exc:
            raise TransportError(f"cannot bind {key!r}: {exc!r}") from exc

    # ---- consuming ---------------------------------------------------------------------------

    async def subscribe_shard(
        self, shard: int, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> ShardSubscription:
        if self._conn is None:
            raise TransportError("not connected to the broker")
        try:
            channel = await self._conn.channel()
            await channel.set_qos(prefetch_count=prefetch)
            sub = _AmqpSubscription(self, shard, channel)
            sub.raw = raw = await channel.get_underlay_channel()

            async def on_message(message: Any) -> None:
                delivery = message.delivery
                on_delivery(Delivery(message.body, delivery.delivery_tag, delivery.redelivered))

            self._subs.add(sub)
            await raw.basic_consume(self.names.shard(shard), on_message, no_ack=False)
        except _ERRORS as exc:
            raise TransportError(f"cannot consume shard {shard}: {exc!r}") from exc
        return sub

    async def queue_depths(self) -> dict[str, int]:
        if self._conn is None:
            raise TransportError("not connected to the broker")
        depths: dict[str, int] = {}
        try:
            channel = await self._conn.channel()
            names = [self.names.shard(n) for n in range(self.settings.shards)]
            for name in (*names, self.names.dead):
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
            await channel.close()
        except _ERRORS as exc:
            raise TransportError(f"cannot read queue depths: {exc!r}") from exc
        return depths

    async def delete_topology(self) -> None:
        opened = self._conn is None
        if opened:
            await self._open()
        n = self.names
        try:
            channel = await self._conn.channel()
            for shard in range(self.settings.shards):
                await channel.queue_delete(n.shard(shard))
            await channel.queue_delete(n.dead)
            for exchange in (n.direct, n.shards, n.events, n.dlx):
                await channel.exchange_delete(exchange)
            await channel.close()
        except _ERRORS as exc:
            raise TransportError(f"cannot delete the topology: {exc!r}") from exc
        finally:
            if opened:
                await self.close()

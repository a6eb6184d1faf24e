"""A shard whose subscription fails (its queue not back yet after a broker restart) is retried."""

from __future__ import annotations

import logging
import secrets

import pytest

from mailslot.cluster.transport import (
    DeliveryCallback,
    MemoryTransport,
    Names,
    QueueSettings,
    ShardSubscription,
    Transport,
)
from mailslot.errors import TransportError

from .conftest import Cluster, ObservedTransport, eventually


class RefusesOnce(ObservedTransport):
    """Refuses the first subscription to each shard in ``refused``, as a broker does while a
    quorum queue has no leader yet."""

    def __init__(self, inner: Transport, refused: set[int]) -> None:
        super().__init__(inner)
        self.refused = set(refused)
        self.refusals = 0

    async def subscribe_shard(
        self, shard: int, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> ShardSubscription:
        if shard in self.refused:
            self.refused.discard(shard)
            self.refusals += 1
            raise TransportError(f"queue of shard {shard} is not available yet")
        return await super().subscribe_shard(shard, on_delivery, prefetch=prefetch)


class RefusingCluster(Cluster):
    def __init__(self) -> None:
        names = Names(f"msr{secrets.token_hex(4)}")
        super().__init__("memory", names, QueueSettings(shards=8))
        self.transports: list[RefusesOnce] = []

    def transport(self) -> Transport:
        inner = super().transport()
        assert isinstance(inner, ObservedTransport)
        observed = RefusesOnce(inner.inner, {2, 5})
        self.transports.append(observed)
        return observed


async def test_a_shard_whose_subscription_failed_is_subscribed_at_a_later_tick() -> None:
    cluster = RefusingCluster()
    try:
        node = await cluster.add("n0")
        await cluster.formed()  # every shard owned, 2 and 5 included
        assert node.owned_shards() == frozenset(range(8))
        assert cluster.transports[0].refusals == 2
    finally:
        await cluster.close()


async def test_shards_consumed_again_after_a_lost_connection_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever follows a node's log (an operator, the multi-process tests) sees it drop its
    shards when the connection goes and take them again once it is back."""
    cluster = Cluster("memory", Names(f"msl{secrets.token_hex(4)}"), QueueSettings(shards=8))
    try:
        node = await cluster.add("n0")
        await cluster.formed()
        transport = node.transport
        assert isinstance(transport, ObservedTransport)
        assert isinstance(transport.inner, MemoryTransport)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mailslot.cluster"):
            transport.inner.kill()
            await eventually(
                lambda: (
                    node.owned_shards() == frozenset(range(8))
                    and bool([r for r in caplog.records if "consuming 8 shards" in r.getMessage()])
                ),
                what="the shards consumed again, and logged",
            )
        said = [r.getMessage() for r in caplog.records if "consuming" in r.getMessage()]
        assert said == [
            "cluster n0: consuming 0 shards, 0 as primary",
            "cluster n0: consuming 8 shards, 8 as primary",
        ]
    finally:
        await cluster.close()

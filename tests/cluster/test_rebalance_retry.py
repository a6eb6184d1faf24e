"""A shard whose subscription fails (its queue not back yet after a broker restart) is retried."""

from __future__ import annotations

import secrets

from mailslot.cluster.transport import (
    DeliveryCallback,
    Names,
    QueueSettings,
    ShardSubscription,
    Transport,
)
from mailslot.errors import TransportError

from .conftest import Cluster, ObservedTransport


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

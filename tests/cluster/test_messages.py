"""The catalog joins registries; the node's settings are checked; document topics fit AMQP."""

from __future__ import annotations

import msgspec
import pytest

from mailslot.cluster.messages import Catalog, Heartbeat
from mailslot.cluster.node import ClusterConfig
from mailslot.collab.cluster import doc_topic
from mailslot.errors import CodecError, ConfigError, InvalidKey
from mailslot.wire import Envelope, MessageRegistry


class A(msgspec.Struct, frozen=True, tag="cat.a"):
    x: int


def test_catalog_round_trips_and_refuses_what_it_does_not_know() -> None:
    registry = MessageRegistry("one")
    registry.register(A)
    catalog = Catalog(registry)
    tag, version, body = catalog.encode(A(3))
    assert (tag, version) == ("cat.a", 1)
    assert catalog.decode(Envelope(b"i", 0, "/t", tag, version, body)) == A(3)
    hb = catalog.encode(Heartbeat("n1", (1, 2)))
    assert catalog.decode(Envelope(b"i", 0, "/t", hb[0], hb[1], hb[2])) == Heartbeat("n1", (1, 2))
    with pytest.raises(CodecError, match="register it"):
        catalog.encode(msgspec.Struct())
    with pytest.raises(CodecError, match="unknown message type"):
        catalog.decode(Envelope(b"i", 0, "/t", "cat.b", 1, body))


def test_a_tag_may_be_registered_by_one_registry_only() -> None:
    first, second = MessageRegistry("first"), MessageRegistry("second")
    first.register(A)

    class B(msgspec.Struct, frozen=True, tag="cat.a"):
        y: int

    second.register(B)
    with pytest.raises(ValueError, match="already registered by 'first'"):
        Catalog(first, second)


def test_cluster_config_names_what_is_wrong() -> None:
    with pytest.raises(InvalidKey):
        ClusterConfig("bad/id")
    with pytest.raises(ConfigError, match="node_timeout"):
        ClusterConfig("n", heartbeat_interval=2.0, node_timeout=1.0)
    with pytest.raises(ConfigError, match="prefetch"):
        ClusterConfig("n", prefetch=0)


def test_document_topics_stay_within_the_amqp_limit() -> None:
    assert doc_topic("docs", "d1") == "doc.docs/d1"
    long = doc_topic("docs", "x" * 250)
    assert long.startswith("doc.h.")
    assert len(long) < 255
    assert long != doc_topic("docs", "y" * 250)

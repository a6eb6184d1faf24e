"""The cluster's own messages, and the catalog that encodes any registered message for the wire.

A :class:`Catalog` joins several :class:`~mailslot.wire.MessageRegistry` (each protocol owns one:
the cluster's control messages, the document contract, the hub's ``Publish``, an application's
own) so that a node can encode whatever an actor sends to a remote ref and decode whatever
arrives, by the envelope's tag. A tag may be registered once across all of them.

Pure: msgspec, :mod:`mailslot.wire` and :mod:`mailslot.errors` only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mailslot.errors import CodecError
from mailslot.wire import Envelope, MessageRegistry

__all__ = ["CLUSTER_MESSAGES", "Catalog", "Heartbeat", "Leave", "Undeliverable"]


class Heartbeat(msgspec.Struct, frozen=True, tag="cluster.heartbeat", array_like=True):
    """A node is alive; sent on the events exchange every heartbeat interval.

    Attributes:
        node: The node id.
        active: The shards it is consuming (active or waiting as standby).
        url: Where its clients connect (for ``mailslot cluster status``).
        hosts: False for a node that hosts no shards (a client-only node, a status probe).
    """

    node: str
    active: tuple[int, ...] = ()
    url: str | None = None
    hosts: bool = True


class Leave(msgspec.Struct, frozen=True, tag="cluster.leave", array_like=True):
    """A node is leaving on purpose (its shards move at once, not after a timeout)."""

    node: str


class Undeliverable(msgspec.Struct, frozen=True, tag="cluster.undeliverable", array_like=True):
    """Sent back to an asker whose request reached no actor (fails its ask at once)."""

    target: str
    reason: str


CLUSTER_MESSAGES = MessageRegistry("cluster")
for _cls in (Heartbeat, Leave, Undeliverable):
    CLUSTER_MESSAGES.register(_cls)


class Catalog:
    """Every message type a node can send or receive, across registries."""

    def __init__(self, *registries: MessageRegistry) -> None:
        self._by_cls: dict[type[Any], tuple[MessageRegistry, int]] = {}
        self._by_tag: dict[str, MessageRegistry] = {}
        # current-version decoders by tag: one lookup and one C call per message on the hot path
        self._fast: dict[str, tuple[int, msgspec.msgpack.Decoder[Any]]] = {}
        for registry in (CLUSTER_MESSAGES, *registries):
            self.add(registry)

    def add(self, registry: MessageRegistry) -> None:
        """Add a registry's types.

        Raises:
            ValueError: one of its tags is already known from another registry.
        """
        for info in registry.message_types:
            known = self._by_tag.get(info.tag)
            if known is registry:
                continue
            if known is not None:
                raise ValueError(
                    f"tag {info.tag!r} of registry {registry.name!r} is already registered by "
                    f"{known.name!r}"
                )
            self._by_tag[info.tag] = registry
            self._by_cls[info.cls] = (registry, info.version)
            self._fast[info.tag] = (info.version, registry.decoder(info.tag))

    def encode(self, message: Any) -> tuple[str, int, bytes]:
        """``(tag, schema_version, body)`` of a registered message.

        Raises:
            CodecError: its type is in no registry, or it cannot be encoded.
        """
        entry = self._by_cls.get(type(message))
        if entry is None:
            raise CodecError(
                f"{type(message).__qualname__} cannot cross the cluster: register it in a "
                "MessageRegistry given to the ClusterNode"
            )
        registry, version = entry
        tag, body = registry.encode(message)
        return tag, version, body

    def decode(self, envelope: Envelope) -> Any:
        """The typed message in ``envelope``.

        Raises:
            CodecError: unknown tag, or a body that does not validate.
        """
        fast = self._fast.get(envelope.tag)
        if fast is not None and fast[0] == envelope.schema_version:
            try:
                return fast[1].decode(envelope.body)
            except (msgspec.DecodeError, RecursionError):
                pass  # the registry's decode below names the fault
        registry = self._by_tag.get(envelope.tag)
        if registry is None:
            raise CodecError(f"unknown message type {envelope.tag!r} (no registry has it)")
        return registry.decode(envelope.tag, envelope.body, envelope.schema_version)

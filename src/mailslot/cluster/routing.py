"""Shard routing: entity keys, the stable key-to-shard hash, rendezvous ownership, membership.

Theory of operation
-------------------
Entities (a document, a user's presence, a user's notification inbox) are addressed by a key,
``<kind>/<id>`` (:func:`entity_key`). :func:`shard_for` maps a key to one of S shards with a hash
mailslot computes itself (BLAKE2b, 64 bits, personalised), so every process, machine and Python
version agrees; Python's ``hash`` is salted per process and must never decide routing. S is fixed
per cluster: changing it moves almost every key.

Each shard is a RabbitMQ queue with a single active consumer; RabbitMQ, not this module, guarantees
one owner at a time. This module only decides *balance*: which node should consume a shard as
primary and which as standby. :func:`rank_nodes` orders the live nodes for a shard by rendezvous
(highest random weight) hashing: every node gets a pseudo-random weight per shard and the heaviest
wins. So each node computes the same answer from the same live set with no coordination, and when
a node leaves only its own shards move (to their standby, which ranked second); when one joins it
takes only the shards where it now ranks first. Views of the live set may disagree for a moment;
then two nodes may both try to consume a shard, and RabbitMQ's single active consumer keeps that
correct.

:class:`Membership` learns the live set from heartbeats: a pure state machine fed
``heartbeat(node, now)`` and ``tick(now)`` by its owner (the cluster actor), with times from the
owner's monotonic clock. A node is live while its last heartbeat is less than ``timeout`` old. The
``version`` counter changes exactly when the live set does, so callers recompute the assignment
only then.

Identifier rules: entity ids and node ids are 1 to 200 characters from ``A-Z a-z 0-9 . _ ~ : @ + =
-``, so that a key is also a valid AMQP routing key word sequence (``doc.<id>`` on the topic
exchange: no ``*``, ``#`` or spaces) and a URL path segment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Final, Literal, get_args

import msgspec

from mailslot.errors import ConfigError, InvalidKey

__all__ = [
    "DEFAULT_SHARDS",
    "ENTITY_KINDS",
    "MAX_ID_LENGTH",
    "MAX_SHARDS",
    "EntityKind",
    "Membership",
    "MembershipStatistics",
    "assignment",
    "check_node_id",
    "entity_key",
    "parse_entity_key",
    "rank_nodes",
    "roles",
    "shard_for",
]

EntityKind = Literal["docs", "presence", "notify"]
ENTITY_KINDS: Final[tuple[EntityKind, ...]] = get_args(EntityKind)
DEFAULT_SHARDS: Final = 64
MAX_SHARDS: Final = 65536
MAX_ID_LENGTH: Final = 200

_ID_CHARS: Final = "A-Za-z0-9._~:@+=-"
_ID: Final = re.compile(f"[{_ID_CHARS}]+")
_BAD_CHAR: Final = re.compile(f"[^{_ID_CHARS}]")


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidKey(f"{what} must be a string, got {type(value).__name__}", key=value)
    if _ID.fullmatch(value) is not None and len(value) <= MAX_ID_LENGTH:
        return value
    if not value:
        raise InvalidKey(f"{what} is empty", key=value)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidKey(
            f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}", key=value
        )
    bad = _BAD_CHAR.search(value)
    assert bad is not None
    raise InvalidKey(
        f"{what} {value!r} has {bad.group()!r} at position {bad.start()}; allowed are {_ID_CHARS}",
        key=value,
    )


def entity_key(kind: EntityKind, entity_id: str) -> str:
    """The routing key of an entity: ``docs/<id>``, ``presence/<doc id>``, ``notify/<user>``.

    Raises:
        InvalidKey: unknown kind, or an id that is empty, too long or has a forbidden character.
    """
    if kind not in ENTITY_KINDS:
        raise InvalidKey(
            f"unknown entity kind {kind!r}; expected one of {', '.join(ENTITY_KINDS)}", key=kind
        )
    return f"{kind}/{_check_id(entity_id, f'{kind} id')}"


def parse_entity_key(key: str) -> tuple[EntityKind, str]:
    """Split and validate an entity key made by :func:`entity_key`.

    Raises:
        InvalidKey: not ``<kind>/<id>`` with a known kind and a valid id.
    """
    kind, slash, entity_id = key.partition("/") if isinstance(key, str) else ("", "", "")
    if not slash:
        raise InvalidKey(f"entity key {key!r} is not of the form <kind>/<id>", key=key)
    for known in ENTITY_KINDS:
        if kind == known:
            return known, _check_id(entity_id, f"{kind} id")
    raise InvalidKey(
        f"entity key {key!r} has unknown kind {kind!r}; expected one of {', '.join(ENTITY_KINDS)}",
        key=key,
    )


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` if it is a valid node id (same rules as entity ids).

    Raises:
        InvalidKey: empty, too long, or a forbidden character.
    """
    return _check_id(node_id, "node id")


def _check_shards(shards: int) -> None:
    if not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ConfigError(f"shard count must be an integer in 1..{MAX_SHARDS}, got {shards!r}")


def _hash64(data: bytes, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "big")


def shard_for(key: str, shards: int = DEFAULT_SHARDS) -> int:
    """The shard (``0 <= shard < shards``) that owns ``key``; the same everywhere, always.

    BLAKE2b-64 of the UTF-8 key (lone surrogates passed through), personalised
    ``mailslot.shard``, modulo ``shards`` (the modulo bias is below 2**-48 for 65536 shards).

    Raises:
        ConfigError: ``shards`` is not in 1..65536.
    """
    _check_shards(shards)
    return _hash64(key.encode("utf-8", "surrogatepass"), b"mailslot.shard") % shards


def _weight(shard: int, node: str) -> int:
    return _hash64(b"%d:%s" % (shard, node.encode("utf-8", "surrogatepass")), b"mailslot.hrw")


def rank_nodes(shard: int, nodes: Iterable[str]) -> list[str]:
    """The distinct ``nodes`` ordered by rendezvous weight for ``shard``, heaviest first.

    The first is the shard's primary, the second its standby. Ties (a 2**-64 chance) are broken by
    node id, so the order is total and the same on every node.
    """
    return sorted(set(nodes), key=lambda node: (-_weight(shard, node), node))


def assignment(
    nodes: Iterable[str], shards: int = DEFAULT_SHARDS
) -> dict[int, tuple[str, str | None]]:
    """``{shard: (primary, standby)}`` for every shard; ``standby`` is None with one node.

    With no nodes there is no owner, and the result is empty.

    Raises:
        ConfigError: ``shards`` is not in 1..65536.
    """
    _check_shards(shards)
    live = sorted(set(nodes))
    if not live:
        return {}
    result: dict[int, tuple[str, str | None]] = {}
    for shard in range(shards):
        first = second = None
        first_key = second_key = (1, "")  # sorts after every real (-weight, node)
        for node in live:
            key = (-_weight(shard, node), node)
            if key < first_key:
                second, second_key = first, first_key
                first, first_key = node, key
            elif key < second_key:
                second, second_key = node, key
        assert first is not None
        result[shard] = (first, second)
    return result


def roles(
    node: str, table: Mapping[int, tuple[str, str | None]]
) -> tuple[frozenset[int], frozenset[int]]:
    """The shards ``node`` consumes as primary and as standby under an :func:`assignment`."""
    primary = frozenset(s for s, (p, _) in table.items() if p == node)
    standby = frozenset(s for s, (_, b) in table.items() if b == node)
    return primary, standby


class MembershipStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a :class:`Membership`.

    Attributes:
        live: The live node ids.
        version: Changes exactly when ``live`` does.
        heartbeats: Heartbeats accepted.
        joins: Nodes that became live.
        expiries: Nodes that timed out.
        leaves: Nodes that left on purpose.
        rejected: Heartbeats ignored (stale, or a new node beyond ``max_nodes``).
    """

    live: frozenset[str]
    version: int
    heartbeats: int
    joins: int
    expiries: int
    leaves: int
    rejected: int


class Membership:
    """The live set of nodes, learnt from heartbeats; a pure state machine.

    The owner feeds it heartbeats (``heartbeat(node, now)`` on each received heartbeat) and ticks
    (``tick(now)``, at least once per timeout), with ``now`` in seconds from one monotonic clock. A
    node is live from its first fresh heartbeat until a tick at which its last heartbeat is
    ``timeout`` seconds old or older, or until it leaves. Time never runs backwards here: an
    earlier ``now`` than one already seen counts as the latest seen.

    Args:
        timeout: Seconds without a heartbeat after which a node is dead.
        local: This node's id; always live in its own view (it cannot time out or leave).
        max_nodes: At most this many live nodes; heartbeats of further new nodes are rejected and
            counted.

    Raises:
        ConfigError: a non-positive timeout or max_nodes.
        InvalidKey: ``local`` is not a valid node id.
    """

    def __init__(self, *, timeout: float, local: str | None = None, max_nodes: int = 1024) -> None:
        if not timeout > 0:
            raise ConfigError(f"membership timeout must be positive, got {timeout!r}")
        if max_nodes < 1:
            raise ConfigError(f"max_nodes must be at least 1, got {max_nodes!r}")
        self._timeout = float(timeout)
        self._local = None if local is None else check_node_id(local)
        self._max_nodes = max_nodes
        self._last_seen: dict[str, float] = {}
        self._now = float("-inf")
        self._version = 0
        self._live: frozenset[str] = frozenset() if local is None else frozenset((local,))
        self._heartbeats = self._joins = self._expiries = self._leaves = self._rejected = 0

    @property
    def live(self) -> frozenset[str]:
        """The live node ids (including ``local``)."""
        return self._live

    @property
    def version(self) -> int:
        """A counter that changes exactly when :attr:`live` changes."""
        return self._version

    def last_seen(self, node_id: str) -> float | None:
        """When ``node_id``'s latest heartbeat arrived, if it is live (None for ``local``)."""
        return self._last_seen.get(node_id)

    def heartbeat(self, node_id: str, now: float) -> bool:
        """Record a heartbeat of ``node_id`` received at ``now``; True if the node just joined.

        A heartbeat already ``timeout`` old by the latest time seen is stale and ignored.

        Raises:
            InvalidKey: ``node_id`` is not a valid node id.
        """
        check_node_id(node_id)
        self._advance(now)
        if node_id == self._local:
            self._heartbeats += 1
            return False
        if self._now - now >= self._timeout:
            self._rejected += 1
            return False
        previous = self._last_seen.get(node_id)
        if previous is not None:
            self._heartbeats += 1
            if now > previous:
                self._last_seen[node_id] = now
            return False
        if len(self._last_seen) + (self._local is not None) >= self._max_nodes:
            self._rejected += 1
            return False
        self._heartbeats += 1
        self._joins += 1
        self._last_seen[node_id] = now
        self._changed()
        return True

    def leave(self, node_id: str) -> bool:
        """``node_id`` announced that it is leaving; True if it was live.

        ``local`` never leaves its own view. A later heartbeat brings a node back (a restarted node
        keeps its id).
        """
        if self._last_seen.pop(node_id, None) is None:
            return False
        self._leaves += 1
        self._changed()
        return True

    def tick(self, now: float) -> frozenset[str]:
        """Expire the nodes whose last heartbeat is ``timeout`` old at ``now``; returns them."""
        self._advance(now)
        deadline = self._now - self._timeout
        expired = frozenset(n for n, seen in self._last_seen.items() if seen <= deadline)
        if expired:
            for node in expired:
                del self._last_seen[node]
            self._expiries += len(expired)
            self._changed()
        return expired

    def statistics(self) -> MembershipStatistics:
        """A frozen snapshot of the live set and the counters."""
        return MembershipStatistics(
            live=self._live,
            version=self._version,
            heartbeats=self._heartbeats,
            joins=self._joins,
            expiries=self._expiries,
            leaves=self._leaves,
            rejected=self._rejected,
        )

    def _advance(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _changed(self) -> None:
        live = set(self._last_seen)
        if self._local is not None:
            live.add(self._local)
        self._live = frozenset(live)
        self._version += 1

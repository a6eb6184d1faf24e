"""The same actors on the other nodes of a cluster, reached through one topic per key.

Presence channels and notification dispatchers run on every node for that node's own sessions;
what one of them sends its sessions because of a local event also goes to its counterparts on
the other nodes (see :mod:`mailslot.collab.presence` and :mod:`mailslot.collab.notify`). On one
node there are no peers (``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailslot.runtime import ActorRef

__all__ = ["Peers"]


@dataclass(frozen=True, slots=True)
class Peers:
    """How a node's actors reach their counterparts on the other nodes.

    Args:
        ref: where the relayed messages go (a topic ref: every node bound to the message's key
            receives it, at the same actor path).
        origin: this node's id (a node's own relays come back to it and are skipped).
        bind: start receiving the relays of a key (called before the first relay of that key
            goes out, so that answers to it cannot miss this node).
        unbind: stop receiving them (nobody here needs them any more).
    """

    ref: ActorRef
    origin: str
    bind: Callable[[str], None]
    unbind: Callable[[str], None]

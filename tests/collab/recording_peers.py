"""The other nodes of a cluster, for presence and notification tests: one probe for the relays,
and a record of the topic bindings the node under test asked for."""

from __future__ import annotations

from mailslot.collab.peers import Peers
from mailslot.testing import TestKit


class RecordingPeers:
    def __init__(self, kit: TestKit, origin: str = "n1") -> None:
        self.probe = kit.probe("peers")
        self.bound: list[tuple[str, bool]] = []
        self.peers = Peers(
            ref=self.probe.ref,
            origin=origin,
            bind=lambda key: self.bound.append((key, True)),
            unbind=lambda key: self.bound.append((key, False)),
        )

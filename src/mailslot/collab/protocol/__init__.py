"""ShareDB's client protocol: typed messages, the session state machine, the document contract.

Pure (sans I/O): the gateway's session actor is the shell that owns sockets and actors.
"""

from __future__ import annotations

from mailslot.collab.protocol.docs import (
    DocError,
    DocOps,
    DocReply,
    DocRequest,
    DocSnapshot,
    OpAcked,
    OpBroadcast,
    Push,
    SnapshotAt,
    SubmitOp,
    SubscribeDoc,
    UnsubscribeDoc,
)
from mailslot.collab.protocol.messages import Request, decode_request, encode
from mailslot.collab.protocol.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_BIG,
    Close,
    Effect,
    PresenceCommand,
    Send,
    SendAll,
    Session,
    ToDocument,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOO_BIG",
    "Close",
    "DocError",
    "DocOps",
    "DocReply",
    "DocRequest",
    "DocSnapshot",
    "Effect",
    "OpAcked",
    "OpBroadcast",
    "PresenceCommand",
    "Push",
    "Request",
    "Send",
    "SendAll",
    "Session",
    "SnapshotAt",
    "SubmitOp",
    "SubscribeDoc",
    "ToDocument",
    "UnsubscribeDoc",
    "decode_request",
    "encode",
]

"""What the store keeps: op records, snapshots, and what a commit or a read answers.

Every record is a frozen msgspec Struct. Names follow ShareDB's meaning with readable spelling:
``collection`` is ShareDB's ``c``, ``doc`` its ``d``, ``version`` its ``v``. Versions count ops:
a document at version ``n`` has had ``n`` ops applied, and the op stored at version ``v`` turns
version ``v`` into ``v + 1``. Timestamps are milliseconds since the epoch, always passed in by the
caller (the store reads no clock for data).

The op payload (``OpRecord.op``) and the snapshot ``data`` are JSON values the store does not look
into: the store does not know operational transformation (that is ``mailslot.collab``). Structs are
frozen, but a JSON payload is an ordinary list or dict: do not mutate what you hand in or get back.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import msgspec

__all__ = [
    "CommitResult",
    "CommitStatus",
    "DocKey",
    "DocumentInfo",
    "OpKind",
    "OpRecord",
    "Snapshot",
    "SnapshotParts",
]

OpKind: TypeAlias = Literal["op", "create", "del"]
"""``op``: ``op`` is a list of components; ``create``: ``op`` is ``{"type": ..., "data": ...}``;
``del``: ``op`` is ``None``."""

CommitStatus: TypeAlias = Literal["committed", "duplicate"]

DocKey: TypeAlias = tuple[str, str]
"""``(collection, doc)``."""


class OpRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One op of one document, as stored in the op log.

    Attributes:
        collection: ShareDB's ``c``, e.g. ``"docs"``.
        doc: the document id, ShareDB's ``d``.
        version: the version the op was applied at; the document is at ``version + 1`` after it.
        src: the id of the connection that submitted the op.
        seq: the op's sequence number on that connection; ``(collection, doc, src, seq)`` is
            unique, which makes resubmission idempotent.
        op: the JSON payload (see ``kind``).
        timestamp: when the op was applied, in ms since the epoch (passed in by the caller).
        kind: ``"op"`` (components), ``"create"`` (``{"type", "data"}``) or ``"del"``.
        user: the user who made the op, when known.
    """

    collection: str
    doc: str
    version: int
    src: str
    seq: int
    op: Any
    timestamp: int
    kind: OpKind = "op"
    user: str | None = None

    @property
    def key(self) -> DocKey:
        """``(collection, doc)``."""
        return (self.collection, self.doc)


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A document's state at one version.

    Attributes:
        collection: ShareDB's ``c``.
        doc: the document id.
        version: the number of ops the state includes.
        type: the OT type's name or URI; ``None`` for a document that does not exist (never
            created, or deleted).
        data: the type's JSON value of the document.
        timestamp: the timestamp of the last op included (ShareDB's ``mtime``), in ms; reads by
            timestamp pick the newest snapshot whose timestamp is not after the one asked for.
    """

    collection: str
    doc: str
    version: int
    type: str | None
    data: Any
    timestamp: int


class CommitResult(msgspec.Struct, frozen=True):
    """What happened to one op of a commit.

    Attributes:
        status: ``"committed"`` (stored now) or ``"duplicate"`` (an op with the same
            ``(collection, doc, src, seq)`` was stored before, so nothing changed).
        version: the version the op is stored at; for a duplicate, the version it was first
            stored at (which the caller acks again).
    """

    status: CommitStatus
    version: int


class SnapshotParts(msgspec.Struct, frozen=True):
    """The pieces of a document at some version; the caller applies ``ops`` to ``snapshot``.

    Attributes:
        snapshot: the nearest stored snapshot at or below the version asked for, or ``None`` when
            there is none (start from the empty document at version 0).
        ops: the ops after the snapshot, in version order, up to the version asked for.
    """

    snapshot: Snapshot | None
    ops: tuple[OpRecord, ...]

    @property
    def version(self) -> int:
        """The version the document is at once ``ops`` are applied to ``snapshot``.

        Less than the version asked for when the log does not reach that far; the caller decides
        whether that is an error (ShareDB's ``ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT``).
        """
        base = self.snapshot.version if self.snapshot is not None else 0
        return base + len(self.ops)


class DocumentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A document that has ops in the log.

    Attributes:
        collection: ShareDB's ``c``.
        doc: the document id.
        version: the latest version (the number of ops stored).
        created: the timestamp of its first op, in ms.
        updated: the timestamp of its latest op, in ms.
    """

    collection: str
    doc: str
    version: int
    created: int
    updated: int

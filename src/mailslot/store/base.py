"""The store interface, and the reads every backend shares.

Theory of operation: a :class:`Store` is an op log plus snapshots for many documents. A backend
(SQLite, PostgreSQL) supplies opening and closing, the write transactions (:meth:`Store.commit`,
:meth:`Store.save_snapshot`), and one primitive read, ``_fetch``, which runs one query written with
``?`` placeholders and returns its rows. Every read of the interface is built here on ``_fetch``,
with the same SQL for both backends.

The op log is append-only and gap-free per document (see :mod:`mailslot.store.plan`), and a
document's head (the ``documents`` row) moves in the same transaction as its ops. So reads need no
transaction of their own: ops once stored never change, and a snapshot names the version it holds.

A store is used from one event loop. Every method raises :class:`~mailslot.errors.StoreError` (or
a subclass) for anything that goes wrong underneath; no driver exception gets out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeAlias

import msgspec

from mailslot.errors import StoreError
from mailslot.store.plan import HeadUpdate
from mailslot.store.records import (
    CommitResult,
    DocumentInfo,
    OpRecord,
    Snapshot,
    SnapshotParts,
)

__all__ = [
    "APPLIED_MIGRATIONS",
    "INSERT_OP",
    "NO_LIMIT",
    "SELECT_HEAD",
    "UPSERT_HEAD",
    "UPSERT_SNAPSHOT",
    "AsyncResource",
    "Row",
    "Store",
    "check_snapshot_fits",
    "decode_op",
    "distinct_docs",
    "encode_op",
    "head_row",
    "snapshot_row",
    "translated",
]

Row: TypeAlias = Sequence[Any]

NO_LIMIT = 2**62
"""Stands for "no upper bound" in version ranges and LIMIT clauses (both dialects take it)."""

_OP_COLUMNS = "collection, doc, version, src, seq, kind, op, ts, user_id"
_SNAPSHOT_COLUMNS = "collection, doc, version, doc_type, data, ts"
_DOCUMENT_COLUMNS = "collection, doc, version, created, updated"

# Statements in the `?` dialect; the PostgreSQL backend numbers the placeholders.
INSERT_OP = f"INSERT INTO ops ({_OP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_HEAD = (
    f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (collection, doc) DO UPDATE SET version = excluded.version, "
    "updated = excluded.updated"
)
UPSERT_SNAPSHOT = (
    f"INSERT INTO snapshots ({_SNAPSHOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (collection, doc, version) DO UPDATE SET doc_type = excluded.doc_type, "
    "data = excluded.data, ts = excluded.ts"
)
SELECT_HEAD = "SELECT version FROM documents WHERE collection = ? AND doc = ?"
_SELECT_OPS = f"SELECT {_OP_COLUMNS} FROM ops WHERE collection = ? AND doc = ?"
_SELECT_SNAPSHOT = f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE collection = ? AND doc = ?"
_SELECT_DOCUMENTS = f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE collection = ?"
_LATEST = " ORDER BY version DESC LIMIT 1"

_OPS_RANGE = _SELECT_OPS + " AND version >= ? AND version < ? ORDER BY version LIMIT ?"
_FIND_OP = _SELECT_OPS + " AND src = ? AND seq = ?"
_HISTORY = _SELECT_OPS + " ORDER BY version DESC LIMIT ? OFFSET ?"
_SNAPSHOT_LATEST = _SELECT_SNAPSHOT + _LATEST
_SNAPSHOT_AT_VERSION = _SELECT_SNAPSHOT + " AND version <= ?" + _LATEST
_SNAPSHOT_AT_TIME = _SELECT_SNAPSHOT + " AND ts <= ?" + _LATEST
_FIRST_OP_AFTER_TIME = (
    "SELECT version FROM ops WHERE collection = ? AND doc = ? AND version >= ? AND ts > ? "
    "ORDER BY version LIMIT 1"
)
_DOCUMENT = _SELECT_DOCUMENTS + " AND doc = ?"
_DOCUMENTS = _SELECT_DOCUMENTS + " ORDER BY doc LIMIT ?"
_DOCUMENTS_AFTER = _SELECT_DOCUMENTS + " AND doc > ? ORDER BY doc LIMIT ?"
APPLIED_MIGRATIONS = "SELECT id FROM schema_migrations ORDER BY applied_at, id"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _json(value: Any, what: str, doc: str) -> str:
    try:
        return _encode(value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise StoreError(f"{what} is not JSON: {exc}", doc_id=doc) from exc


def encode_op(op: OpRecord) -> tuple[Any, ...]:
    """The ``ops`` row of an op, in ``INSERT_OP`` order."""
    where = f"op at version {op.version} of document {op.collection}/{op.doc}"
    payload = _json(op.op, where, op.doc)
    return (
        op.collection,
        op.doc,
        op.version,
        op.src,
        op.seq,
        op.kind,
        payload,
        op.timestamp,
        op.user,
    )


def decode_op(row: Row) -> OpRecord:
    """An op from its ``ops`` row."""
    return OpRecord(
        collection=row[0],
        doc=row[1],
        version=row[2],
        src=row[3],
        seq=row[4],
        kind=row[5],
        op=_decode(row[6]),
        timestamp=row[7],
        user=row[8],
    )


def snapshot_row(snapshot: Snapshot) -> tuple[Any, ...]:
    """The ``snapshots`` row of a snapshot, in ``UPSERT_SNAPSHOT`` order."""
    where = f"snapshot of document {snapshot.collection}/{snapshot.doc}"
    data = _json(snapshot.data, where, snapshot.doc)
    return (
        snapshot.collection,
        snapshot.doc,
        snapshot.version,
        snapshot.type,
        data,
        snapshot.timestamp,
    )


def _decode_snapshot(row: Row) -> Snapshot:
    return Snapshot(
        collection=row[0],
        doc=row[1],
        version=row[2],
        type=row[3],
        data=_decode(row[4]),
        timestamp=row[5],
    )


def _decode_document(row: Row) -> DocumentInfo:
    return DocumentInfo(
        collection=row[0], doc=row[1], version=row[2], created=row[3], updated=row[4]
    )


def head_row(head: HeadUpdate) -> tuple[Any, ...]:
    """The ``documents`` row of a head update, in ``UPSERT_HEAD`` order."""
    return (head.collection, head.doc, head.version, head.created, head.updated)


def check_snapshot_fits(snapshot: Snapshot, head: int | None) -> None:
    """Refuse a snapshot ahead of its document's log (``head``: the version it expects next)."""
    stored = head or 0
    if snapshot.version > stored:
        raise StoreError(
            f"snapshot at version {snapshot.version} of document "
            f"{snapshot.collection}/{snapshot.doc} is ahead of its op log, which is at version "
            f"{stored}; commit the ops first",
            doc_id=snapshot.doc,
        )


@contextmanager
def translated(errors: tuple[type[Exception], ...], what: str) -> Iterator[None]:
    """Turn the driver ``errors`` raised inside into a :class:`StoreError`: ``what`` failed."""
    try:
        yield
    except errors as exc:
        raise StoreError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _natural(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise StoreError(f"{name} must not be negative, got {value}")


class AsyncResource(ABC):
    """Something opened and closed around its use: ``async with thing:``."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Store(AsyncResource):
    """An op log plus snapshots; see the module docstring. Use as ``async with store:``."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema.

        Raises:
            StoreError: the database cannot be reached or migrated, or the store is open already.
        """

    @abstractmethod
    async def close(self) -> None:
        """Disconnect. Idempotent; every commit confirmed before stays durable."""

    @abstractmethod
    async def commit(self, ops: Sequence[OpRecord]) -> list[CommitResult]:
        """Store ``ops`` (any mix of documents) in one transaction, all or nothing.

        When this returns, the ops are durable. An op whose ``(collection, doc, src, seq)`` is
        stored already (or earlier in ``ops``) is a duplicate: reported, not stored again.

        Args:
            ops: in order; a document's ops must follow its log without gaps.

        Returns:
            One result per op, in order.

        Raises:
            VersionConflict: some op does not follow its document's log; nothing was stored.
            StoreError: the transaction failed; nothing was stored.
        """

    @abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot (replacing one at the same version).

        Raises:
            StoreError: the snapshot is ahead of its document's op log, or the write failed.
        """

    @abstractmethod
    async def _fetch(self, query: str, args: tuple[Any, ...]) -> list[Row]:
        """Run one read query (``?`` placeholders) and return its rows."""

    async def _write(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[int]:
        """Run write statements (``?`` placeholders) in one transaction, all or nothing.

        Returns the number of rows each statement changed. The tables beside the op log (users,
        memberships, notifications: :mod:`mailslot.store.directory`) are written with this.
        """
        raise StoreError(f"{type(self).__name__} does not support general writes")

    async def migrations(self) -> list[str]:
        """The ids of the migrations applied to the database, oldest first."""
        return [row[0] for row in await self._fetch(APPLIED_MIGRATIONS, ())]

    async def latest_snapshot(self, collection: str, doc: str) -> Snapshot | None:
        """The snapshot of ``doc`` with the highest version, or ``None``."""
        rows = await self._fetch(_SNAPSHOT_LATEST, (collection, doc))
        return _decode_snapshot(rows[0]) if rows else None

    async def load(self, collection: str, doc: str) -> SnapshotParts:
        """What rebuilds ``doc`` at its latest version: the latest snapshot and every op after."""
        return await self.snapshot_parts(collection, doc)

    async def snapshot_parts(
        self,
        collection: str,
        doc: str,
        *,
        version: int | None = None,
        timestamp: int | None = None,
    ) -> SnapshotParts:
        """The nearest stored snapshot and the ops that bring it to a version or a time.

        The store does not apply ops; the caller applies ``ops`` to ``snapshot``, and checks
        ``parts.version`` when it needs an exact version (the log may end before it). With
        neither ``version`` nor ``timestamp``, the latest version (as :meth:`load`).

        Args:
            collection: ShareDB's ``c``.
            doc: the document id.
            version: ShareDB's ``nf``: the document after ``version`` ops.
            timestamp: ShareDB's ``nt`` (ms): the newest snapshot whose timestamp is not after
                it, and the ops after that snapshot up to (not including) the first one stamped
                later than ``timestamp``, as ShareDB does. Assumes a document's op timestamps
                do not go backwards.

        Raises:
            StoreError: both ``version`` and ``timestamp`` given, or a negative one.
        """
        if version is not None and timestamp is not None:
            raise StoreError("ask for a snapshot at a version or at a timestamp, not both")
        _natural("version", version)
        key = (collection, doc)
        end = NO_LIMIT
        if timestamp is not None:
            rows = await self._fetch(_SNAPSHOT_AT_TIME, (*key, timestamp))
        elif version is not None:
            rows = await self._fetch(_SNAPSHOT_AT_VERSION, (*key, version))
            end = version
        else:
            rows = await self._fetch(_SNAPSHOT_LATEST, key)
        snapshot = _decode_snapshot(rows[0]) if rows else None
        start = snapshot.version if snapshot is not None else 0
        if timestamp is not None:
            cut = await self._fetch(_FIRST_OP_AFTER_TIME, (*key, start, timestamp))
            end = cut[0][0] if cut else NO_LIMIT
        ops = await self.ops_since(collection, doc, start, end)
        return SnapshotParts(snapshot, tuple(ops))

    async def ops_since(
        self,
        collection: str,
        doc: str,
        from_version: int,
        to_version: int | None = None,
        *,
        limit: int | None = None,
    ) -> list[OpRecord]:
        """The ops with ``from_version <= version < to_version``, in version order.

        Args:
            collection: ShareDB's ``c``.
            doc: the document id.
            from_version: the first version wanted.
            to_version: the version to stop before; ``None`` for the end of the log.
            limit: at most this many ops.
        """
        for name, value in (("from_version", from_version), ("to_version", to_version)):
            _natural(name, value)
        _natural("limit", limit)
        end = NO_LIMIT if to_version is None else to_version
        cap = NO_LIMIT if limit is None else limit
        rows = await self._fetch(_OPS_RANGE, (collection, doc, from_version, end, cap))
        return [decode_op(r) for r in rows]

    async def find_op(self, collection: str, doc: str, src: str, seq: int) -> OpRecord | None:
        """The stored op with this ``(src, seq)`` (dedup after a restart), or ``None``."""
        rows = await self._fetch(_FIND_OP, (collection, doc, src, seq))
        return decode_op(rows[0]) if rows else None

    async def document(self, collection: str, doc: str) -> DocumentInfo | None:
        """The document's latest version and times, or ``None`` when it has no ops."""
        rows = await self._fetch(_DOCUMENT, (collection, doc))
        return _decode_document(rows[0]) if rows else None

    async def list_documents(
        self, collection: str, *, after: str | None = None, limit: int = 1000
    ) -> list[DocumentInfo]:
        """The documents of a collection with their latest versions, ordered by id.

        Args:
            collection: ShareDB's ``c``.
            after: page on from the document with this id (the last of the previous page).
            limit: at most this many documents.
        """
        _natural("limit", limit)
        if after is None:
            rows = await self._fetch(_DOCUMENTS, (collection, limit))
        else:
            rows = await self._fetch(_DOCUMENTS_AFTER, (collection, after, limit))
        return [_decode_document(r) for r in rows]

    async def history(
        self, collection: str, doc: str, *, limit: int = 50, offset: int = 0
    ) -> list[OpRecord]:
        """The document's ops, newest first: ``limit`` of them after skipping ``offset``."""
        _natural("limit", limit)
        _natural("offset", offset)
        rows = await self._fetch(_HISTORY, (collection, doc, limit, offset))
        return [decode_op(r) for r in rows]


def distinct_docs(ops: Iterable[OpRecord]) -> list[tuple[str, str]]:
    """The documents of ``ops``, each once, in first-seen order."""
    return list(dict.fromkeys(op.key for op in ops))

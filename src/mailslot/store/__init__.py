"""The durable op log and snapshots behind one async interface.

``open_store(url)`` gives a :class:`Store`: SQLite by default (a file under ``./data``), or
PostgreSQL through asyncpg (``postgresql://...``). Ops go in with :meth:`Store.commit` (one
transaction, idempotent by ``(collection, doc, src, seq)``), or, from many concurrent callers,
through a :class:`GroupCommitter` that shares one transaction among them. Reads rebuild a document
(:meth:`Store.load`), reach a past version or time (:meth:`Store.snapshot_parts`, ShareDB's ``nf``
and ``nt``), replay ops since a version, list documents and page through history.

The store does not know operational transformation: it returns snapshots and ops, and the caller
applies them. The schema is created and migrated on open (:mod:`mailslot.store.migrations` says how
to add a migration).
"""

from __future__ import annotations

from mailslot.store.base import Store
from mailslot.store.committer import CommitTarget, CommitterStatistics, GroupCommitter
from mailslot.store.migrations import MIGRATIONS, Migration, portable
from mailslot.store.records import (
    CommitResult,
    CommitStatus,
    DocKey,
    DocumentInfo,
    OpKind,
    OpRecord,
    Snapshot,
    SnapshotParts,
)
from mailslot.store.url import DEFAULT_URL, StoreConfig, open_store, parse_url

__all__ = [
    "DEFAULT_URL",
    "MIGRATIONS",
    "CommitResult",
    "CommitStatus",
    "CommitTarget",
    "CommitterStatistics",
    "DocKey",
    "DocumentInfo",
    "GroupCommitter",
    "Migration",
    "OpKind",
    "OpRecord",
    "Snapshot",
    "SnapshotParts",
    "Store",
    "StoreConfig",
    "open_store",
    "parse_url",
    "portable",
]

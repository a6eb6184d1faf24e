"""Deciding a commit: which ops are new, which are duplicates, which do not fit (pure).

Theory of operation: a backend opens a write transaction, reads what the batch touches (the stored
version of each ``(collection, doc, src, seq)`` in the batch, and each document's head, the version
its log expects next), and hands both to :func:`plan_commit`. The plan says what to insert and how
to move the heads; the backend writes exactly that and commits. Nothing here does I/O.

Invariants the plan keeps, per document:

- the log is gap-free from version 0: an op is stored only at its document's head, and the head
  moves by one per stored op, in the order the ops appear in the batch;
- an op whose ``(collection, doc, src, seq)`` is stored already, or appears earlier in the same
  batch, is a duplicate: it is reported with the version it is stored at and changes nothing;
- an op at any other version does not fit, and neither does any later op of that document in the
  batch (they were built on it). A commit is all or nothing, so one misfit rejects the batch with
  a :class:`~mailslot.errors.VersionConflict` that lists every misfit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import msgspec

from mailslot.errors import VersionConflict
from mailslot.store.records import CommitResult, DocKey, OpRecord

__all__ = ["CommitPlan", "HeadUpdate", "OpKey", "plan_commit"]

OpKey: TypeAlias = tuple[str, str, str, int]
"""``(collection, doc, src, seq)``."""


class HeadUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Where a document's head moves to; ``created`` counts only when the document is new."""

    collection: str
    doc: str
    version: int
    created: int
    updated: int


class CommitPlan(msgspec.Struct, frozen=True):
    """What to write: one result per op (in order), the positions of the ops to insert, the heads
    to move."""

    results: tuple[CommitResult, ...]
    inserts: tuple[int, ...]
    heads: tuple[HeadUpdate, ...]


def plan_commit(
    ops: Sequence[OpRecord], *, stored: Mapping[OpKey, int], heads: Mapping[DocKey, int]
) -> CommitPlan:
    """Plan the commit of ``ops`` against what the store holds.

    Args:
        ops: the batch, in submission order; any mix of documents.
        stored: for each op key of the batch already in the log, the version it is stored at
            (keys not in the log are absent).
        heads: for each document of the batch that has a log, the version it expects next
            (absent: a new document, which expects version 0).

    Returns:
        The plan; ``results[i]`` answers ``ops[i]``.

    Raises:
        VersionConflict: some op does not fit; ``misfits`` lists every one that does not.
    """
    next_version = dict(heads)
    seen: dict[OpKey, int] = {}
    broken: set[DocKey] = set()  # documents with a misfit earlier in the batch
    misfits: list[tuple[int, int]] = []  # (position, expected) of every op that does not fit
    results: list[CommitResult] = []
    inserts: list[int] = []
    moved: dict[DocKey, HeadUpdate] = {}
    for position, op in enumerate(ops):
        key = (op.collection, op.doc, op.src, op.seq)
        earlier = stored.get(key, seen.get(key))
        if earlier is not None:
            results.append(CommitResult("duplicate", earlier))
            continue
        doc = op.key
        expected = next_version.get(doc, 0)
        if doc in broken or op.version != expected:
            broken.add(doc)
            misfits.append((position, expected))
            continue
        next_version[doc] = expected + 1
        seen[key] = op.version
        inserts.append(position)
        results.append(CommitResult("committed", op.version))
        first = moved.get(doc)
        moved[doc] = HeadUpdate(
            collection=op.collection,
            doc=op.doc,
            version=expected + 1,
            created=op.timestamp if first is None else first.created,
            updated=op.timestamp,
        )
    if misfits:
        raise _conflict(ops, misfits)
    return CommitPlan(tuple(results), tuple(inserts), tuple(moved.values()))


def _conflict(ops: Sequence[OpRecord], misfits: list[tuple[int, int]]) -> VersionConflict:
    position, expected = misfits[0]
    op = ops[position]
    why = (
        "another op is already stored at that version"
        if op.version < expected
        else "the log does not reach it"
    )
    more = len(misfits) - 1
    return VersionConflict(
        f"op at version {op.version} of document {op.collection}/{op.doc} does not fit: {why} "
        f"(the log expects version {expected})" + (f"; {more} more ops rejected" if more else ""),
        collection=op.collection,
        doc_id=op.doc,
        version=op.version,
        expected=expected,
        misfits=tuple(misfits),
    )
